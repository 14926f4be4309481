"""`qsched show` names the code of a lab job (issue 20): the commit pinned at submit and what the
run ran with."""

from __future__ import annotations

from qsched.api.executor.v1 import executor_pb2 as epb
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.cli.format import code_lines, job_detail, run_code, run_rows

COMMIT = "3f2a9c1d0b7e" + "0" * 28


def lab_job(**lab) -> pb.Job:
    payload = pb.JobPayload(lab_experiment=pb.LabExperiment(experiment_class="Train", **lab))
    return pb.Job(job_id="JOB-20261207-00001", payload=payload)


def code(origin=epb.CODE_ORIGIN_REPOSITORY, dirty=False, revision="main") -> epb.CodeProvenance:
    return epb.CodeProvenance(
        qsched=epb.PackageSource(name="qsched", version="0.1.0", commit="a" * 40, dirty=True),
        qick_version="0.2.436",
        experiment=epb.PackageSource(name="mylab", version="1.4", commit=COMMIT, dirty=dirty),
        experiment_origin=origin,
        experiment_revision=revision,
    )


def test_a_queued_job_shows_the_commit_it_pinned():
    job = lab_job(experiment_revision="main", experiment_commit=COMMIT, experiment_tree_dirty=True)
    assert code_lines(job) == [
        "commit     3f2a9c1d0b7e (main at submit; the tree had uncommitted changes, not in it)"
    ]
    assert code_lines(lab_job(experiment_commit=COMMIT)) == ["commit     3f2a9c1d0b7e (HEAD at submit)"]


def test_a_run_shows_the_code_it_ran_with():
    job = lab_job(experiment_commit=COMMIT)
    job.current_run.CopyFrom(pb.Run(task_id="t", attempt=1, code=code(dirty=True)))
    text = job_detail(job)
    assert "code       qsched 0.1.0 @ aaaaaaaaaaaa with uncommitted changes, qick 0.2.436" in text
    assert (
        "experiment mylab 1.4 @ 3f2a9c1d0b7e (repository, revision main, "
        "the tree had uncommitted changes, not run)" in text
    )
    installed = code(epb.CODE_ORIGIN_PACKAGE, dirty=True, revision="")
    job.current_run.code.CopyFrom(installed)
    assert "experiment mylab 1.4 @ 3f2a9c1d0b7e (package, with uncommitted changes)" in job_detail(job)


def test_jobs_without_code_show_nothing_more():
    assert code_lines(lab_job()) == []
    assert code_lines(pb.Job(job_id="J", payload=pb.JobPayload(circuit=pb.CircuitProgram(shots=1)))) == []


def test_the_runs_table_has_each_runs_commit():
    first = pb.Run(attempt=1, task_id="t1", code=code(dirty=True))
    pinned = pb.Run(attempt=2, task_id="t2", payload=lab_job(experiment_commit="b" * 40).payload)
    assert (run_code(first), run_code(pinned), run_code(pb.Run())) == ("3f2a9c1d0b7e*", "b" * 12, "-")
    table = run_rows([first, pinned])
    assert table.splitlines()[0].split() == [
        "#",
        "TASK",
        "STATE",
        "STARTED",
        "ENDED",
        "DATA",
        "CODE",
        "SETTINGS",
    ]
    assert "3f2a9c1d0b7e*" in table and "bbbbbbbbbbbb" in table
