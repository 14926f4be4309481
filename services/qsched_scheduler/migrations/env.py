"""Alembic environment of the scheduler database (see qsched_core.migrations)."""

from qsched_core.migrations import run_env
from qsched_scheduler.store.models import metadata

run_env(metadata)
