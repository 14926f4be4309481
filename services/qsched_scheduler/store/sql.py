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

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    bindparam,
    case,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from qsched_core.errors import QuotaExceeded
from qsched_core.execution import DataRef
from qsched_core.provenance import CodeProvenance
from qsched_scheduler import ids
from qsched_scheduler.domain import (
    PREEMPTED,
    Change,
    ErrorDetail,
    Event,
    Job,
    JobFilter,
    JobKind,
    JobState,
    ListView,
    LogLines,
    NewJob,
    Payload,
    QueuedJob,
    Reason,
    Run,
    calibration_needs,
    pins_main,
    reservation_of,
)
from qsched_scheduler.errors import FailedPrecondition, job_not_found
from qsched_scheduler.store.base import Claim, RunUpdate, StageRequest, SubmitOutcome, queued_end_message
from qsched_scheduler.store.engine import make_engine, read_only
from qsched_scheduler.store.leases import LeaseLost, check_fence
from qsched_scheduler.store.models import EventRow, IdCounterRow, JobRow, QueueCountRow, RunRow

QUEUED = JobState.QUEUED.value
RUNNING = JobState.RUNNING.value
SUCCEEDED = JobState.SUCCEEDED.value
FAILED = JobState.FAILED.value
SUPERSEDED_MESSAGE = "the executor started the next run without reporting this one's end"
QUEUE_ORDER_KEY = "QUEUE-ORDER"  # id_counters row handing out FIFO keys (a re-run takes a new one)

JOBS = JobRow.__table__
RUNS = RunRow.__table__
EVENTS = EventRow.__table__
COUNTERS = IdCounterRow.__table__
QUEUE_COUNTS = QueueCountRow.__table__


class _ClaimLost(Exception):
    """Another process claimed the device first (the one-running-per-device index said no)."""


class SqlJobStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        # With scheduler replicas (leases.py): device -> (holder, epoch) of this replica's lease,
        # None when it does not hold it; the stage and claim transactions check it (fencing).
        self.fence_of: Callable[[str], tuple[str, int] | None] | None = None
        self._writes = sessionmaker(engine, expire_on_commit=False, autoflush=True)
        self._reads = sessionmaker(read_only(engine), expire_on_commit=False, autoflush=True)
        self._read_engine = read_only(engine)
        # Replayable run progress (accepted, started, progress) is committed without waiting
        # for the disk; the next durable commit makes it durable too (README, durability).
        self._relaxed_engine = _relaxed(engine)
        insert_ = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        counted = insert_(QUEUE_COUNTS)
        self._count_upsert = counted.on_conflict_do_update(
            index_elements=[QUEUE_COUNTS.c.device, QUEUE_COUNTS.c.priority],
            set_={"queued": QUEUE_COUNTS.c.queued + counted.excluded.queued},
        )
        bump = insert_(COUNTERS)
        self._counter_bump = bump.on_conflict_do_update(
            index_elements=[COUNTERS.c.prefix], set_={"counter": COUNTERS.c.counter + bump.excluded.counter}
        ).returning(COUNTERS.c.counter)
        # The submit's two counters (the day's job numbers, the queue order) in one statement.
        both = insert_(COUNTERS).values(
            [
                {"prefix": bindparam("day"), "counter": bindparam("n")},
                {"prefix": bindparam("order_key"), "counter": bindparam("n")},
            ]
        )
        self._bump_day_and_order = both.on_conflict_do_update(
            index_elements=[COUNTERS.c.prefix], set_={"counter": COUNTERS.c.counter + both.excluded.counter}
        ).returning(COUNTERS.c.prefix, COUNTERS.c.counter)
        # The hot paths' statements (submit, apply_updates), built once: building a statement
        # and its cache key costs more than running it on SQLite (~0.1 ms each).
        task_ids = bindparam("task_ids", expanding=True)
        jobs_of_runs = select(RUNS.c.job_pk).where(RUNS.c.task_id.in_(task_ids)).scalar_subquery()
        jobs = select(JOBS).where(JOBS.c.id.in_(jobs_of_runs)).order_by(JOBS.c.id)
        self._jobs_of_runs = jobs.with_for_update() if self._dialect == "postgresql" else jobs
        self._runs_by_task = select(RUNS).where(RUNS.c.task_id.in_(task_ids))
        self._update_run = RUNS.update().where(RUNS.c.task_id == bindparam("_ident"))
        self._update_job = JOBS.update().where(JOBS.c.id == bindparam("_ident"))
        self._insert_events = insert(EVENTS)
        self._insert_run = insert(RUNS)
        self._insert_jobs = insert(JOBS).returning(JOBS.c.id, sort_by_parameter_order=True)
        self._known_request_ids = select(JOBS.c.request_id).where(
            JOBS.c.request_id.in_(bindparam("request_ids", expanding=True))
        )
        self._queue_counts = select(QUEUE_COUNTS.c.priority, QUEUE_COUNTS.c.queued).where(
            QUEUE_COUNTS.c.device == bindparam("device")
        )
        self._running_lab_jobs = select(JOBS).where(
            JOBS.c.state == RUNNING, JOBS.c.kind == JobKind.LAB_EXPERIMENT.value
        )
        job_ids = bindparam("job_ids", expanding=True)
        self._jobs_to_stage = select(JOBS).where(JOBS.c.job_id.in_(job_ids)).with_for_update()
        self._last_attempts = (
            select(RUNS.c.job_pk, func.max(RUNS.c.attempt))
            .where(RUNS.c.job_pk.in_(bindparam("pks", expanding=True)))
            .group_by(RUNS.c.job_pk)
        )
        self._mark_staged = (
            update(JOBS)
            .where(JOBS.c.id == bindparam("pk"))
            .values(staged_task_id=bindparam("task"), task_id=bindparam("task"))
        )

    # -- transactions --------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._writes() as session, session.begin():
            yield session

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._reads() as session, session.begin():
            yield session

    @contextmanager
    def _tx(self, durable: bool = True) -> Iterator[Connection]:
        """A Core write transaction; `durable=False` for replayable progress only."""
        engine = self._engine if durable else self._relaxed_engine
        with engine.begin() as conn:
            if not durable and self._dialect == "postgresql":
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            yield conn

    def _count(self, conn: Connection, device: str, priority: int, delta: int) -> None:
        """Keep queue_counts in step with a job entering (+) or leaving (-) QUEUED."""
        conn.execute(self._count_upsert, {"device": device, "priority": priority, "queued": delta})

    def _bump(self, conn: Connection, prefix: str, n: int) -> int:
        """Add n to a counter (created at 0 if new), in one statement; the new value (so the n
        values handed out end there). The row lock serializes concurrent writers."""
        return conn.execute(self._counter_bump, {"prefix": prefix, "counter": n}).scalar_one()

    def _over_quota(self, conn: Connection, news: Sequence[NewJob], fresh: list[int]) -> dict[int, Exception]:
        """The new jobs that would take their owner past their queued-jobs quota, each with its
        refusal. Counted in the inserting transaction under a per-owner lock (PostgreSQL: an
        advisory transaction lock; SQLite: the one writer), so replicas cannot overshoot together."""
        limited: dict[str, list[int]] = {}
        for i in fresh:
            if news[i].queued_limit > 0:
                limited.setdefault(news[i].owner, []).append(i)
        refused: dict[int, Exception] = {}
        for owner in sorted(limited):  # one order for every transaction: no deadlock
            if self._dialect == "postgresql":
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"qsched-queued:{owner}"}
                )
            queued = (
                conn.scalar(select(func.count()).where(JOBS.c.owner == owner, JOBS.c.state == QUEUED)) or 0
            )
            for i in limited[owner]:
                limit = news[i].queued_limit
                if queued >= limit:
                    refused[i] = QuotaExceeded(
                        "QUEUED_JOBS_QUOTA",
                        f"{owner} already has {queued} queued jobs; the limit is {limit} per user",
                        subject=f"user:{owner}",
                        queued=queued,
                        limit=limit,
                    )
                else:
                    queued += 1
        return refused

    # -- leases (replicas: leases.py) -------------------------------------------------------------------
    def _check_fence(self, conn: Connection, device: str) -> None:
        """Raise LeaseLost unless this replica still holds the device's lease (no leases: no check)."""
        if self.fence_of is None:
            return
        fence = self.fence_of(device)
        if fence is None:
            raise LeaseLost(f"this replica does not hold the lease of {device}")
        check_fence(conn, device, *fence)

    def _fenced(self, conn: Connection, device: str) -> bool:
        try:
            self._check_fence(conn, device)
        except LeaseLost:
            return False
        return True

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
        return self._bump(session.connection(), prefix, 1)

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
        return self.submit_many([new], now)[0]

    def submit_many(
        self, news: Sequence[NewJob], now: datetime, claims: Mapping[int, Claim] | None = None
    ) -> list[SubmitOutcome]:
        """Queue several jobs in one transaction (one commit, one fsync): group commit; a job in
        `claims` gets its staged run in that transaction too.

        A request_id used before is rare (a client's retry), so the batch is first written
        without looking its request_ids up; the unique index refuses a repeat, and the batch is
        then written again with the lookup (the transaction that failed left nothing behind)."""
        claims = claims or {}
        try:
            try:
                with self._tx() as conn:
                    outcomes = self._submit_many(conn, news, now, claims, look_up=False)
            except IntegrityError:
                if not any(new.request_id for new in news):
                    raise
                with self._tx() as conn:
                    outcomes = self._submit_many(conn, news, now, claims, look_up=True)
        except IntegrityError:
            # A concurrent submit (another process) with one of these request_ids committed
            # first: take them one at a time, each answering with the earlier job if so.
            if not any(new.request_id for new in news):
                raise
            if len(news) > 1:
                return [
                    self.submit_many([new], now, {0: claims[i]} if i in claims else None)[0]
                    for i, new in enumerate(news)
                ]
            with self._read() as session:
                earlier = self._by_request_id(session, news[0].request_id)
            if earlier is None:
                raise
            return [earlier]
        if any(outcome is None for outcome in outcomes):  # request_ids submitted before
            with self._read() as session:
                for i, outcome in enumerate(outcomes):
                    if outcome is None:
                        outcomes[i] = self._by_request_id(session, news[i].request_id)
        return outcomes  # type: ignore[return-value]

    def _submit_many(
        self,
        conn: Connection,
        news: Sequence[NewJob],
        now: datetime,
        claims: Mapping[int, Claim],
        look_up: bool = True,
    ) -> list[SubmitOutcome | None]:
        """The jobs are built from the rows written, not read back. None: a request_id that
        an earlier transaction already used (read after the commit; only with `look_up`, else
        such a request_id makes the insert fail)."""
        out: list[SubmitOutcome | None] = [None] * len(news)
        request_ids = [new.request_id for new in news if new.request_id]
        known: set[str] = set()
        if request_ids and look_up:
            known = set(conn.execute(self._known_request_ids, {"request_ids": request_ids}).scalars())
        fresh: list[int] = []
        first_of: dict[str, int] = {}
        repeats: list[tuple[int, int]] = []  # (index, index of the same request_id earlier in the batch)
        for i, new in enumerate(news):
            if new.request_id in known:
                continue
            if new.request_id and new.request_id in first_of:
                repeats.append((i, first_of[new.request_id]))
                continue
            if new.request_id:
                first_of[new.request_id] = i
            fresh.append(i)
        refused = self._over_quota(conn, news, fresh)
        if refused:
            for i in refused:
                out[i] = refused[i]  # type: ignore[call-overload]
            fresh = [i for i in fresh if i not in refused]
        if not fresh:
            return out
        if claims and self.fence_of is not None:  # a claim made under a lease lost since: no claim
            claims = {i: c for i, c in claims.items() if self._fenced(conn, news[i].device)}
        when = _utc(now)
        prefix = ids.day_prefix(now)
        bumped = dict(
            conn.execute(
                self._bump_day_and_order, {"day": prefix, "order_key": QUEUE_ORDER_KEY, "n": len(fresh)}
            ).all()
        )
        last_number, last_order = bumped[prefix], bumped[QUEUE_ORDER_KEY]
        first_number = last_number - len(fresh) + 1
        first_order = last_order - len(fresh) + 1
        rows = []
        for n, i in enumerate(fresh):
            new = news[i]
            rows.append(
                {
                    "job_id": ids.format_job_id(prefix, first_number + n),
                    "owner": new.owner,
                    "device": new.device,
                    "kind": new.payload.kind.value,
                    "priority": new.priority,
                    "payload": new.payload.body,
                    "state": QUEUED,
                    "create_time": when,
                    "start_time": None,
                    "end_time": None,
                    "error_reason": None,
                    "error_message": None,
                    "last_seq": 1,
                    "cancel_requested": False,
                    "labels": dict(new.labels),
                    "trace_parent": new.trace_parent,
                    "request_id": new.request_id or None,
                    "queue_order": first_order + n,
                    "rerun_request_id": None,
                    "staged_task_id": claims[i].task_id if i in claims else None,
                    # Its first run's task id (allocated now, so the submitter has it at once).
                    "task_id": claims[i].task_id if i in claims else str(uuid.uuid4()),
                }
            )
        pks = conn.execute(self._insert_jobs, rows).scalars().all()
        conn.execute(
            self._insert_events,
            [
                {
                    "job_pk": pk,
                    "seq": 1,
                    "time": when,
                    "state": QUEUED,
                    "message": "queued",
                    "progress": 0.0,
                    "task_id": "",
                }
                for pk in pks
            ],
        )
        added: dict[tuple[str, int], int] = {}
        for row in rows:
            key = (row["device"], row["priority"])
            added[key] = added.get(key, 0) + 1
        for (device, priority), n in added.items():
            self._count(conn, device, priority, n)
        counts: dict[str, dict[int, int]] = {}
        # A claimed job is first on its idle device (nothing queued there, nothing of the batch
        # before it): its position is 1 without counting. Other devices' jobs are counted.
        for device in {news[i].device for i in fresh if i not in claims}:
            counts[device] = dict(conn.execute(self._queue_counts, {"device": device}).all())
        # Position after this commit: everything queued at a higher priority, plus the same
        # priority except the jobs of this batch that come after this one.
        later = dict(added)
        staged: dict[int, dict[str, Any]] = {}  # index in news -> its staged run
        for i, pk, row in zip(fresh, pks, rows, strict=True):
            if i in claims:  # the job row holds its staged task id already
                staged[i] = self._stage_run(conn, SimpleNamespace(id=pk, **row), claims[i], 1, row["task_id"])
        for i, pk, row in zip(fresh, pks, rows, strict=True):
            key = (row["device"], row["priority"])
            later[key] -= 1
            run = staged.get(i)
            if run is None:
                by_priority = counts[row["device"]]
                ahead = sum(q for p, q in by_priority.items() if p > row["priority"])
                position = ahead + by_priority.get(row["priority"], 0) - later[key]
            else:
                position = 1
            job = _job(
                SimpleNamespace(id=pk, **row), SimpleNamespace(**run) if run else None, 1 if run else 0
            )
            event = Event(job.job_id, 1, when, JobState.QUEUED, "queued", 0.0, "")
            out[i] = SubmitOutcome(Change(job, event), created=True, position=position)
        for i, first in repeats:
            done = out[first]
            assert done is not None
            out[i] = SubmitOutcome(done.change, created=False)
        return out

    def get(self, job_id: str) -> Job | None:
        with self._read_engine.begin() as conn:
            row = conn.execute(select(JOBS).where(JOBS.c.job_id == job_id)).one_or_none()
            if row is None:
                return None
            run = conn.execute(
                select(RUNS).where(RUNS.c.job_pk == row.id).order_by(RUNS.c.attempt.desc()).limit(1)
            ).one_or_none()
            # Attempts are numbered 1, 2, ... without gaps (a claim given back removes its run).
            return _job(row, run, run.attempt if run is not None else 0)

    def job_id_of_task(self, task_id: str) -> str | None:
        if not task_id:
            return None
        with self._read_engine.begin() as conn:
            found = conn.scalar(select(JOBS.c.job_id).where(JOBS.c.task_id == task_id))
            if found is None:  # an earlier run's
                found = conn.scalar(
                    select(JOBS.c.job_id)
                    .join(RUNS, RUNS.c.job_pk == JOBS.c.id)
                    .where(RUNS.c.task_id == task_id)
                )
            return found

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
        higher = select(func.coalesce(func.sum(QUEUE_COUNTS.c.queued), 0)).where(
            QUEUE_COUNTS.c.device == job.device, QUEUE_COUNTS.c.priority > job.priority
        )
        same = select(func.count()).where(
            JOBS.c.device == job.device,
            JOBS.c.state == QUEUED,
            JOBS.c.priority == job.priority,
            JOBS.c.queue_order < job.queue_order,
        )
        with self._read_engine.begin() as conn:
            return int(conn.scalar(higher)) + conn.scalar(same) + 1

    def queued_count(self, device: str) -> int:
        total = func.coalesce(func.sum(QUEUE_COUNTS.c.queued), 0)
        stmt = select(total).where(QUEUE_COUNTS.c.device == device)
        with self._read_engine.begin() as conn:
            return int(conn.scalar(stmt))

    def running_job(self, device: str) -> Job | None:
        stmt = (
            select(JOBS).where(JOBS.c.device == device, JOBS.c.state == RUNNING).order_by(JOBS.c.id).limit(1)
        )
        with self._read_engine.begin() as conn:
            row = conn.execute(stmt).one_or_none()
            if row is None:
                return None
            run = conn.execute(
                select(RUNS).where(RUNS.c.job_pk == row.id).order_by(RUNS.c.attempt.desc()).limit(1)
            ).one_or_none()
            return _job(row, run, run.attempt if run is not None else 0)

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

    # -- the event log across replicas (replica_events.EventLog) -----------------------------------------
    def max_event_id(self) -> int:
        with self._read_engine.begin() as conn:
            return conn.scalar(select(func.max(EVENTS.c.id))) or 0

    def logged_events(
        self, ids: Sequence[int], after_id: int | None, limit: int
    ) -> list[tuple[int, Event, JobState | None]]:
        """Events by row id (`ids`, and every id above `after_id` when given), in id order, each
        with its id and the state of the job's event before it (None for its first)."""
        prev = EVENTS.alias("prev")
        wanted = [EVENTS.c.id.in_(list(ids))] if ids else []
        if after_id is not None:
            wanted.append(EVENTS.c.id > after_id)
        if not wanted:
            return []
        stmt = (
            select(EVENTS, JOBS.c.job_id, prev.c.state.label("previous"))
            .join(JOBS, EVENTS.c.job_pk == JOBS.c.id)
            .outerjoin(prev, and_(prev.c.job_pk == EVENTS.c.job_pk, prev.c.seq == EVENTS.c.seq - 1))
            .where(or_(*wanted))
            .order_by(EVENTS.c.id)
            .limit(limit)
        )
        with self._read_engine.begin() as conn:
            return [
                (r.id, _event(r, r.job_id), JobState(r.previous) if r.previous else None)  # type: ignore[arg-type]
                for r in conn.execute(stmt)
            ]

    def jobs_by_id(self, job_ids: Sequence[str]) -> dict[str, Job]:
        with self._read() as session:
            rows = session.scalars(select(JobRow).where(JobRow.job_id.in_(list(job_ids)))).all()
            return {job.job_id: job for job in self._jobs(session, rows)}

    def running_jobs(self) -> list[Job]:
        with self._read() as session:
            rows = session.scalars(select(JobRow).where(JobRow.state == RUNNING).order_by(JobRow.id)).all()
            return self._jobs(session, rows)

    # -- JobStore: user commands ---------------------------------------------------------------------
    def cancel_queued(
        self, job_id: str, reason: str, now: datetime, failed: ErrorDetail | None = None
    ) -> Change:
        with self._write() as session:
            row = self._lock_job(session, job_id)
            if row.state != QUEUED:
                raise FailedPrecondition(
                    "JOB_NOT_QUEUED", f"job {job_id} is {row.state}, not QUEUED", job_id=job_id
                )
            if row.staged_task_id:  # handed over but never started: its run goes
                session.execute(
                    delete(RunRow)
                    .where(RunRow.task_id == row.staged_task_id, RunRow.staged.is_(True))
                    .execution_options(synchronize_session=False)
                )
            row.state = (JobState.FAILED if failed else JobState.CANCELLED).value
            row.end_time = now
            row.staged_task_id = None
            self._count(session.connection(), row.device, row.priority, -1)
            _set_error(row, failed or ErrorDetail("CANCELLED", reason or "cancelled while queued"))
            event = self._log(session, row, now, queued_end_message(reason, failed))
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

    def flag_cancel(self, job_id: str, reason: str, now: datetime) -> Change:
        """Cancel on a replica that does not dispatch the job's device: a queued job nobody has
        staged is cancelled at once; a staged or running one is marked cancel_requested, and the
        replica that holds the device's lease cancels it on the executor (cancel_requests)."""
        with self._write() as session:
            row = self._lock_job(session, job_id)
            if row.state == QUEUED and not row.staged_task_id:
                row.state = JobState.CANCELLED.value
                row.end_time = now
                self._count(session.connection(), row.device, row.priority, -1)
                _set_error(row, ErrorDetail("CANCELLED", reason or "cancelled while queued"))
                event = self._log(session, row, now, queued_end_message(reason, None))
                return Change(self._job(session, row), event, JobState.QUEUED)
            if row.state not in (QUEUED, RUNNING):
                raise FailedPrecondition(
                    "JOB_NOT_ACTIVE", f"job {job_id} is {row.state}, not queued or running", job_id=job_id
                )
            row.cancel_requested = True
            message = f"cancel requested: {reason}" if reason else "cancel requested"
            event = self._log(session, row, now, message, 0.0, row.staged_task_id or row.task_id or "")
            return Change(self._job(session, row), event, JobState(row.state))

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
    def claim_next(
        self,
        device: str,
        task_id: str,
        now: datetime,
        max_running: int = 1,
        expect_job_id: str = "",
        config_revisions: dict[str, str] | None = None,
    ) -> Change | None:
        try:
            with self._tx() as conn:
                if self.fence_of is not None and not self._fenced(conn, device):
                    return None  # not this replica's device (any more)
                running = conn.scalar(
                    select(func.count()).where(JOBS.c.device == device, JOBS.c.state == RUNNING)
                )
                if running >= max_running:
                    return None
                row = conn.execute(self._head(device).with_for_update(skip_locked=True)).one_or_none()
                if row is None or (expect_job_id and row.job_id != expect_job_id):
                    return None
                return self._start_run(conn, row, task_id, now, config_revisions)
        except _ClaimLost:
            return None

    @staticmethod
    def _head(device: str) -> Any:
        return (
            select(JOBS)
            .where(JOBS.c.device == device, JOBS.c.state == QUEUED, JOBS.c.staged_task_id.is_(None))
            .order_by(JOBS.c.priority.desc(), JOBS.c.queue_order)
            .limit(1)
        )

    def _start_run(
        self, conn: Connection, row: Any, task_id: str, now: datetime, revisions: dict[str, str] | None = None
    ) -> Change:
        """A QUEUED job -> RUNNING with a new run (its claim); raises _ClaimLost when the
        device already runs a lab job (the partial unique index)."""
        when = _utc(now)
        seq = row.last_seq + 1
        task_id = task_id or row.task_id or str(uuid.uuid4())
        try:
            conn.execute(
                update(JOBS)
                .where(JOBS.c.id == row.id)
                .values(
                    state=RUNNING,
                    cancel_requested=False,
                    error_reason=None,
                    error_message=None,
                    staged_task_id=None,
                    task_id=task_id,
                    last_seq=seq,
                )
            )
        except IntegrityError as exc:
            raise _ClaimLost from exc
        attempts = conn.scalar(select(func.max(RUNS.c.attempt)).where(RUNS.c.job_pk == row.id)) or 0
        run = _new_run_values(row, task_id, attempts + 1)
        if revisions:
            run["config_revisions"] = dict(revisions)
        conn.execute(insert(RUNS), run)
        message = "dispatched to the device"
        conn.execute(
            insert(EVENTS),
            {
                "job_pk": row.id,
                "seq": seq,
                "time": when,
                "state": RUNNING,
                "message": message,
                "progress": 0.0,
                "task_id": task_id,
            },
        )
        self._count(conn, row.device, row.priority, -1)
        values = {
            **row._mapping,
            "state": RUNNING,
            "cancel_requested": False,
            "error_reason": None,
            "error_message": None,
            "staged_task_id": None,
            "task_id": task_id,
            "last_seq": seq,
        }
        job = _job(SimpleNamespace(**values), SimpleNamespace(**run), attempts + 1)
        event = Event(job.job_id, seq, when, JobState.RUNNING, message, 0.0, task_id)
        return Change(job, event, JobState.QUEUED)

    # -- staging (lab devices) ---------------------------------------------------------------------------
    def _stage_run(
        self, conn: Connection, job: Any, claim: Claim, attempt: int, task_id: str
    ) -> dict[str, Any]:
        """Insert a job's staged run (the job row is updated by the caller)."""
        run = _new_run_values(job, task_id, attempt)
        run.update(
            state=QUEUED,
            staged=True,
            config_revisions=dict(claim.config_revisions),
            reason_policy=claim.reason.policy,
            reason_summary=claim.reason.summary,
            reason_details=dict(claim.reason.details),
        )
        conn.execute(self._insert_run, run)
        return run

    def stage(self, requests: Sequence[StageRequest], now: datetime) -> list[Job]:
        """Stage runs for queued jobs, all in one durable transaction (see QueueStore.stage)."""
        if not requests:
            return []
        by_id = {r.job_id: r for r in requests}
        out = []
        with self._tx() as conn:
            rows = conn.execute(self._jobs_to_stage, {"job_ids": list(by_id)}).all()
            attempts = dict(conn.execute(self._last_attempts, {"pks": [row.id for row in rows]}).all())
            for device in {row.device for row in rows}:
                self._check_fence(conn, device)
            found = {row.job_id: row for row in rows}
            for request in requests:  # in the order given (run order)
                row = found.get(request.job_id)
                if row is None or row.state != QUEUED or row.staged_task_id:
                    continue
                attempt = attempts.get(row.id, 0) + 1
                task_id = request.claim.task_id or row.task_id or str(uuid.uuid4())
                run = self._stage_run(conn, row, request.claim, attempt, task_id)
                conn.execute(self._mark_staged, {"pk": row.id, "task": task_id})
                values = {**row._mapping, "staged_task_id": task_id, "task_id": task_id}
                out.append(_job(SimpleNamespace(**values), SimpleNamespace(**run), attempt))
        return out

    def unstage(self, task_ids: Sequence[str], now: datetime) -> list[Job]:
        """Drop staged runs; their jobs are ordinary queued jobs again, in their place."""
        if not task_ids:
            return []
        with self._tx() as conn:
            rows = conn.execute(
                select(JOBS).where(JOBS.c.staged_task_id.in_(list(task_ids))).with_for_update()
            ).all()
            conn.execute(delete(RUNS).where(RUNS.c.task_id.in_(list(task_ids)), RUNS.c.staged.is_(True)))
            conn.execute(
                update(JOBS).where(JOBS.c.staged_task_id.in_(list(task_ids))).values(staged_task_id=None)
            )
            out = []
            for row in rows:
                count = conn.scalar(select(func.count()).where(RUNS.c.job_pk == row.id)) or 0
                last = conn.execute(
                    select(RUNS).where(RUNS.c.job_pk == row.id).order_by(RUNS.c.attempt.desc()).limit(1)
                ).one_or_none()
                out.append(_job(SimpleNamespace(**{**row._mapping, "staged_task_id": None}), last, count))
            return out

    def queued_jobs(self, device: str = "") -> list[QueuedJob]:
        """Every queued job (or one device's), in run order per device."""
        stmt = (
            select(
                JOBS.c.job_id,
                JOBS.c.device,
                JOBS.c.priority,
                JOBS.c.queue_order,
                JOBS.c.owner,
                JOBS.c.kind,
                JOBS.c.staged_task_id,
                JOBS.c.payload,
                JOBS.c.labels,
                JOBS.c.error_reason,
            )
            .where(JOBS.c.state == QUEUED, *([JOBS.c.device == device] if device else []))
            .order_by(JOBS.c.device, JOBS.c.priority.desc(), JOBS.c.queue_order)
        )
        out = []
        with self._read_engine.begin() as conn:
            for r in conn.execute(stmt):
                payload = Payload(JobKind(r.kind), r.payload)
                labels = dict(r.labels or {})
                reservation, calibration = reservation_of(labels)
                out.append(
                    QueuedJob(
                        r.job_id,
                        r.device,
                        r.priority,
                        r.queue_order,
                        r.owner,
                        JobKind(r.kind),
                        r.staged_task_id or "",
                        pins_main(payload),
                        reservation=reservation,
                        calibration=calibration,
                        session=labels.get("session", ""),
                        calibrations=calibration_needs(payload),
                        preempted=r.error_reason == PREEMPTED,
                    )
                )
        return out

    def queue_signature(self, device: str) -> tuple[int, ...]:
        """(queued jobs, newest queue order among them, staged ones, staged or running jobs with
        a cancel requested) of the device: a replica that does not see every change compares it
        with its queue index and reads the queue again when they differ."""
        queued = JOBS.c.state == QUEUED
        stmt = select(
            func.coalesce(func.sum(case((queued, 1), else_=0)), 0),
            func.coalesce(func.max(case((queued, JOBS.c.queue_order), else_=None)), 0),
            func.count(JOBS.c.staged_task_id),
            func.coalesce(func.sum(case((JOBS.c.cancel_requested, 1), else_=0)), 0),
        ).where(JOBS.c.device == device, JOBS.c.state.in_([QUEUED, RUNNING]))
        with self._read_engine.begin() as conn:
            return tuple(int(v) for v in conn.execute(stmt).one())

    def cancel_requests(self, device: str) -> list[str]:
        """Jobs of the device whose cancel was asked on a replica that does not dispatch it
        (flag_cancel): staged or running, cancel_requested."""
        stmt = (
            select(JOBS.c.job_id)
            .where(
                JOBS.c.device == device,
                JOBS.c.cancel_requested.is_(True),
                JOBS.c.state.in_([QUEUED, RUNNING]),
            )
            .order_by(JOBS.c.queue_order)
        )
        with self._read_engine.begin() as conn:
            return list(conn.execute(stmt).scalars())

    def staged_jobs(self, device: str) -> list[Job]:
        """The device's staged jobs in run order (re-attach after a restart)."""
        with self._read() as session:
            rows = session.scalars(
                select(JobRow)
                .where(JobRow.device == device, JobRow.staged_task_id.is_not(None))
                .order_by(JobRow.priority.desc(), JobRow.queue_order)
            ).all()
            return self._jobs(session, rows)

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
            row.task_id = str(uuid.uuid4())  # the next run's
            _set_error(row, None)
            if payload is not None:
                row.kind = payload.kind.value
                row.payload = dict(payload.body)
            row.rerun_request_id = request_id or None
            self._count(session.connection(), row.device, row.priority, 1)
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
            self._count(session.connection(), row.device, row.priority, 1)
            event = self._log(session, row, now, message)
            return Change(self._job(session, row), event, JobState.RUNNING)

    def update_run(self, task_id: str, update: RunUpdate, now: datetime) -> Change | None:
        changes = self.apply_updates([(task_id, update)], now)
        return changes[0] if changes else None

    def apply_updates(self, updates: Sequence[tuple[str, RunUpdate]], now: datetime) -> list[Change]:
        """Updates of runs in one transaction (what arrived from executors together): one fsync
        for all when any needs it (group commit of results); the changes that logged an event.

        A handful of statements per batch, not per update: the runs and their jobs are read
        once (PostgreSQL: the jobs locked first, in id order), every update is applied in
        memory in turn, and the rows that changed are written back with one executemany per
        set of changed columns, the events with one insert."""
        if not updates:
            return []
        with self._tx(any(_needs_fsync(u) for _, u in updates)) as conn:
            batch = _RunBatch(self, conn, updates, _utc(now))
            changes = [c for c in (batch.apply(task_id, u) for task_id, u in updates) if c is not None]
            batch.flush()
        return changes

    def _end_superseded(self, conn: Connection, other: Mapping[str, Any], when: datetime | None) -> int:
        """The executor started a run on a device whose previous lab run (job row `other`) is
        still RUNNING here: it ended unseen (its executor lost it), so it fails before the
        one-running index says no. Returns the event's seq."""
        message = SUPERSEDED_MESSAGE
        seq = other["last_seq"] + 1
        conn.execute(
            RUNS.update()
            .where(RUNS.c.job_pk == other["id"], RUNS.c.state == RUNNING)
            .values(state=FAILED, end_time=when, error_reason="EXECUTOR_LOST", error_message=message)
        )
        conn.execute(
            JOBS.update()
            .where(JOBS.c.id == other["id"])
            .values(
                state=FAILED, end_time=when, error_reason="EXECUTOR_LOST", error_message=message, last_seq=seq
            )
        )
        conn.execute(
            insert(EVENTS),
            {
                "job_pk": other["id"],
                "seq": seq,
                "time": when,
                "state": FAILED,
                "message": f"failed: {message}",
                "progress": 0.0,
                "task_id": "",
            },
        )
        return seq

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
        if self._relaxed_engine is not self._engine:
            self._relaxed_engine.dispose()


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


def _new_run_values(job: Any, task_id: str, attempt: int) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "job_pk": job.id,
        "payload": dict(job.payload),  # the run's memento: the settings it ran with
        "attempt": attempt,
        "state": RUNNING,
        "start_time": None,
        "end_time": None,
        "progress": 0.0,
        "error_reason": None,
        "error_message": None,
        "data_file_path": "",
        "summary": {},
        "config_revisions": {},
        "provider_task_ids": [],
        "executor_seq": 0,
        "provider_submission_id": None,
        "result_json": None,
        "result_time": None,
        "staged": False,
        "reason_policy": "",
        "reason_summary": "",
        "reason_details": {},
        "data_sha256": "",
        "data_size_bytes": 0,
        "code": None,
    }


class _RunBatch:
    """`apply_updates`' working set: the rows of the runs updated and of their jobs, as dicts,
    changed in memory update by update (as the one-at-a-time SQL did), and the writes they owe."""

    def __init__(
        self, store: SqlJobStore, conn: Connection, updates: Sequence[tuple[str, RunUpdate]], when: datetime
    ):
        self.store, self.conn, self.when = store, conn, when
        task_ids = {"task_ids": list(dict.fromkeys(task_id for task_id, _ in updates))}
        # PostgreSQL: the jobs locked, in id order.
        self.jobs: dict[int, dict[str, Any]] = {
            r.id: dict(r._mapping) for r in conn.execute(store._jobs_of_runs, task_ids)
        }
        # Read after the jobs' locks (PostgreSQL): what another writer committed before is seen.
        self.runs: dict[str, dict[str, Any]] = {
            r.task_id: dict(r._mapping) for r in conn.execute(store._runs_by_task, task_ids)
        }
        self.run_writes: dict[str, dict[str, Any]] = {}
        self.job_writes: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.counts: dict[tuple[str, int], int] = {}
        self._running: dict[int, dict[str, Any]] | None = None  # RUNNING lab jobs read, by id

    def apply(self, task_id: str, update: RunUpdate) -> Change | None:
        run = self.runs.get(task_id)
        if run is None:
            return None
        row = self.jobs[run["job_pk"]]
        when = self.when
        previous = JobState(row["state"])
        r: dict[str, Any] = {"executor_seq": max(run["executor_seq"], update.executor_seq)}
        j: dict[str, Any] = {"last_seq": row["last_seq"] + 1}
        if run["state"] == QUEUED and run["staged"]:
            if not update.started and update.final_state is None:  # accepted: only the cursor moves
                self._write_run(task_id, r)
                return None
            if row["state"] != QUEUED or row["staged_task_id"] != task_id:
                return None
            # The executor started it (or ended it unstarted): it is the job's run now.
            self._count(row["device"], row["priority"], -1)
            r.update(state=RUNNING, staged=False)
            j.update(
                staged_task_id=None,
                cancel_requested=row["cancel_requested"],
                error_reason=None,
                error_message=None,
            )
            if update.started:
                j["state"] = RUNNING
                self._end_superseded(row)
            run["state"] = RUNNING
        elif run["state"] != RUNNING:
            return None
        if update.config_revisions:
            r["config_revisions"] = dict(update.config_revisions)
        if update.provider_task_ids:
            r["provider_task_ids"] = list(update.provider_task_ids)
        if update.provider_submission_id:
            r["provider_submission_id"] = update.provider_submission_id
        if update.started and run["start_time"] is None:
            r["start_time"] = j["start_time"] = when
        if update.progress is not None:
            r["progress"] = update.progress
        if update.final_state is not None:
            error = update.error
            r.update(
                state=update.final_state.value,
                end_time=when,
                error_reason=error.reason if error else None,
                error_message=error.message if error else None,
                data_file_path=update.data.name if update.data else "",
                data_sha256=update.data.sha256 if update.data else "",
                data_size_bytes=update.data.size_bytes if update.data else 0,
                summary=dict(update.summary),
                code=update.code.to_dict() if update.code is not None else None,
            )
            if update.result_json:
                r["result_json"], r["result_time"] = update.result_json, when
            if update.final_state is JobState.SUCCEEDED:
                r["progress"] = 1.0
            j.update(
                state=update.final_state.value,
                end_time=when,
                error_reason=error.reason if error else None,
                error_message=error.message if error else None,
                cancel_requested=False,
            )
            if update.requeue and not row["cancel_requested"]:  # yielded: back to its place in the queue
                # with the id its next run will take (Job.task_id, as after a rerun)
                j.update(state=QUEUED, start_time=None, end_time=None, task_id=str(uuid.uuid4()))
                self._count(row["device"], row["priority"], 1)
        self._write_run(task_id, r)
        self._write_job(row["id"], j)
        event = Event(
            row["job_id"],
            j["last_seq"],
            when,
            JobState(row["state"]),
            update.message,
            run["progress"],
            task_id,
            update.log,
        )
        self.events.append(
            {
                "job_pk": row["id"],
                "seq": event.seq,
                "time": when,
                "state": row["state"],
                "message": event.message,
                "progress": event.progress,
                "task_id": task_id,
                "log": update.log.to_json() if update.log is not None else None,
            }
        )
        job = _job(SimpleNamespace(**row), SimpleNamespace(**run), run["attempt"])
        return Change(job, event, previous)

    def _write_run(self, task_id: str, values: dict[str, Any]) -> None:
        self.runs[task_id].update(values)
        self.run_writes.setdefault(task_id, {}).update(values)

    def _write_job(self, pk: int, values: dict[str, Any]) -> None:
        self.jobs[pk].update(values)
        self.job_writes.setdefault(pk, {}).update(values)

    def _count(self, device: str, priority: int, delta: int) -> None:
        self.counts[(device, priority)] = self.counts.get((device, priority), 0) + delta

    def _end_superseded(self, row: dict[str, Any]) -> None:
        """Another lab job of the device still RUNNING here (as this batch left it) ends
        EXECUTOR_LOST: written at once, after what the batch owes so far (as the SQL did)."""
        if self._running is None:  # read once per batch, before this batch wrote anything
            self._running = {r.id: dict(r._mapping) for r in self.conn.execute(self.store._running_lab_jobs)}
        candidates = {**self._running, **self.jobs}  # this batch's rows as it changed them
        other = next(
            (
                o
                for o in candidates.values()
                if o["id"] != row["id"]
                and o["device"] == row["device"]
                and o["state"] == RUNNING
                and o["kind"] == JobKind.LAB_EXPERIMENT.value
            ),
            None,
        )
        if other is None:
            return
        self.flush()
        seq = self.store._end_superseded(self.conn, other, self.when)
        message = "the executor started the next run without reporting this one's end"
        failed = {
            "state": FAILED,
            "end_time": self.when,
            "error_reason": "EXECUTOR_LOST",
            "error_message": message,
        }
        for held in (self.jobs.get(other["id"]), self._running.get(other["id"])):
            if held is not None:
                held.update(failed, last_seq=seq)
        for run in self.runs.values():
            if run["job_pk"] == other["id"] and run["state"] == RUNNING:
                run.update(failed)

    def flush(self) -> None:
        """Write what the batch owes: one executemany per set of changed columns."""
        conn, store = self.conn, self.store
        for statement, writes in (
            (store._update_run, self.run_writes),
            (store._update_job, self.job_writes),
        ):
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for ident, values in writes.items():
                groups.setdefault(tuple(sorted(values)), []).append({**values, "_ident": ident})
            for rows in groups.values():
                conn.execute(statement, rows)
        counted = [{"device": d, "priority": p, "queued": n} for (d, p), n in self.counts.items() if n]
        if counted:
            conn.execute(store._count_upsert, counted)
        if self.events:
            conn.execute(store._insert_events, self.events)
        self.run_writes, self.job_writes, self.events, self.counts = {}, {}, [], {}


def _needs_fsync(update: RunUpdate) -> bool:
    """Replayable progress (the executor sends it again on re-attach from the last applied
    seq) need not wait for the disk; anything else is durable when the call returns."""
    return bool(
        update.final_state is not None
        or update.config_revisions
        or update.provider_task_ids
        or update.provider_submission_id
    )


def _relaxed(engine: Engine) -> Engine:
    """An engine whose commits do not wait for the disk: SQLite's synchronous=NORMAL (in WAL
    mode a commit is then made durable by the next synchronous=FULL commit on the file, or a
    checkpoint; a process crash loses nothing, an OS crash or power cut may lose the last
    few); PostgreSQL gets `SET LOCAL synchronous_commit TO OFF` per transaction instead."""
    url = engine.url
    if engine.dialect.name != "sqlite" or not url.database or url.database == ":memory:":
        return engine
    if url.query.get("mode") == "memory":
        return engine
    relaxed = make_engine(url.render_as_string(hide_password=False))

    @event.listens_for(relaxed, "connect")
    def _normal(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    return relaxed


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
        staged=bool(getattr(row, "staged", False)),
        reason=(
            Reason(row.reason_policy, row.reason_summary, dict(row.reason_details or {}))
            if getattr(row, "reason_policy", "")
            else None
        ),
        data=(
            DataRef(row.data_file_path, row.data_sha256 or "", row.data_size_bytes or 0)
            if row.data_file_path
            else None
        ),
        code=CodeProvenance.from_dict(row.code) if getattr(row, "code", None) else None,
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
        staged_task_id=getattr(row, "staged_task_id", None) or "",
        task_id=getattr(row, "task_id", None) or "",
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
        log=LogLines.from_json(row.log),
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
