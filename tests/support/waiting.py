"""`eventually()`: the one way tests wait for something to become true.

    job = await eventually(lambda: stub.GetJob(request), until=lambda r: r.job.state == DONE)
    eventually(lambda: "serving" in log.read_text(), timeout=90, what="the serving line")

`probe` is called until its value passes `until` (truthy by default), and that value is
returned; after `timeout` seconds an AssertionError names `what` and the last value seen. The
probe may return an awaitable (a lambda around a stub call), which is awaited. Called inside a
running event loop, `eventually` returns an awaitable (`await` it: the loop keeps serving the
test's in-process servers while it polls); in plain code it blocks. Exceptions of the types in
`ignoring` count as "not yet" (a server that is still starting).

Waiting *for* something is all it does. That something did NOT happen is never shown by waiting
a while: a test shows it by a later event that could only come after it."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

_NOTHING = object()


def eventually(
    probe: Callable[[], Any],
    until: Callable[[Any], object] = bool,
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
    ignoring: tuple[type[BaseException], ...] = (),
    what: str = "",
) -> Any:
    check = _Check(until, time.monotonic() + timeout, timeout, what or _name(probe))
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return _poll_async(probe, check, interval, ignoring)
    while True:
        try:
            value = probe()
        except ignoring:
            value = _NOTHING
        if inspect.isawaitable(value):
            raise TypeError("an async probe needs an event loop: `await eventually(...)` in async code")
        if check.done(value):
            return value
        time.sleep(interval)


async def _poll_async(probe: Callable[[], Any], check: _Check, interval: float, ignoring: tuple) -> Any:
    while True:
        try:
            value = probe()
            if inspect.isawaitable(value):
                value = await value
        except ignoring:
            value = _NOTHING
        if check.done(value):
            return value
        await asyncio.sleep(interval)


class _Check:
    def __init__(self, until: Callable[[Any], object], deadline: float, timeout: float, what: str):
        self.until, self.deadline, self.timeout, self.what = until, deadline, timeout, what

    def done(self, value: Any) -> bool:
        if value is not _NOTHING and self.until(value):
            return True
        if time.monotonic() >= self.deadline:
            last = "nothing (the probe kept failing)" if value is _NOTHING else repr(value)[:500]
            raise AssertionError(f"{self.what} did not happen within {self.timeout:g} s; last seen: {last}")
        return False


def _name(probe: Callable[[], Any]) -> str:
    code = getattr(probe, "__code__", None)
    where = f" ({code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno})" if code else ""
    return f"the condition{where}"
