"""`qsched up` as a user runs it: four processes, health, reflection, the CLI,
a crashed child restarted, and a clean stop."""

from __future__ import annotations

import getpass
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import grpc
import psutil
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from qsched_core.config import SERVICES
from tests.support import processes
from tests.support.identity import up_environment

pytestmark = pytest.mark.slow


def cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*processes.QSCHED, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=processes.REPO,
        env=env,
        check=False,
    )


def service_names(address: str, token: str) -> set[str]:
    """Reflection is open by default (a token is accepted all the same). It is a bidi-streaming
    call, which the SDK's channel does not decorate: the metadata is explicit."""
    with grpc.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
            metadata=[("authorization", f"Bearer {token}")],
        )
        return {s.name for r in responses for s in r.list_services_response.service}


def test_up_serves_all_four_restarts_a_dead_child_and_stops_cleanly(tmp_path):
    addresses = {s: f"127.0.0.1:{processes.free_port()}" for s in SERVICES}
    flags = [arg for s in SERVICES for arg in (f"--{s}-address", addresses[s])]
    web = f"127.0.0.1:{processes.free_port()}"
    flags += ["--web-address", web]
    log = tmp_path / "up.log"
    # up provisions its own installation: the OS user is its first person, with every role,
    # and their token goes to the config dir of this environment (not the session's).
    env = up_environment(tmp_path / "config")
    me = getpass.getuser()
    up = processes.start(["up", *flags, "--data-dir", str(tmp_path / "data")], log, env)
    try:
        processes.wait_for_line(log, "qsched is up", up)
        assert f"Created the qsched user {me}." in log.read_text()
        token_file = Path(env["QSCHED_CONFIG_DIR"]) / "token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        for service in SERVICES:
            assert processes.serving(addresses[service], timeout=5), service
            assert addresses[service] in log.read_text()
        assert "qsched.jobs.v1.JobService" in service_names(addresses["scheduler"], token)
        assert "qsched.configs.v1.ConfigService" in service_names(addresses["configs"], token)
        assert "qsched.gateway.v1.ProviderGatewayService" in service_names(addresses["gateway"], token)
        assert "qsched.executor.v1.HardwareExecutorService" in service_names(addresses["executor"], token)
        # The web view on its own port, in the table.
        assert f"  web        http://{web}\n" in log.read_text()
        with urllib.request.urlopen(f"http://{web}/login", timeout=5) as page:
            assert page.status == 200 and b"Your qsched token" in page.read()
        # A fresh stack gets a first main hardware_config, so lab runs can pin one.
        assert "Seeded the main hardware_config (CFG-HW-" in log.read_text()

        submitted = cli(
            "submit", "--address", addresses["scheduler"],
            "--experiment", "qsched_hardware.experiments.AmplitudeRabiExperiment",
            "--config", '{"reps": 100}', env=env,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        job_id = submitted.stdout.split()[0]
        assert job_id.startswith("JOB-")
        # The owner is the authenticated user: the OS user who started the stack.
        view = cli("show", job_id, "--address", addresses["scheduler"], env=env)
        assert view.returncode == 0 and f"owner      {me}\n" in view.stdout, view.stdout + view.stderr
        alias = cli("job", "view", job_id, "--address", addresses["scheduler"], env=env)  # the old verbs stay
        assert alias.returncode == 0 and f"owner      {me}\n" in alias.stdout
        history = cli("history", "--address", addresses["scheduler"], env=env)
        assert job_id in history.stdout
        missing = cli("show", "JOB-20260101-00001", "--address", addresses["scheduler"], env=env)
        assert missing.returncode == 2 and "JOB_NOT_FOUND" in missing.stderr

        # A child that dies is reported and restarted.
        children = psutil.Process(up.pid).children()
        gateway = next(c for c in children if "gateway" in c.cmdline())
        gateway.kill()
        processes.wait_for_line(log, "gateway exited with status", up)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not processes.serving(addresses["gateway"], timeout=1):
            pass
        assert processes.serving(addresses["gateway"], timeout=5)
        assert up.poll() is None
    finally:
        children = psutil.Process(up.pid).children() if up.poll() is None else []
        code = processes.stop(up, signal.SIGTERM)
    assert code == 0, log.read_text()
    assert "qsched stopped." in log.read_text()
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive


def test_cli_says_when_the_scheduler_is_down():
    result = cli("queue", "--address", f"127.0.0.1:{processes.free_port()}", "--timeout", "2")
    assert result.returncode == 2
    assert "cannot reach the scheduler" in result.stderr


def test_cli_imports_no_server_code():
    heavy = ("sqlalchemy", "opentelemetry", "qiskit", "qick", "numpy")
    code = (
        "import sys, qsched.cli.main as m; m.build_parser(); "
        f"print(sorted(k for k in sys.modules if k.startswith({heavy!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_up_runs_the_services_without_the_web_view_when_its_port_is_taken(tmp_path):
    addresses = {s: f"127.0.0.1:{processes.free_port()}" for s in SERVICES}
    flags = [arg for s in SERVICES for arg in (f"--{s}-address", addresses[s])]
    log = tmp_path / "up.log"
    with socket.socket() as taken:  # someone else's server on the web view's port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        web = f"127.0.0.1:{taken.getsockname()[1]}"
        env = up_environment(tmp_path / "config")
        up = processes.start(
            ["up", *flags, "--web-address", web, "--data-dir", str(tmp_path / "data")], log, env
        )
        try:
            processes.wait_for_line(log, "qsched is up", up)
            text = log.read_text()
            assert f"the web view did not start on {web}" in text
            assert "  web  " not in text and f"  scheduler  {addresses['scheduler']}" in text
            assert processes.serving(addresses["scheduler"], timeout=5)
        finally:
            code = processes.stop(up, signal.SIGTERM)
    assert code == 0, log.read_text()


@pytest.mark.timeout(300)
def test_a_lab_job_submitted_on_the_first_serving_runs(tmp_path):
    """Readiness means the stack can run a job: SERVING on the scheduler comes after the config
    service seeded the first main hardware_config, so a job submitted at once pins it and runs."""
    from tests.support.waiting import eventually

    addresses = {s: f"127.0.0.1:{processes.free_port()}" for s in SERVICES}
    flags = [arg for s in SERVICES for arg in (f"--{s}-address", addresses[s])]
    log = tmp_path / "up.log"
    env = up_environment(tmp_path / "config")
    up = processes.start(["up", *flags, "--data-dir", str(tmp_path / "data")], log, env)
    try:
        assert processes.serving(addresses["scheduler"], timeout=120), log.read_text()
        submitted = cli(
            "submit", "--address", addresses["scheduler"],
            "--experiment", "qsched_hardware.experiments.AmplitudeRabiExperiment",
            "--config", '{"reps": 10}', env=env,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        job_id = submitted.stdout.split()[0]
        shown = eventually(
            lambda: cli("show", job_id, "--address", addresses["scheduler"], env=env).stdout,
            until=lambda out: "succeeded" in out or "failed" in out,
            timeout=120,
            interval=0.5,
            what=f"{job_id} finished",
        )
        assert "succeeded" in shown and "NO_MAIN_REVISION" not in shown, shown
    finally:
        code = processes.stop(up, signal.SIGTERM)
    assert code == 0, log.read_text()
