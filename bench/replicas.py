"""Scenario `replicas` (issue 15): scheduler replicas on one PostgreSQL database beside one
scheduler on SQLite and one on PostgreSQL, each stack `qsched serve` processes (the ones
tests/replicas run: tests/support/replica_stack.py) with one simulated board:

- submit throughput: client threads sending SubmitJob round-robin over the replicas for a while,
  the board held by a long no-op (the window measures the submit path);
- idle dispatch: one no-op at a time on an idle board, submitted round-robin; client clock before
  SubmitJob to the run's start as the scheduler recorded it (GetJob, polled every 5 ms);
- failover (2 replicas): `kill -9` of the replica holding the device; the time until another
  replica holds the device's lease (device_leases, polled every 5 ms), and until a job submitted to
  the survivor at the kill starts.

The local PostgreSQL is QSCHED_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres);
each stack gets a database of its own, dropped afterwards."""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import grpc

from bench.stack import channel, submit_request, ts
from bench.stats import scenario_result as _result
from bench.stats import summary
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc as pb_grpc

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CONFIGS = (("sqlite_1", "sqlite", 1), ("postgres_1", "postgres", 1), ("postgres_2", "postgres", 2))


@contextlib.contextmanager
def _database(kind: str, root: Path):
    if kind == "sqlite":
        yield f"sqlite:///{root / 'scheduler.db'}"
        return
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    admin_url = os.environ.get("QSCHED_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
    name = f"qsched_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def _identity(root: Path) -> None:
    """An installation of its own (as `qsched up` provisions one): the processes find it through
    the environment they inherit, the clients through QSCHED_TOKEN_FILE."""
    from qsched_core.sql import sqlite_url
    from qsched_ops.provision import provision

    url = sqlite_url(root / "identity.db")
    provision(url, root, root / "token")
    os.environ["QSCHED_IDENTITY_DATABASE_URL"] = url
    os.environ["QSCHED_SERVICE_TOKEN"] = (root / "secrets" / "scheduler.token").read_text().strip()
    os.environ["QSCHED_CALIBRATOR_TOKEN"] = (root / "secrets" / "calibrator.token").read_text().strip()
    os.environ["QSCHED_TOKEN_FILE"] = str(root / "token")


def _submit_rate(stubs: list, device: str, threads: int, seconds: float) -> tuple[float, list, list[str]]:
    latencies: list[float] = []
    errors: list[str] = []
    stop = time.monotonic() + seconds
    turn = iter(range(10**9))

    def worker() -> None:
        while time.monotonic() < stop:
            stub = stubs[next(turn) % len(stubs)]
            t0 = time.perf_counter()
            try:
                stub.SubmitJob(submit_request("bench-replicas", device=device), timeout=30)
            except grpc.RpcError as error:
                errors.append(f"{error.code().name}: {error.details()}")
                continue
            latencies.append(time.perf_counter() - t0)

    began = time.monotonic()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return len(latencies) / (time.monotonic() - began), latencies, errors


def _started(stub, job_id: str, timeout: float = 60.0) -> pb.Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=10).job
        if job.start_time.seconds:
            return job
        time.sleep(0.005)
    raise TimeoutError(f"{job_id} did not start within {timeout} s")


def _idle_dispatch(stubs: list, device: str, samples: int) -> tuple[list[float], list[str]]:
    out, errors = [], []
    for i in range(samples):
        stub = stubs[i % len(stubs)]
        time.sleep(0.1)
        t0 = time.time()
        try:
            job = stub.SubmitJob(submit_request("bench-replicas-idle", device=device), timeout=30).job
            job = _started(stubs[0], job.job_id)
        except (grpc.RpcError, TimeoutError) as error:
            errors.append(str(error)[:200])
            continue
        out.append(ts(job.start_time) - t0)
        while stub.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=10).job.state not in (
            pb.Job.STATE_SUCCEEDED,
            pb.Job.STATE_FAILED,
        ):
            time.sleep(0.01)
    return out, errors


def _failover(stack, url: str, repeats: int) -> tuple[list[float], list[float], list[str]]:
    from tests.support.replica_stack import lease_holders

    device = stack.devices[0]
    leases, starts, errors = [], [], []
    for _ in range(repeats):
        held = lease_holders(url)
        pid, epoch = held[device][0], held[device][1]
        victim = stack.by_pid(pid)
        survivor = next(n for n in stack.schedulers if n != victim)
        with channel(stack.address(survivor)) as ch:
            stub = pb_grpc.JobServiceStub(ch)
            sent = time.monotonic()
            wall = time.time()
            stack.kill(victim)
            try:
                job = stub.SubmitJob(submit_request("bench-replicas-failover", device=device), timeout=30).job
                while True:
                    now = lease_holders(url)
                    if now[device][1] > epoch:
                        leases.append(time.monotonic() - sent)
                        break
                    if time.monotonic() - sent > 30:
                        raise TimeoutError("no takeover within 30 s")
                    time.sleep(0.005)
                job = _started(stub, job.job_id)
                starts.append(ts(job.start_time) - wall)
            except (grpc.RpcError, TimeoutError) as error:
                errors.append(str(error)[:200])
        stack.start(victim)
    return leases, starts, errors


def replicas(base: Path, quick: bool) -> dict[str, Any]:
    from tests.support.replica_stack import ReplicaStack

    seconds = 2.0 if quick else 8.0
    samples = 5 if quick else 30
    repeats = 2 if quick else 5
    metrics: dict[str, Any] = {}
    errors: list[str] = []
    _identity(base / "identity")
    for label, kind, n in CONFIGS:
        root = base / label
        root.mkdir(parents=True, exist_ok=True)
        with _database(kind, root) as url:
            stack = ReplicaStack(root, url, replicas=n, boards=1)
            try:
                stack.start_all()
                device = stack.devices[0]
                chans = [channel(stack.address(name)) for name in stack.schedulers]
                stubs = [pb_grpc.JobServiceStub(ch) for ch in chans]
                try:
                    if n > 1:
                        deadline = time.monotonic() + 30
                        while time.monotonic() < deadline and device not in _holders(url):
                            time.sleep(0.05)
                    dispatch, errs = _idle_dispatch(stubs, device, samples)
                    errors += errs
                    metrics[f"{label}_submit_to_started_ms"] = summary(dispatch, 1e3)
                    if n > 1:  # on the idle device: the takeover, then a job's start
                        leases, starts, errs = _failover(stack, url, repeats)
                        errors += errs
                        metrics["failover_lease_s"] = summary(leases)
                        metrics["failover_first_start_s"] = summary(starts)
                    # The board held by a long no-op: the submits queue up behind it.
                    stubs[0].SubmitJob(
                        submit_request("bench-replicas-hold", 600.0, device=device), timeout=30
                    )
                    rate, latencies, errs = _submit_rate(stubs, device, 8, seconds)
                    errors += errs
                    metrics[f"{label}_jobs_per_s"] = {"n": len(latencies), "median": rate}
                    metrics[f"{label}_submit_latency_ms"] = summary(latencies, 1e3)
                finally:
                    for ch in chans:
                        ch.close()
            finally:
                stack.stop_all()
    notes = (
        f"qsched serve stacks, 1 simulated board; throughput: 8 client threads for {seconds:g} s round-robin "
        f"over the replicas, board held; idle dispatch: {samples} no-ops, submit -> the run's start "
        f"(GetJob); failover: {repeats} kill -9 of the device's lease holder (2 replicas on PostgreSQL), "
        "on the idle device, time to the new lease and to the start of a job submitted to the "
        "survivor at the kill"
    )
    return _result(metrics, errors, notes)


def _holders(url: str) -> dict:
    from tests.support.replica_stack import lease_holders

    try:
        return lease_holders(url)
    except Exception:
        return {}
