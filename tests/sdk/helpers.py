"""Small helpers for the SDK tests."""

from __future__ import annotations

import asyncio
import os

from qsched.api.jobs.v1 import jobs_pb2 as pb


def address_of(scheduler) -> str:
    """The fixture's scheduler, or the one named by QSCHED_SDK_TEST_ADDRESS (e.g. `qsched up`)."""
    return os.environ.get("QSCHED_SDK_TEST_ADDRESS") or scheduler[2]


async def wait_for_state(stub, job_id: str, state: int, timeout: float = 10.0) -> pb.Job:
    async def poll():
        while True:
            job = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job
            if job.state == state:
                return job
            await asyncio.sleep(0.01)

    return await asyncio.wait_for(poll(), timeout)


async def in_thread(fn, *args, **kwargs):
    """Run blocking SDK code off the event loop (the servers live on it). A KeyboardInterrupt
    raised in the thread is returned, not raised, so it cannot stop the loop."""

    def call():
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt as exc:
            return exc

    return await asyncio.to_thread(call)


RABI = "experiments.single_qubit.amplitude_rabi"
PERSON = "Claude"  # the seed examples' user
