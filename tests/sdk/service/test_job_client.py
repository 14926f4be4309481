"""JobClient beyond the seed examples: result fields, typed errors, waiting (stream, timeout,
Ctrl+C, progress bar), data loading with and without a shared filesystem, the data file that comes
with the job's end (issue 12)."""

from __future__ import annotations

import asyncio
import io
import shutil
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

import qsched
from qsched import JobClient, JobResult, data
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc as pb_grpc
from qsched.calls import Calls
from qsched.errors import FailedPrecondition, InvalidArgument, NotFound, QschedError, Unavailable
from tests.sdk.helpers import RABI, address_of, in_thread
from tests.support.jobs import job_in_state
from tests.support.processes import free_port
from tests.support.waiting import eventually


def test_result_maps_states_and_config_revisions():
    job = pb.Job(
        job_id="JOB-20260113-00001",
        owner="alice",
        state=pb.Job.STATE_SUCCEEDED,
        payload=pb.JobPayload(
            lab_experiment=pb.LabExperiment(
                experiment_class="T1Experiment", experiment_module="m", expt_config_json='{"reps": 5}'
            )
        ),
        current_run=pb.Run(
            task_id="t-1",
            attempt=1,
            data_file_path="/data/x.h5",
            summary={"t1_us": 42.0},
            config_revisions={"hardware_config": "CFG-HW-20260113-00001", "multiphoton_config": "CFG-MP-1"},
        ),
    )
    result = JobResult.from_job(job)
    assert (result.status, result.user, result.experiment_class) == ("completed", "alice", "T1Experiment")
    assert result.is_done() and result.is_successful()
    assert result.hardware_config_version_id == "CFG-HW-20260113-00001"
    assert result.multiphoton_config_version_id == "CFG-MP-1"
    assert result.floquet_storage_version_id is None
    assert result.config_revisions["hardware_config"] == "CFG-HW-20260113-00001"
    assert result.expt_config == {"reps": 5} and result.summary == {"t1_us": 42.0}
    for state, name in [
        (pb.Job.STATE_QUEUED, "pending"),
        (pb.Job.STATE_RUNNING, "running"),
        (pb.Job.STATE_FAILED, "failed"),
        (pb.Job.STATE_CANCELLED, "cancelled"),
    ]:
        job.state = state
        assert JobResult.from_job(job).status == name
    assert not JobResult.from_job(job).is_successful()
    with pytest.raises(ValueError):
        result.load_expt()


def test_address_accepts_the_seed_url_form():
    assert JobClient("http://10.0.0.5:50051/").address == "10.0.0.5:50051"
    assert JobClient("10.0.0.5:50051").address == "10.0.0.5:50051"


def test_submit_validates_arguments_like_the_seed():
    client = JobClient("127.0.0.1:1")
    with pytest.raises(ValueError):
        client.submit_job("", "m", {}, "alice")
    with pytest.raises(ValueError):
        client.submit_job("C", "m", "not a dict", "alice")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        client.submit_job("C", "m", {}, "  ")
    with pytest.raises(ValueError, match="Invalid status: done"):
        client.get_history(status="done")


async def test_status_fields_and_failure_message(scheduler, identity):
    client = JobClient(address_of(scheduler), token=identity.token_for("bob"))
    job_id = await in_thread(client.submit_job, "T1Experiment", RABI, {"fail": "PROGRAM_ERROR"}, "bob", 3)
    queued = await in_thread(client.get_status, job_id)
    assert queued.job_id == job_id and queued.user == "bob" and queued.priority == 3
    result = await in_thread(client.wait_for_completion, job_id, verbose=False)
    assert result.status == "failed" and not result.is_successful()
    assert result.error_reason == "PROGRAM_ERROR"
    assert "PROGRAM_ERROR" in result.error_message and "the fake was told to fail" in result.error_message
    assert result.started_at and result.completed_at and result.created_at <= result.completed_at
    assert result.task_id and result.attempt == 1


async def test_typed_errors_carry_the_reason(scheduler):
    client = JobClient(address_of(scheduler))
    with pytest.raises(NotFound) as missing:
        await in_thread(client.get_status, "JOB-20200101-00001")
    assert missing.value.reason == "JOB_NOT_FOUND" and missing.value.code == grpc.StatusCode.NOT_FOUND
    assert isinstance(missing.value, QschedError) and isinstance(missing.value, LookupError)
    with pytest.raises(InvalidArgument) as bad:
        await in_thread(client.get_status, "not-a-job")
    assert bad.value.reason == "INVALID_JOB_ID"
    with pytest.raises(InvalidArgument) as prio:
        await in_thread(client.submit_job, "C", RABI, {}, "alice", 1000)
    assert prio.value.reason == "INVALID_PRIORITY"
    job_id = await in_thread(client.submit_job, "C", RABI, {}, "alice")
    await in_thread(client.wait_for_completion, job_id, verbose=False)
    with pytest.raises(FailedPrecondition) as finished:
        await in_thread(client.cancel_job, job_id)
    assert finished.value.reason == "JOB_ALREADY_FINISHED"
    # the top-level names are the same classes
    assert qsched.NotFound is NotFound and qsched.QschedError is QschedError


def test_unreachable_scheduler_raises_unavailable_and_health_says_unhealthy():
    client = JobClient(f"127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(Unavailable) as info:
        client.get_status("JOB-20260101-00001")
    assert info.value.address == client.address
    health = client.health_check()
    assert health["status"] == "unhealthy" and health["database_connected"] is False
    assert health["pending_jobs"] == 0 and health["running_jobs"] == 0


async def test_health_counts_queued_and_running(scheduler):
    stub, fake, _ = scheduler
    fake.hold = asyncio.Event()
    client = JobClient(address_of(scheduler))
    first = await in_thread(client.submit_job, "C", RABI, {}, "alice")
    await job_in_state(stub, first, pb.Job.STATE_RUNNING)
    await in_thread(client.submit_job, "C", RABI, {}, "alice")
    health = await in_thread(client.health_check)
    fake.hold.set()
    assert health == {**health, "status": "healthy", "pending_jobs": 1, "running_jobs": 1}


async def test_wait_timeout_keeps_the_job(scheduler):
    _stub, fake, _ = scheduler
    fake.hold = asyncio.Event()
    client = JobClient(address_of(scheduler))
    job_id = await in_thread(client.submit_job, "C", RABI, {}, "alice")
    with pytest.raises(TimeoutError, match=job_id):
        await in_thread(client.wait_for_completion, job_id, timeout=0.3, verbose=False)
    assert (await in_thread(client.get_status, job_id)).status == "running"
    fake.hold.set()
    assert (await in_thread(client.wait_for_completion, job_id, verbose=False)).status == "completed"


async def test_ctrl_c_while_queued_cancels_the_job(scheduler, monkeypatch, capsys):
    stub, fake, _ = scheduler
    fake.hold = asyncio.Event()
    client = JobClient(address_of(scheduler))
    running = await in_thread(client.submit_job, "C", RABI, {}, "alice")
    await job_in_state(stub, running, pb.Job.STATE_RUNNING)
    queued = await in_thread(client.submit_job, "C", RABI, {}, "alice")

    def interrupt(self, state, fraction=None, message=""):
        raise KeyboardInterrupt  # what Ctrl+C does while the client waits on the stream

    monkeypatch.setattr("qsched.progress.Progress.update", interrupt)
    outcome = await in_thread(client.wait_for_completion, queued)
    assert isinstance(outcome, KeyboardInterrupt)  # re-raised to the caller
    assert (await in_thread(client.get_status, queued)).status == "cancelled"
    assert f"{queued} was still queued and has been cancelled" in capsys.readouterr().err

    outcome = await in_thread(client.wait_for_completion, running)
    assert isinstance(outcome, KeyboardInterrupt)
    assert f"qsched cancel {running}" in capsys.readouterr().err
    assert (await in_thread(client.get_status, running)).status == "running"  # not touched
    fake.hold.set()


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_progress_bar_on_a_terminal_and_quiet_mode(scheduler, monkeypatch, capsys):
    client = JobClient(address_of(scheduler))
    tty = FakeTTY()
    monkeypatch.setattr("sys.stdout", tty)
    job_id = await in_thread(client.submit_job, "C", RABI, {"duration_s": 0.2}, "alice")
    await in_thread(client.wait_for_completion, job_id)
    text = tty.getvalue()
    assert f"\r{job_id} [" in text and "] 100%" in text
    assert f"{job_id}: completed" in text
    monkeypatch.undo()
    job_id = await in_thread(client.submit_job, "C", RABI, {}, "alice")
    capsys.readouterr()
    await in_thread(client.wait_for_completion, job_id, verbose=False)
    assert capsys.readouterr().out == ""


async def test_load_data_from_the_shared_filesystem(scheduler, cache_dir):
    _stub, _fake, _ = scheduler
    client = JobClient(address_of(scheduler))
    job_id = await in_thread(client.submit_job, "AmplitudeRabiExperiment", RABI, {}, "alice")
    result = await in_thread(client.wait_for_completion, job_id, verbose=False)
    data = await in_thread(client.load_data, job_id)
    assert str(data.path) == result.data_file_path  # same file, checksum verified, not copied
    assert data["xpts"].shape == (21,) and set(data) >= {"xpts", "avgi", "avgq"}
    assert data.config["expt"]["reps"] == 100
    assert data.attrs["job_id"] == job_id
    assert not cache_dir.exists() or not any(cache_dir.rglob("*.h5"))


async def test_load_data_without_a_shared_filesystem_fetches_and_caches(scheduler, cache_dir, tmp_path):
    _stub, fake, _ = scheduler
    client = JobClient(address_of(scheduler))
    job_id = await in_thread(client.submit_job, "AmplitudeRabiExperiment", RABI, {}, "alice")
    result = await in_thread(client.wait_for_completion, job_id, verbose=False)
    original = tmp_path / "elsewhere.h5"
    shutil.move(result.data_file_path, original)  # this machine cannot see the executor's path...
    fake.files[result.task_id] = original  # ...but the executor still has the file
    data = await in_thread(client.load_data, job_id)
    assert cache_dir in data.path.parents and data.path.name == f"{job_id}-{result.task_id[:8]}.h5"
    assert data["avgi"].shape == (21,)
    assert data.path.read_bytes() == original.read_bytes()
    fetches = len(fake.fetches)
    again = await in_thread(client.load_data, job_id)  # from the cache: no second transfer
    assert again.path == data.path and len(fake.fetches) == fetches
    target = await in_thread(client.download, job_id, tmp_path / "copy.h5")
    assert target.read_bytes() == original.read_bytes()


async def test_no_data_file_for_a_failed_job(scheduler, cache_dir):
    client = JobClient(address_of(scheduler))
    job_id = await in_thread(client.submit_job, "C", RABI, {"fail": "PROGRAM_ERROR"}, "alice")
    await in_thread(client.wait_for_completion, job_id, verbose=False)
    with pytest.raises(QschedError):
        await in_thread(client.load_data, job_id)


async def test_job_client_reads_and_cancels_a_job_by_its_task_id_before_it_starts(scheduler):
    _, fake, _ = scheduler
    fake.hold = asyncio.Event()  # the first job keeps the board
    jc = JobClient(address_of(scheduler))
    try:
        busy = await in_thread(jc.submit_job, "AmplitudeRabiExperiment", RABI, {"reps": 1})
        job_id = await in_thread(jc.submit_job, "AmplitudeRabiExperiment", RABI, {"reps": 2})
        status = await in_thread(jc.get_status, job_id)
        assert status.status == "pending" and status.task_id  # known at submit
        by_task = await in_thread(jc.get_status, status.task_id)
        assert by_task.job_id == job_id and by_task.task_id == status.task_id
        answer = await in_thread(jc.cancel_job, status.task_id)
        assert (answer["job_id"], answer["status"]) == (job_id, "cancelled")
        fake.hold.set()
        done = await in_thread(jc.wait_for_completion, busy, timeout=20)
        assert done.is_successful() and fake.started_jobs == [busy]
    finally:
        fake.hold.set()
        jc.close()


class Methods(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Records the method of every call a client makes, and the messages its streams brought."""

    def __init__(self) -> None:
        self.called: list[str] = []
        self.received: list = []

    def intercept_unary_unary(self, continuation, details, request):
        self.called.append(details.method.rsplit("/", 1)[-1])
        return continuation(details, request)

    def intercept_unary_stream(self, continuation, details, request):
        self.called.append(details.method.rsplit("/", 1)[-1])
        return _Recorded(continuation(details, request), self.received)


class _Recorded:
    """A response stream that notes each message as the client reads it."""

    def __init__(self, call, received: list):
        self._call = call
        self._received = received

    def __iter__(self):
        return self

    def __next__(self):
        message = next(self._call)
        self._received.append(message)
        return message

    def __getattr__(self, name):
        return getattr(self._call, name)


def counted(client: JobClient) -> Methods:
    """Every call `client` makes from here on goes through a recording interceptor."""
    methods = Methods()
    channel = grpc.intercept_channel(client._channel, methods)
    client._stub = pb_grpc.JobServiceStub(channel)
    client.calls = Calls(channel, "JobService", pb, client.address, client.timeout)
    return methods


def relative_names(fake, inline: bool):
    """The fake's results named relative to its data root (as the real executor names them), with
    the file's bytes inline when `inline`: this machine does not see the executor's files."""
    plain_result = type(fake).result_for

    def result_for(run):
        plain = plain_result(fake, run)  # writes the file
        content = Path(plain.data.name).read_bytes()
        ref = replace(plain.data, name=Path(plain.data.name).name)
        return replace(plain, data=ref, inline_data=content if inline else b"")

    return result_for


async def test_wait_for_completion_keeps_the_file_sent_with_the_end_and_fetches_nothing(scheduler, cache_dir):
    _stub, fake, _ = scheduler
    fake.result_for = relative_names(fake, inline=True)
    fake.hold = asyncio.Event()  # the run ends once the client follows the job
    client = JobClient(address_of(scheduler))
    job_id = await in_thread(client.submit_job, "AmplitudeRabiExperiment", RABI, {}, "alice")
    methods = counted(client)
    waiting = asyncio.ensure_future(in_thread(client.wait_for_completion, job_id, verbose=False))
    await eventually(lambda: list(methods.received), until=bool, what="WatchJob's snapshot")
    fake.hold.set()
    result = await waiting
    assert methods.received[-1].event.state == pb.Job.STATE_SUCCEEDED
    assert methods.received[-1].HasField("data_file")  # the file came with the job's end...
    assert "FetchJobData" not in methods.called and methods.called[-1] == "WatchJob"  # ...and nothing more
    assert fake.fetches == []
    local = Path(result.data_file_path)
    original = fake.files[result.task_id]
    assert local == cache_dir / job_id / result.task_id / original.name  # where a fetch puts it
    assert local.read_bytes() == original.read_bytes()
    # The same file FetchJobData sends (into a cache of its own), and later loads use the kept one.
    fetched = await in_thread(data.locate, client._stub, job_id, None, cache_dir / "fetched")
    assert fetched.read_bytes() == local.read_bytes() and "FetchJobData" in methods.called
    calls = len(methods.called)
    loaded = await in_thread(client.load_data, job_id)
    assert loaded.path == local and loaded["xpts"].shape == (21,)
    assert "FetchJobData" not in methods.called[calls:]


async def test_wait_for_completion_fetches_a_file_that_did_not_come_with_the_end(scheduler, cache_dir):
    _stub, fake, _ = scheduler
    fake.result_for = relative_names(fake, inline=False)
    client = JobClient(address_of(scheduler))
    job_id = await in_thread(client.submit_job, "AmplitudeRabiExperiment", RABI, {}, "alice")
    methods = counted(client)
    result = await in_thread(client.wait_for_completion, job_id, verbose=False)
    assert methods.called.count("FetchJobData") == 1
    assert Path(result.data_file_path).read_bytes() == fake.files[result.task_id].read_bytes()
