"""The gateway's task registry on the shared SQL runtime: its migrations on SQLite and PostgreSQL
(empty -> head -> base -> head, the tables match them, a database shared with the scheduler), the
take-over of a registry file written before the migrations, and what the registry promises
(a terminal state is final, a result saved again replaces the first, request ids deduplicate)."""

from __future__ import annotations

import sqlite3

import pytest

from qsched_core.sql import make_engine, sqlite_url
from qsched_gateway import db
from qsched_gateway.models import metadata
from qsched_gateway.registry import (
    COMPLETED,
    QUEUED,
    RUNNING,
    Registry,
    Submission,
    TaskRecord,
    TaskResultData,
)
from qsched_scheduler import db as scheduler_db
from tests.support.migrations import schema_drift, table_names

TABLES = {"gateway_submissions", "gateway_tasks", "gateway_results"}


def test_migrations_upgrade_downgrade_and_upgrade_again(empty_db_url: str) -> None:
    assert db.current(empty_db_url) is None
    db.upgrade(empty_db_url)
    assert table_names(empty_db_url) == TABLES | {db.VERSION_TABLE}
    assert db.current(empty_db_url) == db.head() == "0001"
    assert schema_drift(empty_db_url, metadata, db.VERSION_TABLE) == []  # the tables and the migration agree
    db.upgrade(empty_db_url)  # idempotent: what every gateway start does
    db.downgrade(empty_db_url)
    assert table_names(empty_db_url) <= {db.VERSION_TABLE} and db.current(empty_db_url) is None
    db.upgrade(empty_db_url)
    assert db.current(empty_db_url) == db.head()


def test_the_registry_can_share_a_database_with_the_scheduler(empty_db_url: str) -> None:
    scheduler_db.upgrade(empty_db_url)
    db.upgrade(empty_db_url)
    db.downgrade(empty_db_url)
    assert scheduler_db.current(empty_db_url) == scheduler_db.head()
    assert not table_names(empty_db_url) & TABLES


@pytest.fixture
def registry(empty_db_url: str):
    db.upgrade(empty_db_url)
    registry = Registry(make_engine(empty_db_url))
    yield registry
    registry.close()


def submit(registry: Registry, request_id: str | None = "req-1") -> TaskRecord:
    task = TaskRecord("local/t1", "S1", "local", "local:aer_simulator", "t1", [0, 1], 100)
    registry.add_submission(
        Submission("S1", request_id, "JOB-1", "local:aer_simulator", "circuits", {"k": [1]}, [task.task_id]),
        [task],
    )
    return task


def test_a_terminal_state_is_final_and_a_saved_result_is_replaced(registry: Registry) -> None:
    task = submit(registry)
    assert registry.submission_by_request("req-1").task_ids == [task.task_id]
    assert registry.submission_by_request("other") is None
    running = registry.update(task.task_id, RUNNING, queue_position=0, meta={"a": "1"})
    assert running.state == RUNNING and running.meta == {"a": "1"}
    registry.update(task.task_id, COMPLETED, message="done")
    assert registry.update(task.task_id, QUEUED, message="late").state == COMPLETED  # ignored
    assert registry.task(task.task_id).message == "done"
    assert registry.tasks_in_state("local", (QUEUED, RUNNING)) == []
    registry.save_result(task.task_id, TaskResultData([{"0": 1}], [0], 1.5))
    registry.save_result(task.task_id, TaskResultData([{"1": 2}], [0], 2.5, {"x": 1}))
    assert registry.result(task.task_id) == TaskResultData([{"1": 2}], [0], 2.5, {"x": 1})


# The registry file as the gateway wrote it before the registry had migrations (raw sqlite3).
LEGACY_SCHEMA = """
CREATE TABLE submissions (submission_id TEXT PRIMARY KEY, request_id TEXT UNIQUE, job_id TEXT NOT NULL,
    device TEXT NOT NULL, kind TEXT NOT NULL, spec_json TEXT NOT NULL, task_ids_json TEXT NOT NULL,
    created REAL NOT NULL);
CREATE TABLE tasks (task_id TEXT PRIMARY KEY, submission_id TEXT NOT NULL, provider TEXT NOT NULL,
    device TEXT NOT NULL, native_id TEXT NOT NULL, circuit_indices_json TEXT NOT NULL, shots INTEGER NOT NULL,
    state TEXT NOT NULL, provider_status TEXT NOT NULL DEFAULT '', message TEXT NOT NULL DEFAULT '',
    queue_position INTEGER NOT NULL DEFAULT 0, meta_json TEXT NOT NULL DEFAULT '{}', created REAL NOT NULL,
    updated REAL NOT NULL);
CREATE INDEX tasks_by_submission ON tasks (submission_id);
CREATE TABLE results (task_id TEXT PRIMARY KEY, result_json TEXT NOT NULL);
INSERT INTO submissions VALUES ('S9', 'req-9', 'JOB-9', 'ionq:simulator', 'benchmark',
    '{"parts": [{"job_type": "WIT"}]}', '["ionq/n1"]', 1700000000.5);
INSERT INTO tasks VALUES ('ionq/n1', 'S9', 'ionq', 'ionq:simulator', 'n1', '[0]', 1000, 'COMPLETED',
    'completed', '', 0, '{"clbits": 2}', 1700000000.5, 1700000010.25);
INSERT INTO results VALUES ('ionq/n1',
    '{"counts": [{"00": 500, "11": 500}], "circuit_indices": [0], "execution_seconds": 0.5, "metadata": {}}');
"""


def test_a_registry_file_from_before_the_migrations_is_taken_over(tmp_path) -> None:
    path = tmp_path / "gateway" / "tasks.db"
    path.parent.mkdir()
    with sqlite3.connect(path) as legacy:
        legacy.executescript(LEGACY_SCHEMA)
    url = db.database_url("", tmp_path)
    assert url == sqlite_url(path)  # the default registry is that same file
    db.upgrade(url)
    assert table_names(url) == TABLES | {db.VERSION_TABLE}
    registry = Registry(make_engine(url))
    try:
        task = registry.task("ionq/n1")
        assert (task.state, task.meta, task.circuit_indices, task.updated) == (
            COMPLETED, {"clbits": 2}, [0], 1700000010.25
        )  # fmt: skip
        submission = registry.submission_by_request("req-9")
        assert submission.spec == {"parts": [{"job_type": "WIT"}]} and submission.task_ids == ["ionq/n1"]
        assert registry.result("ionq/n1").counts == [{"00": 500, "11": 500}]
    finally:
        registry.close()
