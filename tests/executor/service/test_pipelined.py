"""Pipelined dispatch on the executor: a run sent with after_task_id waits for the board and
starts the moment the run before it returns; data files are written off the board thread."""

from __future__ import annotations

import asyncio
from datetime import datetime

import grpc
import h5py
import pytest

from qsched.api.executor.v1 import executor_pb2 as pb
from qsched.wire import error_info
from tests.executor.conftest import WAIT_S, RoundGate, executor_service
from tests.executor.service.test_service import collect, kinds, read_rest, request


def after(task_id: str, previous: str, job_id: str) -> pb.ExecuteRequest:
    message = request(task_id, job_id=job_id)
    message.after_task_id = previous
    return message


def file_times(path: str) -> tuple[datetime, datetime]:
    with h5py.File(path, "r") as f:
        return datetime.fromisoformat(f.attrs["start_time"]), datetime.fromisoformat(f.attrs["end_time"])


async def busy(call) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(call)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    return error_info(err.value).reason


async def test_a_run_sent_ahead_waits_then_follows_without_another_request(tmp_path):
    gate = RoundGate()
    async with executor_service(tmp_path, gate) as (stub, _, _):
        first = stub.Execute(request("t-1", job_id="JOB-20260113-00001"))
        assert (await first.read()).update.WhichOneof("update") == "accepted"
        await asyncio.to_thread(gate.held.wait, WAIT_S)

        second = stub.Execute(after("t-2", "t-1", "JOB-20260113-00002"))
        assert (await second.read()).update.WhichOneof("update") == "accepted"  # taken, waiting
        # Only a request that follows the last run taken is accepted while the board is busy.
        assert await busy(stub.Execute(request("t-x"))) == "DEVICE_BUSY"
        assert await busy(stub.Execute(after("t-y", "t-1", "JOB-20260113-00009"))) == "DEVICE_BUSY"
        third = stub.Execute(after("t-3", "t-2", "JOB-20260113-00003"))
        assert (await third.read()).update.WhichOneof("update") == "accepted"
        device = (await stub.GetDevice(pb.GetDeviceRequest())).device
        assert device.state == pb.DeviceInfo.STATE_BUSY and device.current_task_id == "t-1"

        # A waiting run is withdrawn by CancelRun without reaching the board.
        assert (await stub.CancelRun(pb.CancelRunRequest(task_id="t-3", reason="not now"))).cancelling
        withdrawn = await read_rest(third)
        assert kinds(withdrawn) == ["cancelled"] and withdrawn[0].cancelled.reason == "not now"
        assert not withdrawn[0].cancelled.data_file_path

        gate.open()
        one = await read_rest(first)
        two = await read_rest(second)
        assert kinds(one)[-1] == "result" and kinds(two)[0] == "started" and kinds(two)[-1] == "result"
        start_2, _ = file_times(two[-1].result.data_file_path)
        _, end_1 = file_times(one[-1].result.data_file_path)
        assert start_2 >= end_1  # one run at a time on the board
        idle = (await stub.GetDevice(pb.GetDeviceRequest())).device
        assert idle.state == pb.DeviceInfo.STATE_IDLE and idle.current_task_id == ""


async def test_a_run_sent_after_a_finished_run_starts_at_once(tmp_path):
    async with executor_service(tmp_path) as (stub, _, _):
        done = await collect(stub.Execute(request("t-1", job_id="JOB-20260113-00001")))
        assert kinds(done)[-1] == "result"
        updates = await collect(stub.Execute(after("t-2", "t-1", "JOB-20260113-00002")))
        assert kinds(updates)[:2] == ["accepted", "started"] and kinds(updates)[-1] == "result"


async def test_only_if_waiting_takes_back_a_waiting_run_and_leaves_a_started_one(tmp_path):
    gate = RoundGate()
    async with executor_service(tmp_path, gate) as (stub, _, _):
        first = stub.Execute(request("t-1", job_id="JOB-20260113-00001"))
        assert (await first.read()).update.WhichOneof("update") == "accepted"
        await asyncio.to_thread(gate.held.wait, WAIT_S)
        second = stub.Execute(after("t-2", "t-1", "JOB-20260113-00002"))
        assert (await second.read()).update.WhichOneof("update") == "accepted"

        running = pb.CancelRunRequest(task_id="t-1", reason="make way", only_if_waiting=True)
        assert not (await stub.CancelRun(running)).cancelling  # started: left alone
        waiting = pb.CancelRunRequest(task_id="t-2", reason="make way", only_if_waiting=True)
        assert (await stub.CancelRun(waiting)).cancelling
        assert kinds(await read_rest(second)) == ["cancelled"]

        gate.open()
        assert kinds(await read_rest(first))[-1] == "result"  # the running one was not cancelled
