"""Where an experiment class comes from and what a run records about its code (issue 20):
built-ins, the experiment repository, installed packages; the dirty policy for both kinds of
working tree. Real git in temp repositories."""

from __future__ import annotations

import sys
import uuid

import pytest

from qsched_core.provenance import CodeOrigin, ResolvedRevision
from qsched_executor.errors import InvalidRequest, ModuleNotAllowed
from qsched_executor.experiment_code import ExperimentSources, builtin_code
from qsched_executor.experiment_repo import DirtyPolicy, DirtyTree, ExperimentRepository
from qsched_hardware.experiments import CATALOG
from qsched_hardware.provenance import qsched_source
from tests.support.gitrepo import GitRepo

EXPERIMENT = """
from qsched_hardware.experiments.base import Experiment, ExperimentResult


class Const(Experiment):
    VALUE = {value}

    def validate(self):
        return []

    def run(self, ctx):
        return ExperimentResult({{}}, {{"value": self.VALUE}})
"""


@pytest.fixture
def lab(tmp_path):
    repo = GitRepo(tmp_path / "lab")
    repo.commit({"repolab/__init__.py": "", "repolab/const.py": EXPERIMENT.format(value=1)})
    return repo


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """An allow-listed package the executor imports from a git checkout on its path. Its name is
    new in every test (`.package`): a package's state is read once per process."""
    package = f"sitelab_{uuid.uuid4().hex[:8]}"
    repo = GitRepo(tmp_path / "site")
    repo.commit({f"{package}/__init__.py": "", f"{package}/const.py": EXPERIMENT.format(value=7)})
    repo.package = package
    monkeypatch.syspath_prepend(str(repo.path))
    yield repo
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]


def sources(lab, tmp_path, policy=DirtyPolicy.FLAG, repository=True, site=None):
    allowed = ("repolab", site.package) if site is not None else ("repolab",)
    repo = ExperimentRepository(lab.path, tmp_path / "cache", allowed, policy) if repository else None
    return ExperimentSources(allowed, repo, policy)


def test_a_builtin_is_qsched_code(lab, tmp_path):
    s = sources(lab, tmp_path)
    assert s.resolve("qsched_hardware.experiments") is None and s.resolve("") is None
    code = s.load("", "T1Experiment")
    assert code.cls is CATALOG["T1Experiment"]
    assert code.code == builtin_code()
    assert code.code.experiment_origin is CodeOrigin.BUILTIN
    assert code.code.experiment.commit == qsched_source().commit
    with pytest.raises(InvalidRequest) as err:
        s.resolve("", "main")
    assert err.value.reason == "EXPERIMENT_REVISION_UNUSED"


def test_a_repository_module_is_pinned_at_submit_and_run_from_its_commit(lab, tmp_path):
    s = sources(lab, tmp_path)
    resolved = s.resolve("repolab.const")
    assert resolved == ResolvedRevision("", lab.head(), False)
    lab.commit({"repolab/const.py": EXPERIMENT.format(value=2)})
    code = s.load("repolab.const", "Const", commit=resolved.commit)
    assert code.cls(None, {}, {}).run(None).summary == {"value": 1}
    assert code.code.experiment_origin is CodeOrigin.REPOSITORY
    assert code.code.experiment.name == "repolab" and code.code.experiment.commit == resolved.commit
    latest = s.resolve("repolab.const", "main")
    assert s.load("repolab.const", "Const", commit=latest.commit, revision="main").cls(None, {}, {}).run(
        None
    ).summary == {"value": 2}


def test_an_installed_package_beside_the_repository(lab, installed, tmp_path):
    s = sources(lab, tmp_path, site=installed)
    module = f"{installed.package}.const"
    assert s.resolve(module) is None  # not in the repository: the installed one
    code = s.load(module, "Const")
    assert code.cls(None, {}, {}).run(None).summary == {"value": 7}
    assert code.code.experiment_origin is CodeOrigin.PACKAGE
    assert (code.code.experiment.name, code.code.experiment.commit) == (installed.package, installed.head())
    assert code.code.experiment.dirty is False
    with pytest.raises(InvalidRequest) as err:
        s.resolve(module, "main")  # a revision of a package the repository lacks
    assert err.value.reason == "EXPERIMENT_NOT_FOUND"


@pytest.mark.parametrize("policy", list(DirtyPolicy))
def test_an_installed_package_from_a_dirty_checkout_is_flagged_or_refused(lab, installed, tmp_path, policy):
    installed.write({f"{installed.package}/const.py": EXPERIMENT.format(value=8)})  # not committed
    s = sources(lab, tmp_path, policy, site=installed)
    module = f"{installed.package}.const"
    if policy is DirtyPolicy.REFUSE:
        with pytest.raises(DirtyTree) as err:
            s.load(module, "Const")
        assert err.value.reason == "EXPERIMENT_TREE_DIRTY"
    else:
        code = s.load(module, "Const")
        assert code.code.experiment.dirty is True
        assert code.cls(None, {}, {}).run(None).summary == {"value": 8}  # what ran: the edit


@pytest.mark.parametrize("policy", list(DirtyPolicy))
def test_a_dirty_repository_is_flagged_or_refused_only_for_its_own_packages(lab, installed, tmp_path, policy):
    lab.write({"repolab/const.py": EXPERIMENT.format(value=3)})
    s = sources(lab, tmp_path, policy, site=installed)
    assert s.resolve(f"{installed.package}.const") is None  # not the repository's: its state does not matter
    if policy is DirtyPolicy.REFUSE:
        with pytest.raises(DirtyTree):
            s.resolve("repolab.const")
    else:
        resolved = s.resolve("repolab.const")
        assert resolved.tree_dirty is True
        code = s.load("repolab.const", "Const", commit=resolved.commit, tree_dirty=True)
        assert code.code.experiment.dirty is True
        assert code.cls(None, {}, {}).run(None).summary == {"value": 1}  # the commit, not the edit


def test_without_a_repository(lab, tmp_path):
    s = sources(lab, tmp_path, repository=False)
    assert s.resolve("repolab.const") is None
    for call in (
        lambda: s.resolve("repolab.const", "main"),
        lambda: s.load("repolab.const", "Const", commit=lab.head()),
    ):
        with pytest.raises(InvalidRequest) as err:
            call()
        assert err.value.reason == "EXPERIMENT_REPOSITORY_UNSET"


def test_modules_outside_the_allow_list_are_left_to_the_class_lookup(lab, tmp_path):
    s = sources(lab, tmp_path)
    assert s.resolve("experiments.single_qubit.t1") is None  # a seed job: translated to a built-in
    with pytest.raises(ModuleNotAllowed):
        s.resolve("other.mod", "main")  # but a revision of it is refused by name
    with pytest.raises(ModuleNotAllowed):
        s.load("other.mod", "X")


def test_submit_push_run_rerun_and_the_files_name_the_code(lab, tmp_path):
    """The executor's part of the issue's scenario, without the services: each job pinned at
    submit, a push between, each run (and a re-run of the first) with its own commit, and each
    data file naming it."""
    from qsched_hardware.datafile import code_attrs, read_code_provenance, write_run_file

    s = sources(lab, tmp_path)
    first = s.resolve("repolab.const")  # job 1 submitted
    lab.commit({"repolab/const.py": EXPERIMENT.format(value=2)})  # a push
    second = s.resolve("repolab.const")  # job 2 submitted
    runs = [("job1", first), ("job2", second), ("job1-rerun", first)]
    for name, pinned in runs:
        loaded = s.load("repolab.const", "Const", commit=pinned.commit, revision=pinned.revision)
        result = loaded.cls(None, {}, {}).run(None)
        write_run_file(tmp_path / f"{name}.h5", {}, {"summary": result.summary, **code_attrs(loaded.code)})
    values = {name: read_code_provenance(tmp_path / f"{name}.h5") for name, _ in runs}
    assert values["job1"].experiment.commit == first.commit == values["job1-rerun"].experiment.commit
    assert values["job2"].experiment.commit == second.commit != first.commit
    assert all(
        v.experiment_origin is CodeOrigin.REPOSITORY and v.qsched == qsched_source() for v in values.values()
    )
    import h5py

    with h5py.File(tmp_path / "job1-rerun.h5") as f:
        assert f.attrs["summary"] == '{"value": 1}'
    with h5py.File(tmp_path / "job2.h5") as f:
        assert f.attrs["summary"] == '{"value": 2}'
