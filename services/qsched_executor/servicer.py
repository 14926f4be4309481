"""qsched.executor.v1.HardwareExecutorService: translates protos to HardwareExecutor calls and
domain results and errors back (google.rpc.Status with ErrorInfo)."""

from __future__ import annotations

import asyncio

import grpc

from qsched.api.executor.v1 import executor_pb2 as pb
from qsched.api.executor.v1 import executor_pb2_grpc as pb_grpc
from qsched.wire import timestamp
from qsched_executor.errors import DOMAIN
from qsched_executor.executor import ExecRequest, HardwareExecutor
from qsched_executor.runs import Update
from qsched_runtime.errors import translates_errors

CHUNK_BYTES = 1 << 20


def update_to_pb(task_id: str, update: Update) -> pb.ExecutionUpdate:
    f = update.fields
    msg = pb.ExecutionUpdate(task_id=task_id, seq=update.seq, time=timestamp(update.time))
    if update.kind == "accepted":
        msg.accepted.SetInParent()
    elif update.kind == "started":
        msg.started.SetInParent()
    elif update.kind == "progress":
        msg.progress.CopyFrom(
            pb.RunProgress(
                rounds_done=f.get("rounds_done", 0),
                rounds_total=f.get("rounds_total", 0),
                reps_done=f.get("reps_done", 0),
                fraction=f.get("fraction", 0.0),
            )
        )
    elif update.kind == "result":
        msg.result.CopyFrom(
            pb.RunResult(
                data_file_path=f.get("data_file_path", ""),
                summary=f.get("summary", {}),
                data_sha256=f.get("data_sha256", ""),
                data_size_bytes=f.get("data_size_bytes", 0),
                config_updates=f.get("config_updates", {}),
            )
        )
    elif update.kind == "error":
        msg.error.CopyFrom(pb.RunError(reason=f.get("reason", ""), message=f.get("message", "")))
    elif update.kind == "cancelled":
        msg.cancelled.CopyFrom(
            pb.RunCancelled(
                reason=f.get("reason", ""),
                data_file_path=f.get("data_file_path", ""),
                data_sha256=f.get("data_sha256", ""),
                rounds_done=f.get("rounds_done", 0),
            )
        )
    return msg


def _configs(items) -> tuple[tuple[str, str, str], ...]:
    return tuple((c.config_type, c.revision_id, c.sha256) for c in items)


@translates_errors(DOMAIN)
class ExecutorServicer(pb_grpc.HardwareExecutorServiceServicer):
    def __init__(self, executor: HardwareExecutor):
        self._executor = executor

    async def Execute(self, request: pb.ExecuteRequest, context: grpc.aio.ServicerContext):
        exp = request.experiment
        run = await self._executor.execute(
            ExecRequest(
                job_id=request.job_id,
                task_id=request.task_id,
                owner=request.owner,
                experiment_class=exp.experiment_class,
                experiment_module=exp.experiment_module,
                expt_config_json=exp.expt_config_json,
                configs=_configs(request.configs),
                after_task_id=request.after_task_id,
            )
        )
        async for update in run.follow(0):
            yield pb.ExecuteResponse(update=update_to_pb(run.task_id, update))

    async def WatchRun(self, request: pb.WatchRunRequest, context: grpc.aio.ServicerContext):
        run = self._executor.get_run(request.task_id)
        after = request.after_seq
        if after <= 0 and run.updates:
            after = len(run.updates) - 1  # 0 = from the latest update
        async for update in run.follow(after):
            yield pb.WatchRunResponse(update=update_to_pb(run.task_id, update))

    async def CancelRun(self, request: pb.CancelRunRequest, context: grpc.aio.ServicerContext):
        cancelling = self._executor.cancel(request.task_id, request.reason, request.only_if_waiting)
        return pb.CancelRunResponse(cancelling=cancelling)

    async def GetDevice(self, request: pb.GetDeviceRequest, context: grpc.aio.ServicerContext):
        d = self._executor.device()
        return pb.GetDeviceResponse(
            device=pb.DeviceInfo(
                board_id=d["board_id"],
                board_uri=d["board_uri"],
                board_model=d["board_model"],
                qick_version=d["qick_version"],
                config_sha256=d["config_sha256"],
                generator_count=d["generator_count"],
                readout_count=d["readout_count"],
                state=pb.DeviceInfo.STATE_BUSY if d["busy"] else pb.DeviceInfo.STATE_IDLE,
                current_task_id=d["current_task_id"],
                current_job_id=d["current_job_id"],
                simulated=d["simulated"],
                pipelined_dispatch=True,
            )
        )

    async def ValidateExperiment(
        self, request: pb.ValidateExperimentRequest, context: grpc.aio.ServicerContext
    ):
        exp = request.experiment
        violations = await self._executor.validate(
            exp.experiment_module, exp.experiment_class, exp.expt_config_json, _configs(request.configs)
        )
        return pb.ValidateExperimentResponse(
            violations=[pb.Violation(field=v.field, description=v.description) for v in violations]
        )

    async def FetchData(self, request: pb.FetchDataRequest, context: grpc.aio.ServicerContext):
        path, sha = self._executor.data_file(request.task_id)
        total = path.stat().st_size
        offset = 0
        with open(path, "rb") as handle:
            while True:
                chunk = await asyncio.to_thread(handle.read, CHUNK_BYTES)
                if not chunk and offset > 0:
                    break
                yield pb.FetchDataResponse(
                    offset=offset, chunk=chunk, total_size=total, sha256=sha if offset == 0 else ""
                )
                offset += len(chunk)
                if not chunk:
                    break
