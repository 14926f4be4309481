"""Every test runs authenticated (a pytest plugin, loaded by tests/conftest.py).

One identity database per session, provisioned as `qsched up` provisions one: the
person "alice" with every role (the SDK and CLI find her token through
$QSCHED_CONFIG_DIR) and the service principals, whose scheduler token every service
started by a test presents to its peers ($QSCHED_SERVICE_TOKEN). Services started in
the test process or as subprocesses find the database through
$QSCHED_IDENTITY_DATABASE_URL. `identity.token_for(name, roles)` gives other people."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from qsched.wire import with_bearer
from qsched_core.principal import Kind, Role
from qsched_core.sql import make_engine, sqlite_url
from qsched_identity.store import IdentityStore
from qsched_ops.provision import provision

DEFAULT_PERSON = "alice"
SEED_PERSON = "Claude"  # the seed examples' user
# What a test that starts `qsched up` must not inherit: up provisions its own installation.
SESSION_ENV = (
    "QSCHED_IDENTITY_DATABASE_URL",
    "QSCHED_SERVICE_TOKEN",
    "QSCHED_CALIBRATOR_TOKEN",
    "QSCHED_CONFIG_DIR",
    "QSCHED_TOKEN",
)


@dataclass
class TestIdentity:
    url: str
    root: Path
    store: IdentityStore
    _tokens: dict[tuple[str, frozenset[Role]], str] = field(default_factory=dict)

    @property
    def token(self) -> str:
        """alice's token (every role)."""
        return (self.root / "config" / "token").read_text().strip()

    @property
    def service_token(self) -> str:
        return (self.root / "secrets" / "scheduler.token").read_text().strip()

    def token_for(self, name: str, roles: tuple[Role, ...] = (), kind: Kind = Kind.USER) -> str:
        """A token of `name` (created with `roles` on first use; the same roles each time)."""
        key = (name, frozenset(roles))
        if key not in self._tokens:
            now = datetime.now(UTC)
            user = self.store.get_user(name)
            if user is None:
                self.store.create_user(name, kind, frozenset(roles), "tests", now)
            elif user.roles != frozenset(roles):
                raise ValueError(f"test user {name} exists with roles {sorted(user.roles)}")
            self._tokens[key] = self.store.issue_token(name, "tests", now)[1]
        return self._tokens[key]


@pytest.fixture(scope="session", autouse=True)
def identity(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestIdentity]:
    root = tmp_path_factory.mktemp("identity")
    url = sqlite_url(root / "identity.db")
    provision(url, root, root / "config" / "token", person=DEFAULT_PERSON)
    patch = pytest.MonkeyPatch()
    patch.setenv("QSCHED_IDENTITY_DATABASE_URL", url)
    patch.setenv("QSCHED_CONFIG_DIR", str(root / "config"))
    patch.setenv("QSCHED_SERVICE_TOKEN", (root / "secrets" / "scheduler.token").read_text().strip())
    patch.setenv("QSCHED_CALIBRATOR_TOKEN", (root / "secrets" / "calibrator.token").read_text().strip())
    patch.delenv("QSCHED_TOKEN", raising=False)
    patch.delenv("QSCHED_TOKEN_FILE", raising=False)
    store = IdentityStore(make_engine(url))
    try:
        yield TestIdentity(url, root, store)
    finally:
        store.close()
        patch.undo()


def up_environment(config_dir: Path) -> dict[str, str]:
    """The environment for a `qsched up` child (and the CLI calls against it): none of the
    session's identity, and a config dir of its own where up writes the person's token."""
    env = {k: v for k, v in os.environ.items() if k not in SESSION_ENV}
    env["QSCHED_CONFIG_DIR"] = str(config_dir)
    return env


# Calls a person never makes: the scheduler drives executors and the gateway and pins configs.
_SCHEDULER_CALLS = (
    "/qsched.executor.v1.HardwareExecutorService/",
    "/qsched.gateway.v1.ProviderGatewayService/",
    "/qsched.configs.v1.ConfigService/PinConfigs",
)


class _RoutedBearer:
    def __init__(self, person: str, service: str):
        self._person, self._service = person, service

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        token = self._service if method.startswith(_SCHEDULER_CALLS) else self._person
        return with_bearer(details, token, aio=True)


# An aio channel files each interceptor under one call type, hence one class per type.
class _RoutedUnaryUnary(_RoutedBearer, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def,override]
        return await continuation(self._details(client_call_details), request)


class _RoutedUnaryStream(_RoutedBearer, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def,override]
        return await continuation(self._details(client_call_details), request)


class _RoutedStreamStream(_RoutedBearer, grpc.aio.StreamStreamClientInterceptor):  # reflection
    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def,override]
        return await continuation(self._details(client_call_details), request_iterator)


def authed_channel(address: str, token: str | None = None, options: object = None) -> grpc.aio.Channel:
    """An aio channel for raw stubs in tests: a person's token (alice's by default) on
    people's calls, the scheduler's service token on the calls only the scheduler makes."""
    root = Path(os.environ["QSCHED_CONFIG_DIR"]).parent
    person = token or (root / "config" / "token").read_text().strip()
    service = os.environ["QSCHED_SERVICE_TOKEN"]
    interceptors = [
        _RoutedUnaryUnary(person, service),
        _RoutedUnaryStream(person, service),
        _RoutedStreamStream(person, service),
    ]
    return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)  # type: ignore[arg-type]
