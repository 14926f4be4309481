"""HardwareExecutorService through real gRPC with the simulated board."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import grpc
import h5py
import pytest

from qsched.api.executor.v1 import executor_pb2 as pb
from qsched.wire import error_info
from tests.executor.conftest import WAIT_S, RoundGate, executor_service

RABI = {"expts": 21, "reps": 50, "stop": 0.9}


def request(
    task_id: str = "task-1",
    job_id: str = "JOB-20260113-00001",
    cls: str = "AmplitudeRabiExperiment",
    module: str = "qsched_hardware.experiments",
    expt: dict | None = None,
    configs=(),
):
    return pb.ExecuteRequest(
        job_id=job_id,
        task_id=task_id,
        owner="alice",
        experiment=pb.Experiment(
            experiment_class=cls,
            experiment_module=module,
            expt_config_json=json.dumps(RABI if expt is None else expt),
        ),
        configs=list(configs),
    )


def kinds(updates):
    return [u.WhichOneof("update") for u in updates]


async def collect(call) -> list[pb.ExecutionUpdate]:
    return [message.update async for message in call]


async def read_rest(call) -> list[pb.ExecutionUpdate]:
    """The remaining updates of a call already read with read()."""
    out = []
    while (message := await call.read()) is not grpc.aio.EOF:
        out.append(message.update)
    return out


async def test_execute_streams_accepted_started_progress_result_with_hdf5(executor, tmp_path):
    stub, _, _ = executor
    updates = await collect(stub.Execute(request(expt={**RABI, "rounds": 3})))
    k = kinds(updates)
    assert k[0] == "accepted" and k[1] == "started" and k[-1] == "result"
    assert set(k[2:-1]) == {"progress"}
    assert [u.seq for u in updates] == list(range(1, len(updates) + 1))
    assert all(u.task_id == "task-1" for u in updates)
    last_progress = [u.progress for u in updates if u.WhichOneof("update") == "progress"][-1]
    assert (
        last_progress.rounds_done == 3 and last_progress.rounds_total == 3 and last_progress.fraction == 1.0
    )
    assert last_progress.reps_done == 150
    result = updates[-1].result
    assert "pi_gain" in result.summary and 0.3 < result.summary["pi_gain"] < 0.6
    assert "qubit.pi_pulse.gain" in result.config_updates
    path = tmp_path / "data"
    assert result.data_file_path.startswith(str(path)) and result.data_file_path.endswith(
        "JOB-20260113-00001.h5"
    )
    content = Path(result.data_file_path).read_bytes()
    assert hashlib.sha256(content).hexdigest() == result.data_sha256
    assert len(content) == result.data_size_bytes
    with h5py.File(result.data_file_path, "r") as f:
        assert f["xpts"].shape == (21,) and f["avgi"].shape == (21,) and f["avgq"].shape == (21,)
        assert f.attrs["job_id"] == "JOB-20260113-00001" and f.attrs["task_id"] == "task-1"
        assert f.attrs["user"] == "alice" and not f.attrs["partial"]
        assert json.loads(f.attrs["config"])["expt"]["expts"] == 21
        assert f.attrs["qick_version"] and len(f.attrs["board_config_sha256"]) == 64
        assert len(f.attrs["hardware_config_sha256"]) == 64
        assert f.attrs["start_time"] <= f.attrs["end_time"]
        # Labelled axes and the fit, for plots: the fitted curve follows the fitted signal.
        assert (f["xpts"].attrs["long_name"], f["xpts"].attrs["units"]) == (
            "pulse gain",
            "fraction of full scale",
        )
        signal, curve = f["signal"][()], f["fit_signal"][()]
        assert signal.shape == curve.shape == (21,) and f["signal"].attrs["units"] == "ADC units"
        assert abs(signal - curve).max() < 0.2 * (signal.max() - signal.min())


async def test_a_second_run_of_the_same_job_gets_its_own_file(executor):
    stub, _, _ = executor
    first = (await collect(stub.Execute(request("t-a"))))[-1].result.data_file_path
    second = (await collect(stub.Execute(request("t-b"))))[-1].result.data_file_path
    assert first != second and second.endswith("JOB-20260113-00001-r2.h5")


async def test_progress_is_rate_limited(executor):
    stub, _, _ = executor
    updates = await collect(stub.Execute(request(expt={"expts": 5, "reps": 5, "rounds": 400})))
    progress = [u for u in updates if u.WhichOneof("update") == "progress"]
    assert progress, "no progress reported"
    span_s = (updates[-1].time.ToNanoseconds() - updates[0].time.ToNanoseconds()) / 1e9
    # at most ~10 per second (+ the first and the final one), far fewer than the 400 rounds x polls
    assert len(progress) <= span_s * 10 + 2
    assert progress[-1].progress.rounds_done == 400


async def test_second_execute_is_refused_device_busy_and_get_device_reports_busy(tmp_path):
    gate = RoundGate()
    async with executor_service(tmp_path, gate) as (stub, _, _):
        idle = (await stub.GetDevice(pb.GetDeviceRequest())).device
        assert idle.state == pb.DeviceInfo.STATE_IDLE and idle.simulated and idle.board_model == "ZCU216"
        assert idle.generator_count == 16 and idle.readout_count == 10 and idle.board_id.startswith("sim-")
        first = stub.Execute(request("t-1", job_id="JOB-A"))
        assert (await first.read()).update.WhichOneof("update") == "accepted"
        await asyncio.to_thread(gate.held.wait, WAIT_S)
        busy = (await stub.GetDevice(pb.GetDeviceRequest())).device
        assert busy.state == pb.DeviceInfo.STATE_BUSY
        assert busy.current_task_id == "t-1" and busy.current_job_id == "JOB-A"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await collect(stub.Execute(request("t-2")))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(err.value).reason == "DEVICE_BUSY"
        gate.open()
        rest = await read_rest(first)
        assert rest[-1].WhichOneof("update") == "result"
        after = (await stub.GetDevice(pb.GetDeviceRequest())).device
        assert after.state == pb.DeviceInfo.STATE_IDLE and after.current_task_id == ""


async def test_run_survives_a_dropped_execute_stream_and_watchrun_reattaches(tmp_path):
    gate = RoundGate()
    async with executor_service(tmp_path, gate) as (stub, _, _):
        call = stub.Execute(request("t-drop"))
        seen = [(await call.read()).update, (await call.read()).update]
        assert kinds(seen) == ["accepted", "started"]
        call.cancel()  # the scheduler's stream drops
        await asyncio.to_thread(gate.held.wait, WAIT_S)
        gate.open()
        replay = [m.update async for m in stub.WatchRun(pb.WatchRunRequest(task_id="t-drop", after_seq=2))]
        assert [u.seq for u in replay] == list(range(3, 3 + len(replay)))
        assert replay[-1].WhichOneof("update") == "result"
        # after the end: a re-attach replays what came after the given seq
        again = [m.update async for m in stub.WatchRun(pb.WatchRunRequest(task_id="t-drop", after_seq=1))]
        assert [u.seq for u in again] == list(range(2, replay[-1].seq + 1))


async def test_watchrun_of_an_unknown_run_is_not_found(executor):
    stub, _, _ = executor
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(stub.WatchRun(pb.WatchRunRequest(task_id="nope", after_seq=0)))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(err.value).reason == "RUN_NOT_FOUND"


async def test_cancel_stops_between_rounds_and_keeps_partial_data(tmp_path):
    gate = RoundGate(free_rounds=2)
    async with executor_service(tmp_path, gate) as (stub, _, _):
        call = stub.Execute(request("t-cancel", expt={**RABI, "rounds": 6}))
        await asyncio.to_thread(gate.held.wait, WAIT_S)  # rounds 1 and 2 done, round 3 held
        response = await stub.CancelRun(pb.CancelRunRequest(task_id="t-cancel", reason="user asked"))
        assert response.cancelling
        gate.open()
        updates = await read_rest(call)
        assert updates[-1].WhichOneof("update") == "cancelled"
        cancelled = updates[-1].cancelled
        assert cancelled.reason == "user asked" and cancelled.rounds_done == 2
        with h5py.File(cancelled.data_file_path, "r") as f:
            assert f.attrs["partial"] and f["avgi"].shape == (21,)
        assert (
            hashlib.sha256(Path(cancelled.data_file_path).read_bytes()).hexdigest() == cancelled.data_sha256
        )
        again = await stub.CancelRun(pb.CancelRunRequest(task_id="t-cancel"))
        assert not again.cancelling


async def test_validate_experiment_names_the_offending_parameters(executor):
    stub, _, _ = executor

    async def violations(cls: str, expt: dict, module: str = "qsched_hardware.experiments"):
        exp = pb.Experiment(experiment_class=cls, experiment_module=module, expt_config_json=json.dumps(expt))
        response = await stub.ValidateExperiment(pb.ValidateExperimentRequest(experiment=exp))
        return {v.field: v.description for v in response.violations}

    assert await violations("AmplitudeRabiExperiment", RABI) == {}
    bad = await violations("AmplitudeRabiExperiment", {"stop": 1.5, "reps": 0})
    assert "expt.stop" in bad and "[-1, 1]" in bad["expt.stop"] and "expt.reps" in bad
    assert "expt.freq" in await violations("AmplitudeRabiExperiment", {"freq": 20000.0})
    assert "expt.start" in await violations("ResonatorSpectroscopyExperiment", {"start": -5.0})
    assert "expt.length" in await violations("QubitSpectroscopyExperiment", {"length": 500.0})
    assert "experiment_class" in await violations("NoSuchExperiment", {})
    assert "expt.rounds" in await violations("SingleShotExperiment", {"rounds": 3})
    # seed-style names and the defining module are accepted too
    assert (
        await violations("T2RamseyExperiment", {"expts": 11}, module="qsched_hardware.experiments.ramsey")
        == {}
    )
    # the same check at Execute time refuses the run before it is accepted
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(stub.Execute(request("t-bad", expt={"stop": 1.5})))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err.value).reason == "INVALID_EXPERIMENT" and "expt.stop" in err.value.details()


async def test_fetch_data_round_trip_with_sha(executor):
    stub, _, _ = executor
    result = (await collect(stub.Execute(request("t-fetch", expt={**RABI, "expts": 2001, "reps": 2}))))[
        -1
    ].result
    chunks = [m async for m in stub.FetchData(pb.FetchDataRequest(task_id="t-fetch"))]
    data = b"".join(c.chunk for c in chunks)
    assert chunks[0].sha256 == result.data_sha256 == hashlib.sha256(data).hexdigest()
    assert all(not c.sha256 for c in chunks[1:])
    assert [c.offset for c in chunks] == [sum(len(x.chunk) for x in chunks[:i]) for i in range(len(chunks))]
    assert chunks[0].total_size == len(data) == result.data_size_bytes
    assert data == Path(result.data_file_path).read_bytes()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(stub.FetchData(pb.FetchDataRequest(task_id="unknown")))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_module_outside_the_allow_list_is_refused_and_never_imported(tmp_path, monkeypatch):
    package = tmp_path / "evil_lab"
    package.mkdir()
    marker = tmp_path / "imported.marker"
    (package / "__init__.py").write_text("")
    (package / "experiments.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\nclass Boom: pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    async with executor_service(tmp_path / "state", experiment_packages=("qsched_lab_example",)) as (
        stub,
        _,
        _,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await collect(stub.Execute(request("t-evil", cls="Boom", module="evil_lab.experiments", expt={})))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(err.value).reason == "MODULE_NOT_ALLOWED"
        exp = pb.Experiment(
            experiment_class="Boom", experiment_module="evil_lab.experiments", expt_config_json="{}"
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ValidateExperiment(pb.ValidateExperimentRequest(experiment=exp))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # a prefix that only looks like the allowed package is not in it
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await collect(
                stub.Execute(request("t-evil2", cls="X", module="qsched_lab_example_evil", expt={}))
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert not marker.exists()
    import sys

    assert "evil_lab.experiments" not in sys.modules and "evil_lab" not in sys.modules


async def test_an_allow_listed_plugin_runs(tmp_path):
    async with executor_service(tmp_path, experiment_packages=("qsched_lab_example",)) as (stub, _, _):
        updates = await collect(
            stub.Execute(
                request(
                    "t-plugin",
                    cls="PulseTrainExperiment",
                    module="qsched_lab_example.pulse_train",
                    expt={"max_pulses": 4, "reps": 50},
                )
            )
        )
        assert updates[-1].WhichOneof("update") == "result", updates[-1]
        assert updates[-1].result.summary["contrast"] > 100
        with h5py.File(updates[-1].result.data_file_path, "r") as f:
            assert f["signal"].shape == (5,)
            assert f.attrs["experiment_module"] == "qsched_lab_example.pulse_train"
