"""Scheduler replicas as a department runs them (docs/deployment.md, docker/compose.yaml): the
config service and the gateway, one `qsched serve executor` per (simulated) board, each with its
own data directory, and any number of `qsched serve scheduler` replicas on one PostgreSQL
database, each naming every board with `--lab-device`. Any process may be killed -9 and started
again on its port. The bench's `replicas` scenario uses it too."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import processes


@dataclass
class ReplicaStack:
    root: Path
    database_url: str  # the schedulers' database (PostgreSQL: replicas; SQLite: one scheduler)
    replicas: int = 3
    boards: int = 2
    ports: dict[str, int] = field(default_factory=dict)
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = ["configs", "gateway", *self.executors, *self.schedulers]
        self.ports = {name: processes.free_port() for name in names}
        (self.root / "shared").mkdir(parents=True, exist_ok=True)

    @property
    def executors(self) -> list[str]:
        return [f"executor{i + 1}" for i in range(self.boards)]

    @property
    def schedulers(self) -> list[str]:
        return [f"scheduler{i + 1}" for i in range(self.replicas)]

    @property
    def devices(self) -> list[str]:
        return [f"qick{i + 1}" for i in range(self.boards)]

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def data_dir(self, name: str) -> Path:
        """Each executor keeps its own (its board's data files and journal); the other services
        share one (the schedulers' page-token key is in it: replicas must share that key)."""
        return self.root / name if name.startswith("executor") else self.root / "shared"

    def args(self, name: str) -> list[str]:
        service = name.rstrip("0123456789")
        args = ["serve", service, f"--{service}-address", self.address(name)]
        args += ["--configs-address", self.address("configs"), "--gateway-address", self.address("gateway")]
        args += ["--data-dir", str(self.data_dir(name))]
        if service == "scheduler":
            args += ["--database-url", self.database_url, "--max-queued-per-user", "100000"]
            for device, executor in zip(self.devices, self.executors, strict=True):
                args += ["--lab-device", f"{device}={self.address(executor)}"]
        return args

    def start(self, name: str) -> None:
        """Start one process and wait until it serves (blocking)."""
        env = None
        if name == "configs":  # it seeds the first main hardware_config, as under `qsched up`
            import os

            from qsched_hardware.hwconfig import DEFAULT_HARDWARE_CONFIG

            env = {**os.environ, "QSCHED_SEED_HARDWARE_CONFIG": str(DEFAULT_HARDWARE_CONFIG)}
        self.running[name] = processes.start(self.args(name), self.log(name), env)
        if not processes.serving(self.address(name), timeout=120):
            raise AssertionError(f"{name} did not serve:\n{self.log(name).read_text()[-3000:]}")

    def start_all(self, without: tuple[str, ...] = ()) -> None:
        """Every process but those named in `without` (e.g. an executor whose host is down)."""
        for name in ["configs", "gateway", *self.executors]:
            if name not in without:
                self.start(name)
        # The replicas start together (their migrations take the database's lock).
        launched = {}
        for name in self.schedulers:
            launched[name] = processes.start(self.args(name), self.log(name))
        self.running.update(launched)
        for name in self.schedulers:
            if not processes.serving(self.address(name), timeout=120):
                raise AssertionError(f"{name} did not serve:\n{self.log(name).read_text()[-3000:]}")

    def pid(self, name: str) -> int:
        return self.running[name].pid

    def by_pid(self, pid: int) -> str:
        return next(name for name, process in self.running.items() if process.pid == pid)

    def kill(self, name: str) -> float:
        """kill -9; the time.monotonic() it was sent."""
        process = self.running.pop(name)
        sent = time.monotonic()
        processes.stop(process, signal.SIGKILL)
        return sent

    def stop_all(self) -> None:
        for name in reversed(list(self.running)):
            processes.stop(self.running.pop(name))


def lease_holders(database_url: str) -> dict[str, tuple[int, int, float]]:
    """device -> (holder pid, epoch, seconds until it expires), read from device_leases."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT device, holder, epoch, expires_at - EXTRACT(EPOCH FROM clock_timestamp())"
            " FROM device_leases"
        ).fetchall()
    return {
        device: (int(holder.rsplit(":", 2)[1]), int(epoch), float(left))
        for device, holder, epoch, left in rows
    }
