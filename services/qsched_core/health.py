"""What keeps a service from doing its work right now, by source (a background loop, a
dispatcher): the host shows it as the service's health (NOT_SERVING while any problem is
reported, SERVING again when every one is cleared). No gRPC here: the host translates."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class Problems:
    def __init__(self) -> None:
        self._now: dict[str, str] = {}
        self._listeners: list[Callable[[bool], None]] = []

    @property
    def ok(self) -> bool:
        return not self._now

    def current(self) -> dict[str, str]:
        return dict(self._now)

    def report(self, source: str, problem: str) -> None:
        """`source` cannot work (until `clear(source)`)."""
        was_ok = self.ok
        if self._now.get(source) != problem:
            log.warning("%s cannot work: %s", source, problem)
        self._now[source] = problem
        if was_ok:
            self._notify()

    def clear(self, source: str) -> None:
        if self._now.pop(source, None) is None:
            return
        log.info("%s works again", source)
        if self.ok:
            self._notify()

    def subscribe(self, listener: Callable[[bool], None]) -> None:
        """`listener(ok)` on every change between ok and not ok."""
        self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener(self.ok)
