"""Code provenance (issue 20): versions and git state of the code a run runs with, the typed
value, and its HDF5 attributes. Real git in temp repositories."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from pathlib import Path

import h5py
import pytest

from qsched_core.provenance import CodeOrigin, CodeProvenance, PackageSource
from qsched_hardware import provenance
from qsched_hardware.datafile import (
    code_attrs,
    read_code_provenance,
    write_code_provenance,
    write_run_file,
)
from tests.support.gitrepo import GitRepo

REPO_ROOT = Path(__file__).resolve().parents[3]


# ---- git state ------------------------------------------------------------------------------------
def test_git_state_names_the_commit_and_whether_the_scope_has_uncommitted_changes(tmp_path):
    repo = GitRepo(tmp_path / "lab")
    first = repo.commit({"pkg/__init__.py": "", "pkg/a.py": "X = 1\n", "notes/todo.txt": "x\n"})

    state = provenance.git_state(repo.path / "pkg")
    assert state is not None
    assert (state.commit, state.dirty, state.toplevel) == (first, False, repo.path.resolve())

    repo.write({"notes/todo.txt": "y\n"})  # outside the package: the package is clean
    assert provenance.git_state(repo.path / "pkg").dirty is False
    assert provenance.git_state(repo.path / "pkg", scope=repo.path).dirty is True

    repo.write({"pkg/new.py": "Y = 2\n"})  # an untracked module inside it counts
    assert provenance.git_state(repo.path / "pkg").dirty is True
    repo.git("checkout", "--", "notes")
    (repo.path / "pkg/new.py").unlink()
    repo.write({"pkg/a.py": "X = 2\n"})  # so does an edit of a tracked one
    assert provenance.git_state(repo.path / "pkg").dirty is True


def test_git_state_is_none_for_untracked_code_and_outside_git(tmp_path):
    repo = GitRepo(tmp_path / "checkout")
    repo.commit({".gitignore": "venv/\n", "src.py": ""})
    repo.write({"venv/site/qick/__init__.py": ""})  # a virtualenv inside a checkout
    assert provenance.git_state(repo.path / "venv/site/qick") is None
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "m.py").write_text("")
    assert provenance.git_state(plain / "m.py") is None


def test_a_package_imported_from_a_working_tree_is_recorded_as_it_was_imported(tmp_path, monkeypatch):
    repo = GitRepo(tmp_path / "lab")
    commit = repo.commit({"provpkg_x/__init__.py": '__version__ = "2.1"\n', "provpkg_x/exp.py": "K = 1\n"})
    monkeypatch.syspath_prepend(str(repo.path))
    try:
        importlib.import_module("provpkg_x.exp")
        source = provenance.package_source("provpkg_x.exp")
        assert source == PackageSource("provpkg_x", "2.1", commit, False)
        repo.write({"provpkg_x/exp.py": "K = 2\n"})  # edited after the import: not the code in memory
        assert provenance.package_source("provpkg_x") == source
    finally:
        for name in [n for n in sys.modules if n == "provpkg_x" or n.startswith("provpkg_x.")]:
            del sys.modules[name]


def test_an_installed_package_has_its_distribution_version_and_no_commit():
    import numpy

    source = provenance.package_source("numpy.linalg")
    assert source == PackageSource("numpy", numpy.__version__, "", False)


def test_qsched_and_qick_as_this_process_has_them():
    own = provenance.qsched_source()
    assert own.version == importlib.metadata.version("qsched")
    checkout = provenance.git_state(REPO_ROOT / "hardware" / "qsched_hardware")
    if checkout is not None:  # the tests run from a checkout: its commit is recorded
        assert own.commit == checkout.commit
    code = provenance.code_provenance()
    import qick

    assert code.qick_version == qick.__version__
    assert code.qsched == own
    assert code.experiment == PackageSource("qsched_hardware", own.version, own.commit, own.dirty)
    assert code.experiment_origin is CodeOrigin.BUILTIN


# ---- the value and its attributes ---------------------------------------------------------------
CODE = CodeProvenance(
    qsched=PackageSource("qsched", "0.1.0", "a" * 40, True),
    qick_version="0.2.436",
    experiment=PackageSource("mylab", "1.4", "b" * 40, False),
    experiment_origin=CodeOrigin.REPOSITORY,
    experiment_revision="main",
)


def test_to_dict_and_back():
    flat = CODE.to_dict()
    assert flat["experiment_commit"] == "b" * 40 and flat["qsched_dirty"] is True
    assert all(isinstance(v, (str, bool)) for v in flat.values())
    assert CodeProvenance.from_dict(flat) == CODE
    # as text (e.g. a JSON column written by something that stringified the flags)
    assert CodeProvenance.from_dict({k: str(v) for k, v in flat.items()}) == CODE


def test_from_dict_of_nothing_is_unknown_code():
    code = CodeProvenance.from_dict({})
    assert code.experiment is None and code.qsched.version == "" and code.qick_version == ""
    assert code.experiment_origin is CodeOrigin.BUILTIN


def test_the_run_file_records_the_code(tmp_path):
    path = tmp_path / "run.h5"
    write_run_file(path, {"xpts": [1, 2]}, {"job_id": "JOB-1", **code_attrs(CODE)})
    assert read_code_provenance(path) == CODE
    with h5py.File(path, "r") as f:  # plain attributes, readable without qsched
        assert f.attrs["experiment_commit"] == "b" * 40
        assert f.attrs["experiment_revision"] == "main"
        assert bool(f.attrs["qsched_dirty"]) is True


def test_write_code_provenance_on_an_open_file_and_files_without_it(tmp_path):
    old = tmp_path / "old.h5"
    write_run_file(old, {}, {"job_id": "JOB-0"})
    assert read_code_provenance(old) is None
    new = tmp_path / "new.h5"
    with h5py.File(new, "w") as f:
        write_code_provenance(f, CODE)
    assert read_code_provenance(new) == CODE


@pytest.mark.parametrize("origin", list(CodeOrigin))
def test_every_origin_round_trips(origin, tmp_path):
    code = CodeProvenance(PackageSource("qsched", "1"), "q", None, origin, "")
    path = tmp_path / "x.h5"
    write_run_file(path, {}, code_attrs(code))
    assert read_code_provenance(path) == code
