"""Who may do what: owners, operators, calibrators, admins; quotas; device holds."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import grpc

from qsched.api.admin.v1 import admin_pb2, admin_pb2_grpc
from qsched.api.configs.v1 import configs_pb2, configs_pb2_grpc
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc
from qsched.wire import aio_channel
from qsched_core.principal import Role
from tests.identity.service.conftest import quota_failure, refused
from tests.support.identity import authed_channel
from tests.support.jobs import job_in_state
from tests.support.stack import running_service
from tests.support.waiting import eventually

DENIED = grpc.StatusCode.PERMISSION_DENIED


def lab(owner: str = "", priority: int = 0, config: dict | None = None) -> pb.SubmitJobRequest:
    return pb.SubmitJobRequest(
        device="qick",
        owner=owner,
        priority=priority,
        payload=pb.JobPayload(
            lab_experiment=pb.LabExperiment(
                experiment_class="AmplitudeRabiExperiment",
                experiment_module="qsched_hardware.experiments",
                expt_config_json=json.dumps(config or {"reps": 10}),
            )
        ),
    )


async def state_of(stub, job_id: str) -> int:
    return (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job.state


async def audit(address: str) -> list[admin_pb2.AuditEvent]:
    async with authed_channel(address) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        return list((await stub.ListAuditEvents(admin_pb2.ListAuditEventsRequest(page_size=50))).events)


async def test_the_owner_is_the_caller_and_a_spoofed_user_is_refused(scheduler, identity):
    _, _, address = scheduler
    async with authed_channel(address, identity.token_for("bob")) as channel:
        bob = jobs_pb2_grpc.JobServiceStub(channel)
        error = await refused(bob.SubmitJob(lab(owner="alice")), DENIED, "USER_MISMATCH", "qsched.jobs.v1")
        assert "'bob'" in error.details() and "'alice'" in error.details()
        job = (await bob.SubmitJob(lab())).job  # no user: the token's
        assert job.owner == "bob"
        assert (await bob.SubmitJob(lab(owner="bob"))).job.owner == "bob"  # the seed's user= when it matches


async def test_only_the_owner_or_an_operator_cancels_and_the_operator_is_audited(scheduler, identity):
    alice, fake, address = scheduler
    fake.hold = asyncio.Event()  # keep the device busy so jobs stay queued
    first = (await alice.SubmitJob(lab())).job.job_id
    mine = (await alice.SubmitJob(lab())).job.job_id
    async with authed_channel(address, identity.token_for("bob")) as channel:
        bob = jobs_pb2_grpc.JobServiceStub(channel)
        error = await refused(bob.CancelJob(pb.CancelJobRequest(job_id=mine)), DENIED, "NOT_JOB_OWNER")
        assert "only its owner or an operator" in error.details()
        await refused(bob.DeleteJob(pb.DeleteJobRequest(job_id=mine)), DENIED, "NOT_JOB_OWNER")
        await refused(bob.RerunJob(pb.RerunJobRequest(job_id=mine)), DENIED, "NOT_JOB_OWNER")
        assert await state_of(bob, mine) == pb.Job.STATE_QUEUED
        theirs = (await bob.SubmitJob(lab())).job.job_id
    # alice is an operator: she may cancel bob's job, and that is audited; her own is not.
    await alice.CancelJob(pb.CancelJobRequest(job_id=theirs, reason="maintenance"))
    await alice.CancelJob(pb.CancelJobRequest(job_id=mine))
    events = [e for e in await audit(address) if e.action == "job.cancel"]
    assert [(e.actor, e.target, e.detail["owner"], e.detail["reason"]) for e in events] == [
        ("alice", theirs, "bob", "maintenance")
    ]
    fake.hold.set()
    await eventually(lambda: _is(alice, first, pb.Job.STATE_SUCCEEDED))


def started(job: pb.Job) -> datetime:
    """When the job's (latest) run started on the board."""
    return job.current_run.start_time.ToDatetime(tzinfo=UTC)


async def _is(stub, job_id: str, state: int) -> bool:
    return await state_of(stub, job_id) == state


async def test_priority_above_the_user_limit_needs_an_operator(scheduler, identity):
    alice, _, address = scheduler
    async with authed_channel(address, identity.token_for("bob")) as channel:
        bob = jobs_pb2_grpc.JobServiceStub(channel)
        error = await refused(bob.SubmitJob(lab(priority=50)), DENIED, "PRIORITY_ABOVE_USER_LIMIT")
        assert "operator role" in error.details()
        assert (await bob.SubmitJob(lab(priority=10))).job.priority == 10  # the limit itself is fine
    job = (await alice.SubmitJob(lab(priority=50))).job
    assert [e.target for e in await audit(address) if e.action == "job.submit_privileged_priority"] == [
        job.job_id
    ]


async def test_quotas_on_queued_jobs_and_payload_size(tmp_path, fake_executor, identity):
    fake, executor_address = fake_executor
    fake.hold = asyncio.Event()
    service = running_service(
        "scheduler",
        tmp_path,
        lab_devices={"qick": executor_address},
        pin_configs=False,
        max_queued_per_user=2,
        max_payload_bytes_per_job=400,
    )
    async with service as address, authed_channel(address, identity.token_for("erin")) as channel:
        erin = jobs_pb2_grpc.JobServiceStub(channel)
        first = (await erin.SubmitJob(lab())).job.job_id
        await job_in_state(erin, first, pb.Job.STATE_RUNNING)  # handed over and started: not queued
        jobs = [first, *[(await erin.SubmitJob(lab())).job.job_id for _ in range(2)]]  # two queue
        error = await refused(
            erin.SubmitJob(lab()), grpc.StatusCode.RESOURCE_EXHAUSTED, "QUEUED_JOBS_QUOTA", "qsched.jobs.v1"
        )
        violation = quota_failure(error).violations[0]
        assert violation.subject == "user:erin" and "limit is 2" in violation.description
        # Another user's quota is their own.
        async with authed_channel(address, identity.token_for("frank")) as other:
            await jobs_pb2_grpc.JobServiceStub(other).SubmitJob(lab())
        # A cancelled job frees its place.
        await erin.CancelJob(pb.CancelJobRequest(job_id=jobs[2]))
        await erin.SubmitJob(lab())
        big = lab(config={"reps": 10, "note": "x" * 500})
        error = await refused(erin.SubmitJob(big), grpc.StatusCode.RESOURCE_EXHAUSTED, "PAYLOAD_SIZE_QUOTA")
        assert quota_failure(error).violations[0].subject == "user:erin"
        fake.hold.set()


async def test_pause_and_resume_hold_the_queue_but_accept_jobs(scheduler, identity):
    alice, fake, address = scheduler
    async with authed_channel(address, identity.token_for("bob")) as channel:
        bob = jobs_pb2_grpc.JobServiceStub(channel)
        error = await refused(bob.PauseDevice(pb.PauseDeviceRequest(name="qick")), DENIED, "MISSING_ROLE")
        assert error.details() == "'bob' lacks the operator role this call needs"
    await refused(
        alice.PauseDevice(pb.PauseDeviceRequest(name="nope")), grpc.StatusCode.NOT_FOUND, "DEVICE_NOT_FOUND"
    )
    device = (await alice.PauseDevice(pb.PauseDeviceRequest(name="qick", reason="cooldown"))).device
    assert (device.queue_state, device.held_by, device.hold_reason) == (
        pb.DEVICE_QUEUE_STATE_PAUSED,
        "alice",
        "cooldown",
    )
    calls = fake.execute_calls
    job = (await alice.SubmitJob(lab())).job.job_id  # accepted while paused
    assert await state_of(alice, job) == pb.Job.STATE_QUEUED
    listed = {d.name: d for d in (await alice.ListDevices(pb.ListDevicesRequest())).devices}
    assert listed["qick"].queue_state == pb.DEVICE_QUEUE_STATE_PAUSED and listed["qick"].queued == 1
    before_resume = datetime.now(UTC)
    resumed = (await alice.ResumeDevice(pb.ResumeDeviceRequest(name="qick"))).device
    assert resumed.queue_state == pb.DEVICE_QUEUE_STATE_OPEN and resumed.held_by == ""
    done = await job_in_state(alice, job, pb.Job.STATE_SUCCEEDED)
    # Nothing was dispatched while the queue was held: the job's one run started after the resume.
    assert fake.execute_calls == calls + 1 and started(done) >= before_resume
    actions = [(e.action, e.target) for e in await audit(address) if e.action.startswith("device.")]
    assert actions[:2] == [("device.resume", "qick"), ("device.pause", "qick")]


async def test_drain_lets_the_current_run_finish_then_holds(scheduler):
    alice, fake, _ = scheduler
    fake.hold = asyncio.Event()
    running = (await alice.SubmitJob(lab())).job.job_id
    await eventually(lambda: _is(alice, running, pb.Job.STATE_RUNNING))
    waiting = (await alice.SubmitJob(lab())).job.job_id
    device = (await alice.DrainDevice(pb.DrainDeviceRequest(name="qick", reason="recalibrate"))).device
    assert device.queue_state == pb.DEVICE_QUEUE_STATE_DRAINING and device.running_job_id == running
    fake.hold.set()
    await eventually(lambda: _is(alice, running, pb.Job.STATE_SUCCEEDED))
    drained = await eventually(
        lambda: alice.GetDevice(pb.GetDeviceRequest(name="qick")),
        until=lambda r: r.device.queue_state == pb.DEVICE_QUEUE_STATE_DRAINED,
        what="the device drained",
    )
    assert drained.device.queued == 1 and await state_of(alice, waiting) == pb.Job.STATE_QUEUED
    before_resume = datetime.now(UTC)
    await alice.ResumeDevice(pb.ResumeDeviceRequest(name="qick"))
    done = await job_in_state(alice, waiting, pb.Job.STATE_SUCCEEDED)
    assert started(done) >= before_resume  # it waited out the drain, however long that was


async def test_holds_survive_a_scheduler_restart(tmp_path, fake_executor, identity):
    _, executor_address = fake_executor
    config = {"lab_devices": {"qick": executor_address}, "pin_configs": False}
    async with (
        running_service("scheduler", tmp_path, **config) as address,
        authed_channel(address) as channel,
    ):
        await jobs_pb2_grpc.JobServiceStub(channel).PauseDevice(
            pb.PauseDeviceRequest(name="qick", reason="x")
        )
    async with (
        running_service("scheduler", tmp_path, **config) as address,
        authed_channel(address) as channel,
    ):
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        job = (await stub.SubmitJob(lab())).job.job_id
        assert await state_of(stub, job) == pb.Job.STATE_QUEUED
        device = (await stub.GetDevice(pb.GetDeviceRequest(name="qick"))).device
        assert device.queue_state == pb.DEVICE_QUEUE_STATE_PAUSED and device.hold_reason == "x"
        before_resume = datetime.now(UTC)
        await stub.ResumeDevice(pb.ResumeDeviceRequest(name="qick"))
        done = await job_in_state(stub, job, pb.Job.STATE_SUCCEEDED)
        assert started(done) >= before_resume  # the restarted scheduler kept the hold until the resume


async def test_admin_calls_need_the_admin_role(scheduler, identity):
    _, _, address = scheduler
    async with authed_channel(address, identity.token_for("gina", (Role.OPERATOR,))) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        me = await stub.WhoAmI(admin_pb2.WhoAmIRequest())
        assert (me.user.name, list(me.user.roles)) == ("gina", [admin_pb2.ROLE_OPERATOR])
        error = await refused(stub.ListUsers(admin_pb2.ListUsersRequest()), DENIED, "MISSING_ROLE")
        assert "admin role" in error.details()
        await refused(stub.IssueToken(admin_pb2.IssueTokenRequest(name="gina")), DENIED, "MISSING_ROLE")
    async with authed_channel(address) as channel:  # alice, an admin
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        created = await stub.CreateUser(
            admin_pb2.CreateUserRequest(name="hugo", roles=[admin_pb2.ROLE_CALIBRATOR])
        )
        assert created.user.roles == [admin_pb2.ROLE_CALIBRATOR]
        await refused(
            stub.CreateUser(admin_pb2.CreateUserRequest(name="hugo")),
            grpc.StatusCode.ALREADY_EXISTS,
            "USER_EXISTS",
        )
        await refused(
            stub.CreateUser(admin_pb2.CreateUserRequest(name="ivy", roles=[admin_pb2.ROLE_SCHEDULER])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ROLE_NOT_ALLOWED",
        )
        issued = await stub.IssueToken(admin_pb2.IssueTokenRequest(name="hugo", label="laptop"))
        assert issued.secret.startswith("qsched_") and issued.token.token_id.startswith("tok_")
    async with authed_channel(address, issued.secret) as channel:
        assert (
            await admin_pb2_grpc.AdminServiceStub(channel).WhoAmI(admin_pb2.WhoAmIRequest())
        ).user.name == "hugo"
    actions = [e.action for e in await audit(address)]
    assert "user.create" in actions and "token.issue" in actions


async def test_setting_main_configs_needs_the_calibrator_role(tmp_path, identity):
    async with running_service("configs", tmp_path) as address:
        push = configs_pb2.PushToMainRequest(config_type="hardware_config", content=b"a: 1\n")
        async with authed_channel(address, identity.token_for("bob")) as channel:
            stub = configs_pb2_grpc.ConfigServiceStub(channel)
            error = await refused(stub.PushToMain(push), DENIED, "MISSING_ROLE", "qsched.auth")
            assert "calibrator role" in error.details()
            # A person without the role may still add revisions (not main) and read.
            created = await stub.CreateRevision(
                configs_pb2.CreateRevisionRequest(
                    config_type="hardware_config", content=b"a: 2\n", creator="lab"
                )
            )
            assert created.revision.creator == "bob (lab)"  # attributed to the caller, never to someone else
        # Plain SDK channel (authed_channel would send the scheduler's credential on PinConfigs).
        async with aio_channel(address, identity.token_for("bob"), None) as channel:
            pin = configs_pb2.PinConfigsRequest(job_id="JOB-20260101-00001")
            await refused(configs_pb2_grpc.ConfigServiceStub(channel).PinConfigs(pin), DENIED, "MISSING_ROLE")
        async with authed_channel(address, identity.token_for("hugo2", (Role.CALIBRATOR,))) as channel:
            stub = configs_pb2_grpc.ConfigServiceStub(channel)
            pushed = await stub.PushToMain(push)
            assert pushed.change.changed_by == "hugo2"
    scheduler_events = identity.store.audit_entries(20, actor="hugo2")
    assert [(e.service, e.action, e.target) for e in scheduler_events] == [
        ("configs", "config.push_to_main", "hardware_config")
    ]
