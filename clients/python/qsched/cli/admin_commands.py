"""`qsched admin ...`, `qsched whoami`, `qsched login` and `qsched device ...`: users and
tokens, who you are, and holding device queues. Thin over qsched.admin and JobClient."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

AddOptions = Callable[[argparse.ArgumentParser], argparse.ArgumentParser]


def _admin(args: argparse.Namespace):
    from qsched.admin import AdminClient

    return AdminClient(args.address, timeout=args.timeout)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _roles(user: dict) -> str:
    return ",".join(user["roles"]) or "user"


# -- people and tokens ---------------------------------------------------------------------------------------
def cmd_whoami(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        me = admin.whoami()
    print(f"{me['name']} ({me['kind']}; roles: {_roles(me)}; token {me['token_id']})")
    return 0


def cmd_login(args: argparse.Namespace) -> int:
    """Save a token an admin gave you (read from stdin, never from the command line)."""
    from qsched.admin import AdminClient
    from qsched.credentials import save_token, token_file

    if sys.stdin.isatty():
        import getpass

        token = getpass.getpass("qsched token: ").strip()
    else:
        token = sys.stdin.readline().strip()
    if not token:
        raise ValueError("no token given")
    with AdminClient(args.address, timeout=args.timeout, token=token) as admin:
        me = admin.whoami()  # refuse to save a token the scheduler does not accept
    path = save_token(token, Path(args.file) if args.file else token_file())
    print(f"Logged in as {me['name']}; token saved in {path} (readable by you only).")
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        user = admin.create_user(args.name, args.role, service=args.service)
    print(f"Added {user['kind']} {user['name']} (roles: {_roles(user)}).")
    print(f"Give them a token: qsched admin user token {user['name']}")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        users = admin.list_users()
    print(f"{'NAME':<20} {'KIND':<8} {'ROLES':<28} {'TOKENS':>6}  CREATED")
    for u in users:
        active = sum(1 for t in u["tokens"] if t["revoke_time"] is None)
        print(f"{u['name']:<20} {u['kind']:<8} {_roles(u):<28} {active:>6}  {_when(u['create_time'])}")
    return 0


def cmd_user_roles(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        user = admin.set_roles(args.name, args.roles)
    print(f"{user['name']} now has the roles: {_roles(user)}")
    return 0


def cmd_user_token(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        token = admin.issue_token(args.name, args.label or "")
    print(f"Token {token['token_id']} for {args.name} (shown once; only its hash is kept):", file=sys.stderr)
    print(token["secret"])
    print(f"{args.name} saves it with: qsched login < FILE  (or QSCHED_TOKEN=...)", file=sys.stderr)
    return 0


def cmd_user_revoke(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        revoked = admin.revoke_tokens(args.name, args.token_id or "")
    print(f"Revoked {len(revoked)} token(s) of {args.name}: {', '.join(revoked) or '-'}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        events = admin.audit_events(args.limit, args.actor or "")
    print(f"{'TIME':<19} {'ACTOR':<16} {'ACTION':<30} {'TARGET':<24} DETAIL")
    for e in events:
        detail = " ".join(f"{k}={v}" for k, v in sorted(e["detail"].items()))
        print(f"{_when(e['time']):<19} {e['actor']:<16} {e['action']:<30} {e['target']:<24} {detail}")
    return 0


# -- device queues -------------------------------------------------------------------------------------------
def _jobs(args: argparse.Namespace):
    from qsched.client import JobClient

    return JobClient(args.address, timeout=args.timeout)


def _print_device(d: dict) -> None:
    line = f"{d['name']:<24} {d['queue_state']:<9} {d['queued']:>6}  {d['running_job_id'] or '-':<20}"
    if d["queue_state"] != "open":
        line += f" held by {d['held_by']} since {_when(d['hold_time'])}"
        if d["hold_reason"]:
            line += f": {d['hold_reason']}"
    if d.get("executor") == "unreachable":
        line += f" executor unreachable since {_when(d['executor_since'])}: {d['executor_message'][:120]}"
    print(line)
    for label, r in (("reserved now", d.get("reservation")), ("next window", d.get("next_reservation"))):
        if r is not None:
            who = f" for {', '.join(r['holders'])}" if r["kind"] == "exclusive" else ""
            print(
                f"  {label}: {r['kind']} {r['reservation_id']}{who}, {_when(r['start'])} to {_when(r['end'])}"
            )
    session = d.get("session")
    if session is not None:
        print(
            f"  in session: {session['session_id']} of {session['owner']} since {_when(session['open_time'])}"
        )


def cmd_device_list(args: argparse.Namespace) -> int:
    client = _jobs(args)
    try:
        devices = client.list_devices() if not getattr(args, "name", None) else [client.get_device(args.name)]
    finally:
        client.close()
    print(f"{'DEVICE':<24} {'QUEUE':<9} {'QUEUED':>6}  RUNNING")
    for d in devices:
        _print_device(d)
    return 0


def _device_action(method: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        client = _jobs(args)
        try:
            call = getattr(client, method)
            device = call(args.name, args.reason) if hasattr(args, "reason") else call(args.name)
        finally:
            client.close()
        _print_device(device)
        return 0

    return run


def register(sub: argparse._SubParsersAction, add_client_options: AddOptions) -> argparse._SubParsersAction:
    """Adds the verbs; returns the `admin` group's subparsers (plugins add `admin init` there)."""
    p = add_client_options(sub.add_parser("whoami", help="who the scheduler thinks you are"))
    p.set_defaults(func=cmd_whoami)
    p = add_client_options(sub.add_parser("login", help="save a token an admin gave you (read from stdin)"))
    p.add_argument("--file", help="where to save it (default ~/.config/qsched/token)")
    p.set_defaults(func=cmd_login)

    device = sub.add_parser("device", help="device queues: list, and hold or resume them (operators)")
    dsub = device.add_subparsers(dest="device_command", required=True)
    p = add_client_options(dsub.add_parser("list", help="every device with its queue state"))
    p.set_defaults(func=cmd_device_list)
    p = add_client_options(dsub.add_parser("show", help="one device"))
    p.add_argument("name")
    p.set_defaults(func=cmd_device_list)
    for name, method, help_text in (
        ("pause", "pause_device", "hold the queue now (a running job finishes)"),
        ("drain", "drain_device", "finish the current run, then hold"),
    ):
        p = add_client_options(dsub.add_parser(name, help=help_text))
        p.add_argument("name")
        p.add_argument("--reason", default="", help="shown to everyone looking at the queue")
        p.set_defaults(func=_device_action(method))
    p = add_client_options(dsub.add_parser("resume", help="let a held queue start jobs again"))
    p.add_argument("name")
    p.set_defaults(func=_device_action("resume_device"))

    admin = sub.add_parser("admin", help="users, tokens and the audit log (admin role)")
    asub = admin.add_subparsers(dest="admin_command", required=True)
    user = asub.add_parser("user", help="people and service principals")
    usub = user.add_subparsers(dest="user_command", required=True)
    p = add_client_options(usub.add_parser("add", help="add a user"))
    p.add_argument("name")
    p.add_argument("--role", action="append", default=[], help="operator, calibrator or admin; repeatable")
    p.add_argument("--service", action="store_true", help="a service principal (role: scheduler)")
    p.set_defaults(func=cmd_user_add)
    p = add_client_options(usub.add_parser("list", help="every user, their roles and active tokens"))
    p.set_defaults(func=cmd_user_list)
    p = add_client_options(usub.add_parser("roles", help="replace a user's roles"))
    p.add_argument("name")
    p.add_argument("roles", nargs="*", help="the complete new set (none = only their own jobs)")
    p.set_defaults(func=cmd_user_roles)
    p = add_client_options(usub.add_parser("token", help="issue a token (printed once on stdout)"))
    p.add_argument("name")
    p.add_argument("--label", help="what it is for, e.g. 'laptop'")
    p.set_defaults(func=cmd_user_token)
    p = add_client_options(usub.add_parser("revoke", help="revoke a user's tokens (all, or one)"))
    p.add_argument("name")
    p.add_argument("--token-id", help="revoke only this token")
    p.set_defaults(func=cmd_user_revoke)
    p = add_client_options(asub.add_parser("audit", help="privileged actions, newest first"))
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--actor", help="only this user's actions")
    p.set_defaults(func=cmd_audit)
    return asub
