"""One HDF5 file per run: `<data_root>/<YYYY-MM-DD>/<JOB-ID>.h5` (a later run of the same job
gets `-r2`, `-r3`, ...). Written under a temporary name and renamed when complete, so a crash
never leaves a truncated file under the final name. Layout: docs/data-files.md."""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from qsched_core.provenance import CodeProvenance

FORMAT = "qsched-run/1"
TMP_SUFFIX = ".partial-write"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def run_file_path(data_root: Path, job_id: str, when: datetime) -> Path:
    """A fresh path for this job's next run (never overwrites an existing file)."""
    day = data_root / when.strftime("%Y-%m-%d")
    day.mkdir(parents=True, exist_ok=True)
    stem = _SAFE.sub("_", job_id) or "run"
    candidate = day / f"{stem}.h5"
    n = 1
    while candidate.exists() or candidate.with_name(candidate.name + TMP_SUFFIX).exists():
        n += 1
        candidate = day / f"{stem}-r{n}.h5"
    return candidate


def _attr(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=_jsonable)
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def write_run_file(
    path: Path,
    datasets: dict[str, Any],
    attrs: dict[str, Any],
    dataset_attrs: dict[str, dict[str, Any]] | None = None,
) -> tuple[str, int]:
    """Write atomically; returns (sha256 hex, size in bytes). `dataset_attrs` label datasets
    (e.g. {"xpts": {"long_name": "delay", "units": "us"}})."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            for key, value in attrs.items():
                f.attrs[key] = _attr(value)
            for name, value in datasets.items():
                arr = np.asarray(value)
                if arr.dtype == object:
                    arr = arr.astype("S")
                dataset = f.create_dataset(name, data=arr)
                for key, value in (dataset_attrs or {}).get(name, {}).items():
                    dataset.attrs[key] = _attr(value)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return file_sha256(path), path.stat().st_size


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- the code a run ran with (issue 20) -------------------------------------------------------------
def code_attrs(code: CodeProvenance) -> dict[str, Any]:
    """The root attributes that record a run's code (docs/data-files.md): pass them with the
    others to `write_run_file`."""
    return code.to_dict()


def write_code_provenance(target: h5py.File | h5py.Group, code: CodeProvenance) -> None:
    """Write the code attributes onto an open file (or group)."""
    for key, value in code_attrs(code).items():
        target.attrs[key] = _attr(value)


def read_code_provenance(path: Path) -> CodeProvenance | None:
    """The code a run's file records; None for a file written before it was recorded."""
    with h5py.File(path, "r") as f:
        attrs = dict(f.attrs)
    if "qsched_version" not in attrs:
        return None
    return CodeProvenance.from_dict(attrs)
