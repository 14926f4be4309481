"""One user, within quota, cannot break listings for everyone (issue 18, defect 3): lists leave
the payloads' documents out unless asked, pages are bounded in bytes, labels in length."""

from __future__ import annotations

import json

import grpc

from qsched.api.jobs.v1 import jobs_pb2 as pb
from tests.support.jobs import expect_error, lab_request
from tests.support.waiting import eventually

BIG = {"reps": 1, "pad": "x" * 1_000_000}  # just under the 1 MiB payload limit


async def test_nine_one_mebibyte_jobs_do_not_break_history(scheduler):
    stub, _, _ = scheduler
    submitted = [(await stub.SubmitJob(lab_request(config=BIG))).job.job_id for _ in range(9)]

    basic = await stub.ListJobs(pb.ListJobsRequest(page_size=5))
    assert len(basic.jobs) == 5 and basic.next_page_token
    assert basic.ByteSize() < 64 * 1024  # the settings stayed home
    first = basic.jobs[0]
    assert first.payload.lab_experiment.experiment_class and not first.payload.lab_experiment.expt_config_json

    seen, token, pages = [], "", 0
    while True:
        page = await stub.ListJobs(
            pb.ListJobsRequest(page_size=5, page_token=token, job_view=pb.JOB_VIEW_FULL)
        )
        pages += 1
        assert page.ByteSize() <= 4 * 1024 * 1024 + 64 * 1024
        assert all(json.loads(j.payload.lab_experiment.expt_config_json) == BIG for j in page.jobs)
        seen += [j.job_id for j in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(submitted) and pages >= 3  # at most 3-4 full jobs per 4 MiB page


async def test_runs_are_listed_without_their_settings_unless_asked(scheduler):
    stub, _, _ = scheduler
    job_id = (await stub.SubmitJob(lab_request(config=BIG))).job.job_id
    # Its run exists once the job is handed over (at submit, or just after when the dispatcher
    # was still connecting to the executor).
    basic = await eventually(
        lambda: stub.ListRuns(pb.ListRunsRequest(job_id=job_id)), until=lambda r: r.runs, what="its run"
    )
    full = await stub.ListRuns(pb.ListRunsRequest(job_id=job_id, job_view=pb.JOB_VIEW_FULL))
    assert [r.payload.lab_experiment.expt_config_json for r in basic.runs] == [""]
    assert json.loads(full.runs[0].payload.lab_experiment.expt_config_json) == BIG


async def test_labels_are_bounded_in_key_and_value_length(scheduler):
    stub, _, _ = scheduler
    for labels in ({"k" * 1_000_000: "v"}, {"k": "v" * 1_000_000}, {"": "v"}):
        await expect_error(
            stub.SubmitJob(lab_request(labels=labels)), grpc.StatusCode.INVALID_ARGUMENT, "LABEL_TOO_LONG"
        )
    assert not (await stub.ListJobs(pb.ListJobsRequest())).jobs
    ok = await stub.SubmitJob(lab_request(labels={"k" * 63: "v" * 256}))
    assert ok.job.labels == {"k" * 63: "v" * 256}
