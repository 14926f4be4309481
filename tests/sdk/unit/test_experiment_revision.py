"""The SDK and the CLI pass an experiment-repository revision (issue 20) on submit and rerun."""

from __future__ import annotations

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.cli import main
from qsched.client import JobClient


class Recorder:
    """Stands in for JobClient.calls: records each request, answers with a job."""

    def __init__(self):
        self.requests: list[tuple[str, object]] = []

    def __call__(self, method: str, request):
        self.requests.append((method, request))
        job = pb.Job(job_id="JOB-20261207-00001", payload=pb.JobPayload(lab_experiment=pb.LabExperiment()))
        return type("Answer", (), {"job": job})()


def client() -> tuple[JobClient, Recorder]:
    job_client = JobClient("127.0.0.1:1", token="unused")  # never connects: calls are recorded
    recorder = job_client.calls = Recorder()
    return job_client, recorder


def test_submit_and_rerun_carry_the_revision():
    job_client, recorder = client()
    job_client.submit_job("Train", "mylab.train", {}, experiment_revision="v1.2")
    job_client.submit_job("Train", "mylab.train", {})
    job_client.rerun_job("JOB-20261207-00001", experiment_revision="main")
    job_client.rerun_job("JOB-20261207-00001", {"reps": 3})
    methods = [method for method, _ in recorder.requests]
    assert methods == ["SubmitJob", "SubmitJob", "RerunJob", "GetJob", "RerunJob"]
    first, plain, rerun, _, rerun_config = [request for _, request in recorder.requests]
    assert first.payload.lab_experiment.experiment_revision == "v1.2"
    assert plain.payload.lab_experiment.experiment_revision == ""
    assert rerun.experiment_revision == "main" and not rerun.HasField("payload")
    assert rerun_config.experiment_revision == "" and rerun_config.HasField("payload")


def test_the_cli_flags():
    submit = main.build_parser("submit").parse_args(
        ["submit", "--experiment", "mylab.train.Train", "--revision", "v1"]
    )
    rerun = main.build_parser("rerun").parse_args(["rerun", "JOB-20261207-00001", "--revision", "main"])
    assert (submit.revision, rerun.revision) == ("v1", "main")
    assert main.build_parser("rerun").parse_args(["rerun", "JOB-20261207-00001"]).revision is None
