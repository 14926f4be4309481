"""The benchmark harness in its quick mode (what CI runs so the harness never rots).

Asserts only that every scenario ran to completion with 0 errors. No timing is asserted: the
figures of a quick run on a shared 2-core machine mean nothing (bench/README.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scenarios import SCENARIOS

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.postgres]  # replica_watch runs on PostgreSQL


@pytest.mark.timeout(240)
def test_quick_mode_completes_every_scenario_without_errors(tmp_path: Path) -> None:
    output = tmp_path / "quick.json"
    env = {**os.environ, "GRPC_VERBOSITY": "ERROR"}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(output)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert output.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(output.read_text())
    assert results["quick"] is True
    assert set(results["scenarios"]) == set(SCENARIOS)
    problems = {
        name: block.get("error_samples")
        for name, block in results["scenarios"].items()
        if not block.get("completed") or block.get("errors") != 0
    }
    assert not problems, problems
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
