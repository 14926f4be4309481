"""The SDK against a real `qsched up` stack: the seed's JobClient flow on the simulated
board, and an OQC-style job handle running a circuit on the local simulator."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from qsched import JobClient
from qsched.aio import Client, JobState
from qsched_core.config import SERVICES
from qsched_core.sql import make_engine
from qsched_identity.db import sqlite_url_for
from qsched_identity.store import IdentityStore
from tests.scheduler.service.test_provider_jobs import BELL
from tests.support import processes
from tests.support.identity import TestIdentity as UpIdentity  # not "Test*": pytest would collect it
from tests.support.identity import up_environment


@dataclass(frozen=True)
class Stack:
    address: str  # the scheduler's
    token: str  # alice's, a person of this stack's own installation


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """`qsched up` on free ports, provisioning an installation of its own (not the session's
    identity); alice is added to it as a person without roles."""
    tmp = tmp_path_factory.mktemp("stack")
    addresses = {s: f"127.0.0.1:{processes.free_port()}" for s in SERVICES}
    flags = [arg for s in SERVICES for arg in (f"--{s}-address", addresses[s])]
    log = tmp / "up.log"
    env = up_environment(tmp / "config")
    up = processes.start(["up", *flags, "--data-dir", str(tmp / "data")], log, env)
    store = None
    try:
        processes.wait_for_line(log, "qsched is up", up)
        url = sqlite_url_for(tmp / "data")
        store = IdentityStore(make_engine(url))
        yield Stack(addresses["scheduler"], UpIdentity(url, tmp, store).token_for("alice"))
    finally:
        processes.stop(up)
        if store is not None:
            store.close()


def test_job_client_runs_a_lab_experiment_end_to_end(stack):
    client = JobClient(stack.address, token=stack.token)
    assert client.health_check()["status"] == "healthy"
    job_id = client.submit_job(
        experiment_class="AmplitudeRabiExperiment",
        experiment_module="qsched_hardware.experiments",
        expt_config={"expts": 41, "reps": 200},
        user="alice",
        priority=0,
    )
    result = client.wait_for_completion(job_id, timeout=120, verbose=False)
    assert result.is_successful(), result.error_message
    assert result.hardware_config_version_id.startswith("CFG-HW-")  # pinned from the seeded main
    data = client.load_data(job_id)
    assert data["xpts"].shape == (41,) and data["avgi"].shape == (41,)
    assert data.attrs["hardware_config_revision_id"] == result.hardware_config_version_id
    history = client.get_history(limit=5, user="alice")
    assert history[0]["job_id"] == job_id and history[0]["status"] == "completed"


def test_the_data_file_carries_the_scheduling_decision_that_qsched_why_shows(stack):
    client = JobClient(stack.address, token=stack.token)
    job_id = client.submit_job(
        experiment_class="NoOpExperiment", experiment_module="qsched_hardware.experiments", expt_config={}
    )
    result = client.wait_for_completion(job_id, timeout=120, verbose=False)
    assert result.is_successful(), result.error_message
    [run] = client.why(job_id)["runs"]
    assert run["policy"] and run["summary"] and "priority" in run["details"]
    attrs = client.load_data(job_id).attrs
    assert attrs["schedule_policy"] == run["policy"]
    assert attrs["schedule_summary"] == run["summary"]
    assert attrs["schedule_details"] == run["details"]  # load_data decodes JSON attributes


def test_job_handle_runs_a_circuit_on_the_local_simulator_twice(stack):
    async def run():
        async with Client(stack.address, token=stack.token) as client:
            job = client.create_job(program=BELL, qpu_id="local:aer_simulator", shots=400)
            await job.execute(timeout_s=120)
            first_task = job.task_id
            assert job.completed and job.state is JobState.COMPLETED
            counts = job.result.data["c"]  # keyed by the program's classical register
            assert set(counts) == {"00", "11"} and sum(counts.values()) == 400
            await job.execute(timeout_s=120)  # terminal: a fresh run of the same job
            assert job.task_id != first_task and len(job.history) == 2 and job.completed

    asyncio.run(run())
