"""Fixtures for the SDK tests: the integration suite's real scheduler (SQLite, ephemeral port),
with a fake executor that also writes a real HDF5 file per successful run and streams it back
(FetchData), so data loading works with and without a shared filesystem; and `qsched_up`, a real
`qsched up` stack (processes, simulated board) shared by the tests that run against one."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from qsched.api.executor.v1 import executor_pb2 as epb
from qsched_core.principal import Role
from tests.sdk.helpers import PERSON
from tests.support.fake_executor import FakeExecutor, start_fake_executor
from tests.support.identity import TestIdentity, up_environment

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

    def _emit(self, run, **kind):
        if "result" in kind:
            req = run.request
            path = self.data_dir / f"{req.job_id}-{req.task_id[:8]}.h5"
            write_run_file(path, req.job_id, req.task_id)
            self.files[req.task_id] = path
            data = path.read_bytes()
            kind["result"] = epb.RunResult(
                data_file_path=str(path),
                summary=dict(kind["result"].summary),
                data_sha256=hashlib.sha256(data).hexdigest(),
                data_size_bytes=len(data),
            )
        super()._emit(run, **kind)

    async def FetchData(self, request, context):
        from qsched_runtime.errors import abort
        from tests.support.fake_executor import DOMAIN, Missing

        self.fetches.append(request.task_id)
        path = self.files.get(request.task_id)
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


@dataclass
class UpStack:
    """A running `qsched up`: the scheduler's address, and tokens of people on it."""

    address: str
    identity: TestIdentity | None = None  # None: a stack named by QSCHED_SDK_TEST_ADDRESS

    def token_for(self, name: str) -> str:
        """A token of `name` (an operator, so it may cancel the other people's test jobs)."""
        if self.identity is None:
            if name == PERSON and os.environ.get("QSCHED_TOKEN"):
                return os.environ["QSCHED_TOKEN"]
            pytest.skip(f"no token of {name} for the stack at QSCHED_SDK_TEST_ADDRESS")
        return self.identity.token_for(name, (Role.OPERATOR,))


@pytest.fixture(scope="package")
def qsched_up(tmp_path_factory) -> Iterator[UpStack]:
    """A real `qsched up` stack for the SDK tests (stopped when they are done): four processes on
    free ports, the simulated board, a temporary data directory and identity database of its own.
    QSCHED_SDK_TEST_ADDRESS names an already running stack instead (nothing is started then;
    $QSCHED_TOKEN is the caller's)."""
    from qsched_core.config import SERVICES
    from qsched_core.sql import make_engine
    from qsched_identity.db import sqlite_url_for
    from qsched_identity.store import IdentityStore
    from tests.integration.test_up import wait_for_line
    from tests.support import processes

    given = os.environ.get("QSCHED_SDK_TEST_ADDRESS")
    if given:
        yield UpStack(given)
        return
    tmp = tmp_path_factory.mktemp("qsched-up")
    addresses = {s: f"127.0.0.1:{processes.free_port()}" for s in SERVICES}
    flags = [arg for s in SERVICES for arg in (f"--{s}-address", addresses[s])]
    log = tmp / "up.log"
    (tmp / "data").mkdir()  # up opens its identity database there before anything creates it
    wanted = up_environment(tmp / "config")  # up provisions its own users, not the session's
    with pytest.MonkeyPatch.context() as env:  # processes.start passes on this process's environment
        for name in set(os.environ) - set(wanted):
            env.delenv(name)
        for name, value in wanted.items():
            env.setenv(name, value)
        up = processes.start(["up", *flags, "--data-dir", str(tmp / "data")], log)
    store = None
    try:
        wait_for_line(log, "qsched is up", up)  # every service SERVING and the main hardware_config seeded
        url = sqlite_url_for(tmp / "data")
        store = IdentityStore(make_engine(url))
        yield UpStack(addresses["scheduler"], TestIdentity(url, tmp, store))
    finally:
        processes.stop(up)
        if store is not None:
            store.close()


@pytest.fixture
def on_stack(qsched_up, monkeypatch, tmp_path) -> UpStack:
    """The `qsched up` stack as the SDK finds it by default: QSCHED_ADDRESS, the seed examples'
    person's token, and a data cache of this test's own."""
    monkeypatch.setenv("QSCHED_ADDRESS", qsched_up.address)
    monkeypatch.setenv("QSCHED_TOKEN", qsched_up.token_for(PERSON))
    monkeypatch.setenv("QSCHED_CACHE_DIR", str(tmp_path / "cache"))
    return qsched_up
