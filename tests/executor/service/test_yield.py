"""Yielding at safe points on a real executor with the simulated board (issue 14, item 4): a Rabi
asked to yield between averaging rounds ends preempted with its completed rounds in its data
file; the next run of the job continues from that file, runs only the remaining rounds, and its
combined data fits the same pi gain as an uninterrupted run."""

from __future__ import annotations

import asyncio
import json

import h5py
import numpy as np

from qsched_core.execution import Cancelled, DataRef, ExecutionRequest, Succeeded
from tests.executor.conftest import WAIT_S, RoundGate, executor_service, noop, run_queue, run_request

# Enough shots per round that a fit of half the rounds is already close; 6 rounds, 3 before the yield.
RABI = {"expts": 41, "reps": 200, "start": 0.0, "stop": 0.9, "rounds": 6}
JOB = "JOB-20261207-00014"


def resumed(request: ExecutionRequest, ref: DataRef) -> ExecutionRequest:
    return ExecutionRequest(
        request.job_id, request.task_id, request.owner, request.experiment, request.configs, resume_from=ref
    )


def attrs_of(path) -> dict:
    with h5py.File(path, "r") as f:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}


async def test_a_yielded_rabi_resumes_and_fits_the_same_pi_gain_as_an_uninterrupted_run(tmp_path):
    gate = RoundGate(free_rounds=3)
    async with executor_service(tmp_path, gate) as (stub, _, _), run_queue(stub) as queue:
        await queue.enqueue(run_request("t-1", JOB, expt=RABI))
        await queue.enqueue(noop("t-waiting", "JOB-20261207-00015"), after="t-1")
        await asyncio.to_thread(gate.held.wait, WAIT_S)  # rounds 1-3 done, round 4 held
        # A yield concerns the run on the board only: a waiting run is left alone.
        answer = await queue.preempt("t-1", "t-waiting", reason="calibration rabi is due")
        assert answer.cancelling == ("t-1",) and answer.ignored == ("t-waiting",)
        gate.open()
        body = (await queue.ended_run("t-1")).body
        assert isinstance(body, Cancelled) and body.preempted and body.resumable
        assert body.rounds_done == 3 and body.reason == "calibration rabi is due" and body.data is not None
        saved = attrs_of(tmp_path / "data" / body.data.name)
        assert saved["partial"] and saved["run_rounds_done"] == 3
        assert json.loads(saved["rounds_by_run"]) == [{"task_id": "t-1", "first_round": 1, "last_round": 3}]
        assert isinstance((await queue.ended_run("t-waiting")).body, Succeeded)  # the queue went on

        progress_before = gate.rounds
        await queue.enqueue(resumed(run_request("t-2", JOB, expt=RABI), body.data), after="t-waiting")
        done = (await queue.ended_run("t-2")).body
        assert isinstance(done, Succeeded) and done.data is not None
        assert gate.rounds - progress_before == 3  # only the remaining rounds ran
        combined = attrs_of(tmp_path / "data" / done.data.name)
        assert not combined["partial"] and combined["run_rounds_done"] == 6
        assert combined["resumed_from"] == body.data.name and combined["resume"].startswith("continued")
        assert json.loads(combined["rounds_by_run"]) == [
            {"task_id": "t-1", "first_round": 1, "last_round": 3},
            {"task_id": "t-2", "first_round": 4, "last_round": 6},
        ]

        await queue.enqueue(run_request("t-whole", "JOB-20261207-00016", expt=RABI), after="t-2")
        whole = (await queue.ended_run("t-whole")).body
        assert isinstance(whole, Succeeded)
        pi_resumed, pi_whole = done.summary["pi_gain"], whole.summary["pi_gain"]
        assert abs(pi_resumed - pi_whole) / pi_whole < 0.02, (pi_resumed, pi_whole)
        # The combined rounds are an average like the uninterrupted run's, not a sum or one half.
        with (
            h5py.File(tmp_path / "data" / done.data.name, "r") as f,
            h5py.File(tmp_path / "data" / whole.data.name, "r") as g,
        ):
            combined_iq, whole_iq = f["avgi"][()] + 1j * f["avgq"][()], g["avgi"][()] + 1j * g["avgq"][()]
        span = np.ptp(np.abs(whole_iq))
        rms = np.sqrt(np.mean(np.abs(combined_iq - whole_iq) ** 2))
        ratio = np.mean(np.abs(combined_iq)) / np.mean(np.abs(whole_iq))
        assert rms < 0.1 * span and 0.95 < ratio < 1.05


async def test_a_run_that_cannot_continue_the_saved_rounds_restarts_and_says_why(tmp_path):
    gate = RoundGate(free_rounds=2)
    async with executor_service(tmp_path, gate) as (stub, _, _), run_queue(stub) as queue:
        await queue.enqueue(run_request("t-1", JOB, expt=RABI))
        await asyncio.to_thread(gate.held.wait, WAIT_S)
        await queue.preempt("t-1")
        gate.open()
        body = (await queue.ended_run("t-1")).body
        assert isinstance(body, Cancelled) and body.preempted and body.data is not None
        before = gate.rounds
        other = {**RABI, "stop": 0.8}  # other settings: the saved rounds do not belong to this sweep
        await queue.enqueue(resumed(run_request("t-2", JOB, expt=other), body.data), after="t-1")
        done = (await queue.ended_run("t-2")).body
        assert isinstance(done, Succeeded) and gate.rounds - before == 6  # every round again
        attrs = attrs_of(tmp_path / "data" / done.data.name)
        assert attrs["resume"].startswith("restarted") and "settings differ" in attrs["resume"]


async def test_a_job_yielded_twice_chains_its_rounds_through_both_files(tmp_path):
    gate = RoundGate(free_rounds=2)
    async with executor_service(tmp_path, gate) as (stub, _, _), run_queue(stub) as queue:
        ref = None
        for task in ("t-1", "t-2"):
            request = run_request(task, JOB, expt=RABI)
            await queue.enqueue(resumed(request, ref) if ref else request, after="t-1" if ref else "")
            await asyncio.to_thread(gate.held.wait, WAIT_S)  # two more rounds done, the next held
            await queue.preempt(task)
            gate.free = gate.rounds + 2  # the next run does two rounds, then one is held again
            gate.release.set()  # the held round goes on; the run stops at its first poll
            body = (await queue.ended_run(task)).body
            assert isinstance(body, Cancelled) and body.preempted and body.resumable
            gate.release.clear()
            gate.held.clear()
            ref = body.data
        gate.open()
        await queue.enqueue(resumed(run_request("t-3", JOB, expt=RABI), ref), after="t-2")
        done = (await queue.ended_run("t-3")).body
        assert isinstance(done, Succeeded) and "pi_gain" in done.summary
        attrs = attrs_of(tmp_path / "data" / done.data.name)
        assert json.loads(attrs["rounds_by_run"]) == [
            {"task_id": "t-1", "first_round": 1, "last_round": 2},
            {"task_id": "t-2", "first_round": 3, "last_round": 4},
            {"task_id": "t-3", "first_round": 5, "last_round": 6},
        ]
