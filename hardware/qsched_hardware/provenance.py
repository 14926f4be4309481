"""Which code runs: the versions of qsched, qick and an experiment's package, and the git commit
(with an uncommitted-changes flag) when a package was imported from a git working tree.

Git is asked through its command line (`git` on PATH); without git, or outside a working tree,
the commit is simply empty. A package counts as coming from a working tree only when its files
are tracked there: a virtualenv inside a checkout does not lend its packages the checkout's
commit. The state of a package is read once, the first time it is asked for (call it right after
the import): the code in memory is the code imported then, whatever the tree holds later."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from qsched_core.provenance import CodeOrigin, CodeProvenance, PackageSource

GIT_TIMEOUT_S = 30.0
# Variables that would point git at another repository than the one asked about.
_GIT_REDIRECTS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY")


class GitError(Exception):
    """A git command failed (or git is not installed); the message holds git's own words."""


def git_env() -> dict[str, str]:
    """The environment for a git command: about the repository it runs in, never interactive,
    messages in English (they are quoted in errors)."""
    env = {k: v for k, v in os.environ.items() if k not in _GIT_REDIRECTS}
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    return env


def git(args: list[str], cwd: Path, *, timeout: float = GIT_TIMEOUT_S) -> str:
    """Run `git args` in `cwd`; its stdout, stripped. Never takes optional locks (a status in a
    person's working tree must not block their own git), never prompts."""
    try:
        done = subprocess.run(
            ["git", "--no-optional-locks", *args],
            cwd=cwd,
            env=git_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"git {args[0]}: {exc}") from exc
    if done.returncode != 0:
        raise GitError(done.stderr.strip() or f"git {args[0]} exited with {done.returncode}")
    return done.stdout.strip()


@dataclass(frozen=True)
class GitState:
    """A working tree's checked-out commit and whether it has uncommitted changes."""

    toplevel: Path
    commit: str
    dirty: bool


def is_dirty(directory: Path, scope: Path | None = None) -> bool:
    """True when the working tree at `directory` has uncommitted changes within `scope` (default:
    the whole tree): modified or staged tracked files, or untracked files git does not ignore."""
    args = ["status", "--porcelain", "--untracked-files=normal"]
    if scope is not None:
        args += ["--", str(scope)]
    return bool(git(args, directory))


def git_state(path: Path, scope: Path | None = None) -> GitState | None:
    """The state of the working tree `path` (a file or directory) is tracked in, or None when it
    is not tracked in one (or git cannot tell). Dirtiness is judged within `scope` (default:
    `path`; pass the toplevel for the whole tree)."""
    path = path.resolve()
    directory = path if path.is_dir() else path.parent
    try:
        toplevel = Path(git(["rev-parse", "--show-toplevel"], directory))
        git(["ls-files", "--error-unmatch", "--", str(path)], directory)  # fails when untracked
        commit = git(["rev-parse", "--verify", "HEAD^{commit}"], directory)
        dirty = is_dirty(directory, scope or path)
    except GitError:
        return None
    return GitState(toplevel, commit, dirty)


def distribution_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return ""


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def package_version(top: str) -> str:
    """The installed version of the distribution that provides import package `top`, else the
    package's own `__version__`, else ""."""
    for dist in _distributions().get(top, ()):
        version = distribution_version(dist)
        if version:
            return version
    module = sys.modules.get(top)
    return str(getattr(module, "__version__", "") or "")


def _location(top: str) -> Path | None:
    module = sys.modules.get(top)
    if module is None:
        return None
    if getattr(module, "__file__", None):
        file = Path(module.__file__)
        return file.parent if file.name == "__init__.py" else file
    paths = list(getattr(module, "__path__", []) or [])  # a namespace package
    return Path(paths[0]) if paths else None


_lock = threading.Lock()
_sources: dict[str, PackageSource] = {}


def package_source(module: str) -> PackageSource:
    """The source of an imported module's top-level package: version, and commit and dirty flag
    when it was imported from a git working tree (judged within the package's directory). Read
    once per package and process."""
    top = module.partition(".")[0]
    with _lock:
        known = _sources.get(top)
    if known is not None:
        return known
    location = _location(top)
    state = git_state(location) if location is not None else None
    source = PackageSource(
        top, package_version(top), state.commit if state else "", state.dirty if state else False
    )
    with _lock:
        return _sources.setdefault(top, source)


@functools.cache
def qsched_source() -> PackageSource:
    """qsched's own version, and its commit when it runs from a checkout (dirty: anywhere in
    that checkout). Read once per process."""
    here = Path(__file__).resolve().parent
    state = git_state(here)
    if state is not None:  # judge the whole checkout, not just this package
        with contextlib.suppress(GitError):
            state = GitState(state.toplevel, state.commit, is_dirty(here, state.toplevel))
    version = distribution_version("qsched")
    return PackageSource("qsched", version, state.commit if state else "", state.dirty if state else False)


@functools.cache
def qick_version() -> str:
    """qick's version as this process has it (read once: it is imported once)."""
    return distribution_version("qick")


def builtin_source() -> PackageSource:
    """The built-in experiments are qsched's code."""
    own = qsched_source()
    return PackageSource("qsched_hardware", own.version, own.commit, own.dirty)


def code_provenance(
    experiment: PackageSource | None = None,
    origin: CodeOrigin = CodeOrigin.BUILTIN,
    revision: str = "",
) -> CodeProvenance:
    """A run's provenance: qsched and qick as this process has them, and the experiment's package
    (default: the built-ins)."""
    return CodeProvenance(
        qsched=qsched_source(),
        qick_version=qick_version(),
        experiment=experiment if experiment is not None else builtin_source(),
        experiment_origin=origin,
        experiment_revision=revision,
    )
