"""The `--json` export record metriq-gym tooling reads, built the same way by the gateway (when it
scores a finished job) and by the SDK (failure records, offline replay).

A record: `{app_version, timestamp, suite_id, job_type, [suite], results | outcome and
outcome_detail, runtime_seconds, platform, circuit_metadata}`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def app_version() -> str:
    """The installed qsched version ("0" when the distribution metadata cannot be read)."""
    try:
        from importlib.metadata import version

        return version("qsched")
    except Exception:
        return "0"


def record_head(job_type: str | None, suite: dict[str, Any] | None = None) -> dict[str, Any]:
    """The first fields of a record; a suite's records name it (and carry it when given in full)."""
    record: dict[str, Any] = {
        "app_version": app_version(),
        "timestamp": datetime.now(UTC).isoformat(),
        "suite_id": (suite or {}).get("id"),
        "job_type": job_type,
    }
    if suite:
        record["suite"] = suite
    return record


def circuit_metadata(
    input_counts: list[int], transpiled_counts: list[int], data: dict[str, Any]
) -> dict[str, Any]:
    """Two-qubit gate counts of the circuits as built and as run, and EPLG's qubit chain (as
    metriq-gym exports it)."""
    metadata: dict[str, Any] = {"input_two_qubit_gate_counts": input_counts}
    if transpiled_counts:
        metadata["transpiled_two_qubit_gate_counts"] = transpiled_counts
    if "qubit_chain" in data:
        metadata["qubit_chain"] = data["qubit_chain"]
    return metadata
