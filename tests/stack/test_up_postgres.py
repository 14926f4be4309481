"""`qsched up --database-url postgresql://...`: the whole stack keeps its state in one PostgreSQL
database (each service its own tables and version table) and runs a lab job and a circuit on it;
nothing is left in SQLite files under the data directory."""

from __future__ import annotations

import asyncio

import pytest

from qsched import JobClient
from qsched.aio import Client, JobState
from qsched_configs import db as configs_db
from qsched_gateway import db as gateway_db
from qsched_identity import db as identity_db
from qsched_scheduler import db as scheduler_db
from tests.scheduler.service.test_provider_jobs import BELL
from tests.support.stack import up_stack

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_up_on_one_postgres_database_runs_lab_and_circuit_jobs(tmp_path, postgres_databases):
    url = postgres_databases()
    with up_stack(tmp_path, database_url=url) as up:
        token = up.identity.token_for("alice")
        client = JobClient(up.addresses["scheduler"], token=token)
        job_id = client.submit_job(
            experiment_class="AmplitudeRabiExperiment",
            experiment_module="qsched_hardware.experiments",
            expt_config={"expts": 21, "reps": 100},
            user="alice",
        )
        result = client.wait_for_completion(job_id, timeout=120, verbose=False)
        assert result.is_successful(), result.error_message
        assert result.hardware_config_version_id.startswith("CFG-HW-")  # seeded into PostgreSQL

        async def circuit() -> None:
            async with Client(up.addresses["scheduler"], token=token) as aio:
                job = aio.create_job(program=BELL, qpu_id="local:aer_simulator", shots=200)
                await job.execute(timeout_s=120)
                assert job.state is JobState.COMPLETED, job.history

        asyncio.run(circuit())
        for module in (scheduler_db, configs_db, identity_db, gateway_db):
            assert module.current(url) == module.head(), module.__name__
        left = sorted(p.relative_to(up.data_dir).as_posix() for p in up.data_dir.rglob("*.db"))
        assert left == [], f"SQLite files beside PostgreSQL: {left}"
