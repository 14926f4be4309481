"""Admission: everything a submission passes before it is queued, and the group commit that
queues it.

- checks: the submission's fields and limits (validation.py) and its device and kind (routing);
- the submit-time validation of a lab experiment by the device's executor, cached for a moment
  ("nothing wrong" stands for identical submissions in a burst; the executor checks again). It
  also resolves the job's experiment-repository revision to the commit its runs will use, which
  goes into the job's payload (experiment_pins.py); those answers are never cached (a push may
  move the revision at any moment);
- group commit: the submissions that arrive while one transaction is written go into the next,
  one fsync for all, each caller answered after the commit that holds its job;
- a job for an idle lab device is claimed (staged, with its pins and reason) in the same
  transaction that inserts it, and handed to the executor as soon as it commits.

Per-user quotas (queued jobs, payload size, priority) are checked by access.JobDesk, which
knows the caller."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from qsched_core.execution import Validated
from qsched_core.tracing import current_traceparent
from qsched_scheduler import estimates
from qsched_scheduler.dispatch.lab import LabDispatcher, Stores
from qsched_scheduler.domain import Change, Job, JobKind, JobState, NewJob, for_executor, lab_experiment
from qsched_scheduler.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from qsched_scheduler.estimates import Estimates
from qsched_scheduler.executor_port import ExecutorRejected, ExecutorUnavailable, RunNotFound
from qsched_scheduler.experiment_pins import pinned
from qsched_scheduler.group_commit import GroupCommit
from qsched_scheduler.provider_checks import ProviderChecks
from qsched_scheduler.routing import Routes
from qsched_scheduler.store.base import Claim, SubmitOutcome
from qsched_scheduler.validation import Submission, validate_submission

log = logging.getLogger(__name__)

VALIDATION_CACHE_S = 1.0  # how long "nothing wrong" stands for an identical submission
VALIDATION_CACHE_SIZE = 4096


@dataclass(frozen=True)
class SubmitResult:
    job: Job
    created: bool


class Admission:
    def __init__(
        self,
        routes: Routes,
        stores: Stores,
        estimates_: Estimates,
        publish: Callable[[Change], None],
        clock: Callable[[], datetime],
    ):
        self._routes = routes
        self._stores = stores
        self._estimates = estimates_
        self._publish = publish
        self._clock = clock
        self._submits: GroupCommit[NewJob, SubmitOutcome] = GroupCommit(self._write)
        self._validated: dict[tuple[str, ...], float] = {}
        self._validating: dict[tuple[str, ...], asyncio.Future[Validated | None]] = {}
        # Benchmark configs are checked by the gateway at submit (best effort, as lab jobs are
        # checked by their executor).
        self._provider_checks = ProviderChecks(routes.gateway) if routes.gateway is not None else None

    async def check(self, submission: Submission) -> NewJob:
        """Everything submit checks before it queues a job (SubmitJobs checks every entry
        before it queues any)."""
        new = validate_submission(submission, await self._routes.routes(submission.device))
        if new.payload.kind is JobKind.LAB_EXPERIMENT:
            new = await self.validate_on_device(new)
        elif self._provider_checks is not None:
            await self._provider_checks.check(new)
        return new

    async def submit(self, submission: Submission) -> SubmitResult:
        new = replace(await self.check(submission), trace_parent=current_traceparent())
        outcome = await self._submits.submit(new)
        return SubmitResult(outcome.change.job, outcome.created)

    # -- the group commit ------------------------------------------------------------------------------
    def _claims(self, news: list[NewJob]) -> tuple[dict[int, Claim], dict[int, LabDispatcher]]:
        """Claims for the first job (in run order) of each idle lab device in the batch."""
        best: dict[str, int] = {}
        for i, new in enumerate(news):
            if self._routes.is_lab(new.device):
                j = best.get(new.device)
                if j is None or new.priority > news[j].priority:
                    best[new.device] = i
        claims: dict[int, Claim] = {}
        owners: dict[int, LabDispatcher] = {}
        for device, i in best.items():
            lab = self._routes.labs[device]
            claim = lab.claim(news[i])
            if claim is not None:
                claims[i], owners[i] = claim, lab
        return claims, owners

    async def _write(self, news: list[NewJob]) -> list[SubmitOutcome]:
        claims, owners = self._claims(news)
        try:
            outcomes = await self._stores.thread.call(self._write_batch, news, claims)
        except BaseException:
            for i, claim in claims.items():
                owners[i].unclaim(claim)
            raise
        # Committed: the queue index and the watchers first, then the hand-over.
        for i, outcome in enumerate(outcomes):
            if isinstance(outcome, Exception):  # refused in the transaction (a quota)
                if i in claims:
                    owners[i].unclaim(claims[i])
                continue
            if not outcome.created:
                if i in claims:
                    owners[i].unclaim(claims[i])
                continue
            job = outcome.change.job
            self._publish(outcome.change)
            if i in claims and job.staged_task_id == claims[i].task_id:
                self._spawn(owners[i].claimed(job))
            elif i in claims:  # the store dropped the claim: the lease it was made under is gone
                owners[i].unclaim(claims[i])
            elif self._routes.is_lab(job.device):
                self._routes.labs[job.device].queued(job)
            else:
                self._routes.provider(job.device).wake()
        return outcomes

    def _write_batch(self, news: list[NewJob], claims: dict[int, Claim]) -> list[SubmitOutcome]:
        """Store thread: one transaction for the batch, then the estimates of the new jobs
        (their positions come from the store's queue counters, not from counting the queue)."""
        outcomes = self._stores.queue.submit_many(news, self._clock(), claims)
        now = self._clock()
        running: dict[str, Job | None] = {}
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                continue
            job = outcome.change.job
            if not outcome.created or job.state is not JobState.QUEUED:
                continue
            if job.staged_task_id:  # claimed at submit: it starts now, nothing runs before it
                job.queue_position = outcome.position
                job.estimated_start_time = now
                continue
            if job.device not in running:
                if not self._estimates.known(job.device):
                    self._estimates.load(job.device)
                running[job.device] = self._estimates.running(job.device)
            job.queue_position = outcome.position
            job.estimated_start_time = estimates.estimated_start(
                now, outcome.position, running[job.device], self._estimates.typical(job.device)
            )
        return outcomes

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coro)
        task.add_done_callback(
            lambda t: (
                t.cancelled() or (t.exception() and log.error("hand-over failed", exc_info=t.exception()))
            )
        )

    # -- submit-time validation ------------------------------------------------------------------------
    async def validate_on_device(self, new: NewJob) -> NewJob:
        """Ask the device's executor to check the experiment now, so a bad parameter is refused
        at submit rather than after hours in the queue, and to resolve its experiment-repository
        revision: the job comes back with the commit pinned in its payload. Best effort: if the
        executor cannot answer, the job is queued and the executor checks (and pins) it when it
        is handed over."""
        experiment = lab_experiment(new.payload)
        assert experiment is not None
        key = (
            new.device,
            experiment.experiment_module,
            experiment.experiment_class,
            experiment.expt_config_json or "{}",
            experiment.experiment_revision,
            experiment.experiment_commit,
        )
        loop = asyncio.get_running_loop()
        if self._validated.get(key, -math.inf) > loop.time():
            return pinned(new, None)
        running = self._validating.get(key)
        if running is not None:  # the same check is under way: share its answer (same moment)
            return pinned(new, await asyncio.shield(running))
        future: asyncio.Future[Validated | None] = loop.create_future()
        self._validating[key] = future
        try:
            validated = await self._ask_device(new)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: sharers re-raise it, nobody else has to
            raise
        else:
            future.set_result(validated)
            # Only an answer without a commit stands for later submissions: a revision (even
            # HEAD) may name another commit a moment later.
            if validated is not None and validated.resolved is None:
                if len(self._validated) > VALIDATION_CACHE_SIZE:
                    self._validated.clear()
                self._validated[key] = loop.time() + VALIDATION_CACHE_S
        finally:
            del self._validating[key]
        return pinned(new, validated)

    async def _ask_device(self, new: NewJob) -> Validated | None:
        executor = self._routes.labs[new.device].executor
        experiment = for_executor(new.payload)
        try:
            validated = await executor.validate(experiment)
        except ExecutorRejected as exc:
            if exc.code == "PERMISSION_DENIED":
                raise PermissionDenied(exc.reason, exc.message, device=new.device) from exc
            if exc.code == "INVALID_ARGUMENT":
                raise InvalidArgument(exc.reason, exc.message, device=new.device) from exc
            if exc.code == "FAILED_PRECONDITION" and exc.reason.startswith("EXPERIMENT_"):
                # e.g. EXPERIMENT_TREE_DIRTY: the device refuses the repository's state.
                raise FailedPrecondition(exc.reason, exc.message, device=new.device) from exc
            log.info("submit-time validation skipped on %s: %s", new.device, exc)
            return None
        except (ExecutorUnavailable, RunNotFound) as exc:
            log.info("submit-time validation skipped on %s: %s", new.device, exc)
            return None
        violations = validated.violations
        if violations:
            text = "; ".join(f"{v.field}: {v.description}" for v in violations)
            raise InvalidArgument(
                "INVALID_EXPERIMENT_CONFIG",
                f"the experiment cannot run on {new.device}: {text}",
                field=violations[0].field,
                device=new.device,
            )
        return validated
