"""Every RPC of every service needs a valid bearer token; health checks do not."""

from __future__ import annotations

import contextlib
import sqlite3

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from qsched.api.admin.v1 import admin_pb2, admin_pb2_grpc
from qsched.api.configs.v1 import configs_pb2, configs_pb2_grpc
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc
from qsched.wire import aio_channel
from qsched_core.sql import make_engine
from qsched_identity.store import IdentityStore
from qsched_identity.tokens import token_hash
from tests.identity.service.conftest import refused
from tests.support.identity import authed_channel
from tests.support.stack import running_service

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


def jobs_stub(address: str, token: str) -> tuple[grpc.aio.Channel, jobs_pb2_grpc.JobServiceStub]:
    channel = aio_channel(address, token, None)
    return channel, jobs_pb2_grpc.JobServiceStub(channel)


async def test_missing_wrong_and_revoked_tokens_are_unauthenticated(scheduler, identity):
    _, _, address = scheduler
    for token, reason in (("", "MISSING_TOKEN"), ("qsched_not-a-real-token-at-all-000000", "INVALID_TOKEN")):
        channel, stub = jobs_stub(address, token)
        async with channel:
            await refused(stub.ListDevices(pb.ListDevicesRequest()), UNAUTHENTICATED, reason, "qsched.auth")

    carol = identity.token_for("carol")
    channel, stub = jobs_stub(address, carol)
    async with channel:
        await stub.ListDevices(pb.ListDevicesRequest())  # works (and is now cached)
        async with authed_channel(address) as admin_channel:  # alice is an admin
            admin = admin_pb2_grpc.AdminServiceStub(admin_channel)
            revoked = await admin.RevokeTokens(admin_pb2.RevokeTokensRequest(name="carol"))
        assert len(revoked.token_ids) == 1
        # The scheduler revoked it itself: no grace period there.
        await refused(stub.ListDevices(pb.ListDevicesRequest()), UNAUTHENTICATED, "TOKEN_REVOKED")


async def test_tokens_are_stored_hashed(identity):
    secret = identity.token_for("dora")
    # Dump every row through SQLite itself: opening and closing the file directly would drop this
    # process's POSIX locks on it, which SQLite's other connections here rely on.
    with contextlib.closing(sqlite3.connect(identity.root / "identity.db")) as db:
        dump = "\n".join(db.iterdump())
    assert "identity_tokens" in dump and secret not in dump
    store = IdentityStore(make_engine(identity.url))
    try:
        assert store.lookup(token_hash(secret)).principal.name == "dora"
    finally:
        store.close()


async def reflected_services(channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    return {s.name async for r in call for s in r.list_services_response.service}


async def test_health_and_reflection_are_open_but_rpcs_are_not(scheduler, tmp_path):
    _, _, address = scheduler
    async with grpc.aio.insecure_channel(address) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        # grpcurl without a token can read the contract, so it can decode the refusal's details.
        assert "qsched.jobs.v1.JobService" in await reflected_services(channel)
        await refused(
            jobs_pb2_grpc.JobServiceStub(channel).GetJob(pb.GetJobRequest(job_id="JOB-20260101-00001")),
            UNAUTHENTICATED,
            "MISSING_TOKEN",
        )
    closed = running_service("configs", tmp_path, reflection_requires_auth=True)
    async with closed as configs, grpc.aio.insecure_channel(configs) as channel:
        stub = configs_pb2_grpc.ConfigServiceStub(channel)
        await refused(
            stub.ListConfigTypes(configs_pb2.ListConfigTypesRequest()), UNAUTHENTICATED, "MISSING_TOKEN"
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:  # the site closed reflection
            await reflected_services(channel)
        assert caught.value.code() == UNAUTHENTICATED


@pytest.mark.parametrize("service", ["executor", "gateway"])
async def test_executor_and_gateway_take_calls_from_the_scheduler_only(service, tmp_path, identity):
    from qsched.api.executor.v1 import executor_pb2, executor_pb2_grpc
    from qsched.api.gateway.v1 import gateway_pb2, gateway_pb2_grpc

    extra = {"board": "sim"} if service == "executor" else {}
    async with running_service(service, tmp_path, **extra) as address:
        if service == "executor":

            def call(channel):
                stub = executor_pb2_grpc.HardwareExecutorServiceStub(channel)
                return stub.GetDevice(executor_pb2.GetDeviceRequest())
        else:

            def call(channel):
                stub = gateway_pb2_grpc.ProviderGatewayServiceStub(channel)
                return stub.ListProviders(gateway_pb2.ListProvidersRequest())

        # A person, even one with every human role, is refused and told which role is missing.
        async with aio_channel(address, identity.token, None) as channel:
            error = await refused(call(channel), grpc.StatusCode.PERMISSION_DENIED, "MISSING_ROLE")
            assert "scheduler role" in error.details()
        async with aio_channel(address, "", None) as channel:
            await refused(call(channel), UNAUTHENTICATED, "MISSING_TOKEN")
        async with authed_channel(address) as channel:  # the scheduler's service credential
            await call(channel)
