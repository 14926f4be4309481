"""qsched.executor.v1 messages <-> the run contract of `qsched_core.execution`, both ways.

The one converter for the executor's API: the executor's servicer and the scheduler's executor
client both use it, so a field added to the contract is mapped here once. `*_to_pb` builds a
message from a domain value, `*_from_pb` reads one back; the run queue's commands and events
have one function per direction for the whole oneof (`command_*`, `event_*`)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from google.protobuf import timestamp_pb2

from qsched.api.executor.v1 import executor_pb2 as pb
from qsched_core.execution import (
    Accepted,
    BoardInfo,
    Cancelled,
    Cancelling,
    CancelRuns,
    DataChunk,
    DataRef,
    Enqueued,
    EnqueueRuns,
    ExecutionRequest,
    ExecutionUpdate,
    Failed,
    HeldRun,
    HeldState,
    OpenQueue,
    Output,
    PartialData,
    PinnedRevision,
    Progress,
    QueueCommand,
    QueueEvent,
    QueueOpened,
    RefusedRun,
    RunCursor,
    ScheduleDecision,
    Series,
    Started,
    Succeeded,
    UpdateBatch,
    Validated,
    Violation,
    WatchPartials,
    Withdrawn,
    WithdrawRuns,
)
from qsched_core.payloads import LabExperiment
from qsched_core.provenance import CodeOrigin, CodeProvenance, PackageSource, ResolvedRevision


# -- small values ----------------------------------------------------------------------------------
def experiment_to_pb(experiment: LabExperiment) -> pb.Experiment:
    """Only what the executor runs: named revisions and overrides were resolved into pinned
    configs by the scheduler, so they do not cross."""
    return pb.Experiment(
        experiment_class=experiment.experiment_class,
        experiment_module=experiment.experiment_module,
        expt_config_json=experiment.expt_config_json,
        experiment_revision=experiment.experiment_revision,
        experiment_commit=experiment.experiment_commit,
        experiment_tree_dirty=experiment.experiment_tree_dirty,
    )


def experiment_from_pb(msg: pb.Experiment) -> LabExperiment:
    return LabExperiment(
        experiment_class=msg.experiment_class,
        experiment_module=msg.experiment_module,
        expt_config_json=msg.expt_config_json or "{}",
        experiment_revision=msg.experiment_revision,
        experiment_commit=msg.experiment_commit,
        experiment_tree_dirty=msg.experiment_tree_dirty,
    )


ORIGIN_TO_PB = {origin: pb.CodeOrigin.Value(f"CODE_ORIGIN_{origin.name}") for origin in CodeOrigin}
ORIGIN_FROM_PB = {v: k for k, v in ORIGIN_TO_PB.items()}


def package_to_pb(source: PackageSource) -> pb.PackageSource:
    return pb.PackageSource(
        name=source.name, version=source.version, commit=source.commit, dirty=source.dirty
    )


def package_from_pb(msg: pb.PackageSource) -> PackageSource:
    return PackageSource(msg.name, msg.version, msg.commit, msg.dirty)


def code_to_pb(code: CodeProvenance | None) -> pb.CodeProvenance | None:
    if code is None:
        return None
    return pb.CodeProvenance(
        qsched=package_to_pb(code.qsched),
        qick_version=code.qick_version,
        experiment=package_to_pb(code.experiment) if code.experiment is not None else None,
        experiment_origin=ORIGIN_TO_PB[code.experiment_origin],
        experiment_revision=code.experiment_revision,
    )


def code_from_pb(msg: pb.CodeProvenance) -> CodeProvenance:
    return CodeProvenance(
        qsched=package_from_pb(msg.qsched),
        qick_version=msg.qick_version,
        experiment=package_from_pb(msg.experiment) if msg.HasField("experiment") else None,
        experiment_origin=ORIGIN_FROM_PB.get(msg.experiment_origin, CodeOrigin.BUILTIN),
        experiment_revision=msg.experiment_revision,
    )


def _code(msg) -> CodeProvenance | None:  # a RunResult, RunError or RunCancelled
    return code_from_pb(msg.code) if msg.HasField("code") else None


def pinned_to_pb(pin: PinnedRevision) -> pb.PinnedConfig:
    return pb.PinnedConfig(config_type=pin.config_type, revision_id=pin.revision_id, sha256=pin.sha256)


def pinned_from_pb(msg: pb.PinnedConfig) -> PinnedRevision:
    return PinnedRevision(msg.config_type, msg.revision_id, msg.sha256)


def pinned_list_from_pb(msgs: Iterable[pb.PinnedConfig]) -> tuple[PinnedRevision, ...]:
    return tuple(pinned_from_pb(m) for m in msgs)


def violation_to_pb(v: Violation) -> pb.Violation:
    return pb.Violation(field=v.field, description=v.description)


def violation_from_pb(msg: pb.Violation) -> Violation:
    return Violation(msg.field, msg.description)


def violations_from_pb(msgs: Iterable[pb.Violation]) -> tuple[Violation, ...]:
    return tuple(violation_from_pb(m) for m in msgs)


def data_ref_to_pb(ref: DataRef) -> pb.DataRef:
    return pb.DataRef(name=ref.name, sha256=ref.sha256, size_bytes=ref.size_bytes)


def data_ref_from_pb(msg: pb.DataRef) -> DataRef:
    return DataRef(msg.name, msg.sha256, msg.size_bytes)


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    # Whole seconds and nanos apart: a float of ~1.7e18 ns would lose the last digits.
    whole = math.floor(seconds)
    nanos = min(999_999_999, round((seconds - whole) * 1e9))
    return timestamp_pb2.Timestamp(seconds=whole, nanos=nanos)


def _seconds(ts: timestamp_pb2.Timestamp) -> float:
    return ts.seconds + ts.nanos / 1e9


# -- requests --------------------------------------------------------------------------------------
def request_to_pb(request: ExecutionRequest) -> pb.ExecutionRequest:
    return pb.ExecutionRequest(
        job_id=request.job_id,
        task_id=request.task_id,
        owner=request.owner,
        experiment=experiment_to_pb(request.experiment),
        configs=[pinned_to_pb(c) for c in request.configs],
        trace_parent=request.trace_parent,
        decision=decision_to_pb(request.decision) if request.decision is not None else None,
        resume_from=data_ref_to_pb(request.resume_from) if request.resume_from is not None else None,
    )


def request_from_pb(msg: pb.ExecutionRequest) -> ExecutionRequest:
    return ExecutionRequest(
        job_id=msg.job_id,
        task_id=msg.task_id,
        owner=msg.owner,
        experiment=experiment_from_pb(msg.experiment),
        configs=pinned_list_from_pb(msg.configs),
        trace_parent=msg.trace_parent,
        decision=decision_from_pb(msg.decision) if msg.HasField("decision") else None,
        resume_from=data_ref_from_pb(msg.resume_from) if msg.HasField("resume_from") else None,
    )


def decision_to_pb(decision: ScheduleDecision) -> pb.ScheduleDecision:
    return pb.ScheduleDecision(
        policy=decision.policy, summary=decision.summary, details_json=decision.details_json
    )


def decision_from_pb(msg: pb.ScheduleDecision) -> ScheduleDecision:
    return ScheduleDecision(msg.policy, msg.summary, msg.details_json or "{}")


# -- updates ---------------------------------------------------------------------------------------
def update_to_pb(update: ExecutionUpdate) -> pb.ExecutionUpdate:
    msg = pb.ExecutionUpdate(task_id=update.task_id, seq=update.seq, time=_timestamp(update.time))
    body = update.body
    if isinstance(body, Accepted):
        msg.accepted.SetInParent()
    elif isinstance(body, Started):
        msg.started.SetInParent()
    elif isinstance(body, Progress):
        msg.progress.CopyFrom(
            pb.RunProgress(
                rounds_done=body.rounds_done,
                rounds_total=body.rounds_total,
                reps_done=body.reps_done,
                fraction=body.fraction,
            )
        )
    elif isinstance(body, Output):
        msg.output.CopyFrom(pb.RunOutput(lines=list(body.lines), dropped=body.dropped))
    elif isinstance(body, Succeeded):
        msg.result.CopyFrom(
            pb.RunResult(
                data=data_ref_to_pb(body.data) if body.data is not None else None,
                summary=dict(body.summary),
                config_updates=dict(body.config_updates),
                code=code_to_pb(body.code),
                inline_data=body.inline_data,
            )
        )
    elif isinstance(body, Failed):
        msg.error.CopyFrom(pb.RunError(reason=body.reason, message=body.message, code=code_to_pb(body.code)))
    elif isinstance(body, Cancelled):
        msg.cancelled.CopyFrom(
            pb.RunCancelled(
                reason=body.reason,
                data=data_ref_to_pb(body.data) if body.data is not None else None,
                rounds_done=body.rounds_done,
                code=code_to_pb(body.code),
                preempted=body.preempted,
                resumable=body.resumable,
            )
        )
    else:  # pragma: no cover - the union is closed
        raise TypeError(f"not an update body: {body!r}")
    return msg


def update_from_pb(msg: pb.ExecutionUpdate) -> ExecutionUpdate:
    which = msg.WhichOneof("update")
    body: Accepted | Started | Progress | Output | Succeeded | Failed | Cancelled
    if which == "accepted":
        body = Accepted()
    elif which == "started":
        body = Started()
    elif which == "progress":
        p = msg.progress
        body = Progress(p.rounds_done, p.rounds_total, p.reps_done, p.fraction)
    elif which == "output":
        body = Output(tuple(msg.output.lines), msg.output.dropped)
    elif which == "result":
        r = msg.result
        body = Succeeded(
            data=data_ref_from_pb(r.data) if r.HasField("data") else None,
            summary=dict(r.summary),
            config_updates=dict(r.config_updates),
            code=_code(r),
            inline_data=r.inline_data,
        )
    elif which == "error":
        body = Failed(msg.error.reason, msg.error.message, _code(msg.error))
    elif which == "cancelled":
        c = msg.cancelled
        body = Cancelled(
            reason=c.reason,
            rounds_done=c.rounds_done,
            data=data_ref_from_pb(c.data) if c.HasField("data") else None,
            code=_code(c),
            preempted=c.preempted,
            resumable=c.resumable,
        )
    else:
        raise ValueError(f"update {msg.task_id}#{msg.seq} has no body")
    return ExecutionUpdate(msg.task_id, msg.seq, _seconds(msg.time), body)


def batch_to_pb(batch: UpdateBatch) -> pb.UpdateBatch:
    return pb.UpdateBatch(
        updates=[update_to_pb(u) for u in batch.updates], partials=[partial_to_pb(p) for p in batch.partials]
    )


def batch_from_pb(msg: pb.UpdateBatch) -> UpdateBatch:
    return UpdateBatch(
        tuple(update_from_pb(u) for u in msg.updates), tuple(partial_from_pb(p) for p in msg.partials)
    )


def partial_to_pb(partial: PartialData) -> pb.RunPartialData:
    return pb.RunPartialData(
        task_id=partial.task_id,
        job_id=partial.job_id,
        rounds_done=partial.rounds_done,
        rounds_total=partial.rounds_total,
        time=_timestamp(partial.time),
        series=[
            pb.DataSeries(name=s.name, values=list(s.values), long_name=s.long_name, units=s.units)
            for s in partial.series
        ],
    )


def partial_from_pb(msg: pb.RunPartialData) -> PartialData:
    return PartialData(
        msg.task_id,
        msg.job_id,
        msg.rounds_done,
        msg.rounds_total,
        _seconds(msg.time),
        tuple(Series(s.name, tuple(s.values), s.long_name, s.units) for s in msg.series),
    )


# -- the board and the runs it holds ---------------------------------------------------------------
_HELD_TO_PB = {
    HeldState.WAITING: pb.HeldRun.STATE_WAITING,
    HeldState.RUNNING: pb.HeldRun.STATE_RUNNING,
    HeldState.ENDED: pb.HeldRun.STATE_ENDED,
    HeldState.LOST: pb.HeldRun.STATE_LOST,
}
_HELD_FROM_PB = {v: k for k, v in _HELD_TO_PB.items()}


def held_to_pb(run: HeldRun) -> pb.HeldRun:
    return pb.HeldRun(
        task_id=run.task_id, job_id=run.job_id, state=_HELD_TO_PB[run.state], last_seq=run.last_seq
    )


def held_from_pb(msg: pb.HeldRun) -> HeldRun:
    state = _HELD_FROM_PB.get(msg.state)
    if state is None:
        raise ValueError(f"held run {msg.task_id} has no state")
    return HeldRun(msg.task_id, msg.job_id, state, msg.last_seq)


def board_to_pb(board: BoardInfo) -> pb.DeviceInfo:
    """`data_root` is the executor's own business: it does not cross."""
    return pb.DeviceInfo(
        board_id=board.board_id,
        board_uri=board.board_uri,
        board_model=board.board_model,
        qick_version=board.qick_version,
        config_sha256=board.config_sha256,
        generator_count=board.generator_count,
        readout_count=board.readout_count,
        state=pb.DeviceInfo.STATE_BUSY if board.busy else pb.DeviceInfo.STATE_IDLE,
        current_task_id=board.current_task_id,
        current_job_id=board.current_job_id,
        simulated=board.simulated,
        waiting_task_ids=list(board.waiting_task_ids),
    )


def board_from_pb(msg: pb.DeviceInfo) -> BoardInfo:
    return BoardInfo(
        board_id=msg.board_id,
        board_uri=msg.board_uri,
        board_model=msg.board_model,
        qick_version=msg.qick_version,
        config_sha256=msg.config_sha256,
        generator_count=msg.generator_count,
        readout_count=msg.readout_count,
        simulated=msg.simulated,
        current_task_id=msg.current_task_id,
        current_job_id=msg.current_job_id,
        waiting_task_ids=tuple(msg.waiting_task_ids),
    )


# -- the run queue: commands (scheduler -> executor) -----------------------------------------------
def cursor_to_pb(cursor: RunCursor) -> pb.RunCursor:
    return pb.RunCursor(task_id=cursor.task_id, after_seq=cursor.after_seq)


def cursor_from_pb(msg: pb.RunCursor) -> RunCursor:
    return RunCursor(msg.task_id, msg.after_seq)


def command_to_pb(command: QueueCommand) -> pb.RunQueueRequest:
    if isinstance(command, OpenQueue):
        return pb.RunQueueRequest(open=pb.OpenRunQueue(cursors=[cursor_to_pb(c) for c in command.cursors]))
    if isinstance(command, EnqueueRuns):
        return pb.RunQueueRequest(
            enqueue=pb.EnqueueRuns(
                request_id=command.request_id,
                after_task_id=command.after_task_id,
                runs=[request_to_pb(r) for r in command.runs],
            )
        )
    if isinstance(command, WithdrawRuns):
        return pb.RunQueueRequest(
            withdraw=pb.WithdrawRuns(request_id=command.request_id, task_ids=list(command.task_ids))
        )
    if isinstance(command, CancelRuns):
        return pb.RunQueueRequest(
            cancel=pb.CancelRuns(
                request_id=command.request_id,
                task_ids=list(command.task_ids),
                reason=command.reason,
                preempt=command.preempt,
            )
        )
    if isinstance(command, WatchPartials):
        return pb.RunQueueRequest(watch_partials=pb.WatchPartials(job_ids=sorted(command.job_ids)))
    raise TypeError(f"not a run-queue command: {command!r}")  # pragma: no cover


def command_from_pb(msg: pb.RunQueueRequest) -> QueueCommand:
    which = msg.WhichOneof("command")
    if which == "open":
        return OpenQueue(tuple(cursor_from_pb(c) for c in msg.open.cursors))
    if which == "enqueue":
        e = msg.enqueue
        return EnqueueRuns(e.request_id, e.after_task_id, tuple(request_from_pb(r) for r in e.runs))
    if which == "withdraw":
        return WithdrawRuns(msg.withdraw.request_id, tuple(msg.withdraw.task_ids))
    if which == "cancel":
        c = msg.cancel
        return CancelRuns(c.request_id, tuple(c.task_ids), c.reason, c.preempt)
    if which == "watch_partials":
        return WatchPartials(frozenset(msg.watch_partials.job_ids))
    raise ValueError("a run-queue request without a command")


# -- the run queue: events (executor -> scheduler) -------------------------------------------------
def refused_to_pb(refused: RefusedRun) -> pb.RefusedRun:
    return pb.RefusedRun(
        task_id=refused.task_id,
        reason=refused.reason,
        message=refused.message,
        violations=[violation_to_pb(v) for v in refused.violations],
    )


def refused_from_pb(msg: pb.RefusedRun) -> RefusedRun:
    return RefusedRun(msg.task_id, msg.reason, msg.message, violations_from_pb(msg.violations))


def event_to_pb(event: QueueEvent) -> pb.RunQueueResponse:
    if isinstance(event, UpdateBatch):
        return pb.RunQueueResponse(updates=batch_to_pb(event))
    if isinstance(event, QueueOpened):
        return pb.RunQueueResponse(
            opened=pb.RunQueueOpened(
                runs=[held_to_pb(r) for r in event.runs], device=board_to_pb(event.board)
            )
        )
    if isinstance(event, Enqueued):
        return pb.RunQueueResponse(
            enqueued=pb.RunsEnqueued(
                request_id=event.request_id,
                accepted_task_ids=list(event.accepted),
                refused=[refused_to_pb(r) for r in event.refused],
                queue_moved=event.queue_moved,
                tail_task_id=event.tail_task_id,
            )
        )
    if isinstance(event, Withdrawn):
        return pb.RunQueueResponse(
            withdrawn=pb.RunsWithdrawn(
                request_id=event.request_id,
                withdrawn_task_ids=list(event.withdrawn),
                started_task_ids=list(event.started),
                unknown_task_ids=list(event.unknown),
            )
        )
    if isinstance(event, Cancelling):
        return pb.RunQueueResponse(
            cancelled=pb.RunsCancelled(
                request_id=event.request_id,
                cancelling_task_ids=list(event.cancelling),
                ignored_task_ids=list(event.ignored),
            )
        )
    raise TypeError(f"not a run-queue event: {event!r}")  # pragma: no cover


def event_from_pb(msg: pb.RunQueueResponse) -> QueueEvent:
    which = msg.WhichOneof("event")
    if which == "updates":
        return batch_from_pb(msg.updates)
    if which == "opened":
        o = msg.opened
        return QueueOpened(tuple(held_from_pb(r) for r in o.runs), board_from_pb(o.device))
    if which == "enqueued":
        e = msg.enqueued
        return Enqueued(
            accepted=tuple(e.accepted_task_ids),
            refused=tuple(refused_from_pb(r) for r in e.refused),
            queue_moved=e.queue_moved,
            tail_task_id=e.tail_task_id,
            request_id=e.request_id,
        )
    if which == "withdrawn":
        w = msg.withdrawn
        return Withdrawn(
            withdrawn=tuple(w.withdrawn_task_ids),
            started=tuple(w.started_task_ids),
            unknown=tuple(w.unknown_task_ids),
            request_id=w.request_id,
        )
    if which == "cancelled":
        c = msg.cancelled
        return Cancelling(
            cancelling=tuple(c.cancelling_task_ids),
            ignored=tuple(c.ignored_task_ids),
            request_id=c.request_id,
        )
    raise ValueError("a run-queue response without an event")


# -- the other RPCs --------------------------------------------------------------------------------
def validate_request_to_pb(
    experiment: LabExperiment, configs: Iterable[PinnedRevision] = ()
) -> pb.ValidateExperimentRequest:
    return pb.ValidateExperimentRequest(
        experiment=experiment_to_pb(experiment), configs=[pinned_to_pb(c) for c in configs]
    )


def validate_request_from_pb(
    msg: pb.ValidateExperimentRequest,
) -> tuple[LabExperiment, tuple[PinnedRevision, ...]]:
    return experiment_from_pb(msg.experiment), pinned_list_from_pb(msg.configs)


def validate_response_to_pb(validated: Validated) -> pb.ValidateExperimentResponse:
    resolved = validated.resolved
    return pb.ValidateExperimentResponse(
        violations=[violation_to_pb(v) for v in validated.violations],
        resolved_commit=resolved.commit if resolved is not None else "",
        tree_dirty=resolved.tree_dirty if resolved is not None else False,
    )


def validate_response_from_pb(msg: pb.ValidateExperimentResponse, revision: str = "") -> Validated:
    """`revision`: what the request named (the response does not repeat it)."""
    resolved = (
        ResolvedRevision(revision, msg.resolved_commit, msg.tree_dirty) if msg.resolved_commit else None
    )
    return Validated(violations_from_pb(msg.violations), resolved)


def device_response_to_pb(board: BoardInfo) -> pb.GetDeviceResponse:
    return pb.GetDeviceResponse(device=board_to_pb(board))


def device_response_from_pb(msg: pb.GetDeviceResponse) -> BoardInfo:
    return board_from_pb(msg.device)


def chunk_to_pb(chunk: DataChunk) -> pb.FetchDataResponse:
    return pb.FetchDataResponse(
        offset=chunk.offset,
        chunk=chunk.data,
        total_size=chunk.total_size,
        sha256=chunk.sha256,
        name=chunk.file_name,
    )


def chunk_from_pb(msg: pb.FetchDataResponse) -> DataChunk:
    return DataChunk(msg.offset, msg.chunk, msg.total_size, msg.sha256, msg.name)
