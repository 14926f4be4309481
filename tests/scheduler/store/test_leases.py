"""Device leases (qsched_scheduler/leases.py, store/leases.py) on SQLite and PostgreSQL: one
holder at a time, takeover after expiry, fencing of a holder that lost the lease (its stage and
claim transactions write nothing), and the queued-jobs quota counted in the submit transaction."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from qsched_core.errors import QuotaExceeded
from qsched_scheduler.domain import JobKind, NewJob, Payload, Reason
from qsched_scheduler.leases import Leases
from qsched_scheduler.store.base import Claim, StageRequest
from qsched_scheduler.store.engine import make_engine
from qsched_scheduler.store.leases import LeaseLost, SqlLeaseStore
from qsched_scheduler.store.sql import SqlJobStore
from tests.scheduler.store.test_store_contract import DEVICE, T0, new_job
from tests.support.waiting import eventually


def reason() -> Reason:
    return Reason("priority-fifo", "next in line", {})


def test_one_holder_at_a_time_and_takeover_after_expiry(sql_url: str) -> None:
    engine = make_engine(sql_url)
    leases = SqlLeaseStore(engine)
    try:
        assert leases.acquire(DEVICE, "a", 0.3) == 1
        assert leases.acquire(DEVICE, "b", 0.3) is None  # held by a
        assert leases.renew({DEVICE: 1}, "a", 0.3) == {DEVICE}
        # a stops renewing (it died): b takes the device once the lease expired, with a new epoch
        assert eventually(lambda: leases.acquire(DEVICE, "b", 5.0), timeout=5, what="takeover") == 2
        assert leases.renew({DEVICE: 1}, "a", 0.3) == set()  # a's renewal fails: it knows it lost
        [lease] = leases.leases()
        assert (lease.holder, lease.epoch) == ("b", 2) and lease.expires_in_s > 0
        leases.release(DEVICE, "b", 2)  # a clean stop: free at once
        assert leases.acquire(DEVICE, "a", 5.0) == 3
    finally:
        engine.dispose()


def test_a_stale_holder_is_fenced_out_of_stage_and_claim(sql_url: str) -> None:
    engine = make_engine(sql_url)
    leases = SqlLeaseStore(engine)
    old = SqlJobStore(engine)  # the replica that lost the device
    new = SqlJobStore(engine)  # the replica that took it over
    try:
        assert leases.acquire(DEVICE, "old", 0.2) == 1
        old.fence_of = lambda device: ("old", 1)  # what the stale holder still believes
        job = old.submit(new_job(), T0).change.job
        assert eventually(lambda: leases.acquire(DEVICE, "new", 30.0), timeout=5) == 2
        new.fence_of = lambda device: ("new", 2)

        with pytest.raises(LeaseLost):
            old.stage([StageRequest(job.job_id, Claim("stale-task", {}, reason()))], T0)
        assert new.get(job.job_id).staged_task_id == ""  # nothing written under the old epoch

        # A claim at submit under the old epoch is dropped: the job is queued, not staged.
        outcome = old.submit_many([new_job()], T0, {0: Claim("stale-claim", {}, reason())})[0]
        assert outcome.created and outcome.change.job.staged_task_id == ""

        [staged] = new.stage([StageRequest(job.job_id, Claim("", {}, reason()))], T0)
        assert staged.staged_task_id == job.task_id
        # A replica that does not hold the lease at all cannot stage either.
        old.fence_of = lambda device: None
        with pytest.raises(LeaseLost):
            old.stage([StageRequest(outcome.change.job.job_id, Claim("", {}, reason()))], T0)
    finally:
        old.close()
        new.close()
        engine.dispose()


async def test_the_keeper_hands_a_dead_holders_device_to_another_replica(sql_url: str) -> None:
    """Two keepers (two replicas): the first takes the device; when it dies (stops renewing,
    without giving the lease up), the second takes it within ttl + poll, and the first stops
    writing on its own before that (its fence is gone)."""
    engine = make_engine(sql_url)
    events: list[tuple[str, str]] = []
    a = Leases(SqlLeaseStore(engine), "a", ttl_s=0.6, renew_s=0.1, poll_s=0.05)
    b = Leases(SqlLeaseStore(engine), "b", ttl_s=0.6, renew_s=0.1, poll_s=0.05)
    a.add(DEVICE, lambda: events.append(("a", "took")), lambda: events.append(("a", "lost")))
    b.add(DEVICE, lambda: events.append(("b", "took")), lambda: events.append(("b", "lost")))
    try:
        await a.tick()
        await b.tick()
        assert a.holds(DEVICE) and not b.holds(DEVICE) and a.fence(DEVICE) == ("a", 1)
        b.start()
        await asyncio.sleep(0)
        # a dies: nothing renews its lease any more
        died = time.monotonic()
        await eventually(lambda: b.holds(DEVICE), timeout=5, interval=0.01, what="b takes over")
        took = time.monotonic() - died
        assert took < 0.6 + 0.05 + 0.5, took  # ttl + poll (+ slack for a loaded machine)
        assert b.fence(DEVICE) == ("b", 2)
        assert a.fence(DEVICE) is None  # a's own clock told it before b could take over
        await a.tick()  # a wakes up: it learns it lost the device
        assert ("a", "lost") in events and not a.holds(DEVICE)
    finally:
        await b.stop()
        await a.stop()
        engine.dispose()
    assert events[:3] == [("a", "took"), ("b", "took"), ("a", "lost")]


def test_the_queued_jobs_quota_is_exact_across_replicas(sql_url: str) -> None:
    """Two stores on one database (two replicas) submitting at once: the quota holds exactly."""
    engine = make_engine(sql_url)
    stores = [SqlJobStore(engine), SqlJobStore(engine)]
    try:

        def submit(n: int):
            job = NewJob("alice", DEVICE, 0, Payload(JobKind.LAB_EXPERIMENT, {"n": n}), queued_limit=5)
            return stores[n % 2].submit_many([job, job], T0)

        with ThreadPoolExecutor(4) as pool:
            outcomes = [o for batch in pool.map(submit, range(8)) for o in batch]
        created = [o for o in outcomes if not isinstance(o, Exception)]
        refused = [o for o in outcomes if isinstance(o, QuotaExceeded)]
        assert len(created) == 5 and len(refused) == 11
        assert len({o.change.job.job_id for o in created}) == 5
        assert stores[0].queued_count(DEVICE) == 5
    finally:
        for store in stores:
            store.close()
        engine.dispose()
