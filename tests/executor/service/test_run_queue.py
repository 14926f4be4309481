"""The run queue through real gRPC with the simulated board: runs start one after another with
no round trip, the tail check, withdraw, cancel, a reopened queue, replay by cursor."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime

import h5py

from qsched.api.executor.v1 import executor_pb2 as pb
from qsched_core.execution import Cancelled, HeldState, RunCursor, Succeeded
from tests.executor.conftest import RABI, WAIT_S, RoundGate, executor_service, noop, run_queue, run_request


def file_times(path) -> tuple[datetime, datetime]:
    with h5py.File(path, "r") as f:
        return datetime.fromisoformat(f.attrs["start_time"]), datetime.fromisoformat(f.attrs["end_time"])


async def test_queued_runs_start_one_after_another_in_order(tmp_path):
    gate = RoundGate()
    async with executor_service(tmp_path, gate) as (stub, _, _), run_queue(stub) as queue:
        first = await queue.enqueue(run_request("t-1"))
        assert first.accepted == ("t-1",) and first.tail_task_id == "t-1"
        await asyncio.to_thread(gate.held.wait, WAIT_S)  # t-1 on the board, a round held
        rest = await queue.enqueue(
            *(noop(f"t-{i}", f"JOB-20260113-0000{i}") for i in range(2, 6)), after="t-1"
        )
        assert rest.accepted == ("t-2", "t-3", "t-4", "t-5") and rest.tail_task_id == "t-5"
        device = (await stub.GetDevice(pb.GetDeviceRequest())).device
        assert device.state == pb.DeviceInfo.STATE_BUSY and device.current_task_id == "t-1"
        assert list(device.waiting_task_ids) == ["t-2", "t-3", "t-4", "t-5"]
        gate.open()
        ends = [await queue.ended_run(f"t-{i}") for i in range(1, 6)]
        assert all(isinstance(end.body, Succeeded) for end in ends)
        assert queue.kinds("t-3") == ["accepted", "started", "succeeded"]
        times = [file_times(tmp_path / "data" / end.body.data.name) for end in ends]
        for (_, end_a), (start_b, _) in itertools.pairwise(times):
            assert start_b >= end_a  # in order, one at a time
        started = [queue.updates(f"t-{i}")[1].time for i in range(1, 6)]
        assert started == sorted(started)
        idle = (await stub.GetDevice(pb.GetDeviceRequest())).device
        assert idle.state == pb.DeviceInfo.STATE_IDLE and not idle.waiting_task_ids


async def test_enqueue_checks_the_tail_and_takes_nothing_when_it_moved(tmp_path):
    gate = RoundGate()
    async with executor_service(tmp_path, gate) as (stub, _, _), run_queue(stub) as queue:
        await queue.enqueue(run_request("t-0"), noop("t-1"), noop("t-2"))
        await asyncio.to_thread(gate.held.wait, WAIT_S)  # t-0 holds the board
        moved = await queue.enqueue(noop("t-3"), after="t-1")  # t-2 is the tail
        assert moved.queue_moved and moved.tail_task_id == "t-2" and not moved.accepted
        empty = await queue.enqueue(noop("t-3"), after="")
        assert empty.queue_moved and empty.tail_task_id == "t-2"
        ok = await queue.enqueue(noop("t-3"), after="t-2")
        assert ok.accepted == ("t-3",) and not ok.queue_moved
        assert (await stub.GetDevice(pb.GetDeviceRequest())).device.waiting_task_ids[-1] == "t-3"
        gate.open()
        await queue.ended_run("t-3")
        # with nothing waiting or running, a run that has ended is a valid tail (nothing is
        # between it and the new runs), and so is "" (none); an unknown run is not
        assert (await queue.enqueue(noop("t-4"), after="t-3")).accepted == ("t-4",)
        await queue.ended_run("t-4")
        assert (await queue.enqueue(noop("t-5"), after="nope")).queue_moved
        assert (await queue.enqueue(noop("t-5"), after="")).accepted == ("t-5",)


async def test_enqueue_refuses_invalid_and_duplicate_runs_one_by_one(tmp_path):
    async with executor_service(tmp_path) as (stub, _, _), run_queue(stub) as queue:
        answer = await queue.enqueue(
            noop("t-1"),
            run_request("t-bad", expt={"stop": 1.5}),
            noop("t-1"),
            run_request("t-cls", cls="NoSuchExperiment"),
            noop("t-2"),
        )
        assert answer.accepted == ("t-1", "t-2")  # the ones after a refused run are still taken
        refused = {r.task_id: r for r in answer.refused}
        assert refused["t-bad"].reason == "INVALID_EXPERIMENT"
        assert [v.field for v in refused["t-bad"].violations] == ["expt.stop"]
        assert refused["t-1"].reason == "DUPLICATE_TASK"
        assert refused["t-cls"].reason == "EXPERIMENT_NOT_FOUND"
        await queue.ended_run("t-2")
        again = await queue.enqueue(noop("t-1"), after="t-2")  # ended runs are still known
        assert [r.reason for r in again.refused] == ["DUPLICATE_TASK"]
        assert not queue.updates("t-bad") and not queue.updates("t-cls")


async def test_withdraw_takes_back_only_runs_that_have_not_started(tmp_path):
    gate = RoundGate()
    async with executor_service(tmp_path, gate) as (stub, _, _), run_queue(stub) as queue:
        await queue.enqueue(run_request("t-1"), noop("t-2"), noop("t-3"))
        await asyncio.to_thread(gate.held.wait, WAIT_S)
        answer = await queue.withdraw("t-1", "t-3", "nope")
        assert answer.withdrawn == ("t-3",) and answer.started == ("t-1",) and answer.unknown == ("nope",)
        assert (await queue.enqueue(noop("t-4"), after="t-2")).accepted == ("t-4",)
        gate.open()
        await queue.ended_run("t-4")
        assert queue.kinds("t-3") == ["accepted"]  # withdrawn: no further update, forgotten
        assert (await queue.withdraw("t-3")).unknown == ("t-3",)
        assert (await queue.withdraw("t-1")).started == ("t-1",)


async def test_cancel_ends_a_waiting_run_at_once_and_stops_a_running_one_between_rounds(tmp_path):
    gate = RoundGate(free_rounds=2)
    async with executor_service(tmp_path, gate) as (stub, _, _), run_queue(stub) as queue:
        await queue.enqueue(run_request("t-run", expt={**RABI, "rounds": 6}))
        await queue.enqueue(noop("t-wait"), noop("t-next"), after="t-run")
        await asyncio.to_thread(gate.held.wait, WAIT_S)  # rounds 1 and 2 done, round 3 held
        answer = await queue.cancel("t-wait", "t-run", "nope", reason="user asked")
        assert answer.cancelling == ("t-wait", "t-run") and answer.ignored == ("nope",)
        waited = await queue.ended_run("t-wait")
        assert waited.body == Cancelled("user asked") and queue.kinds("t-wait") == ["accepted", "cancelled"]
        gate.open()
        stopped = (await queue.ended_run("t-run")).body
        assert isinstance(stopped, Cancelled) and stopped.reason == "user asked" and stopped.rounds_done == 2
        with h5py.File(tmp_path / "data" / stopped.data.name, "r") as f:
            assert f.attrs["partial"] and f["avgi"].shape == (21,)
        assert isinstance((await queue.ended_run("t-next")).body, Succeeded)  # the queue went on
        assert (await queue.cancel("t-run")).ignored == ("t-run",)


async def test_a_second_queue_replaces_the_first_and_runs_outlive_it(tmp_path):
    gate = RoundGate()
    async with executor_service(tmp_path, gate) as (stub, _, _), run_queue(stub) as old:
        await old.enqueue(run_request("t-1"), noop("t-2"))
        await asyncio.to_thread(gate.held.wait, WAIT_S)
        async with run_queue(stub, RunCursor("t-1", 1), RunCursor("t-2", 1), RunCursor("gone")) as new:
            error = await eventually_error(old)
            assert error.code().name == "ABORTED"
            from qsched.wire import error_info

            assert error_info(error).reason == "QUEUE_REOPENED"
            held = {r.task_id: r for r in new.opened.runs}
            assert held["t-1"].state is HeldState.RUNNING and held["t-2"].state is HeldState.WAITING
            assert "gone" not in held
            assert new.opened.board.current_task_id == "t-1"
            # replayed after the cursor (the Rabi's first log line is an update of its own)
            assert new.kinds("t-1") == ["started", "output"]
            gate.open()
            assert isinstance((await new.ended_run("t-2")).body, Succeeded)
            assert new.kinds("t-1")[-1] == "succeeded"


async def test_reopening_replays_each_run_after_its_cursor(tmp_path):
    async with executor_service(tmp_path) as (stub, _, _):
        async with run_queue(stub) as first:
            await first.enqueue(noop("t-1"), noop("t-2"))
            await first.ended_run("t-2")
        async with run_queue(stub, RunCursor("t-1", 2), RunCursor("t-2", 0)) as second:
            await second.ended_run("t-2")
            assert second.kinds("t-1") == ["succeeded"] and second.kinds("t-2") == [
                "accepted",
                "started",
                "succeeded",
            ]
            held = {r.task_id: (r.state, r.last_seq) for r in second.opened.runs}
            assert held == {"t-1": (HeldState.ENDED, 3), "t-2": (HeldState.ENDED, 3)}
            assert second.order[0] == "opened"


async def eventually_error(client):
    from tests.support.waiting import eventually

    await eventually(lambda: client.ended, timeout=WAIT_S, what="the old stream to end")
    assert client.error is not None
    return client.error


async def test_a_run_sent_to_an_idle_board_is_accepted_before_it_starts(tmp_path):
    # The idle board thread takes the run before `enqueue` records it as accepted: the log
    # still says accepted first, and no later than it started.
    async with executor_service(tmp_path) as (stub, _, _), run_queue(stub) as queue:
        answer = await queue.enqueue(noop("t-1"))
        assert answer.accepted == ("t-1",)
        await queue.ended_run("t-1")
        accepted, started, ended = queue.updates("t-1")
        assert [u.kind.value for u in (accepted, started, ended)] == ["accepted", "started", "succeeded"]
        assert accepted.time <= started.time <= ended.time


async def test_runs_back_to_back_end_in_order_each_with_its_file(tmp_path):
    # A run that leaves the board while the next waits is handed to the writers by another
    # thread; the last one by the board thread itself. The files still go in run order.
    async with executor_service(tmp_path) as (stub, _, _), run_queue(stub) as queue:
        tasks = [f"t-{i}" for i in range(1, 7)]
        await queue.enqueue(*(noop(t, f"JOB-20260113-0000{i}", sleep_s=0.01) for i, t in enumerate(tasks, 1)))
        ends = [await queue.ended_run(t) for t in tasks]
        arrived = [u.task_id for batch in queue.batches for u in batch.updates if u.terminal]
        assert arrived == tasks
        assert all(isinstance(end.body, Succeeded) for end in ends)
        times = [file_times(tmp_path / "data" / end.body.data.name) for end in ends]
        for (_, end_a), (start_b, _) in itertools.pairwise(times):
            assert start_b >= end_a
