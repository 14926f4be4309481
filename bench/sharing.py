"""Scenarios of issue 13 (sharing one board).

`fair_share`: 4 users, 400 no-op jobs of mixed lengths and one exclusive window, run twice on a
fresh stack each: with the device's order `fifo` and with `fair_share`. Per user, the wait of
each job = its run's start (the scheduler's record) minus the release of the board (every job was
queued before it). The board is held while the users submit, in this order: alice 200 jobs,
bob 100, carol 60, dave 40 (one `SubmitJobs` call per 100); then dave books an exclusive window
opening 4 s after the release, 2 s long. Before, the harness runs 20 no-ops of the same mix so
the device has a run-time history (the overrun rule's estimate).

`decision_overhead`: in process, on the scheduler's own objects (`QueuePolicy` with the gates
`server.py` wires: device hold, reservations, sessions; the `PriorityFifo` and `FairShare`
orderings, fair share with its per-user index loaded; the lab dispatcher's `_View` on a
`DeviceQueue`): `next_runs` for one dispatch with 10,000 jobs of 4 users queued on one device
and an exclusive window in the calendar that opens later."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.stack import Clients, Stack, channel, noop_payload, ts
from bench.stats import scenario_result, summary
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc as pb_grpc
from qsched_scheduler.calendar import Calendar, MemoryCalendarStore, NewWindow, ReservationGate, WindowKind
from qsched_scheduler.dispatch.lab import _View
from qsched_scheduler.domain import JobKind, QueuedJob
from qsched_scheduler.fair_share import FairShare, Usage, UsedTime
from qsched_scheduler.policy import DeviceHoldGate, PriorityFifo, QueuePolicy
from qsched_scheduler.queue_index import DeviceQueue
from qsched_scheduler.sessions import MemorySessionStore, SessionGate, Sessions

USERS = {"alice": 200, "bob": 100, "carol": 60, "dave": 40}  # submitted in this order
WINDOW_HOLDER = "dave"
WINDOW_OPENS_S, WINDOW_LENGTH_S = 4.0, 2.0  # after the release of the board
# Run lengths (the no-op's sleep_s), drawn per job with a fixed seed: mean 36 ms on the board.
LENGTHS_S = (0.0, 0.02, 0.05, 0.2)
WEIGHTS = (0.4, 0.3, 0.2, 0.1)
SEED = 13
WARMUP = 20  # runs of the same mix before, by the harness's own user
POLICIES = {"fifo": "", "fair_share": "*"}  # QSCHED_FAIR_SHARE_DEVICES of each run


def _lengths(n: int, rng: random.Random) -> list[float]:
    return rng.choices(LENGTHS_S, WEIGHTS, k=n)


def _users(stack: Stack) -> dict[str, str]:
    """A token per user, issued by the OS user who ran `qsched up` (an admin of its installation)."""
    from qsched.admin import AdminClient

    token = (stack.data_dir / "token").read_text().strip()
    out: dict[str, str] = {}
    with AdminClient(stack.scheduler, token=token) as admin:
        for name in USERS:
            admin.create_user(name)
            out[name] = admin.issue_token(name, "bench")["secret"]
    return out


def _one_policy(base: Path, policy: str, quick: bool) -> tuple[dict[str, list[float]], list[str], dict]:
    stack = Stack(base / policy, env={"QSCHED_FAIR_SHARE_DEVICES": POLICIES[policy]})
    stack.start()
    clients = Clients(stack)
    errors: list[str] = []
    try:
        tokens = _users(stack)
        channels = {name: channel(stack.scheduler, token) for name, token in tokens.items()}
        stubs = {name: pb_grpc.JobServiceStub(ch) for name, ch in channels.items()}
        # The run-time history the window's overrun rule estimates from (without it the default
        # estimate, 60 s, would hold every job but the window holder's until the window ends).
        for length in _lengths(WARMUP, random.Random(SEED + 1)):
            clients.submit("share-warmup", sleep_s=length)
        clients.wait_idle()
        holder = clients.hold()
        rng = random.Random(SEED)
        submitted: dict[str, list[str]] = {}
        for name, count in USERS.items():
            count = max(1, count // 10) if quick else count
            requests = [
                pb.SubmitJobRequest(
                    device="qick",
                    request_id=str(uuid.uuid4()),
                    payload=noop_payload(length),
                    labels={"bench": f"share-{policy}"},
                )
                for length in _lengths(count, rng)
            ]
            ids = submitted.setdefault(name, [])
            for i in range(0, len(requests), 100):
                answer = stubs[name].SubmitJobs(
                    pb.SubmitJobsRequest(requests=requests[i : i + 100]), timeout=120
                )
                ids.extend(r.job.job_id for r in answer.responses)
        released = time.time()
        window = pb.CreateReservationRequest(device="qick", kind=pb.Reservation.KIND_EXCLUSIVE)
        window.start_time.FromDatetime(datetime.fromtimestamp(released + WINDOW_OPENS_S, UTC))
        window.end_time.FromDatetime(datetime.fromtimestamp(released + WINDOW_OPENS_S + WINDOW_LENGTH_S, UTC))
        stubs[WINDOW_HOLDER].CreateReservation(window, timeout=60)
        clients.release(holder)
        clients.wait_idle(timeout=900)
        waits: dict[str, list[float]] = {}
        in_window: dict[str, int] = {}
        others: list[float] = []
        opens, ends = released + WINDOW_OPENS_S, released + WINDOW_OPENS_S + WINDOW_LENGTH_S
        for name, ids in submitted.items():
            for job_id in ids:
                job = stubs[name].GetJob(pb.GetJobRequest(job_id=job_id), timeout=60).job
                if job.state != pb.Job.STATE_SUCCEEDED:
                    errors.append(
                        f"{job_id} of {name} ended {pb.Job.State.Name(job.state)}: {job.error.message}"
                    )
                    continue
                start = ts(job.current_run.start_time)
                waits.setdefault(name, []).append(start - released)
                if opens <= start < ends:
                    in_window[name] = in_window.get(name, 0) + 1
                    if name != WINDOW_HOLDER:  # started after the opening by (s)
                        others.append(round(start - opens, 4))
        for ch in channels.values():
            ch.close()
        return waits, errors, {"starts_inside_window": in_window, "others_after_opening_s": sorted(others)}
    finally:
        clients.close()
        stack.stop()


def fair_share(base: Path, quick: bool = False) -> dict[str, Any]:
    """Both policies, one fresh stack each (see the module doc)."""
    metrics: dict[str, Any] = {}
    errors: list[str] = []
    extra: dict[str, Any] = {}
    for policy in POLICIES:
        waits, failed, info = _one_policy(base, policy, quick)
        errors += failed
        extra[policy] = info
        for name in USERS:
            metrics[f"{policy}_wait_{name}_s"] = summary(waits.get(name, []))
    lengths = _lengths(sum(USERS.values()), random.Random(SEED))
    notes = (
        f"users {USERS} submitted in that order behind a held board; no-op run lengths "
        f"{LENGTHS_S} s with weights {WEIGHTS} (seed {SEED}; total {sum(lengths):.1f} s on the board); "
        f"{WINDOW_HOLDER}'s exclusive window {WINDOW_OPENS_S:g} s after the release, "
        f"{WINDOW_LENGTH_S:g} s long; wait = run start - release"
    )
    return scenario_result(metrics, errors, notes, windows=extra)


# ---- decision overhead, in process -------------------------------------------------------------------------
QUEUED = 10_000


def _queue(policy: QueuePolicy) -> tuple[DeviceQueue, list[QueuedJob]]:
    rng = random.Random(SEED)
    owners = list(USERS)
    jobs = [
        QueuedJob(
            f"JOB-{i}", "qick", rng.choice((0, 0, 0, 5)), i + 1, rng.choice(owners), JobKind.LAB_EXPERIMENT
        )
        for i in range(QUEUED)
    ]
    queue = DeviceQueue(policy.key)
    for job in jobs:
        queue.put(job)
    return queue, jobs


def _time(
    policy: QueuePolicy, queue: DeviceQueue, now: datetime, limit: int, n: int, expect: int | None = None
) -> list[float]:
    """`n` decisions of up to `limit` runs each (`expect` picked: `limit` unless said)."""
    samples = []
    for i in range(n):
        view = _View("qick", queue, None, (), now + timedelta(microseconds=i))
        t0 = time.perf_counter()
        picked = policy.next_runs(view, limit)
        samples.append(time.perf_counter() - t0)
        assert len(picked) == (limit if expect is None else expect), f"the policy picked {len(picked)}"
    return samples


def _per_run(samples: Sequence[float], limit: int) -> list[float]:
    return [s / limit for s in samples]


def decision_overhead(quick: bool = False) -> dict[str, Any]:
    n = 50 if quick else 1000
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    calendar = Calendar(MemoryCalendarStore(), lambda: now)
    calendar.create(
        NewWindow(
            "qick", WindowKind.EXCLUSIVE, now + timedelta(hours=1), now + timedelta(hours=3), ("dave",)
        ),
        "dave",
    )
    gates = [
        DeviceHoldGate(),
        ReservationGate(calendar),
        SessionGate(Sessions(MemorySessionStore(), lambda: now)),
    ]
    usage = Usage(lambda: now)
    for i, name in enumerate(USERS):
        usage.add(UsedTime(name, "qick", now, 100.0 * (i + 1)))
    fair = FairShare(usage)
    policies = {"fifo": QueuePolicy(PriorityFifo(), gates), "fair_share": QueuePolicy(fair, gates)}
    metrics: dict[str, Any] = {}
    for name, policy in policies.items():
        queue, jobs = _queue(policy)
        if name == "fair_share":
            fair.load(jobs)
        metrics[f"{name}_decision_ms"] = summary(_time(policy, queue, now, 1, n), 1e3)
        metrics[f"{name}_batch16_per_run_ms"] = summary(_per_run(_time(policy, queue, now, 16, n), 16), 1e3)
    # The worst case of a gate that does not stop the walk: an exclusive window open now whose holder
    # has one job, queued last; every job before it is asked and held (O(queue)).
    opened = now + timedelta(hours=1, minutes=1)
    policy = policies["fifo"]
    queue, _ = _queue(policy)
    for job in list(queue):
        if job.owner == "dave":
            queue.remove(job.job_id)
    queue.put(QueuedJob("JOB-LAST", "qick", 0, QUEUED + 1, "dave", JobKind.LAB_EXPERIMENT))
    metrics["fifo_window_holder_last_ms"] = summary(_time(policy, queue, opened, 1, max(5, n // 20)), 1e3)
    # A maintenance window open: nothing starts, and the first job held stops the walk.
    later = now + timedelta(hours=4)
    calendar.create(NewWindow("qick", WindowKind.MAINTENANCE, later, later + timedelta(hours=1)), "op")
    metrics["fifo_maintenance_open_ms"] = summary(
        _time(policy, queue, later + timedelta(minutes=1), 1, n, expect=0), 1e3
    )
    return {
        "completed": True,
        "errors": 0,
        "error_samples": [],
        "metrics": metrics,
        "notes": (
            f"{QUEUED} queued on one device (4 users, priorities 0 and 5), "
            "an exclusive window opening in 1 h; "
            f"{n} calls of QueuePolicy.next_runs for 1 run (and for 16, per run), in process"
        ),
    }
