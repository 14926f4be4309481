"""Getting a run's HDF5 data file and reading it, with or without a filesystem shared with the executor.

`locate()` answers with a local path holding exactly the run's file:
1. a copy already in the cache (`<cache>/<job_id>/<task_id>/<file>`, verified when it was written);
2. the path the executor reported, when it exists here and its SHA-256 equals the one the
   scheduler streams with the first chunk of FetchJobData (the rest of the stream is not read);
3. otherwise the file is streamed with FetchJobData into the cache and checked (size and SHA-256).
`JobClient.wait_for_completion` puts a small file into the cache itself (`keep_run_file`) when it
comes with the job's terminal event (WatchJobRequest.include_data): no FetchJobData then.
If the scheduler cannot stream files (an older scheduler) the local path is used when it exists.

Reading needs h5py and numpy (`pip install 'qsched[data]'`); they are imported only here, only
when a file is read. `SlabFile` mimics the seed's `slab.datamanagement.SlabFile` for old notebooks."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.errors import (
    FailedPrecondition,
    NotFound,
    QschedError,
    Unavailable,
    Unimplemented,
    from_rpc_error,
)

CACHE_ENV = "QSCHED_CACHE_DIR"
_SIDE = ".sha256"


def cache_dir() -> Path:
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("qsched")) / "data"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class NoDataFile(FailedPrecondition):
    """The run has no data file (not finished, failed before writing, or a circuit run)."""

    def __init__(self, message: str):
        super().__init__(grpc.StatusCode.FAILED_PRECONDITION, "NO_DATA_FILE", message)


@dataclass
class RunRef:
    job_id: str
    task_id: str
    data_file_path: str
    state: int


def find_run(stub, job_id: str, task_id: str | None = None, timeout: float = 30.0) -> RunRef:
    """The job's latest run, or the run with `task_id` (needs ListRuns for older runs)."""
    try:
        job = stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=timeout).job
        run = job.current_run if job.HasField("current_run") else None
        if task_id and (run is None or run.task_id != task_id):
            run = None
            token = ""
            while run is None:
                page = stub.ListRuns(pb.ListRunsRequest(job_id=job_id, page_token=token), timeout=timeout)
                run = next((r for r in page.runs if r.task_id == task_id), None)
                token = page.next_page_token
                if not token:
                    break
            if run is None:
                raise NotFound(grpc.StatusCode.NOT_FOUND, "RUN_NOT_FOUND", f"{job_id} has no run {task_id}")
    except grpc.RpcError as error:
        raise from_rpc_error(error) from None
    if run is None:
        raise NoDataFile(f"{job_id} has not run yet")
    return RunRef(job_id, run.task_id, run.data_file_path, run.state)


def _cached(target_dir: Path) -> Path | None:
    if not target_dir.is_dir():
        return None
    for side in target_dir.glob("*" + _SIDE):
        candidate = side.with_name(side.name[: -len(_SIDE)])
        if candidate.exists() and candidate.stat().st_size == int(side.read_text().split()[1]):
            return candidate
    return None


def locate(
    stub, job_id: str, task_id: str | None = None, cache: Path | None = None, timeout: float = 30.0
) -> Path:
    """A local path holding the run's data file (see the module docs for how it is found)."""
    return locate_run(stub, find_run(stub, job_id, task_id, timeout), cache)


def run_ref(job: pb.Job) -> RunRef | None:
    """The job's current run as `locate_run` takes it (None before it has one): a caller that
    already holds the job needs no GetJob to find its file."""
    if not job.HasField("current_run"):
        return None
    run = job.current_run
    return RunRef(job.job_id, run.task_id, run.data_file_path, run.state)


def locate_run(stub, ref: RunRef, cache: Path | None = None) -> Path:
    """`locate` for a run already in hand."""
    target_dir = (cache or cache_dir()) / ref.job_id / (ref.task_id or "latest")
    hit = _cached(target_dir)
    if hit is not None:
        return hit
    local = Path(ref.data_file_path) if ref.data_file_path else None
    stream = stub.FetchJobData(pb.FetchJobDataRequest(job_id=ref.job_id, task_id=ref.task_id))
    try:
        first = next(stream)
    except StopIteration:
        raise NoDataFile(f"{ref.job_id}: the scheduler sent no data") from None
    except grpc.RpcError as error:
        err = from_rpc_error(error)
        if isinstance(err, Unimplemented | Unavailable) and local is not None and local.exists():
            print(f"qsched: using {local} unverified ({err.code.name}: {err.message})", file=sys.stderr)
            return local
        if not ref.data_file_path and isinstance(err, NotFound | FailedPrecondition):
            raise NoDataFile(f"{ref.job_id}: no data file ({err.message})") from None
        raise err from None
    try:
        if local is not None and local.exists() and first.sha256 and file_sha256(local) == first.sha256:
            return local
        return _receive(first, stream, target_dir, ref)
    finally:
        stream.cancel()


def keep_run_file(
    ref: RunRef, file_name: str, sha256: str, content: bytes, cache: Path | None = None
) -> Path:
    """A run's whole file that came with its terminal event (WatchJobResponse.data_file) into the
    cache, where and as `locate_run` would have stored it after FetchJobData (checked the same way)."""
    sha = hashlib.sha256(content).hexdigest()
    if sha256 and sha != sha256:
        raise QschedError(grpc.StatusCode.DATA_LOSS, "SHA256_MISMATCH", f"{file_name}: checksum mismatch")
    target_dir = (cache or cache_dir()) / ref.job_id / (ref.task_id or "latest")
    name = Path(file_name or Path(ref.data_file_path).name or f"{ref.job_id}.h5").name
    target_dir.mkdir(parents=True, exist_ok=True)
    final = target_dir / name
    # No fsync, and no temporary name: this is a cache, and the .sha256 side file, written last,
    # is what makes a copy count (`_cached`). A copy a crash cuts short has none, or fails its
    # size check, and is fetched again.
    final.write_bytes(content)
    (target_dir / (name + _SIDE)).write_text(f"{sha} {len(content)}\n")
    return final


def _receive(first, stream, target_dir: Path, ref: RunRef) -> Path:
    name = Path(first.file_name or Path(ref.data_file_path).name or f"{ref.job_id}.h5").name
    target_dir.mkdir(parents=True, exist_ok=True)
    final = target_dir / name
    tmp = target_dir / (name + ".part")
    digest = hashlib.sha256()
    size = 0
    try:
        with open(tmp, "wb") as out:
            message = first
            while True:
                if message.offset != size:
                    raise QschedError(
                        grpc.StatusCode.DATA_LOSS, "BAD_CHUNK", f"chunk at {message.offset}, expected {size}"
                    )
                out.write(message.chunk)
                digest.update(message.chunk)
                size += len(message.chunk)
                if first.total_size and size >= first.total_size:
                    break  # all of it: checked below, the stream's end is not waited for
                try:
                    message = next(stream)
                except StopIteration:
                    break
        if first.total_size and size != first.total_size:
            raise QschedError(
                grpc.StatusCode.DATA_LOSS, "SIZE_MISMATCH", f"got {size} bytes of {first.total_size}"
            )
        sha = digest.hexdigest()
        if first.sha256 and sha != first.sha256:
            raise QschedError(grpc.StatusCode.DATA_LOSS, "SHA256_MISMATCH", f"{name}: checksum mismatch")
        os.replace(tmp, final)
        (target_dir / (name + _SIDE)).write_text(f"{sha} {size}\n")
    except grpc.RpcError as error:
        raise from_rpc_error(error) from None
    finally:
        tmp.unlink(missing_ok=True)
    return final


# -- reading ------------------------------------------------------------------------------------------------
def _decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


@dataclass
class RunData(Mapping):
    """A run's data: `arrays` (dataset name -> numpy array; groups flattened as "a/b"), `attrs`
    (root attributes, JSON decoded), `config` (the run's full config when the file records it),
    `dataset_attrs` (per-dataset attributes, e.g. units). Indexing reads arrays: data["xpts"]."""

    path: Path
    arrays: dict[str, Any] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    dataset_attrs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        for key in ("config", "expt_config", "expt"):
            value = self.attrs.get(key)
            if isinstance(value, dict):
                return value
        return {k: v for k, v in self.attrs.items() if isinstance(v, dict)}

    def __getitem__(self, key: str) -> Any:
        return self.arrays[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.arrays)

    def __len__(self) -> int:
        return len(self.arrays)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}{tuple(getattr(v, 'shape', ()))}" for k, v in self.arrays.items())
        return f"RunData({self.path.name}: {shapes})"


def read(path: str | Path) -> RunData:
    """Read every dataset and attribute of an HDF5 run file into memory."""
    import h5py
    import numpy as np

    out = RunData(Path(path))
    with h5py.File(path, "r") as f:
        out.attrs = {k: _decode_attr(v) for k, v in f.attrs.items()}

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                out.arrays[name] = np.asarray(obj[()])
                if obj.attrs:
                    out.dataset_attrs[name] = {k: _decode_attr(v) for k, v in obj.attrs.items()}

        f.visititems(visit)
    return out


def __getattr__(name: str) -> Any:
    if name == "SlabFile":
        return _slab_file()
    raise AttributeError(name)


_SLAB: Any = None


def _slab_file() -> Any:
    """h5py.File with the seed's `load_config()` (the `config` root attribute as a dict)."""
    global _SLAB
    if _SLAB is None:
        import h5py

        class SlabFile(h5py.File):
            def load_config(self) -> dict[str, Any]:
                for key in ("config", "expt_config"):
                    if key in self.attrs:
                        value = _decode_attr(self.attrs[key])
                        return value if isinstance(value, dict) else {"value": value}
                return {}

        _SLAB = SlabFile
    return _SLAB
