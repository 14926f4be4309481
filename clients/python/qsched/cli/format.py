"""Plain-text rendering of jobs for the terminal."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from qsched.api.executor.v1 import executor_pb2 as executor_pb
from qsched.api.jobs.v1 import jobs_pb2 as pb


def state_name(state: int) -> str:
    return pb.Job.State.Name(state).removeprefix("STATE_").lower()


def when(ts) -> str:  # google.protobuf.Timestamp
    if not ts.seconds and not ts.nanos:
        return "-"
    return ts.ToDatetime().replace(microsecond=0).isoformat(sep=" ")


def what(job: pb.Job) -> str:
    which = job.payload.WhichOneof("payload")
    if which == "lab_experiment":
        return job.payload.lab_experiment.experiment_class
    if which == "circuit":
        count = len(job.payload.circuit.qasm) or len(job.payload.circuit.qpy)
        return f"{count} circuit(s)" if count else "circuits"  # lists leave the circuits out
    return which or "-"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def held_note(device) -> str:
    """ "paused" / "draining" (with the operator's reason) for a device whose queue is held, else ""."""
    states = {pb.DEVICE_QUEUE_STATE_PAUSED: "paused", pb.DEVICE_QUEUE_STATE_DRAINING: "draining"}
    word = states.get(device.queue_state, "")
    if word and device.hold_reason:
        word += f": {device.hold_reason}"
    return word


def reserved_note(device) -> str:
    """What the device's open calendar window or session lets start, and until when ("" if none):
    e.g. "exclusive window RES-... for dave until 2026-12-07 22:00:00: only their jobs start"."""
    if device.HasField("current_reservation"):
        r = device.current_reservation
        kind = pb.Reservation.Kind.Name(r.kind).removeprefix("KIND_").lower()
        who = f" for {', '.join(r.holders)}" if r.kind == pb.Reservation.KIND_EXCLUSIVE else ""
        starts = {
            pb.Reservation.KIND_EXCLUSIVE: "only their jobs start",
            pb.Reservation.KIND_CALIBRATION: "only calibration jobs start",
        }.get(r.kind, "nothing starts")
        return f"{kind} window {r.reservation_id}{who} until {when(r.end_time)}: {starts}"
    if device.HasField("current_session"):
        s = device.current_session
        until = s.open_time.ToDatetime() + s.max_length.ToTimedelta()
        return (
            f"{s.owner}'s session {s.session_id} (at most until {until.replace(microsecond=0)}):"
            " only its jobs start"
        )
    return ""


def _estimated_start(job: pb.Job, held: Mapping[str, str]) -> str:
    if job.device in held:  # nothing starts on a held device, whatever the estimate says
        return "held (" + held[job.device].split(":")[0] + ")"
    return when(job.estimated_start_time)


def job_rows(jobs: list[pb.Job], queue: bool, held: Mapping[str, str] | None = None) -> str:
    """Jobs as a table; `held` maps held devices to held_note() (queued jobs there show "held")."""
    held = held or {}
    if queue:
        header = ["POS", "JOB", "STATE", "PRIO", "OWNER", "DEVICE", "WHAT", "EST. START"]
        rows = [
            [
                str(j.queue_position) if j.queue_position else "run",
                j.job_id,
                state_name(j.state),
                str(j.priority),
                j.owner,
                j.device,
                what(j),
                _estimated_start(j, held) if j.queue_position else when(j.start_time),
            ]
            for j in jobs
        ]
    else:
        header = ["JOB", "STATE", "PRIO", "OWNER", "DEVICE", "WHAT", "SUBMITTED", "ENDED"]
        rows = [
            [
                j.job_id,
                state_name(j.state),
                str(j.priority),
                j.owner,
                j.device,
                what(j),
                when(j.create_time),
                when(j.end_time),
            ]
            for j in jobs
        ]
    return table(rows, header)


def job_detail(job: pb.Job) -> str:
    lines = [
        f"job        {job.job_id}",
        f"state      {state_name(job.state)}" + (" (cancel requested)" if job.cancel_requested else ""),
        f"owner      {job.owner}",
        f"device     {job.device}",
        f"priority   {job.priority}",
        f"what       {what(job)}",
        f"submitted  {when(job.create_time)}",
    ]
    if job.task_id and not (job.HasField("current_run") and job.current_run.task_id == job.task_id):
        lines.append(f"task       {job.task_id} (its next run's)")
    if job.queue_position:
        lines.append(f"position   {job.queue_position} (estimated start {when(job.estimated_start_time)})")
    if job.HasField("waiting_reason") and job.waiting_reason.summary:  # e.g. a stale calibration
        lines.append(f"waiting    {job.waiting_reason.summary} ({job.waiting_reason.policy})")
    if job.HasField("start_time"):
        lines.append(f"started    {when(job.start_time)}")
    if job.HasField("end_time"):
        lines.append(f"ended      {when(job.end_time)}")
    if job.HasField("current_run"):
        run = job.current_run
        lines.append(f"run        #{run.attempt} task {run.task_id} progress {run.progress:.0%}")
        if run.data_file_path:
            lines.append(f"data       {run.data_file_path}")
        for key, value in sorted(run.summary.items()):
            lines.append(f"  {key} = {value:g}")
    lines += code_lines(job)
    if job.HasField("error"):
        lines.append(f"error      {job.error.reason}: {job.error.message}")
    return "\n".join(lines)


def _source(package) -> str:  # executor.v1.PackageSource
    text = " ".join(part for part in (package.name, package.version) if part) or "?"
    return text + (f" @ {package.commit[:12]}" if package.commit else "")


def _lab(payload: pb.JobPayload):
    return payload.lab_experiment if payload.WhichOneof("payload") == "lab_experiment" else None


def code_lines(job: pb.Job) -> list[str]:
    """The code of a lab job: the repository commit pinned at submit, and what the current run
    ran with (qsched, qick, the experiment's package) once the executor reported it."""
    lines = []
    lab = _lab(job.payload)
    if lab is not None and lab.experiment_commit:
        named = lab.experiment_revision or "HEAD"
        dirty = "; the tree had uncommitted changes, not in it" if lab.experiment_tree_dirty else ""
        lines.append(f"commit     {lab.experiment_commit[:12]} ({named} at submit{dirty})")
    run = job.current_run if job.HasField("current_run") else None
    if run is not None and run.HasField("code"):
        code = run.code
        qsched = _source(code.qsched) + (" with uncommitted changes" if code.qsched.dirty else "")
        lines.append(f"code       {qsched}, qick {code.qick_version or '?'}")
        if code.HasField("experiment"):
            origin = executor_pb.CodeOrigin.Name(code.experiment_origin).removeprefix("CODE_ORIGIN_").lower()
            notes = [origin]
            if code.experiment_revision:
                notes.append(f"revision {code.experiment_revision}")
            if code.experiment.dirty:
                notes.append(
                    "the tree had uncommitted changes, not run"
                    if code.experiment_origin == executor_pb.CODE_ORIGIN_REPOSITORY
                    else "with uncommitted changes"
                )
            lines.append(f"experiment {_source(code.experiment)} ({', '.join(notes)})")
    return lines


def run_code(run) -> str:
    """A run's experiment commit, short: as the executor reported it, else as pinned."""
    if run.HasField("code") and run.code.experiment.commit:
        return run.code.experiment.commit[:12] + ("*" if run.code.experiment.dirty else "")
    lab = _lab(run.payload)
    return lab.experiment_commit[:12] if lab is not None and lab.experiment_commit else "-"


def _stamp(event: pb.JobEvent) -> str:
    return (
        event.time.ToDatetime().strftime("%H:%M:%S.%f")[:-3]
        if event.time.seconds
        else datetime.now().strftime("%H:%M:%S")
    )


def event_line(event: pb.JobEvent) -> str:
    """One line per event; a log event is its log lines instead (log_lines)."""
    if event.HasField("log"):
        return "\n".join(log_lines(event))
    return f"{_stamp(event)}  #{event.seq:<4} {state_name(event.state):<10} {event.message}"


def log_lines(event: pb.JobEvent) -> list[str]:
    """The lines a run wrote, as `qsched watch` and `qsched logs` print them: "HH:MM:SS.mmm | line"."""
    stamp = _stamp(event)
    return [f"{stamp}  | {line}" for line in event.log.lines]


def run_rows(runs) -> str:
    header = ["#", "TASK", "STATE", "STARTED", "ENDED", "DATA", "CODE", "SETTINGS"]
    rows = []
    for run in runs:
        settings = "-"
        if run.payload.WhichOneof("payload") == "lab_experiment":
            settings = run.payload.lab_experiment.expt_config_json
            settings = settings if len(settings) <= 40 else settings[:37] + "..."
        rows.append(
            [
                str(run.attempt),
                run.task_id,
                state_name(run.state),
                when(run.start_time),
                when(run.end_time),
                run.data_file_path or "-",
                run_code(run),
                settings,
            ]
        )
    return table(rows, header) if rows else "no runs"


def queue_view(device: str, jobs: list, owner: str = "", held: str = "") -> str:
    """The live queue: running first, then queued jobs in run order (priority, then age); `held`
    (held_note) flags a paused or draining device, whose queued jobs start when it is resumed."""
    running = [j for j in jobs if j.state == pb.Job.STATE_RUNNING]
    queued = sorted(
        (j for j in jobs if j.state == pb.Job.STATE_QUEUED),
        key=lambda j: (-j.priority, j.create_time.seconds, j.create_time.nanos, j.job_id),
    )
    rows = []
    for j in running:
        progress = f"{j.current_run.progress:.0%}" if j.HasField("current_run") else "-"
        rows.append(
            ["run", j.job_id, "running", str(j.priority), j.owner, what(j), progress, when(j.start_time)]
        )
    for position, j in enumerate(queued, start=1):
        start = "held" if held else when(j.estimated_start_time)
        rows.append([str(position), j.job_id, "queued", str(j.priority), j.owner, what(j), "-", start])
    if owner:
        rows = [r for r in rows if r[4] == owner]
    stamp = datetime.now().strftime("%H:%M:%S")
    flag = f"  [HELD, {held}: nothing new starts]" if held else ""
    head = f"{device}: {len(running)} running, {len(queued)} queued{flag}  ({stamp})"
    if not rows:
        return head + "\nthe queue is empty"
    return head + "\n" + table(rows, ["POS", "JOB", "STATE", "PRIO", "OWNER", "WHAT", "DONE", "START"])
