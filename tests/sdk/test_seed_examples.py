"""The seed job server's notebook examples (README "Usage in Jupyter Notebooks"), run unchanged
apart from the import line, against a real scheduler. `JobClient()` finds it through
QSCHED_ADDRESS. Set QSCHED_SDK_TEST_ADDRESS to run them against another stack (e.g. `qsched up`)."""

from __future__ import annotations

import time

import pytest

from tests.sdk.helpers import address_of, in_thread

BASIC = """
from qsched import JobClient

# Create client (connects to localhost:8000 by default)
client = JobClient()

# Check server health
health = client.health_check()
print(f"Server status: {health['status']}")
print(f"Pending jobs: {health['pending_jobs']}")

# Submit an experiment job
job_id = client.submit_job(
    experiment_class="AmplitudeRabiExperiment",
    experiment_module="experiments.single_qubit.amplitude_rabi",
    expt_config={
        "start": 0,
        "step": 100,
        "expts": 50,
        "reps": 1000,
        "rounds": 1,
        "qubits": [0],
        "sigma_test": 0.035,
        "pulse_type": "gauss",
    },
    user="Claude",  # Your username
    priority=0,     # Default priority
)

print(f"Job submitted: {job_id}")

# Wait for completion (blocks until done)
result = client.wait_for_completion(job_id)

if result.is_successful():
    print(f"Success! Data saved to: {result.data_file_path}")
else:
    print(f"Job failed: {result.error_message}")
"""

MULTIPLE = """
from qsched import JobClient

client = JobClient()

# Define a list of experiments to run
experiments = [
    {
        "class": "T1Experiment",
        "module": "experiments.single_qubit.t1",
        "config": {"start": 0, "step": 0.5, "expts": 100, "reps": 200},
    },
    {
        "class": "T2RamseyExperiment",
        "module": "experiments.single_qubit.t2_ramsey",
        "config": {"start": 0, "step": 0.1, "expts": 100, "reps": 200},
    },
    {
        "class": "ResonatorSpectroscopyExperiment",
        "module": "experiments.single_qubit.resonator_spectroscopy",
        "config": {"start": 7000, "stop": 7100, "expts": 101, "reps": 500},
    },
]

# Submit all jobs
job_ids = []
for exp in experiments:
    job_id = client.submit_job(
        experiment_class=exp["class"],
        experiment_module=exp["module"],
        expt_config=exp["config"],
        user="Claude",
    )
    job_ids.append(job_id)
    print(f"Submitted {exp['class']}: {job_id}")

# Check queue
client.print_queue()

# Wait for all jobs to complete
results = []
for job_id in job_ids:
    result = client.wait_for_completion(job_id)
    results.append(result)
    print(f"{job_id}: {result.status}")
"""

PRIORITY = """
from qsched import JobClient

client = JobClient()

# Submit a low-priority background calibration
bg_job = client.submit_job(
    experiment_class="ResonatorSpectroscopyExperiment",
    experiment_module="experiments.single_qubit.resonator_spectroscopy",
    expt_config={"start": 7000, "stop": 7100, "expts": 101},
    user="Claude",
    priority=0,  # Low priority
)

# Submit a high-priority urgent experiment
urgent_job = client.submit_job(
    experiment_class="T1Experiment",
    experiment_module="experiments.single_qubit.t1",
    expt_config={"start": 0, "step": 0.5, "expts": 100},
    user="Claude",
    priority=10,  # High priority - runs first!
)

# The urgent_job will run before bg_job even though it was submitted second
client.print_queue()
"""

NON_BLOCKING = """
from qsched import JobClient
import time

client = JobClient()

# Submit job without waiting
job_id = client.submit_job(
    experiment_class="AmplitudeRabiExperiment",
    experiment_module="experiments.single_qubit.amplitude_rabi",
    expt_config={"start": 0, "step": 100, "expts": 50, "reps": 1000},
    user="Claude",
)

print(f"Submitted: {job_id}")
print("Doing other work while job runs...")

# Do other work here
time.sleep(5)

# Check status periodically
status = client.get_status(job_id)
print(f"Current status: {status.status}")

# When ready, wait for completion
if not status.is_done():
    result = client.wait_for_completion(job_id)
"""

CANCEL = """
from qsched import JobClient

client = JobClient()

# Submit a job
job_id = client.submit_job(
    experiment_class="AmplitudeRabiExperiment",
    experiment_module="experiments.single_qubit.amplitude_rabi",
    expt_config={"start": 0, "step": 100, "expts": 50, "reps": 1000},
    user="Claude",
)

# Changed your mind? Cancel it (only works if still pending)
try:
    client.cancel_job(job_id)
    print(f"Job {job_id} cancelled")
except Exception as e:
    print(f"Could not cancel: {e}")
"""

HISTORY = """
from qsched import JobClient

client = JobClient()

# Get recent job history
history = client.get_history(limit=20)
for job in history:
    print(f"{job['job_id']}: {job['status']} - {job['experiment_class']}")

# Filter by user
my_jobs = client.get_history(user="Claude", limit=10)

# Filter by status
completed = client.get_history(status="completed", limit=10)
failed = client.get_history(status="failed", limit=10)
"""

# Two import lines here: SlabFile comes from qsched.data instead of slab.datamanagement, and the
# example's literal job id is replaced by one that exists on this scheduler.
LOAD_DATA = """
from qsched import JobClient
from qsched.data import SlabFile
import numpy as np

client = JobClient()

# Get a completed job's data file path
job_id = "JOB-20260113-00001"
result = client.get_status(job_id)

if result.is_successful() and result.data_file_path:
    # Load the HDF5 data
    with SlabFile(result.data_file_path, 'r') as f:
        # Load config
        config = f.load_config()

        # Load data arrays
        xpts = np.array(f['xpts'])
        avgi = np.array(f['avgi'])
        avgq = np.array(f['avgq'])

    print(f"Loaded {len(xpts)} data points")
"""


@pytest.fixture
def seed_env(scheduler, monkeypatch):
    monkeypatch.setenv("QSCHED_ADDRESS", address_of(scheduler))
    return scheduler


async def run_example(code: str) -> dict:
    namespace: dict = {"__name__": "__seed_example__"}
    await in_thread(exec, code, namespace)
    return namespace


async def test_basic_submit_and_wait(seed_env, capsys):
    ns = await run_example(BASIC)
    assert ns["health"]["status"] == "healthy"
    assert ns["health"]["database_connected"] is True
    assert ns["result"].is_successful() and ns["result"].status == "completed"
    out = capsys.readouterr().out
    assert "Server status: healthy" in out
    assert f"Success! Data saved to: {ns['result'].data_file_path}" in out


async def test_submit_multiple_jobs(seed_env, capsys):
    ns = await run_example(MULTIPLE)
    assert [r.status for r in ns["results"]] == ["completed"] * 3
    assert [r.experiment_class for r in ns["results"]] == [
        "T1Experiment",
        "T2RamseyExperiment",
        "ResonatorSpectroscopyExperiment",
    ]
    assert "JOB QUEUE" in capsys.readouterr().out


async def test_priority_scheduling(seed_env, capsys):
    _stub, fake, _ = seed_env
    import asyncio

    fake.hold = asyncio.Event()  # a running job keeps the board, so both stay queued
    from qsched import JobClient

    blocker = await in_thread(JobClient().submit_job, "Blocker", "m", {}, "someone")
    await run_example(PRIORITY)
    out = capsys.readouterr().out
    queue = await in_thread(JobClient().list_queue)
    fake.hold.set()
    assert queue["running_job"]["job_id"] == blocker
    assert [j["experiment_class"] for j in queue["pending_jobs"]] == [
        "T1Experiment",
        "ResonatorSpectroscopyExperiment",
    ]
    assert [j["queue_position"] for j in queue["pending_jobs"]] == [1, 2]
    assert out.index("T1Experiment") < out.index("ResonatorSpectroscopyExperiment")


async def test_non_blocking_submission(seed_env, monkeypatch, capsys):
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)  # the example's time.sleep(5), without the wait
    ns = await run_example(NON_BLOCKING)
    assert slept == [5]
    assert ns["status"].status in ("pending", "running", "completed")
    final = ns.get("result") or ns["status"]
    assert final.status == "completed" or ns["status"].is_done()
    assert "Current status:" in capsys.readouterr().out


async def test_cancel_a_job(seed_env, capsys):
    import asyncio

    _stub, fake, _ = seed_env
    fake.hold = asyncio.Event()
    from qsched import JobClient

    await in_thread(JobClient().submit_job, "Blocker", "m", {}, "someone")  # keeps the example's job queued
    ns = await run_example(CANCEL)
    fake.hold.set()
    assert f"Job {ns['job_id']} cancelled" in capsys.readouterr().out
    assert (await in_thread(JobClient().get_status, ns["job_id"])).status == "cancelled"


async def test_view_job_history(seed_env, capsys):
    from qsched import JobClient

    client = JobClient()
    ok = await in_thread(client.submit_job, "T1Experiment", "m", {}, "Claude")
    bad = await in_thread(client.submit_job, "T1Experiment", "m", {"fail": "PROGRAM_ERROR"}, "Claude")
    other = await in_thread(client.submit_job, "T1Experiment", "m", {}, "Alice")
    for job_id in (ok, bad, other):
        await in_thread(client.wait_for_completion, job_id, verbose=False)
    ns = await run_example(HISTORY)
    assert [h["job_id"] for h in ns["history"]] == [other, bad, ok]  # newest first
    assert set(ns["history"][0]) >= {
        "job_id",
        "user",
        "experiment_class",
        "status",
        "created_at",
        "completed_at",
        "data_file_path",
    }
    assert [h["job_id"] for h in ns["my_jobs"]] == [bad, ok]
    assert [h["job_id"] for h in ns["completed"]] == [other, ok]
    assert [h["job_id"] for h in ns["failed"]] == [bad]
    assert f"{bad}: failed - T1Experiment" in capsys.readouterr().out


async def test_load_data_from_completed_job(seed_env, capsys):
    from qsched import JobClient

    client = JobClient()
    job_id = await in_thread(client.submit_job, "AmplitudeRabiExperiment", "m", {}, "Claude")
    await in_thread(client.wait_for_completion, job_id, verbose=False)
    ns = await run_example(LOAD_DATA.replace("JOB-20260113-00001", job_id))
    assert len(ns["xpts"]) == 21 and ns["avgi"].shape == ns["avgq"].shape == (21,)
    assert ns["config"]["expt"]["expts"] == 21
    assert "Loaded 21 data points" in capsys.readouterr().out
