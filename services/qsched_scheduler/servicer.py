"""qsched.jobs.v1.JobService: translates requests into Scheduler calls and
domain results and errors back into protos and google.rpc.Status."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import duration_pb2, json_format

from qsched.api.gateway.v1 import gateway_pb2
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc as pb_grpc
from qsched_core.execution import PartialData
from qsched_runtime import execution_wire as wire
from qsched_runtime.auth import caller
from qsched_runtime.errors import translates_errors
from qsched_scheduler import convert
from qsched_scheduler.access import DeviceView, JobDesk
from qsched_scheduler.domain import Change, Event, Job
from qsched_scheduler.errors import Unimplemented
from qsched_scheduler.reservations import ReservationDesk, SessionDesk, UsageView
from qsched_scheduler.scheduler import DeviceStatus, QueueSnapshot, Scheduler, SubmitResult
from qsched_scheduler.validation import Submission

DOMAIN = "qsched.jobs.v1"


@translates_errors(DOMAIN)
class JobServicer(pb_grpc.JobServiceServicer):
    def __init__(
        self,
        scheduler: Scheduler,
        desk: JobDesk,
        reservations: ReservationDesk | None = None,
        sessions: SessionDesk | None = None,
        usage: UsageView | None = None,
    ):
        self._scheduler = scheduler
        self._desk = desk
        self._reservations = reservations
        self._sessions = sessions
        self._usage = usage

    async def ListUsage(
        self, request: pb.ListUsageRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListUsageResponse:
        if self._usage is None:
            raise Unimplemented("NO_USAGE", "this scheduler keeps no usage")
        rows = [r for r in self._usage.usage.table() if not request.device or r[0] == request.device]
        response = pb.ListUsageResponse(
            usage=[pb.DeviceUsage(device=d, owner=o, usage_seconds=u) for d, o, u in rows],
            fair_share_devices=self._usage.fair_share_devices,
        )
        response.half_life.FromTimedelta(self._usage.usage.half_life)
        return response

    # -- sessions (sessions.py) ------------------------------------------------------------------------
    def _session_desk(self) -> SessionDesk:
        if self._sessions is None:
            raise Unimplemented("NO_SESSIONS", "this scheduler keeps no sessions")
        return self._sessions

    async def OpenSession(
        self, request: pb.OpenSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.OpenSessionResponse:
        max_length, idle_timeout, policy = convert.session_request_from_pb(request)
        session = await self._session_desk().open(caller(), request.device, max_length, idle_timeout, policy)
        return pb.OpenSessionResponse(session=convert.session_to_pb(session))

    async def CloseSession(
        self, request: pb.CloseSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.CloseSessionResponse:
        session = await self._session_desk().close(caller(), request.session_id)
        return pb.CloseSessionResponse(session=convert.session_to_pb(session))

    async def CancelSession(
        self, request: pb.CancelSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelSessionResponse:
        session = await self._session_desk().cancel(caller(), request.session_id)
        return pb.CancelSessionResponse(session=convert.session_to_pb(session))

    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSessionsResponse:
        sessions = self._session_desk().list(request.device)
        return pb.ListSessionsResponse(sessions=[convert.session_to_pb(s) for s in sessions])

    def _device(self, view: DeviceView) -> pb.Device:
        """The device, and the calendar window or session that decides what starts on it now."""
        out = _device(view)
        name = view.status.name
        if self._reservations is not None:
            current, upcoming = self._reservations.on_device(name)
            if current is not None:
                out.current_reservation.CopyFrom(convert.reservation_to_pb(current))
            if upcoming is not None:
                out.next_reservation.CopyFrom(convert.reservation_to_pb(upcoming))
        session = self._sessions.on_device(name) if self._sessions is not None else None
        if session is not None:
            out.current_session.CopyFrom(convert.session_to_pb(session))
        return out

    # -- the calendar (reservations.py) ----------------------------------------------------------------
    def _calendar(self) -> ReservationDesk:
        if self._reservations is None:
            raise Unimplemented("NO_CALENDAR", "this scheduler keeps no reservations")
        return self._reservations

    async def CreateReservation(
        self, request: pb.CreateReservationRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateReservationResponse:
        window = await self._calendar().create(caller(), convert.new_window_from_pb(request))
        return pb.CreateReservationResponse(reservation=convert.reservation_to_pb(window))

    async def ListReservations(
        self, request: pb.ListReservationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListReservationsResponse:
        windows = self._calendar().list(request.device)
        return pb.ListReservationsResponse(reservations=[convert.reservation_to_pb(w) for w in windows])

    async def CancelReservation(
        self, request: pb.CancelReservationRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelReservationResponse:
        window = await self._calendar().cancel(caller(), request.reservation_id)
        return pb.CancelReservationResponse(reservation=convert.reservation_to_pb(window))

    async def SubmitJobs(
        self, request: pb.SubmitJobsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitJobsResponse:
        results = await self._desk.submit_all(caller(), [_submission(r) for r in request.requests])
        return pb.SubmitJobsResponse(responses=[_submit_response(r) for r in results])

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
        result = await self._desk.submit(caller(), submission)
        job = result.job
        return pb.SubmitJobResponse(
            job=convert.job_to_pb(job),
            queue_position=job.queue_position,
            estimated_start_time=convert.timestamp(job.estimated_start_time),
            deduplicated=not result.created,
        )

    async def GetJob(self, request: pb.GetJobRequest, context: grpc.aio.ServicerContext) -> pb.GetJobResponse:
        job = await self._scheduler.get(await self._scheduler.job_id_for(request.job_id, request.task_id))
        message = convert.job_to_pb(job)
        for status in self._scheduler.provider_statuses(job):
            message.current_run.provider_tasks.add(
                task_id=status.task_id,
                state=gateway_pb2.TaskState.Value(f"TASK_STATE_{status.state}"),
                queue_position=status.queue_position,
                message=status.message,
                provider_status=status.provider_status,
            )
        return pb.GetJobResponse(job=message)

    async def ListJobs(
        self, request: pb.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListJobsResponse:
        flt = convert.filter_from_pb(request)
        full = request.job_view == pb.JOB_VIEW_FULL
        jobs, token = await self._scheduler.list_jobs(flt, request.page_size, request.page_token, full)
        return pb.ListJobsResponse(jobs=[convert.job_to_pb(j, full) for j in jobs], next_page_token=token)

    async def CancelJob(
        self, request: pb.CancelJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelJobResponse:
        job_id = await self._scheduler.job_id_for(request.job_id, request.task_id)
        job = await self._desk.cancel(caller(), job_id, request.reason, request.task_id)
        return pb.CancelJobResponse(job=convert.job_to_pb(job))

    async def DeleteJob(
        self, request: pb.DeleteJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteJobResponse:
        await self._desk.delete(caller(), request.job_id)
        return pb.DeleteJobResponse(job_id=request.job_id)

    async def WatchJob(
        self, request: pb.WatchJobRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchJobResponse]:
        job_id = await self._scheduler.job_id_for(request.job_id, request.task_id)
        async for item in self._scheduler.watch(job_id, request.after_seq, request.partial_data):
            if isinstance(item, Job):
                yield pb.WatchJobResponse(snapshot=convert.job_to_pb(item))
            elif isinstance(item, Change):
                response = pb.WatchJobResponse(event=convert.change_to_event_pb(item))
                file = self._scheduler.finished_data(item) if request.include_data else None
                if file is not None:
                    response.data_file.CopyFrom(convert.data_file_to_pb(file))
                yield response
            elif isinstance(item, Event):
                yield pb.WatchJobResponse(event=convert.event_to_pb(item))
            elif isinstance(item, PartialData):
                yield pb.WatchJobResponse(partial=wire.partial_to_pb(item))

    async def GetJobLog(
        self, request: pb.GetJobLogRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetJobLogResponse:
        job_id = await self._scheduler.job_id_for(request.job_id, "")
        events = await self._scheduler.job_log(job_id, request.task_id)
        return pb.GetJobLogResponse(job_id=job_id, events=[convert.event_to_pb(e) for e in events])

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
        job = await self._desk.rerun(
            caller(),
            request.job_id,
            payload,
            request.payload.ByteSize(),
            request.request_id,
            request.experiment_revision,
        )
        return pb.RerunJobResponse(
            job=convert.job_to_pb(job),
            queue_position=job.queue_position,
            estimated_start_time=convert.timestamp(job.estimated_start_time),
        )

    async def ListRuns(
        self, request: pb.ListRunsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRunsResponse:
        full = request.job_view == pb.JOB_VIEW_FULL
        runs, token = await self._scheduler.list_runs(
            request.job_id, request.page_size, request.page_token, full
        )
        return pb.ListRunsResponse(runs=[convert.run_to_pb(r, full) for r in runs], next_page_token=token)

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
            scoring_json=results.get("scoring_json", ""),
            cached=view.cached,
            fetch_time=convert.timestamp(view.fetch_time),
        )

    async def ListDevices(
        self, request: pb.ListDevicesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDevicesResponse:
        return pb.ListDevicesResponse(devices=[self._device(view) for view in await self._desk.devices()])

    async def GetDevice(
        self, request: pb.GetDeviceRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetDeviceResponse:
        return pb.GetDeviceResponse(device=self._device(await self._desk.device(request.name)))

    async def PauseDevice(
        self, request: pb.PauseDeviceRequest, context: grpc.aio.ServicerContext
    ) -> pb.PauseDeviceResponse:
        view = await self._desk.pause(caller(), request.name, request.reason)
        return pb.PauseDeviceResponse(device=self._device(view))

    async def ResumeDevice(
        self, request: pb.ResumeDeviceRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResumeDeviceResponse:
        return pb.ResumeDeviceResponse(device=self._device(await self._desk.resume(caller(), request.name)))

    async def DrainDevice(
        self, request: pb.DrainDeviceRequest, context: grpc.aio.ServicerContext
    ) -> pb.DrainDeviceResponse:
        view = await self._desk.drain(caller(), request.name, request.reason)
        return pb.DrainDeviceResponse(device=self._device(view))

    async def ListCalibrations(
        self, request: pb.ListCalibrationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCalibrationsResponse:
        listing = await self._scheduler.calibration_listing(request.device)
        return pb.ListCalibrationsResponse(
            calibrations=[convert.calibration_to_pb(s, listing.now, deps) for s, deps in listing.states],
            definitions_revision_id=listing.definitions_revision_id,
        )

    async def RunCalibration(
        self, request: pb.RunCalibrationRequest, context: grpc.aio.ServicerContext
    ) -> pb.RunCalibrationResponse:
        queued = await self._scheduler.calibrate(request.device, request.name)
        return pb.RunCalibrationResponse(queued=queued)


def _device(view: DeviceView) -> pb.Device:
    status = view.status
    typical = duration_pb2.Duration()
    typical.FromMilliseconds(int(status.typical_run_seconds * 1000))
    return pb.Device(
        name=status.name,
        kinds=sorted(convert.KIND_TO_PB[k] for k in status.kinds),
        queued=status.queued,
        running_job_id=status.running_job_id,
        typical_run_duration=typical,
        queue_state=pb.DeviceQueueState.Value(f"DEVICE_QUEUE_STATE_{view.queue_state.value}"),
        hold_reason=view.hold_reason,
        held_by=view.held_by,
        hold_time=convert.timestamp(view.hold_time),
        **_executor_fields(status),
    )


def _executor_fields(status: DeviceStatus) -> dict[str, Any]:
    seen = status.executor
    if seen is None or not seen.state:
        return {"dispatched_by": status.dispatched_by}
    return {
        "executor_connection": pb.ExecutorConnection.Value(f"EXECUTOR_CONNECTION_{seen.state}"),
        "executor_connection_since": convert.timestamp(datetime.fromtimestamp(seen.since, UTC)),
        "executor_message": seen.message,
        "dispatched_by": status.dispatched_by,
    }


def _submission(request: pb.SubmitJobRequest) -> Submission:
    return Submission(
        device=request.device,
        payload=convert.payload_from_pb(request.payload),
        priority=request.priority,
        owner=request.owner,
        request_id=request.request_id,
        labels=dict(request.labels),
        payload_bytes=request.payload.ByteSize(),
    )


def _submit_response(result: SubmitResult) -> pb.SubmitJobResponse:
    job = result.job
    return pb.SubmitJobResponse(
        job=convert.job_to_pb(job),
        queue_position=job.queue_position,
        estimated_start_time=convert.timestamp(job.estimated_start_time),
        deduplicated=not result.created,
    )
