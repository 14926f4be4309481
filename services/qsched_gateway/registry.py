"""The durable task registry: on the shared SQL runtime (SQLite `<data_dir>/gateway/tasks.db` by
default, or the database `gateway_database_url` names), its schema under Alembic (`db.py`).

Every gateway task id maps to the provider, device and provider-native id needed to find the task again,
its last known state, and (once fetched) its result, so Watch, Cancel and FetchResult work after any
restart. Submissions keep what scoring needs (benchmark configs and expected outcomes). Credentials are
never written here."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, Row, Select, delete, insert, select, update

from qsched_core.sql import read_only
from qsched_gateway.errors import InvalidArgument, unknown_task
from qsched_gateway.models import results, submissions, tasks

QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED = "QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})


@dataclass
class TaskRecord:
    task_id: str
    submission_id: str
    provider: str
    device: str
    native_id: str
    circuit_indices: list[int]
    shots: int
    state: str = QUEUED
    provider_status: str = ""
    message: str = ""
    queue_position: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


@dataclass
class Submission:
    submission_id: str
    request_id: str | None
    job_id: str
    device: str
    kind: str  # circuits | benchmark | suite
    spec: dict[str, Any]
    task_ids: list[str]
    created: float = field(default_factory=time.time)


@dataclass
class TaskResultData:
    """Counts per circuit (index into the submission's circuits), device time, provider metadata."""

    counts: list[dict[str, int]]
    circuit_indices: list[int]
    execution_seconds: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)


class Registry:
    """The registry behind a narrow interface, on the shared SQL runtime (SQLite or PostgreSQL).
    Methods block (the adapters call them from their threads, the gateway from the loop)."""

    def __init__(self, engine: Engine):
        self._engine = engine
        self._reader = read_only(engine)

    def close(self) -> None:
        self._engine.dispose()

    # submissions
    def add_submission(self, submission: Submission, records: list[TaskRecord]) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                insert(submissions).values(
                    submission_id=submission.submission_id,
                    request_id=submission.request_id or None,
                    job_id=submission.job_id,
                    device=submission.device,
                    kind=submission.kind,
                    spec=submission.spec,
                    task_ids=submission.task_ids,
                    created=submission.created,
                )
            )
            if records:
                conn.execute(insert(tasks), [_task_row(task) for task in records])

    def submission(self, submission_id: str) -> Submission:
        row = self._one(select(submissions).where(submissions.c.submission_id == submission_id))
        if row is None:
            raise InvalidArgument(
                "UNKNOWN_SUBMISSION", f"unknown submission {submission_id!r}", submission_id=submission_id
            )
        return _submission(row)

    def submission_by_request(self, request_id: str) -> Submission | None:
        if not request_id:
            return None
        row = self._one(select(submissions).where(submissions.c.request_id == request_id))
        return _submission(row) if row else None

    # tasks
    def task(self, task_id: str) -> TaskRecord:
        row = self._one(select(tasks).where(tasks.c.task_id == task_id))
        if row is None:
            raise unknown_task(task_id)
        return _task(row)

    def tasks(self, task_ids: list[str]) -> list[TaskRecord]:
        return [self.task(task_id) for task_id in task_ids]

    def tasks_in_state(self, provider: str, states: tuple[str, ...]) -> list[TaskRecord]:
        query = select(tasks).where(tasks.c.provider == provider, tasks.c.state.in_(states))
        with self._reader.connect() as conn:
            return [_task(row) for row in conn.execute(query)]

    def update(
        self,
        task_id: str,
        state: str,
        *,
        provider_status: str | None = None,
        message: str | None = None,
        queue_position: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> TaskRecord:
        """Record a new status. A terminal state is final: later updates are ignored."""
        with self._engine.begin() as conn:  # read and write in one (write-locked) transaction
            row = conn.execute(select(tasks).where(tasks.c.task_id == task_id)).first()
            if row is None:
                raise unknown_task(task_id)
            task = _task(row)
            if task.terminal:
                return task
            task.state = state
            if provider_status is not None:
                task.provider_status = provider_status
            if message is not None:
                task.message = message
            if queue_position is not None:
                task.queue_position = queue_position
            if meta:
                task.meta.update(meta)
            task.updated = time.time()
            conn.execute(
                update(tasks)
                .where(tasks.c.task_id == task_id)
                .values(
                    state=task.state,
                    provider_status=task.provider_status,
                    message=task.message,
                    queue_position=task.queue_position,
                    meta=task.meta,
                    updated=task.updated,
                )
            )
            return task

    # results
    def save_result(self, task_id: str, result: TaskResultData) -> None:
        value = {
            "counts": result.counts,
            "circuit_indices": result.circuit_indices,
            "execution_seconds": result.execution_seconds,
            "metadata": result.metadata,
        }
        with self._engine.begin() as conn:  # replace: a result fetched again overwrites the first
            conn.execute(delete(results).where(results.c.task_id == task_id))
            conn.execute(insert(results).values(task_id=task_id, result=value))

    def result(self, task_id: str) -> TaskResultData | None:
        row = self._one(select(results.c.result).where(results.c.task_id == task_id))
        if row is None:
            return None
        data = row.result
        return TaskResultData(
            counts=data["counts"],
            circuit_indices=data["circuit_indices"],
            execution_seconds=data["execution_seconds"],
            metadata=data["metadata"],
        )

    def _one(self, query: Select) -> Row | None:
        with self._reader.connect() as conn:
            return conn.execute(query).first()


def _task_row(task: TaskRecord) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "submission_id": task.submission_id,
        "provider": task.provider,
        "device": task.device,
        "native_id": task.native_id,
        "circuit_indices": task.circuit_indices,
        "shots": task.shots,
        "state": task.state,
        "provider_status": task.provider_status,
        "message": task.message,
        "queue_position": task.queue_position,
        "meta": task.meta,
        "created": task.created,
        "updated": task.updated,
    }


def _task(row: Row) -> TaskRecord:
    return TaskRecord(**row._asdict())


def _submission(row: Row) -> Submission:
    return Submission(**row._asdict())
