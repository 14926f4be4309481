"""The server verbs of the `qsched` command: `up`, `serve`, `db` and `admin init`.

Registered through the `qsched.cli_commands` entry point group (pyproject.toml); the CLI
imports this module only when one of these verbs (or the full help) is asked for. Kept light:
the services load when a command runs, not when its parser is built."""

from __future__ import annotations

import argparse
import importlib.util
import sys

from qsched_core.config import SERVICES
from qsched_ops.args import add_common_arguments, config_from_args, share_database

SERVER_EXTRA_HINT = "this command needs the server parts: pip install 'qsched[server]'"
WEB_EXTRA_HINT = "the web view needs aiohttp and matplotlib: pip install 'qsched[web]'"


def _need_server_parts() -> None:
    if importlib.util.find_spec("sqlalchemy") is None or importlib.util.find_spec("grpc_health") is None:
        raise SystemExit(f"qsched: {SERVER_EXTRA_HINT}")


def cmd_up(args: argparse.Namespace) -> int:
    _need_server_parts()
    from qsched_ops.supervisor import up

    share_database(args)
    return up(args)


def cmd_serve(args: argparse.Namespace) -> int:
    if args.service == "web":
        return _serve_web(args)
    _need_server_parts()
    from qsched_ops.serve import serve

    return serve(args.service, args)


def _serve_web(args: argparse.Namespace) -> int:
    """The web view alone: a client of the scheduler at --scheduler-address (docs/web.md)."""
    if importlib.util.find_spec("aiohttp") is None:
        raise SystemExit(f"qsched: {WEB_EXTRA_HINT}")
    from qsched_web.server import serve as serve_web

    config = config_from_args("scheduler", args)
    return serve_web(args.web_address, config.endpoints.scheduler, config.data_dir / "web-cache")


def cmd_db(args: argparse.Namespace) -> int:
    _need_server_parts()
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


def cmd_admin_init(args: argparse.Namespace) -> int:
    """What `qsched up` does before it starts the services, for installations run with `qsched serve`."""
    _need_server_parts()
    from qsched.credentials import token_file
    from qsched_identity.db import database_url
    from qsched_ops.provision import provision

    config = config_from_args("scheduler", args)
    url = database_url(config.identity_database_url, config.data_dir)
    report = provision(url, config.data_dir, token_file(), args.user)
    for name in report.created:
        print(f"Created {name}.")
    if report.person_token_file is not None:
        print(f"{report.person}'s token is in {report.person_token_file}.")
    print(f"Service tokens are in {config.data_dir / 'secrets'}.")
    for note in report.notes:
        print(note, file=sys.stderr)
    return 0


# -- entry points (group qsched.cli_commands): each adds its verb to the parser it is given ------------------
def up(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="run the whole stack on this machine (Ctrl+C stops it)")
    add_common_arguments(p)
    p.add_argument("--no-web", action="store_true", help="do not start the web view")
    p.set_defaults(func=cmd_up)


def serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run one service (or the web view)")
    p.add_argument("service", choices=(*SERVICES, "web"))
    add_common_arguments(p)
    p.set_defaults(func=cmd_serve)


def db(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="scheduler database migrations")
    p.add_argument("action", choices=["upgrade", "downgrade", "current"])
    p.add_argument("revision", nargs="?", help="target revision (default head / base)")
    add_common_arguments(p)
    p.set_defaults(func=cmd_db)


def admin_init(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="provision users and tokens locally (what `qsched up` does first)")
    p.add_argument("--user", help="the first person (default: you)")
    add_common_arguments(p)
    p.set_defaults(func=cmd_admin_init)
