"""Builds the scheduler service from its configuration: the JobService, and the
AdminService of the installation's users and tokens (qsched_identity)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from sqlalchemy import Engine

from qsched.api.admin.v1 import admin_pb2, admin_pb2_grpc
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc as pb_grpc
from qsched_core.clock import utcnow
from qsched_core.config import ServiceConfig, secrets_dir
from qsched_core.health import Problems
from qsched_core.pagination import page_key
from qsched_core.principal import Role
from qsched_identity.admin import AdminDesk
from qsched_identity.audit import AuditLog
from qsched_runtime.auth import Anyone
from qsched_runtime.security import PeerCredentials, peer_credentials, server_security
from qsched_runtime.server import Registration
from qsched_runtime.service import ServiceHandle
from qsched_scheduler import db, reservations
from qsched_scheduler.access import JobDesk, Limits
from qsched_scheduler.admin import servicer as admin_servicer
from qsched_scheduler.calendar import Calendar, ReservationGate
from qsched_scheduler.calibration.configs_client import GrpcCalibrationConfigs
from qsched_scheduler.calibration.manager import Calibrations
from qsched_scheduler.calibration.sql_store import SqlCalibrationStore
from qsched_scheduler.configs_client import GrpcConfigPinner, GrpcMainRevisionsFeed
from qsched_scheduler.domain import Change, JobState
from qsched_scheduler.executor_client import GrpcLabExecutor
from qsched_scheduler.fair_share import FairShare, Usage, fair_share_devices
from qsched_scheduler.gateway_client import GrpcProviderGateway
from qsched_scheduler.holds import DeviceHolds
from qsched_scheduler.leases import Leases
from qsched_scheduler.main_revisions import MainRevisions
from qsched_scheduler.policy import DeviceHoldGate, PriorityFifo, QueuePolicy
from qsched_scheduler.replica_events import EventRelay, PgEventListener, replica_origin, tag_connections
from qsched_scheduler.scheduler import Scheduler
from qsched_scheduler.servicer import JobServicer
from qsched_scheduler.sessions import SessionGate, Sessions
from qsched_scheduler.store.calendar import SqlCalendarStore, SqlSessionStore
from qsched_scheduler.store.control import SqlControlStore
from qsched_scheduler.store.engine import make_engine, sqlite_url_for
from qsched_scheduler.store.leases import SqlLeaseStore
from qsched_scheduler.store.sql import SqlJobStore
from qsched_scheduler.store.usage import SqlUsageHistory

log = logging.getLogger(__name__)

# People use the JobService (ownership is checked per job by access.JobDesk); holding a
# device queue is an operator's call.
JOB_POLICY = {
    **{m.name: Anyone.PERSON for m in pb.DESCRIPTOR.services_by_name["JobService"].methods},
    "PauseDevice": Role.OPERATOR,
    "ResumeDevice": Role.OPERATOR,
    "DrainDevice": Role.OPERATOR,
    "RunCalibration": Role.CALIBRATOR,
}


HOLDS_REFRESH_S = 0.1
log = logging.getLogger(__name__)

# Fair share reads back this many half-lives of run history at start (older runs count < 0.1%).
USAGE_HISTORY = 10


def database_url(config: ServiceConfig) -> str:
    return config.database_url or sqlite_url_for(config.data_dir)


def calibrator_token(config: ServiceConfig) -> str:
    """The calibrator service principal's token: $QSCHED_CALIBRATOR_TOKEN, else the one `qsched up`
    wrote beside the scheduler's (<data_dir>/secrets/calibrator.token)."""
    token = os.environ.get("QSCHED_CALIBRATOR_TOKEN", "").strip()
    if token:
        return token
    try:
        return (secrets_dir(config.data_dir) / "calibrator.token").read_text().strip()
    except FileNotFoundError:
        return ""  # the config service refuses the push (UNAUTHENTICATED): the calibration fails, visibly


def leases_for(url: str, engine: Engine) -> Leases | None:
    """Device leases (replicas: docs/deployment.md) on PostgreSQL, where several schedulers may
    share the database; on SQLite only with QSCHED_LEASES=on (one process per file otherwise).
    QSCHED_LEASES=off turns them off everywhere."""
    setting = os.environ.get("QSCHED_LEASES", "auto").strip().lower()
    if setting == "off" or (setting != "on" and not url.startswith("postgresql")):
        return None
    return Leases(SqlLeaseStore(engine))


async def follow_holds(holds: DeviceHolds, scheduler: Scheduler) -> None:
    """Replicas: a device held or resumed on another replica reaches this one's dispatcher."""
    while True:
        await asyncio.sleep(HOLDS_REFRESH_S)
        try:
            changed = await holds.reload()
        except Exception as exc:
            log.warning("reading the device holds again failed: %s", exc)
            continue
        for device in changed:
            scheduler.hold_changed(device)


def limits(config: ServiceConfig) -> Limits:
    return Limits(config.max_queued_per_user, config.max_payload_bytes_per_job, config.max_user_priority)


async def build(config: ServiceConfig) -> ServiceHandle:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    security = server_security(config)
    peers = peer_credentials(config)
    url = database_url(config)
    db.upgrade(url)  # idempotent; a new data directory gets its schema here
    engine = make_engine(url)
    # Replicas on one PostgreSQL database: this one's changes are named by its origin (issue 15).
    origin = replica_origin() if engine.dialect.name == "postgresql" else ""
    if origin:
        tag_connections(engine, origin)
    store = SqlJobStore(engine)
    leases = leases_for(url, engine)
    if leases is not None:  # the stage and claim transactions check this replica's lease (fencing)
        store.fence_of = leases.fence
    executors = {name: GrpcLabExecutor(address, peers) for name, address in config.devices().items()}
    pinner = GrpcConfigPinner(config.endpoints.configs, peers) if config.pin_configs else None
    # Main revisions pinned from memory, following ConfigService.WatchMainRevisions.
    mains = MainRevisions() if config.pin_configs else None
    feed = GrpcMainRevisionsFeed(config.endpoints.configs, mains, peers) if mains is not None else None
    gateway = GrpcProviderGateway(config.endpoints.gateway, peers)
    control = SqlControlStore(engine)
    holds = DeviceHolds(control)
    # Issue 13: the device calendars, a gate of the queue policy (after the device hold).
    calendar = Calendar(SqlCalendarStore(engine), utcnow)
    calendar.load()
    gate = ReservationGate(calendar)
    sessions = Sessions(SqlSessionStore(engine), utcnow)
    sessions.load()  # before dispatching: a device in a session must start only its jobs
    # The order within a priority: fair share on the devices the setting names, FIFO elsewhere.
    usage = Usage(utcnow)
    history = SqlUsageHistory(engine).since(utcnow() - USAGE_HISTORY * usage.half_life)
    usage.load(history)
    ordering = FairShare(usage, devices=fair_share_devices(config.fair_share_devices))
    # Calibration (docs/calibration.md): with the config service, as the calibrator principal.
    calibrations = None
    if config.pin_configs:
        calibrator = PeerCredentials(calibrator_token(config), peers.tls)
        calibrations = Calibrations(
            SqlCalibrationStore(engine),
            GrpcCalibrationConfigs(config.endpoints.configs, calibrator),
            mains,
        )
        calibrations.window_start = calendar.calibration_window_start  # `in_windows` calibrations
    problems = Problems()  # a dispatcher that cannot work: the health is NOT_SERVING
    scheduler = Scheduler.build(
        store,
        executors,
        page_key(config.data_dir / "page-token.key"),
        hold_of=holds.hold_of,
        mains=mains,
        pinner=pinner,
        gateway=gateway,
        policy=QueuePolicy(
            ordering if config.fair_share_devices else PriorityFifo(),
            [DeviceHoldGate(), gate, SessionGate(sessions)],
        ),
        calibrations=calibrations,
        problems=problems,
        leases=leases,
    )
    gate.typical_seconds = ordering.typical_seconds = scheduler.estimates.typical
    scheduler.bus.add_listener(usage.observe)
    scheduler.bus.add_listener(ordering.observe)  # fair share's per-user index of the queues
    reservations.wire(calendar, scheduler)
    listener = replica_events(scheduler, store, origin, url) if origin else None
    reservations.wire_sessions(sessions, scheduler)
    ticker = reservations.CalendarTicker(calendar, utcnow, sessions)
    audit = AuditLog(security.authenticator)
    # Lab devices only for now: provider devices are not dispatched through the queue policy.

    def is_lab(device: str) -> bool:
        return scheduler.routes.lab(device) is not None

    booking = reservations.ReservationDesk(calendar, is_lab, audit)
    session_desk = reservations.SessionDesk(sessions, is_lab, audit)
    fair = [n.strip() for n in config.fair_share_devices.split(",") if n.strip()]
    shown = reservations.UsageView(usage, fair)

    async def count_queued(owner: str) -> int:
        return await asyncio.to_thread(control.queued_count_of, owner)

    desk = JobDesk(scheduler, holds, count_queued, limits(config), audit, replicas=leases is not None)
    jobs = Registration(
        pb.DESCRIPTOR.services_by_name["JobService"].full_name,
        lambda server: pb_grpc.add_JobServiceServicer_to_server(
            JobServicer(scheduler, desk, booking, session_desk, shown), server
        ),
        JOB_POLICY,
    )
    admin = Registration(
        admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
        lambda server: admin_pb2_grpc.add_AdminServiceServicer_to_server(
            admin_servicer.AdminServicer(AdminDesk(security.authenticator)), server
        ),
        admin_servicer.POLICY,
    )

    async def start() -> None:
        await holds.load()  # before dispatching: a held device must not start anything
        if feed is not None:
            feed.start()
        if listener is not None:  # listening before the index loads: nothing falls in between
            await listener.start()
        await scheduler.start(dispatch=config.dispatch)
        ordering.load(job for name in scheduler.routes.labs for job in scheduler.index.device(name))
        sessions.track(await reservations.active_session_jobs(scheduler))
        ticker.start()
        if leases is not None:
            following.append(asyncio.get_running_loop().create_task(follow_holds(holds, scheduler)))

    following: list[asyncio.Task[None]] = []

    async def stop() -> None:
        for task in following:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await ticker.stop()
        if listener is not None:
            await listener.stop()
        if feed is not None:
            await feed.close()
        await scheduler.stop()

    handle = ServiceHandle([jobs, admin], start=start, stop=stop, security=security, problems=problems)
    handle.scheduler = scheduler  # type: ignore[attr-defined]  # for in-process tests (live output counters)
    return handle


def replica_events(scheduler: Scheduler, store: SqlJobStore, origin: str, url: str) -> PgEventListener:
    """Other replicas' committed changes, heard through the database, published here as this
    replica's own are (docs/architecture.md, "Events across replicas"); the replica that holds a
    device's lease also acts on them at once (its queue re-read, leases.py, would find them within
    REFRESH_S): a job queued there wakes the dispatcher, a cancel asked there is carried out, a
    job ended there while staged here is taken back."""
    scheduler.feed.track_seqs()
    staged_here: set[str] = set()  # jobs of the read being published that were staged here

    def publish(change: Change) -> None:
        queued = scheduler.index.device(change.job.device).get(change.job.job_id)
        if queued is not None and queued.staged_task_id:
            staged_here.add(queued.job_id)
        scheduler.feed.publish(change)

    def react(change: Change) -> None:  # the job as it is now, once per job and read
        job = change.job
        was_staged = job.job_id in staged_here
        staged_here.discard(job.job_id)
        lab = scheduler.routes.lab(job.device)
        if lab is not None and not lab.dispatches_here():
            return
        if job.state.terminal:
            if was_staged and lab is not None:  # ended there while staged here: never start it
                lab.take_back(f"{job.job_id} ended on another replica while staged")
        elif job.cancel_requested and lab is not None:  # CancelJob on another replica (flag_cancel)
            lab.cancel_asked_elsewhere(job.job_id)
        elif job.state is JobState.QUEUED and change.previous_state is not JobState.QUEUED:
            if lab is not None:
                lab.queued(job)
            else:
                scheduler.routes.wake(job.device)  # a provider device: its dispatcher claims it

    relay = EventRelay(store, origin, publish, scheduler.feed.last_seq, react=react)
    return PgEventListener(url, relay)
