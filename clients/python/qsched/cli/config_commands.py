"""`qsched config ...`: push, pull, list, show, set-main, diff, history and types of
config revisions, through qsched.configs.ConfigClient.

    qsched config push hardware_config_202505.yml --type hardware_config
    qsched config pull --type hardware_config -o hardware_config.yml
    qsched config list --type hardware_config
    qsched config set-main CFG-HW-20260113-00001
    qsched config diff CFG-HW-20260113-00001 CFG-HW-20260114-00001
    qsched config history --type hardware_config

Exit status: 0 on success, 2 when the service refused the request (the reason is
printed) or could not be reached."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path

ADDRESS_HELP = "config service address (env QSCHED_CONFIGS_ADDRESS, default 127.0.0.1:50052)"


def _client(args: argparse.Namespace):
    from qsched.configs import ConfigClient

    return ConfigClient(args.address, timeout=args.timeout)


def _reporting(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn service errors into one line on stderr and exit status 2."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        import grpc

        from qsched.configs import configs_address
        from qsched.errors import QschedError

        try:
            return fn(args)
        except QschedError as error:
            if error.code == grpc.StatusCode.UNAVAILABLE:
                print(
                    f"qsched: cannot reach the config service at {configs_address(args.address)}",
                    file=sys.stderr,
                )
                print("  is the stack running? start it with `make run` or `qsched up`", file=sys.stderr)
            else:
                print(f"qsched: {error}", file=sys.stderr)
            return 2

    return run


def _when(value) -> str:
    return value.replace(microsecond=0).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


# -- commands --------------------------------------------------------------------------------------------
@_reporting
def cmd_push(args: argparse.Namespace) -> int:
    with _client(args) as cfg:
        if args.no_main:
            rev = cfg.upload(args.file, args.type, args.creator, content_type=args.content_type)
            size = _size(rev.size_bytes)
            print(f"{rev.revision_id} stored ({rev.config_type}, {size}, sha256 {rev.sha256[:12]})")
            return 0
        rev = cfg.push(args.file, args.type, args.creator, etag=args.etag, content_type=args.content_type)
    print(
        f"{rev.revision_id} is main of {rev.config_type} ({_size(rev.size_bytes)}, sha256 {rev.sha256[:12]})"
    )
    return 0


@_reporting
def cmd_pull(args: argparse.Namespace) -> int:
    with _client(args) as cfg:
        if args.revision:
            rev = cfg.show(args.revision)
            what, content = f"{rev.revision_id} ({rev.config_type})", rev.content or b""
        else:
            main = cfg.main(args.type, include_content=True)
            rev, content = main.revision, main.revision.content or b""
            what = f"{rev.revision_id} (main of {rev.config_type}, etag {main.etag})"
    if args.output:
        Path(args.output).write_bytes(content)
        print(f"{what} written to {args.output}")
    else:
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
    return 0


@_reporting
def cmd_list(args: argparse.Namespace) -> int:
    from qsched.cli.format import table

    with _client(args) as cfg:
        revisions = cfg.list(args.type, limit=args.limit)
        main_ids = {_main_id(cfg, t) for t in sorted({r.config_type for r in revisions})}
    if not revisions:
        print("no revisions")
        return 0
    rows = [
        [
            ("*" if r.revision_id in main_ids else "") + r.revision_id,
            r.config_type,
            _when(r.create_time),
            r.creator or "-",
            _size(r.size_bytes),
            r.content_type,
            r.original_filename or "-",
            r.first_job_id or "-",
        ]
        for r in revisions
    ]
    print(
        table(rows, ["REVISION", "TYPE", "CREATED (UTC)", "CREATOR", "SIZE", "FORMAT", "FILE", "FIRST JOB"])
    )
    print("(* = main)")
    return 0


def _main_id(cfg, config_type: str) -> str:
    from qsched.errors import QschedError

    try:
        return cfg.main(config_type).revision.revision_id
    except QschedError as error:
        if error.reason == "MAIN_NOT_SET":
            return ""
        raise


@_reporting
def cmd_show(args: argparse.Namespace) -> int:
    with _client(args) as cfg:
        rev = cfg.show(args.revision)
        is_main = _main_id(cfg, rev.config_type) == rev.revision_id
    lines = [
        f"revision   {rev.revision_id}" + ("  (main)" if is_main else ""),
        f"type       {rev.config_type}",
        f"created    {_when(rev.create_time)} UTC by {rev.creator or '-'}",
        f"file       {rev.original_filename or '-'}",
        f"format     {rev.content_type}",
        f"size       {rev.size_bytes} bytes",
        f"sha256     {rev.sha256}",
        f"first job  {rev.first_job_id or '-'}",
    ]
    print("\n".join(lines))
    if args.content:
        print()
        sys.stdout.flush()
        sys.stdout.buffer.write(rev.content or b"")
        sys.stdout.flush()
    return 0


@_reporting
def cmd_set_main(args: argparse.Namespace) -> int:
    with _client(args) as cfg:
        change = cfg.set_main(args.revision, args.type, etag=args.etag, changed_by=args.by)
    before = f" (was {change.from_revision_id})" if change.from_revision_id else ""
    print(f"{change.to_revision_id} is main of {change.config_type}{before}")
    return 0


@_reporting
def cmd_diff(args: argparse.Namespace) -> int:
    with _client(args) as cfg:
        text = cfg.diff(args.a, args.b)
    if text:
        sys.stdout.write(text)
    else:
        print(f"{args.a} and {args.b} have identical content")
    return 0


@_reporting
def cmd_history(args: argparse.Namespace) -> int:
    from qsched.cli.format import table

    with _client(args) as cfg:
        changes = cfg.history(args.type, limit=args.limit)
    if not changes:
        print("main has never been set" + (f" for {args.type}" if args.type else ""))
        return 0
    rows = [
        [_when(c.change_time), c.config_type, c.from_revision_id or "-", c.to_revision_id, c.changed_by]
        for c in changes
    ]
    print(table(rows, ["WHEN (UTC)", "TYPE", "FROM", "TO", "BY"]))
    return 0


@_reporting
def cmd_main(args: argparse.Namespace) -> int:
    from qsched.cli.format import table
    from qsched.errors import QschedError

    rows = []
    with _client(args) as cfg:
        names = [args.type] if args.type else [t.name for t in cfg.types()]
        for name in names:
            try:
                main = cfg.main(name)
            except QschedError as error:
                if error.reason != "MAIN_NOT_SET":
                    raise
                rows.append([name, "-", "-", "-", "-"])
                continue
            change = main.last_change
            rows.append(
                [name, main.revision.revision_id, main.etag, _when(change.change_time), change.changed_by]
            )
    print(table(rows, ["TYPE", "MAIN", "ETAG", "SINCE (UTC)", "BY"]))
    return 0


@_reporting
def cmd_types(args: argparse.Namespace) -> int:
    from qsched.cli.format import table

    with _client(args) as cfg:
        types = cfg.types()
    rows = [
        [t.name, t.abbreviation, "yes" if t.required_for_lab_runs else "no", t.description or "-"]
        for t in types
    ]
    print(table(rows, ["TYPE", "ABBR", "PINNED FOR LAB RUNS", "DESCRIPTION"]))
    return 0


@_reporting
def cmd_register_type(args: argparse.Namespace) -> int:
    with _client(args) as cfg:
        t = cfg.register_type(args.name, args.abbreviation, args.description, args.required)
    print(f"config type {t.name} ({t.abbreviation}) registered")
    return 0


# -- parser ----------------------------------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `config` and its sub-commands to the `qsched` parser."""
    config = subparsers.add_parser("config", help="config revisions and the main config of each type")
    sub = config.add_subparsers(dest="config_command", required=True)

    def command(
        name: str, help_text: str, func: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--address", help=ADDRESS_HELP)
        p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an answer")
        p.set_defaults(func=func)
        return p

    p = command("push", "store a config file and make it main of its type", cmd_push)
    p.add_argument("file", help="the config file")
    p.add_argument("--type", required=True, help="config type, e.g. hardware_config")
    p.add_argument("--etag", help="refuse if main changed since this etag (see `qsched config main`)")
    p.add_argument("--creator", help="who is pushing (default: your login name)")
    p.add_argument(
        "--content-type", choices=["yaml", "json", "csv", "binary"], help="default: from the extension"
    )
    p.add_argument("--no-main", action="store_true", help="only store the revision, leave main as it is")

    p = command("pull", "write the main config of a type (or one revision) to a file or stdout", cmd_pull)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--type", help="config type: pull its main revision")
    group.add_argument("--revision", help="pull this revision instead")
    p.add_argument("-o", "--output", help="file to write (default: stdout)")

    p = command("list", "revisions, newest first", cmd_list)
    p.add_argument("--type", help="only this config type")
    p.add_argument("--limit", type=int, default=50)

    p = command("show", "one revision's details", cmd_show)
    p.add_argument("revision")
    p.add_argument("--content", action="store_true", help="also print the content")

    p = command("set-main", "make an existing revision main of its type", cmd_set_main)
    p.add_argument("revision")
    p.add_argument("--type", help="config type (default: the revision's)")
    p.add_argument(
        "--etag", help="refuse if main changed since this etag (default: replace the current main)"
    )
    p.add_argument("--by", help="who is changing it (default: your login name)")

    p = command("diff", "unified diff between two revisions", cmd_diff)
    p.add_argument("a", help="older revision")
    p.add_argument("b", help="newer revision")

    p = command("history", "changes of main: who, when, from, to (newest first)", cmd_history)
    p.add_argument("--type", help="only this config type")
    p.add_argument("--limit", type=int, default=50)

    p = command("main", "the main revision of each type, with its etag", cmd_main)
    p.add_argument("--type", help="only this config type")

    command("types", "known config types", cmd_types)

    p = command("register-type", "add a site config type", cmd_register_type)
    p.add_argument("name", help="lower_snake name")
    p.add_argument("abbreviation", help="two upper-case letters or digits, used in revision ids")
    p.add_argument("--description", default="")
    p.add_argument("--required", action="store_true", help="pin it for every lab run")
