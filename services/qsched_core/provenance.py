"""The code a run ran with, typed: qsched, qick and the experiment's package (version, and the
git commit when the code came from a git working tree or the executor's experiment repository).

The executor gathers it (qsched_hardware.provenance), writes it into the run's data file and
reports it with the run's result; the scheduler stores it with the run. `to_dict` / `from_dict`
give the flat form both the HDF5 attributes and the run log use. Nothing here knows gRPC."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class CodeOrigin(enum.Enum):
    """Where an experiment's code was imported from."""

    BUILTIN = "builtin"  # qsched's own experiments (qsched_hardware.experiments, seed jobs)
    PACKAGE = "package"  # an allow-listed package importable by the executor
    REPOSITORY = "repository"  # a commit of the executor's experiment repository


@dataclass(frozen=True)
class PackageSource:
    """One package's code. `commit` is empty when the code did not come from git; `dirty` means
    the working tree it came from had uncommitted changes (for a package imported from a
    checkout: when it was imported; for the experiment repository: when the job's revision was
    resolved to a commit, so those changes are not in the code that ran)."""

    name: str
    version: str = ""
    commit: str = ""
    dirty: bool = False


@dataclass(frozen=True)
class CodeProvenance:
    """What ran a run: qsched itself, the qick library and the experiment's package."""

    qsched: PackageSource
    qick_version: str = ""
    experiment: PackageSource | None = None
    experiment_origin: CodeOrigin = CodeOrigin.BUILTIN
    # The repository revision the job named ("" = the repository's HEAD at submit), for the record;
    # experiment.commit is what it resolved to.
    experiment_revision: str = ""

    def to_dict(self) -> dict[str, str | bool]:
        """Flat, with scalar values only (HDF5 root attributes, a JSON column)."""
        experiment = self.experiment or PackageSource("")
        return {
            "qsched_version": self.qsched.version,
            "qsched_commit": self.qsched.commit,
            "qsched_dirty": self.qsched.dirty,
            "qick_version": self.qick_version,
            "experiment_package": experiment.name,
            "experiment_version": experiment.version,
            "experiment_commit": experiment.commit,
            "experiment_dirty": experiment.dirty,
            "experiment_origin": self.experiment_origin.value,
            "experiment_revision": self.experiment_revision,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CodeProvenance:
        """Inverse of `to_dict`; missing keys take their defaults (files written before it)."""

        def text(key: str) -> str:
            value = data.get(key, "")
            return value.decode() if isinstance(value, bytes) else str(value or "")

        def flag(key: str) -> bool:
            value = data.get(key, False)
            return value.lower() == "true" if isinstance(value, str) else bool(value)

        def source(prefix: str, name: str) -> PackageSource:
            version, commit = text(f"{prefix}_version"), text(f"{prefix}_commit")
            return PackageSource(name, version, commit, flag(f"{prefix}_dirty"))

        name = text("experiment_package")
        return cls(
            qsched=source("qsched", "qsched"),
            qick_version=text("qick_version"),
            experiment=source("experiment", name) if name else None,
            experiment_origin=CodeOrigin(text("experiment_origin") or CodeOrigin.BUILTIN.value),
            experiment_revision=text("experiment_revision"),
        )


@dataclass(frozen=True)
class ResolvedRevision:
    """A revision of the experiment repository resolved to a commit (at submit): what the job
    named, the commit, and whether the repository's working tree had uncommitted changes on top
    of that commit (they do not run)."""

    revision: str
    commit: str
    tree_dirty: bool = False
