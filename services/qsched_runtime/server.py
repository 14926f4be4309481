"""Starting and stopping one gRPC server with health, reflection and tracing."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from qsched_runtime.auth import Policy, ServerAuthInterceptor, full_policy
from qsched_runtime.decoding import DecodeAfterAuthInterceptor
from qsched_runtime.grpc_logging import quiet_peer_gone
from qsched_runtime.security import ServerSecurity, check_listen
from qsched_runtime.tracing import ServerTracingInterceptor

log = logging.getLogger(__name__)
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Registration:
    """One gRPC service to host: its full name, the function adding it to a server, and
    what each of its RPCs demands of the caller (qsched_runtime.auth)."""

    full_name: str
    add_to_server: Callable[[grpc.aio.Server], None]
    policy: Policy = field(default_factory=dict)


class RunningServer:
    def __init__(
        self,
        server: grpc.aio.Server,
        port: int,
        health_servicer: health.aio.HealthServicer,
        names: Sequence[str] = ("",),
    ):
        self.server = server
        self.port = port
        self.health = health_servicer
        self.names = list(names)

    async def set_serving(self, serving: bool = True) -> None:
        answer = health_pb2.HealthCheckResponse
        status = answer.SERVING if serving else answer.NOT_SERVING
        for name in self.names:
            await self.health.set(name, status)

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_server(
    listen: str,
    registrations: Sequence[Registration],
    security: ServerSecurity | None = None,
    serving: bool = True,
) -> RunningServer:
    """Bind `listen` (host:port; port 0 picks a free one), register the services
    plus grpc.health.v1.Health and reflection, and mark them all SERVING (with
    `serving=False` they stay NOT_SERVING until `RunningServer.set_serving()`: a service
    whose start hook must finish before it can do its work).

    With `security` (every qsched service), each call is authenticated and checked
    against its registration's policy, and the port is TLS when certificates are set.
    Without it (test doubles only) calls are neither authenticated nor encrypted."""
    quiet_peer_gone()
    interceptors: list[grpc.aio.ServerInterceptor] = [ServerTracingInterceptor()]
    if security is not None:
        check_listen(listen, security)
        policies = {}
        for registration in registrations:
            policies.update(full_policy(registration.full_name, registration.policy))
        interceptors.append(
            ServerAuthInterceptor(security.authenticator, policies, security.reflection_requires_auth)
        )
    interceptors.append(DecodeAfterAuthInterceptor())  # innermost: the caller is known before parsing
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    for registration in registrations:
        registration.add_to_server(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [r.full_name for r in registrations]
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    if security is not None and security.credentials is not None:
        port = server.add_secure_port(listen, security.credentials)
    else:
        port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"could not listen on {listen}")
    await server.start()
    running = RunningServer(server, port, health_servicer, ["", *names])
    if serving:
        await running.set_serving()
    else:
        for name in running.names:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    return running
