"""`qsched up`: the four services, and the web view, as separate processes on one machine.

Policy: children start together; `up` waits until every one reports SERVING on
grpc.health.v1, then prints where they listen. A child that exits on its own is
reported and restarted after 1 s, 2 s, 4 s ... (at most 30 s); a service that
dies 5 times within 5 minutes is given up on and the whole stack stops with
exit status 1. Ctrl+C or SIGTERM stops every child (SIGTERM, then SIGKILL after
10 s). Children get SIGTERM if `up` itself dies."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from qsched.credentials import find_token, tls_from_env, token_file
from qsched.wire import sync_channel
from qsched_core.config import SERVICES
from qsched_ops.args import config_from_args, forward_args

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 10.0
MAX_RESTARTS = 5
RESTART_WINDOW_S = 300.0
MAX_BACKOFF_S = 30.0
# Start order: the scheduler last, so its executor is up when it dispatches.
START_ORDER = ("executor", "configs", "gateway", "scheduler")
INSTANCE_HEADER = "X-Qsched-Instance"  # qsched_web sends its --instance value back


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    service: str
    argv: list[str]
    address: str
    process: subprocess.Popen[bytes] | None = None
    deaths: deque[float] = field(default_factory=deque)
    restart_at: float = 0.0
    http: bool = False  # the web view: ready when its login page answers, not on grpc.health

    def shown(self) -> str:
        return f"http://{self.address}" if self.http else self.address

    env: dict[str, str] | None = None  # None: this process's environment

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv, start_new_session=True, preexec_fn=_die_with_parent, env=self.env
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def wait_serving(address: str, deadline: float) -> bool:
    with sync_channel(address, "", tls_from_env()) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                response = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    return False


def wait_http(address: str, deadline: float, instance: str, child: Child) -> bool:
    """Until the web view answers on `address` as this child (its instance header): another
    process already on that port does not count."""
    import urllib.error
    import urllib.request

    while time.monotonic() < deadline and child.alive():
        try:
            with urllib.request.urlopen(f"http://{address}/login", timeout=1.0) as response:
                if response.headers.get(INSTANCE_HEADER) == instance:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return False


def register_calibrations_type(address: str, token: str = "") -> bool:
    """Register the `calibrations` config type (the scheduler's calibration definitions,
    docs/calibration.md) if it is not there yet; True when it was added."""
    from qsched.api.configs.v1 import configs_pb2 as pb
    from qsched.api.configs.v1 import configs_pb2_grpc as pb_grpc

    config_type = pb.ConfigType(
        name="calibrations",
        abbreviation="CA",
        description="Calibration definitions the scheduler runs (YAML)",
    )
    with sync_channel(address, find_token(token), tls_from_env()) as channel:
        stub = pb_grpc.ConfigServiceStub(channel)
        request = pb.RegisterConfigTypeRequest(config_type=config_type)
        return stub.RegisterConfigType(request, timeout=10).created


class Supervisor:
    def __init__(self, args: argparse.Namespace, forward: list[str]):
        configs = {service: config_from_args(service, args) for service in SERVICES}
        self.children = [
            Child(
                service,
                [sys.executable, "-m", "qsched_ops.serve", service, *forward],
                configs[service].listen,
            )
            for service in START_ORDER
        ]
        self.web_instance = ""
        if web_available() and not getattr(args, "no_web", False):
            # A client of the scheduler like any other (docs/web.md): the viewer's token, not a service's.
            cache = configs["scheduler"].data_dir / "web-cache"
            self.web_instance = secrets.token_hex(8)
            web = [sys.executable, "-m", "qsched_web.server", "--web-address", args.web_address]
            web += ["--scheduler-address", configs["scheduler"].listen, "--cache-dir", str(cache)]
            web += ["--instance", self.web_instance]
            self.children.append(Child("web", web, args.web_address, http=True))
        self.stopping = False
        self.hardware_config = getattr(args, "hardware_config", None)
        self.config = configs["scheduler"]
        self.person_token = ""

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        try:
            self._provision()
        except (OSError, ValueError) as exc:
            print(f"qsched up: could not provision users and tokens: {exc}", file=sys.stderr)
            return 1
        # The scheduler only once the config service is SERVING: that one seeds the first main
        # hardware_config before it reports SERVING, so once the scheduler is SERVING a lab job
        # submitted at once can pin one. The others start meanwhile (their imports take longest).
        deadline = time.monotonic() + READY_TIMEOUT_S
        configs = next(c for c in self.children if c.service == "configs")
        configs.env = self._seeding_environment()
        scheduler = [c for c in self.children if c.service == "scheduler"]
        for starting, awaited in (
            ([c for c in self.children if c.service != "scheduler"], [configs]),
            (scheduler, [c for c in self.children if c is not configs]),
        ):
            for child in starting:
                child.start()
            for child in awaited:
                if self.stopping:
                    return self.stop(0)
                if child.http:
                    if not wait_http(child.address, deadline, self.web_instance, child):
                        self._drop_web(child, "did not start")
                    continue
                if not wait_serving(child.address, deadline):
                    print(
                        f"qsched up: {child.service} did not become SERVING on {child.address}",
                        file=sys.stderr,
                    )
                    return self.stop(1)
        self._register_calibrations()
        print("qsched is up:", flush=True)
        for child in sorted(self.children, key=lambda c: (*SERVICES, "web").index(c.service)):
            print(f"  {child.service:<10} {child.shown()}", flush=True)
        print("Press Ctrl+C to stop.", flush=True)
        return self.stop(self._watch())

    def _drop_web(self, child: Child, what: str) -> None:
        """The web view is a convenience: the services run on without it."""
        print(
            f"qsched up: the web view {what} on {child.address} (port taken? try --web-address); "
            "running without it",
            file=sys.stderr,
            flush=True,
        )
        if child.alive():
            assert child.process is not None
            child.process.terminate()
        self.children.remove(child)

    def _provision(self) -> None:
        """Users and tokens before any service starts: the services authenticate every call."""
        from qsched_identity.db import database_url
        from qsched_ops.provision import provision

        url = database_url(self.config.identity_database_url, self.config.data_dir)
        report = provision(url, self.config.data_dir, token_file())
        for name in report.created:
            print(f"Created the qsched user {name}.", flush=True)
        if report.person_token_file is not None:
            self.person_token = report.person_token_file.read_text().strip()
            if report.person in report.issued:
                print(f"Your token is in {report.person_token_file} (readable by you only).", flush=True)
        for note in report.notes:
            print(f"qsched up: {note}", file=sys.stderr, flush=True)

    def _seeding_environment(self) -> dict[str, str]:
        """A fresh stack has no main hardware_config, and every lab run pins one: the config
        service pushes the executor's hardware config as the first main at start (once; later
        pushes are the lab's)."""
        env = dict(os.environ)
        try:
            from qsched_hardware.hwconfig import DEFAULT_HARDWARE_CONFIG
        except ImportError:  # no qick extra: nothing to seed from
            return env
        env["QSCHED_SEED_HARDWARE_CONFIG"] = str(Path(self.hardware_config or DEFAULT_HARDWARE_CONFIG))
        return env

    def _register_calibrations(self) -> None:
        """The `calibrations` config type (docs/calibration.md), once the config service serves."""
        address = next(c.address for c in self.children if c.service == "configs")
        try:
            register_calibrations_type(address, self.person_token)
        except grpc.RpcError as exc:  # e.g. a site type took the name or CA: calibration stays off
            print(f"qsched up: could not register the calibrations config type: {exc}", file=sys.stderr)

    def _watch(self) -> int:
        while not self.stopping:
            now = time.monotonic()
            for child in self.children:
                if child.alive() or self.stopping:
                    continue
                if child.restart_at == 0.0:  # just noticed the death
                    code = child.process.returncode if child.process else None
                    child.deaths.append(now)
                    while child.deaths and now - child.deaths[0] > RESTART_WINDOW_S:
                        child.deaths.popleft()
                    if len(child.deaths) >= MAX_RESTARTS and child.http:
                        self._drop_web(child, f"died {len(child.deaths)} times")
                        break
                    if len(child.deaths) >= MAX_RESTARTS:
                        print(
                            f"qsched up: {child.service} died {len(child.deaths)} times in "
                            f"{RESTART_WINDOW_S:.0f}s; stopping the stack",
                            file=sys.stderr,
                        )
                        return 1
                    backoff = min(MAX_BACKOFF_S, 2.0 ** (len(child.deaths) - 1))
                    print(
                        f"qsched up: {child.service} exited with status {code}; restarting in {backoff:.0f}s",
                        file=sys.stderr,
                        flush=True,
                    )
                    child.restart_at = now + backoff
                elif now >= child.restart_at:
                    child.restart_at = 0.0
                    child.start()
            time.sleep(0.2)
        return 0

    def stop(self, status: int) -> int:
        # The scheduler first, so it stops dispatching before the executor goes away.
        for child in reversed(self.children):
            if child.alive():
                assert child.process is not None
                child.process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in reversed(self.children):
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"qsched up: {child.service} did not stop; killing it", file=sys.stderr)
                child.process.kill()
                child.process.wait()
        print("qsched stopped.", flush=True)
        return status


def web_available() -> bool:
    """The web view needs the `web` extra (aiohttp); without it `up` runs the services alone."""
    import importlib.util

    return importlib.util.find_spec("aiohttp") is not None


def up(args: argparse.Namespace) -> int:
    return Supervisor(args, forward_args(args)).run()
