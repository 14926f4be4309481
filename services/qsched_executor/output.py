"""A run's live output on the executor: its log lines, capped, and its latest partial data.

Both are fed by the board thread between rounds and never make it wait: a call takes a lock for a
few list operations and returns.

- Log lines are kept with the run (each flush becomes an `Output` update of its log, so they reach
  the scheduler's database like any update), within caps: `max_lines` and `max_bytes` per run,
  `lines_per_s` (a token bucket with a burst of `burst` lines). A line over a cap is dropped and
  counted; the next flush carries a marker line "[qsched] N log line(s) dropped (...)". Once the
  run's cap is reached every later line is dropped and the count is said once, at the run's end.
  A line longer than `max_line_chars` is cut.
- Partial data: only the latest one per run is kept (`PartialSlot`); a newer one replaces it
  (`overwritten` counts those), and nothing is kept at all while nobody watches the run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from qsched_core.execution import Output, PartialData

MAX_LINES_PER_RUN = 1000
MAX_BYTES_PER_RUN = 64 * 1024
MAX_LINE_CHARS = 1000
LINES_PER_S = 20.0
BURST_LINES = 100
FLUSH_INTERVAL_S = 0.1  # at most ~10 Output updates per second per run (plus the last one)


@dataclass(frozen=True)
class OutputLimits:
    max_lines: int = MAX_LINES_PER_RUN
    max_bytes: int = MAX_BYTES_PER_RUN
    max_line_chars: int = MAX_LINE_CHARS
    lines_per_s: float = LINES_PER_S
    burst: int = BURST_LINES
    flush_interval_s: float = FLUSH_INTERVAL_S


@dataclass
class LogStats:
    """What a run's log took and dropped (observable, e.g. by tests)."""

    kept_lines: int = 0
    kept_bytes: int = 0
    dropped_rate: int = 0  # over lines_per_s
    dropped_full: int = 0  # after the run's cap was reached
    flushes: int = 0


@dataclass
class RunLog:
    """The log lines of one run between flushes (board thread in, any thread out)."""

    limits: OutputLimits = field(default_factory=OutputLimits)
    clock: Callable[[], float] = time.monotonic
    stats: LogStats = field(default_factory=LogStats)
    _pending: list[str] = field(default_factory=list)
    _dropped: int = 0  # since the last marker
    _marked: int = 0  # dropped lines the markers since the last flush said
    _full: bool = False
    _tokens: float = -1.0
    _refilled: float = 0.0
    _flushed: float = -1e9
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, line: str) -> None:
        lim = self.limits
        if len(line) > lim.max_line_chars:
            line = line[: lim.max_line_chars - 1] + "…"
        size = len(line.encode("utf-8", "replace")) + 1
        with self._lock:
            now = self.clock()
            if self._tokens < 0:
                self._tokens, self._refilled = float(lim.burst), now
            self._tokens = min(float(lim.burst), self._tokens + (now - self._refilled) * lim.lines_per_s)
            self._refilled = now
            if self._full:
                self.stats.dropped_full += 1
                self._dropped += 1
                return
            # One line of room stays for a marker, so the run's log can always say what it lost.
            if self.stats.kept_lines + 2 > lim.max_lines or self.stats.kept_bytes + size + 80 > lim.max_bytes:
                self._full = True
                self.stats.dropped_full += 1
                self._dropped += 1
                return
            if self._tokens < 1.0:
                self.stats.dropped_rate += 1
                self._dropped += 1
                return
            self._tokens -= 1.0
            if self._dropped:  # lines went missing before this one: say so in the log, in place
                self._mark()
            self._pending.append(line)
            self.stats.kept_lines += 1
            self.stats.kept_bytes += size

    def _mark(self) -> None:
        why = "the run's log is full" if self._full else f"over {self.limits.lines_per_s:g} lines/s"
        marker = f"[qsched] {self._dropped} log line(s) dropped ({why})"
        self._pending.append(marker)
        self.stats.kept_lines += 1
        self.stats.kept_bytes += len(marker) + 1
        self._marked += self._dropped
        self._dropped = 0

    def due(self) -> bool:
        """Something to flush and the last flush is old enough (a cheap check, no lock)."""
        return bool(self._pending or self._dropped) and (
            self.clock() - self._flushed >= self.limits.flush_interval_s
        )

    def flush(self, final: bool = False) -> Output | None:
        """The lines since the last flush (None: nothing to say). While the run goes on, lines
        dropped by the full cap are said only at the end (`final`): a full log stays quiet."""
        with self._lock:
            if self._dropped and (final or not self._full):
                self._mark()
            if not self._pending:
                return None
            lines, self._pending = tuple(self._pending), []
            dropped, self._marked = self._marked, 0
            self._flushed = self.clock()
            self.stats.flushes += 1
            return Output(lines, dropped)


@dataclass
class PartialSlot:
    """The latest partial data of one run, until the run queue's sender takes it."""

    overwritten: int = 0  # partials replaced before they were sent
    offered: int = 0
    _latest: PartialData | None = None

    def put(self, partial: PartialData) -> None:
        if self._latest is not None:
            self.overwritten += 1
        self._latest = partial
        self.offered += 1

    def take(self) -> PartialData | None:
        latest, self._latest = self._latest, None
        return latest

    @property
    def held(self) -> int:
        return 0 if self._latest is None else 1


__all__ = ["LogStats", "OutputLimits", "PartialSlot", "RunLog"]
