"""`qsched`: submit and follow jobs, look at queues, run the stack.

Server-side commands (up, serve, db) import the services lazily, so the client
commands stay quick and work with only the base install."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import grpc

from qsched import connection
from qsched.errors import QschedError

SERVER_EXTRA_HINT = "this command needs the server parts: pip install 'qsched[server]'"


def _jobs_stub(args: argparse.Namespace):
    from qsched.api.jobs.v1 import jobs_pb2_grpc

    return jobs_pb2_grpc.JobServiceStub(connection.channel(args.address))


def _pb():
    from qsched.api.jobs.v1 import jobs_pb2

    return jobs_pb2


# -- client commands -----------------------------------------------------------------------------------
def cmd_submit(args: argparse.Namespace) -> int:
    pb = _pb()
    config_text = Path(args.config_file).read_text() if args.config_file else args.config or "{}"
    json.loads(config_text)  # fail here, with the JSON error, rather than at the server
    request = pb.SubmitJobRequest(
        device=args.device,
        priority=args.priority,
        owner=args.owner or connection.default_owner(),
        request_id=args.request_id or "",
        payload=pb.JobPayload(
            lab_experiment=pb.LabExperiment(
                experiment_class=args.experiment_class,
                experiment_module=args.experiment_module,
                expt_config_json=config_text,
            )
        ),
    )
    response = _jobs_stub(args).SubmitJob(request, timeout=args.timeout)
    from qsched.cli.format import when

    print(
        f"{response.job.job_id} queued on {response.job.device} at position {response.queue_position}, "
        f"estimated start {when(response.estimated_start_time)}"
    )
    if args.watch:
        return _watch(args, response.job.job_id)
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    from qsched.cli.format import job_detail

    response = _jobs_stub(args).GetJob(_pb().GetJobRequest(job_id=args.job_id), timeout=args.timeout)
    print(job_detail(response.job))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from qsched.cli.format import state_name

    response = _jobs_stub(args).CancelJob(
        _pb().CancelJobRequest(job_id=args.job_id, reason=args.reason), timeout=args.timeout
    )
    job = response.job
    suffix = " (the executor is stopping it)" if job.cancel_requested else ""
    print(f"{job.job_id}: {state_name(job.state)}{suffix}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    _jobs_stub(args).DeleteJob(_pb().DeleteJobRequest(job_id=args.job_id), timeout=args.timeout)
    print(f"{args.job_id} deleted (its data files are kept)")
    return 0


def _watch(args: argparse.Namespace, job_id: str) -> int:
    from qsched.cli.format import event_line, state_name

    pb = _pb()
    last_state = pb.Job.STATE_UNSPECIFIED
    for message in _jobs_stub(args).WatchJob(pb.WatchJobRequest(job_id=job_id)):
        if message.HasField("snapshot"):
            job = message.snapshot
            last_state = job.state
            print(f"{job.job_id}: {state_name(job.state)} (seq {job.last_seq})")
        else:
            print(event_line(message.event))
            last_state = message.event.state
    return 0 if last_state == pb.Job.STATE_SUCCEEDED else 1


def cmd_watch(args: argparse.Namespace) -> int:
    return _watch(args, args.job_id)


def _list(args: argparse.Namespace, view: int, states: list[int], owner: str, limit: int) -> list:
    pb = _pb()
    stub = _jobs_stub(args)
    jobs: list = []
    token = ""
    while len(jobs) < limit:
        response = stub.ListJobs(
            pb.ListJobsRequest(
                view=view,
                states=states,
                owner=owner,
                device=args.device or "",
                page_size=min(limit - len(jobs), 1000),
                page_token=token,
            ),
            timeout=args.timeout,
        )
        jobs.extend(response.jobs)
        token = response.next_page_token
        if not token:
            break
    return jobs


def cmd_queue(args: argparse.Namespace) -> int:
    from qsched.cli.format import job_rows

    jobs = _list(args, _pb().LIST_VIEW_QUEUE, [], args.owner or "", args.limit)
    print(job_rows(jobs, queue=True) if jobs else "the queue is empty")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from qsched.cli.format import job_rows

    pb = _pb()
    states = [pb.Job.State.Value(f"STATE_{args.state.upper()}")] if args.state else []
    jobs = _list(args, pb.LIST_VIEW_HISTORY, states, args.owner or "", args.limit)
    print(job_rows(jobs, queue=False) if jobs else "no jobs")
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from qsched.cli.format import table

    response = _jobs_stub(args).ListDevices(_pb().ListDevicesRequest(), timeout=args.timeout)
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


# -- server commands -----------------------------------------------------------------------------------
def cmd_up(args: argparse.Namespace) -> int:
    from qsched_runtime.supervisor import up

    return up(args)


def cmd_serve(args: argparse.Namespace) -> int:
    from qsched_runtime.serve import serve

    return serve(args.service, args)


def cmd_db(args: argparse.Namespace) -> int:
    from qsched_runtime.args import config_from_args
    from qsched_scheduler import db
    from qsched_scheduler.server import database_url

    config = config_from_args("scheduler", args)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    url = database_url(config)
    if args.action == "upgrade":
        db.upgrade(url, args.revision or "head")
    elif args.action == "downgrade":
        db.downgrade(url, args.revision or "base")
    print(f"scheduler database at revision {db.current(url) or 'base (empty)'} (head {db.head()})")
    return 0


# -- parser ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qsched", description="Share quantum devices: a durable job queue over gRPC."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def client(name: str, help_text: str, parent=sub) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_text)
        p.add_argument(
            "--address", help=f"scheduler address (env QSCHED_ADDRESS, default {connection.DEFAULT_ADDRESS})"
        )
        p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an answer")
        return p

    job = sub.add_parser("job", help="submit, view, watch, cancel and delete jobs")
    job_sub = job.add_subparsers(dest="job_command", required=True)
    p = client("submit", "queue a lab experiment", job_sub)
    p.add_argument("--device", default="qick", help="target device (default qick)")
    p.add_argument("--class", dest="experiment_class", required=True, help="experiment class name")
    p.add_argument("--module", dest="experiment_module", required=True, help="module holding the class")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--config", help="expt_config as a JSON object")
    group.add_argument("--config-file", help="file holding the expt_config JSON object")
    p.add_argument("--priority", type=int, default=0, help="higher runs sooner (-100..100, default 0)")
    p.add_argument("--owner", help="submitting user (default: your login name)")
    p.add_argument("--request-id", help="idempotency key: resubmitting with it returns the first job")
    p.add_argument("--watch", action="store_true", help="follow the job until it ends")
    p.set_defaults(func=cmd_submit)
    for name, func, help_text in [
        ("view", cmd_view, "show one job"),
        ("watch", cmd_watch, "follow a job's events until it ends"),
        ("delete", cmd_delete, "forget a finished job (data files stay)"),
    ]:
        p = client(name, help_text, job_sub)
        p.add_argument("job_id")
        p.set_defaults(func=func)
    p = client("cancel", "cancel a queued or running job", job_sub)
    p.add_argument("job_id")
    p.add_argument("--reason", default="", help="why (kept in the job's events)")
    p.set_defaults(func=cmd_cancel)

    p = client("queue", "queued and running jobs in run order")
    p.add_argument("--device", help="only this device")
    p.add_argument("--owner", help="only this user's jobs")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_queue)
    p = client("history", "recent jobs, newest first")
    p.add_argument("--device", help="only this device")
    p.add_argument("--owner", help="only this user's jobs")
    p.add_argument("--state", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_history)
    p = client("devices", "devices and their queues")
    p.set_defaults(func=cmd_devices)

    try:
        from qsched_runtime.args import add_common_arguments
        from qsched_runtime.config import SERVICES
    except ImportError:  # base install: the client commands only
        return parser
    p = sub.add_parser("up", help="run the whole stack on this machine (Ctrl+C stops it)")
    add_common_arguments(p)
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("serve", help="run one service")
    p.add_argument("service", choices=SERVICES)
    add_common_arguments(p)
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("db", help="scheduler database migrations")
    p.add_argument("action", choices=["upgrade", "downgrade", "current"])
    p.add_argument("revision", nargs="?", help="target revision (default head / base)")
    add_common_arguments(p)
    p.set_defaults(func=cmd_db)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except grpc.RpcError as error:
        err = QschedError.from_rpc_error(error)
        if err.code == grpc.StatusCode.UNAVAILABLE:
            print(
                f"qsched: cannot reach the scheduler at {connection.scheduler_address(args.address)}",
                file=sys.stderr,
            )
            print("  is the stack running? start it with `make run` or `qsched up`", file=sys.stderr)
        else:
            print(f"qsched: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except (json.JSONDecodeError, OSError) as error:
        print(f"qsched: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
