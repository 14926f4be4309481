"""Job handles (qsched.aio) against the real scheduler and the fake executor: the OQC SDK's
behavioural assertions that apply to qsched (numbers in the test names refer to that list)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from qsched.aio import (
    Client,
    CompositeJob,
    Job,
    JobError,
    JobFailed,
    JobLike,
    JobOutputProxy,
    JobResult,
    JobState,
    SnapshotError,
)
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.errors import Unavailable
from tests.sdk.helpers import RABI, address_of
from tests.support.jobs import job_in_state
from tests.support.processes import free_port

EXPERIMENT = f"{RABI}.AmplitudeRabiExperiment"
QASM = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'


@pytest.fixture
async def client(scheduler):
    async with Client(address_of(scheduler), default_device="qick") as c:
        yield c


async def test_01_created_job_sends_nothing(client, scheduler):
    stub, fake, _ = scheduler
    job = client.create_job(experiment=EXPERIMENT, config={"reps": 10})
    assert job.state is JobState.CREATED and job.task_id is None and job.job_id is None
    assert len(job.history) == 0 and len(job.outputs) == 0 and not job.completed
    assert job.result is None and job.error is None
    assert (await stub.ListJobs(pb.ListJobsRequest())).jobs == []
    assert fake.execute_calls == 0


async def test_02_default_device(scheduler):
    async with Client(address_of(scheduler)) as client:
        with pytest.raises(ValueError, match="no device"):
            client.create_job(experiment=EXPERIMENT)
        client.set_default_device("qick")
        assert client.create_job(experiment=EXPERIMENT).device == "qick"
        assert client.create_job(experiment=EXPERIMENT, device="other").device == "other"
        assert client.create_job(program=QASM, qpu_id="local:aer_simulator").qpu_id == "local:aer_simulator"
        devices = await client.list_devices()
        by_name = {d["name"]: d["kinds"] for d in devices}  # the lab board, and the gateway double's device
        assert by_name == {"qick": ["lab_experiment"], "fake:qpu": ["circuit", "benchmark"]}
    with pytest.raises(ValueError):
        Client("127.0.0.1:1").create_job(experiment=EXPERIMENT, device="qick", program=QASM)
    with pytest.raises(ValueError):
        Client("127.0.0.1:1", default_device="qick").create_job(experiment="NoModule")


def test_03_lists_broadcast_into_a_composite(monkeypatch):
    client = Client("127.0.0.1:1", default_device="qick")
    composite = client.create_job(experiment=EXPERIMENT, config=[{"reps": 1}, {"reps": 2}, {"reps": 3}])
    assert isinstance(composite, CompositeJob) and len(composite) == 3
    assert [j.config for j in composite.jobs] == [{"reps": 1}, {"reps": 2}, {"reps": 3}]
    assert {j.experiment for j in composite.jobs} == {EXPERIMENT}
    pairs = client.create_job(
        experiment=[EXPERIMENT, f"{RABI}.T1Experiment"], config=[{"reps": 1}, {"reps": 2}], device=["qick"]
    )
    assert [(j.experiment_class, j.config["reps"], j.device) for j in pairs] == [
        ("AmplitudeRabiExperiment", 1, "qick"),
        ("T1Experiment", 2, "qick"),
    ]
    tuple_experiment = client.create_job(experiment=(RABI, "AmplitudeRabiExperiment"))
    assert isinstance(tuple_experiment, Job)  # a (module, class) tuple is one experiment
    with pytest.raises(ValueError, match="equal lengths"):
        client.create_job(experiment=EXPERIMENT, config=[{}, {}], device=["a", "b", "c"])
    with pytest.raises(ValueError, match="empty"):
        client.create_job(experiment=EXPERIMENT, config=[])
    monkeypatch.setenv("QSCHED_MAX_BROADCAST_JOBS", "4")
    with pytest.raises(ValueError, match="at most 4"):
        client.create_job(experiment=EXPERIMENT, config=[{}] * 5)
    assert isinstance(composite, JobLike) and isinstance(tuple_experiment, JobLike)


async def test_04_to_08_submit_execute_outputs_history(client, scheduler):
    stub, fake, _ = scheduler
    fake.hold = asyncio.Event()
    job = client.create_job(experiment=EXPERIMENT, config={"reps": 10})
    await job.submit()
    assert job.state in (JobState.SUBMITTED, JobState.RUNNING) and job.job_id.startswith("JOB-")
    assert len(job.history) == 0
    await job_in_state(stub, job.job_id, pb.Job.STATE_RUNNING)
    fake.hold.set()
    outputs = await job.execute(timeout_s=20)  # active: followed, not resubmitted (5)
    assert fake.execute_calls == 1 and len(outputs) == 1
    assert job.state is JobState.COMPLETED and job.completed
    assert isinstance(job.result, JobResult) and job.result.data == {"pi_gain": 0.5}
    assert outputs.first is job.result and job.history.last is job.result
    assert job.result.task_id == job.task_id and job.result.job_id == job.job_id
    first_task = job.task_id
    await job.execute(timeout_s=20)  # terminal: a new run (6)
    assert job.task_id != first_task and job.result.task_id == job.task_id
    assert len(job.history) == 2 and len(job.outputs) == 1 and fake.execute_calls == 2
    assert [o.task_id for o in job.history] == [first_task, job.task_id]  # oldest first (7)


async def test_06_rerun_keeps_the_job_id_and_its_runs(client, scheduler):
    """Needs RerunJob and ListRuns on the scheduler."""
    stub, _fake, _ = scheduler
    job = client.create_job(experiment=EXPERIMENT, config={"reps": 10})
    await job.execute(timeout_s=20)
    job_id, first_task = job.job_id, job.task_id
    await job.execute(timeout_s=20)
    assert job.job_id == job_id and job.task_id != first_task
    runs = (await stub.ListRuns(pb.ListRunsRequest(job_id=job_id))).runs
    assert [r.task_id for r in runs] == [first_task, job.task_id]
    assert all(r.job_id == job_id for r in runs)
    again = await client.get_job(job_id)  # a handle rebuilt from the scheduler
    assert [o.task_id for o in again.history] == [first_task, job.task_id]


async def test_08_09_failure_is_stored_not_raised(client):
    job = client.create_job(experiment=EXPERIMENT, config={"fail": "PROGRAM_ERROR"})
    outputs = await job.execute(timeout_s=20)
    assert job.state is JobState.FAILED and not job.completed
    assert isinstance(job.error, JobError) and job.error.code == "PROGRAM_ERROR"
    assert job.error.message == "the fake was told to fail" and outputs.one is job.error
    assert job.history.last is job.error and job.result is None
    with pytest.raises(JobFailed) as info:
        job.raise_for_status()
    assert (info.value.code, info.value.task_id, info.value.qpu_id) == ("PROGRAM_ERROR", job.task_id, "qick")
    assert info.value.job_id == job.job_id


async def test_10_refused_submit_is_captured(client):
    job = client.create_job(experiment=EXPERIMENT, config={}, device="no-such-device")
    await job.submit()
    assert job.state is JobState.FAILED and job.task_id is None and job.job_id is None
    assert job.error.code == "DEVICE_NOT_FOUND" and len(job.history) == 1
    with pytest.raises(JobFailed) as info:
        job.raise_for_status()
    assert info.value.task_id == "<unsubmitted>"


async def test_10_circuit_jobs_are_built_and_refused_until_the_gateway_lands(client, scheduler):
    job = client.create_job(program=QASM, qpu_id="qick", shots=100, config={"optimization": 1})
    payload = job.payload()
    assert payload.circuit.qasm == [QASM] and payload.circuit.shots == 100
    assert json.loads(payload.circuit.compiler_options_json) == {"optimization": 1}
    await job.execute(timeout_s=10)
    assert job.state is JobState.FAILED and job.error.code == "KIND_NOT_SUPPORTED"
    assert job.error.settings["programs"] == [QASM]


async def test_11_13_timeout_keeps_task_and_state_then_resumes(client, scheduler):
    stub, fake, _ = scheduler
    fake.hold = asyncio.Event()
    job = client.create_job(experiment=EXPERIMENT, config={})
    await job.submit()
    await job_in_state(stub, job.job_id, pb.Job.STATE_RUNNING)
    with pytest.raises(TimeoutError):
        await job.execute(timeout_s=0.2)
    assert job.state is JobState.RUNNING and job.task_id is not None
    task = job.task_id
    assert job.result is None and job.error is None and len(job.history) == 0
    assert fake.cancel_calls == []  # no cancel sent
    fake.hold.set()
    await job.execute(timeout_s=20)
    assert job.task_id == task and job.completed and fake.execute_calls == 1


async def test_14_15_16_cancel_rules(client, scheduler):
    stub, fake, _ = scheduler
    never = client.create_job(experiment=EXPERIMENT, config={})
    await never.cancel()  # no call
    await never.cancel_if_active()
    assert never.state is JobState.CREATED and never.job_id is None

    fake.hold = asyncio.Event()
    running = client.create_job(experiment=EXPERIMENT, config={})
    queued = client.create_job(experiment=EXPERIMENT, config={})
    await running.submit()
    await job_in_state(stub, running.job_id, pb.Job.STATE_RUNNING)
    await queued.submit()
    await queued.cancel_if_active()
    assert queued.state is JobState.CANCELLED and len(queued.history) == 0 and len(queued.outputs) == 0
    await running.cancel()  # running: the executor stops it, the handle follows to the end
    assert running.state is JobState.CANCELLED and len(running.history) == 0
    calls = list(fake.cancel_calls)
    await running.cancel_if_active()  # terminal: no call
    assert fake.cancel_calls == calls

    done = client.create_job(experiment=EXPERIMENT, config={})
    fake.hold.set()
    await done.execute(timeout_s=20)
    await done.cancel()  # the scheduler says it already finished: the real state is kept
    assert done.state is JobState.COMPLETED and len(done.history) == 1


async def test_16_cancel_seen_while_following(client, scheduler):
    stub, fake, _ = scheduler
    fake.hold = asyncio.Event()
    job = client.create_job(experiment=EXPERIMENT, config={})
    await job.submit()
    await job_in_state(stub, job.job_id, pb.Job.STATE_RUNNING)
    follower = asyncio.create_task(job.execute(timeout_s=20))
    await stub.CancelJob(pb.CancelJobRequest(job_id=job.job_id))  # someone else cancels it
    outputs = await follower
    assert job.state is JobState.CANCELLED and len(outputs) == 0 and len(job.history) == 0


async def test_18_19_reconfigure(client, scheduler):
    job = client.create_job(experiment=EXPERIMENT, config={"fail": "BAD_GAIN"})
    await job.execute(timeout_s=20)
    bad = job.outputs.first
    before = (job.experiment, dict(job.config), job.device, job.task_id, job.state)
    with pytest.raises(AttributeError):
        job.reconfigure(config={"reps": 1}, colour="blue")
    assert (job.experiment, job.config, job.device, job.task_id, job.state) == before
    job.reconfigure(config={"reps": 1})
    assert job.state is JobState.CREATED and job.task_id is None
    assert job.error is bad and len(job.history) == 1  # result/error and history kept
    await job.execute(timeout_s=20)
    assert job.completed and len(job.history) == 2
    assert [h.is_error for h in job.history] == [True, False]
    job.reconfigure(memento=bad)
    assert job.config == {"fail": "BAD_GAIN"} and job.experiment == EXPERIMENT
    job.reconfigure(memento=job.history.last, config={"reps": 2})
    assert job.config == {"reps": 2}


async def test_20_reexecute_and_resubmit(client, scheduler):
    _stub, _fake, _ = scheduler
    job = client.create_job(experiment=EXPERIMENT, config={"reps": 1})
    first = await job.execute(timeout_s=20)
    job.reconfigure(config={"fail": "X"})
    await job.execute(timeout_s=20)
    assert job.state is JobState.FAILED
    outputs = await first.first.reexecute(timeout_s=20)  # the first run's settings again
    assert job.completed and len(job.history) == 3 and outputs.first.config == {"reps": 1}
    assert job.result.settings == first.first.settings
    resubmitted = await job.history.first.resubmit()
    assert resubmitted is job and job.state in (JobState.SUBMITTED, JobState.RUNNING, JobState.COMPLETED)
    await job.execute(timeout_s=20)
    assert len(job.history) == 4


async def test_27_diagnostics(client, scheduler):
    job = client.create_job(experiment=EXPERIMENT, config={}, fetch_diagnostics=True)
    assert job.timings is None and job.metrics is None and job.metadata is None
    await job.execute(timeout_s=20)
    assert job.timings["run_s"] >= 0 and job.timings["queue_s"] >= 0 and job.timings["started"]
    assert job.metrics == {"pi_gain": 0.5}
    assert job.metadata["device"] == "qick" and job.metadata["task_id"] == job.task_id
    assert "config_revisions" in job.metadata and job.metadata["data_file_path"]
    assert job.history.last.timings == job.timings and job.history.last.metadata == job.metadata
    # A new run starts without the last one's diagnostics (held on the executor while we look).
    fake = scheduler[1]
    fake.hold = asyncio.Event()
    await job.submit()
    assert job.state.active and job.timings is None and job.metrics is None and job.metadata is None
    fake.hold.set()
    await job.wait(timeout_s=20)
    assert job.completed and job.timings is not None
    plain = client.create_job(experiment=EXPERIMENT, config={})
    await plain.execute(timeout_s=20)
    assert plain.timings is None and plain.history.last.metadata is None


async def test_24_composite_partial_failure(client, scheduler):
    composite = client.create_job(
        experiment=EXPERIMENT, config=[{"reps": 1}, {"fail": "PROGRAM_ERROR"}, {"reps": 3}]
    )
    outputs = await composite.execute(timeout_s=30)  # does not raise
    assert len(outputs) == 3 and [o.is_error for o in outputs] == [False, True, False]
    assert not composite.completed
    assert composite.completed_jobs == [composite[0], composite[2]] and composite.failed_jobs == [
        composite[1]
    ]
    assert outputs.any_error and not outputs.all_ok
    with pytest.raises(RuntimeError, match="PROGRAM_ERROR"):
        outputs.raise_for_error()
    assert "completed=2, failed=1" in repr(composite)


async def test_24_composite_bounded_concurrency(client, scheduler):
    stub, fake, _ = scheduler
    fake.hold = asyncio.Event()
    composite = client.create_job(
        experiment=EXPERIMENT, config=[{"n": i} for i in range(5)], max_concurrency=2
    )
    in_flight = 0
    peak = 0
    two_in_flight = asyncio.Event()
    for child in composite.jobs:
        original = child.execute

        async def counted(*, timeout_s=None, _original=original):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            if in_flight == 2:
                two_in_flight.set()
            try:
                return await _original(timeout_s=timeout_s)
            finally:
                in_flight -= 1

        child.execute = counted
    task = asyncio.create_task(composite.execute(timeout_s=30))
    await asyncio.wait_for(two_in_flight.wait(), 10)
    listed = (await stub.ListJobs(pb.ListJobsRequest(view=pb.LIST_VIEW_QUEUE))).jobs
    assert len(listed) <= 2  # only two children were sent
    fake.hold.set()
    outputs = await task
    assert peak == 2 and len(outputs) == 5 and composite.completed


async def test_25_26_composite_timeout_then_resume(client, scheduler):
    _stub, fake, _ = scheduler
    done = client.create_job(experiment=EXPERIMENT, config={})
    await done.execute(timeout_s=20)
    done_task = done.task_id
    fake.hold = asyncio.Event()
    slow = client.create_job(experiment=EXPERIMENT, config={})
    composite = CompositeJob([slow, done])
    with pytest.raises(TimeoutError):  # the device runs one job at a time: both wait on `slow`
        await composite.execute(timeout_s=0.5)
    assert slow.state is JobState.RUNNING
    # Reset and sent again: its new task id is there at once (issue 17), before the run starts.
    assert done.state is JobState.SUBMITTED and done.task_id not in (None, done_task)
    assert len(done.history) == 1 and len(composite.outputs) == 0
    ids, new_task = (slow.job_id, done.job_id), done.task_id
    fake.hold.set()
    outputs = await composite.execute(timeout_s=30)  # active children are only followed
    assert (slow.job_id, done.job_id) == ids and fake.execute_calls == 3
    assert done.task_id == new_task and done.result.task_id == new_task and len(done.history) == 2
    assert len(outputs) == 2 and composite.completed


async def test_28_save_and_load_round_trip(client, tmp_path):
    job = client.create_job(experiment=EXPERIMENT, config={"reps": 7}, fetch_diagnostics=True)
    await job.execute(timeout_s=20)
    job.reconfigure(config={"fail": "X"})
    await job.execute(timeout_s=20)
    path = job.save(tmp_path / "job.json")
    data = json.loads(path.read_text())
    assert data["schema_version"] == "1" and data["kind"] == "job"
    assert [h["kind"] for h in data["history"]] == ["result", "error"]
    assert path.read_text().startswith('{\n  "')  # indented
    loaded = client.load(path)
    assert isinstance(loaded, Job) and loaded.transport is client.transport
    assert (loaded.job_id, loaded.task_id, loaded.state) == (job.job_id, job.task_id, JobState.FAILED)
    assert (
        loaded.error.code == "X"
        and len(loaded.history) == 2
        and loaded.history.first.data == {"pi_gain": 0.5}
    )
    assert loaded.fetch_diagnostics and loaded.timings == job.timings
    assert loaded.config == {"fail": "X"}
    loaded.reconfigure(memento=loaded.history.first)
    await loaded.execute(timeout_s=20)
    assert loaded.completed and len(loaded.history) == 3


async def test_28_in_flight_job_resumes_after_load(client, scheduler, tmp_path):
    stub, fake, _ = scheduler
    fake.hold = asyncio.Event()
    job = client.create_job(experiment=EXPERIMENT, config={})
    await job.submit()
    await job_in_state(stub, job.job_id, pb.Job.STATE_RUNNING)
    await job.refresh()
    job.save(tmp_path / "flight.json")
    async with Client(client.address) as other:  # e.g. a new notebook kernel
        loaded = other.load(tmp_path / "flight.json")
        assert loaded.state is JobState.RUNNING and loaded.task_id == job.task_id
        fake.hold.set()
        await loaded.execute(timeout_s=20)
        assert loaded.completed and loaded.task_id == job.task_id and fake.execute_calls == 1


async def test_29_composite_snapshot_and_refusals(client, tmp_path):
    composite = client.create_job(experiment=EXPERIMENT, config=[{"reps": 1}, {"fail": "E"}])
    await composite.execute(timeout_s=20)
    path = composite.save(tmp_path / "batch.json")
    assert json.loads(path.read_text())["kind"] == "composite"
    loaded = client.load(path)
    assert isinstance(loaded, CompositeJob) and len(loaded) == 2
    assert [o.is_error for o in loaded.outputs] == [False, True]

    def refused(content: str, match: str) -> None:
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        with pytest.raises(SnapshotError, match=match):
            client.load(bad)

    good = json.loads((tmp_path / "batch.json").read_text())["jobs"][0]
    refused("{not json", "not valid JSON")
    refused("[1, 2]", "JSON object")
    refused(json.dumps({**good, "schema_version": "2"}), "newer than this SDK")
    refused(json.dumps({**good, "schema_version": "0"}), "unsupported snapshot schema")
    refused(json.dumps({**good, "kind": "widget"}), "unknown snapshot kind")
    refused(json.dumps({k: v for k, v in good.items() if k != "settings"}), "missing field 'settings'")
    refused(json.dumps({**good, "state": "EXPLODED"}), "unknown state")
    refused(json.dumps({**good, "history": [{"kind": "mystery"}]}), "unknown output kind")
    with pytest.raises(FileNotFoundError):
        client.load(tmp_path / "missing.json")
    assert issubclass(SnapshotError, ValueError)


async def test_unreachable_scheduler_raises_unavailable_and_keeps_the_job():
    async with Client(f"127.0.0.1:{free_port()}", default_device="qick", call_timeout_s=2) as client:
        job = client.create_job(experiment=EXPERIMENT, config={})
        with pytest.raises(Unavailable):
            await job.submit()
        assert job.state is JobState.CREATED and len(job.history) == 0


def test_output_proxy_semantics():
    ok = JobResult(data={"a": 1}, task_id="t1")
    err = JobError(code="E", message="boom", task_id="t2")
    uncoded = JobError(code=None, message="?")
    assert not ok and ok.ok and not ok.is_error  # a result is falsy (23)
    assert err and err.is_error and not err.ok and err.short == "(E)boom"
    assert not uncoded and uncoded.ok
    empty = JobOutputProxy([])
    with pytest.raises(IndexError):
        _ = empty.first
    with pytest.raises(IndexError):
        _ = empty.last
    with pytest.raises(ValueError):
        _ = empty.one
    single = JobOutputProxy([ok])
    assert single.data == {"a": 1} and single.one is ok  # delegation with one item (21)
    both = JobOutputProxy([ok, err, uncoded])
    with pytest.raises(AttributeError):
        _ = both.data
    assert isinstance(both.results(), JobOutputProxy) and both.results().all() == [ok]
    assert both.errors().all() == [err, uncoded] and isinstance(both.filter(bool), JobOutputProxy)
    assert both.map(lambda o: o.task_id) == ["t1", "t2", None]
    assert both.any_error and not both.all_ok and JobOutputProxy([ok, uncoded]).all_ok
    assert isinstance(both[0:2], JobOutputProxy) and both[1] is err and len(both) == 3
    with pytest.raises(RuntimeError, match=r"Job failed \(E\): boom"):
        both.raise_for_error()
    assert JobOutputProxy([ok, uncoded]).raise_for_error().all() == [ok, uncoded]


async def test_a_followed_job_deleted_meanwhile_is_recorded_as_failed(client, scheduler):
    stub, _, _ = scheduler
    job = client.create_job(experiment=EXPERIMENT, config={"reps": 1})
    await job.submit()
    await job_in_state(stub, job.job_id, pb.Job.STATE_SUCCEEDED)
    await stub.DeleteJob(pb.DeleteJobRequest(job_id=job.job_id))  # someone else deleted it
    outputs = await job.execute(timeout_s=30)  # returns, as for any server-reported failure
    assert job.state is JobState.FAILED and job.error.code == "JOB_NOT_FOUND"
    assert len(job.history) == 1 and outputs[0].is_error


async def test_a_circuit_result_has_its_config(client, scheduler, fake_gateway):
    fake_gateway[0].auto_complete = True
    job = client.create_job(program=QASM, qpu_id="fake:qpu", shots=100, config={"optimization_level": 1})
    await job.execute(timeout_s=30)
    assert job.state is JobState.COMPLETED, job.error
    assert job.result.config == {"optimization_level": 1}
    bare = client.create_job(program=QASM, qpu_id="fake:qpu", shots=100)
    await bare.execute(timeout_s=30)
    assert bare.result.config == {}


async def test_a_composite_submits_its_children_in_one_call(client, scheduler, spans):
    from opentelemetry.trace import SpanKind

    composite = client.create_job(experiment=EXPERIMENT, config=[{"reps": 1}, {"reps": 2}, {"reps": 3}])
    outputs = await composite.execute(timeout_s=30)
    assert [o.is_error for o in outputs] == [False, False, False]
    calls = [s.name.rsplit("/", 1)[1] for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert calls.count("SubmitJobs") == 1 and "SubmitJob" not in calls
    # A batch the scheduler refuses falls back to one call each: every refusal lands on its child.
    mixed = CompositeJob(
        [client.create_job(experiment=EXPERIMENT, config={"reps": 1}),
         client.create_job(experiment=EXPERIMENT, config={}, device="no-such-device")]
    )  # fmt: skip
    outputs = await mixed.execute(timeout_s=30)
    assert [o.is_error for o in outputs] == [False, True]
    assert mixed[1].error.code == "DEVICE_NOT_FOUND"


async def test_04_a_handle_has_its_task_id_at_submit_and_is_cancelled_by_it_before_it_starts(
    client, scheduler
):
    stub, fake, _ = scheduler
    fake.hold = asyncio.Event()  # the device stays busy with the first job
    busy = client.create_job(experiment=EXPERIMENT, config={})
    await busy.submit()
    await job_in_state(stub, busy.job_id, pb.Job.STATE_RUNNING)
    waiting = client.create_job(experiment=EXPERIMENT, config={"reps": 3})
    await waiting.submit()
    assert waiting.state is JobState.SUBMITTED and waiting.task_id  # at submit, before it starts (4)
    assert str(uuid.UUID(waiting.task_id)) == waiting.task_id and waiting.task_id != busy.task_id
    follower = asyncio.create_task(waiting.execute(timeout_s=20))
    # Another session knows only the task id (as OQC's users keep them): it finds the job by it and
    # cancels it while it waits.
    async with Client(address_of(scheduler)) as other:
        found = await other.get_job(waiting.task_id)
        assert (found.job_id, found.task_id, found.state) == (
            waiting.job_id,
            waiting.task_id,
            JobState.SUBMITTED,
        )
        await found.cancel()
        assert found.state is JobState.CANCELLED and found.task_id == waiting.task_id
    outputs = await follower  # the first handle sees the cancel while following (16)
    assert waiting.state is JobState.CANCELLED and len(outputs) == 0 and len(waiting.history) == 0
    assert waiting.task_id == found.task_id  # a cancelled job keeps its task id
    # A later job starts after the busy one: the cancelled one never started.
    later = client.create_job(experiment=EXPERIMENT, config={})
    await later.submit()
    submitted_task = later.task_id
    fake.hold.set()
    await later.execute(timeout_s=20)
    await busy.execute(timeout_s=20)
    assert fake.started_jobs == [busy.job_id, later.job_id]
    assert later.result.task_id == submitted_task == later.task_id  # the run carries the submit task id
    # Run again: a new task id, given at once.
    await waiting.submit()
    assert waiting.state is JobState.SUBMITTED and waiting.task_id not in (None, found.task_id)
    await waiting.execute(timeout_s=20)
    assert waiting.completed and waiting.result.task_id == waiting.task_id != found.task_id
