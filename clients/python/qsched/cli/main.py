"""`qsched`: submit and follow lab jobs, look at queues, get data and plots, run the stack.

Lab verbs (thin over the SDK, `qsched.client.JobClient`):

    qsched submit --experiment MODULE.CLASS --config '{...}' [--wait]
    qsched wait JOB           qsched show JOB          qsched cancel JOB
    qsched queue [--follow]   qsched history [--user U --status S --limit N]
    qsched data JOB [-o FILE] qsched plot JOB -o FILE.png
    qsched rerun JOB          qsched delete JOB        qsched devices

metriq-gym verbs for provider devices (`qsched.cli.job_commands`, `qsched.cli.suite_commands`):

    qsched job dispatch|estimate CONFIG -p PROVIDER -d DEVICE
    qsched job poll [JOB|latest] [--json FILE] [--no-cache] [--include-raw]
    qsched job replay DEBUG_FILE   qsched job view [JOB]   qsched job delete [JOB]
    qsched job upload [JOB]        qsched suite dispatch|estimate|poll|view|delete|upload

`qsched job submit|show|watch|wait|cancel|rerun` are kept as aliases of the lab verbs; `qsched job view`
and `qsched job delete` work for every kind of job (delete cancels an active job first). The server verbs
(up, serve, db, admin init) are not defined here: `qsched_ops` adds them through the
`qsched.cli_commands` entry point group (`qsched.cli.plugins`), looked up only when one is asked for,
so the client commands stay quick and work with only the base install. Exit status: 0 success;
1 the job did not succeed (wait); 2 the request failed (the reason is printed); 130 interrupted."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc

from qsched import connection
from qsched.errors import QschedError


def _client(args: argparse.Namespace):
    """The SDK's JobClient, for the verbs that submit, wait or move data."""
    from qsched.client import JobClient

    return JobClient(args.address, timeout=args.timeout)


def _calls(args: argparse.Namespace):
    """JobService calls without JobClient and the stub classes: what the everyday look-ups need
    (start-up time: `qsched queue` and `qsched show` import no more than this)."""
    from qsched.calls import Calls

    address = connection.scheduler_address(args.address)
    return Calls(connection.channel(address), "JobService", _pb(), address, args.timeout)


def _stub(calls):
    """The JobService stub on the same channel, for the streaming calls."""
    from qsched.api.jobs.v1 import jobs_pb2_grpc

    return jobs_pb2_grpc.JobServiceStub(calls.channel)


def _pb():
    from qsched.api.jobs.v1 import jobs_pb2

    return jobs_pb2


def _get_job(calls, job_id: str):
    """The job by its job id or by a task id (which a job has from submit on)."""
    from qsched import _common as c

    return calls("GetJob", _pb().GetJobRequest(**c.job_ref(job_id))).job


def _job_id(args: argparse.Namespace, ident: str) -> str:
    """A JOB_ID argument as a job id: a task id is looked up."""
    from qsched import _common as c

    return _get_job(_calls(args), ident).job_id if c.is_task_id(ident) else ident


# -- lab commands ----------------------------------------------------------------------------------------
def _experiment(args: argparse.Namespace) -> tuple[str, str]:
    if args.experiment:
        module, _, cls = args.experiment.rpartition(".")
        if not module:
            raise ValueError("--experiment must be MODULE.CLASS, e.g. qsched_hardware.experiments.T1")
        return module, cls
    if not (args.experiment_class and args.experiment_module):
        raise ValueError("give --experiment MODULE.CLASS (or --class and --module)")
    return args.experiment_module, args.experiment_class


def _calendar_labels(args: argparse.Namespace) -> dict[str, str]:
    """The labels the scheduler's calendar reads (docs/scheduling.md)."""
    labels = {"reservation": args.reservation} if getattr(args, "reservation", None) else {}
    if getattr(args, "session", None):
        labels["session"] = args.session
    if getattr(args, "calibration", False):
        labels["calibration"] = "true"
    return labels


def cmd_submit(args: argparse.Namespace) -> int:
    from qsched.cli.format import state_name, when

    module, cls = _experiment(args)
    config_text = Path(args.config_file).read_text() if args.config_file else args.config or "{}"
    import json

    config = json.loads(config_text)  # fail here, with the JSON error, rather than at the server
    if not isinstance(config, dict):
        raise ValueError("the experiment config must be a JSON object")
    client = _client(args)
    job_id = client.submit_job(
        cls,
        module,
        config,
        args.owner or connection.default_owner(),
        args.priority,
        device=args.device or None,
        request_id=args.request_id,
        labels=_calendar_labels(args),
        experiment_revision=args.revision,
        yield_at_safe_points=getattr(args, "yield_at_safe_points", False),
    )
    job = client.get_job(job_id)
    where = f"at position {job.queue_position}" if job.queue_position else f"({state_name(job.state)})"
    print(f"{job_id} queued on {job.device} {where}, estimated start {when(job.estimated_start_time)}")
    if args.watch:  # everything after "queued": a fast job has started (and logged) already
        return _watch(args, job_id, after_seq=1)
    if args.wait:
        return _wait(client, job_id, None)
    return 0


def _wait(client, job_id: str, timeout: float | None) -> int:
    result = client.wait_for_completion(job_id, timeout=timeout)
    if result.is_successful():
        line = f"{job_id}: completed"
        if result.data_file_path:
            line += f", data in {result.data_file_path}"
        print(line)
        for key, value in sorted(result.summary.items()):
            print(f"  {key} = {value:g}")
        return 0
    print(f"{job_id}: {result.status}" + (f" ({result.error_message})" if result.error_message else ""))
    return 1


def cmd_wait(args: argparse.Namespace) -> int:
    return _wait(_client(args), _job_id(args, args.job_id), args.wait_timeout)


def cmd_show(args: argparse.Namespace) -> int:
    from qsched.cli.format import job_detail, run_rows

    calls = _calls(args)
    if args.job_id == "latest":  # as `job poll latest`: the caller's newest job, of any kind
        from qsched.cli.job_commands import resolve_job_id

        args.job_id = resolve_job_id(args, _client(args), "any")
    job = _get_job(calls, args.job_id)
    print(job_detail(job))
    _show_log_tail(calls, job)
    if args.runs:
        print()
        print(
            run_rows(
                calls("ListRuns", _pb().ListRunsRequest(job_id=job.job_id, job_view=_pb().JOB_VIEW_FULL)).runs
            )
        )
    return 0


def _show_log_tail(calls, job, last: int = 5) -> None:
    """The last lines its current run wrote (lab jobs), and how to see them all."""
    from qsched.errors import QschedError

    pb = _pb()
    run = job.current_run if job.HasField("current_run") else None
    if job.kind != pb.JOB_KIND_LAB_EXPERIMENT or run is None or not run.task_id:
        return
    try:
        events = calls("GetJobLog", pb.GetJobLogRequest(job_id=job.job_id, task_id=run.task_id)).events
    except QschedError:  # an older scheduler without GetJobLog: nothing to add
        return
    lines = [line for event in events for line in event.log.lines]
    if lines:
        print(f"\nlog ({min(last, len(lines))} of {len(lines)} lines; all: qsched logs {job.job_id}):")
        for line in lines[-last:]:
            print(f"  | {line}")


def cmd_cancel(args: argparse.Namespace) -> int:
    answer = _client(args).cancel_job(args.job_id, args.reason)
    suffix = " (the executor is stopping it)" if answer["cancel_requested"] else ""
    print(f"{answer['job_id']}: {answer['status']}{suffix}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    _client(args).delete_job(args.job_id)
    print(f"{args.job_id} deleted (its data files are kept)")
    return 0


def cmd_rerun(args: argparse.Namespace) -> int:
    import json

    client = _client(args)
    config = json.loads(args.config) if args.config else None
    job_id = client.rerun_job(args.job_id, config, experiment_revision=args.revision)
    print(f"{job_id} queued again")
    if args.wait:
        return _wait(client, job_id, None)
    return 0


def _watch(args: argparse.Namespace, job_id: str, only_logs: bool = False, after_seq: int = 0) -> int:
    """Print the job's events (a log event as its log lines) until it ends."""
    from qsched.cli.format import event_line, log_lines, state_name
    from qsched.follow import follow

    calls = _calls(args)
    pb = _pb()
    last_state = pb.Job.STATE_UNSPECIFIED
    for update in follow(_stub(calls), calls.channel, job_id, after_seq=after_seq, address=calls.address):
        if update.event is None:
            job = update.job
            if not only_logs:
                print(f"{job.job_id}: {state_name(job.state)} (seq {job.last_seq})")
        elif update.event.HasField("log"):
            for line in log_lines(update.event):
                print(line, flush=True)
        elif not only_logs:
            print(event_line(update.event), flush=True)
        last_state = update.state
    return 0 if last_state == pb.Job.STATE_SUCCEEDED else 1


def _positive_limit(args: argparse.Namespace) -> None:
    if args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")


def cmd_watch(args: argparse.Namespace) -> int:
    return _watch(args, _job_id(args, args.job_id))


def cmd_logs(args: argparse.Namespace) -> int:
    from qsched.cli.format import log_lines

    calls = _calls(args)
    job_id = _job_id(args, args.job_id)
    response = calls("GetJobLog", _pb().GetJobLogRequest(job_id=job_id, task_id=args.task or ""))
    for event in response.events:
        for line in log_lines(event):
            print(line)
    if args.follow:  # then new lines until the job ends (the replay after the last printed one)
        last = max((e.seq for e in response.events), default=1)
        return _watch(args, response.job_id or job_id, only_logs=True, after_seq=last)
    if not response.events:
        print(f"{response.job_id or job_id}: no log lines")
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    from qsched import _common as c
    from qsched.cli.format import job_rows, reserved_note

    _positive_limit(args)
    if args.follow:
        return _follow_queue(args)
    calls = _calls(args)
    jobs = c.list_jobs(
        calls, _pb().LIST_VIEW_QUEUE, [], args.owner or "", args.device or "", args.limit, full=False
    )
    devices, held = _held_devices(calls) if jobs else ([], {})
    print(job_rows(jobs, queue=True, held=held) if jobs else "the queue is empty")
    for name, note in sorted(held.items()):  # say why those jobs wait
        if any(j.device == name for j in jobs):
            print(f"{name} is held ({note}): its queued jobs start when an operator resumes it")
    for device in devices:  # a calendar window or a session decides what starts there now
        note = reserved_note(device)
        if note and device.name not in held and any(j.device == device.name for j in jobs):
            print(f"{device.name} is reserved: {note}")
    return 0


HELD_REFRESH_S = 5.0


def _held_devices(calls) -> tuple[list, dict[str, str]]:
    """The scheduler's devices, and held_note() of each paused or draining one."""
    from qsched.cli.format import held_note

    devices = list(calls("ListDevices", _pb().ListDevicesRequest()).devices)
    return devices, {d.name: held_note(d) for d in devices if held_note(d)}


def _follow_queue(args: argparse.Namespace) -> int:
    """A live view over WatchQueue, redrawn on every change: of --device, else of every device with
    queued or running work (else the default device), each flagged when its queue is held."""
    import queue as queues
    import threading
    import time

    from qsched.cli.format import queue_view

    calls = _calls(args)
    pb = _pb()
    devices, held = _held_devices(calls)
    held_at = time.monotonic()
    if args.device:
        names = [args.device]
    else:
        names = [d.name for d in devices if d.queued or d.running_job_id]
        if not names:
            default = connection.default_device()
            known = [d.name for d in devices]
            names = [default if default in known else (known[0] if known else default)]
    updates: queues.Queue = queues.Queue()

    def pump(name: str, stream) -> None:  # one thread per device: the sync stubs block
        try:
            for message in stream:
                updates.put((name, message))
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                updates.put((name, error))

    def follow(name: str) -> None:
        streams[name] = _stub(calls).WatchQueue(pb.WatchQueueRequest(device=name))
        jobs.setdefault(name, {})
        threading.Thread(target=pump, args=(name, streams[name]), daemon=True).start()

    streams: dict[str, object] = {}
    jobs: dict[str, dict[str, object]] = {}
    for name in names:
        follow(name)
    tty = sys.stdout.isatty()
    shown = 0
    try:
        while True:
            try:
                name, message = updates.get(timeout=HELD_REFRESH_S)
            except queues.Empty:
                name, message = "", None
            if isinstance(message, grpc.RpcError):
                raise QschedError.from_rpc_error(message)
            if time.monotonic() - held_at >= HELD_REFRESH_S:  # paused, resumed or busy meanwhile
                before = dict(held)
                devices, held = _held_devices(calls)
                held_at = time.monotonic()
                for device in devices if not args.device else []:
                    if (device.queued or device.running_job_id) and device.name not in streams:
                        names.append(device.name)
                        follow(device.name)  # its snapshot redraws the view
                if message is None and held == before:
                    continue
            if message is None:
                pass
            elif message.HasField("snapshot"):
                jobs[name] = {j.job_id: j for j in message.snapshot.jobs}
            else:
                job = message.change.job
                if job.state in (pb.Job.STATE_QUEUED, pb.Job.STATE_RUNNING):
                    jobs[name][job.job_id] = job
                else:
                    jobs[name].pop(job.job_id, None)
            text = "\n\n".join(
                queue_view(n, list(jobs[n].values()), args.owner or "", held.get(n, "")) for n in names
            )
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J" + text + "\n(Ctrl+C to stop)\n")
            else:
                sys.stdout.write(text + "\n\n")
            sys.stdout.flush()
            shown += 1
            if args.count and shown >= args.count:
                break
    finally:
        for stream in streams.values():
            stream.cancel()
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from qsched import _common as c
    from qsched.cli.format import job_rows

    _positive_limit(args)
    pb = _pb()
    states = []
    if args.status:
        if args.status not in c.SEED_STATUS_TO_PB:
            valid = sorted(c.SEED_STATUS_TO_PB)
            raise ValueError(f"unknown status {args.status!r} (one of {', '.join(valid)})")
        states = [c.SEED_STATUS_TO_PB[args.status]]
    jobs = c.list_jobs(
        _calls(args), pb.LIST_VIEW_HISTORY, states, args.user or "", args.device or "", args.limit, full=False
    )
    print(job_rows(jobs, queue=False) if jobs else "no jobs")
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from qsched.cli.format import table

    response = _calls(args)("ListDevices", _pb().ListDevicesRequest())
    rows = [
        [
            d.name,
            str(d.queued),
            d.running_job_id or "-",
            f"{d.typical_run_duration.ToTimedelta().total_seconds():g}s",
        ]
        for d in response.devices
    ]
    print(table(rows, ["DEVICE", "QUEUED", "RUNNING", "TYPICAL RUN"]))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.output:
        path = client.download(args.job_id, args.output, args.task)
    else:
        path = client.data_path(args.job_id, args.task)
    print(path)
    if args.list:
        from qsched import data

        run = data.read(path)
        for name, array in run.arrays.items():
            print(f"  {name:<20} {array.dtype}{list(array.shape)}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from qsched.cli.plot import plot_run

    client = _client(args)
    job = client.get_job(args.job_id)
    which = job.payload.WhichOneof("payload")
    if which in ("benchmark", "circuit"):  # provider runs have results, never a data file to plot
        raise ValueError(
            f"{args.job_id} is a {which} job: it has results, not a data file to plot; "
            f"see them with `qsched job poll {args.job_id}` (--json FILE writes them out)"
        )
    run = client.load_data(args.job_id, args.task)
    out = plot_run(run, args.output, title=f"{args.job_id} {_what(job)}")
    print(out)
    return 0


def _what(job) -> str:
    from qsched.cli.format import what

    return what(job)


# -- parser ----------------------------------------------------------------------------------------------
class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, told the terminal width: its own look-up imports shutil (and through it
    bz2 and lzma) on every parser built, a tenth of `qsched queue`'s start-up."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width=None):
        if width is None:
            try:
                width = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size().columns
            except (ValueError, OSError):
                width = 80
            width -= 2
        super().__init__(prog, indent_increment, max_help_position, width)


class _Parser(argparse.ArgumentParser):
    """Every parser and subparser of the CLI (add_subparsers makes them of the parent's class)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


def _add_client_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument(
        "--address", help=f"scheduler address (env QSCHED_ADDRESS, default {connection.DEFAULT_ADDRESS})"
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an answer")
    return p


def _add_job_commands(sub: argparse._SubParsersAction, aliases: bool = False) -> None:
    def client(name: str, help_text: str) -> argparse.ArgumentParser:
        return _add_client_options(sub.add_parser(name, help=help_text))

    p = client("submit", "queue a lab experiment")
    p.add_argument(
        "--experiment", help="MODULE.CLASS, e.g. qsched_hardware.experiments.AmplitudeRabiExperiment"
    )
    p.add_argument("--class", dest="experiment_class", help="experiment class name (with --module)")
    p.add_argument("--module", dest="experiment_module", help="module holding the class")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--config", help="expt_config as a JSON object")
    group.add_argument("--config-file", help="file holding the expt_config JSON object")
    p.add_argument("--device", help=f"target device (env QSCHED_DEVICE, default {connection.DEFAULT_DEVICE})")
    p.add_argument("--priority", type=int, default=0, help="higher runs sooner (-100..100, default 0)")
    p.add_argument("--owner", help="submitting user (default: your login name)")
    p.add_argument("--request-id", help="idempotency key: resubmitting with it returns the first job")
    p.add_argument("--reservation", help="run inside this reservation (waits until it opens)")
    p.add_argument("--session", help="join this session of yours (qsched session open)")
    p.add_argument(
        "--calibration", action="store_true", help="a calibration job (may run in calibration windows)"
    )
    p.add_argument(
        "--revision",
        help="branch, tag or commit of the device's experiment repository (default: its HEAD at submit)",
    )
    p.add_argument(
        "--yield-at-safe-points",
        action="store_true",
        help="may yield between averaging rounds to a due calibration or higher-priority job, where "
        "the device allows it, and continue later from the rounds done (docs/calibration.md)",
    )
    p.add_argument("--wait", action="store_true", help="wait for the job with a progress bar")
    p.add_argument(
        "--watch", action="store_true", help="print the job's events and its log lines until it ends"
    )
    p.set_defaults(func=cmd_submit)

    p = client("wait", "wait for a job to finish, with a progress bar (exit 1 unless it succeeded)")
    p.add_argument("job_id", help="job id, or a task id")
    p.add_argument("--wait-timeout", type=float, help="give up after this many seconds")
    p.set_defaults(func=cmd_wait)

    p = client("show", "one job: state, run, data file, results")
    p.add_argument("job_id", help="job id, a task id, or 'latest' (your newest job)")
    p.add_argument("--runs", action="store_true", help="also list every run of the job")
    p.set_defaults(func=cmd_show)

    p = client("watch", "print a job's events (and the log lines its runs write) until it ends")
    p.add_argument("job_id", help="job id, or a task id")
    p.set_defaults(func=cmd_watch)

    p = client("logs", "print the log lines a job's runs wrote (kept with the runs)")
    p.add_argument("job_id", help="job id, or a task id")
    p.add_argument("--task", help="only this run's lines (its task id)")
    p.add_argument("-f", "--follow", action="store_true", help="then print new lines until the job ends")
    p.set_defaults(func=cmd_logs)

    p = client("cancel", "cancel a queued or running job")
    p.add_argument("job_id", help="job id, or a task id (the job's, which it has from submit)")
    p.add_argument("--reason", default="", help="why (kept in the job's events)")
    p.set_defaults(func=cmd_cancel)

    if not aliases:  # `qsched job delete` is the metriq-gym verb (job_commands): it cancels first
        p = client("delete", "forget a finished job (data files stay)")
        p.add_argument("job_id")
        p.set_defaults(func=cmd_delete)

    p = client("rerun", "queue a finished job again (a new run; earlier runs stay in its history)")
    p.add_argument("job_id")
    p.add_argument("--config", help="a new expt_config (JSON object) for the new run")
    p.add_argument(
        "--revision", help="run this experiment-repository revision instead of the commit the job pinned"
    )
    p.add_argument("--wait", action="store_true", help="wait for the new run")
    p.set_defaults(func=cmd_rerun)


# The commands defined in this module besides the lab verbs: with one of them (or a lab verb)
# on the command line, the parser leaves out the other modules' commands (start-up time).
_LOCAL_COMMANDS = frozenset({"queue", "history", "devices", "data", "plot"})


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `command` one of this module's own commands, only those
    (the metriq-gym, config, admin and server commands import more modules)."""
    parser = _Parser(prog="qsched", description="Share quantum devices: a durable job queue over gRPC.")
    sub = parser.add_subparsers(dest="command", required=True)

    def client(name: str, help_text: str) -> argparse.ArgumentParser:
        return _add_client_options(sub.add_parser(name, help=help_text))

    _add_job_commands(sub)
    local_only = command is not None and (command in sub.choices or command in _LOCAL_COMMANDS)
    if not local_only:
        job = sub.add_parser(
            "job",
            help="metriq-gym job verbs (dispatch, estimate, poll, replay, view, delete, upload) "
            "and the lab verbs again (submit, show, watch, wait, cancel, rerun)",
        )
        job_sub = job.add_subparsers(dest="job_command", required=True)
        _add_job_commands(job_sub, aliases=True)
        from qsched.cli import job_commands, suite_commands

        job_commands.register(job_sub, _add_client_options)
        suite_commands.register(sub, _add_client_options)
        from qsched.cli import calendar_commands

        calendar_commands.register(sub, _add_client_options)

    p = client("queue", "queued and running jobs in run order")
    p.add_argument("--device", help="only this device")
    p.add_argument("--owner", "--user", dest="owner", help="only this user's jobs")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--follow", "-f", action="store_true", help="live view: redraw on every change")
    p.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)  # stop after N redraws
    p.set_defaults(func=cmd_queue)

    p = client("history", "recent jobs, newest first")
    p.add_argument("--device", help="only this device")
    p.add_argument("--user", "--owner", dest="user", help="only this user's jobs")
    p.add_argument("--status", "--state", dest="status", help="pending|running|completed|failed|cancelled")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_history)

    p = client("devices", "devices and their queues")
    p.set_defaults(func=cmd_devices)

    p = client("data", "a run's HDF5 file: print its local path, or copy it with -o")
    p.add_argument("job_id")
    p.add_argument("-o", "--output", help="file or directory to copy the data file to")
    p.add_argument("--task", help="the run's task id (default: the latest run)")
    p.add_argument("--list", action="store_true", help="also list the datasets (needs h5py)")
    p.set_defaults(func=cmd_data)

    p = client("plot", "plot a run's data (with the fit, when the file has one) to an image")
    p.add_argument("job_id")
    p.add_argument("-o", "--output", required=True, help="image file, e.g. rabi.png")
    p.add_argument("--task", help="the run's task id (default: the latest run)")
    p.set_defaults(func=cmd_plot)
    if local_only:
        return parser

    try:
        from qsched.cli.config_commands import register as register_config_commands
    except ImportError:
        register_config_commands = None
    if register_config_commands is not None:
        register_config_commands(sub)

    from qsched.cli import admin_commands, calibration_commands, plugins

    calibration_commands.register(sub, _add_client_options)
    groups = {"admin": admin_commands.register(sub, _add_client_options)}
    if command is None or command not in sub.choices or command in groups:
        plugins.register(sub, groups, command)
    return parser


def _report(err: QschedError, args: argparse.Namespace) -> None:
    if err.code == grpc.StatusCode.UNAVAILABLE:
        address = connection.scheduler_address(getattr(args, "address", None))
        print(
            f"qsched: cannot reach the scheduler at {address} "
            "(is the stack running? start it with `qsched up` or `make run`)",
            file=sys.stderr,
        )
    else:
        print(f"qsched: {err}", file=sys.stderr)


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named on the command line (None for none, or for `--help` alone)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_command_of(argv)).parse_args(argv)
    try:
        return args.func(args)
    except QschedError as error:
        _report(error, args)
        return 2
    except grpc.RpcError as error:
        _report(QschedError.from_rpc_error(error), args)
        return 2
    except KeyboardInterrupt:
        return 130
    except TimeoutError as error:
        print(f"qsched: {error}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as error:  # json.JSONDecodeError is a ValueError
        print(f"qsched: {error}", file=sys.stderr)
        return 2
    except ImportError as error:
        print(f"qsched: {error.name or error} is not installed: pip install 'qsched[plot]'", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
