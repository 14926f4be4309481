"""A run's code provenance as tests use it: qsched from a dirty checkout, a plug-in package from
the experiment repository at a commit."""

from __future__ import annotations

from qsched_core.provenance import CodeOrigin, CodeProvenance, PackageSource


def repository_code(package: str = "mylab", version: str = "1.2") -> CodeProvenance:
    return CodeProvenance(
        PackageSource("qsched", "0.9.0", "12" * 20, dirty=True),
        "0.2.357",
        PackageSource(package, version, "ef" * 20, dirty=True),
        CodeOrigin.REPOSITORY,
        "main",
    )
