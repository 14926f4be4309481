"""QueueIndex.merge (replicas): a read of the store brings the index in line with what other
replicas committed, without undoing changes this process applied while the read was on its way."""

from __future__ import annotations

from datetime import UTC, datetime

from qsched_scheduler.domain import Change, Event, Job, JobKind, JobState, Payload, QueuedJob
from qsched_scheduler.policy import PriorityFifo
from qsched_scheduler.queue_index import QueueIndex

DEVICE = "qick"
T0 = datetime(2026, 12, 7, tzinfo=UTC)


def queued(n: int, staged: str = "") -> QueuedJob:
    return QueuedJob(f"JOB-20261207-{n:05d}", DEVICE, 0, n, "alice", JobKind.LAB_EXPERIMENT, staged)


def change(n: int, state: JobState) -> Change:
    job = Job(
        job_id=f"JOB-20261207-{n:05d}",
        owner="alice",
        device=DEVICE,
        priority=0,
        payload=Payload(JobKind.LAB_EXPERIMENT, {}),
        state=state,
        create_time=T0,
        queue_order=n,
    )
    return Change(job, Event(job.job_id, 2, T0, state, "", 0.0, ""), JobState.QUEUED)


def ids(index: QueueIndex) -> list[int]:
    return [job.queue_order for job in index.device(DEVICE)]


def test_merge_adds_remote_submits_and_drops_remote_cancels() -> None:
    index = QueueIndex(PriorityFifo().key)
    index.load([queued(1), queued(2)])
    before = {job.job_id for job in index.device(DEVICE)}
    touched = index.track(DEVICE)
    added = index.merge(DEVICE, [queued(2), queued(3)], before, touched, take_staged=False)
    index.untrack(DEVICE, touched)
    assert [job.queue_order for job in added] == [3] and ids(index) == [2, 3]
    assert index.device(DEVICE).signature() == (2, 3, 0)


def test_merge_keeps_what_local_changes_touched_during_the_read() -> None:
    index = QueueIndex(PriorityFifo().key)
    index.load([queued(1), queued(2)])
    before = {job.job_id for job in index.device(DEVICE)}
    touched = index.track(DEVICE)
    # While the read is on its way: job 1 starts here, job 4 is submitted here.
    index.apply(change(1, JobState.RUNNING))
    index.apply(change(4, JobState.QUEUED))
    # The read is older: it still has job 1 queued, and not job 4.
    index.merge(DEVICE, [queued(1), queued(2)], before, touched, take_staged=False)
    index.untrack(DEVICE, touched)
    assert ids(index) == [2, 4]


def test_staged_marks_come_from_the_read_only_where_asked() -> None:
    index = QueueIndex(PriorityFifo().key)
    index.load([queued(1)])
    for take, expected in ((False, ""), (True, "task-1")):
        touched = index.track(DEVICE)
        index.merge(DEVICE, [queued(1, "task-1")], {queued(1).job_id}, touched, take_staged=take)
        index.untrack(DEVICE, touched)
        assert index.device(DEVICE).get(queued(1).job_id).staged_task_id == expected
