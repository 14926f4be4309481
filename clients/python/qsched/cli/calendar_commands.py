"""`qsched reserve`, `qsched reservations` (alias `calendar`), `qsched unreserve`, `qsched session
open|close|cancel|list` and `qsched why`: the device calendars, sessions and the scheduler's
decisions (docs/scheduling.md). Thin over JobClient."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

AddOptions = Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
_SPAN = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _jobs(args: argparse.Namespace):
    from qsched.client import JobClient

    return JobClient(args.address, timeout=args.timeout)


def span(text: str) -> timedelta:
    """90m, 2h, 1.5h, 30s, 1d."""
    match = _SPAN.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 90m, 2h or 1d")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def when(text: str, now: datetime | None = None) -> datetime:
    """An ISO time (local time when it names no zone), HH:MM today, `now`, or `+SPAN` from now."""
    now = now or datetime.now(UTC)
    text = text.strip()
    if text == "now":
        return now
    if text.startswith("+"):
        return now + span(text[1:])
    if re.fullmatch(r"\d{1,2}:\d{2}", text):  # HH:MM today, local time
        hours, minutes = map(int, text.split(":"))
        return datetime.now().astimezone().replace(hour=hours, minute=minutes, second=0, microsecond=0)
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.astimezone()


def _time(value: datetime) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M")


def _print_window(r: dict) -> None:
    who = ",".join(r["holders"]) if r["kind"] == "exclusive" else "-"
    flags = " hard-end" if r["hard_end"] else ""
    note = f"  {r['note']}" if r["note"] else ""
    print(
        f"{r['reservation_id']:<17} {r['device']:<16} {r['kind']:<12} "
        f"{_time(r['start'])} -> {_time(r['end'])}  {who:<16} by {r['created_by']}{flags}{note}"
    )


def cmd_reserve(args: argparse.Namespace) -> int:
    start = when(args.start)
    end = when(args.end, start) if args.end else start + span(args.length)
    with _jobs(args) as client:
        window = client.reserve(
            args.device, start, end, args.kind, args.holder, hard_end=args.hard_end, note=args.note
        )
    _print_window(window)
    if window["kind"] == "exclusive":
        print(f"Submit into it with: qsched submit ... --reservation {window['reservation_id']}")
    return 0


def cmd_reservations(args: argparse.Namespace) -> int:
    with _jobs(args) as client:
        windows = client.reservations(args.device)
    if not windows:
        print("No reservations.")
        return 0
    print(f"{'RESERVATION':<17} {'DEVICE':<16} {'KIND':<12} {'WINDOW':<35} {'HOLDERS':<16}")
    for window in windows:
        _print_window(window)
    return 0


def cmd_unreserve(args: argparse.Namespace) -> int:
    with _jobs(args) as client:
        window = client.cancel_reservation(args.reservation_id)
    print(f"Cancelled {window['reservation_id']} ({window['kind']} on {window['device']}).")
    return 0


def cmd_why(args: argparse.Namespace) -> int:
    with _jobs(args) as client:
        answer = client.why(args.job_id)
    if args.json:
        print(json.dumps(answer, default=str, indent=2))
        return 0
    print(f"{answer['job_id']}: {answer['status']}")
    waiting = answer.get("waiting")
    if waiting:
        where = f"position {answer.get('queue_position', 0)}"
        if answer.get("estimated_start"):
            where += f", estimated start {_time(answer['estimated_start'])}"
        print(f"  waiting ({where}): [{waiting['policy']}] {waiting['summary']}")
    for run in answer["runs"]:
        print(f"  run {run['attempt']} ({run['task_id'][:8]}) started: [{run['policy']}] {run['summary']}")
    if not waiting and not answer["runs"]:
        print("  (no decision recorded yet: it is being handed to the device)")
    return 0


def _print_session(s: dict) -> None:
    ends = f"  ended: {s['end_reason']}" if s["end_reason"] else ""
    print(
        f"{s['session_id']:<17} {s['device']:<16} {s['owner']:<12} {s['state']:<8} "
        f"opened {_time(s['open_time'])}, at most {s['max_length']}, idle {s['idle_timeout']}, "
        f"on failure {s['on_failure']}{ends}"
    )


def cmd_session_open(args: argparse.Namespace) -> int:
    with _jobs(args) as client:
        session = client.open_session(
            args.device,
            span(args.max).total_seconds(),
            span(args.idle).total_seconds(),
            args.on_failure,
        )
    _print_session(session)
    print(f"Submit into it with: qsched submit ... --session {session['session_id']}")
    return 0


def _session_action(method: str):  # type: ignore[no-untyped-def]
    def run(args: argparse.Namespace) -> int:
        with _jobs(args) as client:
            _print_session(getattr(client, method)(args.session_id))
        return 0

    return run


def cmd_session_list(args: argparse.Namespace) -> int:
    with _jobs(args) as client:
        sessions = client.sessions(args.device)
    if not sessions:
        print("No open sessions.")
    for session in sessions:
        _print_session(session)
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    with _jobs(args) as client:
        answer = client.usage(args.device)
    fair = ", ".join(answer["fair_share_devices"]) or "none"
    print(f"Recent use (half-life {answer['half_life']}); fair share on: {fair}")
    if not answer["usage"]:
        print("No runs yet.")
    for row in answer["usage"]:
        print(f"  {row['device']:<16} {row['owner']:<16} {row['usage_seconds']:>12.1f} device-s")
    return 0


def register(sub: argparse._SubParsersAction, add_client_options: AddOptions) -> None:
    p = add_client_options(sub.add_parser("reserve", help="book a window of a device's calendar"))
    p.add_argument("device")
    p.add_argument("--kind", choices=("exclusive", "calibration", "maintenance"), default="exclusive")
    p.add_argument("--start", default="now", help="ISO time, 'now' or +SPAN (e.g. +30m); default now")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--end", help="ISO time or +SPAN after the start")
    group.add_argument("--for", dest="length", help="length, e.g. 2h or 90m")
    p.add_argument(
        "--holder", action="append", default=[], help="exclusive: whose jobs (default you); repeatable"
    )
    p.add_argument("--hard-end", action="store_true", help="cancel the window's running job at its end")
    p.add_argument("--note", default="", help="shown with the window")
    p.set_defaults(func=cmd_reserve)
    for name in ("reservations", "calendar"):
        p = add_client_options(sub.add_parser(name, help="the windows that have not ended"))
        p.add_argument("device", nargs="?", help="only this device")
        p.set_defaults(func=cmd_reservations)
    p = add_client_options(
        sub.add_parser("unreserve", help="cancel a reservation (yours, or any: operators)")
    )
    p.add_argument("reservation_id")
    p.set_defaults(func=cmd_unreserve)
    p = add_client_options(
        sub.add_parser("why", help="why a job waits, or why its runs started when they did")
    )
    p.add_argument("job_id")
    p.add_argument("--json", action="store_true", help="the whole answer as JSON")
    p.set_defaults(func=cmd_why)

    session = sub.add_parser("session", help="have a device to yourself for a while, your jobs back to back")
    ssub = session.add_subparsers(dest="session_command", required=True)
    p = add_client_options(ssub.add_parser("open", help="open a session on a device"))
    p.add_argument("device")
    p.add_argument("--max", default="1h", help="the longest it may last (default 1h; users at most 4h)")
    p.add_argument("--idle", default="5m", help="end it after this long without a job of it (default 5m)")
    p.add_argument("--on-failure", choices=("continue", "abort"), default="continue")
    p.set_defaults(func=cmd_session_open)
    for name, method, text in (
        ("close", "close_session", "its queued jobs still run, then the device is shared again"),
        ("cancel", "cancel_session", "cancel its queued jobs and end it now"),
    ):
        p = add_client_options(ssub.add_parser(name, help=text))
        p.add_argument("session_id")
        p.set_defaults(func=_session_action(method))
    p = add_client_options(ssub.add_parser("list", help="the open sessions"))
    p.add_argument("device", nargs="?", help="only this device")
    p.set_defaults(func=cmd_session_list)
    p = add_client_options(sub.add_parser("usage", help="each user's recent use of each device (fair share)"))
    p.add_argument("device", nargs="?", help="only this device")
    p.set_defaults(func=cmd_usage)
