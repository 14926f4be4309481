"""Where the executor takes an experiment class from, and the code provenance a run records.

Three sources, asked in this order for a module the job names (seed job-server modules are
translated to built-ins before this, seed_compat.py):

1. the built-ins (`qsched_hardware.experiments`, or no module): qsched's own code;
2. the experiment repository (experiment_repo.py), when the executor has one and the module's
   top-level package is in the repository's tree at the job's commit;
3. an allow-listed package installed in the executor's environment (plugins.py).

At submit (`resolve`) the job's revision is resolved to the commit its runs will use; a run
(`load`) then names that commit. The device's dirty policy applies to both kinds of working
tree: the repository's (uncommitted changes on top of the resolved commit) and the one an
installed package was imported from."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qsched_core.config import ServiceConfig
from qsched_core.provenance import CodeOrigin, CodeProvenance, ResolvedRevision
from qsched_executor.errors import InvalidRequest
from qsched_executor.experiment_repo import (
    DirtyPolicy,
    DirtyTree,
    ExperimentRepository,
    check_module_name,
)
from qsched_executor.plugins import in_package, resolve_experiment
from qsched_hardware.experiments import BUILTIN_PACKAGE, Experiment
from qsched_hardware.provenance import code_provenance, package_source, qsched_source


@dataclass(frozen=True)
class ExperimentCode:
    """An experiment class and the code it is (for the data file and the run's result)."""

    cls: type[Experiment]
    code: CodeProvenance


def is_builtin(module: str) -> bool:
    module = (module or "").strip()
    return not module or in_package(module, BUILTIN_PACKAGE)


class ExperimentSources:
    """The executor's experiment sources: built-ins, its repository (optional), installed
    allow-listed packages."""

    def __init__(
        self,
        allowed: Sequence[str],
        repository: ExperimentRepository | None = None,
        dirty_policy: DirtyPolicy = DirtyPolicy.FLAG,
    ):
        self.allowed = tuple(allowed)
        self.repository = repository
        self.dirty_policy = repository.dirty_policy if repository is not None else dirty_policy

    # ---- at submit -------------------------------------------------------------------------------
    def resolve(self, module: str, revision: str = "") -> ResolvedRevision | None:
        """The commit a job's runs will use, when its experiment comes from the repository;
        None when it does not (built-in, installed package). Raises when the job names a
        revision that cannot apply, or the dirty policy refuses it."""
        revision = (revision or "").strip()
        if is_builtin(module):
            if revision:
                raise InvalidRequest(
                    "EXPERIMENT_REVISION_UNUSED",
                    f"built-in experiments are qsched's own code: experiment_revision {revision!r} "
                    "does not apply",
                    experiment_revision=revision,
                )
            return None
        repository = self.repository
        if repository is None:
            if revision:
                raise InvalidRequest(
                    "EXPERIMENT_REPOSITORY_UNSET",
                    f"this device has no experiment repository (experiment_revision {revision!r})",
                    experiment_revision=revision,
                )
            return None
        if not revision and not any(in_package(module.strip(), p) for p in self.allowed):
            return None  # a seed module, or one the class lookup refuses with its usual error
        module = check_module_name(module, self.allowed)
        resolved = repository.resolve(revision, enforce_policy=False)
        if not repository.has_package(resolved.commit, module):
            if revision:
                raise InvalidRequest(
                    "EXPERIMENT_NOT_FOUND",
                    f"the experiment repository has no package for {module!r} at {resolved.commit[:12]}",
                    experiment_module=module,
                    commit=resolved.commit,
                )
            return None  # an installed package, not the repository's
        repository.enforce_policy(resolved)
        return resolved

    # ---- at run time -----------------------------------------------------------------------------
    def load(
        self,
        module: str,
        class_name: str,
        *,
        commit: str = "",
        revision: str = "",
        tree_dirty: bool = False,
    ) -> ExperimentCode:
        """The class a run executes and its provenance: from `commit` of the repository when
        the run names one (as resolved at submit), else a built-in or an installed package."""
        if commit:
            if self.repository is None:
                raise InvalidRequest(
                    "EXPERIMENT_REPOSITORY_UNSET",
                    f"the run names commit {commit} but this device has no experiment repository",
                    commit=commit,
                )
            loaded = self.repository.load(module, class_name, commit)
            return ExperimentCode(loaded.cls, loaded.provenance(revision, tree_dirty))
        cls = resolve_experiment(module, class_name, self.allowed)
        if is_builtin(module):
            return ExperimentCode(cls, builtin_code())
        source = package_source(module)
        if source.dirty and self.dirty_policy is DirtyPolicy.REFUSE:
            raise DirtyTree(
                "EXPERIMENT_TREE_DIRTY",
                f"package {source.name} was imported from a working tree with uncommitted changes "
                f"on top of {source.commit[:12]} (this device refuses them)",
                experiment_module=module,
                commit=source.commit,
            )
        return ExperimentCode(cls, code_provenance(source, CodeOrigin.PACKAGE))


@functools.cache
def builtin_code() -> CodeProvenance:
    """The provenance of a built-in experiment (and of a seed job translated to one): the same
    for every run of this process (frozen; its parts are read once), so built once."""
    return code_provenance()


def sources_from_config(config: ServiceConfig) -> ExperimentSources:
    """The executor's sources as its flags set them (raises RepositoryUnavailable when
    --experiment-repo is not a git repository, ValueError for an unknown --dirty-tree). Call it
    at start: it also reads qsched's own version and git state then (what this process runs)."""
    qsched_source()
    policy = DirtyPolicy(config.dirty_tree or DirtyPolicy.FLAG.value)
    allowed = tuple(config.experiment_packages)
    if not config.experiment_repo:
        return ExperimentSources(allowed, None, policy)
    cache = (
        Path(config.experiment_cache).expanduser()
        if config.experiment_cache
        else Path(config.data_dir) / "experiment-cache"
    )
    repository = ExperimentRepository(
        Path(config.experiment_repo).expanduser(), cache, allowed, policy, config.experiment_repo_root
    )
    return ExperimentSources(allowed, repository)
