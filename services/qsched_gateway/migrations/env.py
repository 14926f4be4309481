"""Alembic environment of the gateway's task registry (see qsched_core.migrations); the
version is kept in alembic_version_gateway."""

from qsched_core.migrations import run_env
from qsched_gateway.models import metadata

run_env(metadata)
