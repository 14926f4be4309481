"""The task registry's tables (SQLAlchemy Core). The schema is created by the Alembic migrations in
qsched_gateway/migrations, which these tables must match. Every table is prefixed `gateway_` and
the version table is `alembic_version_gateway`, so the database may be shared with the other
services'. Times are seconds since the epoch (as time.time() gives them); JSON is stored as text."""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table, Text

from qsched_core.sql import NAMING_CONVENTION, JsonText

metadata = MetaData(naming_convention=NAMING_CONVENTION)

submissions = Table(
    "gateway_submissions",
    metadata,
    Column("submission_id", String(64), primary_key=True),
    Column("request_id", String(200), nullable=True, unique=True),
    Column("job_id", String(64), nullable=False),
    Column("device", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # circuits | benchmark | suite
    Column("spec", JsonText, nullable=False),  # what scoring needs: configs, parts, device metadata
    Column("task_ids", JsonText, nullable=False),
    Column("created", Float, nullable=False),
)

tasks = Table(
    "gateway_tasks",
    metadata,
    Column("task_id", String(200), primary_key=True),
    Column("submission_id", String(64), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("device", String(200), nullable=False),
    Column("native_id", String(200), nullable=False),
    Column("circuit_indices", JsonText, nullable=False),
    Column("shots", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("provider_status", Text, nullable=False, server_default=""),
    Column("message", Text, nullable=False, server_default=""),
    Column("queue_position", Integer, nullable=False, server_default="0"),
    Column("meta", JsonText, nullable=False),  # non-secret provider metadata to find the task again
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
    Index("ix_gateway_tasks_submission_id", "submission_id"),
    Index("ix_gateway_tasks_provider_state", "provider", "state"),
)

results = Table(
    "gateway_results",
    metadata,
    Column("task_id", String(200), primary_key=True),
    Column("result", JsonText, nullable=False),  # counts, circuit_indices, execution_seconds, metadata
)
