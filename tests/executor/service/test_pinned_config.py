"""A run that pins a hardware_config revision uses the config service's content (checked by
sha256, cached by hash) instead of the local file. The config service here is a small fake
speaking qsched.configs.v1 GetRevision."""

from __future__ import annotations

import hashlib
import json

import grpc
import h5py
import pytest
import yaml

from qsched.api.configs.v1 import configs_pb2, configs_pb2_grpc
from qsched.api.executor.v1 import executor_pb2 as pb
from qsched_core.execution import PinnedRevision, Succeeded
from qsched_hardware.hwconfig import load_hardware_config
from qsched_runtime.server import Registration, start_server
from tests.executor.conftest import executor_service, run_queue, run_request


class FakeConfigService(configs_pb2_grpc.ConfigServiceServicer):
    def __init__(self, revisions: dict[str, bytes]):
        self.revisions = revisions
        self.calls = 0

    async def GetRevision(self, request, context):
        self.calls += 1
        content = self.revisions.get(request.revision_id)
        if content is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no revision {request.revision_id}")
        return configs_pb2.GetRevisionResponse(
            revision=configs_pb2.ConfigRevision(
                revision_id=request.revision_id,
                config_type="hardware_config",
                sha256=hashlib.sha256(content).hexdigest(),
                size_bytes=len(content),
                content=content,
            )
        )


@pytest.fixture
async def config_service():
    cfg = load_hardware_config()[0]
    cfg["qubit"]["pi_pulse"]["gain"] = 0.21  # recognisable
    content = yaml.safe_dump(cfg).encode()
    fake = FakeConfigService({"CFG-HW-20260113-00007": content})
    name = configs_pb2.DESCRIPTOR.services_by_name["ConfigService"].full_name
    server = await start_server(
        "127.0.0.1:0",
        [Registration(name, lambda s: configs_pb2_grpc.add_ConfigServiceServicer_to_server(fake, s))],
    )
    yield fake, f"127.0.0.1:{server.port}", content
    await server.stop(0)


async def test_pinned_hardware_config_is_fetched_verified_and_cached(tmp_path, config_service):
    fake, address, content = config_service
    sha = hashlib.sha256(content).hexdigest()
    pinned = (PinnedRevision("hardware_config", "CFG-HW-20260113-00007", sha),)
    async with executor_service(tmp_path, configs_address=address) as (stub, _, _), run_queue(stub) as queue:
        expt = {"expts": 5, "reps": 5}
        taken = await queue.enqueue(
            run_request("t-1", expt=expt, configs=pinned), run_request("t-2", expt=expt, configs=pinned)
        )
        assert taken.accepted == ("t-1", "t-2")
        result = (await queue.ended_run("t-2")).body
        assert isinstance(result, Succeeded)
        assert fake.calls == 1  # the second run used the cache
        with h5py.File(tmp_path / "data" / result.data.name, "r") as f:
            assert f.attrs["hardware_config_revision_id"] == "CFG-HW-20260113-00007"
            assert f.attrs["hardware_config_sha256"] == sha
            assert json.loads(f.attrs["config"])["qubit"]["pi_pulse"]["gain"] == 0.21
            assert json.loads(f.attrs["pinned_configs"])[0]["revision_id"] == "CFG-HW-20260113-00007"

        bad = (PinnedRevision("hardware_config", "CFG-HW-20260113-00007", "0" * 64),)
        missing = (PinnedRevision("hardware_config", "CFG-HW-20260113-00099", ""),)
        refused = await queue.enqueue(
            run_request("t-3", configs=bad), run_request("t-4", configs=missing), after="t-2"
        )
        assert [(r.task_id, r.reason) for r in refused.refused] == [
            ("t-3", "CONFIG_CHECKSUM_MISMATCH"),
            ("t-4", "CONFIG_UNAVAILABLE"),
        ]
        # nothing was taken: the board is idle and the tail unchanged
        device = (await stub.GetDevice(pb.GetDeviceRequest())).device
        assert device.state == pb.DeviceInfo.STATE_IDLE and not device.waiting_task_ids
        assert refused.tail_task_id == ""
