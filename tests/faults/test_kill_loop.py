"""kill -9 each service under load, again and again, on a `qsched serve` stack (issue 18, the
suite): acknowledged jobs are never lost, ids never reused, no job runs twice, and only a run
that was on the board when the executor died may fail (EXECUTOR_LOST); staged ones run later.

QSCHED_FAULT_KILLS sets the kills per service (default 2 in `make test`; the issue's figure is 5).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import Counter

import grpc
import pytest

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc
from tests.support.identity import authed_channel
from tests.support.serve_stack import ServeStack
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow
KILLS = int(os.environ.get("QSCHED_FAULT_KILLS", "2"))
SUBMITTERS = 2
RUN_S = 0.05  # each job holds the board this long, so some are staged behind it at every kill
TERMINAL = {pb.Job.STATE_SUCCEEDED, pb.Job.STATE_FAILED, pb.Job.STATE_CANCELLED}
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def noop(sleep_s: float) -> pb.SubmitJobRequest:
    experiment = pb.LabExperiment(
        experiment_class="NoOpExperiment",
        experiment_module="qsched_hardware.experiments",
        expt_config_json=json.dumps({"sleep_s": sleep_s}),
    )
    return pb.SubmitJobRequest(
        device="qick", request_id=str(uuid.uuid4()), payload=pb.JobPayload(lab_experiment=experiment)
    )


class Load:
    """Submitters that retry each request (same request_id) until it is acknowledged."""

    def __init__(self, address: str):
        self.address = address
        self.acked: dict[str, str] = {}  # request_id -> job id
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._submit()) for _ in range(SUBMITTERS)]

    async def _submit(self) -> None:
        async with authed_channel(self.address) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            while not self._stop.is_set():
                request = noop(RUN_S)
                while True:
                    try:
                        reply = await stub.SubmitJob(request, timeout=5)
                        break
                    except grpc.aio.AioRpcError as error:
                        if error.code() not in RETRYABLE:
                            raise
                        await asyncio.sleep(0.1)  # the scheduler is being restarted: try again
                self.acked[request.request_id] = reply.job.job_id
                await asyncio.sleep(0.02)  # a steady load, not a flood: the queue stays short

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("service", ["scheduler", "executor", "configs", "gateway"])
async def test_kill_9_under_load_loses_nothing_and_runs_nothing_twice(tmp_path, service):
    began = time.monotonic()
    stack = ServeStack(tmp_path)
    await asyncio.to_thread(stack.start_all)
    load = Load(stack.address("scheduler"))
    try:
        load.start()
        async with authed_channel(stack.address("scheduler")) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            for _ in range(KILLS):
                wanted = len(load.acked) + 10
                await eventually(lambda n=wanted: len(load.acked) >= n, timeout=60, what="10 more acks")
                if service == "executor":  # kill it with a run on the board and others staged
                    await eventually(
                        lambda: stub.ListJobs(pb.ListJobsRequest(view=pb.LIST_VIEW_QUEUE), timeout=5),
                        until=lambda r: any(j.state == pb.Job.STATE_RUNNING for j in r.jobs[:1]),
                        ignoring=(grpc.aio.AioRpcError,),
                        what="a job on the board",
                    )
                stack.kill(service)
                await asyncio.to_thread(stack.start, service)
            await load.stop()

            ids = list(load.acked.values())
            assert len(set(ids)) == len(ids), "one job id acknowledged for two requests"

            async def settled() -> list[pb.Job]:
                return [(await stub.GetJob(pb.GetJobRequest(job_id=i), timeout=10)).job for i in ids]

            jobs = await eventually(
                settled,
                until=lambda js: all(j.state in TERMINAL for j in js),
                timeout=180,
                ignoring=(grpc.aio.AioRpcError,),
                what="every acknowledged job ending",
            )
    finally:
        stack.stop_all()

    outcomes = Counter((pb.Job.State.Name(j.state), j.error.reason) for j in jobs)
    lost = [j for j in jobs if j.state != pb.Job.STATE_SUCCEEDED]
    files = Counter(
        job_id for path in (stack.data_dir / "data").rglob("*.h5") for job_id in ids if job_id in path.name
    )
    # The counts the README's reliability section quotes (`pytest -s` shows them).
    print(
        f"\nkill loop {service}: kills={stack.kills.get(service, 0)} acknowledged={len(ids)}"
        f" found={len(jobs)} lost={len(ids) - len(jobs)} reused_ids={len(ids) - len(set(ids))}"
        f" ran_twice={sum(j.run_count > 1 for j in jobs) + sum(n > 1 for n in files.values())}"
        f" failed_on_board={sum(bool(j.current_run.start_time.seconds) for j in lost)}"
        f" staged_failed_never_started={sum(not j.current_run.start_time.seconds for j in lost)}"
        f" duration_s={time.monotonic() - began:.0f}"
    )
    if service == "executor":
        # Only the run on the board at each kill may be lost, and it had started.
        assert all(j.error.reason == "EXECUTOR_LOST" for j in lost), outcomes
        assert len(lost) <= KILLS, outcomes
        assert all(j.current_run.start_time.seconds for j in lost), "a staged job failed that never started"
    else:
        assert not lost, outcomes
    assert all(j.run_count == 1 for j in jobs), "a job ran twice"
    assert max(files.values(), default=1) == 1, "two data files for one job"
