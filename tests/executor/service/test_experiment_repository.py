"""The executor's experiment repository through its gRPC API (issue 20): ValidateExperiment
resolves a revision to the commit a job pins, a run executes the commit it names (a revision it
names without a commit is resolved when it is enqueued), an unknown commit or revision is
refused at enqueue, and the code is in the terminal update and the HDF5 file."""

from __future__ import annotations

import json

import grpc
import h5py
import pytest

from qsched.api.executor.v1 import executor_pb2 as pb
from qsched.wire import error_info
from qsched_core.execution import ExecutionRequest, Succeeded
from qsched_core.payloads import LabExperiment
from qsched_core.provenance import CodeOrigin
from tests.executor.conftest import executor_service, run_queue
from tests.support.gitrepo import GitRepo

PLUGIN = """
from qsched_hardware.experiments.base import Experiment, ExperimentResult, Violation


class Const(Experiment):
    VALUE = {value}

    def validate(self):
        limit = self.expt.get("limit", 10)
        return [] if self.VALUE <= limit else [Violation("expt.limit", "below the value")]

    def run(self, ctx):
        return ExperimentResult({{"value": [float(self.VALUE)]}}, {{"value": float(self.VALUE)}})
"""


@pytest.fixture
def lab(tmp_path):
    repo = GitRepo(tmp_path / "lab")
    repo.commit({"repolab/__init__.py": "", "repolab/const.py": PLUGIN.format(value=1)}, "value 1")
    return repo


def service(tmp_path, lab, **config):
    return executor_service(
        tmp_path, experiment_packages=("repolab",), experiment_repo=str(lab.path), **config
    )


def experiment(revision: str = "", commit: str = "", **expt) -> LabExperiment:
    return LabExperiment(
        "Const", "repolab.const", json.dumps(expt), experiment_revision=revision, experiment_commit=commit
    )


def validate_request(revision: str = "", **expt) -> pb.ValidateExperimentRequest:
    return pb.ValidateExperimentRequest(
        experiment=pb.Experiment(
            experiment_class="Const",
            experiment_module="repolab.const",
            expt_config_json=json.dumps(expt),
            experiment_revision=revision,
        )
    )


async def test_validate_resolves_the_revision_and_checks_that_commits_code(tmp_path, lab):
    first = lab.head()
    async with service(tmp_path, lab) as (stub, _, _):
        answer = await stub.ValidateExperiment(validate_request())
        assert (answer.resolved_commit, answer.tree_dirty, list(answer.violations)) == (first, False, [])
        second = lab.commit({"repolab/const.py": PLUGIN.format(value=5)}, "value 5")
        # the same request a moment later names the new HEAD, and is checked with its code
        answer = await stub.ValidateExperiment(validate_request(limit=3))
        assert answer.resolved_commit == second and [v.field for v in answer.violations] == ["expt.limit"]
        answer = await stub.ValidateExperiment(validate_request(first, limit=3))
        assert answer.resolved_commit == first and not answer.violations
        lab.write({"repolab/const.py": PLUGIN.format(value=6)})
        answer = await stub.ValidateExperiment(validate_request())
        assert (answer.resolved_commit, answer.tree_dirty) == (second, True)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ValidateExperiment(validate_request("nope"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(err.value).reason == "EXPERIMENT_REVISION_NOT_FOUND"
        # a built-in has no commit to answer
        builtin = pb.ValidateExperimentRequest(
            experiment=pb.Experiment(experiment_class="NoOpExperiment", expt_config_json="{}")
        )
        assert (await stub.ValidateExperiment(builtin)).resolved_commit == ""


async def test_the_refuse_setting_refuses_a_dirty_head(tmp_path, lab):
    lab.write({"repolab/const.py": PLUGIN.format(value=6)})
    async with service(tmp_path, lab, dirty_tree="refuse") as (stub, _, _):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ValidateExperiment(validate_request())
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(err.value).reason == "EXPERIMENT_TREE_DIRTY"


async def test_runs_execute_their_commit_and_unknown_ones_are_refused_at_enqueue(tmp_path, lab):
    first = lab.head()
    second = lab.commit({"repolab/const.py": PLUGIN.format(value=2)}, "value 2")
    missing = "0" * 40
    async with service(tmp_path, lab) as (stub, _, _), run_queue(stub) as queue:
        answer = await queue.enqueue(
            ExecutionRequest("J-1", "t-first", "alice", experiment(commit=first)),
            ExecutionRequest("J-2", "t-main", "alice", experiment("main")),  # resolved at enqueue
            ExecutionRequest("J-3", "t-missing", "alice", experiment(commit=missing)),
            ExecutionRequest("J-4", "t-nope", "alice", experiment("no-such-branch")),
            after="",
        )
        assert answer.accepted == ("t-first", "t-main")
        assert {r.task_id: r.reason for r in answer.refused} == {
            "t-missing": "EXPERIMENT_REVISION_NOT_FOUND",
            "t-nope": "EXPERIMENT_REVISION_NOT_FOUND",
        }
        ran = {}
        for task, commit, value in (("t-first", first, 1.0), ("t-main", second, 2.0)):
            end = (await queue.ended_run(task)).body
            assert isinstance(end, Succeeded) and end.summary["value"] == value
            assert end.code.experiment.commit == commit
            assert end.code.experiment_origin is CodeOrigin.REPOSITORY
            ran[task] = end
        assert ran["t-main"].code.experiment_revision == "main"
        with h5py.File(tmp_path / "data" / ran["t-first"].data.name, "r") as f:
            assert f.attrs["experiment_commit"] == first and f.attrs["experiment_package"] == "repolab"
            assert f.attrs["qsched_version"] == ran["t-first"].code.qsched.version
