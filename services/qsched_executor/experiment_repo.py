"""The experiment repository: lab plug-ins run from an exact commit of a git repository.

The executor is given a repository (a local path). A job names a revision (branch, tag or
commit; default HEAD), which is resolved to a commit at submit (`resolve`); the run then loads its
experiment from that commit (`load`), whatever the repository holds by then:

- each commit is materialized once into the cache directory (`git archive`, unpacked under a
  temporary name, made read-only, renamed into place: atomic, so concurrent executors or threads
  sharing the cache never see half a tree and never clash);
- its modules are imported under a namespace of their own, `_qsched_xrepo_<commit>.<module>`, so
  two commits never share a module, and nothing enters `sys.modules` under the plug-in's own
  name. An absolute import inside the plug-in of one of the repository's top-level packages
  (`from mylab.pulses import gauss`) is redirected into the same commit's namespace; qsched's
  own packages and everything else are imported as usual;
- the allow-list holds as for installed plug-ins (plugins.py): the module a job names is checked
  by name before anything is materialized or imported.

A per-device dirty policy says what to do when the revision resolves to the commit the
repository has checked out while its working tree has uncommitted changes (they would not run):
`refuse` the job, or `flag` it (recorded as `experiment_dirty` in the run's provenance)."""

from __future__ import annotations

import builtins
import contextlib
import enum
import importlib
import importlib.abc
import importlib.machinery
import inspect
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import tomllib
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qsched_core.errors import FailedPrecondition
from qsched_core.provenance import CodeOrigin, CodeProvenance, PackageSource, ResolvedRevision
from qsched_executor.errors import InvalidRequest, ModuleNotAllowed
from qsched_executor.plugins import in_package
from qsched_hardware.experiments import Experiment
from qsched_hardware.provenance import GIT_TIMEOUT_S, GitError, code_provenance, git, git_env, is_dirty

NAMESPACE_PREFIX = "_qsched_xrepo_"
_COMMIT = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")  # SHA-1 or SHA-256 object names


class DirtyPolicy(enum.Enum):
    """What a device does with a job whose commit is checked out with uncommitted changes."""

    REFUSE = "refuse"
    FLAG = "flag"


class RepositoryUnavailable(FailedPrecondition):
    """The repository cannot be read (missing, not a git repository, git failed)."""


class DirtyTree(FailedPrecondition):
    """Refused by the dirty policy."""


@dataclass(frozen=True)
class LoadedExperiment:
    """An experiment class imported from one commit, and its package as recorded."""

    cls: type[Experiment]
    commit: str
    package: PackageSource  # name, version (pyproject.toml of the commit), commit

    def provenance(self, revision: str = "", tree_dirty: bool = False) -> CodeProvenance:
        """The run's provenance: `revision` as the job named it, `tree_dirty` as resolved."""
        package = PackageSource(self.package.name, self.package.version, self.commit, tree_dirty)
        return code_provenance(package, CodeOrigin.REPOSITORY, revision)


def check_module_name(module: str, allowed: Sequence[str]) -> str:
    """The module name if a job may name it, else the error plugins.py would raise (the same
    reasons: the rules are one)."""
    module = (module or "").strip()
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise InvalidRequest(
            "EXPERIMENT_MODULE_INVALID", f"{module!r} is not a module name", experiment_module=module
        )
    if not any(in_package(module, package) for package in allowed):
        listed = ", ".join(allowed) or "none"
        raise ModuleNotAllowed(
            "MODULE_NOT_ALLOWED",
            f"module {module!r} is not in an allow-listed experiment package (allowed: {listed})",
            experiment_module=module,
        )
    return module


class ExperimentRepository:
    """One git repository of experiments, its cache of materialized commits and their imports.
    Thread-safe; several processes may share one cache directory."""

    def __init__(
        self,
        path: Path,
        cache_dir: Path,
        allowed: Sequence[str],
        dirty_policy: DirtyPolicy = DirtyPolicy.FLAG,
        import_root: str = "",
    ):
        self.path = Path(path).resolve()
        self.cache_dir = Path(cache_dir)
        self.allowed = tuple(allowed)
        self.dirty_policy = dirty_policy
        # Where packages sit inside the repository (e.g. "src"); "" = its top.
        self.import_root = import_root.strip("/")
        if self.import_root and ".." in Path(self.import_root).parts:
            raise ValueError(f"import_root {import_root!r} leaves the repository")
        try:
            self.bare = git(["rev-parse", "--is-bare-repository"], self.path) == "true"
            if not self.bare:  # a directory inside a working tree stands for the whole tree
                self.path = Path(git(["rev-parse", "--show-toplevel"], self.path))
        except (GitError, OSError) as exc:
            raise RepositoryUnavailable(
                "EXPERIMENT_REPOSITORY_UNAVAILABLE",
                f"{self.path} is not a readable git repository: {exc}",
                repository=str(self.path),
            ) from exc
        self._lock = threading.Lock()
        self._materializing: dict[str, threading.Lock] = {}
        self._loaded: dict[tuple[str, str, str], LoadedExperiment] = {}

    # ---- revisions -------------------------------------------------------------------------------
    def resolve(self, revision: str = "", *, enforce_policy: bool = True) -> ResolvedRevision:
        """The commit a revision names now (default: HEAD), and whether the working tree has
        uncommitted changes on top of it. Under the `refuse` policy that is an error (unless
        `enforce_policy` is False: then call `enforce_policy` yourself)."""
        asked = (revision or "").strip()
        rev = asked or "HEAD"
        if rev.startswith("-") or any(c in rev for c in "\0\n\r") or len(rev) > 256:
            raise InvalidRequest(
                "EXPERIMENT_REVISION_INVALID", f"{rev!r} is not a revision", experiment_revision=rev
            )
        try:
            commit = git(
                ["rev-parse", "--verify", "--quiet", "--end-of-options", rev + "^{commit}"], self.path
            )
        except GitError as exc:
            raise InvalidRequest(
                "EXPERIMENT_REVISION_NOT_FOUND",
                f"the experiment repository has no commit {rev!r}",
                experiment_revision=rev,
            ) from exc
        dirty = False
        if not self.bare:
            try:
                head = git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], self.path)
                dirty = head == commit and is_dirty(self.path)
            except GitError as exc:
                raise self._unavailable(exc) from exc
        resolved = ResolvedRevision(asked, commit, dirty)
        if enforce_policy:
            self.enforce_policy(resolved)
        return resolved

    def enforce_policy(self, resolved: ResolvedRevision) -> None:
        """Raise DirtyTree when the device refuses what `resolved` says about the tree."""
        if resolved.tree_dirty and self.dirty_policy is DirtyPolicy.REFUSE:
            raise DirtyTree(
                "EXPERIMENT_TREE_DIRTY",
                f"the experiment repository has uncommitted changes on top of {resolved.commit[:12]} "
                "(this device refuses them: commit them, or name another revision)",
                experiment_revision=resolved.revision or "HEAD",
                commit=resolved.commit,
            )

    # ---- materialized commits --------------------------------------------------------------------
    def checkout(self, commit: str) -> Path:
        """The read-only tree of `commit` in the cache, materialized on first use."""
        commit = _check_commit(commit)
        final = self.cache_dir / commit
        if final.is_dir():
            return final
        with self._lock:
            lock = self._materializing.setdefault(commit, threading.Lock())
        with lock:  # one thread materializes; others in this process wait for it
            if final.is_dir():
                return final
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{commit}.", dir=self.cache_dir))
            try:
                self._extract(commit, tmp)
                _make_read_only(tmp)
                try:
                    os.rename(tmp, final)
                except OSError:
                    if not final.is_dir():  # not another process's finished tree: a real failure
                        raise
            finally:
                if tmp.exists():
                    _remove_tree(tmp)
        return final

    def _extract(self, commit: str, into: Path) -> None:
        try:
            proc = subprocess.Popen(
                ["git", "archive", "--format=tar", commit],
                cwd=self.path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=git_env(),
            )
        except OSError as exc:
            raise self._unavailable(exc) from exc
        assert proc.stdout is not None and proc.stderr is not None
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
                archive.extractall(into, filter="data")
        except tarfile.TarError:
            pass  # git failed (no such commit): its exit status says so below
        finally:
            # tarfile stops at the end-of-archive marker; git may still be writing the padding
            # of its last record, and would die of SIGPIPE if the pipe closed under it.
            while proc.stdout.read(1 << 16):
                pass
            proc.stdout.close()
            err = proc.stderr.read().decode(errors="replace").strip()
            proc.stderr.close()
            code = proc.wait(timeout=GIT_TIMEOUT_S)
        if code != 0:
            raise InvalidRequest(
                "EXPERIMENT_REVISION_NOT_FOUND",
                f"the experiment repository has no commit {commit}: {err}",
                commit=commit,
            )

    def has_package(self, commit: str, module: str) -> bool:
        """Whether `commit` has the top-level package (or module) of `module` (materializes it)."""
        root = self._import_root(self.checkout(commit))
        return module.partition(".")[0] in self._roots(root)

    def _import_root(self, tree: Path) -> Path:
        return tree / self.import_root if self.import_root else tree

    # ---- imports ---------------------------------------------------------------------------------
    def load(self, module: str, class_name: str, commit: str) -> LoadedExperiment:
        """The experiment class `module.class_name` as it is in `commit`."""
        module = check_module_name(module, self.allowed)
        commit = _check_commit(commit)
        if not class_name:
            raise InvalidRequest("EXPERIMENT_CLASS_MISSING", "experiment_class is required")
        key = (commit, module, class_name)
        with self._lock:
            known = self._loaded.get(key)
        if known is not None:
            return known
        tree = self.checkout(commit)
        root = self._import_root(tree)
        namespace = _FINDER.register(commit, self.import_root, root, self._roots(root))
        top = module.partition(".")[0]
        if top not in _FINDER.roots(namespace):
            raise InvalidRequest(
                "EXPERIMENT_NOT_FOUND",
                f"the experiment repository has no package {top!r} at {commit[:12]}",
                experiment_module=module,
                commit=commit,
            )
        try:
            mod = importlib.import_module(f"{namespace}.{module}")
        except Exception as exc:
            raise InvalidRequest(
                "EXPERIMENT_IMPORT_FAILED",
                f"importing {module} at {commit[:12]}: {type(exc).__name__}: {exc}",
                experiment_module=module,
                commit=commit,
            ) from exc
        cls = getattr(mod, class_name, None)
        if not (inspect.isclass(cls) and issubclass(cls, Experiment)):
            raise InvalidRequest(
                "EXPERIMENT_NOT_FOUND",
                f"{module} at {commit[:12]} has no experiment class {class_name!r} "
                "(a subclass of qsched_hardware.experiments.Experiment)",
                experiment_class=class_name,
                commit=commit,
            )
        version = _project_version(tree) or str(
            getattr(sys.modules.get(f"{namespace}.{top}"), "__version__", "")
        )
        loaded = LoadedExperiment(cls, commit, PackageSource(top, version, commit))
        with self._lock:
            return self._loaded.setdefault(key, loaded)

    def _roots(self, root: Path) -> frozenset[str]:
        """The repository's top-level packages and modules imports are redirected for: all of
        them but qsched's own packages (unless allow-listed: a lab may fork an example)."""
        names: set[str] = set()
        if root.is_dir():
            for entry in root.iterdir():
                if entry.is_dir() and entry.name.isidentifier():
                    names.add(entry.name)  # a package (regular or namespace)
                elif entry.is_file() and entry.suffix == ".py" and entry.stem.isidentifier():
                    names.add(entry.stem)
        allowed_tops = {package.partition(".")[0] for package in self.allowed}
        return frozenset(n for n in names if not _qsched_own(n) or n in allowed_tops)

    def _unavailable(self, exc: BaseException) -> RepositoryUnavailable:
        return RepositoryUnavailable(
            "EXPERIMENT_REPOSITORY_UNAVAILABLE",
            f"reading the experiment repository {self.path}: {exc}",
            repository=str(self.path),
        )


# ---- helpers -------------------------------------------------------------------------------------
def _check_commit(commit: str) -> str:
    commit = (commit or "").strip().lower()
    if not _COMMIT.match(commit):
        raise InvalidRequest(
            "EXPERIMENT_COMMIT_INVALID", f"{commit!r} is not a full commit id", commit=commit
        )
    return commit


def _qsched_own(name: str) -> bool:
    return name == "qsched" or name.startswith("qsched_")


def _project_version(tree: Path) -> str:
    try:
        with open(tree / "pyproject.toml", "rb") as handle:
            project = tomllib.load(handle).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return ""
    version = project.get("version", "") if isinstance(project, dict) else ""
    return version if isinstance(version, str) else ""


def _make_read_only(tree: Path) -> None:
    """Files r--/r-x, directories r-x (bottom-up, so the walk can still list them)."""
    for directory, dirs, files in os.walk(tree, topdown=False):
        for name in files:
            path = Path(directory, name)
            if path.is_symlink():
                continue
            mode = path.stat().st_mode
            path.chmod(0o555 if mode & stat.S_IXUSR else 0o444)
        for name in dirs:
            path = Path(directory, name)
            if not path.is_symlink():
                path.chmod(0o555)
    tree.chmod(0o555)


def _remove_tree(tree: Path) -> None:
    with contextlib.suppress(OSError):
        tree.chmod(0o755)
    for directory, dirs, _files in os.walk(tree):
        for name in dirs:
            with contextlib.suppress(OSError):
                Path(directory, name).chmod(0o755)
    shutil.rmtree(tree, ignore_errors=True)


# ---- the import machinery ------------------------------------------------------------------------
class _CommitLoader(importlib.machinery.SourceFileLoader):
    """Loads a module of a materialized commit: absolute imports of the repository's top-level
    packages go to the same commit (the module's own `__import__`), and no bytecode is written
    into the read-only tree."""

    def __init__(self, fullname: str, path: str, module_builtins: dict[str, Any]):
        super().__init__(fullname, path)
        self.module_builtins = module_builtins

    def exec_module(self, module: types.ModuleType) -> None:
        module.__dict__["__builtins__"] = self.module_builtins
        super().exec_module(module)

    def set_data(self, path: str, data: bytes, *, _mode: int = 0o666) -> None:
        return None  # no __pycache__ in the cache's trees


@dataclass(frozen=True)
class _Tree:
    root: Path
    roots: frozenset[str]
    module_builtins: dict[str, Any]


class _CommitFinder(importlib.abc.MetaPathFinder):
    """Finds the modules under `_qsched_xrepo_<commit>` (and nothing else) in that commit's tree."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._trees: dict[str, _Tree] = {}
        self._installed = False

    def register(self, commit: str, import_root: str, root: Path, roots: frozenset[str]) -> str:
        """The namespace of `commit`'s modules (imported from `root`, its `import_root`)."""
        namespace = NAMESPACE_PREFIX + commit
        if import_root:  # the same commit seen from another root is other modules
            namespace += "_" + re.sub(r"\W", "_", import_root)
        with self._lock:
            if namespace in self._trees:
                return namespace
            self._trees[namespace] = _Tree(root, roots, _module_builtins(namespace, roots))
            package = types.ModuleType(namespace, f"experiment repository at commit {commit}")
            spec = importlib.machinery.ModuleSpec(namespace, None, is_package=True)
            spec.submodule_search_locations = [str(root)]
            package.__spec__ = spec
            package.__path__ = [str(root)]
            sys.modules[namespace] = package
            if not self._installed:
                sys.meta_path.insert(0, self)
                self._installed = True
        return namespace

    def roots(self, namespace: str) -> frozenset[str]:
        with self._lock:
            tree = self._trees.get(namespace)
        return tree.roots if tree else frozenset()

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None):
        namespace = fullname.partition(".")[0]
        if not namespace.startswith(NAMESPACE_PREFIX) or fullname == namespace:
            return None
        with self._lock:
            tree = self._trees.get(namespace)
        if tree is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            assert spec.origin is not None
            spec.loader = _CommitLoader(fullname, spec.origin, tree.module_builtins)
        return spec


def _module_builtins(namespace: str, roots: frozenset[str]) -> dict[str, Any]:
    """Builtins whose `__import__` sends `import <root>...` to `<namespace>.<root>...`."""
    real_import = builtins.__import__

    def commit_import(name, globals=None, locals=None, fromlist=(), level=0):
        top = name.partition(".")[0]
        if level == 0 and top in roots:
            module = real_import(f"{namespace}.{name}", globals, locals, fromlist, 0)
            # `import a.b` binds `a`; `from a.b import c` wants `a.b` itself.
            return module if fromlist else sys.modules[f"{namespace}.{top}"]
        return real_import(name, globals, locals, fromlist, level)

    table = dict(builtins.__dict__)
    table["__import__"] = commit_import
    return table


_FINDER = _CommitFinder()
