"""NoOpExperiment: a run that never touches the board, for timing the control plane.

It goes through every step a real run goes through on the executor (class lookup, hardware
config, validation, the board worker thread, `started` / `result` updates, the run's data
file) except the physics: `run` returns at once with no arrays and an empty summary. The
executor still writes the run's HDF5 file, which then holds only the attributes (a few KiB):
the file write is part of the executor's per-run cost, so a benchmark should see it.

Config (all optional):
- `sleep_s` (default 0, at most 86400): wait this long before returning, without touching the
  board. Cancelling the run ends the wait at once (the run then ends CANCELLED). The benchmark
  harness uses it to hold the device busy while it fills the queue.
- `log_lines` (default 0, at most 100000): write that many log lines ("line 1", ...) through
  the run's live output first (tests of its caps; docs/experiments.md).
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

from qsched_hardware.board import RunCancelled
from qsched_hardware.experiments.base import Experiment, ExperimentResult, RunContext, Violation

MAX_SLEEP_S = 86_400.0
MAX_LOG_LINES = 100_000


class NoOpExperiment(Experiment):
    """Does nothing on the board; returns an empty result (see the module docstring)."""

    def __init__(self, soccfg: Any, hardware: dict[str, Any], expt: dict[str, Any]):
        super().__init__(soccfg, hardware, expt)
        self.sleep_s = self.expt.get("sleep_s", 0.0)
        self.log_lines = self.expt.get("log_lines", 0)

    def validate(self) -> list[Violation]:
        lines = self.log_lines
        if isinstance(lines, bool) or not isinstance(lines, int) or not 0 <= lines <= MAX_LOG_LINES:
            return [Violation("expt.log_lines", f"must be an integer in [0, {MAX_LOG_LINES}], got {lines!r}")]
        value = self.sleep_s
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
            return [Violation("expt.sleep_s", f"must be a number of seconds, got {value!r}")]
        if not 0 <= value <= MAX_SLEEP_S:
            return [Violation("expt.sleep_s", f"must be between 0 and {MAX_SLEEP_S:g} s, got {value}")]
        return []

    def run(self, ctx: RunContext) -> ExperimentResult:
        for i in range(int(self.log_lines)):
            ctx.log(f"line {i + 1}")
        sleep_s = float(self.sleep_s)
        if sleep_s > 0 and ctx.cancel.wait(sleep_s):
            raise RunCancelled(None, 0)
        return ExperimentResult(data={}, summary={}, attrs={"noop": True})

    def resolved_config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sleep_s": float(self.sleep_s)}
        if self.log_lines:
            out["log_lines"] = int(self.log_lines)
        return out
