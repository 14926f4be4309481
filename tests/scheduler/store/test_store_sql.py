"""What only the SQL store has to prove: rules enforced by the database itself,
several processes sharing one database, durability, and the migrations."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import IntegrityError

from qsched_scheduler import db
from qsched_scheduler.domain import JobKind, JobState, NewJob, Payload
from qsched_scheduler.store.base import RunUpdate
from qsched_scheduler.store.engine import make_engine, sqlite_url_for
from qsched_scheduler.store.models import JobRow, metadata
from qsched_scheduler.store.sql import SqlJobStore
from tests.support.migrations import schema_drift, table_names

T0 = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)
JOBS_PER_PROCESS = 150
TABLES = {
    "jobs",
    "runs",
    "events",
    "id_counters",
    "queue_counts",
    "device_holds",
    "device_leases",
    "reservations",
    "sessions",
    "calibration_states",
}


def new_job(device: str = "qpu-a", request_id: str = "") -> NewJob:
    lab = Payload(JobKind.LAB_EXPERIMENT, {"experiment_class": "T1Experiment", "experiment_module": "exp"})
    return NewJob("alice", device, 0, lab, request_id=request_id)


def _counter(job_id: str) -> int:
    return int(job_id.rsplit("-", 1)[1])


# -- the database guards "one RUNNING job per device" --------------------------------------------------------
def test_the_database_refuses_a_second_running_job_on_a_device(sql_url: str) -> None:
    store = SqlJobStore(make_engine(sql_url))
    engine = make_engine(sql_url)
    try:
        first = store.submit(new_job(), T0).change.job
        second = store.submit(new_job(), T0).change.job
        elsewhere = store.submit(new_job(device="qpu-b"), T0).change.job
        assert store.claim_next("qpu-a", "task-1", T0).job.job_id == first.job_id

        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text("UPDATE jobs SET state = 'RUNNING' WHERE job_id = :id"), {"id": second.job_id})
        row = {
            "job_id": "JOB-20260314-90000",
            "owner": "mallory",
            "device": "qpu-a",
            "kind": "LAB_EXPERIMENT",
            "priority": 0,
            "payload": "{}",
            "state": "RUNNING",
            "create_time": T0,
            "last_seq": 0,
            "cancel_requested": False,
            "labels": "{}",
            "trace_parent": "",
            "queue_order": 90000,
        }
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(insert(JobRow.__table__).values(**row))

        # Provider jobs (circuits, benchmarks) may run several at once on one device.
        with engine.begin() as conn:
            for n in (1, 2):
                circuit = {
                    **row,
                    "job_id": f"JOB-20260314-9100{n}",
                    "kind": "CIRCUIT",
                    "queue_order": 91000 + n,
                }
                conn.execute(insert(JobRow.__table__).values(**circuit))

        # Other devices, and other states on this device, are not affected.
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE jobs SET state = 'RUNNING' WHERE job_id = :id"), {"id": elsewhere.job_id}
            )
            conn.execute(insert(JobRow.__table__).values(**{**row, "state": "FAILED"}))
        store.update_run("task-1", RunUpdate(final_state=JobState.SUCCEEDED), T0)
        with engine.begin() as conn:
            conn.execute(text("UPDATE jobs SET state = 'RUNNING' WHERE job_id = :id"), {"id": second.job_id})
    finally:
        engine.dispose()
        store.close()


# -- several processes on one database -----------------------------------------------------------------------
def _submit_many(
    url: str, request_ids: list[str], start: multiprocessing.synchronize.Event, out: multiprocessing.Queue
) -> None:
    """Runs in a child process: wait for the start signal, then submit one job per request id
    ("" = none) and report [(job_id, created), ...]."""
    store = SqlJobStore(make_engine(url))
    try:
        start.wait(60)
        outcomes = [store.submit(new_job(request_id=request_id), T0) for request_id in request_ids]
        out.put([(outcome.change.job.job_id, outcome.created) for outcome in outcomes])
    except BaseException as exc:
        out.put(repr(exc))
        raise
    finally:
        store.close()


def _in_two_processes(url: str, request_ids: list[str]) -> list[list[tuple[str, bool]]]:
    """Both processes submit `request_ids` at the same time."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    out = ctx.Queue()
    workers = [ctx.Process(target=_submit_many, args=(url, request_ids, start, out)) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        start.set()
        results = [out.get(timeout=90) for _ in workers]
    finally:
        for worker in workers:
            worker.join(30)
            if worker.is_alive():
                worker.kill()
    assert all(isinstance(result, list) for result in results), results
    return results


def test_two_processes_never_hand_out_the_same_id(sql_url: str) -> None:
    results = _in_two_processes(sql_url, [""] * JOBS_PER_PROCESS)

    job_ids = [job_id for result in results for job_id, _ in result]
    assert len(set(job_ids)) == 2 * JOBS_PER_PROCESS
    assert sorted(_counter(job_id) for job_id in job_ids) == list(range(1, 2 * JOBS_PER_PROCESS + 1))
    assert all(job_id.startswith("JOB-20260314-") for job_id in job_ids)
    store = SqlJobStore(make_engine(sql_url))
    try:
        assert store.queued_count("qpu-a") == 2 * JOBS_PER_PROCESS
        assert store.submit(new_job(), T0).change.job.job_id == "JOB-20260314-00301"
    finally:
        store.close()


def test_two_processes_retrying_the_same_request_ids_create_each_job_once(sql_url: str) -> None:
    request_ids = [f"req-{i}" for i in range(50)]

    first, second = _in_two_processes(sql_url, request_ids)

    assert [job_id for job_id, _ in first] == [job_id for job_id, _ in second]
    assert [a_created != b_created for (_, a_created), (_, b_created) in zip(first, second, strict=True)] == [
        True
    ] * len(request_ids)
    # Losing a race used up no id: the counters have no gaps.
    assert sorted(_counter(job_id) for job_id, _ in first) == list(range(1, len(request_ids) + 1))


# -- durability ----------------------------------------------------------------------------------------------
def test_a_reopened_store_sees_the_jobs_and_ids_continue(sql_url: str) -> None:
    store = SqlJobStore(make_engine(sql_url))
    first = store.submit(new_job(request_id="req-1"), T0).change.job
    second = store.submit(new_job(), T0).change.job
    claimed = store.claim_next("qpu-a", "task-1", T0).job
    store.close()

    reopened = SqlJobStore(make_engine(sql_url))
    try:
        assert reopened.get(first.job_id) == claimed
        assert reopened.get(second.job_id) == second
        assert [j.job_id for j in reopened.running_jobs()] == [first.job_id]
        assert not reopened.submit(new_job(request_id="req-1"), T0).created
        third = reopened.submit(new_job(), T0).change.job
        assert third.job_id == "JOB-20260314-00003"
        assert third.order > second.order
    finally:
        reopened.close()


def test_sqlite_is_set_up_for_several_processes(tmp_path: Path) -> None:
    url = sqlite_url_for(tmp_path)
    assert url == f"sqlite:///{tmp_path}/scheduler.db"
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            pragmas = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
        assert pragmas == {"journal_mode": "wal", "synchronous": 2, "busy_timeout": 10000, "foreign_keys": 1}
    finally:
        engine.dispose()


def test_postgresql_urls_use_psycopg() -> None:
    engine = make_engine("postgresql://qsched@db.example:5432/qsched")
    try:
        assert engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
    finally:
        engine.dispose()


# -- migrations ----------------------------------------------------------------------------------------------
def test_migrations_upgrade_downgrade_and_upgrade_again(empty_db_url: str) -> None:
    assert db.current(empty_db_url) is None
    assert db.head() == "0019_device_leases"

    db.upgrade(empty_db_url)
    assert table_names(empty_db_url) == TABLES | {"alembic_version"}
    assert db.current(empty_db_url) == db.head()
    assert schema_drift(empty_db_url, metadata) == []  # the models and the migrations agree

    db.downgrade(empty_db_url)
    assert table_names(empty_db_url) <= {"alembic_version"}
    assert db.current(empty_db_url) is None

    db.upgrade(empty_db_url)
    assert db.current(empty_db_url) == db.head()
    store = SqlJobStore(make_engine(empty_db_url))
    try:
        assert store.submit(new_job(), T0).change.job.job_id == "JOB-20260314-00001"
    finally:
        store.close()


def test_upgrade_from_0001_keeps_queue_order_and_run_settings(empty_db_url: str) -> None:
    db.upgrade(empty_db_url, "0001")
    engine = make_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            for n, priority in ((1, 0), (2, 0)):
                conn.execute(
                    text(
                        "INSERT INTO jobs (job_id, owner, device, kind, priority, payload, state,"
                        " create_time, last_seq, cancel_requested, labels, trace_parent) VALUES (:id,"
                        " 'alice', 'qpu-a', 'LAB_EXPERIMENT', :p, :payload, 'QUEUED', :t, 1, false, '{}', '')"
                    ),
                    {"id": f"JOB-20260314-0000{n}", "p": priority, "payload": f'{{"n":{n}}}', "t": T0},
                )
            conn.execute(text("INSERT INTO id_counters (prefix, counter) VALUES ('JOB-20260314', 2)"))
    finally:
        engine.dispose()
    db.upgrade(empty_db_url)
    assert schema_drift(empty_db_url, metadata) == []
    store = SqlJobStore(make_engine(empty_db_url))
    try:
        third = store.submit(new_job(), T0).change.job
        assert third.job_id == "JOB-20260314-00003"
        first = store.claim_next("qpu-a", "task-1", T0).job  # FIFO order survived the upgrade
        assert first.job_id == "JOB-20260314-00001"
        assert first.current_run.payload.body == {"n": 1}
        assert store.get("JOB-20260314-00002").queue_order < third.queue_order
    finally:
        store.close()


def test_upgrade_to_submit_task_ids_gives_every_job_its_task_id(empty_db_url: str) -> None:
    db.upgrade(empty_db_url, "0014_calibration")
    engine = make_engine(empty_db_url)  # jobs as the scheduler of 0014 left them
    try:
        with engine.begin() as conn:
            for n, state, staged_task in (
                (1, "SUCCEEDED", None),
                (2, "QUEUED", "task-s"),
                (3, "QUEUED", None),
                (4, "QUEUED", None),  # rerun after task-r1: queued again, its next run has no id yet
            ):
                conn.execute(
                    text(
                        "INSERT INTO jobs (id, job_id, owner, device, kind, priority, payload, state,"
                        " create_time, last_seq, cancel_requested, labels, trace_parent, queue_order,"
                        " staged_task_id)"
                        " VALUES (:n, :id, 'alice', 'qpu-a', 'LAB_EXPERIMENT', 0, '{}', :state, :t, 1, false,"
                        " '{}', '', :n, :staged)"
                    ),
                    {"n": n, "id": f"JOB-20260314-0000{n}", "state": state, "t": T0, "staged": staged_task},
                )
            for task, job_pk, attempt, state, staged in (
                ("task-d1", 1, 1, "FAILED", False),
                ("task-d2", 1, 2, "SUCCEEDED", False),
                ("task-s", 2, 1, "QUEUED", True),
                ("task-r1", 4, 1, "SUCCEEDED", False),
            ):
                conn.execute(
                    text(
                        "INSERT INTO runs (task_id, job_pk, attempt, state, progress, data_file_path,"
                        " summary, config_revisions, provider_task_ids, executor_seq, payload, staged)"
                        " VALUES (:task, :pk, :a, :state, 0, '', '{}', '{}', '[]', 0, '{}', :staged)"
                    ),
                    {"task": task, "pk": job_pk, "a": attempt, "state": state, "staged": staged},
                )
    finally:
        engine.dispose()
    db.upgrade(empty_db_url)
    assert schema_drift(empty_db_url, metadata) == []
    store = SqlJobStore(make_engine(empty_db_url))
    try:
        done, staged, waiting, again = (store.get(f"JOB-20260314-0000{n}") for n in range(1, 5))
        assert (done.task_id, staged.task_id) == ("task-d2", "task-s")
        assert len(waiting.task_id) == 36 and len(again.task_id) == 36 and again.task_id != "task-r1"
        assert store.job_id_of_task(waiting.task_id) == waiting.job_id
        claimed = store.claim_next("qpu-a", "", T0)  # waiting is first in line (staged is skipped)
        assert claimed.job.job_id == waiting.job_id and claimed.job.current_run.task_id == waiting.task_id
    finally:
        store.close()
