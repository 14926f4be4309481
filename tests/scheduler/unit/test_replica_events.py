"""The relay of other replicas' events (replica_events.EventRelay), on a fake event table: what a
notification makes it read, what it skips (its own replica's, what it heard already, what the
change feed published), and the catch-up after a lost connection (above the mark, and the ids
it never heard of below it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from qsched_scheduler.domain import Change, Event, JobState
from qsched_scheduler.replica_events import GAP_TTL_S, MAX_GAPS, EventRelay, ids_text, parse
from tests.support.waiting import eventually

ME, OTHER = "qsched-scheduler me", "qsched-scheduler other"
T0 = datetime(2026, 12, 7, tzinfo=UTC)


@dataclass
class FakeJob:
    job_id: str
    last_seq: int
    state: JobState | None = None


class FakeLog:
    """The event table: rows by id (job id, seq, state); the reads the relay made."""

    def __init__(self) -> None:
        self.rows: dict[int, tuple[str, int, JobState]] = {}
        self.reads: list[tuple[list[int], int | None]] = []

    def add(self, row_id: int, job_id: str, seq: int, state: JobState = JobState.RUNNING) -> None:
        self.rows[row_id] = (job_id, seq, state)

    def max_event_id(self) -> int:
        return max(self.rows, default=0)

    def logged_events(self, ids, after_id, limit):
        self.reads.append((list(ids), after_id))
        out = []
        for row_id in sorted(self.rows):
            if row_id in ids or (after_id is not None and row_id > after_id):
                job_id, seq, state = self.rows[row_id]
                before = [s for j, q, s in self.rows.values() if j == job_id and q == seq - 1]
                event = Event(job_id, seq, T0, state, f"seq {seq}")
                out.append((row_id, event, before[0] if before else None))
        return out[:limit]

    def jobs_by_id(self, job_ids):
        last = {}
        for job_id, seq, _ in self.rows.values():
            last[job_id] = max(last.get(job_id, 0), seq)
        return {job_id: FakeJob(job_id, last[job_id]) for job_id in job_ids}


async def direct(fn, *args):
    return fn(*args)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def relay():
    log = FakeLog()
    log.add(1, "JOB-A", 1, JobState.QUEUED)  # before the relay started: history
    published: list[Change] = []
    seqs: dict[str, int] = {}

    def publish(change: Change) -> None:  # as ChangeFeed.publish with track_seqs
        if change.event.seq > seqs.get(change.job.job_id, 0):
            seqs[change.job.job_id] = change.event.seq
            published.append(change)

    clock = Clock()
    r = EventRelay(log, ME, publish, lambda job_id: seqs.get(job_id, 0), call=direct, clock=clock)
    r.start()
    await r.connected()
    yield SimpleNamespace(relay=r, log=log, published=published, seqs=seqs, clock=clock)
    await r.stop()


def seen(published: list[Change]) -> list[tuple[str, int]]:
    return [(c.job.job_id, c.event.seq) for c in published]


def test_payloads_name_the_writer_and_the_ids():
    assert parse("qsched-scheduler h:1:ab|7") == ("qsched-scheduler h:1:ab", [7])
    assert parse("x|3-5,9") == ("x", [3, 4, 5, 9])
    assert parse("x|*") == ("x", None)  # too many to name: catch up
    assert parse("garbage") == ("", None)
    assert parse("a|b|1-2")[1] == [1, 2]  # the origin may hold a bar
    assert ids_text([3, 1]) == "1,3"


async def test_other_replicas_events_are_read_by_id_and_published_in_order(relay):
    assert relay.relay.mark == 1  # starts from the table's end
    relay.log.add(2, "JOB-A", 2, JobState.RUNNING)
    relay.log.add(3, "JOB-B", 1, JobState.QUEUED)
    relay.log.add(4, "JOB-A", 3, JobState.SUCCEEDED)
    relay.relay.notified(f"{OTHER}|2-4")
    await eventually(lambda: len(relay.published) == 3)
    assert seen(relay.published) == [("JOB-A", 2), ("JOB-B", 1), ("JOB-A", 3)]
    assert relay.log.reads == [([2, 3, 4], None)]  # exactly the ids named
    by_seq = {c.event.seq: c for c in relay.published if c.job.job_id == "JOB-A"}
    assert by_seq[2].previous_state is JobState.QUEUED and by_seq[3].previous_state is JobState.RUNNING


async def test_own_and_already_heard_notifications_are_not_read(relay):
    relay.log.add(2, "JOB-A", 2)
    relay.relay.notified(f"{ME}|2")  # this replica's own: published by its fast path
    relay.log.add(3, "JOB-A", 3)
    relay.relay.notified(f"{OTHER}|3")
    await eventually(lambda: seen(relay.published) == [("JOB-A", 3)])
    relay.relay.notified(f"{OTHER}|3")  # heard already (a catch-up read it, or a duplicate)
    relay.log.add(4, "JOB-C", 1)
    relay.relay.notified(f"{OTHER}|4")
    await eventually(lambda: len(relay.published) == 2)
    assert [ids for ids, _ in relay.log.reads] == [[3], [4]]


async def test_a_change_the_feed_published_already_is_not_published_again(relay):
    relay.seqs["JOB-A"] = 5  # this replica published seq 5 itself
    relay.log.add(2, "JOB-A", 5)
    relay.log.add(3, "JOB-A", 6)
    relay.relay.notified(f"{OTHER}|2-3")
    await eventually(lambda: seen(relay.published) == [("JOB-A", 6)])


async def test_an_open_transaction_below_the_mark_is_read_when_it_commits(relay):
    # Ids 2 and 3 were taken by transactions still open when 4 committed.
    relay.log.add(4, "JOB-B", 1)
    relay.relay.notified(f"{OTHER}|4")
    await eventually(lambda: seen(relay.published) == [("JOB-B", 1)])
    assert relay.relay.gaps.keys() == {2, 3}
    relay.log.add(3, "JOB-C", 1)
    relay.relay.notified(f"{OTHER}|3")
    await eventually(lambda: seen(relay.published) == [("JOB-B", 1), ("JOB-C", 1)])
    assert relay.relay.gaps.keys() == {2}  # 2 may never come (rolled back): it expires
    relay.clock.now = GAP_TTL_S + 1
    relay.relay.notified(f"{ME}|5")
    assert relay.relay.gaps == {}


async def test_after_a_lost_connection_everything_missed_is_caught_up_once(relay):
    relay.log.add(3, "JOB-A", 2)
    relay.relay.notified(f"{OTHER}|3")  # 2 still open
    await eventually(lambda: len(relay.published) == 1)
    # The connection drops: these commits are never notified.
    relay.log.add(2, "JOB-B", 1)  # the open one commits
    relay.log.add(4, "JOB-A", 3)
    relay.log.add(5, "JOB-A", 4, JobState.SUCCEEDED)
    relay.log.add(6, "JOB-C", 1)
    relay.seqs["JOB-C"] = 1  # this replica's own (published already by its fast path)
    await relay.relay.connected()  # back, LISTENing: catch up
    await eventually(lambda: len(relay.published) == 4)
    assert seen(relay.published) == [("JOB-A", 2), ("JOB-B", 1), ("JOB-A", 3), ("JOB-A", 4)]
    assert relay.log.reads[-1] == ([2], 3)  # the gap and everything above the mark
    assert relay.relay.mark == 6 and relay.relay.gaps == {}
    # A notification of what the catch-up read already reads nothing more.
    relay.relay.notified(f"{OTHER}|4-5")
    relay.log.add(7, "JOB-D", 1)
    relay.relay.notified(f"{OTHER}|7")
    await eventually(lambda: len(relay.published) == 5)
    assert relay.log.reads[-1] == ([7], None)


async def test_a_payload_too_long_to_name_its_ids_is_a_catch_up(relay):
    relay.log.add(2, "JOB-A", 2)
    relay.log.add(3, "JOB-A", 3)
    relay.relay.notified(f"{OTHER}|*")
    await eventually(lambda: seen(relay.published) == [("JOB-A", 2), ("JOB-A", 3)])
    assert relay.log.reads == [([], 1)]


async def test_a_failed_read_is_retried(relay):
    calls = {"n": 0}
    real = relay.log.logged_events

    def flaky(ids, after_id, limit):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("connection reset")
        return real(ids, after_id, limit)

    relay.log.logged_events = flaky
    relay.log.add(2, "JOB-A", 2)
    relay.relay.notified(f"{OTHER}|2")
    await eventually(lambda: seen(relay.published) == [("JOB-A", 2)], timeout=5)


async def test_a_jump_too_far_to_track_as_gaps_is_caught_up_from_the_mark(relay):
    far = 1 + MAX_GAPS + 5
    relay.log.add(2, "JOB-A", 2)  # committed while the listener was away, never notified
    relay.log.add(far, "JOB-B", 1)
    relay.seqs["JOB-B"] = 1  # published by this replica's fast path
    relay.relay.notified(f"{ME}|{far}")  # this replica's own, far above the mark
    await eventually(lambda: seen(relay.published) == [("JOB-A", 2)])
    assert relay.log.reads == [([], 1)] and relay.relay.mark == far
    assert len(relay.relay.gaps) == MAX_GAPS  # the ids just below the far one (a rollback, or open)


async def test_a_dispatching_replica_reacts_once_per_job_and_read_to_its_state_now():
    log = FakeLog()
    reacted: list[Change] = []
    published: list[Change] = []
    seqs = {"JOB-A": 3}  # this replica published seq 3 of JOB-A itself, before the relay read 2
    relay = EventRelay(log, ME, published.append, lambda j: seqs.get(j, 0), call=direct, react=reacted.append)
    relay.start()
    await relay.connected()
    log.add(1, "JOB-A", 2, JobState.RUNNING)  # another replica's: "cancel requested"
    log.add(2, "JOB-B", 1, JobState.QUEUED)
    log.add(3, "JOB-B", 2, JobState.RUNNING)
    log.add(4, "JOB-A", 3, JobState.RUNNING)
    relay.notified(f"{OTHER}|1-3")
    await eventually(lambda: len(reacted) == 2)
    await relay.stop()
    assert seen(published) == [("JOB-B", 1), ("JOB-B", 2)]  # JOB-A's seq 2: the feed passed it
    b1 = published[0]
    assert b1.job.state is JobState.QUEUED and b1.job.last_seq == 1  # as of that event
    by_job = {c.job.job_id: c for c in reacted}
    assert by_job["JOB-A"].job.last_seq == 3  # reacted to anyway: it is another replica's change
    assert by_job["JOB-B"].previous_state is None and by_job["JOB-B"].event.seq == 2
