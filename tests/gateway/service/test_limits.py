"""Resource bounds: hostile work is refused up front with a reason naming the bound, and a local
simulation that outgrows its memory budget at run time fails alone; the gateway stays SERVING."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from qsched.api.gateway.v1 import gateway_pb2 as pb
from qsched.api.gateway.v1 import gateway_pb2_grpc
from qsched_core.config import Endpoints, ServiceConfig
from qsched_gateway import limits
from qsched_gateway.limits import MIB
from qsched_runtime.server import start_server
from tests.gateway.conftest import BELL_QASM2, circuits, error_reason, watch_all
from tests.support.identity import authed_channel
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)


@contextlib.asynccontextmanager
async def served(data_dir):
    """(gateway stub, health stub, Gateway) on a real server."""
    from qsched_gateway import server as gateway_server_module

    cfg = ServiceConfig(service="gateway", endpoints=Endpoints(gateway="127.0.0.1:0"), data_dir=data_dir)
    handle = await gateway_server_module.build(cfg)
    server = await start_server(cfg.listen, handle.registrations)
    await handle.start()
    try:
        async with authed_channel(f"127.0.0.1:{server.port}") as channel:
            yield (
                gateway_pb2_grpc.ProviderGatewayServiceStub(channel),
                health_pb2_grpc.HealthStub(channel),
                handle.gateway,
            )
    finally:
        await server.stop(0)
        await handle.stop()


class HealthWatch:
    """Asks Health.Check over and over while the test runs; every answer is kept."""

    def __init__(self, health):
        self.health = health
        self.answers: list[str] = []
        self._task = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            try:
                reply = await self.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
                self.answers.append(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
            except grpc.aio.AioRpcError as error:
                self.answers.append(error.code().name)
            await asyncio.sleep(0.05)

    async def stop(self) -> list[str]:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return self.answers


def benchmark(**config) -> pb.Workload:
    return pb.Workload(benchmark_config_json=json.dumps(config))


def wide_circuit(qubits: int) -> str:
    """Not Clifford (Aer would pick the stabilizer method and need no statevector)."""
    gates = "".join(f"h q[{i}];\nt q[{i}];\n" for i in range(qubits))
    return (
        f'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[{qubits}];\ncreg c[{qubits}];\n'
        f"{gates}cx q[0],q[1];\nmeasure q -> c;\n"
    )


def test_bounds_name_the_provider_and_the_variable():
    local = limits.limits_for("local", {"QSCHED_GATEWAY_MAX_SHOTS_LOCAL": "500"})
    assert local.max_shots == 500
    part = limits.Part("WIT", [], 501)
    with pytest.raises(limits.InvalidArgument) as caught:
        limits.check("local", [part], True, True, local)
    assert caught.value.reason == "OVER_LIMIT"
    assert "local" in caught.value.message and "QSCHED_GATEWAY_MAX_SHOTS_LOCAL" in caught.value.message
    assert caught.value.metadata["key"] == "shots"
    # A billion noisy shots need a classical record each: gigabytes, whatever the circuit.
    assert limits.simulation_bytes(7, 7, 10**9, noisy=True) > 10 * 1024 * MIB
    assert limits.simulation_bytes(7, 7, 1000, noisy=True) < 10 * MIB


async def test_hostile_work_is_refused_with_a_clear_reason_while_the_gateway_keeps_serving(tmp_path):
    async with served(tmp_path) as (stub, health, gateway):
        watch = HealthWatch(health)
        hostile = [
            # Over WIT's own bound (its schema): the key is named.
            (benchmark(benchmark_name="WIT", shots=1_000_000_000), "INVALID_CONFIG", "'shots'"),
            # Under the benchmark's bound, over the local provider's.
            (
                benchmark(benchmark_name="WIT", shots=2_000_000),
                "OVER_LIMIT",
                "QSCHED_GATEWAY_MAX_SHOTS_LOCAL",
            ),
            (benchmark(benchmark_name="WIT", shots=float("nan")), "INVALID_CONFIG", "'shots'"),
            # A 29-qubit statevector (8 GiB) is over the default budget of 2 GiB.
            (circuits(wide_circuit(29), shots=10), "OVER_MEMORY_BUDGET", "QSCHED_GATEWAY_SIM_MEMORY_MB"),
        ]
        for workload, reason, named in hostile:
            for call in (
                stub.Estimate(pb.EstimateRequest(device="local:aer_simulator", workload=workload)),
                stub.Submit(pb.SubmitRequest(device="local:aer_simulator", workload=workload)),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert error_reason(caught.value) == reason, caught.value.details()
                assert named in caught.value.details()
        every_state = ("QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED")
        assert gateway.registry.tasks_in_state("local", every_state) == []  # nothing was sent
        # Still serving: an ordinary job runs to the end, health answered SERVING throughout.
        ok = await stub.Submit(pb.SubmitRequest(device="local:aer_simulator", workload=circuits(BELL_QASM2)))
        statuses = await watch_all(stub, ok.task_ids)
        assert statuses[-1].state == pb.TASK_STATE_COMPLETED
        answers = await watch.stop()
        assert answers and set(answers) == {"SERVING"}


async def test_a_simulation_over_its_memory_budget_fails_alone(tmp_path):
    async with served(tmp_path) as (stub, health, gateway):
        local = gateway.adapters["local"]
        assert local.isolation == "process"
        # Let the estimate through, so the worker's own cap is what stops it.
        gateway.limits["local"] = dataclasses.replace(
            gateway.limits["local"], memory_budget_bytes=64 * 1024 * MIB
        )
        local.memory_budget_bytes = 256 * MIB
        watch = HealthWatch(health)
        big = await stub.Submit(
            pb.SubmitRequest(device="local:aer_simulator", workload=circuits(wide_circuit(26), shots=10))
        )
        small = await stub.Submit(
            pb.SubmitRequest(device="local:aer_simulator", workload=circuits(BELL_QASM2))
        )
        big_end = (await watch_all(stub, big.task_ids))[-1]
        small_end = (await watch_all(stub, small.task_ids))[-1]
        assert big_end.state == pb.TASK_STATE_FAILED
        assert "memory budget of 256 MiB" in big_end.message
        assert small_end.state == pb.TASK_STATE_COMPLETED
        # The next simulation gets a fresh worker and runs.
        again = await stub.Submit(
            pb.SubmitRequest(device="local:aer_simulator", workload=circuits(BELL_QASM2))
        )
        done = await eventually(
            lambda: watch_all(stub, again.task_ids),
            until=lambda s: s[-1].state == pb.TASK_STATE_COMPLETED,
            timeout=60,
            what="a simulation after the failed one",
        )
        assert done
        answers = await watch.stop()
        assert answers and set(answers) == {"SERVING"}
