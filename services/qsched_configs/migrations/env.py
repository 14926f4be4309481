"""Alembic environment of the config database (see qsched_core.migrations); the
version is kept in alembic_version_configs."""

from qsched_configs.store.models import metadata
from qsched_core.migrations import run_env

run_env(metadata)
