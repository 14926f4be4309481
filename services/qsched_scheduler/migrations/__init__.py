"""Alembic migrations of the scheduler database (run them with qsched_scheduler.db)."""
