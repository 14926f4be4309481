"""The gateway on a real gRPC server (ephemeral port) as `qsched serve gateway` builds it.

qiskit is imported here, in the main thread, at import time: qiskit 2.5+ crashes when its first import
happens in a worker thread that later exits."""

from __future__ import annotations

import contextlib
import threading
import warnings

import grpc
import pytest
import qiskit
import qiskit.qasm2
import qiskit.qasm3  # noqa: F401
import qiskit_aer  # noqa: F401

from qsched.api.gateway.v1 import gateway_pb2 as pb
from qsched.api.gateway.v1 import gateway_pb2_grpc
from qsched_core.config import Endpoints, ServiceConfig
from qsched_runtime.server import start_server
from tests.support.identity import authed_channel

warnings.filterwarnings("ignore", category=DeprecationWarning)

BELL_QASM2 = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0],q[1];
measure q -> c;
"""
BELL_QASM3 = """OPENQASM 3.0;
include "stdgates.inc";
qubit[2] q;
bit[2] c;
h q[0];
cx q[0], q[1];
c = measure q;
"""
BELL_BRAKET = """OPENQASM 3.0;
bit[2] b;
qubit[2] q;
h q[0];
cnot q[0], q[1];
b[0] = measure q[0];
b[1] = measure q[1];
"""


@contextlib.asynccontextmanager
async def gateway_server(data_dir, **env):
    from qsched_gateway import server as gateway_server_module

    cfg = ServiceConfig(service="gateway", endpoints=Endpoints(gateway="127.0.0.1:0"), data_dir=data_dir)
    handle = await gateway_server_module.build(cfg)
    server = await start_server(cfg.listen, handle.registrations)
    await handle.start()
    address = f"127.0.0.1:{server.port}"
    try:
        async with authed_channel(address) as channel:
            yield gateway_pb2_grpc.ProviderGatewayServiceStub(channel), handle.gateway
    finally:
        await server.stop(0)
        await handle.stop()


@pytest.fixture
async def gateway(tmp_path):
    """(stub, Gateway) with the registry in tmp_path."""
    async with gateway_server(tmp_path) as pair:
        yield pair


def circuits(*qasm: str, shots: int = 200, seed: int | None = 11) -> pb.Workload:
    options = pb.CompileOptions()
    if seed is not None:
        options.seed_simulator = seed
    return pb.Workload(circuits=pb.Circuits(qasm=list(qasm), shots=shots, options=options))


async def watch_all(stub, task_ids=(), submission_id="") -> list[pb.TaskStatus]:
    request = pb.WatchRequest(task_ids=list(task_ids), submission_id=submission_id)
    return [item.status async for item in stub.Watch(request)]


def error_reason(error: grpc.aio.AioRpcError) -> str:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(error)
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


class Blocker:
    """Occupies a local simulation worker until released (no sleeps: a threading.Event)."""

    def __init__(self, gateway):
        self.event = threading.Event()
        self.started = threading.Event()
        local = gateway.adapters["local"]

        def hold():
            self.started.set()
            self.event.wait(60)

        self.futures = [local.pool.submit(hold) for _ in range(local.workers)]

    def release(self):
        self.event.set()
