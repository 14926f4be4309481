"""A finished run's small data file with its result (issue 12), through real servers on ephemeral
ports: the real executor (simulated board) sends a no-op run's file inline with its result, the
scheduler keeps it in memory, and a WatchJob that asked for it (include_data) gets the file with
the terminal event: the same bytes FetchJobData sends and the executor wrote. Without the opt-in,
or once the scheduler no longer holds the file, the event comes without it and FetchJobData still
has the file (from the executor)."""

from __future__ import annotations

import hashlib

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched_scheduler.data_cache import RecentData
from tests.stack.test_live_output import TERMINAL, ended, lab_job, live_stack


async def watch_to_the_end(stub, job_id: str, include_data: bool) -> pb.WatchJobResponse:
    """The response with the terminal event (after_seq=1: replayed if the job is already over)."""
    call = stub.WatchJob(pb.WatchJobRequest(job_id=job_id, after_seq=1, include_data=include_data))
    async for response in call:
        if response.HasField("event") and response.event.state in TERMINAL:
            return response
        assert not response.HasField("data_file")  # only ever beside the terminal event
    raise AssertionError(f"{job_id}: the stream ended without its terminal event")


async def fetch(stub, job_id: str) -> tuple[bytes, list[pb.FetchJobDataResponse]]:
    chunks = [c async for c in stub.FetchJobData(pb.FetchJobDataRequest(job_id=job_id))]
    return b"".join(c.chunk for c in chunks), chunks


async def test_watch_job_with_include_data_brings_the_no_op_runs_file_fetch_job_data_sends(tmp_path):
    async with live_stack(tmp_path) as (stub, scheduler, executor):
        job_id = (await stub.SubmitJob(lab_job("NoOpExperiment"))).job.job_id
        end = await watch_to_the_end(stub, job_id, include_data=True)
        job = await ended(stub, job_id)
        assert job.state == pb.Job.STATE_SUCCEEDED and end.event.state == pb.Job.STATE_SUCCEEDED
        run = job.current_run
        assert end.HasField("data_file"), "the no-op run's small file comes with its end"
        sent = end.data_file
        assert sent.task_id == run.task_id and sent.file_name == run.data.name.rsplit("/", 1)[-1]
        assert sent.sha256 == run.data.sha256 == hashlib.sha256(sent.content).hexdigest()
        assert len(sent.content) == run.data.size_bytes

        stats = scheduler.results.recent_data.stats
        hits = stats.hits
        fetched, chunks = await fetch(stub, job_id)
        assert fetched == sent.content and chunks[0].file_name == sent.file_name
        assert stats.hits == hits + 1  # served from the scheduler's memory
        on_disk = tmp_path / "executor" / "data" / run.data.name
        assert on_disk.read_bytes() == sent.content  # the executor's durable file, byte for byte
        # The executor kept the run's result without the bytes (replays, its journal).
        kept = executor.runs.get(run.task_id).updates[-1].body
        assert kept.data.name == run.data.name and kept.inline_data == b""

        # Not asked for: not sent.
        assert not (await watch_to_the_end(stub, job_id, include_data=False)).HasField("data_file")
        # No longer held: not sent, and FetchJobData falls back to the executor.
        scheduler.results.recent_data = RecentData()
        assert not (await watch_to_the_end(stub, job_id, include_data=True)).HasField("data_file")
        assert (await fetch(stub, job_id))[0] == sent.content
