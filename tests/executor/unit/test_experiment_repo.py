"""The experiment repository (issue 20): revisions resolved to commits, a cached read-only tree
per commit, and plug-ins imported from each commit in isolation, under the allow-list. Real git
in temp repositories; the board is the simulated SoC."""

from __future__ import annotations

import stat
import sys
import threading

import numpy as np
import pytest

from qsched_core.provenance import CodeOrigin
from qsched_executor.errors import InvalidRequest, ModuleNotAllowed
from qsched_executor.experiment_repo import (
    NAMESPACE_PREFIX,
    DirtyPolicy,
    DirtyTree,
    ExperimentRepository,
    RepositoryUnavailable,
)
from qsched_hardware.experiments import Experiment, RunContext
from qsched_hardware.provenance import qsched_source
from tests.support.gitrepo import GitRepo

# A pulse train whose pulse is a fraction of the pi pulse taken from another module of the same
# package, imported absolutely: both must come from the job's commit.
TRAIN = """
import numpy as np

import labx.pulses
from labx.pulses import FRACTION
from qsched_hardware.experiments.base import ExperimentResult, QickExperiment
from qsched_hardware.fits import project_iq


class TrainExperiment(QickExperiment):
    NAME = "train"
    UNITS = "pulses"
    DEFAULTS = {"max_pulses": 4, "reps": 200}

    def loops(self):
        return []

    def declare(self, prog):
        pi = self.pi_pulse()
        prog.add_gauss(ch=self.q["gen"], name="env", sigma=pi["sigma_us"], length=pi["length_us"])
        prog.add_pulse(ch=self.q["gen"], name="p", style="arb", envelope="env",
                       freq=float(self.hardware["qubit"]["f_ge_mhz"]), phase=0,
                       gain=float(pi["gain"]) * FRACTION)

    def play(self, prog):
        for _ in range(self._n):
            prog.pulse(ch=self.q["gen"], name="p", t=0)
            prog.delay_auto(0.0)

    def xpts(self, prog):
        return np.arange(0, int(self.p["max_pulses"]) + 1)

    def make_program(self, n=1):
        self._n = n
        return super().make_program()

    def analyze(self, x, avgi, avgq):
        return {}, {}

    def run(self, ctx):
        x = np.arange(0, int(self.p["max_pulses"]) + 1)
        points = [np.asarray(ctx.acquire(self.make_program(int(n)), rounds=1)[0])[0] for n in x]
        arr = np.array(points)
        return ExperimentResult({"xpts": x, "signal": project_iq(arr[..., 0], arr[..., 1])},
                                {"fraction": labx.pulses.FRACTION})
"""

SIMPLE = """
from qsched_hardware.experiments.base import Experiment, ExperimentResult
from labx.pulses import FRACTION


class Simple(Experiment):
    def validate(self):
        return []

    def run(self, ctx):
        return ExperimentResult({}, {"fraction": FRACTION})
"""

LAB_FILES = {
    "pyproject.toml": '[project]\nname = "labx"\nversion = "1.0"\n',
    "labx/__init__.py": "",
    "labx/pulses.py": "FRACTION = 0.5\n",
    "labx/train.py": TRAIN,
    "labx/simple.py": SIMPLE,
    # qsched's own package names in a lab repository never shadow the executor's
    "qsched_hardware/__init__.py": "raise ImportError('a copy of qsched_hardware in the lab repository')\n",
}


@pytest.fixture
def board():
    from qsched_hardware.board import open_board

    return open_board("sim")


@pytest.fixture
def shipped_config():
    from qsched_hardware.hwconfig import load_hardware_config

    return load_hardware_config()[0]


@pytest.fixture
def lab(tmp_path):
    repo = GitRepo(tmp_path / "lab")
    repo.commit(LAB_FILES, "pi/2 train")
    return repo


def repository(lab, tmp_path, policy=DirtyPolicy.FLAG, allowed=("labx",)):
    return ExperimentRepository(lab.path, tmp_path / "cache", allowed, policy)


def no_labx_modules():
    return not [name for name in sys.modules if name == "labx" or name.startswith("labx.")]


# ---- the code of each commit ----------------------------------------------------------------------
def test_each_job_runs_the_commit_it_was_submitted_with(lab, tmp_path, board, shipped_config):
    repo = repository(lab, tmp_path)
    first = repo.resolve()  # "submit": HEAD resolved to a commit
    assert first.commit == lab.head() and first.revision == "" and not first.tree_dirty
    # a push between the two submits: full pi pulses, the train now alternates g, e, g ...
    second_commit = lab.commit(
        {
            "labx/pulses.py": "FRACTION = 1.0\n",
            "pyproject.toml": LAB_FILES["pyproject.toml"].replace("1.0", "1.1"),
        },
        "pi train",
    )
    second = repo.resolve()
    assert second.commit == second_commit != first.commit

    # the first job runs after the push, with its own commit; both live in one process
    one = repo.load("labx.train", "TrainExperiment", first.commit)
    two = repo.load("labx.train", "TrainExperiment", second.commit)
    assert one.cls is not two.cls and issubclass(one.cls, Experiment) and issubclass(two.cls, Experiment)
    assert one.cls.__module__ == f"{NAMESPACE_PREFIX}{first.commit}.labx.train"
    assert no_labx_modules()

    results = []
    for loaded in (one, two):
        experiment = loaded.cls(board.soccfg, shipped_config, {"max_pulses": 4})
        assert experiment.validate() == []
        results.append(experiment.run(RunContext(board, threading.Event())))
    pi2, pi = results
    assert (pi2.summary["fraction"], pi.summary["fraction"]) == (0.5, 1.0)
    # two pi/2 pulses reach |e>; two pi pulses return to |g>: the data differ as the code does
    s, t = np.asarray(pi2.data["signal"]), np.asarray(pi.data["signal"])
    contrast = max(np.ptp(s), np.ptp(t))
    assert abs(s[2] - s[0]) > 0.6 * contrast
    assert abs(t[2] - t[0]) < 0.4 * contrast
    assert abs(t[1] - t[0]) > 0.6 * contrast

    # loading the first commit again gives the same class, with the first commit's code
    assert repo.load("labx.train", "TrainExperiment", first.commit).cls is one.cls
    # and each records its own commit and version (pyproject.toml of that commit)
    code = one.provenance(revision="", tree_dirty=False)
    assert code.experiment.commit == first.commit and code.experiment.version == "1.0"
    assert code.experiment.name == "labx" and code.experiment_origin is CodeOrigin.REPOSITORY
    assert code.qsched == qsched_source()
    assert two.provenance("main", True).experiment.version == "1.1"
    assert two.provenance("main", True).experiment.dirty is True
    assert two.provenance("main", True).experiment_revision == "main"


def test_deferred_absolute_imports_stay_in_the_commit(lab, tmp_path):
    lab.commit({"labx/late.py": LATE})
    repo = repository(lab, tmp_path)
    a = repo.resolve().commit
    b = lab.commit({"labx/pulses.py": "FRACTION = 0.25\n"})
    late_a = repo.load("labx.late", "Late", a).cls(None, {}, {})
    late_b = repo.load("labx.late", "Late", b).cls(None, {}, {})
    assert (late_a.run(None).summary["fraction"], late_b.run(None).summary["fraction"]) == (0.5, 0.25)
    assert no_labx_modules()


LATE = """
from qsched_hardware.experiments.base import Experiment, ExperimentResult


class Late(Experiment):
    def validate(self):
        return []

    def run(self, ctx):
        import labx.pulses  # at run time, inside a function

        return ExperimentResult({}, {"fraction": labx.pulses.FRACTION})
"""


def test_an_installed_package_of_the_same_name_is_not_touched(lab, tmp_path, monkeypatch):
    other = GitRepo(tmp_path / "installed")
    other.commit({"labx/__init__.py": "", "labx/pulses.py": "FRACTION = 9.0\n"})
    monkeypatch.syspath_prepend(str(other.path))
    import labx.pulses  # the executor's environment has its own labx

    try:
        repo = repository(lab, tmp_path)
        loaded = repo.load("labx.simple", "Simple", lab.head())
        assert loaded.cls(None, {}, {}).run(None).summary["fraction"] == 0.5
        assert labx.pulses.FRACTION == 9.0 and sys.modules["labx.pulses"] is labx.pulses
    finally:
        for name in [n for n in sys.modules if n == "labx" or n.startswith("labx.")]:
            del sys.modules[name]


# ---- revisions --------------------------------------------------------------------------------------
def test_branches_tags_and_commits_resolve(lab, tmp_path):
    repo = repository(lab, tmp_path)
    first = lab.head()
    lab.git("tag", "v1")
    lab.git("branch", "stable")
    second = lab.commit({"labx/pulses.py": "FRACTION = 1.0\n"})
    assert repo.resolve("v1").commit == first
    assert repo.resolve("stable").commit == first
    assert repo.resolve("main").commit == second
    assert repo.resolve(first[:10]).commit == first
    assert repo.resolve(" HEAD ").commit == second and repo.resolve(" HEAD ").revision == "HEAD"
    assert repo.resolve("HEAD~1").commit == first


@pytest.mark.parametrize(
    ("revision", "reason"),
    [
        ("nope", "EXPERIMENT_REVISION_NOT_FOUND"),
        ("0" * 40, "EXPERIMENT_REVISION_NOT_FOUND"),
        ("--output=/tmp/x", "EXPERIMENT_REVISION_INVALID"),
        ("main\nHEAD", "EXPERIMENT_REVISION_INVALID"),
    ],
)
def test_bad_revisions_are_refused(lab, tmp_path, revision, reason):
    with pytest.raises(InvalidRequest) as err:
        repository(lab, tmp_path).resolve(revision)
    assert err.value.reason == reason


def test_not_a_repository(tmp_path):
    with pytest.raises(RepositoryUnavailable) as err:
        ExperimentRepository(tmp_path / "missing", tmp_path / "cache", ("labx",))
    assert err.value.reason == "EXPERIMENT_REPOSITORY_UNAVAILABLE"


# ---- the dirty-tree policy --------------------------------------------------------------------------
def test_uncommitted_changes_are_flagged_or_refused_per_policy(lab, tmp_path):
    lab.git("tag", "v1")
    head = lab.commit({"labx/pulses.py": "FRACTION = 1.0\n"})
    flag = repository(lab, tmp_path, DirtyPolicy.FLAG)
    refuse = repository(lab, tmp_path, DirtyPolicy.REFUSE)
    assert not flag.resolve().tree_dirty and refuse.resolve().commit == head

    lab.write({"labx/pulses.py": "FRACTION = 2.0\n"})  # edited, not committed
    flagged = flag.resolve()
    assert (flagged.commit, flagged.tree_dirty) == (head, True)
    with pytest.raises(DirtyTree) as err:
        refuse.resolve()
    assert err.value.reason == "EXPERIMENT_TREE_DIRTY" and err.value.code == "FAILED_PRECONDITION"
    with pytest.raises(DirtyTree):
        refuse.resolve("main")  # the checked-out branch: the same commit
    # another commit is not what the edits sit on: it runs as committed, under either policy
    assert refuse.resolve("v1").tree_dirty is False

    lab.git("checkout", "--", "labx/pulses.py")
    lab.write({"labx/extra.py": "X = 1\n"})  # an untracked module counts as a change too
    assert flag.resolve().tree_dirty is True
    (lab.path / "labx/extra.py").unlink()
    assert refuse.resolve().tree_dirty is False

    # whatever the tree holds, the flagged commit runs as committed
    lab.write({"labx/pulses.py": "FRACTION = 2.0\n"})
    loaded = flag.load("labx.simple", "Simple", flag.resolve().commit)
    assert loaded.cls(None, {}, {}).run(None).summary["fraction"] == 1.0


# ---- the allow-list ---------------------------------------------------------------------------------
def test_a_module_outside_the_allow_list_is_never_materialized_or_imported(lab, tmp_path):
    marker = tmp_path / "imported"
    lab.commit({"other/__init__.py": "", "other/evil.py": f"open({str(marker)!r}, 'w').close()\n"})
    repo = repository(lab, tmp_path, allowed=("labx.train",))
    for module in ("other.evil", "labx.simple", "labx"):
        with pytest.raises(ModuleNotAllowed) as err:
            repo.load(module, "Anything", lab.head())
        assert err.value.reason == "MODULE_NOT_ALLOWED"
    with pytest.raises(InvalidRequest) as bad:
        repo.load("labx..x", "Anything", lab.head())
    assert bad.value.reason == "EXPERIMENT_MODULE_INVALID"
    assert not marker.exists()
    assert not (tmp_path / "cache").exists()


def test_what_the_commit_does_not_have(lab, tmp_path):
    lab.commit({"labx/broken.py": "def (:\n", "labx/plain.py": "class NotAnExperiment:\n    pass\n"})
    repo = ExperimentRepository(lab.path, tmp_path / "cache", ("labx", "absent"))
    head = lab.head()
    cases = [
        (("absent.mod", "X", head), "EXPERIMENT_NOT_FOUND"),
        (("labx.broken", "X", head), "EXPERIMENT_IMPORT_FAILED"),
        (("labx.plain", "NotAnExperiment", head), "EXPERIMENT_NOT_FOUND"),
        (("labx.simple", "", head), "EXPERIMENT_CLASS_MISSING"),
        (("labx.simple", "Simple", "HEAD"), "EXPERIMENT_COMMIT_INVALID"),
        (("labx.simple", "Simple", "0" * 40), "EXPERIMENT_REVISION_NOT_FOUND"),
    ]
    for args, reason in cases:
        with pytest.raises(InvalidRequest) as err:
            repo.load(*args)
        assert err.value.reason == reason, args
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [head]  # no half-made trees


# ---- the cache ----------------------------------------------------------------------------------------
def test_a_commit_is_materialized_once_read_only_and_exactly(lab, tmp_path):
    repo = repository(lab, tmp_path)
    commit = lab.head()
    tree = repo.checkout(commit)
    assert tree == tmp_path / "cache" / commit
    assert (tree / "labx/pulses.py").read_text() == lab.git("show", f"{commit}:labx/pulses.py") + "\n"
    for path in [tree, tree / "labx", tree / "labx/pulses.py"]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0, path
    repo.load("labx.simple", "Simple", commit)
    assert not list(tree.rglob("__pycache__"))  # importing writes nothing into it
    assert repo.checkout(commit) == tree


def test_concurrent_users_of_one_cache_get_one_complete_tree(lab, tmp_path):
    commit = lab.head()
    # separate instances share nothing but the directory, as separate executor processes would
    repos = [repository(lab, tmp_path) for _ in range(6)]
    barrier = threading.Barrier(len(repos))
    trees: list = []

    def materialize(repo):
        barrier.wait()
        trees.append(repo.checkout(commit))

    threads = [threading.Thread(target=materialize, args=(r,)) for r in repos]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert trees == [tmp_path / "cache" / commit] * len(repos)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [commit]  # no leftovers
    assert (trees[0] / "labx/train.py").read_text() == TRAIN


def test_a_bare_repository_and_packages_under_src(tmp_path):
    lab = GitRepo(tmp_path / "work")
    lab.commit(
        {
            "src/labx/__init__.py": "",
            "src/labx/pulses.py": "FRACTION = 0.75\n",
            "src/labx/simple.py": SIMPLE,
        }
    )
    bare = tmp_path / "bare.git"
    lab.git("clone", "-q", "--bare", str(lab.path), str(bare))
    repo = ExperimentRepository(bare, tmp_path / "cache", ("labx",), DirtyPolicy.REFUSE, import_root="src")
    resolved = repo.resolve("main")
    assert (resolved.commit, resolved.tree_dirty) == (lab.head(), False)  # a bare one is never dirty
    loaded = repo.load("labx.simple", "Simple", resolved.commit)
    assert loaded.cls(None, {}, {}).run(None).summary["fraction"] == 0.75
    assert repo.has_package(resolved.commit, "labx.simple") and not repo.has_package(resolved.commit, "src")

    # a directory inside a working tree names the whole tree (import_root is from its top)
    inner = ExperimentRepository(lab.path / "src" / "labx", tmp_path / "cache", ("labx",), import_root="src")
    assert inner.path == lab.path.resolve()
    assert inner.load("labx.simple", "Simple", lab.head()).cls is loaded.cls  # one namespace per commit
    assert loaded.cls.__module__ == f"{NAMESPACE_PREFIX}{lab.head()}_src.labx.simple"
