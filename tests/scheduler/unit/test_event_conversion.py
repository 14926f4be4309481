"""A change published to many watchers is converted to its proto once, not once per watcher."""

from __future__ import annotations

from datetime import UTC, datetime

from qsched_scheduler import convert
from qsched_scheduler.domain import Change, Event, Job, JobKind, JobState, Payload

T0 = datetime(2026, 3, 14, tzinfo=UTC)


def change(seq: int, state: JobState = JobState.SUCCEEDED) -> Change:
    job = Job("JOB-20260314-00001", "alice", "qick", 0, Payload(JobKind.LAB_EXPERIMENT, {}), state, T0)
    return Change(job, Event(job.job_id, seq, T0, state, "done"), JobState.RUNNING)


def test_one_change_is_converted_once_and_each_change_gets_its_own_event():
    first = change(5)
    shared = convert.change_to_event_pb(first)
    assert convert.change_to_event_pb(first) is shared  # the next watcher gets the same message
    assert shared.seq == 5 and shared.job.job_id == "JOB-20260314-00001"  # terminal: carries the job
    other = convert.change_to_event_pb(change(6, JobState.FAILED))
    assert other is not shared and other.seq == 6
    later = [change(seq) for seq in range(100, 200)]  # kept alive, so no id is reused
    for item in later:
        convert.change_to_event_pb(item)
    # The cache stays small: a hundred later changes pushed the first one out (converted anew).
    assert convert.change_to_event_pb(first) is not shared
