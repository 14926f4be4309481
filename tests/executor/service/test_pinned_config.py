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
from qsched.wire import error_info
from qsched_hardware.hwconfig import load_hardware_config
from qsched_runtime.server import Registration, start_server
from tests.executor.conftest import executor_service
from tests.executor.service.test_service import collect, request


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
    pinned = [pb.PinnedConfig(config_type="hardware_config", revision_id="CFG-HW-20260113-00007", sha256=sha)]
    async with executor_service(tmp_path, configs_address=address) as (stub, _, _):
        for task in ("t-1", "t-2"):
            updates = await collect(stub.Execute(request(task, expt={"expts": 5, "reps": 5}, configs=pinned)))
            assert updates[-1].WhichOneof("update") == "result"
        assert fake.calls == 1  # the second run used the cache
        with h5py.File(updates[-1].result.data_file_path, "r") as f:
            assert f.attrs["hardware_config_revision_id"] == "CFG-HW-20260113-00007"
            assert f.attrs["hardware_config_sha256"] == sha
            assert json.loads(f.attrs["config"])["qubit"]["pi_pulse"]["gain"] == 0.21
            assert json.loads(f.attrs["pinned_configs"])[0]["revision_id"] == "CFG-HW-20260113-00007"

        bad = [
            pb.PinnedConfig(
                config_type="hardware_config", revision_id="CFG-HW-20260113-00007", sha256="0" * 64
            )
        ]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await collect(stub.Execute(request("t-3", configs=bad)))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(err.value).reason == "CONFIG_CHECKSUM_MISMATCH"

        missing = [pb.PinnedConfig(config_type="hardware_config", revision_id="CFG-HW-20260113-00099")]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await collect(stub.Execute(request("t-4", configs=missing)))
        assert error_info(err.value).reason == "CONFIG_UNAVAILABLE"
        # the board is free again after the refusals
        assert (await stub.GetDevice(pb.GetDeviceRequest())).device.state == pb.DeviceInfo.STATE_IDLE
