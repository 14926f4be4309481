"""The durable task registry: SQLite in the gateway's data directory.

Every gateway task id maps to the provider, device and provider-native id needed to find the task again,
its last known state, and (once fetched) its result, so Watch, Cancel and FetchResult work after any
restart. Submissions keep what scoring needs (benchmark configs and expected outcomes). Credentials are
never written here."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qsched_gateway.errors import InvalidArgument, unknown_task

QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED = "QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    submission_id TEXT PRIMARY KEY,
    request_id TEXT UNIQUE,
    job_id TEXT NOT NULL,
    device TEXT NOT NULL,
    kind TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    task_ids_json TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    submission_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    device TEXT NOT NULL,
    native_id TEXT NOT NULL,
    circuit_indices_json TEXT NOT NULL,
    shots INTEGER NOT NULL,
    state TEXT NOT NULL,
    provider_status TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    queue_position INTEGER NOT NULL DEFAULT 0,
    meta_json TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_by_submission ON tasks (submission_id);
CREATE TABLE IF NOT EXISTS results (
    task_id TEXT PRIMARY KEY,
    result_json TEXT NOT NULL
);
"""


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
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # submissions
    def add_submission(self, submission: Submission, tasks: list[TaskRecord]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO submissions VALUES (?,?,?,?,?,?,?,?)",
                    (
                        submission.submission_id,
                        submission.request_id or None,
                        submission.job_id,
                        submission.device,
                        submission.kind,
                        json.dumps(submission.spec),
                        json.dumps(submission.task_ids),
                        submission.created,
                    ),
                )
                for task in tasks:
                    self._insert_task(task)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def submission(self, submission_id: str) -> Submission:
        row = self._one("SELECT * FROM submissions WHERE submission_id=?", (submission_id,))
        if row is None:
            raise InvalidArgument(
                "UNKNOWN_SUBMISSION", f"unknown submission {submission_id!r}", submission_id=submission_id
            )
        return _submission(row)

    def submission_by_request(self, request_id: str) -> Submission | None:
        if not request_id:
            return None
        row = self._one("SELECT * FROM submissions WHERE request_id=?", (request_id,))
        return _submission(row) if row else None

    # tasks
    def _insert_task(self, task: TaskRecord) -> None:
        self._db.execute(
            "INSERT INTO tasks VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                task.task_id,
                task.submission_id,
                task.provider,
                task.device,
                task.native_id,
                json.dumps(task.circuit_indices),
                task.shots,
                task.state,
                task.provider_status,
                task.message,
                task.queue_position,
                json.dumps(task.meta),
                task.created,
                task.updated,
            ),
        )

    def task(self, task_id: str) -> TaskRecord:
        row = self._one("SELECT * FROM tasks WHERE task_id=?", (task_id,))
        if row is None:
            raise unknown_task(task_id)
        return _task(row)

    def tasks(self, task_ids: list[str]) -> list[TaskRecord]:
        return [self.task(task_id) for task_id in task_ids]

    def tasks_in_state(self, provider: str, states: tuple[str, ...]) -> list[TaskRecord]:
        marks = ",".join("?" * len(states))
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM tasks WHERE provider=? AND state IN ({marks})", (provider, *states)
            ).fetchall()
        return [_task(row) for row in rows]

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
        with self._lock:
            row = self._db.execute("SELECT * FROM tasks WHERE task_id=?", (task_id,)).fetchone()
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
            self._db.execute(
                "UPDATE tasks SET state=?, provider_status=?, message=?, queue_position=?, meta_json=?, "
                "updated=? WHERE task_id=?",
                (
                    task.state,
                    task.provider_status,
                    task.message,
                    task.queue_position,
                    json.dumps(task.meta),
                    task.updated,
                    task_id,
                ),
            )
            return task

    # results
    def save_result(self, task_id: str, result: TaskResultData) -> None:
        payload = json.dumps(
            {
                "counts": result.counts,
                "circuit_indices": result.circuit_indices,
                "execution_seconds": result.execution_seconds,
                "metadata": result.metadata,
            }
        )
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO results VALUES (?,?)", (task_id, payload))

    def result(self, task_id: str) -> TaskResultData | None:
        row = self._one("SELECT result_json FROM results WHERE task_id=?", (task_id,))
        if row is None:
            return None
        data = json.loads(row[0])
        return TaskResultData(
            counts=data["counts"],
            circuit_indices=data["circuit_indices"],
            execution_seconds=data["execution_seconds"],
            metadata=data["metadata"],
        )

    def _one(self, sql: str, args: tuple) -> tuple | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()


def _task(row: tuple) -> TaskRecord:
    return TaskRecord(
        task_id=row[0],
        submission_id=row[1],
        provider=row[2],
        device=row[3],
        native_id=row[4],
        circuit_indices=json.loads(row[5]),
        shots=row[6],
        state=row[7],
        provider_status=row[8],
        message=row[9],
        queue_position=row[10],
        meta=json.loads(row[11]),
        created=row[12],
        updated=row[13],
    )


def _submission(row: tuple) -> Submission:
    return Submission(
        submission_id=row[0],
        request_id=row[1],
        job_id=row[2],
        device=row[3],
        kind=row[4],
        spec=json.loads(row[5]),
        task_ids=json.loads(row[6]),
        created=row[7],
    )
