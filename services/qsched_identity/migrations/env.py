"""Alembic environment of the identity database (see qsched_core.migrations); the
version is kept in alembic_version_identity."""

from qsched_core.migrations import run_env
from qsched_identity.models import metadata

run_env(metadata)
