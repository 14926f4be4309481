"""The OQC job SDK's documented behaviours (seed 002, "Working with Jobs") on a real `qsched up`
stack: circuits on the gateway's local Aer simulator, a lab job on the simulated board. Each test
follows one of the seed's examples with `OqcSdk` replaced by `qsched.aio.Client` and the QPU id by
a qsched device name; `shots` is given explicitly (qsched has no default shot count)."""

from __future__ import annotations

from datetime import datetime

import pytest

from qsched import JobClient
from qsched.aio import Client, JobError, JobFailed, JobResult, JobState
from tests.sdk.helpers import PERSON, in_thread
from tests.support.waiting import eventually

QPU = "local:aer_simulator"
PROGRAM = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'
BAD_PROGRAM = PROGRAM.replace("OPENQASM 2.0", "OPENQASM 5.0")
SHOTS = 200
TIMEOUT_S = 60


@pytest.fixture
def stack(on_stack) -> str:
    return on_stack.address  # QSCHED_TOKEN: the seed examples' person


def sdk(address: str, **kwargs) -> Client:
    return Client(address, owner=PERSON, **kwargs)


async def test_default_qpu_set_at_initialisation(stack):
    async with sdk(stack, default_device=QPU) as client:
        job = client.create_job(program=PROGRAM, shots=SHOTS)  # qpu_id not required
        await job.execute(timeout_s=TIMEOUT_S)
        assert job.completed and job.qpu_id == QPU


async def test_discover_then_set_the_default_qpu(stack):
    async with sdk(stack) as client:
        qpus = await client.list_qpus()
        simulator = next((q for q in qpus if q["name"] == QPU), None)
        assert simulator is not None and "circuit" in simulator["kinds"]
        client.set_default_qpu(simulator["id"])
        job = client.create_job(program=PROGRAM, shots=SHOTS)
        await job.execute(timeout_s=TIMEOUT_S)
        assert job.completed


async def test_accessing_results(stack):
    async with sdk(stack) as client:
        job = client.create_job(program=PROGRAM, qpu_id=QPU, shots=SHOTS)
        assert job.result is None  # before the first run completes
        outputs = await job.execute(timeout_s=TIMEOUT_S)
        result = job.result
        assert isinstance(result, JobResult) and result.ok and not result.is_error
        assert set(result.data) == {"c"} and set(result.data["c"]) <= {"0", "1"}
        assert sum(result.data["c"].values()) == SHOTS
        assert result.program == PROGRAM and result.qpu_id == QPU
        assert isinstance(result.received, datetime) and result.task_id == job.task_id
        assert outputs.first is result and outputs.one is result and job.outputs.first is result
        assert outputs.all() == [result]


async def test_execution_history(stack):
    async with sdk(stack) as client:
        job = client.create_job(program=PROGRAM, qpu_id=QPU, shots=SHOTS)
        await job.execute(timeout_s=TIMEOUT_S)
        history = job.history.all()
        assert (len(history), isinstance(history[0], JobResult)) == (1, True)


async def test_rerunning_a_terminal_job_makes_a_new_task(stack):
    async with sdk(stack) as client:
        job = client.create_job(program=PROGRAM, qpu_id=QPU, shots=SHOTS)
        await job.execute(timeout_s=TIMEOUT_S)
        first_task = job.task_id
        await job.execute(timeout_s=TIMEOUT_S)
        assert (job.task_id != first_task, len(job.history.all()), job.completed) == (True, 2, True)
        with pytest.raises(ValueError):
            _ = job.history.one  # two items


async def test_reexecute_an_output(stack):
    async with sdk(stack) as client:
        job = client.create_job(program=PROGRAM, qpu_id=QPU, shots=SHOTS)
        first_outputs = await job.execute(timeout_s=TIMEOUT_S)
        await first_outputs.first.reexecute(timeout_s=TIMEOUT_S)
        assert (job.completed, len(job.history.all())) == (True, 2)
        assert job.result.settings == first_outputs.first.settings


async def test_reconfigure_from_a_memento_with_a_corrected_program(stack):
    async with sdk(stack) as client:
        job = client.create_job(program=BAD_PROGRAM, qpu_id=QPU, shots=SHOTS)
        first_outputs = await job.execute(timeout_s=TIMEOUT_S)
        assert isinstance(first_outputs.first, JobError) and first_outputs.first.code
        job.reconfigure(memento=first_outputs.first, program=PROGRAM)
        await job.execute(timeout_s=TIMEOUT_S)
        history = job.history.all()
        counted = (len(history), sum(1 for h in history if h.is_error), sum(1 for h in history if h.ok))
        assert counted == (2, 1, 1)
        assert history[1].qpu_id == QPU and history[1].program == PROGRAM


async def test_raise_for_status_and_the_failed_program(stack):
    async with sdk(stack) as client:
        job = client.create_job(program=BAD_PROGRAM, qpu_id=QPU, shots=SHOTS)
        await job.execute(timeout_s=TIMEOUT_S)  # a failed run is stored, not raised
        assert job.state is JobState.FAILED
        with pytest.raises(JobFailed) as info:
            job.raise_for_status()
        assert info.value.qpu_id == QPU and info.value.code == job.error.code
        job.reconfigure(program=PROGRAM)
        await job.execute(timeout_s=TIMEOUT_S)
        job.raise_for_status()  # the latest run succeeded
        history = job.history.all()
        failed_runs = [h for h in history if h.is_error]
        successful_runs = [h for h in history if h.ok]
        summary = (
            len(history),
            len(failed_runs),
            len(successful_runs),
            "OPENQASM 5.0" in failed_runs[0].program,
        )
        assert summary == (2, 1, 1, True)


async def test_execute_on_an_active_job_follows_it_and_cancel_if_active_forces_a_fresh_run(stack):
    async with sdk(stack, default_device="qick") as client:
        blocker = await hold_board(stack)
        try:
            job = client.create_job(experiment="qsched_hardware.experiments.NoOpExperiment", config={})
            await job.submit()
            job_id = job.job_id
            with pytest.raises(TimeoutError):  # queued behind the blocker; nothing is cancelled
                await job.execute(timeout_s=0.3)
            assert job.state is JobState.SUBMITTED and job.job_id == job_id
            await job.cancel_if_active()  # now terminal ...
            assert job.state is JobState.CANCELLED and len(job.history) == 0
        finally:
            await release(stack, blocker)
        await job.execute(timeout_s=TIMEOUT_S)  # ... so execute() submits a fresh run
        assert job.completed and len(job.history) == 1


async def test_cancellation(stack):
    async with sdk(stack, default_device="qick") as client:
        blocker = await hold_board(stack)  # the job stays queued, so the cancel always wins
        try:
            job = client.create_job(
                experiment="experiments.single_qubit.t1.T1Experiment",
                config={"start": 0, "step": 0.5, "expts": 100},
            )
            await job.submit()
            await job.cancel()
            assert job.state is JobState.CANCELLED
            await job.cancel_if_active()  # a no-op on a terminal job
            assert job.state is JobState.CANCELLED and len(job.history) == 0
        finally:
            await release(stack, blocker)
        never_sent = client.create_job(experiment="qsched_hardware.experiments.NoOpExperiment")
        await never_sent.cancel_if_active()
        assert never_sent.state is JobState.CREATED


async def test_execution_diagnostics_survive_save_and_load(stack, tmp_path):
    async with sdk(stack) as client:
        job = client.create_job(program=PROGRAM, qpu_id=QPU, shots=SHOTS, fetch_diagnostics=True)
        assert (job.timings, job.metrics, job.metadata) == (None, None, None)
        await job.execute(timeout_s=TIMEOUT_S)
        assert job.timings["run_s"] >= 0 and job.timings["queue_s"] >= 0
        assert job.metadata["device"] == QPU and job.metadata["task_id"] == job.task_id
        assert job.metrics is not None
        loaded = client.load(job.save(tmp_path / "job.json"))
        assert loaded.fetch_diagnostics and loaded.timings == job.timings and loaded.metadata == job.metadata
        await loaded.execute(timeout_s=TIMEOUT_S)  # the reloaded job still fetches diagnostics
        assert loaded.metadata["task_id"] == loaded.task_id != job.task_id


# ---- holding the lab board ------------------------------------------------------------------------


async def hold_board(address: str) -> str:
    """A running job that keeps the lab device busy until `release` (a NoOp run cancels at once)."""
    client = JobClient(address)
    blocker = await in_thread(
        client.submit_job, "NoOpExperiment", "qsched_hardware.experiments", {"sleep_s": 600}, PERSON
    )

    await eventually(
        lambda: in_thread(client.get_status, blocker),
        until=lambda r: r.status == "running",
        timeout=TIMEOUT_S,
    )
    return blocker


async def release(address: str, blocker: str) -> None:
    client = JobClient(address)
    await in_thread(client.cancel_job, blocker)
    await in_thread(client.wait_for_completion, blocker, verbose=False, timeout=TIMEOUT_S)
