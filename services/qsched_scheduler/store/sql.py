"""The SQL job store (SQLite or PostgreSQL through SQLAlchemy). Same contract as
MemoryJobStore; tests/scheduler/test_store_contract.py runs both.

Every mutating call is one transaction. Concurrency between processes sharing a
database rests on the database, not on this process:
- SQLite: every write transaction starts with BEGIN IMMEDIATE (see engine.py), so
  writers are serialized and each sees the previous writer's commit.
- PostgreSQL: a mutation locks its job row (SELECT ... FOR UPDATE); id counters are
  bumped with UPDATE ... RETURNING (a row lock); the unique indexes on request_id and
  on (device) WHERE state = 'RUNNING' settle the races that remain."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import (
    ColumnElement,
    Engine,
    and_,
    case,
    delete,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from qsched_scheduler import ids
from qsched_scheduler.domain import (
    Change,
    ErrorDetail,
    Event,
    Job,
    JobFilter,
    JobKind,
    JobState,
    ListView,
    NewJob,
    Payload,
    Run,
)
from qsched_scheduler.errors import FailedPrecondition, job_not_found
from qsched_scheduler.store.base import RunUpdate, SubmitOutcome
from qsched_scheduler.store.engine import read_only
from qsched_scheduler.store.models import EventRow, IdCounterRow, JobRow, RunRow

QUEUED = JobState.QUEUED.value
RUNNING = JobState.RUNNING.value
SUCCEEDED = JobState.SUCCEEDED.value
QUEUE_ORDER_KEY = "QUEUE-ORDER"  # id_counters row handing out FIFO keys (a re-run takes a new one)


class _ClaimLost(Exception):
    """Another process claimed the device first (the one-running-per-device index said no)."""


class SqlJobStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._writes = sessionmaker(engine, expire_on_commit=False, autoflush=True)
        self._reads = sessionmaker(read_only(engine), expire_on_commit=False, autoflush=True)

    # -- transactions --------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._writes() as session, session.begin():
            yield session

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._reads() as session, session.begin():
            yield session

    # -- helpers ---------------------------------------------------------------------------------------
    def _lock_job(self, session: Session, job_id: str) -> JobRow:
        row = session.scalars(select(JobRow).where(JobRow.job_id == job_id).with_for_update()).one_or_none()
        if row is None:
            raise job_not_found(job_id)
        return row

    def _log(
        self,
        session: Session,
        row: JobRow,
        now: datetime,
        message: str,
        progress: float = 0.0,
        task_id: str = "",
    ) -> Event:
        row.last_seq += 1
        event = EventRow(
            job_pk=row.id,
            seq=row.last_seq,
            time=now,
            state=row.state,
            message=message,
            progress=progress,
            task_id=task_id,
        )
        session.add(event)
        session.flush()
        return _event(event, row.job_id)

    def _next_counter(self, session: Session, prefix: str) -> int:
        insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        session.execute(
            insert(IdCounterRow)
            .values(prefix=prefix, counter=0)
            .on_conflict_do_nothing(index_elements=["prefix"])
        )
        return session.execute(
            update(IdCounterRow)
            .where(IdCounterRow.prefix == prefix)
            .values(counter=IdCounterRow.counter + 1)
            .returning(IdCounterRow.counter)
            .execution_options(synchronize_session=False)
        ).scalar_one()

    def _by_request_id(self, session: Session, request_id: str) -> SubmitOutcome | None:
        row = session.scalars(select(JobRow).where(JobRow.request_id == request_id)).one_or_none()
        if row is None:
            return None
        first = session.scalars(
            select(EventRow).where(EventRow.job_pk == row.id).order_by(EventRow.seq).limit(1)
        ).one()
        return SubmitOutcome(Change(self._job(session, row), _event(first, row.job_id)), created=False)

    def _jobs(self, session: Session, rows: Sequence[JobRow]) -> list[Job]:
        """Domain jobs with their latest run and run count (one query for all of them)."""
        if not rows:
            return []
        pks = [row.id for row in rows]
        latest = (
            select(RunRow.job_pk, func.max(RunRow.attempt).label("attempt"), func.count().label("runs"))
            .where(RunRow.job_pk.in_(pks))
            .group_by(RunRow.job_pk)
            .subquery()
        )
        found = session.execute(
            select(RunRow, latest.c.runs).join(
                latest, and_(RunRow.job_pk == latest.c.job_pk, RunRow.attempt == latest.c.attempt)
            )
        ).all()
        runs = {run.job_pk: (run, count) for run, count in found}
        return [_job(row, *runs.get(row.id, (None, 0))) for row in rows]

    def _job(self, session: Session, row: JobRow) -> Job:
        return self._jobs(session, [row])[0]

    # -- JobStore: submit and reads --------------------------------------------------------------------
    def submit(self, new: NewJob, now: datetime) -> SubmitOutcome:
        try:
            with self._write() as session:
                if new.request_id:
                    earlier = self._by_request_id(session, new.request_id)
                    if earlier is not None:
                        return earlier
                prefix = ids.day_prefix(now)
                row = JobRow(
                    job_id=ids.format_job_id(prefix, self._next_counter(session, prefix)),
                    owner=new.owner,
                    device=new.device,
                    kind=new.payload.kind.value,
                    priority=new.priority,
                    payload=new.payload.body,
                    state=QUEUED,
                    create_time=now,
                    last_seq=0,
                    cancel_requested=False,
                    labels=dict(new.labels),
                    trace_parent=new.trace_parent,
                    request_id=new.request_id or None,
                    queue_order=self._next_counter(session, QUEUE_ORDER_KEY),
                )
                session.add(row)
                session.flush()
                event = self._log(session, row, now, "queued")
                return SubmitOutcome(Change(self._job(session, row), event), created=True)
        except IntegrityError:
            # A concurrent submit with the same request_id committed first: answer with its job.
            if not new.request_id:
                raise
            with self._read() as session:
                earlier = self._by_request_id(session, new.request_id)
            if earlier is None:
                raise
            return earlier

    def get(self, job_id: str) -> Job | None:
        with self._read() as session:
            row = session.scalars(select(JobRow).where(JobRow.job_id == job_id)).one_or_none()
            return self._job(session, row) if row is not None else None

    def list_jobs(self, flt: JobFilter, after: tuple[int, ...] | None, limit: int) -> list[Job]:
        states = {state.value for state in flt.states}
        if flt.view is ListView.QUEUE:
            states = (states or {QUEUED, RUNNING}) & {QUEUED, RUNNING}
            if not states:  # asked only for states that are never in the queue
                return []
        stmt = select(JobRow)
        if states:
            stmt = stmt.where(JobRow.state.in_(sorted(states)))
        if flt.owner:
            stmt = stmt.where(JobRow.owner == flt.owner)
        if flt.device:
            stmt = stmt.where(JobRow.device == flt.device)
        if flt.kind is not None:
            stmt = stmt.where(JobRow.kind == flt.kind.value)
        if flt.view is ListView.QUEUE:
            # The order of cursor_of: (running first, -priority, order).
            rank = case((JobRow.state == RUNNING, 0), else_=1)
            stmt = stmt.order_by(rank, JobRow.priority.desc(), JobRow.queue_order)
            if after is not None:
                stmt = stmt.where(_sorts_after([rank, -JobRow.priority, JobRow.queue_order], after))
        else:
            stmt = stmt.order_by(JobRow.id.desc())
            if after is not None:
                stmt = stmt.where(JobRow.id < after[0])
        with self._read() as session:
            return self._jobs(session, session.scalars(stmt.limit(limit)).all())

    def queue_position(self, job: Job) -> int:
        if job.state is not JobState.QUEUED:
            return 0
        stmt = select(func.count()).where(
            JobRow.device == job.device,
            JobRow.state == QUEUED,
            or_(
                JobRow.priority > job.priority,
                and_(JobRow.priority == job.priority, JobRow.queue_order < job.queue_order),
            ),
        )
        with self._read() as session:
            return session.scalar(stmt) + 1

    def queued_count(self, device: str) -> int:
        with self._read() as session:
            return session.scalar(select(func.count()).where(JobRow.device == device, JobRow.state == QUEUED))

    def running_job(self, device: str) -> Job | None:
        stmt = (
            select(JobRow)
            .where(JobRow.device == device, JobRow.state == RUNNING)
            .order_by(JobRow.id)
            .limit(1)
        )
        with self._read() as session:
            row = session.scalars(stmt).one_or_none()
            return self._job(session, row) if row is not None else None

    def recent_run_seconds(self, device: str, limit: int) -> list[float]:
        stmt = (
            select(RunRow.start_time, RunRow.end_time)
            .join(JobRow, RunRow.job_pk == JobRow.id)
            .where(
                JobRow.device == device,
                RunRow.state == SUCCEEDED,
                RunRow.start_time.is_not(None),
                RunRow.end_time.is_not(None),
            )
            .order_by(RunRow.end_time.desc(), RunRow.job_pk, RunRow.attempt)
            .limit(limit)
        )
        with self._read() as session:
            return [(end - start).total_seconds() for start, end in session.execute(stmt)]

    def events_after(self, job_id: str, after_seq: int, limit: int = 1000) -> list[Event]:
        stmt = (
            select(EventRow)
            .join(JobRow, EventRow.job_pk == JobRow.id)
            .where(JobRow.job_id == job_id, EventRow.seq > after_seq)
            .order_by(EventRow.seq)
            .limit(limit)
        )
        with self._read() as session:
            return [_event(row, job_id) for row in session.scalars(stmt)]

    def running_jobs(self) -> list[Job]:
        with self._read() as session:
            rows = session.scalars(select(JobRow).where(JobRow.state == RUNNING).order_by(JobRow.id)).all()
            return self._jobs(session, rows)

    # -- JobStore: user commands ---------------------------------------------------------------------
    def cancel_queued(self, job_id: str, reason: str, now: datetime) -> Change:
        with self._write() as session:
            row = self._lock_job(session, job_id)
            if row.state != QUEUED:
                raise FailedPrecondition(
                    "JOB_NOT_QUEUED", f"job {job_id} is {row.state}, not QUEUED", job_id=job_id
                )
            row.state = JobState.CANCELLED.value
            row.end_time = now
            _set_error(row, ErrorDetail("CANCELLED", reason or "cancelled while queued"))
            event = self._log(session, row, now, f"cancelled: {reason}" if reason else "cancelled")
            return Change(self._job(session, row), event, JobState.QUEUED)

    def request_cancel(self, job_id: str, reason: str, now: datetime) -> Change:
        with self._write() as session:
            row = self._lock_job(session, job_id)
            if row.state != RUNNING:
                raise FailedPrecondition(
                    "JOB_NOT_RUNNING", f"job {job_id} is {row.state}, not RUNNING", job_id=job_id
                )
            row.cancel_requested = True
            task_id = session.scalars(
                select(RunRow.task_id).where(RunRow.job_pk == row.id).order_by(RunRow.attempt.desc()).limit(1)
            ).one()
            message = f"cancel requested: {reason}" if reason else "cancel requested"
            event = self._log(session, row, now, message, 0.0, task_id)
            return Change(self._job(session, row), event, JobState.RUNNING)

    def delete(self, job_id: str) -> None:
        with self._write() as session:
            row = self._lock_job(session, job_id)
            if not JobState(row.state).terminal:
                raise FailedPrecondition(
                    "JOB_NOT_TERMINAL",
                    f"job {job_id} is {row.state}; only finished jobs can be deleted",
                    job_id=job_id,
                )
            # Runs and events go with the job (ON DELETE CASCADE).
            session.execute(
                delete(JobRow).where(JobRow.id == row.id).execution_options(synchronize_session=False)
            )

    # -- JobStore: dispatch ----------------------------------------------------------------------------
    def claim_next(self, device: str, task_id: str, now: datetime, max_running: int = 1) -> Change | None:
        try:
            with self._write() as session:
                running = session.scalar(
                    select(func.count()).where(JobRow.device == device, JobRow.state == RUNNING)
                )
                if running >= max_running:
                    return None
                row = session.scalars(
                    select(JobRow)
                    .where(JobRow.device == device, JobRow.state == QUEUED)
                    .order_by(JobRow.priority.desc(), JobRow.queue_order)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                ).one_or_none()
                if row is None:
                    return None
                row.state = RUNNING
                row.cancel_requested = False
                _set_error(row, None)
                try:
                    session.flush()
                except IntegrityError as exc:
                    raise _ClaimLost from exc
                attempts = session.scalar(select(func.max(RunRow.attempt)).where(RunRow.job_pk == row.id))
                session.add(_new_run(row, task_id, (attempts or 0) + 1))
                event = self._log(session, row, now, "dispatched to the device", 0.0, task_id)
                return Change(self._job(session, row), event, JobState.QUEUED)
        except _ClaimLost:
            return None

    def rerun(self, job_id: str, payload: Payload | None, request_id: str, now: datetime) -> Change:
        with self._write() as session:
            row = self._lock_job(session, job_id)
            if request_id and row.rerun_request_id == request_id:
                last = session.scalars(
                    select(EventRow).where(EventRow.job_pk == row.id, EventRow.seq == row.last_seq)
                ).one()
                return Change(self._job(session, row), _event(last, row.job_id), JobState(row.state))
            previous = JobState(row.state)
            if not previous.terminal:
                raise FailedPrecondition(
                    "JOB_NOT_TERMINAL",
                    f"job {job_id} is {row.state}; only finished jobs can run again",
                    job_id=job_id,
                )
            row.state = QUEUED
            row.queue_order = self._next_counter(session, QUEUE_ORDER_KEY)
            row.start_time = row.end_time = None
            row.cancel_requested = False
            _set_error(row, None)
            if payload is not None:
                row.kind = payload.kind.value
                row.payload = dict(payload.body)
            row.rerun_request_id = request_id or None
            runs = session.scalar(select(func.count()).where(RunRow.job_pk == row.id))
            event = self._log(session, row, now, f"queued again (run {runs + 1})")
            return Change(self._job(session, row), event, previous)

    def list_runs(self, job_id: str, after_attempt: int, limit: int) -> list[Run]:
        with self._read() as session:
            row = session.scalars(select(JobRow).where(JobRow.job_id == job_id)).one_or_none()
            if row is None:
                raise job_not_found(job_id)
            runs = session.scalars(
                select(RunRow)
                .where(RunRow.job_pk == row.id, RunRow.attempt > after_attempt)
                .order_by(RunRow.attempt)
                .limit(limit)
            ).all()
            return [_run(run, row) for run in runs]

    def release_claim(self, task_id: str, message: str, now: datetime) -> Change:
        with self._write() as session:
            row = self._lock_job_of_run(session, task_id)
            if row is None:
                raise KeyError(task_id)
            session.execute(
                delete(RunRow).where(RunRow.task_id == task_id).execution_options(synchronize_session=False)
            )
            row.state = QUEUED
            row.start_time = None
            event = self._log(session, row, now, message)
            return Change(self._job(session, row), event, JobState.RUNNING)

    def update_run(self, task_id: str, update: RunUpdate, now: datetime) -> Change | None:
        with self._write() as session:
            row = self._lock_job_of_run(session, task_id)
            if row is None:
                return None
            run = session.get(RunRow, task_id, populate_existing=True)
            if run is None or run.state != RUNNING:
                return None
            previous = JobState(row.state)
            run.executor_seq = max(run.executor_seq, update.executor_seq)
            if update.config_revisions:
                run.config_revisions = dict(update.config_revisions)
            if update.provider_task_ids:
                run.provider_task_ids = list(update.provider_task_ids)
            if update.provider_submission_id:
                run.provider_submission_id = update.provider_submission_id
            if update.started and run.start_time is None:
                run.start_time = now
                row.start_time = now
            if update.progress is not None:
                run.progress = update.progress
            if update.final_state is not None:
                run.state = update.final_state.value
                run.end_time = now
                _set_error(run, update.error)
                run.data_file_path = update.data_file_path
                run.summary = dict(update.summary)
                if update.result_json:
                    run.result_json, run.result_time = update.result_json, now
                if update.final_state is JobState.SUCCEEDED:
                    run.progress = 1.0
                row.state = update.final_state.value
                row.end_time = now
                _set_error(row, update.error)
                row.cancel_requested = False
            event = self._log(session, row, now, update.message, run.progress, task_id)
            return Change(self._job(session, row), event, previous)

    def active_devices(self) -> list[str]:
        with self._read() as session:
            stmt = select(JobRow.device).where(JobRow.state.in_((QUEUED, RUNNING))).distinct()
            return sorted(session.scalars(stmt).all())

    def store_result(self, task_id: str, result_json: str, now: datetime) -> None:
        with self._write() as session:
            run = session.get(RunRow, task_id)
            if run is None:
                raise KeyError(task_id)
            run.result_json, run.result_time = result_json, now

    def _lock_job_of_run(self, session: Session, task_id: str) -> JobRow | None:
        return session.scalars(
            select(JobRow)
            .join(RunRow, RunRow.job_pk == JobRow.id)
            .where(RunRow.task_id == task_id)
            .with_for_update(of=JobRow)
        ).one_or_none()

    def close(self) -> None:
        self._engine.dispose()


# -- rows <-> domain -------------------------------------------------------------------------------------
def _utc(value: datetime | None) -> datetime | None:
    """Aware UTC, also for values a write path still holds as the caller passed them."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _error(reason: str | None, message: str | None) -> ErrorDetail | None:
    return None if reason is None else ErrorDetail(reason, message or "")


def _set_error(row: JobRow | RunRow, error: ErrorDetail | None) -> None:
    row.error_reason = error.reason if error else None
    row.error_message = error.message if error else None


def _new_run(job: JobRow, task_id: str, attempt: int) -> RunRow:
    return RunRow(
        task_id=task_id,
        job_pk=job.id,
        payload=dict(job.payload),  # the run's memento: the settings it ran with
        attempt=attempt,
        state=RUNNING,
        progress=0.0,
        data_file_path="",
        summary={},
        config_revisions={},
        provider_task_ids=[],
        executor_seq=0,
    )


def _run(row: RunRow, job: JobRow) -> Run:
    return Run(
        task_id=row.task_id,
        attempt=row.attempt,
        state=JobState(row.state),
        start_time=_utc(row.start_time),
        end_time=_utc(row.end_time),
        progress=row.progress,
        error=_error(row.error_reason, row.error_message),
        data_file_path=row.data_file_path,
        summary=dict(row.summary),
        config_revisions=dict(row.config_revisions),
        provider_task_ids=list(row.provider_task_ids),
        executor_seq=row.executor_seq,
        payload=Payload(JobKind(job.kind), dict(row.payload)),
        job_id=job.job_id,
        provider_submission_id=row.provider_submission_id or "",
        result_json=row.result_json or "",
        result_time=_utc(row.result_time),
    )


def _job(row: JobRow, run: RunRow | None, run_count: int) -> Job:
    return Job(
        job_id=row.job_id,
        owner=row.owner,
        device=row.device,
        priority=row.priority,
        payload=Payload(JobKind(row.kind), dict(row.payload)),
        state=JobState(row.state),
        create_time=_utc(row.create_time),
        order=row.id,
        queue_order=row.queue_order,
        start_time=_utc(row.start_time),
        end_time=_utc(row.end_time),
        error=_error(row.error_reason, row.error_message),
        last_seq=row.last_seq,
        cancel_requested=row.cancel_requested,
        labels=dict(row.labels),
        current_run=_run(run, row) if run is not None else None,
        run_count=run_count,
        trace_parent=row.trace_parent,
    )


def _event(row: EventRow, job_id: str) -> Event:
    return Event(
        job_id=job_id,
        seq=row.seq,
        time=_utc(row.time),
        state=JobState(row.state),
        message=row.message,
        progress=row.progress,
        task_id=row.task_id,
    )


def _sorts_after(keys: Sequence[ColumnElement[int]], after: tuple[int, ...]) -> ColumnElement[bool]:
    """Rows whose key tuple sorts strictly after `after`, in Python's tuple order."""
    clauses = []
    shared = min(len(keys), len(after))
    for i in range(shared):
        clauses.append(and_(true(), *(keys[j] == after[j] for j in range(i)), keys[i] > after[i]))
    if len(keys) > len(after):  # a proper prefix sorts first
        clauses.append(and_(true(), *(keys[j] == after[j] for j in range(shared))))
    return or_(*clauses)
