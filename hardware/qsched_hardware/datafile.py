"""One HDF5 file per run: `<data_root>/<YYYY-MM-DD>/<JOB-ID>-<task id>.h5`, named relative to
the data root (`run_file_name`), so the name is known before the file is written and two runs
never share one. Written under a temporary name and renamed when complete and fsynced, so a
crash never leaves a truncated file under the final name. Layout: docs/data-files.md.

The file is built in memory (HDF5's core driver) and reaches the disk in one write: HDF5's
many small writes never hit the file system. Root attributes, the bulk of a short run's file,
go through h5py's low-level API (the high-level one costs about three times as much per
attribute). `write_run_file` is a plain function of picklable arguments, so the executor can
run it in writer processes."""

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
from h5py import h5a, h5f, h5g, h5p, h5s, h5t

from qsched_core.provenance import CodeProvenance

FORMAT = "qsched-run/1"
TMP_SUFFIX = ".partial-write"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_STR = h5py.string_dtype("utf-8")


def run_file_name(job_id: str, task_id: str, when: datetime) -> str:
    """The run's file name relative to the data root (the DataRef name)."""
    stem = _SAFE.sub("_", job_id) or "run"
    task = _SAFE.sub("_", task_id)
    return (
        f"{when.strftime('%Y-%m-%d')}/{stem}-{task}.h5" if task else f"{when.strftime('%Y-%m-%d')}/{stem}.h5"
    )


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


def _set_attrs(obj_id: Any, attrs: dict[str, Any]) -> None:
    """Attributes through the low-level API; strings as variable-length UTF-8 (what the
    high-level API writes, so readers get `str`)."""
    scalar = h5s.create(h5s.SCALAR)
    for key, raw in attrs.items():
        value = _attr(raw)
        data = np.asarray(value, dtype=_STR) if isinstance(value, str) else np.asarray(value)
        if data.dtype.kind in "OU":
            data = np.asarray(str(value), dtype=_STR)
        space = h5s.create_simple(data.shape) if data.shape else scalar
        h5a.create(obj_id, key.encode(), h5t.py_create(data.dtype, logical=True), space).write(data)


def build_run_file(
    datasets: dict[str, Any], attrs: dict[str, Any], dataset_attrs: dict[str, dict[str, Any]] | None = None
) -> bytes:
    """The file's bytes, built in memory."""
    fapl = h5p.create(h5p.FILE_ACCESS)
    fapl.set_fapl_core(backing_store=False)
    fid = h5f.create(b"qsched-run-in-memory", h5f.ACC_TRUNC, fapl=fapl)
    try:
        root = h5g.open(fid, b"/")
        _set_attrs(root, {"format": FORMAT, **attrs})
        if datasets:
            group = h5py.Group(root)
            for name, value in datasets.items():
                arr = np.asarray(value)
                if arr.dtype == object:
                    arr = arr.astype("S")
                dataset = group.create_dataset(name, data=arr)
                _set_attrs(dataset.id, (dataset_attrs or {}).get(name, {}))
        h5f.flush(fid)
        return fid.get_file_image()
    finally:
        fid.close()


def write_run_file(
    path: Path | str,
    datasets: dict[str, Any],
    attrs: dict[str, Any],
    dataset_attrs: dict[str, dict[str, Any]] | None = None,
) -> tuple[str, int]:
    """Write atomically (temporary name, fsync, rename); returns (sha256 hex, size in bytes).
    `dataset_attrs` label datasets (e.g. {"xpts": {"long_name": "delay", "units": "us"}}).
    A full disk raises OSError(ENOSPC) and leaves nothing behind."""
    image = build_run_file(datasets, attrs, dataset_attrs)
    write_image(path, image)
    return hashlib.sha256(image).hexdigest(), len(image)


def write_image(path: Path | str, image: bytes) -> None:
    """Write a built file's bytes atomically and durably (temporary name, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(image)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
