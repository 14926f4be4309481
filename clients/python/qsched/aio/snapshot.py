"""Versioned JSON snapshots of jobs: `job.save(path)`, `Client.load(path)`. This module holds the
format (header, checks, files); `Job` and `CompositeJob` write and read their own fields.

    {"schema_version": "1", "kind": "job", "job_id": ..., "task_id": ..., "state": ..., "last_seq": ...,
     "device": ..., "settings": {...}, "priority": ..., "labels": {...}, "fetch_diagnostics": ...,
     "raise_on_error": ..., "timings": ..., "metrics": ..., "metadata": ...,
     "result": {...}|null, "error": {...}|null, "history": [{"kind": "result"|"error", ...}]}
    {"schema_version": "1", "kind": "composite", "max_concurrency": 8, "jobs": [<job snapshot>...]}

A job saved in flight (SUBMITTED/RUNNING) resumes following the same job, from the saved event
seq, on `execute()`. Invalid JSON, another schema version, an unknown kind or missing fields
are refused with `SnapshotError` (a ValueError) naming the problem."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

SCHEMA_VERSION = "1"
KINDS = ("job", "composite")


class SnapshotError(ValueError):
    """A snapshot this SDK cannot load."""


def header(kind: str) -> dict[str, Any]:
    """The first fields of a snapshot of `kind` ("job" or "composite")."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "saved_at": datetime.now().astimezone().isoformat(),
    }


def write(path: str | Path, snapshot: dict[str, Any]) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(snapshot, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read(path: str | Path) -> Any:
    text = Path(path).read_text()  # FileNotFoundError propagates
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SnapshotError(f"{path}: not valid JSON ({exc})") from None


def require(data: dict[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    """`data[key]`, refused with SnapshotError when missing or of another type."""
    if key not in data:
        raise SnapshotError(f"{where}: missing field {key!r}")
    value = data[key]
    if not isinstance(value, types):
        raise SnapshotError(f"{where}: field {key!r} has the wrong type ({type(value).__name__})")
    return value


def kind_of(data: Any, where: str) -> str:
    """The snapshot's kind, after checking it is one this SDK reads."""
    if not isinstance(data, dict):
        raise SnapshotError(f"{where}: a snapshot is a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        if isinstance(version, str) and version.isdigit() and int(version) > int(SCHEMA_VERSION):
            raise SnapshotError(
                f"{where}: snapshot schema version {version} is newer than this SDK reads "
                f"({SCHEMA_VERSION}); upgrade qsched"
            )
        raise SnapshotError(f"{where}: unsupported snapshot schema version {version!r} (expected '1')")
    kind = data.get("kind")
    if kind not in KINDS:
        raise SnapshotError(f"{where}: unknown snapshot kind {kind!r} (expected 'job' or 'composite')")
    return kind
