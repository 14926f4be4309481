"""The experiment repository end to end (issue 20): a real executor with the simulated board and
a git repository of plug-ins, a real scheduler, both on ephemeral ports. Each job runs the commit
its revision named at submit, a re-run reuses it (or resolves the revision it names), a dirty
tree is flagged or refused per the device's setting, and the run log, the HDF5 file and
`qsched show` name the code."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import grpc
import h5py
import pytest

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc
from qsched.wire import error_info
from qsched_core.config import Endpoints, ServiceConfig
from qsched_runtime.server import start_server
from tests.executor.conftest import RABI, WAIT_S, RoundGate
from tests.support.gitrepo import GitRepo
from tests.support.identity import authed_channel
from tests.support.jobs import job_in_state
from tests.support.stack import running_service
from tests.support.waiting import eventually

ENDED = (pb.Job.STATE_SUCCEEDED, pb.Job.STATE_FAILED, pb.Job.STATE_CANCELLED)

PLUGIN = """
import numpy as np

from qsched_hardware.experiments.base import Experiment, ExperimentResult


class Const(Experiment):
    VALUE = {value}

    def validate(self):
        return []

    def run(self, ctx):
        return ExperimentResult({{"value": np.full(3, float(self.VALUE))}}, {{"value": float(self.VALUE)}})
"""


@pytest.fixture
def lab(tmp_path):
    repo = GitRepo(tmp_path / "lab")
    repo.commit({"repolab/__init__.py": "", "repolab/const.py": PLUGIN.format(value=1)}, "value 1")
    return repo


@contextlib.asynccontextmanager
async def lab_stack(tmp_path: Path, lab: GitRepo, gate: RoundGate | None = None, dirty_tree: str = "flag"):
    """(jobs stub, scheduler address, executor data root): an executor whose experiment
    repository is `lab`, and a scheduler with it as device "qick"."""
    from qsched_executor.server import build
    from qsched_hardware.board import open_board

    board = open_board("sim")
    if gate is not None:
        board.soc.on_round = gate
    cfg = ServiceConfig(
        service="executor",
        endpoints=Endpoints(executor="127.0.0.1:0", configs="127.0.0.1:9"),
        data_dir=tmp_path / "executor",
        data_writers=0,
        experiment_packages=("repolab",),
        experiment_repo=str(lab.path),
        dirty_tree=dirty_tree,
    )
    handle = await build(cfg, board=board)
    server = await start_server(cfg.listen, handle.registrations)
    try:
        executor = f"127.0.0.1:{server.port}"
        scheduler = running_service(
            "scheduler", tmp_path / "scheduler", lab_devices={"qick": executor}, pin_configs=False
        )
        async with scheduler as address, authed_channel(address) as channel:
            yield jobs_pb2_grpc.JobServiceStub(channel), address, tmp_path / "executor" / "data"
    finally:
        if gate is not None:
            gate.open()
        await server.stop(0)
        await handle.stop()


def const(revision: str = "") -> pb.SubmitJobRequest:
    return pb.SubmitJobRequest(
        device="qick",
        owner="alice",
        payload=pb.JobPayload(
            lab_experiment=pb.LabExperiment(
                experiment_class="Const",
                experiment_module="repolab.const",
                expt_config_json="{}",
                experiment_revision=revision,
            )
        ),
    )


def rabi() -> pb.SubmitJobRequest:
    request = const()
    lab = request.payload.lab_experiment
    lab.experiment_class, lab.experiment_module = "AmplitudeRabiExperiment", "qsched_hardware.experiments"
    lab.expt_config_json = json.dumps(RABI)
    return request


async def ended(jobs, job_id: str) -> pb.Job:
    return await job_in_state(jobs, job_id, *ENDED, timeout=WAIT_S)


def file_attrs(data_root: Path, run: pb.Run) -> dict:
    with h5py.File(data_root / run.data_file_path, "r") as f:
        return dict(f.attrs)


def sdk_get_runs(address: str, job_id: str) -> list[dict]:
    from qsched.client import JobClient

    with JobClient(address) as client:
        return client.get_runs(job_id)


async def show(capsys, address: str, job_id: str) -> str:
    from qsched.cli.main import main

    capsys.readouterr()
    code = await asyncio.to_thread(main, ["show", job_id, "--address", address])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


async def test_each_job_runs_the_commit_of_its_submit_and_a_rerun_reuses_it(tmp_path, lab, capsys):
    first = lab.head()
    gate = RoundGate()
    async with lab_stack(tmp_path, lab, gate) as (jobs, address, data_root):
        # a built-in job holds the board, so both plug-in jobs wait in the queue
        blocker = (await jobs.SubmitJob(rabi())).job.job_id
        await asyncio.to_thread(gate.held.wait, WAIT_S)
        a = (await jobs.SubmitJob(const())).job
        assert (
            a.payload.lab_experiment.experiment_commit,
            a.payload.lab_experiment.experiment_tree_dirty,
        ) == (
            first,
            False,
        )
        second = lab.commit({"repolab/const.py": PLUGIN.format(value=2)}, "value 2")  # a push
        b = (await jobs.SubmitJob(const())).job
        assert b.payload.lab_experiment.experiment_commit == second != first
        gate.open()

        done_a, done_b = await ended(jobs, a.job_id), await ended(jobs, b.job_id)
        assert done_a.state == done_b.state == pb.Job.STATE_SUCCEEDED
        # the results differ as the code does
        assert (done_a.current_run.summary["value"], done_b.current_run.summary["value"]) == (1.0, 2.0)
        for job, commit in ((done_a, first), (done_b, second)):
            code = job.current_run.code
            assert code.experiment.name == "repolab" and code.experiment.commit == commit
            assert not code.experiment.dirty and code.experiment_origin == 3  # CODE_ORIGIN_REPOSITORY
            assert code.qsched.name == "qsched" and code.qick_version
            attrs = file_attrs(data_root, job.current_run)
            assert attrs["experiment_commit"] == commit and attrs["experiment_origin"] == "repository"
            assert attrs["experiment_package"] == "repolab" and not attrs["experiment_dirty"]
            assert attrs["qsched_commit"] == code.qsched.commit and attrs["qick_version"] == code.qick_version
        builtin = (await ended(jobs, blocker)).current_run.code
        assert builtin.experiment_origin == 1 and builtin.experiment.name == "qsched_hardware"

        out = await show(capsys, address, a.job_id)
        assert f"commit     {first[:12]} (HEAD at submit)" in out
        assert f"experiment repolab @ {first[:12]} (repository)" in out and "qick " in out

        # a re-run runs the job's own commit, though HEAD has moved
        await jobs.RerunJob(pb.RerunJobRequest(job_id=a.job_id))
        again = await eventually_run(jobs, a.job_id, attempt=2)
        assert again.summary["value"] == 1.0 and again.code.experiment.commit == first
        # a new expt_config keeps it too
        new_settings = pb.JobPayload(lab_experiment=const().payload.lab_experiment)
        new_settings.lab_experiment.expt_config_json = '{"note": 1}'
        await jobs.RerunJob(pb.RerunJobRequest(job_id=a.job_id, payload=new_settings))
        third = await eventually_run(jobs, a.job_id, attempt=3)
        assert (
            third.code.experiment.commit == first and third.payload.lab_experiment.experiment_commit == first
        )
        # unless it names a revision: resolved now
        await jobs.RerunJob(pb.RerunJobRequest(job_id=a.job_id, experiment_revision="main"))
        fourth = await eventually_run(jobs, a.job_id, attempt=4)
        assert fourth.summary["value"] == 2.0 and fourth.code.experiment.commit == second
        assert fourth.code.experiment_revision == "main"
        runs = (await jobs.ListRuns(pb.ListRunsRequest(job_id=a.job_id))).runs
        assert [r.code.experiment.commit for r in runs] == [first, first, first, second]
        sdk_runs = await asyncio.to_thread(sdk_get_runs, address, a.job_id)
        assert [r["code"]["experiment"]["commit"] for r in sdk_runs] == [first, first, first, second]
        assert {r["code"]["experiment_origin"] for r in sdk_runs} == {"repository"}

        # a tag or an older commit by name; a revision that does not exist is refused at submit
        lab.git("tag", "v1", first)
        tagged = (await jobs.SubmitJob(const("v1"))).job
        assert tagged.payload.lab_experiment.experiment_commit == first
        assert (await ended(jobs, tagged.job_id)).current_run.summary["value"] == 1.0
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await jobs.SubmitJob(const("no-such-branch"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(err.value).reason == "EXPERIMENT_REVISION_NOT_FOUND"
        # a revision for a built-in experiment means nothing: refused
        named = rabi()
        named.payload.lab_experiment.experiment_revision = "main"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await jobs.SubmitJob(named)
        assert error_info(err.value).reason == "EXPERIMENT_REVISION_UNUSED"


async def eventually_run(jobs, job_id: str, attempt: int) -> pb.Run:
    """Run `attempt` of the job, once it has ended."""
    response = await eventually(
        lambda: jobs.GetJob(pb.GetJobRequest(job_id=job_id)),
        until=lambda r: r.job.current_run.attempt == attempt and r.job.state in ENDED,
        timeout=WAIT_S,
        what=f"run {attempt} of {job_id} ending",
    )
    assert response.job.state == pb.Job.STATE_SUCCEEDED, response.job.error
    return response.job.current_run


async def test_a_dirty_tree_is_flagged(tmp_path, lab, capsys):
    committed = lab.head()
    lab.write({"repolab/const.py": PLUGIN.format(value=3)})  # not committed
    async with lab_stack(tmp_path, lab) as (jobs, address, data_root):
        job = (await jobs.SubmitJob(const())).job
        pinned = job.payload.lab_experiment
        assert (pinned.experiment_commit, pinned.experiment_tree_dirty) == (committed, True)
        done = await ended(jobs, job.job_id)
        # the committed code ran, not the uncommitted change; the run says the tree was dirty
        assert done.state == pb.Job.STATE_SUCCEEDED and done.current_run.summary["value"] == 1.0
        code = done.current_run.code
        assert code.experiment.commit == committed and code.experiment.dirty
        attrs = file_attrs(data_root, done.current_run)
        assert attrs["experiment_commit"] == committed and attrs["experiment_dirty"]
        out = await show(capsys, address, job.job_id)
        assert "the tree had uncommitted changes" in out and committed[:12] in out


async def test_a_dirty_tree_is_refused_when_the_device_says_so(tmp_path, lab):
    committed = lab.head()
    older = committed
    committed = lab.commit({"repolab/const.py": PLUGIN.format(value=2)}, "value 2")
    lab.write({"repolab/const.py": PLUGIN.format(value=3)})  # not committed
    async with lab_stack(tmp_path, lab, dirty_tree="refuse") as (jobs, _, data_root):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await jobs.SubmitJob(const())
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(err.value).reason == "EXPERIMENT_TREE_DIRTY"
        assert committed[:12] in err.value.details()
        # another commit by name is not what the working tree changes: it runs
        job = (await jobs.SubmitJob(const(older))).job
        assert not job.payload.lab_experiment.experiment_tree_dirty
        done = await ended(jobs, job.job_id)
        assert done.current_run.summary["value"] == 1.0 and not done.current_run.code.experiment.dirty
        # once the change is committed, HEAD runs
        newest = lab.commit({}, "value 3")
        done = await ended(jobs, (await jobs.SubmitJob(const())).job.job_id)
        assert done.current_run.summary["value"] == 3.0
        assert file_attrs(data_root, done.current_run)["experiment_commit"] == newest
