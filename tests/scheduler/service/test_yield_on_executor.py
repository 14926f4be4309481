"""Yielding at safe points end to end (issue 14, item 4): the scheduler built in process, the real
executor on the simulated board over the RunQueue. A Rabi job that allows yielding is running when a
higher-priority job arrives on a device that yields to priority: its run stops between averaging
rounds and ends PREEMPTED with the completed rounds saved, the urgent job runs, and the Rabi job's
next run continues from the saved rounds. Its combined data fits the same pi gain (within 2 %) as an
uninterrupted run, and its data file says which rounds came from which run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path

import h5py

from qsched_core.config import Endpoints, ServiceConfig
from qsched_hardware.board import open_board
from qsched_runtime.security import PeerCredentials
from qsched_runtime.server import start_server
from qsched_scheduler.domain import PREEMPTED, JobKind, JobState, Payload
from qsched_scheduler.executor_client import GrpcLabExecutor
from qsched_scheduler.scheduler import Scheduler
from qsched_scheduler.store.memory import MemoryJobStore
from qsched_scheduler.validation import Submission
from tests.executor.conftest import WAIT_S, RoundGate
from tests.support.waiting import eventually

RABI = {"expts": 41, "reps": 200, "start": 0.0, "stop": 0.9, "rounds": 6}


def lab(cls: str, expt: dict, priority: int = 0, yields: bool = False) -> Submission:
    body = {
        "experiment_class": cls,
        "experiment_module": "qsched_hardware.experiments",
        "expt_config_json": json.dumps(expt),
        "config_revisions": {},
        "config_overrides": {},
    }
    if yields:
        body["yield_at_safe_points"] = True
    return Submission("qick", Payload(JobKind.LAB_EXPERIMENT, body), priority, "alice")


@contextlib.asynccontextmanager
async def executor(data_dir: Path, gate: RoundGate):
    from qsched_executor.server import build

    board = open_board("sim")
    board.soc.on_round = gate
    endpoints = Endpoints(executor="127.0.0.1:0", configs="127.0.0.1:9")
    cfg = ServiceConfig(service="executor", endpoints=endpoints, data_dir=data_dir, data_writers=0)
    handle = await build(cfg, board=board)
    server = await start_server(cfg.listen, handle.registrations)
    try:
        yield f"127.0.0.1:{server.port}", handle.executor
    finally:
        gate.open()
        await server.stop(0)
        await handle.stop()


async def finished(scheduler: Scheduler, job_id: str):
    job = await eventually(
        lambda: scheduler.get(job_id), until=lambda j: j.state.terminal, timeout=WAIT_S, what=f"{job_id} ends"
    )
    assert job.state is JobState.SUCCEEDED, job.error
    return job


async def test_a_yielded_rabi_job_resumes_and_fits_the_same_pi_gain_as_an_uninterrupted_one(tmp_path):
    gate = RoundGate(free_rounds=3)
    async with executor(tmp_path / "executor", gate) as (address, hardware):
        scheduler = Scheduler.build(
            MemoryJobStore(),
            {"qick": GrpcLabExecutor(address, PeerCredentials(os.environ["QSCHED_SERVICE_TOKEN"]))},
            b"k" * 32,
            yielding=lambda device: frozenset({"priority"}),
        )
        await scheduler.start()
        try:
            rabi = (await scheduler.submit(lab("AmplitudeRabiExperiment", RABI, yields=True))).job
            await asyncio.to_thread(gate.held.wait, WAIT_S)  # rounds 1-3 done, round 4 held
            await eventually(lambda: scheduler.get(rabi.job_id), until=lambda j: j.state is JobState.RUNNING)
            first_task = (await scheduler.get(rabi.job_id)).current_run.task_id
            urgent = (await scheduler.submit(lab("NoOpExperiment", {}, priority=5))).job
            # The executor took the yield: the run stops at the end of the round it is in.
            await eventually(lambda: hardware.runs.get(first_task).cancel.is_set(), what="the yield asked")
            gate.open()
            await finished(scheduler, urgent.job_id)
            done = await finished(scheduler, rabi.job_id)

            runs, _ = await scheduler.list_runs(rabi.job_id, 10, "", full=True)
            assert [r.state for r in runs] == [JobState.CANCELLED, JobState.SUCCEEDED]
            yielded, resumed = runs
            assert yielded.task_id == first_task and yielded.error.reason == PREEMPTED
            assert "priority 5 > 0" in yielded.error.message and yielded.summary["rounds_done"] == 3
            assert yielded.data is not None and yielded.data.name
            assert "continues from the 3 round(s)" in resumed.reason.summary
            assert urgent.job_id in yielded.error.message
            with h5py.File(tmp_path / "executor" / "data" / done.current_run.data.name, "r") as f:
                assert json.loads(f.attrs["rounds_by_run"]) == [
                    {"task_id": yielded.task_id, "first_round": 1, "last_round": 3},
                    {"task_id": resumed.task_id, "first_round": 4, "last_round": 6},
                ]
                assert f.attrs["resumed_from"] == yielded.data.name and not f.attrs["partial"]

            whole = await finished(
                scheduler, (await scheduler.submit(lab("AmplitudeRabiExperiment", RABI))).job.job_id
            )
            pi_resumed, pi_whole = done.current_run.summary["pi_gain"], whole.current_run.summary["pi_gain"]
            assert abs(pi_resumed - pi_whole) / pi_whole < 0.02, (pi_resumed, pi_whole)
        finally:
            await scheduler.stop()
