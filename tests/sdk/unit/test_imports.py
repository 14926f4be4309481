"""`import qsched` stays light: no numpy, h5py, qiskit or matplotlib until data is read."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("numpy", "h5py", "qiskit", "matplotlib", "sqlalchemy", "opentelemetry")


def loaded_after(statement: str) -> list[str]:
    code = (
        f"import sys; {statement}; print(sorted({{k.split('.')[0] for k in sys.modules}} & set({HEAVY!r})))"
    )
    return eval(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )


@pytest.mark.parametrize(
    "statement",
    [
        "import qsched",
        "from qsched import JobClient",
        "from qsched import JobClient, NotFound; JobClient('127.0.0.1:1')",
        "from qsched.aio import Client, Job, CompositeJob, JobOutputProxy, JobResult, JobError, JobState",
        "import qsched.data",
    ],
)
def test_no_heavy_imports(statement):
    assert loaded_after(statement) == []


def test_lazy_attributes():
    import qsched

    assert "JobClient" in dir(qsched)
    with pytest.raises(AttributeError):
        _ = qsched.NoSuchThing
