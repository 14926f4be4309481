"""Provisioning a fresh installation on this machine (`qsched up`, `qsched admin init`):
the identity schema, the first person with every role, their token in their config
directory (0600), and the service principals' tokens in <data_dir>/secrets (0700).

Idempotent: a token that still authenticates is kept; a missing or stale one is replaced."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from qsched.credentials import save_token
from qsched_core.config import secrets_dir
from qsched_core.principal import HUMAN_ROLES, Kind, Role
from qsched_core.sql import make_engine
from qsched_identity import db
from qsched_identity.store import IdentityStore
from qsched_identity.tokens import token_hash

# Service principals and what they may do; the executor only reads pinned configs; the scheduler
# pushes passing calibration fits as the calibrator (docs/calibration.md).
SERVICE_PRINCIPALS = {
    "scheduler": frozenset({Role.SCHEDULER}),
    "executor": frozenset(),
    "calibrator": frozenset({Role.CALIBRATOR}),
}
PROVISIONER = "qsched-provisioning"


@dataclass
class Provisioned:
    person: str
    person_token_file: Path | None = None  # None: this OS user has no account here
    created: list[str] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def service_principal(service: str) -> str:
    return f"svc-{service}"


def provision(url: str, data_dir: Path, token_file: Path, person: str | None = None) -> Provisioned:
    person = person or getpass.getuser()
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    db.upgrade(url)
    store = IdentityStore(make_engine(url))
    now = datetime.now(UTC)
    report = Provisioned(person)
    try:
        people = [u for u in store.list_users() if u.kind is Kind.USER]
        if store.get_user(person) is None:
            if people:
                report.notes.append(
                    f"{person} has no qsched account here; ask an admin "
                    f"(`qsched admin user add {person}` then `qsched admin user token {person}`)"
                )
                report.person_token_file = None
            else:  # the first person: whoever starts the installation runs it
                store.create_user(person, Kind.USER, HUMAN_ROLES, PROVISIONER, now)
                report.created.append(person)
        if store.get_user(person) is not None:
            if _ensure_token(store, person, token_file, f"{person} on {os.uname().nodename}", now):
                report.issued.append(person)
            report.person_token_file = token_file
        secrets = secrets_dir(data_dir)
        secrets.mkdir(mode=0o700, parents=True, exist_ok=True)
        secrets.chmod(0o700)
        for service, roles in SERVICE_PRINCIPALS.items():
            name = service_principal(service)
            if store.get_user(name) is None:
                store.create_user(name, Kind.SERVICE, roles, PROVISIONER, now)
                report.created.append(name)
            if _ensure_token(store, name, secrets / f"{service}.token", f"{service} service", now):
                report.issued.append(name)
    finally:
        store.close()
    return report


def _ensure_token(store: IdentityStore, name: str, path: Path, label: str, now: datetime) -> bool:
    """Keep the token in `path` if it is an active token of `name`; else issue and save one."""
    try:
        current = path.read_text().strip()
    except FileNotFoundError:
        current = ""
    if current:
        found = store.lookup(token_hash(current))
        if found.principal is not None and found.principal.name == name:
            return False
    _, secret = store.issue_token(name, label, now)
    save_token(secret, path)
    return True
