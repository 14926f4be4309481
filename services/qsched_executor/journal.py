"""The crash journal: the update log of every run that reached the board, appended as JSON
lines to `<data_dir>/executor-journal-<board id>.jsonl`.

After a kill -9 and restart, a run whose log has no terminal update was on the board (or its
data file was being written) when the process died: it is restored as LOST with a terminal
`Failed(EXECUTOR_LOST)` update, so the scheduler learns that it did not finish. Runs that only
waited for the board are not journaled: after a restart they are unknown, and the scheduler
queues them again. Finished runs are restored too (their terminal updates can be replayed to a
scheduler that had not recorded them).

Lines are written without fsync: they survive the process dying (the kernel has them), not the
machine losing power. The file is compacted at start-up and whenever it grows past
`COMPACT_LINES`."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

from qsched_core.execution import (
    Accepted,
    Cancelled,
    DataRef,
    ExecutionUpdate,
    Failed,
    Output,
    Progress,
    Started,
    Succeeded,
    UpdateBody,
)
from qsched_core.provenance import CodeProvenance
from qsched_executor.runs import Run

log = logging.getLogger(__name__)
COMPACT_LINES = 50_000
LOST_REASON = "EXECUTOR_LOST"

_BODIES: dict[str, type] = {
    "accepted": Accepted,
    "started": Started,
    "progress": Progress,
    "output": Output,
    "succeeded": Succeeded,
    "failed": Failed,
    "cancelled": Cancelled,
}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _body_to_json(body: UpdateBody) -> dict[str, Any]:
    """What `asdict` gives, one level deep: written on the event loop before a terminal update
    goes out, where `asdict`'s deep copy of the code provenance cost ~20 us a line."""
    names = _FIELD_NAMES.get(type(body))
    if names is None:
        names = _FIELD_NAMES[type(body)] = tuple(f.name for f in fields(body))
    raw: dict[str, Any] = {"kind": body.kind.value}
    for name in names:
        if name == "inline_data":  # a live copy of the data file, never journalled
            continue
        value = getattr(body, name)
        if isinstance(value, CodeProvenance):  # the flat form (its origin is an enum)
            value = value.to_dict()
        elif isinstance(value, Mapping):
            value = dict(value)
        elif is_dataclass(value):  # a DataRef
            value = asdict(value)  # type: ignore[arg-type]
        raw[name] = value
    return raw


def _body_from_json(raw: dict[str, Any]) -> UpdateBody:
    fields = dict(raw)
    cls = _BODIES[fields.pop("kind")]
    if isinstance(fields.get("data"), dict):
        fields["data"] = DataRef(**fields["data"])
    if isinstance(fields.get("code"), dict):
        fields["code"] = CodeProvenance.from_dict(fields["code"])
    if isinstance(fields.get("lines"), list):
        fields["lines"] = tuple(fields["lines"])
    return cls(**fields)


def _line(entry: dict[str, Any]) -> bytes:
    return (json.dumps(entry, separators=(",", ":")) + "\n").encode()


def _update_entry(update: ExecutionUpdate) -> dict[str, Any]:
    return {"u": update.task_id, "seq": update.seq, "t": update.time, "b": _body_to_json(update.body)}


def _run_entries(run: Run) -> list[dict[str, Any]]:
    return [{"run": run.task_id, "job": run.job_id, "owner": run.owner}, *map(_update_entry, run.updates)]


class Journal:
    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None
        self._lines = 0

    def recover(self, now: float, lost_data: Callable[[Run, float], str] | None = None) -> list[Run]:
        """The runs of the journal (the lost ones given their EXECUTOR_LOST update), and a fresh,
        compacted journal holding them, open for appending. `lost_data(run, now)` ends a lost
        run's message by saying whether its data exists (leftovers.py)."""
        runs: dict[str, Run] = {}
        if self.path.exists():
            for number, raw in enumerate(self.path.read_bytes().splitlines(), 1):
                try:
                    entry = json.loads(raw)
                    if "run" in entry:
                        runs[entry["run"]] = Run(entry["run"], entry.get("job", ""), entry.get("owner", ""))
                        runs[entry["run"]].reached_board = True
                        continue
                    run = runs.get(entry["u"])
                    if run is None or run.done or entry["seq"] != run.last_seq + 1:
                        continue
                    run.append(_body_from_json(entry["b"]), entry["t"])
                except (ValueError, KeyError, TypeError) as exc:  # a line cut short by the crash
                    log.warning("journal %s line %d skipped: %s", self.path, number, exc)
        for run in runs.values():
            if not run.done:
                run.lost = True
                note = lost_data(run, now) if lost_data is not None else ""
                run.append(
                    Failed(LOST_REASON, "the executor stopped while this run was on the board" + note),
                    max(now, run.updates[-1].time if run.updates else now),
                )
        restored = list(runs.values())
        self.rewrite(restored)
        return restored

    def rewrite(self, runs: list[Run]) -> None:
        """Replace the journal by the logs of `runs` (atomically), then append to it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".compacting")
        lines = [_line(entry) for run in runs for entry in _run_entries(run)]
        tmp.write_bytes(b"".join(lines))
        os.replace(tmp, self.path)
        self.close()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lines = len(lines)

    @property
    def needs_compaction(self) -> bool:
        return self._lines > COMPACT_LINES

    def board_run(self, run: Run) -> None:
        """A run reached the board: its log so far."""
        self._write(b"".join(_line(entry) for entry in _run_entries(run)), 1 + len(run.updates))

    def update(self, update: ExecutionUpdate) -> None:
        self._write(_line(_update_entry(update)), 1)

    def _write(self, data: bytes, lines: int) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, data)
            self._lines += lines
        except OSError:  # e.g. a full disk: the run goes on, only its crash record is missing
            log.exception("crash journal %s: write failed", self.path)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
