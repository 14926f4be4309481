"""A request that does not parse: refused after authentication, as INVALID_ARGUMENT, in one
rate-limited log line (issue 18, defect 4)."""

from __future__ import annotations

import logging

import grpc
import pytest

from qsched.wire import aio_channel

GARBAGE = b"\xff\xff\xff\xff\x0f garbage that is no protobuf \x00\x01"
UNARY = "/qsched.jobs.v1.JobService/GetJob"
STREAM = "/qsched.jobs.v1.JobService/WatchJob"


async def _call(address: str, token: str, method: str, streaming: bool) -> grpc.aio.AioRpcError:
    async with aio_channel(address, token, None) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            if streaming:
                async for _ in channel.unary_stream(method)(GARBAGE):
                    pass
            else:
                await channel.unary_unary(method)(GARBAGE)
    return info.value


@pytest.mark.parametrize("streaming", [False, True], ids=["unary", "server-stream"])
async def test_garbage_without_a_token_is_unauthenticated_not_decoded(scheduler, streaming):
    _, _, address = scheduler
    error = await _call(address, "", STREAM if streaming else UNARY, streaming)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error.details()


@pytest.mark.parametrize("streaming", [False, True], ids=["unary", "server-stream"])
async def test_garbage_with_a_token_is_invalid_argument(scheduler, identity, streaming):
    _, _, address = scheduler
    error = await _call(address, identity.token, STREAM if streaming else UNARY, streaming)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert "not a valid" in error.details()


async def test_a_flood_of_garbage_logs_one_line_not_a_traceback_each(scheduler, identity, caplog):
    _, _, address = scheduler
    caplog.set_level(logging.WARNING)
    for _ in range(50):
        error = await _call(address, identity.token, UNARY, False)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    refusals = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert 1 <= len(refusals) <= 2, [r.getMessage() for r in refusals]
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
