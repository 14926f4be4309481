"""The executor's messages <-> the run contract: every domain value survives a trip through
its message and back, and every oneof case is mapped."""

from __future__ import annotations

from dataclasses import replace

import pytest

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
    PinnedRevision,
    Progress,
    QueueOpened,
    RefusedRun,
    RunCursor,
    ScheduleDecision,
    Started,
    Succeeded,
    UpdateBatch,
    Validated,
    Violation,
    Withdrawn,
    WithdrawRuns,
)
from qsched_core.payloads import LabExperiment
from qsched_core.provenance import ResolvedRevision
from qsched_runtime import execution_wire as wire
from tests.support.provenance import repository_code

T = 1_765_000_000.25  # exact in binary, so the Timestamp trip is exact
PIN = PinnedRevision("hardware_config", "CFG-HW-20260113-00001", "ab" * 32)
REF = DataRef("2026/12/07/JOB-20261207-00001-t1.h5", "cd" * 32, 4096)
EXPERIMENT = LabExperiment("AmplitudeRabiExperiment", "qsched_hardware.experiments", '{"gain": 0.5}')
PINNED = LabExperiment("Pulse", "mylab.pulses", "{}", experiment_revision="main", experiment_commit="ef" * 20)
CODE = repository_code()
REQUEST = ExecutionRequest(
    "JOB-20261207-00001",
    "t1",
    "ada",
    EXPERIMENT,
    (PIN,),
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
)
BODIES = [
    Accepted(),
    Started(),
    Progress(3, 10, 300, 0.3),
    Succeeded(REF, {"pi_gain": 0.42}, {"qubit.pi_pulse.gain": 0.42}),
    Succeeded(None, {}, {}),
    Failed("DISK_FULL", "no space left on device"),
    Succeeded(REF, {}, {}, CODE),
    Succeeded(REF, {}, {}, inline_data=b"\x89HDF\r\n" * 100),
    Failed("PROGRAM_ERROR", "boom", CODE),
    Cancelled("user asked", 2, REF, CODE),
    Cancelled("user asked", 2, REF),
    Cancelled("withdrawn"),
]
BOARD = BoardInfo(
    board_id="sim-1",
    board_uri="sim",
    board_model="ZCU216",
    qick_version="0.2.436",
    config_sha256="ef" * 32,
    generator_count=7,
    readout_count=2,
    simulated=True,
    current_task_id="t1",
    current_job_id="JOB-20261207-00001",
    waiting_task_ids=("t2", "t3"),
)


def test_request_round_trip():
    assert wire.request_from_pb(wire.request_to_pb(REQUEST)) == REQUEST


def test_request_round_trip_with_the_schedule_decision():
    decision = ScheduleDecision("fair-share", "fair share at priority 0", '{"ahead": 0}')
    decided = replace(REQUEST, decision=decision)
    msg = wire.request_to_pb(decided)
    assert msg.decision.policy == "fair-share"
    assert wire.request_from_pb(msg) == decided
    assert not wire.request_to_pb(REQUEST).HasField("decision")


def test_request_from_pb_defaults_empty_config_to_an_object():
    msg = pb.ExecutionRequest(task_id="t", experiment=pb.Experiment(experiment_class="X"))
    assert wire.request_from_pb(msg).experiment.expt_config_json == "{}"


@pytest.mark.parametrize("body", BODIES, ids=lambda b: type(b).__name__)
def test_update_round_trip(body):
    update = ExecutionUpdate("t1", 4, T, body)
    msg = wire.update_to_pb(update)
    assert msg.WhichOneof("update") is not None
    assert wire.update_from_pb(msg) == update


def test_unset_data_ref_stays_unset():
    msg = wire.update_to_pb(ExecutionUpdate("t1", 2, T, Cancelled("withdrawn")))
    assert not msg.cancelled.HasField("data")


def test_inline_data_file_rides_the_result_only_when_set():
    small = b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 16
    msg = wire.update_to_pb(ExecutionUpdate("t1", 5, T, Succeeded(REF, inline_data=small)))
    assert msg.result.inline_data == small
    assert wire.update_from_pb(msg).body.inline_data == small
    assert wire.update_to_pb(ExecutionUpdate("t1", 5, T, Succeeded(REF))).result.inline_data == b""
    # a batch carries it through (the run queue's message)
    batch = wire.batch_from_pb(
        wire.batch_to_pb(UpdateBatch((ExecutionUpdate("t1", 5, T, Succeeded(REF, inline_data=small)),)))
    )
    assert batch.updates[0].body.inline_data == small
    assert "inline_data" not in repr(Succeeded(REF, inline_data=small))  # no file dumped in logs


def test_update_without_body_is_refused():
    with pytest.raises(ValueError):
        wire.update_from_pb(pb.ExecutionUpdate(task_id="t1", seq=1))


def test_board_round_trip_and_state():
    msg = wire.board_to_pb(BOARD)
    assert msg.state == pb.DeviceInfo.STATE_BUSY
    assert wire.board_from_pb(msg) == BOARD
    idle = BoardInfo(board_id="sim-1")
    assert wire.board_to_pb(idle).state == pb.DeviceInfo.STATE_IDLE
    assert wire.device_response_from_pb(wire.device_response_to_pb(BOARD)) == BOARD


@pytest.mark.parametrize("state", list(HeldState))
def test_held_run_round_trip(state):
    held = HeldRun("t1", "JOB-20261207-00001", state, 7)
    assert wire.held_from_pb(wire.held_to_pb(held)) == held


@pytest.mark.parametrize(
    "command",
    [
        OpenQueue((RunCursor("t1", 3), RunCursor("t2"))),
        OpenQueue(),
        EnqueueRuns(5, "t0", (REQUEST, ExecutionRequest("J", "t2", "bob", PINNED))),
        EnqueueRuns(6, "", ()),
        WithdrawRuns(7, ("t1", "t2")),
        CancelRuns(8, ("t1",), "user asked"),
    ],
    ids=lambda c: type(c).__name__,
)
def test_command_round_trip(command):
    assert wire.command_from_pb(wire.command_to_pb(command)) == command


@pytest.mark.parametrize(
    "event",
    [
        QueueOpened((HeldRun("t1", "J", HeldState.LOST, 3), HeldRun("t2", "J", HeldState.WAITING, 1)), BOARD),
        UpdateBatch((ExecutionUpdate("t1", 1, T, Accepted()), ExecutionUpdate("t2", 5, T, Failed("X", "y")))),
        Enqueued(
            accepted=("t3",),
            refused=(
                RefusedRun(
                    "t2",
                    "INVALID_EXPERIMENT",
                    "bad",
                    (Violation("expt.gain", "> 1"),),
                ),
            ),
            tail_task_id="t3",
            request_id=5,
        ),
        Enqueued(queue_moved=True, tail_task_id="t9", request_id=6),
        Withdrawn(("t2",), ("t1",), ("t9",), request_id=7),
        Cancelling(("t1",), ("t0",), request_id=8),
    ],
    ids=lambda e: type(e).__name__,
)
def test_event_round_trip(event):
    assert wire.event_from_pb(wire.event_to_pb(event)) == event


def test_empty_messages_are_refused():
    with pytest.raises(ValueError):
        wire.command_from_pb(pb.RunQueueRequest())
    with pytest.raises(ValueError):
        wire.event_from_pb(pb.RunQueueResponse())


def test_validate_and_fetch_round_trips():
    experiment, configs = wire.validate_request_from_pb(wire.validate_request_to_pb(EXPERIMENT, [PIN]))
    assert (experiment, configs) == (EXPERIMENT, (PIN,))
    violations = (Violation("expt.gain", "must be <= 1"),)
    plain = Validated(violations)
    assert wire.validate_response_from_pb(wire.validate_response_to_pb(plain)) == plain
    pinned = Validated((), ResolvedRevision("main", "ab" * 20, tree_dirty=True))
    assert wire.validate_response_from_pb(wire.validate_response_to_pb(pinned), "main") == pinned
    chunk = DataChunk(0, b"\x89HDF", 4096, "cd" * 32, REF.name)
    assert wire.chunk_from_pb(wire.chunk_to_pb(chunk)) == chunk
