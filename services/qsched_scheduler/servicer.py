"""qsched.jobs.v1.JobService: translates requests into Scheduler calls and
domain results and errors back into protos and google.rpc.Status."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
from google.protobuf import duration_pb2, json_format

from qsched.api.gateway.v1 import gateway_pb2
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc as pb_grpc
from qsched_runtime.errors import translates_errors
from qsched_scheduler import convert
from qsched_scheduler.domain import Change, Event, Job
from qsched_scheduler.scheduler import QueueSnapshot, Scheduler
from qsched_scheduler.validation import Submission

DOMAIN = "qsched.jobs.v1"


@translates_errors(DOMAIN)
class JobServicer(pb_grpc.JobServiceServicer):
    def __init__(self, scheduler: Scheduler):
        self._scheduler = scheduler

    async def SubmitJob(
        self, request: pb.SubmitJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitJobResponse:
        submission = Submission(
            device=request.device,
            payload=convert.payload_from_pb(request.payload),
            priority=request.priority,
            owner=request.owner,
            request_id=request.request_id,
            labels=dict(request.labels),
            payload_bytes=request.payload.ByteSize(),
        )
        result = await self._scheduler.submit(submission)
        job = result.job
        return pb.SubmitJobResponse(
            job=convert.job_to_pb(job),
            queue_position=job.queue_position,
            estimated_start_time=convert.timestamp(job.estimated_start_time),
            deduplicated=not result.created,
        )

    async def GetJob(self, request: pb.GetJobRequest, context: grpc.aio.ServicerContext) -> pb.GetJobResponse:
        job = await self._scheduler.get(request.job_id)
        return pb.GetJobResponse(job=convert.job_to_pb(job))

    async def ListJobs(
        self, request: pb.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListJobsResponse:
        flt = convert.filter_from_pb(request)
        jobs, token = await self._scheduler.list_jobs(flt, request.page_size, request.page_token)
        return pb.ListJobsResponse(jobs=[convert.job_to_pb(j) for j in jobs], next_page_token=token)

    async def CancelJob(
        self, request: pb.CancelJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelJobResponse:
        job = await self._scheduler.cancel(request.job_id, request.reason)
        return pb.CancelJobResponse(job=convert.job_to_pb(job))

    async def DeleteJob(
        self, request: pb.DeleteJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteJobResponse:
        await self._scheduler.delete(request.job_id)
        return pb.DeleteJobResponse(job_id=request.job_id)

    async def WatchJob(
        self, request: pb.WatchJobRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchJobResponse]:
        async for item in self._scheduler.watch(request.job_id, request.after_seq):
            if isinstance(item, Job):
                yield pb.WatchJobResponse(snapshot=convert.job_to_pb(item))
            elif isinstance(item, Change):
                yield pb.WatchJobResponse(event=convert.change_to_event_pb(item))
            elif isinstance(item, Event):
                yield pb.WatchJobResponse(event=convert.event_to_pb(item))

    async def WatchQueue(
        self, request: pb.WatchQueueRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchQueueResponse]:
        async for item in self._scheduler.watch_queue(request.device):
            if isinstance(item, QueueSnapshot):
                snapshot = pb.QueueSnapshot(
                    device=item.device, jobs=[convert.job_to_pb(j) for j in item.jobs]
                )
                yield pb.WatchQueueResponse(snapshot=snapshot)
            else:
                previous = convert.STATE_TO_PB[item.previous_state] if item.previous_state else 0
                change = pb.QueueChange(job=convert.job_to_pb(item.job), previous_state=previous)
                yield pb.WatchQueueResponse(change=change)

    async def RerunJob(
        self, request: pb.RerunJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.RerunJobResponse:
        payload = convert.payload_from_pb(request.payload) if request.HasField("payload") else None
        job = await self._scheduler.rerun(
            request.job_id, payload, request.payload.ByteSize(), request.request_id
        )
        return pb.RerunJobResponse(
            job=convert.job_to_pb(job),
            queue_position=job.queue_position,
            estimated_start_time=convert.timestamp(job.estimated_start_time),
        )

    async def ListRuns(
        self, request: pb.ListRunsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRunsResponse:
        runs, token = await self._scheduler.list_runs(request.job_id, request.page_size, request.page_token)
        return pb.ListRunsResponse(runs=[convert.run_to_pb(r) for r in runs], next_page_token=token)

    async def FetchJobData(
        self, request: pb.FetchJobDataRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.FetchJobDataResponse]:
        async for chunk in self._scheduler.fetch_data(request.job_id, request.task_id):
            yield pb.FetchJobDataResponse(
                offset=chunk.offset,
                chunk=chunk.data,
                total_size=chunk.total_size,
                sha256=chunk.sha256,
                file_name=chunk.file_name,
            )

    async def EstimateJob(
        self, request: pb.EstimateJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.EstimateJobResponse:
        payload = convert.payload_from_pb(request.payload)
        estimate = await self._scheduler.estimate(request.device, payload, request.payload.ByteSize())
        return pb.EstimateJobResponse(estimate=estimate)

    async def GetJobResult(
        self, request: pb.GetJobResultRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetJobResultResponse:
        view = await self._scheduler.get_result(request.job_id, request.task_id, request.refresh)
        results = json.loads(view.result_json or "{}")
        return pb.GetJobResultResponse(
            job_id=view.job_id,
            task_id=view.task_id,
            tasks=[
                json_format.ParseDict(t, gateway_pb2.TaskResult(), ignore_unknown_fields=True)
                for t in results.get("tasks", [])
            ],
            benchmark_results_json=results.get("benchmark_results_json", ""),
            cached=view.cached,
            fetch_time=convert.timestamp(view.fetch_time),
        )

    async def ListDevices(
        self, request: pb.ListDevicesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDevicesResponse:
        devices = []
        for status in await self._scheduler.device_statuses():
            typical = duration_pb2.Duration()
            typical.FromMilliseconds(int(status.typical_run_seconds * 1000))
            devices.append(
                pb.Device(
                    name=status.name,
                    kinds=sorted(convert.KIND_TO_PB[k] for k in status.kinds),
                    queued=status.queued,
                    running_job_id=status.running_job_id,
                    typical_run_duration=typical,
                )
            )
        return pb.ListDevicesResponse(devices=devices)
