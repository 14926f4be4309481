"""`qsched calibrations` (each calibration's state, last run, fresh until, failures) and
`qsched calibrate NAME` (run it now, its stale dependencies first; calibrator role). See
docs/calibration.md."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime

AddOptions = Callable[[argparse.ArgumentParser], argparse.ArgumentParser]


def _calls(args: argparse.Namespace):
    from qsched import connection
    from qsched.api.jobs.v1 import jobs_pb2
    from qsched.calls import Calls

    address = connection.scheduler_address(args.address)
    return Calls(connection.channel(address), "JobService", jobs_pb2, address, args.timeout), jobs_pb2


def _when(ts, now: datetime) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    t = ts.ToDatetime(tzinfo=UTC)
    delta = (t - now).total_seconds()
    ago = f"in {_span(delta)}" if delta > 0 else f"{_span(-delta)} ago"
    return f"{t:%Y-%m-%d %H:%M:%S} ({ago})"


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def cmd_calibrations(args: argparse.Namespace) -> int:
    from qsched.cli.format import table

    calls, pb = _calls(args)
    response = calls("ListCalibrations", pb.ListCalibrationsRequest(device=args.device or ""))
    now = datetime.now(UTC)
    rows = []
    for c in response.calibrations:
        status = pb.CalibrationStatus.Name(c.status).removeprefix("CALIBRATION_STATUS_")
        values = " ".join(f"{k}={v:.6g}" for k, v in sorted(c.values.items()))
        rows.append(
            [
                c.device,
                c.name,
                status,
                c.job_id or "-",
                _when(c.last_run_time, now),
                _when(c.fresh_until, now),
                str(c.failures),
                c.revision_id or "-",
                (c.last_error or values or "-"),
            ]
        )
    if not rows:
        print("no calibrations defined (push a `calibrations` config: see docs/calibration.md)")
        return 0
    header = ["DEVICE", "NAME", "STATUS", "JOB", "LAST RUN", "FRESH UNTIL", "FAILS", "PUSHED"]
    print(table(rows, [*header, "VALUES / ERROR"]))
    print(f"definitions: {response.definitions_revision_id}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    calls, pb = _calls(args)
    response = calls("RunCalibration", pb.RunCalibrationRequest(device=args.device, name=args.name))
    if response.queued:
        print(f"queued on {args.device}: {' -> '.join(response.queued)}")
    else:
        print(f"{args.name} is already queued or running on {args.device}")
    return 0


def register(sub: argparse._SubParsersAction, add_client_options: AddOptions) -> None:
    p = add_client_options(sub.add_parser("calibrations", help="calibrations: state, last run, fresh until"))
    p.add_argument("--device", help="only this device")
    p.set_defaults(func=cmd_calibrations)
    p = add_client_options(
        sub.add_parser("calibrate", help="run a calibration now, stale dependencies first (calibrator)")
    )
    p.add_argument("name", help="the calibration's name in the definitions")
    p.add_argument("--device", default="qick", help="the lab device (default: qick)")
    p.set_defaults(func=cmd_calibrate)
