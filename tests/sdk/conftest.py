"""Fixtures for the SDK tests: the integration suite's real scheduler (SQLite, ephemeral port),
with a fake executor that also writes a real HDF5 file per successful run and streams it back
(FetchData), so data loading works with and without a shared filesystem; and `qsched_up`, a real
`qsched up` stack (processes, simulated board) shared by the tests that run against one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from qsched.api.executor.v1 import executor_pb2 as epb
from qsched_core.execution import DataRef, Succeeded
from tests.support.fake_executor import FakeExecutor, start_fake_executor

CHUNK = 1000  # small chunks, so a fetch takes several messages


def write_run_file(path: Path, job_id: str, task_id: str) -> None:
    import h5py
    import numpy as np

    x = np.linspace(0.0, 1.0, 21)
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "qsched-run/1"
        f.attrs["job_id"] = job_id
        f.attrs["task_id"] = task_id
        f.attrs["config"] = '{"expt": {"expts": 21, "reps": 100}, "device": {"qubit": {"f_ge": 4000.0}}}'
        f.attrs["experiment_class"] = "AmplitudeRabiExperiment"
        xs = f.create_dataset("xpts", data=x)
        xs.attrs["units"] = "a.u."
        xs.attrs["long_name"] = "gain"
        f.create_dataset("avgi", data=np.cos(2 * np.pi * x))
        f.create_dataset("avgq", data=np.sin(2 * np.pi * x))
        f.create_dataset("fit_avgi", data=np.cos(2 * np.pi * x) * 0.98)
        f.attrs["fit_pi_gain"] = 0.5


class DataFakeExecutor(FakeExecutor):
    """FakeExecutor whose successful runs write `<data_dir>/<job>-<task>.h5` and whose FetchData
    streams those files."""

    def __init__(self, data_dir: Path, **kwargs):
        super().__init__(**kwargs)
        self.data_dir = data_dir
        self.files: dict[str, Path] = {}
        self.fetches: list[str] = []

    def result_for(self, run):
        req = run.request
        path = self.data_dir / f"{req.job_id}-{req.task_id[:8]}.h5"
        write_run_file(path, req.job_id, req.task_id)
        self.files[req.task_id] = path
        data = path.read_bytes()
        return Succeeded(DataRef(path.name, hashlib.sha256(data).hexdigest(), len(data)), {"pi_gain": 0.5})

    async def FetchData(self, request, context):
        from qsched_runtime.errors import abort
        from tests.support.fake_executor import DOMAIN, Missing

        self.fetches.append(request.task_id)
        path = self.files.get(request.task_id) or next(
            (p for p in self.files.values() if request.name and p.name == request.name), None
        )
        if path is None:
            await abort(context, Missing("DATA_NOT_FOUND", f"no file for {request.task_id}"), DOMAIN)
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        for offset in range(0, len(data), CHUNK):
            yield epb.FetchDataResponse(
                offset=offset,
                chunk=data[offset : offset + CHUNK],
                total_size=len(data),
                sha256=sha if offset == 0 else "",
            )


@pytest.fixture
async def fake_executor(tmp_path):
    """Overrides the integration suite's fixture (the `scheduler` fixture uses this one)."""
    data_dir = tmp_path / "executor-data"
    data_dir.mkdir()
    fake = DataFakeExecutor(data_dir)
    server = await start_fake_executor(fake)
    yield fake, f"127.0.0.1:{server.port}"
    await server.stop(0)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("QSCHED_CACHE_DIR", str(path))
    return path
