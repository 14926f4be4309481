"""`qsched calibrations` and `qsched show` on a waiting job: what people see of calibration
(the JobService answers are faked; the scheduler side is tested in tests/scheduler and tests/stack)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from google.protobuf import timestamp_pb2

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.cli import calibration_commands
from qsched.cli.format import job_detail


def ts(when: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when)
    return out


def test_calibrations_lists_state_last_run_fresh_until_and_failures(monkeypatch, capsys):
    now = datetime.now(UTC)
    answer = pb.ListCalibrationsResponse(
        calibrations=[
            pb.Calibration(
                device="qick", name="rabi", status=pb.CALIBRATION_STATUS_FRESH, job_id="JOB-20261207-00002",
                last_run_time=ts(now - timedelta(minutes=3)), fresh_until=ts(now + timedelta(hours=1)),
                revision_id="CFG-HW-20261207-00003", values={"pi_gain": 0.4371},
            ),
            pb.Calibration(
                device="qick", name="single_shot", status=pb.CALIBRATION_STATUS_FAILED, failures=2,
                last_error="acceptance check failed: fidelity = 0.71 outside [0.8, 1]",
            ),
        ],
        definitions_revision_id="CFG-CA-20261207-00001",
    )  # fmt: skip
    asked = []

    def calls(method, request):
        asked.append((method, request))
        return answer

    monkeypatch.setattr(calibration_commands, "_calls", lambda args: (calls, pb))
    assert calibration_commands.cmd_calibrations(argparse.Namespace(device="qick")) == 0
    out = capsys.readouterr().out
    assert asked == [("ListCalibrations", pb.ListCalibrationsRequest(device="qick"))]
    rabi = next(line for line in out.splitlines() if " rabi " in line)
    assert "FRESH" in rabi and "(3m ago)" in rabi and "(in 60m)" in rabi and "pi_gain=0.4371" in rabi
    failed = next(line for line in out.splitlines() if "single_shot" in line)
    assert "FAILED" in failed and " 2 " in failed and "fidelity = 0.71 outside" in failed
    assert "definitions: CFG-CA-20261207-00001" in out


def test_show_says_why_a_job_waits():
    job = pb.Job(
        job_id="JOB-20261207-00007",
        state=pb.Job.STATE_QUEUED,
        queue_position=1,
        waiting_reason=pb.RunReason(
            policy="calibration-freshness", summary="waits for calibration rabi on qick: never calibrated"
        ),
    )
    assert "waiting    waits for calibration rabi on qick: never calibrated (calibration-freshness)" in (
        job_detail(job)
    )
