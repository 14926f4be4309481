"""`qsched suite ...`: a metriq-gym suite file as ONE benchmark job (every entry dispatches and polls as
one; the gateway groups them under one suite id):

    qsched suite dispatch lr_qaoa.json -p local -d fake_manila [-c NAME]... [--all]
    qsched suite poll latest --json suite.json [--include-raw] [--no-cache]
    qsched suite view [JOB_ID]
    qsched suite delete JOB_ID
    qsched suite upload JOB_ID [upload options as for `qsched job upload`]

A suite with `full_suite_warning` is refused unless `--all` (run it all) or `-c NAME` (only those
entries) is given, as metriq-gym does. `suite upload` writes one file holding an array of records."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from qsched.cli import job_commands as jobs


def select_entries(suite: dict, names: list[str], run_all: bool) -> dict:
    """The suite to dispatch: entries chosen by name or component with -c; full suites need --all."""
    entries = suite.get("benchmarks") or []
    if names:
        chosen = [
            e for e in entries if isinstance(e, dict) and ({e.get("name"), e.get("component")} & set(names))
        ]
        found = {v for e in chosen for v in (e.get("name"), e.get("component"))}
        missing = [n for n in names if n not in found]
        if missing:
            known = ", ".join(str(e.get("name")) for e in entries if isinstance(e, dict))
            raise ValueError(f"no suite entry named {missing[0]!r} (entries: {known})")
        return {**suite, "benchmarks": chosen}
    warning = suite.get("full_suite_warning")
    if warning and not run_all:
        text = warning if isinstance(warning, str) else "this suite is large"
        raise ValueError(f"{text}; pass --all to dispatch the whole suite, or -c NAME to choose entries")
    return suite


def cmd_dispatch(args: argparse.Namespace) -> int:
    from qsched import benchmarks

    suite, text = benchmarks.load_suite(args.suite)
    chosen = select_entries(suite, args.component or [], args.all)
    if chosen is not suite:
        text = json.dumps(chosen)
    device = jobs._device(args)
    job_id = jobs.client(args).dispatch_suite(
        text, device, owner=args.owner, priority=args.priority, request_id=args.request_id
    )
    count = len(chosen["benchmarks"])
    plural = "s" if count != 1 else ""
    print(f"{job_id}: suite {suite['name']} ({count} benchmark{plural}) dispatched to {device}")
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from qsched import benchmarks

    suite, _ = benchmarks.load_suite(args.suite)
    chosen = select_entries(suite, args.component or [], True)
    estimate = jobs.client(args).estimate(chosen, jobs._device(args), suite=True)
    jobs.print_estimate(estimate, f"suite {suite['name']}")
    if args.json:
        print(f"estimate written to {benchmarks.write_json(args.json, estimate)}")
    return 0


def cmd_poll(args: argparse.Namespace) -> int:
    return jobs.poll(args, "suite")


def cmd_view(args: argparse.Namespace) -> int:
    return jobs.view(args, "suite")


def cmd_delete(args: argparse.Namespace) -> int:
    return jobs.delete(args, "suite")


@jobs._reporting
def cmd_upload(args: argparse.Namespace) -> int:
    return jobs.upload(args, "suite")


def register(
    sub: argparse._SubParsersAction,
    add_client_options: Callable[[argparse.ArgumentParser], argparse.ArgumentParser] | None = None,
) -> None:
    """Add `qsched suite` and its verbs to the top-level subparsers."""
    options = add_client_options or jobs._default_client_options
    group = sub.add_parser("suite", help="metriq-gym suites: dispatch, estimate, poll, view, delete, upload")
    verbs = group.add_subparsers(dest="suite_command", required=True)

    def parser(name: str, help_text: str) -> argparse.ArgumentParser:
        return options(verbs.add_parser(name, help=help_text, description=help_text))

    def suite_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("suite", metavar="SUITE", help="suite JSON file")
        jobs.add_device_options(p)
        p.add_argument(
            "-c", "--component", action="append", metavar="NAME", help="only this entry (name or component)"
        )

    p = parser("dispatch", "dispatch every entry of a suite file as one job (prints the job id)")
    suite_args(p)
    p.add_argument("--all", action="store_true", help="dispatch a suite marked full_suite_warning")
    jobs.add_dispatch_options(p)
    p.set_defaults(func=cmd_dispatch)

    p = parser("estimate", "estimate a suite on a device")
    suite_args(p)
    p.add_argument("--json", metavar="FILE", help="also write the estimate as JSON")
    p.set_defaults(func=cmd_estimate)

    p = parser("poll", "status of a suite job; an array of records once it has finished")
    jobs.add_poll_options(p)
    p.set_defaults(func=cmd_poll)

    p = parser("view", "one suite job in detail, or a table of suite jobs")
    p.add_argument("job_id", nargs="?", metavar="JOB_ID", help="job id, or 'latest'")
    p.add_argument("--owner", "--user", dest="owner", help="only this user's jobs (table)")
    p.add_argument("--limit", type=int, default=50, help="at most this many jobs (table, default 50)")
    p.set_defaults(func=cmd_view)

    p = parser("delete", "delete a suite job; one still active is cancelled first")
    p.add_argument("job_id", nargs="?", metavar="JOB_ID", help="job id, or 'latest'")
    p.add_argument(
        "--wait-timeout", type=float, default=60.0, help="seconds to wait for the cancel (default 60)"
    )
    p.set_defaults(func=cmd_delete)

    p = parser("upload", "open a GitHub pull request adding the suite's records (one file, an array)")
    jobs.add_upload_options(p)
    p.set_defaults(func=cmd_upload)
