"""Job storage behind one narrow interface: an in-memory fake for unit tests and
SQLAlchemy (SQLite, PostgreSQL) for everything else."""

from qsched_scheduler.store.base import JobStore, RunUpdate, SubmitOutcome

__all__ = ["JobStore", "RunUpdate", "SubmitOutcome"]
