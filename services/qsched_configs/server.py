"""Builds the config-versioning service from its configuration: migrates its own
database (SQLite `<data_dir>/configs.db` unless `configs_database_url` names one,
e.g. PostgreSQL) and serves qsched.configs.v1.ConfigService."""

from __future__ import annotations

import getpass
from pathlib import Path

from qsched.api.configs.v1 import configs_pb2 as pb
from qsched.api.configs.v1 import configs_pb2_grpc as pb_grpc
from qsched_configs import db
from qsched_configs.servicer import ConfigServicer
from qsched_configs.store.sql import SqlConfigStore
from qsched_configs.versioning import ConfigVersioning, Upload
from qsched_core.config import ServiceConfig
from qsched_core.errors import Aborted, NotFound
from qsched_core.pagination import page_key
from qsched_core.principal import Role
from qsched_core.sql import make_engine
from qsched_identity.audit import AuditLog
from qsched_runtime.auth import Anyone
from qsched_runtime.security import server_security
from qsched_runtime.server import Registration
from qsched_runtime.service import ServiceHandle

PAGE_KEY_FILE = "configs-page-token.key"


def database_url(config: ServiceConfig) -> str:
    return config.configs_database_url or db.sqlite_url_for(config.data_dir)


# Reads are open to every authenticated principal (the executor reads pinned revisions);
# new revisions come from people; moving "main" is a calibrator's decision. Watching main tells
# no more than GetMain and ListMainHistory do, so it is open like them (the scheduler's
# principal is the watcher that matters; a watcher costs one stream, the poll is shared).
POLICY = {
    "CreateRevision": Anyone.PERSON,
    "GetRevision": Anyone.PRINCIPAL,
    "ListRevisions": Anyone.PRINCIPAL,
    "GetMain": Anyone.PRINCIPAL,
    "SetMain": Role.CALIBRATOR,
    "PushToMain": Role.CALIBRATOR,
    "DiffRevisions": Anyone.PRINCIPAL,
    "ListMainHistory": Anyone.PRINCIPAL,
    "ListConfigTypes": Anyone.PRINCIPAL,
    "RegisterConfigType": Role.ADMIN,
    "PinConfigs": Role.SCHEDULER,
    "WatchMainRevisions": Anyone.PRINCIPAL,
}


async def build(config: ServiceConfig) -> ServiceHandle:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    security = server_security(config)
    url = database_url(config)
    db.upgrade(url)  # idempotent; a new data directory gets its schema (and the seed types) here
    versioning = ConfigVersioning(SqlConfigStore(make_engine(url)), page_key(config.data_dir / PAGE_KEY_FILE))
    name = pb.DESCRIPTOR.services_by_name["ConfigService"].full_name
    registration = Registration(
        name,
        lambda server: pb_grpc.add_ConfigServiceServicer_to_server(
            ConfigServicer(versioning, AuditLog(security.authenticator)), server
        ),
        POLICY,
    )

    async def start() -> None:
        if config.seed_hardware_config:
            await seed_main(versioning, "hardware_config", Path(config.seed_hardware_config))

    return ServiceHandle([registration], start=start, stop=versioning.close, security=security)


async def seed_main(versioning: ConfigVersioning, config_type: str, path: Path) -> str:
    """Push `path` as the first main of `config_type` when it has none (a fresh stack: every lab run
    pins one), before the service reports SERVING. Returns the new revision id, or ""."""
    try:
        await versioning.get_main(config_type)
        return ""
    except NotFound:
        pass
    upload = Upload(config_type, path.read_bytes(), None, path.name, f"{getpass.getuser()} (seeded at start)")
    try:
        outcome = await versioning.push_to_main(upload, "")
    except Aborted:  # another replica seeded it meanwhile
        return ""
    revision = outcome.state.revision.revision_id
    print(f"Seeded the main {config_type} ({revision}) from {path}.", flush=True)
    return revision
