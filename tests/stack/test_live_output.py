"""Live output (issue 16, item 3) through real servers on ephemeral ports: a real executor with the
simulated board and a real scheduler. An experiment's log lines reach WatchJob as log events and
stay with the run (GetJobLog); its partial averaged data reach a WatchJob that asked for them
round by round; nobody watching, partials are dropped at once (counted, never held); the log's
caps hold with a visible "dropped" marker."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc
from qsched_core.config import Endpoints, ServiceConfig
from qsched_executor.output import BURST_LINES, LINES_PER_S, MAX_BYTES_PER_RUN, MAX_LINES_PER_RUN
from qsched_runtime.server import start_server
from tests.executor.conftest import WAIT_S, RoundGate
from tests.support.identity import authed_channel
from tests.support.waiting import eventually

ROUNDS = 5
RABI = {"expts": 21, "reps": 50, "stop": 0.9, "rounds": ROUNDS}
TERMINAL = (pb.Job.STATE_SUCCEEDED, pb.Job.STATE_FAILED, pb.Job.STATE_CANCELLED)


@contextlib.asynccontextmanager
async def servers(data_dir: Path, gate: RoundGate | None = None):
    """(scheduler address, its engine, the hardware executor): both services on ephemeral ports."""
    from qsched_executor.server import build as build_executor
    from qsched_hardware.board import open_board
    from qsched_scheduler.server import build as build_scheduler

    board = open_board("sim")
    if gate is not None:
        board.soc.on_round = gate
    ex_cfg = ServiceConfig(
        service="executor",
        endpoints=Endpoints(executor="127.0.0.1:0", configs="127.0.0.1:9"),
        data_dir=data_dir / "executor",
        data_writers=0,
    )
    ex_handle = await build_executor(ex_cfg, board=board)
    ex_server = await start_server(ex_cfg.listen, ex_handle.registrations)
    await ex_handle.start()
    cfg = ServiceConfig(
        service="scheduler",
        endpoints=Endpoints(scheduler="127.0.0.1:0"),
        data_dir=data_dir / "scheduler",
        lab_devices={"qick": f"127.0.0.1:{ex_server.port}"},
        pin_configs=False,
    )
    handle = await build_scheduler(cfg)
    server = await start_server(cfg.listen, handle.registrations, handle.security)
    await handle.start()
    try:
        yield f"127.0.0.1:{server.port}", handle.scheduler, ex_handle.executor
    finally:
        if gate is not None:
            gate.open()
        await server.stop(0)
        await handle.stop()
        await ex_server.stop(0)
        await ex_handle.stop()


@contextlib.asynccontextmanager
async def live_stack(data_dir: Path, gate: RoundGate | None = None):
    """(JobService stub, the scheduler engine, the hardware executor)."""
    async with servers(data_dir, gate) as (address, scheduler, executor), authed_channel(address) as channel:
        yield jobs_pb2_grpc.JobServiceStub(channel), scheduler, executor


@contextlib.asynccontextmanager
async def scheduler_address(data_dir: Path):
    async with servers(data_dir) as (address, _, _):
        yield address


def lab_job(cls: str = "AmplitudeRabiExperiment", **expt: object) -> pb.SubmitJobRequest:
    return pb.SubmitJobRequest(
        device="qick",
        payload=pb.JobPayload(
            lab_experiment=pb.LabExperiment(
                experiment_class=cls,
                experiment_module="qsched_hardware.experiments",
                expt_config_json=json.dumps(expt),
            )
        ),
    )


async def ended(stub, job_id: str) -> pb.Job:
    response = await eventually(
        lambda: stub.GetJob(pb.GetJobRequest(job_id=job_id)),
        until=lambda r: r.job.state in TERMINAL,
        timeout=WAIT_S,
        what=f"{job_id} ending",
    )
    return response.job


def log_lines(events) -> list[str]:
    return [line for e in events for line in e.log.lines]


async def test_log_lines_and_partial_data_arrive_live_round_by_round_and_the_log_stays(tmp_path):
    gate = RoundGate()  # the first round waits until the watcher is there
    async with live_stack(tmp_path, gate) as (stub, scheduler, executor):
        job_id = (await stub.SubmitJob(lab_job(**RABI))).job.job_id
        await eventually(lambda: gate.held.is_set(), timeout=WAIT_S, what="the first round on the board")
        # after_seq=1: the lines written before we came are replayed, then new ones come live
        stream = stub.WatchJob(pb.WatchJobRequest(job_id=job_id, after_seq=1, partial_data=True))
        first = await stream.read()
        assert first.HasField("snapshot")
        # The scheduler told the executor that someone watches this job's partial data.
        await eventually(lambda: job_id in executor._watched_jobs, timeout=WAIT_S, what="WatchPartials")
        gate.open()
        events, partials = [], []
        async for message in stream:
            if message.HasField("partial"):
                partials.append(message.partial)
            else:
                events.append(message.event)
        assert events[-1].state == pb.Job.STATE_SUCCEEDED, events[-1]

        # (a) log lines: live, as log events of the run, then read back after the run
        live = [e for e in events if e.HasField("log")]
        lines = log_lines(live)
        assert lines[0] == f"AmplitudeRabiExperiment: 21 points x 50 reps x {ROUNDS} round(s)", lines
        assert any(line.startswith("fit: ") and "pi_gain" in line for line in lines), lines
        assert all(e.message.startswith("log: ") and e.state == pb.Job.STATE_RUNNING for e in live)
        kept = await stub.GetJobLog(pb.GetJobLogRequest(job_id=job_id))
        assert log_lines(kept.events) == lines
        assert [e.seq for e in kept.events] == [e.seq for e in live]

        # (b) partial data: round by round, rounds increasing up to the last one, each the sweep
        rounds = [p.rounds_done for p in partials]
        assert rounds and rounds == sorted(set(rounds)) and rounds[-1] == ROUNDS, rounds
        assert all(p.rounds_total == ROUNDS for p in partials)
        for p in partials:
            series = {s.name: s for s in p.series}
            assert set(series) == {"xpts", "avgi", "avgq"} and len(series["avgi"].values) == 21
            assert series["xpts"].long_name  # labelled as in the data file, for the same plot
        assert (
            scheduler.watching.live.stats.delivered == len(partials) + scheduler.watching.live.stats.replaced
        )
        assert scheduler.watching.live.held() == 0 and scheduler.watching.live.watchers(job_id) == 0
        # The last watcher gone, the executor is told: nobody watches any more.
        await eventually(lambda: executor._watched_jobs == frozenset(), timeout=WAIT_S, what="unwatched")


async def test_nobody_watching_partials_are_dropped_not_held_and_the_log_is_still_kept(tmp_path):
    async with live_stack(tmp_path) as (stub, scheduler, executor):
        job_id = (await stub.SubmitJob(lab_job(**RABI))).job.job_id
        job = await ended(stub, job_id)
        assert job.state == pb.Job.STATE_SUCCEEDED
        # Nobody watched: the board did not even compute a partial after any of its rounds (the
        # experiment asked, and was told no), nothing was sent, nothing is held anywhere.
        assert executor.partials_unwatched >= ROUNDS
        assert executor._session is not None and executor._session.partials == {}
        assert executor.partials_unsent == 0
        stats = scheduler.watching.live.stats
        assert stats.published == 0 and stats.delivered == 0 and scheduler.watching.live.held() == 0
        # Partials are never part of a run's update log (not replayed, not journaled).
        run = executor.runs.get(job.current_run.task_id)
        assert {u.kind.value for u in run.updates} <= {
            "accepted",
            "started",
            "progress",
            "output",
            "succeeded",
        }
        kept = await stub.GetJobLog(pb.GetJobLogRequest(job_id=job_id))
        assert log_lines(kept.events)[0].startswith("AmplitudeRabiExperiment: ")


async def test_a_flood_of_log_lines_is_capped_with_a_dropped_marker(tmp_path):
    flood = 5000
    async with live_stack(tmp_path) as (stub, _, _):
        job_id = (await stub.SubmitJob(lab_job("NoOpExperiment", log_lines=flood))).job.job_id
        job = await ended(stub, job_id)
        assert job.state == pb.Job.STATE_SUCCEEDED
        events = (await stub.GetJobLog(pb.GetJobLogRequest(job_id=job_id))).events
        lines = log_lines(events)
        written = [line for line in lines if line.startswith("line ")]
        markers = [line for line in lines if line.startswith("[qsched] ")]
        dropped = sum(e.log.dropped for e in events)
        # Everything the experiment wrote is accounted for: kept, or counted as dropped.
        assert len(written) + dropped == flood
        assert markers and all("log line(s) dropped" in m for m in markers)
        assert sum(int(m.split()[1]) for m in markers) == dropped
        # Within the caps: the burst of the rate limit, the run's line and byte limits.
        # (+ what the rate refilled while the run wrote: at most its whole duration's worth)
        took = job.end_time.ToDatetime() - job.start_time.ToDatetime()
        assert len(written) <= BURST_LINES + LINES_PER_S * took.total_seconds() + 1, (len(written), took)
        assert len(lines) <= MAX_LINES_PER_RUN
        assert sum(len(line.encode()) + 1 for line in lines) <= MAX_BYTES_PER_RUN
        # Lines kept are the first ones, in order.
        assert written == [f"line {i + 1}" for i in range(len(written))]


async def test_partial_slot_of_a_watcher_keeps_only_the_latest():
    from qsched_core.execution import PartialData
    from qsched_scheduler.live import LiveFeed

    feed = LiveFeed()
    with feed.watch("JOB-1") as slot:
        for rounds in range(1, 101):  # a watcher that does not read: one slot, overwritten
            feed.publish(PartialData("t", "JOB-1", rounds, 100, 0.0))
        assert feed.held() == 1 and feed.stats.replaced == 99
        assert (await asyncio.wait_for(slot.get(), WAIT_S)).rounds_done == 100
    feed.publish(PartialData("t", "JOB-1", 1, 1, 0.0))
    assert feed.stats.unwatched == 1 and feed.held() == 0


def test_cli_submit_watch_prints_the_log_lines_and_logs_reads_them_back(tmp_path, capsys, monkeypatch):
    from tests.sdk.cli.conftest import LoopThread, job_id_of, make_runner

    services = LoopThread()
    try:
        monkeypatch.setenv("QSCHED_USER", "alice")
        monkeypatch.chdir(tmp_path)
        address = services.enter(scheduler_address(tmp_path))
        qsched = make_runner(address, capsys)
        code, out, err = qsched(
            "submit",
            "--experiment",
            "qsched_hardware.experiments.AmplitudeRabiExperiment",
            "--config",
            json.dumps(RABI),
            "--watch",
        )
        assert code == 0, err
        assert f"| AmplitudeRabiExperiment: 21 points x 50 reps x {ROUNDS} round(s)" in out, out
        assert "| fit: " in out and "pi_gain" in out, out
        assert "log: " not in out  # a log event is printed as its lines
        job_id = job_id_of(out)
        code, logs, err = qsched("logs", job_id)
        assert code == 0, err
        printed = [line.split("| ", 1)[1] for line in out.splitlines() if "| " in line]
        assert [line.split("| ", 1)[1] for line in logs.splitlines()] == printed
        code, followed, err = qsched("logs", job_id, "-f")  # a finished job: the lines, then it ends
        assert code == 0 and followed == logs, err
        code, shown, err = qsched("show", job_id)
        assert code == 0, err
        assert f"all: qsched logs {job_id}" in shown and "  | fit: " in shown, shown
    finally:
        services.close()
