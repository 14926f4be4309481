"""Verbs other packages add to `qsched` (the server verbs `up`, `serve`, `db`, `admin init` come
from `qsched_ops`), found through the `qsched.cli_commands` entry point group.

An entry point's name is the verb's path, "up" or "admin.init" (a verb of the `admin` group);
its object takes the subparsers to add the verb to. Looking entry points up reads every
installed distribution's metadata, so the CLI asks only when the command line names a verb it
does not know itself, a group plugins extend, or nothing (the full help)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

GROUP = "qsched.cli_commands"


def register(
    top: argparse._SubParsersAction,
    groups: Mapping[str, argparse._SubParsersAction],
    command: str | None,
) -> None:
    """Add the plugin verbs under `command` (every plugin verb when `command` is None)."""
    from importlib.metadata import entry_points

    for entry in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        first, _, rest = entry.name.partition(".")
        if command is not None and first != command:
            continue
        target = top if not rest else groups.get(first)
        if target is None:
            continue  # a verb for a group this CLI does not have
        entry.load()(target)
