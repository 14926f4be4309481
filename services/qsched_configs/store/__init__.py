"""Config storage behind one narrow interface (ConfigStore); SqlConfigStore keeps it
in SQLite or PostgreSQL through SQLAlchemy."""

from qsched_configs.store.base import ConfigStore

__all__ = ["ConfigStore"]
