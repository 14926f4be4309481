"""A small JobService test double for provider jobs, backed by a REAL provider gateway.

It answers the calls the metriq-gym CLI verbs make (SubmitJob, GetJob, ListJobs, CancelJob, DeleteJob,
WatchJob, EstimateJob, GetJobResult) the way jobs.v1 documents them, forwarding to the gateway, so the
CLI can be tested whatever state the real scheduler's provider path is in. Gateway errors are passed on
with their google.rpc.Status (code, reason, message). `fetches` counts gateway FetchResult calls (cache
checks)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from qsched.api.gateway.v1 import gateway_pb2 as gpb
from qsched.api.gateway.v1 import gateway_pb2_grpc
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc
from qsched_runtime.security import PeerCredentials

TERMINAL = {pb.Job.STATE_SUCCEEDED, pb.Job.STATE_FAILED, pb.Job.STATE_CANCELLED}


@dataclass
class Entry:
    job: pb.Job
    submission_id: str = ""
    task_ids: list[str] = field(default_factory=list)
    cached: pb.GetJobResultResponse | None = None


async def _abort(context, code: grpc.StatusCode, reason: str, message: str):
    info = error_details_pb2.ErrorInfo(reason=reason, domain="qsched.jobs.v1")
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message)
    status.details.add().Pack(info)
    await context.abort_with_status(rpc_status.to_status(status))


async def _pass_on(context, error: grpc.aio.AioRpcError):
    status = rpc_status.from_call(error)
    if status is None:
        await context.abort(error.code(), error.details())
    await context.abort_with_status(rpc_status.to_status(status))


class FakeJobService(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, gateway_address: str):
        # as the scheduler does: the gateway takes calls from the scheduler's service principal only
        self.channel = PeerCredentials(token=os.environ.get("QSCHED_SERVICE_TOKEN", "").strip()).channel(
            gateway_address
        )
        self.gateway = gateway_pb2_grpc.ProviderGatewayServiceStub(self.channel)
        self.jobs: dict[str, Entry] = {}
        self.fetches = 0
        self.counter = 0
        self.hold = False  # when set, jobs stay RUNNING whatever the gateway says

    def _workload(self, payload: pb.JobPayload) -> gpb.Workload:
        bench = payload.benchmark
        if bench.suite_json:
            return gpb.Workload(suite_json=bench.suite_json)
        return gpb.Workload(benchmark_config_json=bench.config_json)

    async def SubmitJob(self, request, context):
        if ":" not in request.device:
            await _abort(
                context, grpc.StatusCode.NOT_FOUND, "DEVICE_NOT_FOUND", f"no device {request.device}"
            )
        self.counter += 1
        job_id = f"JOB-{datetime.now(UTC):%Y%m%d}-{self.counter:05d}"
        try:
            submitted = await self.gateway.Submit(
                gpb.SubmitRequest(
                    device=request.device,
                    workload=self._workload(request.payload),
                    job_id=job_id,
                    request_id=request.request_id,
                )
            )
        except grpc.aio.AioRpcError as error:
            await _pass_on(context, error)
        job = pb.Job(
            job_id=job_id,
            owner=request.owner,
            kind=pb.JOB_KIND_BENCHMARK,
            device=request.device,
            state=pb.Job.STATE_RUNNING,
            payload=request.payload,
            run_count=1,
            labels=request.labels,
        )
        job.create_time.GetCurrentTime()
        job.current_run.task_id = f"run-{self.counter}"
        job.current_run.attempt = 1
        job.current_run.state = pb.Job.STATE_RUNNING
        job.current_run.provider_task_ids.extend(submitted.task_ids)
        job.current_run.provider_submission_id = submitted.submission_id
        self.jobs[job_id] = Entry(job, submitted.submission_id, list(submitted.task_ids))
        return pb.SubmitJobResponse(job=job)

    async def _entry(self, job_id: str, context) -> Entry:
        entry = self.jobs.get(job_id)
        if entry is None:
            await _abort(context, grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND", f"no job {job_id}")
        return entry

    async def _refresh(self, entry: Entry) -> None:
        if entry.job.state in TERMINAL:
            return
        statuses = []
        stream = self.gateway.Watch(gpb.WatchRequest(submission_id=entry.submission_id))
        async for item in stream:
            statuses.append(item.status)
            if len(statuses) >= len(entry.task_ids):
                break
        stream.cancel()
        # as the scheduler does: the latest provider status of each task of an active run
        del entry.job.current_run.provider_tasks[:]
        entry.job.current_run.provider_tasks.extend(statuses)
        states = [s.state for s in statuses]
        if self.hold:
            return
        if not all(
            s in (gpb.TASK_STATE_COMPLETED, gpb.TASK_STATE_FAILED, gpb.TASK_STATE_CANCELLED) for s in states
        ):
            return
        del entry.job.current_run.provider_tasks[:]
        if gpb.TASK_STATE_FAILED in states:
            state = pb.Job.STATE_FAILED
            entry.job.error.reason = "PROVIDER_TASK_FAILED"
            entry.job.error.message = "a provider task failed"
        elif gpb.TASK_STATE_CANCELLED in states:
            state = pb.Job.STATE_CANCELLED
        else:
            state = pb.Job.STATE_SUCCEEDED
        entry.job.state = state
        entry.job.current_run.state = state
        entry.job.end_time.GetCurrentTime()

    async def GetJob(self, request, context):
        entry = await self._entry(request.job_id, context)
        await self._refresh(entry)
        return pb.GetJobResponse(job=entry.job)

    async def ListJobs(self, request, context):
        jobs = sorted(self.jobs.values(), key=lambda e: e.job.job_id, reverse=True)
        out = []
        for entry in jobs:
            await self._refresh(entry)
            job = entry.job
            if request.kind and job.kind != request.kind:
                continue
            if request.owner and job.owner != request.owner:
                continue
            out.append(job)
        return pb.ListJobsResponse(jobs=out[: request.page_size or 50])

    async def CancelJob(self, request, context):
        entry = await self._entry(request.job_id, context)
        await self._refresh(entry)
        if entry.job.state in TERMINAL:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, "JOB_ALREADY_FINISHED", "finished")
        await self.gateway.Cancel(gpb.CancelRequest(submission_id=entry.submission_id))
        entry.job.state = pb.Job.STATE_CANCELLED
        entry.job.current_run.state = pb.Job.STATE_CANCELLED
        entry.job.end_time.GetCurrentTime()
        return pb.CancelJobResponse(job=entry.job)

    async def DeleteJob(self, request, context):
        entry = await self._entry(request.job_id, context)
        await self._refresh(entry)
        if entry.job.state not in TERMINAL:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, "JOB_NOT_TERMINAL", "still active")
        del self.jobs[request.job_id]
        return pb.DeleteJobResponse(job_id=request.job_id)

    async def WatchJob(self, request, context):
        entry = await self._entry(request.job_id, context)
        await self._refresh(entry)
        yield pb.WatchJobResponse(snapshot=entry.job)
        while entry.job.state not in TERMINAL:
            await asyncio.sleep(0.02)  # the double polls the gateway; tests never sleep
            await self._refresh(entry)
        entry.job.last_seq += 1
        yield pb.WatchJobResponse(
            event=pb.JobEvent(
                seq=entry.job.last_seq, job_id=entry.job.job_id, state=entry.job.state, job=entry.job
            )
        )

    async def EstimateJob(self, request, context):
        try:
            estimate = await self.gateway.Estimate(
                gpb.EstimateRequest(device=request.device, workload=self._workload(request.payload))
            )
        except grpc.aio.AioRpcError as error:
            await _pass_on(context, error)
        return pb.EstimateJobResponse(estimate=estimate)

    async def GetJobResult(self, request, context):
        entry = await self._entry(request.job_id, context)
        await self._refresh(entry)
        if entry.job.state not in TERMINAL:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, "RESULT_NOT_READY", "still running")
        if entry.cached is not None and not request.refresh:
            cached = pb.GetJobResultResponse()
            cached.CopyFrom(entry.cached)
            cached.cached = True
            return cached
        self.fetches += 1
        try:
            fetched = await self.gateway.FetchResult(
                gpb.FetchResultRequest(submission_id=entry.submission_id)
            )
        except grpc.aio.AioRpcError as error:
            await _pass_on(context, error)
        response = pb.GetJobResultResponse(
            job_id=entry.job.job_id,
            task_id=entry.job.current_run.task_id,
            tasks=fetched.results,
            benchmark_results_json=fetched.benchmark_results_json,
            scoring_json=fetched.scoring_json,
        )
        response.fetch_time.GetCurrentTime()
        entry.cached = response
        return response


async def start_fake_scheduler(gateway_address: str):
    """(server, service, address) of the double on an ephemeral port."""
    service = FakeJobService(gateway_address)
    server = grpc.aio.server()
    jobs_pb2_grpc.add_JobServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, service, f"127.0.0.1:{port}"
