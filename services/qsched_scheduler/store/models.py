"""The scheduler's tables (SQLAlchemy 2 declarative). The schema itself is created
by the Alembic migrations in qsched_scheduler/migrations; these models must match
them (tests/scheduler/test_store_sql.py compares the two).

Timestamps are stored as UTC and always come back timezone-aware; JSON columns
are plain text so SQLite and PostgreSQL store them the same way."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from qsched_core.sql import NAMING_CONVENTION, BigId, JsonText, UtcDateTime

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# The one index that makes "at most one RUNNING job per device" a database rule.
ONE_RUNNING_PER_DEVICE = "uq_jobs_one_running_per_device"
# Lab runs only: a provider device (a cloud QPU, a simulator) takes several jobs at once.
RUNNING_ONLY = "state = 'RUNNING' AND kind = 'LAB_EXPERIMENT'"


class Base(DeclarativeBase):
    metadata = metadata


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)  # Job.order
    job_id: Mapped[str] = mapped_column(String(32), unique=True)
    owner: Mapped[str] = mapped_column(String(128))
    device: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))  # JobKind value
    priority: Mapped[int] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(JsonText)  # Payload.body
    state: Mapped[str] = mapped_column(String(16))  # JobState value
    create_time: Mapped[datetime] = mapped_column(UtcDateTime)
    start_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    end_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    error_reason: Mapped[str | None] = mapped_column(String(128))
    error_message: Mapped[str | None] = mapped_column(Text)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    cancel_requested: Mapped[bool] = mapped_column(Boolean)
    labels: Mapped[dict[str, str]] = mapped_column(JsonText)
    trace_parent: Mapped[str] = mapped_column(String(128))
    request_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    # FIFO key within a priority, from the QUEUE-ORDER counter; a re-run takes a new one.
    queue_order: Mapped[int] = mapped_column(BigInteger)
    rerun_request_id: Mapped[str | None] = mapped_column(String(128))
    # Pipelined dispatch: the task id of a run handed to the executor ahead of time, while
    # the job is still QUEUED (it becomes the job's run when the executor starts it).
    staged_task_id: Mapped[str | None] = mapped_column(String(36))
    # The job's task id: its latest run's, or, while it waits, the one its next run takes
    # (allocated at submit and at rerun, so a handle can follow and cancel it by task id).
    task_id: Mapped[str | None] = mapped_column(String(36))

    # sqlite_autoincrement: never reuse an order, not even that of a deleted newest job.
    __table_args__ = {"sqlite_autoincrement": True}


# The run order of a device's queue: claim_next, queue_position, queued_count.
Index("ix_jobs_queue", JobRow.device, JobRow.state, JobRow.priority.desc(), JobRow.queue_order)
# Pipelined dispatch: the few staged jobs only (partial, so the queue's "IS NULL" never uses it).
STAGED_ONLY = "staged_task_id IS NOT NULL"
Index(
    "ix_jobs_staged_task_id",
    JobRow.staged_task_id,
    unique=True,
    sqlite_where=text(STAGED_ONLY),
    postgresql_where=text(STAGED_ONLY),
)
# GetJob / CancelJob / WatchJob by task id, before the job's run exists.
Index("ix_jobs_task_id", JobRow.task_id, unique=True)
Index(
    ONE_RUNNING_PER_DEVICE,
    JobRow.device,
    unique=True,
    sqlite_where=text(RUNNING_ONLY),
    postgresql_where=text(RUNNING_ONLY),
)


class RunRow(Base):
    __tablename__ = "runs"

    task_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    job_pk: Mapped[int] = mapped_column(Integer, ForeignKey("jobs.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    start_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    end_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    progress: Mapped[float] = mapped_column(Float)
    error_reason: Mapped[str | None] = mapped_column(String(128))
    error_message: Mapped[str | None] = mapped_column(Text)
    data_file_path: Mapped[str] = mapped_column(Text)
    summary: Mapped[dict[str, float]] = mapped_column(JsonText)
    config_revisions: Mapped[dict[str, str]] = mapped_column(JsonText)
    provider_task_ids: Mapped[list[str]] = mapped_column(JsonText)
    executor_seq: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any]] = mapped_column(JsonText)  # the settings the run used
    provider_submission_id: Mapped[str | None] = mapped_column(String(128))
    result_json: Mapped[str | None] = mapped_column(Text)  # cached provider results
    result_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Lab runs: handed to the executor's queue and not started (its job is still QUEUED).
    staged: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # Why the queue policy picked the run (policy name, one line, JSON details).
    reason_policy: Mapped[str] = mapped_column(String(64), server_default="")
    reason_summary: Mapped[str] = mapped_column(Text, server_default="")
    reason_details: Mapped[dict[str, Any]] = mapped_column(JsonText, server_default="{}")
    # The data file (its name is data_file_path, relative to the executor's data root).
    data_sha256: Mapped[str] = mapped_column(String(64), server_default="")
    data_size_bytes: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # Lab runs: the code that ran it (CodeProvenance.to_dict), from the executor's terminal
    # update; NULL before it ends and for runs from before it was recorded.
    code: Mapped[dict[str, Any] | None] = mapped_column(JsonText, nullable=True)

    __table_args__ = (UniqueConstraint("job_pk", "attempt"),)


# The most recent finished runs (typical run time, for estimates).
Index("ix_runs_state", RunRow.state, RunRow.end_time)


class EventRow(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_pk: Mapped[int] = mapped_column(Integer, ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    time: Mapped[datetime] = mapped_column(UtcDateTime)
    state: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    progress: Mapped[float] = mapped_column(Float)
    task_id: Mapped[str] = mapped_column(String(36))
    # Log lines of a log event (live output), as JSON {"lines": [...], "dropped": n}; NULL otherwise.
    log: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (UniqueConstraint("job_pk", "seq"), {"sqlite_autoincrement": True})


class IdCounterRow(Base):
    """The per-day job id counters (prefix JOB-YYYYMMDD -> last number handed out)."""

    __tablename__ = "id_counters"

    prefix: Mapped[str] = mapped_column(String(32), primary_key=True)
    counter: Mapped[int] = mapped_column(BigInteger)


class QueueCountRow(Base):
    """Queued jobs per (device, priority), kept in step with jobs.state in the same
    transactions: queue depths and the position of a new job without counting the queue."""

    __tablename__ = "queue_counts"

    device: Mapped[str] = mapped_column(String(128), primary_key=True)
    priority: Mapped[int] = mapped_column(Integer, primary_key=True)
    queued: Mapped[int] = mapped_column(BigInteger)


Index("ix_jobs_owner_state", JobRow.owner, JobRow.state)


class DeviceHoldRow(Base):
    """A held device queue (PauseDevice / DrainDevice); no row = open."""

    __tablename__ = "device_holds"

    device: Mapped[str] = mapped_column(String(128), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16))  # PAUSED | DRAINING
    reason: Mapped[str] = mapped_column(Text)
    held_by: Mapped[str] = mapped_column(String(64))
    hold_time: Mapped[datetime] = mapped_column(UtcDateTime)


class ReservationRow(Base):
    """A window of a device's calendar (calendar.py); cancelled ones are kept for the record."""

    __tablename__ = "reservations"

    reservation_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    device: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # EXCLUSIVE | CALIBRATION | MAINTENANCE
    start_time: Mapped[datetime] = mapped_column(UtcDateTime)
    end_time: Mapped[datetime] = mapped_column(UtcDateTime)
    holders: Mapped[str] = mapped_column(Text)  # comma-separated user names
    hard_end: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    create_time: Mapped[datetime] = mapped_column(UtcDateTime)
    cancelled: Mapped[bool] = mapped_column(Boolean)
    cancelled_by: Mapped[str] = mapped_column(String(64))


Index("ix_reservations_device_end", ReservationRow.device, ReservationRow.end_time)


class SessionRow(Base):
    """A session on a device (sessions.py); ended ones are kept for the record."""

    __tablename__ = "sessions"

    session_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    device: Mapped[str] = mapped_column(String(128))
    owner: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # OPEN | CLOSING | ENDED
    open_time: Mapped[datetime] = mapped_column(UtcDateTime)
    max_length_s: Mapped[float] = mapped_column(Float)
    idle_timeout_s: Mapped[float] = mapped_column(Float)
    failure_policy: Mapped[str] = mapped_column(String(16))  # CONTINUE | ABORT
    end_time: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    end_reason: Mapped[str] = mapped_column(Text)


Index("ix_sessions_state", SessionRow.state)


class CalibrationStateRow(Base):
    """What is known of one calibration on one device (issue 14; calibration/sql_store.py)."""

    __tablename__ = "calibration_states"

    device: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    job_id: Mapped[str] = mapped_column(String(64), server_default="")
    last_run_time: Mapped[datetime | None] = mapped_column(UtcDateTime())
    passed_time: Mapped[datetime | None] = mapped_column(UtcDateTime())
    fresh_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revision_id: Mapped[str] = mapped_column(String(64), server_default="")
    values: Mapped[dict[str, Any]] = mapped_column(JsonText(), server_default="{}")
    failures: Mapped[int] = mapped_column(Integer(), server_default="0")
    last_error: Mapped[str] = mapped_column(Text(), server_default="")


class DeviceLeaseRow(Base):
    """Which scheduler replica dispatches a device (leases.py): its holder, the epoch that fences
    a holder that lost it, and when it expires (seconds since the epoch, the database's clock)."""

    __tablename__ = "device_leases"

    device: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    epoch: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[float] = mapped_column(Float)
    # What the holder last saw of the device's executor (ListDevices on every replica).
    executor_state: Mapped[str] = mapped_column(String(16), server_default="")
    executor_since: Mapped[float] = mapped_column(Float, server_default="0")
    executor_message: Mapped[str] = mapped_column(Text, server_default="")
