"""The run contract between the scheduler and a lab device's executor, in domain terms.

Defined once: the scheduler's executor port and the executor itself both speak these types,
and `qsched_runtime.execution_wire` is the only place that maps them to qsched.executor.v1.

The flow: the scheduler opens the executor's run queue (`RunCursor`s for the runs it follows;
the executor answers with the runs it holds, `HeldRun`), appends `ExecutionRequest`s in start
order, and reads `ExecutionUpdate`s of every run as they come. A run's updates carry a
per-run `seq` from 1: `Accepted`, `Started`, `Progress` and `Output`..., then one terminal body
(`Succeeded`, `Failed` or `Cancelled`). Times are seconds since the epoch (UTC), as the
executor's clock read them.

Live output (docs/experiments.md): `Output` carries the experiment's log lines, sequenced and
kept like any update but capped per run and per second; `PartialData` (the data averaged over the
rounds so far) is not sequenced and not kept: it rides an `UpdateBatch` beside the updates, at
most the latest one per run, and is dropped when nobody is there to send it to."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from qsched_core.payloads import LabExperiment
from qsched_core.provenance import CodeProvenance, ResolvedRevision


@dataclass(frozen=True)
class PinnedRevision:
    """A config revision pinned for a run: the executor loads it by id and checks its hash."""

    config_type: str
    revision_id: str
    sha256: str


@dataclass(frozen=True)
class Violation:
    """One thing wrong with an experiment: the parameter (e.g. "expt.gain") and what."""

    field: str
    description: str


@dataclass(frozen=True)
class DataRef:
    """A run's data file: a name relative to the executor's data root, not a host path."""

    name: str
    sha256: str = ""
    size_bytes: int = 0


@dataclass(frozen=True)
class ScheduleDecision:
    """Why the scheduler started a run when it did (its queue policy's reason), for the data file."""

    policy: str
    summary: str
    details_json: str = "{}"


@dataclass(frozen=True)
class ExecutionRequest:
    """One run for the board."""

    job_id: str
    task_id: str
    owner: str
    experiment: LabExperiment
    configs: tuple[PinnedRevision, ...] = ()
    # W3C traceparent of the job's trace: the run's spans join it ("" = none).
    trace_parent: str = ""
    decision: ScheduleDecision | None = None  # the scheduler's decision log for this run
    # A yielded run's data file to continue from (its completed rounds; None = from the start).
    resume_from: DataRef | None = None


class UpdateKind(enum.Enum):
    ACCEPTED = "accepted"
    STARTED = "started"
    PROGRESS = "progress"
    OUTPUT = "output"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({UpdateKind.SUCCEEDED, UpdateKind.FAILED, UpdateKind.CANCELLED})


@dataclass(frozen=True)
class Accepted:
    """The executor took the run (it waits for the board, in queue order)."""

    kind = UpdateKind.ACCEPTED


@dataclass(frozen=True)
class Started:
    """The run is on the board."""

    kind = UpdateKind.STARTED


@dataclass(frozen=True)
class Progress:
    """Averaging progress, sent between rounds (rate-limited)."""

    rounds_done: int = 0
    rounds_total: int = 0
    reps_done: int = 0
    fraction: float = 0.0

    kind = UpdateKind.PROGRESS


@dataclass(frozen=True)
class Output:
    """Log lines the experiment wrote, in order, between rounds. The executor caps them per run
    (lines and bytes) and per second; `dropped` lines over the caps went just before these (a
    marker line among `lines` says so too)."""

    lines: tuple[str, ...] = ()
    dropped: int = 0

    kind = UpdateKind.OUTPUT


@dataclass(frozen=True)
class Series:
    """One 1-D array of a run's data (a dataset of its data file), e.g. avgi."""

    name: str
    values: tuple[float, ...]
    long_name: str = ""
    units: str = ""


@dataclass(frozen=True)
class PartialData:
    """A running run's data averaged over the rounds done so far (live output; not sequenced)."""

    task_id: str
    job_id: str
    rounds_done: int
    rounds_total: int
    time: float
    series: tuple[Series, ...] = ()


# A finished run's data file rides its terminal update when it is at most this big (larger: the
# scheduler fetches it with FetchData when asked), and at most INLINE_BATCH_MAX_BYTES of such
# files go in one UpdateBatch (the rest go without: the run queue's messages stay far below
# gRPC's 4 MiB default).
INLINE_DATA_MAX_BYTES = 256 * 1024
INLINE_BATCH_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Succeeded:
    """Terminal: the run finished and its data file is written (durably, before this is sent)."""

    data: DataRef | None = None
    summary: Mapping[str, float] = field(default_factory=dict)
    # Hardware-config updates the fit suggests (dotted keys, e.g. "qubit.pi_pulse.gain").
    config_updates: Mapping[str, float] = field(default_factory=dict)
    code: CodeProvenance | None = None  # the code that ran it (also in the data file)
    # The data file's bytes, when small (INLINE_DATA_MAX_BYTES): sent live only, for the
    # scheduler's cache of recent files (never kept with the run's updates); b"" otherwise.
    inline_data: bytes = field(default=b"", repr=False)

    kind = UpdateKind.SUCCEEDED


@dataclass(frozen=True)
class Failed:
    """Terminal: the run failed. `reason` is UPPER_SNAKE (e.g. PROGRAM_ERROR, DISK_FULL)."""

    reason: str
    message: str = ""
    code: CodeProvenance | None = None  # None when it failed before its experiment was loaded

    kind = UpdateKind.FAILED


@dataclass(frozen=True)
class Cancelled:
    """Terminal: the run was stopped (between rounds) or withdrawn before it started."""

    reason: str = "cancelled"
    rounds_done: int = 0
    data: DataRef | None = None  # the rounds completed, in a file marked partial
    code: CodeProvenance | None = None  # None when it never started
    preempted: bool = False  # it yielded at a safe point (CancelRuns.preempt)
    resumable: bool = False  # preempted, and a next run can continue from `data`

    kind = UpdateKind.CANCELLED


UpdateBody = Accepted | Started | Progress | Output | Succeeded | Failed | Cancelled


@dataclass(frozen=True)
class ExecutionUpdate:
    task_id: str
    seq: int
    time: float
    body: UpdateBody

    @property
    def kind(self) -> UpdateKind:
        return self.body.kind

    @property
    def terminal(self) -> bool:
        return self.body.kind.terminal


# -- the run queue ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunCursor:
    """A run the scheduler follows and the last of its updates it recorded (0: none)."""

    task_id: str
    after_seq: int = 0


class HeldState(enum.Enum):
    WAITING = "waiting"  # in the executor's queue, not started
    RUNNING = "running"  # on the board
    ENDED = "ended"  # its terminal update is its last one
    LOST = "lost"  # was on the board when the executor died: it did not finish


@dataclass(frozen=True)
class HeldRun:
    task_id: str
    job_id: str
    state: HeldState
    last_seq: int = 0


@dataclass(frozen=True)
class BoardInfo:
    """The board an executor owns and what it is doing."""

    board_id: str
    board_uri: str = ""
    board_model: str = ""
    qick_version: str = ""
    config_sha256: str = ""
    generator_count: int = 0
    readout_count: int = 0
    simulated: bool = False
    current_task_id: str = ""
    current_job_id: str = ""
    waiting_task_ids: tuple[str, ...] = ()
    data_root: str = ""

    @property
    def busy(self) -> bool:
        return bool(self.current_task_id)


@dataclass(frozen=True)
class QueueOpened:
    """The executor's answer to opening its run queue: every run it holds (waiting ones in
    start order) and its board."""

    runs: tuple[HeldRun, ...]
    board: BoardInfo


@dataclass(frozen=True)
class RefusedRun:
    task_id: str
    reason: str
    message: str = ""
    violations: tuple[Violation, ...] = ()


@dataclass(frozen=True)
class Enqueued:
    """The answer to appending runs. With `queue_moved` nothing was taken: the executor's last
    run was not the one the scheduler named (`tail_task_id` is the one it is)."""

    accepted: tuple[str, ...] = ()
    refused: tuple[RefusedRun, ...] = ()
    queue_moved: bool = False
    tail_task_id: str = ""
    request_id: int = 0  # the command's id, echoed


@dataclass(frozen=True)
class Withdrawn:
    """The answer to taking runs back: withdrawn ones never touched the board."""

    withdrawn: tuple[str, ...] = ()
    started: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    request_id: int = 0


@dataclass(frozen=True)
class Cancelling:
    """The answer to stopping runs: each of `cancelling` ends with a `Cancelled` update (waiting
    ones at once, a running one between rounds); `ignored` had ended or were unknown."""

    cancelling: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    request_id: int = 0


@dataclass(frozen=True)
class UpdateBatch:
    """Updates of runs as they happened (per run in seq order), sent together, and the latest
    partial data of runs on the board (at most one per run)."""

    updates: tuple[ExecutionUpdate, ...] = ()
    partials: tuple[PartialData, ...] = ()


# The scheduler's commands on the run queue; `request_id` is echoed in the answer.
@dataclass(frozen=True)
class OpenQueue:
    """First and once: the runs the scheduler follows (their updates after each cursor are replayed)."""

    cursors: tuple[RunCursor, ...] = ()


@dataclass(frozen=True)
class EnqueueRuns:
    """Append `runs` (in start order) if the executor's last run is `after_task_id` ("" = none)."""

    request_id: int
    after_task_id: str
    runs: tuple[ExecutionRequest, ...]


@dataclass(frozen=True)
class WithdrawRuns:
    request_id: int
    task_ids: tuple[str, ...]


@dataclass(frozen=True)
class CancelRuns:
    """Stop runs. With `preempt`, only a run on the board is asked to yield: it stops between
    averaging rounds and ends `Cancelled(preempted=True)` with its completed rounds saved."""

    request_id: int
    task_ids: tuple[str, ...]
    reason: str = ""
    preempt: bool = False


@dataclass(frozen=True)
class WatchPartials:
    """The jobs whose runs' partial data someone watches now (replaces the last set; no answer).
    The executor computes and sends partial data only for their runs: nobody watching, the board
    does none of that work."""

    job_ids: frozenset[str] = frozenset()


QueueCommand = OpenQueue | EnqueueRuns | WithdrawRuns | CancelRuns | WatchPartials
QueueEvent = QueueOpened | UpdateBatch | Enqueued | Withdrawn | Cancelling


@dataclass(frozen=True)
class DataChunk:
    """A piece of a run's data file, in order."""

    offset: int
    data: bytes
    total_size: int
    sha256: str = ""  # on the first chunk
    file_name: str = ""


@dataclass(frozen=True)
class Validated:
    """The answer to checking an experiment at submit: what is wrong with it, and the commit of
    the experiment repository its revision resolved to (None: not from the repository)."""

    violations: tuple[Violation, ...] = ()
    resolved: ResolvedRevision | None = None
