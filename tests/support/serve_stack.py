"""A stack of four `qsched serve` processes (as an operator runs them, one per service, one data
directory), each of which a test may kill -9 and start again on the same port."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import processes

SERVICES = ("configs", "executor", "gateway", "scheduler")  # start order: peers first


@dataclass
class ServeStack:
    root: Path  # logs here
    data_dir: Path | None = None  # default root/data
    extra: dict[str, list[str]] = field(default_factory=dict)  # more flags per service
    ports: dict[str, int] = field(default_factory=dict)
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    kills: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ports = {s: processes.free_port() for s in SERVICES}
        self.data_dir = self.data_dir or self.root / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def address(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def log(self, service: str) -> Path:
        return self.root / f"{service}.log"

    def _args(self, service: str) -> list[str]:
        addresses = [arg for s in SERVICES for arg in (f"--{s}-address", self.address(s))]
        args = ["serve", service, *addresses, "--data-dir", str(self.data_dir)]
        if service == "scheduler":
            args += ["--lab-device", f"qick={self.address('executor')}", "--max-queued-per-user", "100000"]
        return [*args, *self.extra.get(service, [])]

    def start(self, service: str) -> None:
        """Start `service` and wait for it to serve (blocking: from async code, in a thread)."""
        env = None
        if service == "configs":  # it seeds the first main hardware_config, as under `qsched up`
            from qsched_hardware.hwconfig import DEFAULT_HARDWARE_CONFIG

            env = {**os.environ, "QSCHED_SEED_HARDWARE_CONFIG": str(DEFAULT_HARDWARE_CONFIG)}
        self.running[service] = processes.start(self._args(service), self.log(service), env)
        if not processes.serving(self.address(service), timeout=90):
            raise AssertionError(f"{service} did not serve:\n{self.log(service).read_text()[-3000:]}")

    def start_all(self) -> None:
        for service in SERVICES:
            self.start(service)

    def kill(self, service: str) -> None:
        """kill -9: no chance to flush, close or say goodbye."""
        processes.stop(self.running.pop(service), signal.SIGKILL)
        self.kills[service] = self.kills.get(service, 0) + 1

    def stop_all(self) -> None:
        for service in reversed(SERVICES):
            process = self.running.pop(service, None)
            if process is not None:
                processes.stop(process)
