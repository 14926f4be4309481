"""Issue 18, defect 8: the executor's log during scheduler restarts. A scheduler that dies takes
its connection with it: the executor's RunQueue, WatchRun and FetchData streams to it end
mid-stream (cancelled, or from the transport), and a restarted scheduler opens a new queue. None
of this may log an ERROR ("Failed to detach context" tracebacks were seen in the executor's log
before the server tracing interceptor kept a stream's span current only while it produces an
item: qsched_runtime/tracing.py). Fails with that interceptor's earlier version."""

from __future__ import annotations

import logging

from opentelemetry.trace import SpanKind

from qsched.api.executor.v1 import executor_pb2 as pb
from qsched.api.executor.v1 import executor_pb2_grpc
from qsched_core.config import Endpoints, ServiceConfig
from qsched_core.execution import RunCursor
from qsched_executor.server import build
from qsched_hardware.board import open_board
from qsched_runtime.server import start_server
from tests.executor.conftest import WAIT_S, RoundGate, noop, run_queue, run_request
from tests.support.identity import authed_channel
from tests.support.waiting import eventually

RESTARTS = 3


def server_spans(spans, method: str) -> int:
    name = f"qsched.executor.v1.HardwareExecutorService/{method}"
    return sum(1 for s in spans.get_finished_spans() if s.name == name and s.kind is SpanKind.SERVER)


async def test_a_dying_schedulers_streams_end_without_an_error_in_the_log(tmp_path, spans, caplog):
    gate = RoundGate()
    board = open_board("sim")
    board.soc.on_round = gate
    endpoints = Endpoints(executor="127.0.0.1:0", configs="127.0.0.1:9")
    config = ServiceConfig(service="executor", endpoints=endpoints, data_dir=tmp_path, data_writers=0)
    handle = await build(config, board=board)
    server = await start_server(config.listen, handle.registrations)
    address = f"127.0.0.1:{server.port}"
    executor = handle.executor
    caplog.set_level(logging.INFO)
    try:
        async with authed_channel(address) as channel:  # a first scheduler: one run ends with a file
            stub = executor_pb2_grpc.HardwareExecutorServiceStub(channel)
            async with run_queue(stub) as queue:
                gate.free = 10**9
                await queue.enqueue(noop("t-file", "JOB-20260113-00001"))
                await queue.ended_run("t-file")
                gate.free = gate.rounds  # the next run holds the board
                await queue.enqueue(run_request("t-board", "JOB-20260113-00002"), after="t-file")
                await eventually(lambda: gate.held.is_set(), timeout=WAIT_S, what="the run on the board")
        big = tmp_path / "data" / "2026-01-13" / "big.h5"  # many chunks: the stream waits on the client
        big.parent.mkdir(parents=True, exist_ok=True)
        big.write_bytes(bytes(16 << 20))
        for restart in range(RESTARTS):
            channel = authed_channel(address)  # the scheduler, until it dies
            stub = executor_pb2_grpc.HardwareExecutorServiceStub(channel)
            queue = await run_queue(stub, RunCursor("t-board", 2)).__aenter__()
            watch = stub.WatchRun(pb.WatchRunRequest(task_id="t-board", after_seq=1))
            await watch.read()  # open, and suspended waiting for the run's next update
            await stub.FetchData(pb.FetchDataRequest(task_id="t-file")).read()
            fetch = stub.FetchData(pb.FetchDataRequest(name="2026-01-13/big.h5"))
            await fetch.read()  # the server is held at a `yield`, writing the next chunks
            if restart % 2 == 0:  # a scheduler stopping cancels its streams (RST_STREAM) first
                watch.cancel()
                fetch.cancel()
            await channel.close()  # and goes: the streams left end from the transport
            await eventually(
                lambda r=restart: server_spans(spans, "WatchRun") > r, timeout=WAIT_S, what="WatchRun ended"
            )
            await eventually(lambda: executor._session is None, timeout=WAIT_S, what="the queue closed")
            assert queue.ended
        # The board and the executor are fine: a new scheduler finds the run and its end.
        async with authed_channel(address) as channel:
            stub = executor_pb2_grpc.HardwareExecutorServiceStub(channel)
            async with run_queue(stub, RunCursor("t-board", 2)) as queue:
                gate.open()
                await queue.ended_run("t-board")
        await eventually(lambda: server_spans(spans, "FetchData"), until=lambda n: n >= 2 * RESTARTS)
    finally:
        gate.open()
        await server.stop(0)
        await handle.stop()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or "detach" in r.getMessage()]
    assert errors == [], [r.getMessage() for r in errors]
