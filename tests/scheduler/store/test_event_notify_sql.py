"""The event table's notifications on PostgreSQL (migration 0017, replica_events.py): a commit that
logged events sends one `qsched_events` naming its writer and the new event ids (a batch of
submits too), a rolled-back one sends nothing, and the ids read back give the events with the
state before each."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from qsched_scheduler.domain import JobState
from qsched_scheduler.replica_events import CHANNEL, parse, tag_connections
from qsched_scheduler.store.engine import make_engine
from qsched_scheduler.store.sql import SqlJobStore
from tests.scheduler.store.test_store_sql import new_job

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
ORIGIN = "qsched-scheduler test:1:abc"


def heard(listener: psycopg.Connection, count: int) -> tuple[list[str], list[int]]:
    """Notifications until `count` ids were named: (their origins, the ids in order)."""
    origins: list[str] = []
    ids: list[int] = []
    for note in listener.notifies(timeout=5):
        origin, named = parse(note.payload)
        assert named is not None, note.payload
        origins.append(origin)
        ids.extend(named)
        if len(ids) >= count:
            break
    assert len(ids) == count, f"heard {ids}, expected {count} ids"
    return origins, ids


def test_committed_events_are_notified_by_id_and_read_back(clean_postgres_url):
    engine = make_engine(clean_postgres_url)
    tag_connections(engine, ORIGIN)
    store = SqlJobStore(engine)
    with psycopg.connect(clean_postgres_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        jobs = [o.change.job for o in store.submit_many([new_job("qick") for _ in range(3)], T0)]
        cancelled = store.cancel_queued(jobs[1].job_id, "no", T0)
        origins, ids = heard(listener, 4)
        assert origins == [ORIGIN, ORIGIN]  # one per transaction, naming its writer
        # One statement inserting several events names them as a range.
        with psycopg.connect(clean_postgres_url, autocommit=True) as other:
            other.execute(
                "INSERT INTO events (job_pk, seq, time, state, message, progress, task_id)"
                " SELECT id, 100 + n, now(), 'CANCELLED', 'x', 0, '' FROM jobs, generate_series(1, 3) AS n"
                " WHERE job_id = %s",
                (jobs[1].job_id,),
            )
        note = next(iter(listener.notifies(timeout=5)))
    origin, extra = parse(note.payload)
    assert origin != ORIGIN  # another connection is someone else
    assert extra == [ids[-1] + 1, ids[-1] + 2, ids[-1] + 3]
    assert note.payload.endswith(f"|{extra[0]}-{extra[-1]}")
    rows = store.logged_events(ids, None, 100)
    assert [(e.job_id, e.seq) for _, e, _ in rows] == [(j.job_id, 1) for j in jobs] + [
        (jobs[1].job_id, cancelled.event.seq)
    ]
    assert rows[-1][2] is JobState.QUEUED and rows[0][2] is None  # the state before each
    assert [i for i, _, _ in store.logged_events([], ids[0], 100)] == [*ids[1:], *extra]
    assert store.max_event_id() == extra[-1]
    found = store.jobs_by_id([jobs[1].job_id, "JOB-20990101-00001"])
    assert list(found) == [jobs[1].job_id] and found[jobs[1].job_id].state is JobState.CANCELLED
    store.close()


def test_a_rolled_back_insert_notifies_nothing(clean_postgres_url):
    with psycopg.connect(clean_postgres_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        engine = make_engine(clean_postgres_url)
        store = SqlJobStore(engine)
        job = store.submit(new_job("qick"), T0).change.job
        with psycopg.connect(clean_postgres_url) as writer:  # a transaction that never commits
            writer.execute(
                "INSERT INTO events (job_pk, seq, time, state, message, progress, task_id)"
                " SELECT id, 99, now(), 'QUEUED', 'x', 0, '' FROM jobs WHERE job_id = %s",
                (job.job_id,),
            )
            writer.rollback()
        store.cancel_queued(job.job_id, "no", T0)  # a later commit: its note comes next
        _, ids = heard(listener, 2)
        store.close()
    assert ids[1] - ids[0] == 2  # the rolled-back id between them was never announced
