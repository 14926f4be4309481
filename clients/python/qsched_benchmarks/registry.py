"""metriq-gym benchmarks: config validation (JSON Schema per benchmark, unknown keys rejected),
circuit building and scoring with metriq-gym's metric definitions; suites."""

from __future__ import annotations

from typing import Any

from qsched_benchmarks.bseq import BSEQ
from qsched_benchmarks.clops import CLOPS
from qsched_benchmarks.core import Benchmark, Built, ScoreContext
from qsched_benchmarks.eplg import EPLG
from qsched_benchmarks.eplg import available as eplg_available
from qsched_benchmarks.errors import InvalidArgument, invalid_config
from qsched_benchmarks.mirror import MirrorCircuits
from qsched_benchmarks.qaoa import LinearRampQAOA
from qsched_benchmarks.qedc import BernsteinVazirani, HiddenShift, PhaseEstimation, QuantumFourierTransform
from qsched_benchmarks.qml import QMLKernel
from qsched_benchmarks.schema import validate as validate_schema
from qsched_benchmarks.wit import WIT

__all__ = ["BENCHMARKS", "Benchmark", "Built", "ScoreContext", "get", "parse_suite", "validate"]

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        BSEQ(),
        CLOPS(),
        EPLG(),
        QMLKernel(),
        MirrorCircuits(),
        WIT(),
        BernsteinVazirani(),
        HiddenShift(),
        PhaseEstimation(),
        QuantumFourierTransform(),
        LinearRampQAOA(),
    )
}
# Known to metriq-gym, not run by this gateway (see docs/gateway.md).
NOT_SUPPORTED = {
    "QAT OLE": "not implemented (optional)",
    "Quantum Volume": "removed from metriq-gym (PR #720)",
}


def get(name: str) -> Benchmark:
    return BENCHMARKS[name]


def validate(config: Any, entry: str = "") -> tuple[Benchmark, dict]:
    where = f"suite entry {entry!r}: " if entry else ""
    if not isinstance(config, dict):
        raise invalid_config(f"{where}a benchmark config is a JSON object")
    name = config.get("benchmark_name")
    if name == EPLG.name and not eplg_available():
        raise InvalidArgument(
            "UNKNOWN_BENCHMARK",
            f"{where}benchmark 'EPLG' needs qiskit-experiments (LayerFidelity), which is not installed "
            "here: pip install 'qsched[local]'",
        )
    if name in NOT_SUPPORTED:
        raise InvalidArgument(
            "UNKNOWN_BENCHMARK", f"{where}benchmark {name!r} is not supported: {NOT_SUPPORTED[name]}"
        )
    if name not in BENCHMARKS:
        raise InvalidArgument(
            "UNKNOWN_BENCHMARK",
            f"{where}unknown benchmark_name {name!r}; known: {', '.join(sorted(BENCHMARKS))}",
            benchmark=str(name),
        )
    bench = BENCHMARKS[name]
    try:
        params = validate_schema(config, bench.schema)
        bench.check(params)
    except InvalidArgument as error:
        if where:
            raise invalid_config(where + error.message, **error.metadata) from error
        raise
    return bench, params


SUITE_KEYS = {"name", "version", "description", "source", "references", "full_suite_warning", "benchmarks"}
ENTRY_KEYS = {"name", "component", "config"}


def parse_suite(document: Any) -> tuple[str, list[tuple[str, dict]]]:
    """A metriq-gym suite file -> (suite name, [(entry name, config)]). Unknown keys are rejected."""
    if not isinstance(document, dict):
        raise invalid_config("a suite file is a JSON object")
    unknown = sorted(set(document) - SUITE_KEYS)
    if unknown:
        raise invalid_config(f"suite: unknown key {unknown[0]!r}", key=unknown[0])
    name = document.get("name")
    entries = document.get("benchmarks")
    if not isinstance(name, str) or not name:
        raise invalid_config("suite: 'name' is required", key="name")
    if not isinstance(entries, list) or not entries:
        raise invalid_config("suite: 'benchmarks' must be a non-empty list", key="benchmarks")
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "config" not in entry:
            raise invalid_config(f"suite: benchmarks[{i}] needs a 'config'", key=f"benchmarks[{i}]")
        extra = sorted(set(entry) - ENTRY_KEYS)
        if extra:
            raise invalid_config(f"suite: benchmarks[{i}]: unknown key {extra[0]!r}", key=extra[0])
        out.append((str(entry.get("name") or f"entry{i}"), entry["config"]))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise invalid_config("suite: entry names must be unique", key="benchmarks")
    return name, out
