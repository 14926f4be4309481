"""Scenario of issue 15 (events across replicas).

`replica_watch`: `qsched up --database-url` on a fresh PostgreSQL database (replica A, which
dispatches), plus a second scheduler process B on the same database started with A's own
command line and environment, on its own port and with `--no-dispatch`. Per sample a no-op that
sleeps 0.3 s is submitted on A; a raw `WatchJob` on A, one on B and an SDK
`wait_for_completion` on B are attached before it ends; latency = receipt of the terminal event
minus the executor's `result` time. B hears of the change only through PostgreSQL (NOTIFY from
the event table's trigger, then a read of the rows: qsched_scheduler/replica_events.py)."""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import grpc

from bench.stack import TERMINAL, Clients, Stack, channel, free_port
from bench.stats import scenario_result, summary
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc as pb_grpc

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SLEEP_S = 0.3


def _admin_url() -> str:
    return (
        os.environ.get("QSCHED_BENCH_POSTGRES_URL")
        or os.environ.get("QSCHED_TEST_POSTGRES_URL")
        or DEFAULT_POSTGRES_URL
    )


class _Database:
    """A fresh database on the local PostgreSQL server, dropped on exit."""

    def __init__(self) -> None:
        import psycopg
        from sqlalchemy.engine import make_url

        self.name = f"qsched_bench_{secrets.token_hex(6)}"
        self._admin = psycopg.connect(_admin_url(), autocommit=True, connect_timeout=5)
        self._admin.execute(f'CREATE DATABASE "{self.name}"')
        self.url = make_url(_admin_url()).set(database=self.name).render_as_string(hide_password=False)

    def drop(self) -> None:
        self._admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (self.name,)
        )
        self._admin.execute(f'DROP DATABASE IF EXISTS "{self.name}"')
        self._admin.close()


def _second_replica(stack: Stack) -> tuple[subprocess.Popen[bytes], str]:
    """The stack's scheduler process started once more (same argv and environment), on a port of
    its own and serving only."""
    pid = stack.service_pids()["scheduler"]
    argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    env = dict(
        item.decode().split("=", 1)
        for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if b"=" in item
    )
    address = f"127.0.0.1:{free_port()}"
    argv[argv.index("--scheduler-address") + 1] = address
    argv.append("--no-dispatch")
    log = (stack.data_dir / "replica-b.log").open("ab")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    stub = pb_grpc.JobServiceStub(channel(address))
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the second replica exited ({process.returncode}); see replica-b.log")
        try:
            stub.ListJobs(pb.ListJobsRequest(page_size=1), timeout=5)
            return process, address
        except grpc.RpcError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.2)


def replica_watch(base: Path, quick: bool) -> dict[str, Any]:
    from qsched import JobClient

    database = _Database()
    stack = Stack(base / "replica_watch", database_url=database.url)
    replica = None
    errors: list[str] = []
    same: list[float] = []
    cross: list[float] = []
    cross_sdk: list[float] = []
    try:
        stack.start()
        clients = Clients(stack)
        replica, address_b = _second_replica(stack)
        channel_b = channel(address_b)
        stub_b = pb_grpc.JobServiceStub(channel_b)
        sdk_b = JobClient(address_b)
        for _ in range(3 if quick else 50):
            job = clients.submit("bench-replica-watch", sleep_s=SLEEP_S)
            got: dict[str, float] = {}
            attached = threading.Barrier(4, timeout=30)

            def follow(stub, key: str, job_id: str = job.job_id, got=got, attached=attached) -> None:
                try:
                    for message in stub.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=60):
                        if message.HasField("snapshot"):
                            attached.wait()
                        elif message.event.state in TERMINAL:
                            got[key] = time.time()
                            return
                except (grpc.RpcError, threading.BrokenBarrierError) as error:
                    errors.append(f"WatchJob on {key}: {error}")

            def wait(job_id: str = job.job_id, got=got, attached=attached) -> None:
                try:
                    attached.wait()
                    sdk_b.wait_for_completion(job_id, timeout=60, verbose=False)
                    got["sdk"] = time.time()
                except Exception as exc:
                    errors.append(f"wait_for_completion on B: {exc}")

            threads = [
                threading.Thread(target=follow, args=(clients.jobs, "a")),
                threading.Thread(target=follow, args=(stub_b, "b")),
                threading.Thread(target=wait),
            ]
            for t in threads:
                t.start()
            try:
                attached.wait()
            except threading.BrokenBarrierError:
                errors.append("the followers did not attach")
            for t in threads:
                t.join(90)
            final = clients.get(job.job_id)
            if final.state != pb.Job.STATE_SUCCEEDED:
                errors.append(f"{job.job_id} ended {pb.Job.State.Name(final.state)}")
                continue
            ended = clients.exec_updates(final.current_run.task_id)["result"]
            for key, samples in (("a", same), ("b", cross), ("sdk", cross_sdk)):
                if key in got:
                    samples.append(got[key] - ended)
                else:
                    errors.append(f"{job.job_id}: no terminal event on {key}")
        sdk_b.close()
        channel_b.close()
        clients.close()
    finally:
        if replica is not None:
            replica.terminate()
            try:
                replica.wait(30)
            except subprocess.TimeoutExpired:
                replica.kill()
        stack.stop()
        database.drop()
    return scenario_result(
        {
            "cross_replica_watch_ms": summary(cross, 1e3),
            "cross_replica_wait_ms": summary(cross_sdk, 1e3),
            "same_replica_watch_ms": summary(same, 1e3),
        },
        errors,
        "2 scheduler replicas on one PostgreSQL database (A dispatches, B --no-dispatch); end = "
        "executor ExecutionUpdate.result.time; receipt = client clock; seed: n/a (one process)",
    )
