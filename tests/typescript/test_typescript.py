"""The TypeScript client (clients/typescript) and the web view in a browser, run with node's own
test runner against the session's one `qsched up` stack (the web view included): each node test
file gets the stack's addresses and tokens of people on it through the environment."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest

from qsched_core.principal import Role
from tests.support import processes

pytestmark = pytest.mark.slow
TS = processes.REPO / "clients" / "typescript"


def test_typescript_client_and_web_view(qsched_up, tmp_path):
    if qsched_up.identity is None:
        pytest.skip("needs a stack this session started (tokens of several people)")
    assert shutil.which("node") and shutil.which("npm"), "Node.js and npm are needed (make test)"
    # The Makefile builds it before the tests; this makes `pytest tests/typescript` work alone.
    build = subprocess.run(["make", "-s", "ts"], cwd=processes.REPO, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    env = {
        **os.environ,
        "QSCHED_ADDRESS": qsched_up.address,
        "QSCHED_WEB_URL": qsched_up.web_url,
        "QSCHED_TEST_USER_TOKEN": qsched_up.identity.token_for("ts-user"),
        "QSCHED_TEST_OTHER_TOKEN": qsched_up.identity.token_for("ts-other"),
        "QSCHED_TEST_OPERATOR_TOKEN": qsched_up.identity.token_for("ts-operator", (Role.OPERATOR,)),
        "QSCHED_TEST_ARTIFACTS": str(tmp_path),
        "QSCHED_TEST_CHROMIUM": shutil.which("chromium") or "/usr/bin/chromium",
    }
    for name in ("QSCHED_TOKEN", "QSCHED_TOKEN_FILE", "QSCHED_CONFIG_DIR"):
        env.pop(name, None)  # each test names the token it uses
    started = time.monotonic()
    run = subprocess.run(
        ["node", "--test", "--test-concurrency=1", "--test-reporter=spec", "dist/test/"],
        cwd=TS,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = run.stdout + run.stderr
    (tmp_path / "node-test.log").write_text(output)
    print(output)
    print(f"node --test took {time.monotonic() - started:.1f} s; screenshots in {tmp_path}")
    assert run.returncode == 0, output
    passed = re.search(r"pass (\d+)", output)
    assert passed and int(passed.group(1)) >= 9, output  # every test file ran
