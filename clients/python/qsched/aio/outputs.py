"""What a run produced: `JobResult` (success) or `JobError` (failure), and `JobOutputProxy`,
the collection wrapper used for `job.outputs`, `job.history` and `CompositeJob.outputs`.

Truthiness follows the OQC SDK: a result is falsy (`ok` True); an error is truthy exactly when
its code is not None (`is_error`). Each output carries the settings that produced it (its
memento), so `reexecute()` / `resubmit()` re-run the parent job with exactly those settings."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from qsched.aio.transport import Transport


class OutputOwner(Protocol):
    """What an output needs of the job that produced it (a `qsched.aio.Job`)."""

    transport: Transport | None

    def reconfigure(self, memento: Any = None, **overrides: Any) -> Any: ...
    async def submit(self, *, timeout_s: float = ...) -> Any: ...
    async def execute(self, *, timeout_s: float | None = ...) -> Any: ...


@dataclass(eq=False)
class JobOutput:
    """Common fields of a result or an error."""

    job_id: str | None = None
    task_id: str | None = None
    device: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # the memento: payload of the run
    received: datetime | None = None
    attempt: int = 0
    timings: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    job: OutputOwner | None = field(default=None, repr=False)

    # -- the memento, in the names the OQC SDK uses ----------------------------------------------
    @property
    def qpu_id(self) -> str | None:
        return self.device

    @property
    def program(self) -> str | list[str] | None:
        programs = self.settings.get("programs")
        if programs is None:
            return None
        return programs[0] if len(programs) == 1 else list(programs)

    @property
    def experiment(self) -> str | None:
        if self.settings.get("kind") != "lab_experiment":
            return None
        return f"{self.settings['experiment_module']}.{self.settings['experiment_class']}"

    @property
    def config(self) -> Any:
        """The run's config: a lab experiment's settings, a benchmark's config, a circuit run's
        compiler options (as `Job.config` holds them; {} when none were given)."""
        if self.settings.get("kind") == "circuit":
            return self.settings.get("compiler_options") or {}
        return self.settings.get("config")

    @property
    def ok(self) -> bool:
        return not bool(self)

    @property
    def is_error(self) -> bool:
        return bool(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JobOutput) or type(other) is not type(self):
            return NotImplemented
        return (self.device, self.task_id, self.settings) == (other.device, other.task_id, other.settings)

    __hash__ = None  # type: ignore[assignment]

    def _parent(self) -> OutputOwner:
        if self.job is None:
            raise RuntimeError("this output is not attached to a job (load the job to re-run it)")
        return self.job

    async def resubmit(self) -> OutputOwner:
        """Restore this output's settings on its job and submit a new run (not waiting for it)."""
        job = self._parent()
        job.reconfigure(memento=self)
        await job.submit()
        return job

    async def reexecute(self, *, timeout_s: float | None = 120.0) -> JobOutputProxy:
        """Restore this output's settings on its job and execute a new run."""
        job = self._parent()
        job.reconfigure(memento=self)
        return await job.execute(timeout_s=timeout_s)

    def _common_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "task_id": self.task_id,
            "device": self.device,
            "settings": self.settings,
            "received": self.received.isoformat() if self.received else None,
            "attempt": self.attempt,
            "timings": self.timings,
            "metrics": self.metrics,
            "metadata": self.metadata,
        }

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def from_dict(data: dict[str, Any]) -> JobOutput:
        if not isinstance(data, dict):
            raise ValueError(f"an output must be an object, got {type(data).__name__}")
        kind = data.get("kind")
        common = {
            "job_id": data.get("job_id"),
            "task_id": data.get("task_id"),
            "device": data.get("device"),
            "settings": data.get("settings") or {},
            "received": datetime.fromisoformat(data["received"]) if data.get("received") else None,
            "attempt": int(data.get("attempt") or 0),
            "timings": data.get("timings"),
            "metrics": data.get("metrics"),
            "metadata": data.get("metadata"),
        }
        if kind == "result":
            return JobResult(
                data=data.get("data") or {},
                data_file_path=data.get("data_file_path"),
                config_revisions=data.get("config_revisions") or {},
                **common,
            )
        if kind == "error":
            return JobError(code=data.get("code"), message=data.get("message") or "", **common)
        raise ValueError(f"unknown output kind {kind!r} (expected 'result' or 'error')")


@dataclass(eq=False, repr=False)
class JobResult(JobOutput):
    """A successful run. `data` holds the run's scalar results (the executor's summary, e.g.
    fit values); the arrays are in the HDF5 file: `await result.load_data()`."""

    data: dict[str, Any] = field(default_factory=dict)
    data_file_path: str | None = None
    config_revisions: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"JobResult(job_id={self.job_id!r}, task_id={self.task_id!r}, data={self.data!r})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "result",
            **self._common_dict(),
            "data": self.data,
            "data_file_path": self.data_file_path,
            "config_revisions": self.config_revisions,
        }

    async def load_data(self):
        """The run's arrays and config (qsched.data.RunData); fetched from the scheduler if needed."""
        transport = self._parent().transport
        if transport is None or self.job_id is None:
            raise RuntimeError("this output's job has no client; load it with Client.load()")
        return await transport.load_data(self.job_id, self.task_id)


@dataclass(eq=False, repr=False)
class JobError(JobOutput):
    """A failed run (or a refused submit). `code` is the reason, e.g. "PROGRAM_ERROR",
    "EXECUTOR_LOST", "KIND_NOT_SUPPORTED"; truthy iff code is not None."""

    code: str | None = None
    message: str = ""

    def __bool__(self) -> bool:
        return self.code is not None

    @property
    def short(self) -> str:
        return f"({self.code}){self.message}"

    def __repr__(self) -> str:
        return f"JobError({self.short!r}, job_id={self.job_id!r}, task_id={self.task_id!r})"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "error", **self._common_dict(), "code": self.code, "message": self.message}


class AttrPolicy(enum.Enum):
    """What attribute access on a proxy of several items does."""

    RAISE = "raise"
    FIRST = "first"


class JobOutputProxy(Sequence):
    """A read-only sequence of outputs with a query interface. With exactly one item, unknown
    attributes are delegated to it (`job.outputs.data`); with several they raise AttributeError."""

    def __init__(self, items: Sequence[JobOutput] = (), policy: AttrPolicy = AttrPolicy.RAISE):
        self._items = list(items)
        self._policy = policy

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[JobOutput]:
        return iter(self._items)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return JobOutputProxy(self._items[index], self._policy)
        return self._items[index]

    def __repr__(self) -> str:
        return f"JobOutputProxy({self._items!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JobOutputProxy):
            return self._items == other._items
        if isinstance(other, list):
            return self._items == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    @property
    def first(self) -> JobOutput:
        if not self._items:
            raise IndexError("no outputs")
        return self._items[0]

    @property
    def last(self) -> JobOutput:
        if not self._items:
            raise IndexError("no outputs")
        return self._items[-1]

    @property
    def one(self) -> JobOutput:
        if len(self._items) != 1:
            raise ValueError(f"expected exactly one output, there are {len(self._items)}")
        return self._items[0]

    def all(self) -> list[JobOutput]:
        return list(self._items)

    def map(self, fn: Callable[[JobOutput], Any]) -> list[Any]:
        return [fn(item) for item in self._items]

    def filter(self, predicate: Callable[[JobOutput], bool]) -> JobOutputProxy:
        return JobOutputProxy([i for i in self._items if predicate(i)], self._policy)

    def results(self) -> JobOutputProxy:
        return self.filter(lambda i: isinstance(i, JobResult))

    def errors(self) -> JobOutputProxy:
        return self.filter(lambda i: isinstance(i, JobError))

    @property
    def any_error(self) -> bool:
        return any(bool(i) for i in self._items)

    @property
    def all_ok(self) -> bool:
        return all(i.ok for i in self._items)

    def raise_for_error(self) -> JobOutputProxy:
        for item in self._items:
            if isinstance(item, JobError) and item.code is not None:
                raise RuntimeError(f"Job failed ({item.code}): {item.message}")
        return self

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        items = self.__dict__.get("_items", [])
        if len(items) == 1 or (items and self._policy is AttrPolicy.FIRST):
            return getattr(items[0], name)
        raise AttributeError(
            f"{name!r}: the proxy holds {len(items)} outputs; use .first, .one, .all() or .map()"
        )
