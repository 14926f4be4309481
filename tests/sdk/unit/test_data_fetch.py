"""A finished job's data file is fetched with the run the SDK already holds (no GetJob again),
and the fetch ends with the last byte the scheduler announced (checked, not the stream's end)."""

from __future__ import annotations

import hashlib

from qsched import data
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.client import JobClient, JobResult

CONTENT = b"\x89HDF\r\n" + bytes(range(256)) * 4


class OneChunkStream:
    """FetchJobData's stream: the whole file in one chunk; asking for more fails the test."""

    def __init__(self, first: pb.FetchJobDataResponse):
        self.pending = [first]
        self.cancelled = False

    def __next__(self):
        if not self.pending:
            raise AssertionError("read past the announced size")
        return self.pending.pop()

    def cancel(self):
        self.cancelled = True


class Stub:
    def __init__(self):
        self.requests: list[pb.FetchJobDataRequest] = []
        self.streams: list[OneChunkStream] = []

    def GetJob(self, request, timeout=None):
        raise AssertionError("GetJob called: the job was in hand")

    def FetchJobData(self, request):
        self.requests.append(request)
        first = pb.FetchJobDataResponse(
            offset=0,
            chunk=CONTENT,
            total_size=len(CONTENT),
            sha256=hashlib.sha256(CONTENT).hexdigest(),
            file_name="JOB-1-abcd.h5",
        )
        self.streams.append(OneChunkStream(first))
        return self.streams[-1]


def finished_job() -> pb.Job:
    run = pb.Run(task_id="task-1", state=pb.Job.STATE_SUCCEEDED, data_file_path="2026/12/JOB-1-abcd.h5")
    return pb.Job(
        job_id="JOB-1",
        state=pb.Job.STATE_SUCCEEDED,
        task_id="task-1",
        current_run=run,
        payload=pb.JobPayload(lab_experiment=pb.LabExperiment()),
    )


def test_the_file_of_the_job_in_hand_is_fetched_without_get_job(tmp_path, monkeypatch):
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path))
    client = JobClient("127.0.0.1:1", token="unused")  # never connects: the stub answers
    stub = client._stub = Stub()
    result = client._with_local_data(JobResult.from_job(finished_job()))
    assert result.data_file_path == str(tmp_path / "JOB-1" / "task-1" / "JOB-1-abcd.h5")
    assert (tmp_path / "JOB-1" / "task-1" / "JOB-1-abcd.h5").read_bytes() == CONTENT
    assert [(r.job_id, r.task_id) for r in stub.requests] == [("JOB-1", "task-1")]
    assert stub.streams[0].cancelled  # the stream's end was not waited for
    again = client._with_local_data(JobResult.from_job(finished_job()))  # from the cache
    assert again.data_file_path == result.data_file_path and len(stub.requests) == 1
