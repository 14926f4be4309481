"""The calendar's and fair share's SQL storage on SQLite and PostgreSQL: windows written,
cancelled and read back; the run history fair share starts from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from qsched_scheduler.calendar import Calendar, NewWindow, WindowKind
from qsched_scheduler.domain import JobKind, JobState, NewJob, Payload, Reason
from qsched_scheduler.store.base import Claim, RunUpdate, StageRequest
from qsched_scheduler.store.calendar import SqlCalendarStore
from qsched_scheduler.store.engine import make_engine
from qsched_scheduler.store.sql import SqlJobStore
from qsched_scheduler.store.usage import SqlUsageHistory

T0 = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_windows_are_kept_and_cancelled_ones_are_not_loaded(sql_url: str) -> None:
    engine = make_engine(sql_url)
    try:
        calendar = Calendar(SqlCalendarStore(engine), lambda: T0)
        kept = calendar.create(
            NewWindow(
                "qick", WindowKind.EXCLUSIVE, T0 + HOUR, T0 + 2 * HOUR, ("alice", "bob"), True, "cooldown"
            ),
            "op",
        )
        gone = calendar.create(NewWindow("qick", WindowKind.MAINTENANCE, T0 + 3 * HOUR, T0 + 4 * HOUR), "op")
        calendar.cancel(gone.reservation_id, "op")
        again = Calendar(SqlCalendarStore(engine), lambda: T0)
        again.load()
        assert again.windows() == [kept]
        later = Calendar(SqlCalendarStore(engine), lambda: T0 + 2 * HOUR)  # kept has ended by then
        later.load()
        assert later.windows() == []
    finally:
        engine.dispose()


def test_the_usage_history_is_every_run_that_ended_with_its_time(sql_url: str) -> None:
    store = SqlJobStore(make_engine(sql_url))
    engine = make_engine(sql_url)
    try:
        payload = Payload(JobKind.LAB_EXPERIMENT, {"experiment_class": "T1", "experiment_module": "exp"})
        jobs = [store.submit(NewJob(owner, "qick", 0, payload), T0).change.job for owner in ("alice", "bob")]
        claims = [
            StageRequest(j.job_id, Claim(f"task-{n}", {}, Reason("p", "s"))) for n, j in enumerate(jobs)
        ]
        store.stage(claims, T0)
        store.apply_updates([("task-0", RunUpdate(1, started=True))], T0 + timedelta(seconds=10))
        store.apply_updates(
            [("task-0", RunUpdate(2, final_state=JobState.SUCCEEDED))], T0 + timedelta(seconds=70)
        )
        history = SqlUsageHistory(engine)
        used = history.since(T0)
        assert [(u.owner, u.device, u.seconds) for u in used] == [("alice", "qick", 60.0)]
        assert history.since(T0 + timedelta(seconds=70)) == []
    finally:
        store.close()
        engine.dispose()
