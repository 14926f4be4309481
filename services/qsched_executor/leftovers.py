"""Data files a killed executor left behind (issue 18, defect 7).

A data file is written under a temporary name (`<final name>.partial-write`, see
qsched_hardware.datafile) and renamed when complete. An executor killed while a writer had the
file open leaves that temporary file behind, complete or not. At start-up the executor removes
the temporary files of the runs its crash journal knows, and only those: a file whose name
does not carry one of those task ids is never touched (a data root may be shared, or hold
files an operator put there).

A run's file name carries the local date of its write (`run_file_name`), which lies between
the run's start and its end (or the restart, for a run the executor lost), so only those
dates' directories are looked at."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from pathlib import Path

from qsched_executor.runs import Run
from qsched_hardware.datafile import TMP_SUFFIX, run_file_name

log = logging.getLogger(__name__)
MAX_DAYS = 31  # a run's write is looked for on at most this many dates


def _dates(first: float, last: float) -> list[date]:
    start = datetime.fromtimestamp(first).date()
    end = max(start, datetime.fromtimestamp(last).date())
    days = min((end - start).days, MAX_DAYS - 1)
    return [end - timedelta(days=n) for n in range(days + 1)]


def _names(data_root: Path, run: Run, until: float) -> list[Path]:
    """Where the run's final data file could be (one per date it could have been written on)."""
    first = run.updates[0].time if run.updates else until
    out = []
    for day in _dates(first, until):
        when = datetime(day.year, day.month, day.day)
        out.append(data_root / run_file_name(run.job_id or run.task_id, run.task_id, when))
    return out


def remove_partial_files(data_root: Path, run: Run, until: float) -> list[str]:
    """Remove the run's temporary data files; their names (relative to the data root)."""
    removed = []
    for final in _names(data_root, run, until):
        partial = final.with_name(final.name + TMP_SUFFIX)
        try:
            partial.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("run %s: could not remove its partial data file %s: %s", run.task_id, partial, exc)
            continue
        name = str(partial.relative_to(data_root))
        log.warning("run %s: removed the partial data file %s a stopped executor left", run.task_id, name)
        removed.append(name)
    return removed


def lost_run_data(data_root: Path, run: Run, until: float) -> str:
    """For a run lost with the executor: removes its temporary files and says whether its data
    exists (the end of its EXECUTOR_LOST message). Its data file exists only when the writer
    had renamed it (complete and fsynced) before the process died."""
    removed = remove_partial_files(data_root, run, until)
    written = [str(p.relative_to(data_root)) for p in _names(data_root, run, until) if p.is_file()]
    if written:
        return f"; its data file {written[0]} was written before the executor stopped"
    if removed:
        return f"; no data file exists (the partial file {removed[0]} was removed)"
    return "; no data file exists"
