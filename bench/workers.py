"""Client-side load, run in separate processes so the clients do not share one GIL: submitters
(scenario 1), the queue loader (scenario 5) and WatchJob fan-out (scenario 7)."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
import traceback
from typing import Any

import grpc

from bench.stack import TERMINAL, submit_request
from bench.stack import aio_channel as stack_aio_channel
from bench.stack import channel as stack_channel
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc as pb_grpc

CTX = mp.get_context("spawn")


def _submitter(address: str, owner: str, start_at: float, stop_at: float, max_jobs: int, out) -> None:
    """One client: single SubmitJob calls back to back from `start_at` until `stop_at`."""
    try:
        channel = stack_channel(address)
        stub = pb_grpc.JobServiceStub(channel)
        # Connected before the clock starts (ListJobs: ListDevices would ask the gateway).
        stub.ListJobs(pb.ListJobsRequest(view=pb.LIST_VIEW_QUEUE, page_size=1), timeout=60)
        latencies: list[float] = []
        errors: list[str] = []
        while time.time() < start_at:
            time.sleep(0.0005)
        first = time.time()
        last = first
        while last < stop_at and len(latencies) + len(errors) < max_jobs:
            request = submit_request(owner)
            t0 = time.perf_counter()
            try:
                stub.SubmitJob(request, timeout=60)
                latencies.append(time.perf_counter() - t0)
            except grpc.RpcError as error:
                errors.append(f"{error.code().name}: {error.details()}")
            last = time.time()
        channel.close()
        out.put({"latencies": latencies, "errors": errors, "first": first, "last": last})
    except Exception:
        out.put({"latencies": [], "errors": [traceback.format_exc()], "first": 0.0, "last": 0.0})


def run_submitters(address: str, owner: str, clients: int, duration_s: float, max_jobs: int) -> dict:
    """`clients` processes submitting for `duration_s`; jobs/s over the whole window."""
    out = CTX.Queue()
    start_at = time.time() + 3.0  # every process has imported grpc and connected by then
    procs = [
        CTX.Process(
            target=_submitter,
            args=(address, owner, start_at, start_at + duration_s, max_jobs, out),
            daemon=True,
        )
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=duration_s + 120) for _ in procs]
    for p in procs:
        p.join(10)
    latencies = [x for r in results for x in r["latencies"]]
    errors = [e for r in results for e in r["errors"]]
    begin = min(r["first"] for r in results if r["first"]) if any(r["first"] for r in results) else 0
    end = max(r["last"] for r in results)
    return {"latencies": latencies, "errors": errors, "elapsed_s": max(end - begin, 1e-9)}


async def _load(address: str, owner: str, n: int, concurrency: int, channels: int) -> dict[str, Any]:
    chans = [stack_aio_channel(address) for _ in range(channels)]
    stubs = [pb_grpc.JobServiceStub(c) for c in chans]
    done = 0
    errors: list[str] = []
    counter = iter(range(n))

    async def worker(i: int) -> None:
        nonlocal done
        stub = stubs[i % len(stubs)]
        for _ in counter:
            try:
                await stub.SubmitJob(submit_request(owner), timeout=120)
                done += 1
            except grpc.RpcError as error:
                errors.append(f"{error.code().name}: {error.details()}")

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - t0
    for c in chans:
        await c.close()
    return {"submitted": done, "errors": errors, "elapsed_s": elapsed}


def _loader(address: str, owner: str, n: int, concurrency: int, out) -> None:
    try:
        out.put(asyncio.run(_load(address, owner, n, concurrency, channels=4)))
    except Exception:
        out.put({"submitted": 0, "errors": [traceback.format_exc()], "elapsed_s": 0.0})


def load_queue(address: str, owner: str, n: int, processes: int = 2, concurrency: int = 32) -> dict:
    """Queue `n` no-op jobs through the public SubmitJob RPC as fast as the scheduler takes
    them: `processes` asyncio clients with `concurrency` calls in flight each."""
    if n <= 0:
        return {"submitted": 0, "errors": [], "elapsed_s": 0.0}
    out = CTX.Queue()
    shares = [n // processes + (1 if i < n % processes else 0) for i in range(processes)]
    procs = [
        CTX.Process(target=_loader, args=(address, owner, share, concurrency, out), daemon=True)
        for share in shares
        if share
    ]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results = [out.get(timeout=24 * 3600) for _ in procs]
    for p in procs:
        p.join(10)
    return {
        "submitted": sum(r["submitted"] for r in results),
        "errors": [e for r in results for e in r["errors"]],
        "elapsed_s": time.perf_counter() - t0,
    }


async def _watch(address: str, job_id: str, n: int, ready, out) -> None:
    chans = [stack_aio_channel(address) for _ in range(n)]  # one connection per watcher
    snapshots: list[float] = []
    received: list[float] = []
    errors: list[str] = []

    async def one(channel) -> None:
        stub = pb_grpc.JobServiceStub(channel)
        try:
            async for message in stub.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=300):
                if message.HasField("snapshot"):
                    snapshots.append(time.time())
                    if len(snapshots) == n:
                        ready.put(n)
                elif message.event.state in TERMINAL:
                    received.append(time.time())
                    return
            errors.append("stream ended without the terminal event")
        except grpc.RpcError as error:
            errors.append(f"{error.code().name}: {error.details()}")

    await asyncio.gather(*(one(c) for c in chans))
    for c in chans:
        await c.close()
    out.put({"received": received, "snapshots": snapshots, "errors": errors})


def _watcher(address: str, job_id: str, n: int, ready, out) -> None:
    try:
        asyncio.run(_watch(address, job_id, n, ready, out))
    except Exception:
        ready.put(0)
        out.put({"received": [], "snapshots": [], "errors": [traceback.format_exc()]})


class WatcherPool:
    """`total` WatchJob streams on one job, spread over `processes` client processes."""

    def __init__(self, address: str, job_id: str, total: int, processes: int = 4):
        self.ready = CTX.Queue()
        self.out = CTX.Queue()
        shares = [total // processes + (1 if i < total % processes else 0) for i in range(processes)]
        self.procs = [
            CTX.Process(target=_watcher, args=(address, job_id, s, self.ready, self.out), daemon=True)
            for s in shares
            if s
        ]
        for p in self.procs:
            p.start()

    def wait_ready(self, timeout: float = 120.0) -> None:
        for _ in self.procs:
            self.ready.get(timeout=timeout)

    def results(self, timeout: float = 300.0) -> dict:
        results = [self.out.get(timeout=timeout) for _ in self.procs]
        for p in self.procs:
            p.join(10)
        return {
            "received": [x for r in results for x in r["received"]],
            "snapshots": [x for r in results for x in r["snapshots"]],
            "errors": [e for r in results for e in r["errors"]],
        }
