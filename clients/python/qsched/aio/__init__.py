"""asyncio job handles for qsched, with the OQC SDK's job semantics.

    from qsched.aio import Client, Job, CompositeJob, JobOutputProxy, JobResult, JobError, JobFailed, JobState

    async with Client(default_device="qick") as client:
        job = client.create_job(experiment="qsched_hardware.experiments.T1Experiment", config={"reps": 500})
        await job.execute(timeout_s=600)
        job.raise_for_status()
        print(job.result.data)

See docs/sdk.md."""

from qsched.aio.client import Client
from qsched.aio.job import CompositeJob, Job, JobFailed, JobLike, JobState
from qsched.aio.outputs import AttrPolicy, JobError, JobOutput, JobOutputProxy, JobResult
from qsched.aio.snapshot import SnapshotError
from qsched.aio.transport import Transport
from qsched.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    QschedError,
    Unavailable,
)

__all__ = [
    "AttrPolicy",
    "Client",
    "CompositeJob",
    "FailedPrecondition",
    "InvalidArgument",
    "Job",
    "JobError",
    "JobFailed",
    "JobLike",
    "JobOutput",
    "JobOutputProxy",
    "JobResult",
    "JobState",
    "NotFound",
    "PermissionDenied",
    "QschedError",
    "SnapshotError",
    "Transport",
    "Unavailable",
]
