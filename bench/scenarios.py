"""The eight scenarios of issue 8. Each returns a dict:

    {"completed": bool, "errors": int, "error_samples": [...], "metrics": {name: summary}, "notes": ...}

Every latency is computed from wall-clock timestamps (time.time()) taken on this one machine:
by the benchmark's clients, and by the executor (its ExecutionUpdate `time` fields and the
`start_time` / `end_time` attributes of each run's HDF5 file). All processes read the same clock.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import grpc

from bench import replica_watch, replicas, sharing, workers
from bench.calibration_gate import calibration_gate
from bench.stack import (
    BIN,
    REPO,
    TERMINAL,
    Clients,
    ExecutorAlone,
    Stack,
    file_times,
    in_group,
    noop_run,
    submit_request,
    ts,
)
from bench.stats import median, summary
from bench.stats import scenario_result as _result
from qsched.api.jobs.v1 import jobs_pb2 as pb


@dataclass(frozen=True)
class Sizes:
    """How much each scenario does; `quick` is the CI mode (the harness must not rot)."""

    submit_clients: int = 8
    submit_seconds: float = 10.0
    batch_jobs: int = 2000
    dispatch_samples: int = 60
    notify_samples: int = 50
    gap_jobs: int = 250
    gap_jobs_50ms: int = 40
    depth_small: int = 1_000
    depth_large: int = 100_000
    depth_probe_submits: int = 100
    depth_probe_runs: int = 100
    startup_repeats: int = 5
    watchers: int = 100
    watch_rounds: int = 5
    rabi_runs: int = 3
    rabi_expts: int = 101
    rabi_reps: int = 1000
    alone_runs: int = 2000
    alone_batch: int = 50


FULL = Sizes()
QUICK = Sizes(
    submit_seconds=2.0,
    batch_jobs=100,
    dispatch_samples=5,
    notify_samples=3,
    gap_jobs=20,
    gap_jobs_50ms=5,
    depth_small=50,
    depth_large=200,
    depth_probe_submits=10,
    depth_probe_runs=10,
    startup_repeats=2,
    watchers=20,
    watch_rounds=1,
    rabi_runs=1,
    alone_runs=200,
)


def _done_jobs(clients: Clients, owner: str) -> list[pb.Job]:
    return [j for j in clients.jobs_of(owner) if j.state in TERMINAL]


def _failures(jobs: list[pb.Job]) -> list[str]:
    return [
        f"{j.job_id} {pb.Job.State.Name(j.state)} {j.error.reason} {j.error.message}".rstrip()
        for j in jobs
        if j.state != pb.Job.STATE_SUCCEEDED
    ]


# ---- 1. submit throughput ------------------------------------------------------------------------
def batch_method() -> tuple[str, str] | None:
    """(method, repeated field) of a batch submit RPC, if jobs.v1 has one: a JobService method
    whose request has a repeated SubmitJobRequest field."""
    service = pb.DESCRIPTOR.services_by_name["JobService"]
    for method in service.methods:
        for f in method.input_type.fields:
            is_repeated = getattr(f, "is_repeated", None)
            repeated = is_repeated if is_repeated is not None else f.label == f.LABEL_REPEATED
            if repeated and f.message_type is not None and f.message_type.name == "SubmitJobRequest":
                return method.name, f.name
    return None


def submit_throughput(stack: Stack, clients: Clients, sizes: Sizes) -> dict[str, Any]:
    """8 client processes, single SubmitJob calls back to back, the board held by a long
    no-op so that the window measures the submit path alone (jobs queue up behind it)."""
    result = workers.run_submitters(
        stack.scheduler, "bench-submit", sizes.submit_clients, sizes.submit_seconds, 10**9
    )
    ok = len(result["latencies"])
    metrics: dict[str, Any] = {
        "jobs_per_s": {"n": ok, "median": ok / result["elapsed_s"]},
        "submit_latency_ms": summary(result["latencies"], 1e3),
    }
    errors = list(result["errors"])
    found = batch_method()
    notes = f"{sizes.submit_clients} client processes for {sizes.submit_seconds:g}s; board held"
    if found is None:
        notes += "; jobs.v1 has no batch submit RPC (batch figure n/a)"
    else:
        method, field = found
        per_call = 100
        call = getattr(clients.jobs, method)
        sent = 0
        t0 = time.perf_counter()
        while sent < sizes.batch_jobs:
            n = min(per_call, sizes.batch_jobs - sent)
            message = pb.DESCRIPTOR.services_by_name["JobService"].methods_by_name[method].input_type
            request = _message_class(message)(**{field: [submit_request("bench-batch") for _ in range(n)]})
            try:
                call(request, timeout=120)
            except grpc.RpcError as error:
                errors.append(f"{method}: {error.code().name}: {error.details()}")
            sent += n
        metrics["batch_jobs_per_s"] = {"n": sent, "median": sent / (time.perf_counter() - t0)}
        notes += f"; batch: {method} with {per_call} jobs per call"
    return _result(metrics, errors, notes)


def _message_class(descriptor):
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


# ---- 2. idle dispatch latency --------------------------------------------------------------------
def idle_dispatch(stack: Stack, clients: Clients, sizes: Sizes) -> dict[str, Any]:
    """Empty queue, idle board: one no-op submitted; latency = the executor's `started`
    timestamp minus the client's clock just before SubmitJob. Nothing else talks to the stack
    while a sample is in flight (the client polls only after 0.3 s)."""
    clients.wait_idle()
    total: list[float] = []
    ack: list[float] = []
    after_ack: list[float] = []
    errors: list[str] = []
    for _ in range(sizes.dispatch_samples):
        time.sleep(0.05)
        t0 = time.time()
        try:
            job = clients.jobs.SubmitJob(submit_request("bench-dispatch"), timeout=60).job
        except grpc.RpcError as error:
            errors.append(f"{error.code().name}: {error.details()}")
            continue
        t_ack = time.time()
        time.sleep(0.3)
        job = clients.wait_done(job.job_id, poll_s=0.05)
        if job.state != pb.Job.STATE_SUCCEEDED:
            errors.append(f"{job.job_id} ended {pb.Job.State.Name(job.state)}")
            continue
        started = clients.exec_updates(job.current_run.task_id)["started"]
        total.append(started - t0)
        ack.append(t_ack - t0)
        after_ack.append(started - t_ack)
    return _result(
        {
            "submit_to_started_ms": summary(total, 1e3),
            "submit_ack_ms": summary(ack, 1e3),
            "ack_to_started_ms": summary(after_ack, 1e3),
        },
        errors,
        "t0 = client clock before SubmitJob; end = executor ExecutionUpdate.started.time",
    )


# ---- 3. completion notification latency ----------------------------------------------------------
def notification(stack: Stack, clients: Clients, sizes: Sizes) -> dict[str, Any]:
    """A no-op that sleeps 0.5 s on the executor (so both followers are attached before it
    ends); latency = client receipt of the terminal event minus the executor's `result`
    timestamp. One raw WatchJob stream and one SDK `JobClient.wait_for_completion`."""
    from qsched import JobClient

    clients.wait_idle()
    sdk = JobClient(stack.scheduler)
    watch_lat: list[float] = []
    sdk_lat: list[float] = []
    errors: list[str] = []
    for _ in range(sizes.notify_samples):
        job = clients.submit("bench-notify", sleep_s=0.5)
        got: dict[str, float] = {}
        attached = threading.Event()

        def follow(job_id: str = job.job_id, got=got, attached=attached) -> None:
            try:
                for message in clients.jobs.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=60):
                    if message.HasField("snapshot"):
                        attached.set()
                    elif message.event.state in TERMINAL:
                        got["watch"] = time.time()
                        return
            except grpc.RpcError as error:
                errors.append(f"WatchJob: {error.code().name}: {error.details()}")
            finally:
                attached.set()

        def wait(job_id: str = job.job_id, got=got) -> None:
            try:
                sdk.wait_for_completion(job_id, timeout=60, verbose=False)
                got["sdk"] = time.time()
            except Exception as exc:
                errors.append(f"wait_for_completion: {exc}")

        threads = [threading.Thread(target=follow), threading.Thread(target=wait)]
        for t in threads:
            t.start()
        attached.wait(30)
        for t in threads:
            t.join(90)
        final = clients.get(job.job_id)
        if final.state != pb.Job.STATE_SUCCEEDED:
            errors.append(f"{job.job_id} ended {pb.Job.State.Name(final.state)}")
            continue
        ended = clients.exec_updates(final.current_run.task_id)["result"]
        if "watch" in got:
            watch_lat.append(got["watch"] - ended)
        if "sdk" in got:
            sdk_lat.append(got["sdk"] - ended)
    sdk.close()
    return _result(
        {"watchjob_ms": summary(watch_lat, 1e3), "wait_for_completion_ms": summary(sdk_lat, 1e3)},
        errors,
        "end = executor ExecutionUpdate.result.time; receipt = client clock",
    )


# ---- 4. board gap --------------------------------------------------------------------------------
def board_gap(stack: Stack, clients: Clients, sizes: Sizes) -> dict[str, Any]:
    """Hold the board, queue `gap_jobs` no-ops, release, let them drain. Gap (headline) =
    HDF5 start_time of run i+1 minus end_time of run i: the board's idle time between two
    runs, as the executor's board thread saw it (it includes the executor writing run i's file).
    Breakdown from ExecutionUpdate times (the executor keeps its last 2,000 runs): started(i+1)
    minus result(i), i.e. without the file write."""
    clients.wait_idle()
    owner = "bench-gap"
    holder = clients.hold()
    loaded = workers.load_queue(stack.scheduler, owner, sizes.gap_jobs, processes=1, concurrency=16)
    errors = list(loaded["errors"])
    clients.release(holder)
    t0 = time.perf_counter()
    clients.wait_idle()
    drain_s = time.perf_counter() - t0
    jobs = _done_jobs(clients, owner)
    errors += _failures(jobs)
    ok = [j for j in jobs if j.state == pb.Job.STATE_SUCCEEDED]
    times = sorted(
        (*file_times(stack.data_root / j.current_run.data_file_path), j.current_run.task_id) for j in ok
    )
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(times)]
    cycle = [b[0] - a[0] for a, b in itertools.pairwise(times)]
    updates = []  # (executor updates, HDF5 end_time) of the last runs the executor still keeps
    for _start, end, task_id in times[-99:]:
        with contextlib.suppress(grpc.RpcError):
            updates.append((clients.exec_updates(task_id), end))
    update_gaps = [b["started"] - a["result"] for (a, _), (b, _) in itertools.pairwise(updates)]
    file_write = [u["result"] - end for u, end in updates]
    # The same with runs that take 50 ms on the board, longer than the control plane's per-job
    # time: what pipelined dispatch leaves of the gap when the board is the bottleneck.
    holder = clients.hold()
    short = [clients.submit("bench-gap-50ms", sleep_s=0.05) for _ in range(sizes.gap_jobs_50ms)]
    clients.release(holder)
    clients.wait_idle()
    ran = [clients.get(j.job_id) for j in short]
    errors += _failures(ran)
    ok50 = sorted(
        file_times(stack.data_root / j.current_run.data_file_path)
        for j in ran
        if j.state == pb.Job.STATE_SUCCEEDED
    )
    gaps_50ms = [b[0] - a[1] for a, b in itertools.pairwise(ok50)]
    return _result(
        {
            "gap_ms": summary(gaps, 1e3),
            "gap_50ms_runs_ms": summary(gaps_50ms, 1e3),
            "gap_after_result_ms": summary(update_gaps, 1e3),
            "run_end_to_result_ms": summary(file_write, 1e3),
            "start_to_start_ms": summary(cycle, 1e3),
            "drain_jobs_per_s": {"n": len(ok), "median": len(ok) / drain_s if drain_s else None},
        },
        errors,
        f"{len(ok)} no-op runs queued behind a held board, then drained; "
        "gap_ms from HDF5 start_time/end_time; gap_after_result_ms from ExecutionUpdate times",
    )


# ---- 5. queue-depth scaling ------------------------------------------------------------------------
def _depth_probe(stack: Stack, clients: Clients, sizes: Sizes, holder: pb.Job) -> tuple[dict, pb.Job, list]:
    """At the current depth (board held): `depth_probe_submits` sequential SubmitJob calls, then
    release the board, let `depth_probe_runs` jobs run, and hold it again. Dispatch cost per job
    = the interval between consecutive run starts (HDF5 start_time) while the queue is deep."""
    errors: list[str] = []
    owner = f"bench-probe-{time.time_ns()}"
    submit_lat: list[float] = []
    last = None
    for _ in range(sizes.depth_probe_submits):
        t0 = time.perf_counter()
        try:
            last = clients.jobs.SubmitJob(submit_request(owner), timeout=120).job
            submit_lat.append(time.perf_counter() - t0)
        except grpc.RpcError as error:
            errors.append(f"{error.code().name}: {error.details()}")
    depth = last.queue_position if last is not None else 0
    head = clients.queue_head(sizes.depth_probe_runs + 1)  # the holder, then the next runs
    released_at = time.time()
    clients.release(holder)
    clients.wait_done(head[-1].job_id, timeout=600)
    holder = clients.hold()
    # FIFO: the runs of this window are the newest finished loader jobs (history is newest first).
    finished = clients.jobs.ListJobs(
        pb.ListJobsRequest(
            view=pb.LIST_VIEW_HISTORY,
            states=[pb.Job.STATE_SUCCEEDED, pb.Job.STATE_FAILED, pb.Job.STATE_CANCELLED],
            page_size=sizes.depth_probe_runs + 100,
        ),
        timeout=120,
    ).jobs
    finished = [j for j in finished if in_group(j, "bench-depth")]
    ran = [j for j in finished if ts(j.current_run.start_time) >= released_at]
    errors += _failures(ran)
    # A run that ended without a file (the board holder, cancelled early) has no timestamps there.
    starts = sorted(
        file_times(stack.data_root / j.current_run.data_file_path)[0]
        for j in ran
        if j.current_run.data_file_path
    )
    cycle = [b - a for a, b in itertools.pairwise(starts)]
    out = {
        "depth": depth,
        "ran": len(ran),
        "submit_ms": summary(submit_lat, 1e3),
        "dispatch_cycle_ms": summary(cycle, 1e3),
        "per_job_ms": (median(submit_lat) or 0) * 1e3 + (median(cycle) or 0) * 1e3,
    }
    return out, holder, errors


def queue_depth(stack: Stack, clients: Clients, sizes: Sizes) -> dict[str, Any]:
    """Per-job submit + dispatch cost with `depth_small` vs `depth_large` jobs queued on the
    device. The queue is filled through the public SubmitJob RPC (2 asyncio client processes,
    32 calls in flight each) while a long no-op holds the board, so nothing drains."""
    clients.wait_idle()
    owner = "bench-depth"
    errors: list[str] = []
    holder = clients.hold("bench-depth-hold")
    loads = []
    loaded = workers.load_queue(stack.scheduler, owner, sizes.depth_small)
    loads.append(loaded)
    small, holder, errs = _depth_probe(stack, clients, sizes, holder)
    errors += errs
    t0 = time.perf_counter()
    loaded = workers.load_queue(stack.scheduler, owner, sizes.depth_large - (small["depth"] - small["ran"]))
    loads.append(loaded)
    load_s = time.perf_counter() - t0
    large, holder, errs = _depth_probe(stack, clients, sizes, holder)
    errors += errs
    for loaded in loads:
        errors += loaded["errors"]
    ratio = large["per_job_ms"] / small["per_job_ms"] if small["per_job_ms"] else None
    submitted = sum(x["submitted"] for x in loads)
    return _result(
        {
            "ratio": {"n": 1, "median": ratio},
            "submit_ratio": {"n": 1, "median": _ratio(large["submit_ms"], small["submit_ms"])},
            "dispatch_ratio": {
                "n": 1,
                "median": _ratio(large["dispatch_cycle_ms"], small["dispatch_cycle_ms"]),
            },
            "load_jobs_per_s": {"n": submitted, "median": loaded["submitted"] / load_s if load_s else None},
        },
        errors,
        f"depth {small['depth']} vs {large['depth']}; board held while loading; "
        "per-job = median sequential SubmitJob + median start-to-start interval of the next runs",
        small=small,
        large=large,
        holder=holder.job_id,
    )


def _ratio(a: dict, b: dict) -> float | None:
    if not a.get("median") or not b.get("median"):
        return None
    return a["median"] / b["median"]


# ---- 6. start-up -----------------------------------------------------------------------------------
def _time_command(argv: list[str], env: dict[str, str], repeats: int) -> tuple[list[float], list[str]]:
    times: list[float] = []
    errors: list[str] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
        elapsed = time.perf_counter() - t0
        if done.returncode != 0:
            errors.append(f"{' '.join(argv[-3:])}: exit {done.returncode}: {done.stderr.strip()[-300:]}")
        else:
            times.append(elapsed)
    return times, errors


def startup(stack: Stack, clients: Clients, sizes: Sizes) -> dict[str, Any]:
    """Fresh interpreters, wall clock around the whole process (median of `startup_repeats`)."""
    clients.wait_idle()
    job = clients.submit("bench-startup")
    clients.wait_done(job.job_id)
    env = {**os.environ, "QSCHED_ADDRESS": stack.scheduler, "GRPC_VERBOSITY": "ERROR"}
    py = sys.executable
    n = sizes.startup_repeats
    commands = {
        "cli_queue_s": [str(BIN / "qsched"), "queue"],
        "cli_job_view_s": [str(BIN / "qsched"), "job", "view", job.job_id],
        "sdk_import_s": [py, "-c", "from qsched import JobClient"],
        "sdk_import_call_s": [
            py,
            "-c",
            f"from qsched import JobClient; JobClient().get_status({job.job_id!r})",
        ],
        "python_baseline_s": [py, "-c", "pass"],
    }
    metrics: dict[str, Any] = {}
    errors: list[str] = []
    for name, argv in commands.items():
        _time_command(argv, env, 1)  # warm the page cache and .pyc files
        times, errs = _time_command(argv, env, n)
        metrics[name] = summary(times)
        errors += errs
    return _result(metrics, errors, f"median of {n} fresh processes each (after one warm-up run)")


# ---- 7. watch fan-out ------------------------------------------------------------------------------
def watch_fanout(stack: Stack, clients: Clients, sizes: Sizes) -> dict[str, Any]:
    """`watchers` WatchJob streams (one connection each, over 4 client processes) on one no-op
    that sleeps on the executor long enough for all of them to attach, then ends by itself;
    latency = receipt of the terminal event minus the executor's `result` timestamp."""
    clients.wait_idle()
    latencies: list[float] = []
    errors: list[str] = []
    sleep_s = 2.0 + sizes.watchers / 25
    for _ in range(sizes.watch_rounds):
        job = clients.submit("bench-watch", sleep_s=sleep_s)
        pool = workers.WatcherPool(stack.scheduler, job.job_id, sizes.watchers)
        got = pool.results(timeout=sleep_s + 120)
        errors += got["errors"]
        final = clients.wait_done(job.job_id)
        if final.state != pb.Job.STATE_SUCCEEDED:
            errors.append(f"{job.job_id} ended {pb.Job.State.Name(final.state)}")
            continue
        end = clients.exec_updates(final.current_run.task_id)["result"]
        if got["snapshots"] and max(got["snapshots"]) > end:
            errors.append("a watcher attached only after the job ended (raise sleep_s)")
        latencies += [r - end for r in got["received"]]
        if len(got["received"]) != sizes.watchers:
            errors.append(f"{len(got['received'])} of {sizes.watchers} watchers were told")
    return _result(
        {"notify_ms": summary(latencies, 1e3)},
        errors,
        f"{sizes.watchers} watchers (one channel each, 4 client processes) x {sizes.watch_rounds} rounds; "
        f"the job sleeps {sleep_s:g}s on the executor so every watcher is attached before it ends",
    )


# ---- 8. simulated AmplitudeRabi --------------------------------------------------------------------
def rabi(stack: Stack, clients: Clients, sizes: Sizes) -> dict[str, Any]:
    """A standard AmplitudeRabi on the simulated board through the whole stack: run time =
    HDF5 end_time - start_time (Experiment.run alone) and executor started -> result."""
    clients.wait_idle()
    config = json.dumps({"expts": sizes.rabi_expts, "reps": sizes.rabi_reps})
    run_s: list[float] = []
    executor_s: list[float] = []
    errors: list[str] = []
    for _ in range(sizes.rabi_runs):
        request = pb.SubmitJobRequest(
            device="qick",
            labels={"bench": "bench-rabi"},
            payload=pb.JobPayload(
                lab_experiment=pb.LabExperiment(
                    experiment_class="AmplitudeRabiExperiment",
                    experiment_module="qsched_hardware.experiments",
                    expt_config_json=config,
                )
            ),
        )
        job = clients.jobs.SubmitJob(request, timeout=120).job
        job = clients.wait_done(job.job_id, timeout=600, poll_s=0.1)
        if job.state != pb.Job.STATE_SUCCEEDED:
            errors.append(f"{job.job_id} ended {pb.Job.State.Name(job.state)}: {job.error.message}")
            continue
        start, end = file_times(stack.data_root / job.current_run.data_file_path)
        run_s.append(end - start)
        updates = clients.exec_updates(job.current_run.task_id)
        executor_s.append(updates["result"] - updates["started"])
    return _result(
        {"run_s": summary(run_s), "started_to_result_s": summary(executor_s)},
        errors,
        f"{sizes.rabi_expts} points x {sizes.rabi_reps} reps, 1 round",
    )


# ---- 9. the executor alone ------------------------------------------------------------------------
def executor_alone(stack: Stack, clients: Clients, sizes: Sizes) -> dict[str, Any]:
    """A lone executor process (3 data writers, as `qsched serve` starts it) driven over its run
    queue as the scheduler drives it, with no scheduler: `alone_runs` no-ops appended in batches
    of `alone_batch` after the tail, at most 4 batches ahead of the board. The no-op rate is runs
    / (first `started` -> last terminal update, executor clock); the board gap is HDF5 start_time
    of run i+1 - end_time of run i; the file write is the writers' CPU per file and the wall time
    from a run's end_time to its `succeeded` update (which follows the fsynced file)."""
    errors: list[str] = []
    with ExecutorAlone(stack) as alone:
        session = alone.run_queue()
        try:
            # Warm-up (not measured): the writer processes finish starting, caches fill.
            warm = [noop_run(f"warm-{i:03d}", f"JOB-20260101-9{i:04d}") for i in range(2 * sizes.alone_batch)]
            session.enqueue(warm, "")
            session.wait_ends(len(warm))
            session.ends.clear()
            tail, warm_batches = warm[-1].task_id, session.batches
            runs = [noop_run(f"alone-{i:06d}", f"JOB-20260101-{i:05d}") for i in range(sizes.alone_runs)]
            cpu0 = alone.cpu_seconds()
            t0 = time.perf_counter()
            sent = 0
            while sent < len(runs):
                if sent - len(session.ends) >= 4 * sizes.alone_batch:
                    session.wait_ends(sent - 3 * sizes.alone_batch)
                    continue
                batch = runs[sent : sent + sizes.alone_batch]
                answer = session.enqueue(batch, tail)
                if answer.queue_moved:
                    tail = answer.tail_task_id
                    continue
                errors += [f"{r.task_id}: {r.reason}" for r in answer.refused]
                sent += len(batch)
                tail = batch[-1].task_id
            session.wait_ends(len(runs))
            wall_s = time.perf_counter() - t0
            cpu1 = alone.cpu_seconds()
            batches = session.batches - warm_batches
            ends = [session.ends[r.task_id] for r in runs]
            started = [session.started[r.task_id] for r in runs if r.task_id in session.started]
        finally:
            session.close()
        bad = [e for e in ends if e.kind.value != "succeeded"]
        errors += [f"{e.task_id}: {e.body}" for e in bad[:5]]
        good = [e for e in ends if e.kind.value == "succeeded"]
        times = sorted((*file_times(alone.data_dir / "data" / e.body.data.name), e.time) for e in good)
    span_s = max(e.time for e in ends) - min(started) if started else 0.0
    n = len(runs)
    return _result(
        {
            "noop_runs_per_s": {"n": n, "median": n / span_s if span_s else None},
            "client_runs_per_s": {"n": n, "median": n / wall_s if wall_s else None},
            "gap_ms": summary([b[0] - a[1] for a, b in itertools.pairwise(times)], 1e3),
            "run_end_to_result_ms": summary([t[2] - t[1] for t in times], 1e3),
            "executor_cpu_ms_per_run": {"n": n, "median": (cpu1[0] - cpu0[0]) / n * 1e3},
            "writer_cpu_ms_per_file": {"n": n, "median": (cpu1[1] - cpu0[1]) / n * 1e3},
            "updates_per_batch": {"n": batches, "median": 3 * n / batches if batches else None},
        },
        errors,
        f"{n} no-ops on a lone executor (3 writer processes), appended {sizes.alone_batch} at a time; "
        "no scheduler involved",
    )


SCENARIOS = {
    "submit_throughput": submit_throughput,
    "idle_dispatch": idle_dispatch,
    "notification": notification,
    "board_gap": board_gap,
    "queue_depth": queue_depth,
    "startup": startup,
    "watch_fanout": watch_fanout,
    "rabi": rabi,
    "executor_alone": executor_alone,
    "calibration_gate": calibration_gate,
    "decision_overhead": lambda stack, clients, sizes: sharing.decision_overhead(sizes.dispatch_samples < 10),
    "fair_share": lambda stack, clients, sizes: sharing.fair_share(
        stack.data_dir, sizes.dispatch_samples < 10
    ),
    "replica_watch": lambda stack, clients, sizes: replica_watch.replica_watch(
        stack.data_dir, sizes.dispatch_samples < 10
    ),
    "replicas": lambda stack, clients, sizes: replicas.replicas(stack.data_dir, sizes.dispatch_samples < 10),
}


__all__ = ["FULL", "QUICK", "SCENARIOS", "Sizes", "ts"]
