"""The executor's caps on a run's live output (output.py), on a fake clock: lines per second, lines
and bytes per run, long lines cut; what goes over is counted and said by a marker line; the latest
partial per run only."""

from __future__ import annotations

from qsched_core.execution import PartialData
from qsched_executor.output import OutputLimits, PartialSlot, RunLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drain(log: RunLog, final: bool = False) -> tuple[list[str], int]:
    out = log.flush(final)
    return (list(out.lines), out.dropped) if out is not None else ([], 0)


def test_lines_over_the_rate_are_dropped_and_the_next_flush_says_how_many():
    clock = Clock()
    log = RunLog(OutputLimits(lines_per_s=10, burst=5), clock)
    for i in range(8):
        log.add(f"a{i}")
    lines, dropped = drain(log)
    assert lines[:5] == ["a0", "a1", "a2", "a3", "a4"] and dropped == 3
    assert lines[5] == "[qsched] 3 log line(s) dropped (over 10 lines/s)"
    clock.now = 1.0  # a second later the bucket is full again
    log.add("b")
    assert drain(log) == (["b"], 0)
    assert log.stats.dropped_rate == 3
    for i in range(7):  # lines accepted again after drops: the marker goes in place, and counts
        log.add(f"c{i}")
    clock.now = 1.1  # one token back
    log.add("d")
    lines, dropped = drain(log)
    assert lines[-2:] == ["[qsched] 3 log line(s) dropped (over 10 lines/s)", "d"] and dropped == 3


def test_a_run_keeps_at_most_max_lines_and_says_what_it_dropped_once_at_its_end():
    clock = Clock()
    log = RunLog(OutputLimits(max_lines=10, lines_per_s=1e9, burst=10**9), clock)
    for i in range(100):
        log.add(f"line {i}")
        clock.now += 1.0
    lines, _ = drain(log)
    assert lines == [f"line {i}" for i in range(9)]  # one line of room stays for the marker
    for _ in range(50):  # a full log stays quiet while the run goes on
        log.add("more")
    assert log.flush() is None
    lines, dropped = drain(log, final=True)
    assert lines == ["[qsched] 141 log line(s) dropped (the run's log is full)"] and dropped == 141
    assert log.stats.kept_lines == 10 and log.stats.dropped_full == 141


def test_a_run_keeps_at_most_max_bytes_and_long_lines_are_cut():
    log = RunLog(OutputLimits(max_bytes=2000, max_line_chars=100, lines_per_s=1e9, burst=10**9), Clock())
    for _ in range(100):
        log.add("x" * 500)
    lines, dropped = drain(log, final=True)
    assert all(len(line) <= 100 for line in lines)
    assert lines[0] == "x" * 99 + "…"
    assert sum(len(line.encode()) + 1 for line in lines) <= 2000
    assert dropped > 0 and lines[-1].startswith(f"[qsched] {dropped} log line(s) dropped")


def test_flushes_are_spaced_by_the_flush_interval():
    clock = Clock()
    log = RunLog(OutputLimits(flush_interval_s=0.1), clock)
    log.add("one")
    assert log.due()
    drain(log)
    log.add("two")
    assert not log.due()  # too soon: it waits for the next one (or the run's end)
    clock.now = 0.2
    assert log.due()


def test_a_partial_slot_holds_only_the_latest():
    slot = PartialSlot()
    for rounds in range(1, 11):
        slot.put(PartialData("t", "JOB-1", rounds, 10, 0.0))
    assert slot.held == 1 and slot.overwritten == 9
    assert slot.take().rounds_done == 10 and slot.held == 0 and slot.take() is None
