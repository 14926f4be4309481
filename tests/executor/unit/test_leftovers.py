"""The data files a killed executor left (issue 18, defect 7): which are removed at start-up,
which are left alone, and what a lost run says about its data."""

from __future__ import annotations

import time
from datetime import datetime

from qsched_core.execution import Accepted, Started
from qsched_executor.leftovers import lost_run_data, remove_partial_files
from qsched_executor.runs import Run
from qsched_hardware.datafile import TMP_SUFFIX, run_file_name


def started_run(task_id: str, job_id: str, at: float) -> Run:
    run = Run(task_id, job_id)
    run.append(Accepted(), at)
    run.append(Started(), at)
    return run


def place(root, job_id: str, task_id: str, when: datetime, suffix: str = "", content: bytes = b"x"):
    path = root / (run_file_name(job_id, task_id, when) + suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_only_the_known_runs_partial_files_are_removed(tmp_path):
    now = time.time()
    run = started_run("t-1", "JOB-20260113-00001", now - 5)
    mine = place(tmp_path, "JOB-20260113-00001", "t-1", datetime.now(), TMP_SUFFIX)
    other_task = place(tmp_path, "JOB-20260113-00001", "t-10", datetime.now(), TMP_SUFFIX)
    other_job = place(tmp_path, "JOB-20260113-00002", "t-1", datetime.now(), TMP_SUFFIX)
    complete_other = place(tmp_path, "JOB-20260113-00003", "t-3", datetime.now())
    assert remove_partial_files(tmp_path, run, now) == [str(mine.relative_to(tmp_path))]
    assert not mine.exists()
    assert other_task.exists() and other_job.exists() and complete_other.exists()


def test_a_run_written_across_midnight_is_found_on_either_date(tmp_path):
    now = time.time()
    run = started_run("t-1", "JOB-20260113-00001", now - 3 * 86400)
    older = place(tmp_path, "JOB-20260113-00001", "t-1", datetime.fromtimestamp(now - 2 * 86400), TMP_SUFFIX)
    assert remove_partial_files(tmp_path, run, now) == [str(older.relative_to(tmp_path))]


def test_a_lost_run_says_whether_its_data_exists(tmp_path):
    now = time.time()
    run = started_run("t-1", "JOB-20260113-00001", now - 5)
    assert lost_run_data(tmp_path, run, now) == "; no data file exists"
    partial = place(tmp_path, "JOB-20260113-00001", "t-1", datetime.now(), TMP_SUFFIX)
    note = lost_run_data(tmp_path, run, now)
    assert not partial.exists()
    assert note.startswith("; no data file exists") and "was removed" in note
    final = place(tmp_path, "JOB-20260113-00001", "t-1", datetime.now())
    note = lost_run_data(tmp_path, run, now)
    assert final.exists() and f"its data file {final.relative_to(tmp_path)} was written" in note
