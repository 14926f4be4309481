"""The seed job server's notebook examples (README "Usage in Jupyter Notebooks"), copied verbatim
apart from the import line, run twice: against the real scheduler with the fake executor
(in-process), and against a real `qsched up` stack (processes, the simulated board), where the
seed's module paths and DAC-unit gains go through the executor's seed-compatibility layer
(services/qsched_executor/seed_compat.py). `JobClient()` finds the scheduler through
QSCHED_ADDRESS. QSCHED_SDK_TEST_ADDRESS names an already running stack for the second run."""

from __future__ import annotations

import asyncio
import time

import pytest

from qsched import JobClient
from qsched_core.principal import Role
from tests.sdk.helpers import PERSON, in_thread
from tests.support.waiting import eventually

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


SEED_RABI = ("AmplitudeRabiExperiment", "experiments.single_qubit.amplitude_rabi")
SEED_T1 = ("T1Experiment", "experiments.single_qubit.t1")


class Backend:
    """Where the examples run. The examples' user, Claude, is the authenticated person
    ($QSCHED_TOKEN); `client(name)` acts as someone else."""

    real = False
    rabi_points = 0

    def __init__(self, address: str, token_for):
        self.address = address
        self.token_for = token_for

    def client(self, name: str = PERSON) -> JobClient:
        return JobClient(self.address, token=self.token_for(name))

    async def hold_board(self) -> str:
        """Keep the lab device busy with a running job (its id) until `release`."""
        raise NotImplementedError

    async def release(self, blocker: str) -> None:
        raise NotImplementedError

    def failing(self) -> dict:
        """submit_job arguments that make a job fail when it runs."""
        raise NotImplementedError


class InProcess(Backend):
    """The real scheduler with the fake executor: runs succeed at once with a 21-point file."""

    rabi_points = 21

    def __init__(self, scheduler, token_for):
        super().__init__(scheduler[2], token_for)
        self.fake = scheduler[1]

    async def hold_board(self) -> str:
        self.fake.hold = asyncio.Event()
        blocker = await in_thread(self.client().submit_job, "Blocker", SEED_T1[1], {}, PERSON)
        await eventually(
            lambda: in_thread(self.client().get_status, blocker),
            until=lambda r: r.status == "running",
            timeout=60,
        )
        return blocker

    async def release(self, blocker: str) -> None:
        self.fake.hold.set()
        await in_thread(self.client().wait_for_completion, blocker, verbose=False, timeout=30)

    def failing(self) -> dict:
        return {"expt_config": {"fail": "PROGRAM_ERROR"}}


class QschedUp(Backend):
    """A real `qsched up` stack: the seed examples' jobs run on the simulated board."""

    real = True
    rabi_points = 50  # the seed examples' amplitude Rabi: expts 50

    async def hold_board(self) -> str:
        client = self.client()
        blocker = await in_thread(
            client.submit_job, "NoOpExperiment", "qsched_hardware.experiments", {"sleep_s": 600}, PERSON
        )
        await eventually(
            lambda: in_thread(client.get_status, blocker), until=lambda r: r.status == "running", timeout=60
        )
        return blocker

    async def release(self, blocker: str) -> None:
        client = self.client()
        await in_thread(client.cancel_job, blocker)  # a running NoOp stops at once
        await in_thread(client.wait_for_completion, blocker, verbose=False, timeout=60)

    def failing(self) -> dict:
        # The scheduler cannot pin a revision that does not exist: the run fails before the board.
        return {"expt_config": {}, "config_revisions": {"hardware_config": "CFG-HW-20000101-99999"}}


def drain(client: JobClient) -> None:
    """Wait for every queued or running job (a shared stack starts each test with an idle board)."""
    queue = client.list_queue()
    for job in [*queue["running_jobs"], *queue["pending_jobs"]]:
        client.wait_for_completion(job["job_id"], verbose=False, timeout=60)


@pytest.fixture(params=["in-process", "qsched-up"])
def seed_env(request, monkeypatch):
    if request.param == "in-process":
        identity = request.getfixturevalue("identity")
        backend = InProcess(
            request.getfixturevalue("scheduler"), lambda name: identity.token_for(name, (Role.OPERATOR,))
        )
        monkeypatch.setenv("QSCHED_ADDRESS", backend.address)
        monkeypatch.setenv("QSCHED_TOKEN", backend.token_for(PERSON))
    else:
        stack = request.getfixturevalue("on_stack")  # sets QSCHED_ADDRESS and QSCHED_TOKEN
        backend = QschedUp(stack.address, stack.token_for)
    yield backend
    if backend.real:
        drain(backend.client())


async def run_example(code: str) -> dict:
    namespace: dict = {"__name__": "__seed_example__"}
    await in_thread(exec, code, namespace)
    return namespace


async def test_basic_submit_and_wait(seed_env, capsys):
    ns = await run_example(BASIC)
    assert ns["health"]["status"] == "healthy"
    assert ns["health"]["database_connected"] is True
    result = ns["result"]
    assert result.is_successful() and result.status == "completed", result.error_message
    out = capsys.readouterr().out
    assert "Server status: healthy" in out
    assert f"Success! Data saved to: {result.data_file_path}" in out
    if seed_env.real:  # the seed's gain step of 100 DAC units ran as a fraction of full scale
        data = await in_thread(JobClient().load_data, ns["job_id"])
        assert data["xpts"].shape == (50,)
        assert data["xpts"][-1] == pytest.approx(49 * 100 / 32766, abs=1e-4)
        assert data.attrs["experiment_module"] == "experiments.single_qubit.amplitude_rabi"
        seed = data.attrs["seed_compat"]
        assert seed["experiment"] == "qsched_hardware.experiments.AmplitudeRabiExperiment"


async def test_submit_multiple_jobs(seed_env, capsys):
    ns = await run_example(MULTIPLE)
    assert [r.status for r in ns["results"]] == ["completed"] * 3, [r.error_message for r in ns["results"]]
    assert [r.experiment_class for r in ns["results"]] == [
        "T1Experiment",
        "T2RamseyExperiment",
        "ResonatorSpectroscopyExperiment",
    ]
    assert "JOB QUEUE" in capsys.readouterr().out
    if seed_env.real:  # real fits of the simulated device
        summaries = [r.summary for r in ns["results"]]
        assert {"t1_us"} <= set(summaries[0]) and {"t2r_us"} <= set(summaries[1])
        assert {"f_res_mhz"} <= set(summaries[2])


async def test_priority_scheduling(seed_env, capsys):
    blocker = await seed_env.hold_board()  # a running job keeps the board, so both stay queued
    try:
        ns = await run_example(PRIORITY)
        out = capsys.readouterr().out
        queue = await in_thread(JobClient().list_queue)
    finally:
        await seed_env.release(blocker)
    assert queue["running_job"]["job_id"] == blocker
    assert [j["experiment_class"] for j in queue["pending_jobs"]] == [
        "T1Experiment",
        "ResonatorSpectroscopyExperiment",
    ]
    assert [j["queue_position"] for j in queue["pending_jobs"]] == [1, 2]
    assert out.index("T1Experiment") < out.index("ResonatorSpectroscopyExperiment")
    client = JobClient()
    urgent = await in_thread(client.wait_for_completion, ns["urgent_job"], verbose=False, timeout=60)
    bg = await in_thread(client.wait_for_completion, ns["bg_job"], verbose=False, timeout=60)
    assert urgent.status == bg.status == "completed", (urgent.error_message, bg.error_message)
    # the urgent job ran first (the order of the runs, not their durations)
    ran = sorted([(urgent.started_at, "urgent"), (bg.started_at, "background")])
    assert [name for _, name in ran] == ["urgent", "background"], f"priority 0 ran before priority 10: {ran}"
    assert urgent.completed_at <= bg.completed_at


async def test_non_blocking_submission(seed_env, monkeypatch, capsys):
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)  # the example's time.sleep(5), without the wait
    ns = await run_example(NON_BLOCKING)
    assert slept == [5]
    assert ns["status"].status in ("pending", "running", "completed")
    final = ns.get("result") or ns["status"]
    assert final.status == "completed", final.error_message
    assert "Current status:" in capsys.readouterr().out


async def test_cancel_a_job(seed_env, capsys):
    blocker = await seed_env.hold_board()  # keeps the example's job queued
    try:
        ns = await run_example(CANCEL)
    finally:
        await seed_env.release(blocker)
    assert f"Job {ns['job_id']} cancelled" in capsys.readouterr().out
    assert (await in_thread(JobClient().get_status, ns["job_id"])).status == "cancelled"


async def test_view_job_history(seed_env, capsys):
    client = JobClient()
    ok = await in_thread(client.submit_job, *SEED_T1, {}, "Claude")
    bad = await in_thread(client.submit_job, *SEED_T1, user="Claude", **seed_env.failing())
    other = await in_thread(seed_env.client("Alice").submit_job, *SEED_T1, {}, "Alice")
    for job_id in (ok, bad, other):
        await in_thread(client.wait_for_completion, job_id, verbose=False, timeout=60)
    ns = await run_example(HISTORY)
    # On a shared stack older jobs follow; these three are the newest.
    assert [h["job_id"] for h in ns["history"][:3]] == [other, bad, ok]  # newest first
    assert set(ns["history"][0]) >= {
        "job_id",
        "user",
        "experiment_class",
        "status",
        "created_at",
        "completed_at",
        "data_file_path",
    }
    assert [h["job_id"] for h in ns["my_jobs"][:2]] == [bad, ok]
    assert {h["user"] for h in ns["my_jobs"]} == {"Claude"}
    assert [h["job_id"] for h in ns["completed"][:2]] == [other, ok]
    assert {h["status"] for h in ns["completed"]} == {"completed"}
    assert ns["failed"][0]["job_id"] == bad and {h["status"] for h in ns["failed"]} == {"failed"}
    assert f"{bad}: failed - T1Experiment" in capsys.readouterr().out


async def test_load_data_from_completed_job(seed_env, capsys):
    client = JobClient()
    config = {"start": 0, "step": 100, "expts": 50, "reps": 1000}  # the seed examples' Rabi
    job_id = await in_thread(client.submit_job, *SEED_RABI, config, "Claude")
    done = await in_thread(client.wait_for_completion, job_id, verbose=False, timeout=60)
    assert done.is_successful(), done.error_message
    ns = await run_example(LOAD_DATA.replace("JOB-20260113-00001", job_id))
    n = seed_env.rabi_points
    assert len(ns["xpts"]) == n and ns["avgi"].shape == ns["avgq"].shape == (n,)
    assert ns["config"]["expt"]["expts"] == n
    assert f"Loaded {n} data points" in capsys.readouterr().out
