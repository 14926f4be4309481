"""Small helpers for the SDK tests."""

from __future__ import annotations

import asyncio
import os

from tests.support.identity import SEED_PERSON as PERSON  # noqa: F401  (the SDK tests' name for it)


def address_of(scheduler) -> str:
    """The fixture's scheduler, or the one named by QSCHED_SDK_TEST_ADDRESS (e.g. `qsched up`)."""
    return os.environ.get("QSCHED_SDK_TEST_ADDRESS") or scheduler[2]


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
