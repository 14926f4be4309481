"""Typed configuration shared by the services and `qsched up`.

Values come from command-line flags, then QSCHED_* environment variables, then
these defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

EXPORTERS = ("none", "console", "otlp", "memory")
SERVICES = ("scheduler", "configs", "gateway", "executor")
DEFAULT_PORTS = {"scheduler": 50051, "configs": 50052, "gateway": 50053, "executor": 50054}


def default_data_dir() -> Path:
    env = os.environ.get("QSCHED_DATA_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("qsched"))


def secrets_dir(data_dir: Path) -> Path:
    """Service credentials written by `qsched up` / `qsched admin init` (0700)."""
    return Path(data_dir) / "secrets"


def default_address(service: str) -> str:
    env = os.environ.get(f"QSCHED_{service.upper()}_ADDRESS")
    return env or f"127.0.0.1:{DEFAULT_PORTS[service]}"


@dataclass(frozen=True)
class Endpoints:
    """Where each service listens (and where the others reach it)."""

    scheduler: str = field(default_factory=lambda: default_address("scheduler"))
    configs: str = field(default_factory=lambda: default_address("configs"))
    gateway: str = field(default_factory=lambda: default_address("gateway"))
    executor: str = field(default_factory=lambda: default_address("executor"))

    def of(self, service: str) -> str:
        return getattr(self, service)

    def as_args(self) -> list[str]:
        return [arg for service in SERVICES for arg in (f"--{service}-address", self.of(service))]


@dataclass(frozen=True)
class ServiceConfig:
    """Everything one service process needs."""

    service: str
    endpoints: Endpoints = field(default_factory=Endpoints)
    data_dir: Path = field(default_factory=default_data_dir)
    trace_exporter: str = field(default_factory=lambda: os.environ.get("QSCHED_TRACE_EXPORTER", "none"))
    database_url: str = field(default_factory=lambda: os.environ.get("QSCHED_DATABASE_URL", ""))
    # The config service's own database ("" = SQLite <data_dir>/configs.db).
    configs_database_url: str = field(
        default_factory=lambda: os.environ.get("QSCHED_CONFIGS_DATABASE_URL", "")
    )
    # The gateway's task registry ("" = SQLite <data_dir>/gateway/tasks.db).
    gateway_database_url: str = field(
        default_factory=lambda: os.environ.get("QSCHED_GATEWAY_DATABASE_URL", "")
    )
    # Lab devices the scheduler queues for: name -> executor address.
    lab_devices: dict[str, str] = field(default_factory=dict)
    # Scheduler: pin config revisions (config service) for every lab run.
    pin_configs: bool = True
    # Scheduler: dispatch the devices (False: a replica that serves the API and its watchers
    # only, beside one that dispatches; issue 15 replaces this with leases).
    dispatch: bool = True
    # Hardware executor: "sim" or pyro://HOST:PORT/NAME.
    board: str = field(default_factory=lambda: os.environ.get("QSCHED_BOARD", "sim"))
    # Simulated board: device-model YAML ("" = the shipped default).
    device_model: str = field(default_factory=lambda: os.environ.get("QSCHED_DEVICE_MODEL", ""))
    # Config service: a hardware-config file pushed as the first main hardware_config at start, before
    # the service reports SERVING, when there is none yet ("" = no seeding; `qsched up` sets it).
    seed_hardware_config: str = field(
        default_factory=lambda: os.environ.get("QSCHED_SEED_HARDWARE_CONFIG", "")
    )
    # Server reflection needs a token too (default: open like health, the contract is public).
    reflection_requires_auth: bool = field(
        default_factory=lambda: os.environ.get("QSCHED_REFLECTION_REQUIRES_AUTH", "") in ("1", "true", "yes")
    )
    # Local hardware-config file used when a run pins none ("" = the shipped default).
    hardware_config: str = field(default_factory=lambda: os.environ.get("QSCHED_HARDWARE_CONFIG", ""))
    # Where run data files go ("" = <data_dir>/data).
    data_root: str = field(default_factory=lambda: os.environ.get("QSCHED_DATA_ROOT", ""))
    # Hardware executor: processes writing run data files (0 = a thread of the executor).
    data_writers: int = 3
    # Packages lab experiment plug-ins may be imported from (nothing else is imported).
    experiment_packages: tuple[str, ...] = ()
    # The experiment repository (docs/experiments.md): a local git repository plug-ins run from,
    # at the commit a job pinned at submit ("" = none); where its packages sit in it ("" = its
    # top); where commits are unpacked ("" = <data_dir>/experiment-cache); what this device does
    # with uncommitted changes in a working tree code comes from: "flag" or "refuse".
    experiment_repo: str = field(default_factory=lambda: os.environ.get("QSCHED_EXPERIMENT_REPO", ""))
    experiment_repo_root: str = ""
    experiment_cache: str = ""
    dirty_tree: str = "flag"
    # Directory of the per-board lock files ("" = <data_dir>/locks).
    lock_dir: str = field(default_factory=lambda: os.environ.get("QSCHED_LOCK_DIR", ""))
    # HMAC key for a Pyro4 board (environment only, never a flag).
    board_hmac_key: str = field(default_factory=lambda: os.environ.get("QSCHED_BOARD_HMAC_KEY", ""))
    # -- security (README "Users, roles and tokens") --
    # Users, tokens and the audit log ("" = SQLite <data_dir>/identity.db).
    identity_database_url: str = field(
        default_factory=lambda: os.environ.get("QSCHED_IDENTITY_DATABASE_URL", "")
    )
    # How long a resolved token is trusted before the database is asked again.
    auth_cache_seconds: float = 1.0
    # This service's own credential for calls to its peers ("" = <data_dir>/secrets/<service>.token;
    # $QSCHED_SERVICE_TOKEN, if set, wins).
    service_token_file: str = field(default_factory=lambda: os.environ.get("QSCHED_SERVICE_TOKEN_FILE", ""))
    # TLS: this server's certificate and key (PEM); with a client CA, clients must present a
    # certificate it signed (mutual TLS). `tls_ca_file` is what this service trusts when it
    # calls its peers.
    tls_cert_file: str = field(default_factory=lambda: os.environ.get("QSCHED_TLS_SERVER_CERT", ""))
    tls_key_file: str = field(default_factory=lambda: os.environ.get("QSCHED_TLS_SERVER_KEY", ""))
    tls_client_ca_file: str = field(default_factory=lambda: os.environ.get("QSCHED_TLS_CLIENT_CA", ""))
    tls_ca_file: str = field(default_factory=lambda: os.environ.get("QSCHED_TLS_CA", ""))
    # Listen on a non-loopback address without TLS (e.g. inside a private container network).
    allow_plaintext: bool = False
    # -- scheduler quotas and limits (operators are exempt from the priority limit) --
    max_queued_per_user: int = 1000
    max_payload_bytes_per_job: int = 1024 * 1024
    max_user_priority: int = 10
    # -- the order within a priority per device (docs/scheduling.md): comma-separated devices that
    # use fair share ("*": all); the others are FIFO.
    fair_share_devices: str = field(default_factory=lambda: os.environ.get("QSCHED_FAIR_SHARE_DEVICES", ""))

    @property
    def listen(self) -> str:
        return self.endpoints.of(self.service)

    def token_path(self) -> Path:
        return (
            Path(self.service_token_file)
            if self.service_token_file
            else secrets_dir(self.data_dir) / (f"{self.service}.token")
        )

    def devices(self) -> dict[str, str]:
        return self.lab_devices or {"qick": self.endpoints.executor}
