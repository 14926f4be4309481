"""`qsched queue`, `qsched show` and the other everyday commands start quickly: they import neither
the metriq-gym, config, admin and server command modules, nor the entry points' metadata, nor
google.rpc (only a failed call with details does); queue and show import neither JobClient nor the
generated stub classes (qsched.calls calls by name), nor json, nor shutil (argparse's width look-up)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

HEAVY = (
    "qsched.cli.job_commands",
    "qsched.cli.suite_commands",
    "qsched_runtime",
    "qsched_ops",
    "importlib.metadata",
    "google.rpc.status_pb2",
)
LOOK_UP_AVOIDS = ("qsched.client", "qsched.api.jobs.v1.jobs_pb2_grpc", "json", "shutil", "tempfile")


def loaded_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_an_everyday_command_parses_without_the_other_command_modules():
    code = "from qsched.cli import main\nmain.build_parser('queue').parse_args(['queue', '--limit', '3'])"
    loaded = loaded_after(code)
    assert not [m for m in HEAVY if m in loaded]


@pytest.mark.parametrize("command", [["queue"], ["show", "JOB-20260101-00001", "--runs"]])
def test_queue_and_show_import_only_what_they_use(command):
    """Run against a scheduler that is not there: every import the command makes happens first."""
    code = (
        "from qsched.cli import main\n"
        f"assert main.main({command!r} + ['--address', '127.0.0.1:1', '--timeout', '0.5']) == 2"
    )
    loaded = loaded_after(code)
    assert "qsched.calls" in loaded and not [m for m in HEAVY + LOOK_UP_AVOIDS if m in loaded]


def test_the_full_command_line_still_has_every_command(capsys):
    """With no command, `--help` lists every verb: the CLI's own and the ones qsched_ops adds
    through the qsched.cli_commands entry point group."""
    from qsched.cli import main

    with pytest.raises(SystemExit) as exit_:
        main.main(["--help"])
    verbs = set(re.search(r"\{([a-z,-]+)\}", capsys.readouterr().out).group(1).split(","))
    assert exit_.value.code == 0 and {"queue", "job", "suite", "admin", "up", "serve", "db"} <= verbs
