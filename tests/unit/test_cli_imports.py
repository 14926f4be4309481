"""`qsched queue` and the other everyday commands start quickly: they import neither the
metriq-gym, config, admin and server command modules nor google.rpc (only a failed call does)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("qsched.cli.job_commands", "qsched.cli.suite_commands", "qsched_runtime", "google.rpc.status_pb2")


def loaded_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_an_everyday_command_parses_without_the_other_command_modules():
    code = "from qsched.cli import main\nmain.build_parser('queue').parse_args(['queue', '--limit', '3'])"
    loaded = loaded_after(code)
    assert not [m for m in HEAVY if m in loaded]


def test_the_full_command_line_still_has_every_command():
    from qsched.cli import main

    choices = main.build_parser(None)._subparsers._group_actions[0].choices
    assert {"queue", "job", "suite", "up", "serve", "db"} <= set(choices)
    assert main._command_of(["--help"]) is None and main._command_of(["queue", "-f"]) == "queue"
