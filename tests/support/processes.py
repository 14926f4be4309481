"""Starting qsched processes for tests and waiting until they serve."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
QSCHED = [sys.executable, "-m", "qsched.cli.main"]


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serving(address: str, timeout: float = 30.0) -> bool:
    """Whether grpc.health.v1 says SERVING within `timeout` (callers assert it, adding the log)."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            eventually(
                lambda: stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status,
                until=lambda status: status == health_pb2.HealthCheckResponse.SERVING,
                timeout=timeout,
                interval=0.05,
                ignoring=(grpc.RpcError,),
            )
        except AssertionError:
            return False
    return True


def wait_for_line(log: Path, text: str, process: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    """Until `text` is in the process's log; fails at once, with the log, if the process exits."""

    def printed() -> bool:
        content = log.read_text()
        assert text in content or process.poll() is None, content
        return text in content

    try:
        eventually(printed, timeout=timeout, interval=0.1, what=f"{text!r} in {log}")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{log.read_text()}") from None


def start(args: list[str], log: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`env` replaces this process's environment (e.g. identity.up_environment for `qsched up`)."""
    env = {**(os.environ if env is None else env), "GRPC_VERBOSITY": "ERROR", "PYTHONUNBUFFERED": "1"}
    handle = log.open("ab")
    return subprocess.Popen([*QSCHED, *args], stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
