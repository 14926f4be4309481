"""The run queue through real gRPC with the simulated board: runs start one after another with
no round trip, the tail check, withdraw, cancel, a reopened queue, replay by cursor."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import h5py

from qsched.api.executor.v1 import executor_pb2 as pb
from qsched_core.execution import Cancelled, HeldState, RunCursor, Succeeded
from tests.executor.conftest import WAIT_S, RoundGate, executor_service, noop, run_queue, run_request


def file_times(path) -> tuple[datetime, datetime]:
    with h5py.File(path, "r") as f:
        return datetime.fromisoformat(f.attrs["start_time"]), datetime.fromisoformat(f.attrs["end_time"])


async def test_queued_runs_start_one_after_another_in_order(tmp_path):
    gate = RoundGate()
    async with executor_service(tmp_path, gate) as (stub, _, _), run_queue(stub) as queue:
        first = await queue.enqueue(run_request("t-1"))
        assert first.accepted == ("t-1",) and first.tail_task_id == "t-1"
        await asyncio.to_thread(gate.held.wait, WAIT_S)  # t-1 on the board, a round held
        rest = await queue.enqueue(*(noop(f"t-{i}", f"JOB-20260113-0000{i}") for i in range(2, 6)), after="t-1")
        assert rest.accepted == ("t-2", "t-3", "t-4", "t-5") and rest.tail_task_id == "t-5"
        device = (await stub.GetDevice(pb.GetDeviceRequest())).device
        assert device.state == pb.DeviceInfo.STATE_BUSY and device.current_task_id == "t-1"
        assert list(device.waiting_task_ids) == ["t-2", "t-3", "t-4", "t-5"]
        gate.open()
        ends = [await queue.ended_run(f"t-{i}") for i in range(1, 6)]
        assert all(isinstance(end.body, Succeeded) for end in ends)
        assert queue.kinds("t-3") == ["accepted", "started", "succeeded"]
        times = [file_times(tmp_path / "data" / end.body.data.name) for end in ends]
        for (_, end_a), (start_b, _) in zip(times, times[1:], strict=False):
            assert start_b >= end_a  # in order, one at a time
        started = [queue.updates(f"t-{i}")[1].time for i in range(1, 6)]
        assert started == sorted(started)
        idle = (await stub.GetDevice(pb.GetDeviceRequest())).device
        assert idle.state == pb.DeviceInfo.STATE_IDLE and not idle.waiting_task_ids
