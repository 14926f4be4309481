"""Builds the provider gateway service from its configuration.

qiskit is imported here, in the main thread, before any worker thread exists: qiskit 2.5+ crashes when
its first import happens in a thread that later exits (see docs/gateway.md)."""

from __future__ import annotations

import contextlib
import logging

with contextlib.suppress(ImportError):  # the local/ibm/ionq extras; the gateway also runs without
    import qiskit
    import qiskit.qasm2
    import qiskit.qasm3  # noqa: F401

from qsched.api.gateway.v1 import gateway_pb2 as pb
from qsched.api.gateway.v1 import gateway_pb2_grpc as pb_grpc
from qsched_core.config import ServiceConfig
from qsched_core.principal import Role
from qsched_gateway.gateway import Gateway
from qsched_gateway.servicer import GatewayServicer
from qsched_runtime.security import server_security
from qsched_runtime.server import Registration
from qsched_runtime.service import ServiceHandle


def import_sdks_in_main_thread() -> None:
    """build() runs on the main thread: import the SDKs here, before any worker pool exists."""
    for module in ("qiskit", "qiskit_aer", "qiskit_ibm_runtime", "qiskit_experiments", "braket.devices"):
        with contextlib.suppress(ImportError):
            __import__(module)


async def build(config: ServiceConfig) -> ServiceHandle:
    import_sdks_in_main_thread()
    logging.getLogger("qiskit").setLevel(logging.WARNING)  # per-pass INFO lines would flood the log
    config.data_dir.mkdir(parents=True, exist_ok=True)
    gateway = Gateway(config.data_dir, database_url=config.gateway_database_url)
    name = pb.DESCRIPTOR.services_by_name["ProviderGatewayService"].full_name
    registration = Registration(
        name,
        lambda server: pb_grpc.add_ProviderGatewayServiceServicer_to_server(GatewayServicer(gateway), server),
        # Provider accounts are the site's: only the scheduler spends them.
        {
            method.name: Role.SCHEDULER
            for method in pb.DESCRIPTOR.services_by_name["ProviderGatewayService"].methods
        },
    )
    handle = ServiceHandle(
        [registration], start=gateway.start, stop=gateway.stop, security=server_security(config)
    )
    handle.gateway = gateway  # for in-process tests and embedding
    return handle
