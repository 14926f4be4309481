"""Alembic environment of the identity database (see qsched_runtime.migrations); the
version is kept in alembic_version_identity."""

from qsched_identity.models import metadata
from qsched_runtime.migrations import run_env

run_env(metadata)
