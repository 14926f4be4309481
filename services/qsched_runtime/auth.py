"""Authentication and per-RPC role checks for every qsched server.

The interceptor reads `authorization: Bearer <token>` from the call metadata, resolves
it to a Principal before the handler runs, refuses the call when the principal lacks
what the method's policy demands, and makes the principal available to the handler
through `caller()`. Ownership checks (may this user cancel *that* job?) need data and
are made by the domain code; this layer only answers "who" and "which role".

grpc.health.v1.Health stays open: orchestrators probe it without credentials and it
tells nothing but SERVING / NOT_SERVING. Server reflection is open too by default: it serves the
public contract (the protos), and a client without a token needs it to decode the error details of
the UNAUTHENTICATED reply; `reflection_requires_auth` closes it (docs/security.md)."""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Callable, Mapping
from enum import Enum
from typing import Any

import grpc
from google.protobuf import descriptor_pool

from qsched.wire import bearer_token
from qsched_core.errors import DomainError, PermissionDenied, Unauthenticated
from qsched_core.principal import Kind, Principal, Role
from qsched_identity.authenticator import Authenticator
from qsched_runtime.errors import abort

AUTH_DOMAIN = "qsched.auth"
_OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
_REFLECTION_PREFIX = "/grpc.reflection."


class Anyone(Enum):
    """Requirements that are not a role."""

    PRINCIPAL = "any authenticated principal"  # people and services
    PERSON = "any authenticated user"  # people only


Requirement = Anyone | Role
Policy = Mapping[str, Requirement]  # RPC method name (e.g. "SubmitJob") -> what it needs

_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("qsched_caller", default=None)


def caller() -> Principal:
    """The authenticated principal of the RPC being handled."""
    principal = _current.get()
    if principal is None:
        raise RuntimeError("no authenticated caller: is the service started with authentication?")
    return principal


def check(principal: Principal, requirement: Requirement) -> None:
    if requirement is Anyone.PRINCIPAL:
        return
    if requirement is Anyone.PERSON:
        if principal.kind is not Kind.USER:
            raise PermissionDenied(
                "PEOPLE_ONLY",
                f"service principal {principal.name!r} may not call this method",
                principal=principal.name,
            )
        return
    if not principal.has(requirement):
        raise PermissionDenied(
            "MISSING_ROLE",
            f"{principal.name!r} lacks the {requirement} role this call needs",
            principal=principal.name,
            role=str(requirement),
        )


def full_policy(service_full_name: str, policy: Policy) -> dict[str, Requirement]:
    """`policy` keyed by full method path; refuses a service whose policy misses a method
    (fail closed: a new RPC without a decision would otherwise be open)."""
    service = descriptor_pool.Default().FindServiceByName(service_full_name)
    methods = {m.name for m in service.methods}
    missing = sorted(methods - set(policy))
    unknown = sorted(set(policy) - methods)
    if missing or unknown:
        raise ValueError(f"access policy of {service_full_name}: missing {missing}, unknown {unknown}")
    return {f"/{service_full_name}/{name}": requirement for name, requirement in policy.items()}


class ServerAuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        authenticator: Authenticator,
        policies: Mapping[str, Requirement],
        reflection_requires_auth: bool = False,
    ):
        self._authenticator = authenticator
        self._policies = dict(policies)
        self._reflection = Anyone.PRINCIPAL if reflection_requires_auth else None

    def _requirement(self, method: str) -> Requirement | None:
        """What `method` demands; None for the open health service (and reflection, unless closed)."""
        if method.startswith(_OPEN_PREFIXES):
            return None
        if method.startswith(_REFLECTION_PREFIX):
            return self._reflection
        # A method without a policy (a servicer registered without one) is refused to all.
        return self._policies.get(method, _DENY)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        requirement = self._requirement(handler_call_details.method)
        if requirement is None:
            return handler
        token = bearer_token(handler_call_details.invocation_metadata)
        authenticate = self._authenticator.authenticate

        async def admit(context: grpc.aio.ServicerContext) -> Principal:
            try:
                if requirement is _DENY:
                    raise PermissionDenied("NO_ACCESS_POLICY", "this method is not open to anyone")
                principal = await authenticate(token)
                check(principal, requirement)
                return principal
            except DomainError as error:
                await abort(context, error, AUTH_DOMAIN)
                raise  # unreachable: abort raises

        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                principal = await admit(context)
                reset = _current.set(principal)
                try:
                    return await inner(request, context)
                finally:
                    _current.reset(reset)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                principal = await admit(context)
                # Each RPC runs in its own task (and context): nothing to reset afterwards,
                # and a generator's finally may run in another context.
                _current.set(principal)
                async for item in inner_stream(request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_stream:  # reflection is bidi-streaming
            inner_bidi = handler.stream_stream

            async def stream_stream(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                await admit(context)
                async for item in inner_bidi(requests, context):
                    yield item

            return grpc.stream_stream_rpc_method_handler(
                stream_stream, handler.request_deserializer, handler.response_serializer
            )
        return None  # client-streaming RPCs are not used by qsched: refuse rather than pass unchecked


_DENY: Any = object()
__all__ = ["Anyone", "Policy", "Requirement", "ServerAuthInterceptor", "Unauthenticated", "caller", "check"]
