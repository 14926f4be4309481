"""HardwareExecutorService through real gRPC with the simulated board: what a run produces (its
updates and its HDF5 file), WatchRun, FetchData, validation and its cache, the plug-in
allow-list, a full disk, the writer processes and the run's span."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path

import grpc
import h5py
import pytest

from qsched.api.executor.v1 import executor_pb2 as pb
from qsched.wire import error_info
from qsched_core.execution import Failed, Progress, Succeeded
from qsched_hardware.datafile import TMP_SUFFIX
from tests.executor.conftest import (
    RABI,
    WAIT_S,
    RoundGate,
    executor_service,
    noop,
    run_queue,
    run_request,
)


async def collect(call) -> list:
    return [message async for message in call]


async def test_a_run_streams_accepted_started_progress_result_and_its_hdf5_file(executor, tmp_path):
    stub, _, _ = executor
    async with run_queue(stub) as queue:
        await queue.enqueue(run_request("task-1", expt={**RABI, "rounds": 3}))
        end = await queue.ended_run("task-1")
        updates = queue.updates("task-1")
    kinds = [u.kind.value for u in updates]
    assert kinds[:2] == ["accepted", "started"] and kinds[-1] == "succeeded"
    assert set(kinds[2:-1]) == {"progress", "output"}  # output: the experiment's log lines
    assert [u.seq for u in updates] == list(range(1, len(updates) + 1))
    last_progress = [u.body for u in updates if isinstance(u.body, Progress)][-1]
    assert last_progress == Progress(3, 3, 150, 1.0)
    result = end.body
    assert isinstance(result, Succeeded)
    assert 0.3 < result.summary["pi_gain"] < 0.6 and "qubit.pi_pulse.gain" in result.config_updates
    # a name relative to the data root, not a host path
    assert not result.data.name.startswith("/") and result.data.name.endswith("JOB-20260113-00001-task-1.h5")
    path = tmp_path / "data" / result.data.name
    content = path.read_bytes()
    assert (
        hashlib.sha256(content).hexdigest() == result.data.sha256 and len(content) == result.data.size_bytes
    )
    with h5py.File(path, "r") as f:
        assert f["xpts"].shape == (21,) and f["avgi"].shape == (21,) and f["avgq"].shape == (21,)
        assert f.attrs["job_id"] == "JOB-20260113-00001" and f.attrs["task_id"] == "task-1"
        assert f.attrs["user"] == "alice" and not f.attrs["partial"] and f.attrs["format"] == "qsched-run/1"
        assert json.loads(f.attrs["config"])["expt"]["expts"] == 21
        assert f.attrs["qick_version"] and len(f.attrs["board_config_sha256"]) == 64
        assert len(f.attrs["hardware_config_sha256"]) == 64
        assert f.attrs["start_time"] <= f.attrs["end_time"]
        assert (f["xpts"].attrs["long_name"], f["xpts"].attrs["units"]) == (
            "pulse gain",
            "fraction of full scale",
        )
        signal, curve = f["signal"][()], f["fit_signal"][()]
        assert signal.shape == curve.shape == (21,) and f["signal"].attrs["units"] == "ADC units"
        assert abs(signal - curve).max() < 0.2 * (signal.max() - signal.min())


async def test_progress_is_rate_limited(executor):
    stub, _, _ = executor
    async with run_queue(stub) as queue:
        await queue.enqueue(run_request("t-p", expt={"expts": 5, "reps": 5, "rounds": 400}))
        await queue.ended_run("t-p")
        updates = queue.updates("t-p")
    progress = [u for u in updates if isinstance(u.body, Progress)]
    span_s = updates[-1].time - updates[0].time
    # at most ~10 per second (+ the first and the final one), far fewer than the 400 rounds
    assert progress and len(progress) <= span_s * 10 + 2
    assert progress[-1].body.rounds_done == 400


async def test_watchrun_reattaches_to_a_run_whose_queue_dropped(tmp_path):
    gate = RoundGate()
    async with executor_service(tmp_path, gate) as (stub, _, _):
        async with run_queue(stub) as queue:
            await queue.enqueue(run_request("t-drop"))
            await asyncio.to_thread(gate.held.wait, WAIT_S)
        gate.open()  # the queue's stream is gone; the run goes on
        replay = [m.update async for m in stub.WatchRun(pb.WatchRunRequest(task_id="t-drop", after_seq=2))]
        assert [u.seq for u in replay] == list(range(3, 3 + len(replay)))
        assert replay[-1].WhichOneof("update") == "result"
        again = [m.update async for m in stub.WatchRun(pb.WatchRunRequest(task_id="t-drop", after_seq=1))]
        assert [u.seq for u in again] == list(range(2, replay[-1].seq + 1))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await collect(stub.WatchRun(pb.WatchRunRequest(task_id="nope")))
        assert (
            err.value.code() == grpc.StatusCode.NOT_FOUND and error_info(err.value).reason == "RUN_NOT_FOUND"
        )


async def test_fetch_data_by_task_or_by_name(executor, tmp_path):
    stub, _, _ = executor
    async with run_queue(stub) as queue:
        await queue.enqueue(run_request("t-fetch", expt={**RABI, "expts": 2001, "reps": 2}))
        ref = (await queue.ended_run("t-fetch")).body.data
    for request in (pb.FetchDataRequest(task_id="t-fetch"), pb.FetchDataRequest(name=ref.name)):
        chunks = await collect(stub.FetchData(request))
        data = b"".join(c.chunk for c in chunks)
        assert chunks[0].sha256 == ref.sha256 == hashlib.sha256(data).hexdigest()
        assert chunks[0].name == ref.name and all(not c.sha256 and not c.name for c in chunks[1:])
        assert chunks[0].total_size == len(data) == ref.size_bytes
        assert data == (tmp_path / "data" / ref.name).read_bytes()
    for request in (
        pb.FetchDataRequest(task_id="unknown"),
        pb.FetchDataRequest(name="../identity.db"),  # nothing outside the data root
        pb.FetchDataRequest(name="2026-01-13/none.h5"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await collect(stub.FetchData(request))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


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
    assert (
        await violations("T2RamseyExperiment", {"expts": 11}, module="qsched_hardware.experiments.ramsey")
        == {}
    )


async def test_validation_is_done_once_per_experiment_settings_and_hardware_config(executor, monkeypatch):
    stub, executor_, _ = executor
    from qsched_hardware.experiments import AmplitudeRabiExperiment

    calls = []
    original = AmplitudeRabiExperiment.validate
    monkeypatch.setattr(AmplitudeRabiExperiment, "validate", lambda self: calls.append(1) or original(self))
    async with run_queue(stub) as queue:
        await queue.enqueue(
            run_request("t-1"), run_request("t-2"), run_request("t-3", expt={**RABI, "reps": 51})
        )
        await queue.ended_run("t-3")
        # the same settings again, even from ValidateExperiment: the cached answer
        exp = pb.Experiment(
            experiment_class="AmplitudeRabiExperiment",
            experiment_module="qsched_hardware.experiments",
            expt_config_json=json.dumps(RABI),
        )
        assert not (await stub.ValidateExperiment(pb.ValidateExperimentRequest(experiment=exp))).violations
        refused = await queue.enqueue(
            run_request("t-4", expt={"stop": 1.5}), run_request("t-5", expt={"stop": 1.5})
        )
        assert [r.reason for r in refused.refused] == ["INVALID_EXPERIMENT", "INVALID_EXPERIMENT"]
    assert len(calls) == 3  # RABI, RABI with 51 reps, the invalid one: each checked once
    assert executor_.validations.hits == 3 and executor_.validations.misses == 3


async def test_a_module_outside_the_allow_list_is_refused_and_never_imported(tmp_path, monkeypatch):
    package = tmp_path / "evil_lab"
    package.mkdir()
    marker = tmp_path / "imported.marker"
    (package / "__init__.py").write_text("")
    (package / "experiments.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\nclass Boom: pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    async with (
        executor_service(tmp_path / "state", experiment_packages=("qsched_lab_example",)) as (stub, _, _),
        run_queue(stub) as queue,
    ):
        answer = await queue.enqueue(
            run_request("t-evil", cls="Boom", module="evil_lab.experiments", expt={}),
            run_request("t-evil2", cls="X", module="qsched_lab_example_evil", expt={}),  # only looks allowed
        )
        assert [r.reason for r in answer.refused] == ["MODULE_NOT_ALLOWED", "MODULE_NOT_ALLOWED"]
        exp = pb.Experiment(
            experiment_class="Boom", experiment_module="evil_lab.experiments", expt_config_json="{}"
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ValidateExperiment(pb.ValidateExperimentRequest(experiment=exp))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert not marker.exists()
    assert "evil_lab.experiments" not in sys.modules and "evil_lab" not in sys.modules


async def test_an_allow_listed_plugin_runs(tmp_path):
    async with (
        executor_service(tmp_path, experiment_packages=("qsched_lab_example",)) as (stub, _, _),
        run_queue(stub) as queue,
    ):
        expt = {"max_pulses": 4, "reps": 50}
        await queue.enqueue(
            run_request(
                "t-plugin", cls="PulseTrainExperiment", module="qsched_lab_example.pulse_train", expt=expt
            )
        )
        result = (await queue.ended_run("t-plugin")).body
        assert isinstance(result, Succeeded) and result.summary["contrast"] > 100
        with h5py.File(tmp_path / "data" / result.data.name, "r") as f:
            assert (
                f["signal"].shape == (5,) and f.attrs["experiment_module"] == "qsched_lab_example.pulse_train"
            )


async def test_a_full_disk_fails_the_run_disk_full_and_the_queue_goes_on(tmp_path):
    """The file is written under a temporary name first: planting /dev/full there makes the
    kernel answer ENOSPC, through the real writer process."""
    async with executor_service(tmp_path, data_writers=1) as (stub, _, _), run_queue(stub) as queue:
        from datetime import datetime

        from qsched_hardware.datafile import run_file_name

        name = run_file_name("JOB-20260113-00001", "t-full", datetime.now())
        tmp = tmp_path / "data" / (name + TMP_SUFFIX)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        os.symlink("/dev/full", tmp)
        await queue.enqueue(noop("t-full"), noop("t-after", "JOB-20260113-00002"))
        failed = (await queue.ended_run("t-full")).body
        assert isinstance(failed, Failed) and failed.reason == "DISK_FULL", failed
        assert not (tmp_path / "data" / name).exists() and not os.path.lexists(tmp)
        assert isinstance((await queue.ended_run("t-after")).body, Succeeded)


async def test_the_run_span_joins_the_jobs_trace(executor, spans):
    stub, _, _ = executor
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    parent = f"00-{trace_id}-b7ad6b7169203331-01"
    async with run_queue(stub) as queue:
        await queue.enqueue(_traced("t-traced", parent))
        await queue.ended_run("t-traced")
    (span,) = [s for s in spans.get_finished_spans() if s.name == "executor.run"]
    assert format(span.context.trace_id, "032x") == trace_id
    assert format(span.parent.span_id, "016x") == "b7ad6b7169203331"
    assert (
        span.attributes["qsched.task_id"] == "t-traced" and span.attributes["qsched.outcome"] == "succeeded"
    )


def _traced(task_id: str, parent: str):
    return run_request(task_id, cls="NoOpExperiment", expt={}, trace_parent=parent)


def test_data_file_names_are_relative_and_unique_per_run(tmp_path):
    from datetime import datetime

    from qsched_hardware.datafile import run_file_name

    when = datetime(2026, 1, 13, 12, 0)
    assert run_file_name("JOB-20260113-00001", "t-1", when) == "2026-01-13/JOB-20260113-00001-t-1.h5"
    assert run_file_name("JOB-20260113-00001", "t-2", when) != run_file_name(
        "JOB-20260113-00001", "t-1", when
    )
    assert Path(run_file_name("../x", "../y", when)).parts[0] == "2026-01-13"
