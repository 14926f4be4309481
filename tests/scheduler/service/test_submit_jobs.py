"""SubmitJobs: several jobs in one call, checked as a whole before any is queued."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.wire import error_info
from tests.support.jobs import job_in_state, lab_request


def requests(n: int, **kw) -> list[pb.SubmitJobRequest]:
    return [lab_request(request_id=f"batch-{i}", **kw) for i in range(n)]


async def test_submit_jobs_queues_every_job_in_order_and_a_retry_creates_nothing(scheduler):
    stub, fake, _ = scheduler
    fake.hold = asyncio.Event()  # the first job keeps the board
    first = (await stub.SubmitJob(lab_request(owner=""))).job.job_id
    await job_in_state(stub, first, pb.Job.STATE_RUNNING)

    answer = await stub.SubmitJobs(pb.SubmitJobsRequest(requests=requests(5, owner="")))
    ids = [r.job.job_id for r in answer.responses]
    assert len(set(ids)) == 5 and ids == sorted(ids)
    assert [r.queue_position for r in answer.responses] == [1, 2, 3, 4, 5]
    assert not any(r.deduplicated for r in answer.responses)
    queue = await stub.ListJobs(pb.ListJobsRequest(view=pb.LIST_VIEW_QUEUE, device="qick"))
    assert [j.job_id for j in queue.jobs] == [first, *ids]

    again = await stub.SubmitJobs(pb.SubmitJobsRequest(requests=requests(5, owner="")))
    assert [r.job.job_id for r in again.responses] == ids and all(r.deduplicated for r in again.responses)
    fake.hold.set()
    await job_in_state(stub, ids[-1], pb.Job.STATE_SUCCEEDED)
    assert fake.started_jobs == [first, *ids]


async def test_one_bad_entry_refuses_the_whole_call_and_names_it(scheduler):
    stub, _, _ = scheduler
    batch = requests(3, owner="")
    batch[1].priority = 1000
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.SubmitJobs(pb.SubmitJobsRequest(requests=batch))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    detail = error_info(info.value)
    assert detail.reason == "INVALID_PRIORITY" and detail.metadata["index"] == "1"
    assert not (await stub.ListJobs(pb.ListJobsRequest())).jobs  # nothing queued

    too_many = pb.SubmitJobsRequest(requests=[lab_request(owner="")] * 1001)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.SubmitJobs(too_many)
    assert error_info(info.value).reason == "TOO_MANY_JOBS"
