"""A whole executor process killed with SIGKILL while a run is on the board: after a restart the
crash journal reports that run LOST, ending with EXECUTOR_LOST; runs that only waited are
unknown; runs that had ended are still there. Data files come from writer processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from qsched.api.executor.v1 import executor_pb2_grpc
from qsched_core.execution import Failed, HeldState, RunCursor, Succeeded
from qsched_hardware.datafile import TMP_SUFFIX, build_run_file, run_file_name
from tests.executor.conftest import WAIT_S, noop, run_queue
from tests.support.identity import authed_channel
from tests.support.processes import free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow


def start_executor(data_dir: Path, port: int) -> subprocess.Popen:
    argv = [sys.executable, "-m", "qsched_ops.serve", "executor", "--executor-address", f"127.0.0.1:{port}"]
    argv += ["--data-dir", str(data_dir), "--data-writers", "1"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def wait_serving(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline()  # "qsched executor serving on ..."
    assert "serving on" in line, (line, proc.poll())


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def children(pid: int) -> set[int]:
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        out |= {int(c) for c in (task / "children").read_text().split()}
    return out


async def test_kill_9_reports_the_board_run_lost_and_forgets_the_waiting_ones(tmp_path):
    port = free_port()
    address = f"127.0.0.1:{port}"
    executor = start_executor(tmp_path, port)
    try:
        await asyncio.to_thread(wait_serving, executor)
        async with authed_channel(address) as channel:
            stub = executor_pb2_grpc.HardwareExecutorServiceStub(channel)
            async with run_queue(stub) as queue:
                await queue.enqueue(noop("t-done", "JOB-20260113-00001"))
                done = (await queue.ended_run("t-done")).body
                assert isinstance(done, Succeeded)
                assert (tmp_path / "data" / done.data.name).stat().st_size == done.data.size_bytes
                await queue.enqueue(
                    noop("t-board", "JOB-20260113-00002", sleep_s=3600),
                    noop("t-wait-1", "JOB-20260113-00003"),
                    noop("t-wait-2", "JOB-20260113-00004"),
                    after="t-done",
                )
                await eventually(
                    lambda: queue.kinds("t-board"), until=lambda k: "started" in k, timeout=WAIT_S
                )
                helpers = children(executor.pid)
                os.kill(executor.pid, signal.SIGKILL)
                executor.wait()
        executor = start_executor(tmp_path, port)  # restarted, same board and data dir
        await asyncio.to_thread(wait_serving, executor)
        async with authed_channel(address) as channel:
            stub = executor_pb2_grpc.HardwareExecutorServiceStub(channel)
            cursors = [
                RunCursor("t-done", 3),
                RunCursor("t-board", 2),
                RunCursor("t-wait-1", 1),
                RunCursor("t-wait-2"),
            ]
            async with run_queue(stub, *cursors) as queue:
                held = {r.task_id: r for r in queue.opened.runs}
                assert set(held) == {"t-done", "t-board"}
                assert held["t-done"].state is HeldState.ENDED and held["t-done"].last_seq == 3
                assert held["t-board"].state is HeldState.LOST and held["t-board"].last_seq == 3
                lost = await queue.ended_run("t-board")
                assert lost.seq == 3 and lost.body == Failed("EXECUTOR_LOST", lost.body.message)
                assert queue.kinds("t-done") == []  # nothing after its cursor
                assert not queue.opened.board.busy
                # the scheduler puts the waiting runs back: they run now
                again = await queue.enqueue(noop("t-wait-1", "JOB-20260113-00003"), after="t-board")
                assert again.accepted == ("t-wait-1",)
                assert isinstance((await queue.ended_run("t-wait-1")).body, Succeeded)
        # the killed executor's writer processes did not outlive it
        await eventually(lambda: not any(Path(f"/proc/{pid}").exists() for pid in helpers), timeout=WAIT_S)
    finally:
        stop(executor)


async def test_a_killed_executors_partial_data_file_is_removed_at_start_and_the_run_says_no_data(tmp_path):
    """Issue 18, defect 7: the writer died with the file under its temporary name. Only the
    temporary files of runs the crash journal knows are removed: a foreign one stays."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    data = tmp_path / "data"
    executor = start_executor(tmp_path, port)
    try:
        await asyncio.to_thread(wait_serving, executor)
        async with authed_channel(address) as channel:
            stub = executor_pb2_grpc.HardwareExecutorServiceStub(channel)
            async with run_queue(stub) as queue:
                await queue.enqueue(noop("t-board", "JOB-20260113-00002", sleep_s=3600))
                await eventually(
                    lambda: queue.kinds("t-board"), until=lambda k: "started" in k, timeout=WAIT_S
                )
                os.kill(executor.pid, signal.SIGKILL)
                executor.wait()
        # what a writer killed before its rename leaves: the whole file, under the temporary name
        final = data / run_file_name("JOB-20260113-00002", "t-board", datetime.now())
        partial = final.with_name(final.name + TMP_SUFFIX)
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(build_run_file({}, {"task_id": "t-board"}))
        foreign = final.with_name(f"JOB-20260113-00009-t-other.h5{TMP_SUFFIX}")
        foreign.write_bytes(b"not this executor's")
        executor = start_executor(tmp_path, port)
        await asyncio.to_thread(wait_serving, executor)
        assert not partial.exists()
        assert foreign.read_bytes() == b"not this executor's"
        assert not final.exists()
        async with authed_channel(address) as channel:
            stub = executor_pb2_grpc.HardwareExecutorServiceStub(channel)
            async with run_queue(stub, RunCursor("t-board", 2)) as queue:
                lost = (await queue.ended_run("t-board")).body
                assert isinstance(lost, Failed) and lost.reason == "EXECUTOR_LOST"
                assert "no data file exists" in lost.message, lost.message
    finally:
        stop(executor)
