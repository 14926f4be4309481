"""Queue positions and estimated starts, and each device's typical run time (the dispatcher's
staging horizon uses it too).

The estimated start of a queued job is now, plus what is left of the running job, plus a
typical run per job ahead. What is left of the running job comes from its own progress when
it reports any (elapsed / progress * (1 - progress)), else from the typical run time."""

from __future__ import annotations

import statistics
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from qsched_scheduler.domain import Change, Job, JobState

DEFAULT_RUN_SECONDS = 60.0
RECENT_RUNS = 20
# Below this fraction done, a run's own progress says too little about what is left.
MIN_PROGRESS = 0.05
# How many ended jobs are remembered so that a running job read from the store just before its
# end was observed is not taken for running again (the read and the change cross threads).
ENDED_REMEMBERED = 4096


def typical_run_seconds(recent: Sequence[float], default: float = DEFAULT_RUN_SECONDS) -> float:
    """Median of recent run durations: robust to the odd hour-long scan."""
    return statistics.median(recent) if recent else default


def remaining_seconds(now: datetime, running: Job, typical: float) -> float:
    """What is left of a running job: from its own progress when it has reported enough, else
    the typical run time less what has elapsed."""
    started = running.start_time or now
    elapsed = max(0.0, (now - started).total_seconds())
    run = running.current_run
    progress = run.progress if run is not None else 0.0
    if MIN_PROGRESS <= progress < 1.0 and elapsed > 0:
        return elapsed / progress * (1.0 - progress)
    return max(0.0, typical - elapsed)


def estimated_start(now: datetime, position: int, running: Job | None, typical: float) -> datetime:
    """Now, plus what is left of the running job, plus a typical run per job ahead."""
    wait = remaining_seconds(now, running, typical) if running is not None else 0.0
    wait += max(0, position - 1) * typical
    return now + timedelta(seconds=wait)


class Estimates:
    """Typical run time and running job per device, in memory: loaded from the store on first
    use and kept from every committed change after (the engine feeds it each one), so an
    estimate costs no query."""

    def __init__(
        self,
        recent_runs: Callable[[str, int], list[float]],
        default_s: float = DEFAULT_RUN_SECONDS,
        running_job: Callable[[str], Job | None] | None = None,
    ):
        self._recent_runs = recent_runs  # (device, limit) -> durations, newest first (store thread)
        self._running_job = running_job  # device -> its running job in the store (store thread)
        self._default = default_s
        self._recent: dict[str, list[float]] = {}
        self._stored_running: dict[str, Job] = {}  # read at load, until its job is seen to end
        self._running: dict[str, dict[str, Job]] = {}  # device -> RUNNING jobs seen in changes
        self._ended: OrderedDict[str, None] = OrderedDict()

    @property
    def default_seconds(self) -> float:
        return self._default

    def known(self, device: str) -> bool:
        return device in self._recent

    def load(self, device: str) -> None:
        """Read the device's recent runs and its running job (store thread)."""
        if self._running_job is not None:
            running = self._running_job(device)
            if running is not None:
                self._stored_running[device] = running
        self._recent[device] = list(self._recent_runs(device, RECENT_RUNS))

    def running(self, device: str) -> Job | None:
        """The device's running job (the earliest, if a provider device runs several); known
        once the device is loaded."""
        jobs = dict(self._running.get(device, {}))
        stored = self._stored_running.get(device)
        if stored is not None and stored.job_id in self._ended:
            self._stored_running.pop(device, None)
        elif stored is not None:
            jobs.setdefault(stored.job_id, stored)
        return min(jobs.values(), key=lambda j: j.job_id) if jobs else None

    def typical(self, device: str) -> float:
        """The device's typical run time (the default until anything ran)."""
        return typical_run_seconds(self._recent.get(device, ()), self._default)

    def observe(self, change: Change) -> None:
        job = change.job
        if job.state is JobState.RUNNING:
            self._running.setdefault(job.device, {})[job.job_id] = job
        elif change.previous_state is JobState.RUNNING or job.job_id in self._running.get(job.device, {}):
            self._running.get(job.device, {}).pop(job.job_id, None)
            self._ended[job.job_id] = None
            if len(self._ended) > ENDED_REMEMBERED:
                self._ended.popitem(last=False)
        run = job.current_run
        if change.event.state is not JobState.SUCCEEDED or run is None:
            return
        if run.start_time is None or run.end_time is None:
            return
        recent = self._recent.get(change.job.device)
        if recent is None:
            return  # not loaded yet: the next load reads this run from the store
        recent.insert(0, (run.end_time - run.start_time).total_seconds())
        del recent[RECENT_RUNS:]
