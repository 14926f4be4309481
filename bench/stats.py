"""Summaries of samples: median and percentiles (nearest-rank on the sorted samples)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(samples: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), nearest rank; None without samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(samples: Sequence[float]) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def summary(samples: Sequence[float], scale: float = 1.0) -> dict[str, float | int | None]:
    """n, median, p95, p99, min, max of `samples` times `scale` (e.g. 1e3 for ms)."""

    def scaled(value: float | None) -> float | None:
        return None if value is None else value * scale

    return {
        "n": len(samples),
        "median": scaled(median(samples)),
        "p95": scaled(percentile(samples, 95)),
        "p99": scaled(percentile(samples, 99)),
        "min": scaled(min(samples)) if samples else None,
        "max": scaled(max(samples)) if samples else None,
    }


def scenario_result(
    metrics: dict[str, Any], errors: list[str], notes: str = "", **extra: Any
) -> dict[str, Any]:
    """What a scenario returns: completed, its error count and first errors, metrics, notes."""
    return {
        "completed": True,
        "errors": len(errors),
        "error_samples": errors[:5],
        "metrics": metrics,
        "notes": notes,
        **extra,
    }
