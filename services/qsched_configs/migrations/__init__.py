"""Alembic migrations of the config database (see qsched_configs.db)."""
