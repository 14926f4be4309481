"""`qsched job ...`: metriq-gym's job verbs over the scheduler, for provider devices (and, for view and
delete, any job):

    qsched job dispatch wit.json -p local -d aer_simulator     # prints the job id
    qsched job estimate wit.json -p braket -d local_sv
    qsched job poll latest --json result.json --include-raw      # + result_debug.json
    qsched job poll JOB-20260101-00001 --no-cache
    qsched job replay result_debug.json
    qsched job view [JOB_ID]                                    # a table of jobs when omitted
    qsched job delete JOB_ID                                    # cancels it first if still active
    qsched job upload JOB_ID [--repo --base --dir --branch --title --body --commit-message
                              --clone-dir --dry-run]

JOB_ID may be `latest` (your newest job of the right kind). When it is omitted, poll, delete and upload
ask which one on a terminal and refuse (exit 2) without one. Exit status: 0 success (also for a job
still running: poll again later); 1 the job failed or was cancelled; 2 the request failed."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

KINDS = {"lab": 1, "circuit": 2, "benchmark": 3}
KIND_NAMES = {0: "-", 1: "lab", 2: "circuit", 3: "benchmark"}
UPLOAD_HELP = {
    "repo": "target GitHub repo OWNER/NAME (env MGYM_UPLOAD_REPO, default unitaryfoundation/metriq-data)",
    "base": "base branch of the pull request (env MGYM_UPLOAD_BASE_BRANCH, default main)",
    "dir": "directory in the repo for the file (env MGYM_UPLOAD_DIR, default "
    "qsched/v<major>.<minor>/<provider>/<device>)",
    "clone_dir": "working directory to clone into (env MGYM_UPLOAD_CLONE_DIR, default a temporary one)",
}


# -- shared helpers (suite_commands uses them too) ---------------------------------------------------------
def client(args: argparse.Namespace):
    from qsched.client import JobClient

    return JobClient(args.address, timeout=args.timeout)


def pb():
    from qsched.api.jobs.v1 import jobs_pb2

    return jobs_pb2


def is_suite_job(job) -> bool:
    return job.payload.WhichOneof("payload") == "benchmark" and bool(job.payload.benchmark.suite_json)


def _whoami(args) -> str:
    """The caller's user name ("latest" means the caller's latest job)."""
    from qsched.admin import AdminClient

    with AdminClient(getattr(args, "address", None)) as admin:
        return admin.whoami()["name"]


def _matches(job, want: str) -> bool:
    which = job.payload.WhichOneof("payload")
    if want == "suite":
        return is_suite_job(job)
    if want == "benchmark":
        return which == "benchmark" and not is_suite_job(job)
    if want == "provider":
        return which in ("benchmark", "circuit")
    return True


def resolve_job_id(args: argparse.Namespace, jc, want: str = "provider") -> str:
    """The JOB_ID argument: as given; `latest` = the caller's newest job of the wanted kind; omitted =
    a numbered choice on a terminal (an error without one: no prompt is ever left waiting)."""
    from qsched import connection

    job_id = getattr(args, "job_id", None)
    if job_id and job_id != "latest":
        return job_id
    kind = pb().JOB_KIND_BENCHMARK if want in ("benchmark", "suite") else pb().JOB_KIND_UNSPECIFIED
    owner = connection.default_owner() or _whoami(args)
    candidates = [j for j in jc.list_jobs(kind=kind, owner=owner, limit=200) if _matches(j, want)]
    noun = {"suite": "suite", "benchmark": "benchmark", "provider": "benchmark or circuit"}.get(want, "")
    if job_id == "latest":
        if not candidates:
            raise ValueError(f"no {noun} jobs of {owner} to choose 'latest' from".replace("  ", " "))
        return candidates[0].job_id
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise ValueError("no JOB_ID given: pass a job id or 'latest' (`qsched job view` lists the jobs)")
    if not candidates:
        raise ValueError(f"{owner} has no {noun} jobs".replace("  ", " "))
    from qsched.benchmarks import job_label
    from qsched.cli.format import state_name, when

    shown = candidates[:20]
    for number, job in enumerate(shown, start=1):
        print(
            f"{number:>3}. {job.job_id}  {job_label(job)}  {job.device}  {state_name(job.state)}  "
            f"{when(job.create_time)}"
        )
    answer = input(f"Select a job [1-{len(shown)}]: ").strip()
    if not answer.isdigit() or not 1 <= int(answer) <= len(shown):
        raise ValueError(f"no such choice: {answer!r}")
    return shown[int(answer) - 1].job_id


def _device(args: argparse.Namespace) -> str:
    from qsched.benchmarks import device_name

    return device_name(args.provider, args.device)


def _reporting(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Upload and replay failures as one line and exit status 2 (service errors go to main's handler)."""

    def run(args: argparse.Namespace) -> int:
        from qsched.benchmarks import ReplayError
        from qsched.upload import UploadError

        try:
            return fn(args)
        except UploadError as error:
            print(f"qsched: upload failed: {error}", file=sys.stderr)
            return 2
        except ReplayError as error:
            print(f"qsched: replay failed: {error}", file=sys.stderr)
            return 2

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


# -- dispatch, estimate --------------------------------------------------------------------------------------
def cmd_dispatch(args: argparse.Namespace) -> int:
    from qsched import benchmarks

    config, text = benchmarks.load_config(args.config)
    device = _device(args)
    job_id = client(args).dispatch_benchmark(
        text,
        device,
        owner=args.owner,
        priority=args.priority,
        request_id=args.request_id,
    )
    print(f"{job_id}: {config['benchmark_name']} dispatched to {device}")
    return 0


def print_estimate(estimate: dict[str, Any], what: str) -> None:
    from qsched.cli.format import table

    cost = f"{estimate['cost']:.2f} {estimate['cost_unit']}" if estimate["cost_unit"] else "n/a"
    if estimate["cost_basis"]:
        cost += f" ({estimate['cost_basis']})"
    summary = [
        ["Jobs", estimate["jobs"]],
        ["Circuits", estimate["circuits"]],
        ["Total shots", estimate["total_shots"]],
        ["Max qubits", estimate["max_qubits"]],
        ["Total 1q gates", estimate["total_one_qubit_gates"]],
        ["Total 2q gates", estimate["total_two_qubit_gates"]],
        ["Total 3+ qubit gates", estimate["total_multi_qubit_gates"]],
        ["Total measurements", estimate["total_measurements"]],
        ["Total resets", estimate["total_resets"]],
        ["Total HQCs", f"{estimate['total_hqc']:.2f}"],
        ["Cost", cost],
    ]
    print(f"Estimate for {what} on {estimate['device']}")
    print(table([[k, str(v)] for k, v in summary], ["", "TOTAL"]))
    rows = [
        [
            str(i),
            c["benchmark"] or "-",
            str(c["qubits"]),
            str(c["depth"]),
            str(c["one_qubit_gates"]),
            str(c["two_qubit_gates"]),
            str(c["multi_qubit_gates"]),
            str(c["measurements"]),
            str(c["resets"]),
            str(c["shots"]),
            f"{c['hqc']:.2f}",
        ]
        for i, c in enumerate(estimate["per_circuit"])
    ]
    if rows:
        print()
        header = ["#", "BENCHMARK", "QUBITS", "DEPTH", "1Q", "2Q", "3Q+", "MEAS", "RESETS", "SHOTS", "HQC"]
        print(table(rows, header))


def cmd_estimate(args: argparse.Namespace) -> int:
    from qsched import benchmarks

    config, _ = benchmarks.load_config(args.config)
    estimate = client(args).estimate(config, _device(args))
    print_estimate(estimate, config["benchmark_name"])
    if args.json:
        print(f"estimate written to {benchmarks.write_json(args.json, estimate)}")
    return 0


# -- poll ------------------------------------------------------------------------------------------------
def print_records(records: list[dict[str, Any]]) -> None:
    from qsched.benchmarks import result_rows
    from qsched.cli.format import table

    for record in records:
        platform = record.get("platform") or {}
        where = f"{platform.get('provider', '?')}/{platform.get('device', '?')}"
        entry = (record.get("suite") or {}).get("name")
        title = f"{record.get('job_type', '?')} on {where}" + (f" (suite {entry})" if entry else "")
        print(title)
        print(table(result_rows(record), ["METRIC", "VALUE"]))
        print()


def _print_counts(results) -> None:
    for task in results.tasks:
        print(f"{task.task_id}: {task.state}" + (f" ({task.message})" if task.message else ""))
        for index, counts in zip(task.circuit_indices, task.counts, strict=False):
            top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:8]
            more = "" if len(counts) <= 8 else f" ... ({len(counts)} outcomes)"
            print(f"  circuit {index}: " + ", ".join(f"{k}: {v}" for k, v in top) + more)


TASK_STATE_WORDS = {1: "QUEUED", 2: "RUNNING", 3: "COMPLETED", 4: "FAILED", 5: "CANCELLED"}


def task_status_lines(job) -> list[str]:
    """`- <task id>: <STATE> [<provider's word>] (position N) - <message>` per provider task of the
    job's active run, from the statuses the gateway last reported (GetJob's run.provider_tasks); tasks
    the scheduler has no status for yet show the run's state."""
    from qsched.cli.format import state_name

    if not job.HasField("current_run"):
        return []
    run = job.current_run
    known = {t.task_id: t for t in run.provider_tasks}
    lines = []
    for task_id in [*run.provider_task_ids, *(t for t in known if t not in run.provider_task_ids)]:
        status = known.get(task_id)
        if status is None:
            lines.append(f"- {task_id}: {state_name(run.state).upper()} (no provider status yet)")
            continue
        word = TASK_STATE_WORDS.get(status.state, "UNKNOWN")
        line = f"- {task_id}: {word}"
        if status.provider_status and status.provider_status.upper() != word:
            line += f" [{status.provider_status}]"
        if status.queue_position:
            line += f" (position {status.queue_position})"
        if status.message:
            line += f" - {status.message}"
        lines.append(line)
    return lines


def poll(args: argparse.Namespace, want: str) -> int:
    from qsched import _common as c
    from qsched import benchmarks
    from qsched.cli.format import state_name
    from qsched.errors import QschedError

    jc = client(args)
    job_id = resolve_job_id(args, jc, want)
    job = jc.get_job(job_id)
    if want == "suite" and not is_suite_job(job):
        raise ValueError(f"{job_id} is not a suite job (use `qsched job poll`)")
    if job.payload.WhichOneof("payload") == "lab_experiment":
        raise ValueError(
            f"{job_id} is a lab experiment: use `qsched show {job_id}` or `qsched data {job_id}`"
        )
    if not c.is_terminal(job.state):
        where = f" (position {job.queue_position} in the qsched queue)" if job.queue_position else ""
        print(f"{job_id} is not yet completed. Current status: {state_name(job.state)}{where}")
        lines = task_status_lines(job)
        if lines:
            print("Current status of tasks:")
            print("\n".join(lines))
        print("Please try again later.")
        return 0
    failed = job.state != pb().Job.STATE_SUCCEEDED
    results = None
    try:
        results = jc.get_result(job_id, refresh=args.no_cache)
    except QschedError as error:
        if not failed:
            raise
        reason = job.error.reason if job.HasField("error") else error.reason
        message = job.error.message if job.HasField("error") else error.message
        results = benchmarks.Results(job_id, "", [], benchmarks.failure_record(job, message, reason))
        if is_suite_job(job):
            results.benchmark = [results.benchmark]
    if failed:
        detail = (
            f"{job.error.reason}: {job.error.message}" if job.HasField("error") else state_name(job.state)
        )
        print(f"{job_id} {state_name(job.state)}. Provider reported: {detail}")
    if results.cached:
        print("[Cached result data]")
    if results.benchmark is not None:
        print_records(results.records)
    else:
        _print_counts(results)
    if args.json:
        path = benchmarks.write_json(args.json, results.export())
        print(f"results written to {path}")
    if args.include_raw:
        if not any(t.counts for t in results.tasks):
            print(
                "warning: no raw counts in these results (nothing to write to a debug file)", file=sys.stderr
            )
        else:
            target = benchmarks.debug_path(args.json) if args.json else f"{job_id}_debug.json"
            path = benchmarks.write_json(target, benchmarks.debug_document(job, results))
            print(f"raw counts written to {path}")
    return 1 if failed else 0


def cmd_poll(args: argparse.Namespace) -> int:
    return poll(args, "provider")


@_reporting
def cmd_replay(args: argparse.Namespace) -> int:
    from qsched import benchmarks

    document = benchmarks.load_debug(args.debug_file)
    exported = benchmarks.replay(document)
    print(f"[Replayed from {args.debug_file}, job {document.get('job_id', '?')}]")
    print_records(exported if isinstance(exported, list) else [exported])
    if args.json:
        print(f"results written to {benchmarks.write_json(args.json, exported)}")
    return 0


# -- view, delete --------------------------------------------------------------------------------------------
def benchmark_detail(job) -> list[str]:
    from qsched import benchmarks

    lines: list[str] = []
    kind, document = benchmarks.job_benchmark(job)
    document = document or {}
    if kind == "suite":
        entries = document.get("benchmarks") or []
        names = ", ".join(str(e.get("name", "?")) for e in entries if isinstance(e, dict))
        lines.append(f"suite      {document.get('name', '?')} ({len(entries)} entries: {names})")
    elif kind == "config":
        lines.append(f"benchmark  {document.get('benchmark_name', '?')}")
        params = {k: v for k, v in document.items() if k != "benchmark_name"}
        lines.append(f"params     {json.dumps(params, sort_keys=True)}")
    if job.HasField("current_run"):
        run = job.current_run
        if run.provider_submission_id:
            lines.append(f"submission {run.provider_submission_id}")
        for task_id in run.provider_task_ids:
            lines.append(f"task       {task_id}")
    return lines


def view(args: argparse.Namespace, want: str = "") -> int:
    from qsched.cli.format import job_detail, run_rows

    jc = client(args)
    if args.job_id:
        job_id = resolve_job_id(args, jc, want or "any") if args.job_id == "latest" else args.job_id
        job = jc.get_job(job_id)
        print(job_detail(job))
        extra = benchmark_detail(job)
        if extra:
            print("\n".join(extra))
        if getattr(args, "runs", False):
            print()
            print(
                run_rows(
                    jc.calls(
                        "ListRuns", pb().ListRunsRequest(job_id=job_id, job_view=pb().JOB_VIEW_FULL)
                    ).runs
                )
            )
        return 0
    kind = KINDS.get(getattr(args, "kind", None) or "", 0)
    if want == "suite":
        kind = KINDS["benchmark"]
    jobs = [
        j for j in jc.list_jobs(kind=kind, owner=args.owner, limit=args.limit) if _matches(j, want or "any")
    ]
    print(jobs_table(jobs) if jobs else "no jobs")
    return 0


def jobs_table(jobs: list) -> str:
    from qsched.benchmarks import job_label
    from qsched.cli.format import state_name, table, when

    rows = [
        [
            j.job_id,
            KIND_NAMES.get(j.kind, "-"),
            state_name(j.state),
            j.owner,
            j.device,
            job_label(j),
            when(j.create_time),
            when(j.end_time),
        ]
        for j in jobs
    ]
    return table(rows, ["JOB", "KIND", "STATE", "OWNER", "DEVICE", "WHAT", "SUBMITTED", "ENDED"])


def cmd_view(args: argparse.Namespace) -> int:
    return view(args)


def delete(args: argparse.Namespace, want: str = "any") -> int:
    jc = client(args)
    job_id = resolve_job_id(args, jc, want)
    if want == "suite" and not is_suite_job(jc.get_job(job_id)):
        raise ValueError(f"{job_id} is not a suite job (use `qsched job delete`)")
    outcome = jc.cancel_and_delete(job_id, wait_timeout=args.wait_timeout)
    if outcome["cancelled"]:
        print(f"{job_id}: cancelled (it was still active; provider tasks are cancelled too), then deleted")
    else:
        print(f"{job_id} deleted")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    return delete(args)


# -- upload ----------------------------------------------------------------------------------------------
def upload(args: argparse.Namespace, want: str) -> int:
    from qsched import _common as c
    from qsched import benchmarks
    from qsched.cli.format import state_name
    from qsched.errors import QschedError
    from qsched.upload import Upload, UploadOptions
    from qsched.upload import upload as do_upload
    from qsched_benchmarks.export import app_version

    jc = client(args)
    job_id = resolve_job_id(args, jc, want)
    job = jc.get_job(job_id)
    kind, document = benchmarks.job_benchmark(job)
    if not kind:
        raise ValueError(f"{job_id} is not a benchmark job: only metriq-gym benchmark results are uploaded")
    if want == "suite" and kind != "suite":
        raise ValueError(f"{job_id} is not a suite job (use `qsched job upload`)")
    if not c.is_terminal(job.state):
        raise ValueError(f"{job_id} is {state_name(job.state)}: poll it until it has finished, then upload")
    try:
        results = jc.get_result(job_id)
    except QschedError:
        if job.state == pb().Job.STATE_SUCCEEDED:
            raise
        results = benchmarks.Results(job_id, "", [], None)  # a failure record is uploaded
    records = benchmarks.upload_records(job, results)
    first = records[0]
    platform = first.get("platform") or {}
    provider, _, device = job.device.partition(":")
    suite = first.get("suite") or {}
    item = Upload(
        records=records,
        ref=(suite.get("id") or job_id) if kind == "suite" else job_id,
        label=(document or {}).get("name", "suite")
        if kind == "suite"
        else str(first.get("job_type") or "job"),
        provider=platform.get("provider") or provider,
        device=platform.get("device") or device,
        dispatch_time=c.to_datetime(job.create_time),
        version=str(first.get("app_version") or app_version()),
        suite=kind == "suite",
        job_id=job_id,
    )
    options = UploadOptions(
        repo=args.repo or "",
        base=args.base or "",
        directory=args.dir or "",
        branch=args.branch or "",
        title=args.title or "",
        body=args.body or "",
        commit_message=args.commit_message or "",
        clone_dir=args.clone_dir or "",
        dry_run=args.dry_run,
    )
    outcome = do_upload(item, options)
    if not outcome.dry_run:
        print(f"✓ pull request opened: {outcome.pr_url}")
        print(f"  {outcome.path} on branch {outcome.branch} of {outcome.repo}")
        for message in outcome.messages:
            print(f"  note: {message}")
    return 0


@_reporting
def cmd_upload(args: argparse.Namespace) -> int:
    return upload(args, "benchmark")


# -- parser ----------------------------------------------------------------------------------------------
def _default_client_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--address", help="scheduler address (env QSCHED_ADDRESS, default 127.0.0.1:50051)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an answer")
    return p


def add_device_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--provider", help="provider: local, braket, ibm, ionq...")
    p.add_argument("-d", "--device", help="device of the provider, e.g. aer_simulator, fake_manila, local_sv")


def add_dispatch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--owner", help="submitting user (default: QSCHED_USER or your login name)")
    p.add_argument("--priority", type=int, default=0, help="higher runs sooner (default 0)")
    p.add_argument("--request-id", help="idempotency key: dispatching again with it returns the first job")


def add_poll_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("job_id", nargs="?", metavar="JOB_ID", help="job id, or 'latest'")
    p.add_argument("--json", metavar="FILE", help="write the results (metriq-gym export format) to FILE")
    p.add_argument("--no-cache", action="store_true", help="fetch the results from the provider again")
    p.add_argument(
        "--include-raw",
        action="store_true",
        help="also write the raw counts to <FILE>_debug.json (for replay)",
    )


def add_upload_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("job_id", nargs="?", metavar="JOB_ID", help="job id, or 'latest'")
    p.add_argument("--repo", help=UPLOAD_HELP["repo"])
    p.add_argument("--base", help=UPLOAD_HELP["base"])
    p.add_argument("--dir", help=UPLOAD_HELP["dir"])
    p.add_argument("--branch", help="branch for the pull request (default qsched/upload-<job id>)")
    p.add_argument("--title", help="pull request title")
    p.add_argument("--body", help="pull request body")
    p.add_argument("--commit-message", help="commit message (default: the title)")
    p.add_argument("--clone-dir", help=UPLOAD_HELP["clone_dir"])
    p.add_argument("--dry-run", action="store_true", help="write the file locally; no clone, push or PR")


def register(
    sub: argparse._SubParsersAction,
    add_client_options: Callable[[argparse.ArgumentParser], argparse.ArgumentParser] | None = None,
) -> None:
    """Add the metriq-gym verbs to the `qsched job` group's subparsers."""
    options = add_client_options or _default_client_options

    def parser(name: str, help_text: str) -> argparse.ArgumentParser:
        return options(sub.add_parser(name, help=help_text, description=help_text))

    p = parser("dispatch", "dispatch a metriq-gym job config to a provider device (prints the job id)")
    p.add_argument("config", metavar="CONFIG", help="job config JSON file")
    add_device_options(p)
    add_dispatch_options(p)
    p.set_defaults(func=cmd_dispatch)

    p = parser("estimate", "estimate the circuits, gates, shots and cost of a job config on a device")
    p.add_argument("config", metavar="CONFIG", help="job config JSON file")
    add_device_options(p)
    p.add_argument("--json", metavar="FILE", help="also write the estimate as JSON")
    p.set_defaults(func=cmd_estimate)

    p = parser("poll", "status of a benchmark or circuit job; its results once it has finished")
    add_poll_options(p)
    p.set_defaults(func=cmd_poll)

    p = parser("replay", "re-score a debug file (poll --include-raw) offline; needs qsched[local]")
    p.add_argument("debug_file", metavar="DEBUG_FILE")
    p.add_argument("--json", metavar="FILE", help="write the re-scored results to FILE")
    p.set_defaults(func=cmd_replay)

    p = parser("view", "one job in detail (any kind), or a table of jobs when JOB_ID is omitted")
    p.add_argument("job_id", nargs="?", metavar="JOB_ID", help="job id, or 'latest'")
    p.add_argument("--runs", action="store_true", help="also list every run of the job")
    p.add_argument("--kind", choices=sorted(KINDS), help="only jobs of this kind (table)")
    p.add_argument("--owner", "--user", dest="owner", help="only this user's jobs (table)")
    p.add_argument("--limit", type=int, default=50, help="at most this many jobs (table, default 50)")
    p.set_defaults(func=cmd_view)

    p = parser(
        "delete", "delete a job (any kind); one still active is cancelled first, with its provider tasks"
    )
    p.add_argument("job_id", nargs="?", metavar="JOB_ID", help="job id, or 'latest'")
    p.add_argument(
        "--wait-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the cancel to finish (default 60)",
    )
    p.set_defaults(func=cmd_delete)

    p = parser("upload", "open a GitHub pull request adding the job's results to metriq-data")
    add_upload_options(p)
    p.set_defaults(func=cmd_upload)
