"""Targets (issue 8), the upstream seed server's figures, the machine, and the printed table."""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any

from bench.stack import REPO

# (scenario, metric, statistic): (comparison, target, unit). "min" = the figure must be >= target.
TARGETS: dict[tuple[str, str, str], tuple[str, float, str]] = {
    ("submit_throughput", "jobs_per_s", "median"): (">=", 2000.0, "jobs/s"),
    ("idle_dispatch", "submit_to_started_ms", "median"): ("<=", 5.0, "ms"),
    ("notification", "watchjob_ms", "median"): ("<=", 5.0, "ms"),
    ("notification", "wait_for_completion_ms", "median"): ("<=", 5.0, "ms"),
    ("board_gap", "gap_ms", "median"): ("<=", 0.5, "ms"),
    ("queue_depth", "ratio", "median"): ("<=", 1.25, "x"),
    ("startup", "cli_queue_s", "median"): ("<=", 0.3, "s"),
    ("startup", "cli_job_view_s", "median"): ("<", 0.5, "s"),
    ("watch_fanout", "notify_ms", "p99"): ("<=", 50.0, "ms"),
    ("replicas", "failover_lease_s", "max"): ("<=", 2.0, "s"),
    ("rabi", "run_s", "median"): ("<=", 1.0, "s"),
    ("calibration_gate", "gate_overhead_ms", "median"): ("<=", 0.1, "ms"),
    ("decision_overhead", "fifo_decision_ms", "median"): ("<=", 0.1, "ms"),
    ("decision_overhead", "fair_share_decision_ms", "median"): ("<=", 0.1, "ms"),
    ("replica_watch", "cross_replica_watch_ms", "p99"): ("<=", 50.0, "ms"),
}

REPLICA_FIGURES = ("jobs_per_s", "submit_latency_ms", "submit_to_started_ms")

# The upstream seed job server, measured on the same machine (issue 8).
SEED: dict[tuple[str, str], str] = {
    ("submit_throughput", "jobs_per_s"): "204 (1 client); 0.18 with 8 clients, 15/28 failed",
    ("idle_dispatch", "submit_to_started_ms"): "p50 1,213 ms",
    ("notification", "watchjob_ms"): "p50 4,180 ms",
    ("notification", "wait_for_completion_ms"): "p50 4,180 ms",
    ("board_gap", "gap_ms"): "p50 1.9 ms",
    ("startup", "sdk_import_call_s"): "0.16 s (import+call)",
    # Issues 13 and 14: the seed server had one FIFO queue, no users' shares, windows or gates.
    **{
        ("calibration_gate", m): "—"
        for m in (
            "gate_overhead_ms",
            "dispatch_without_gate_ms",
            "dispatch_all_held_ms",
            "dispatch_chain_waiting_ms",
        )
    },
    **{
        ("decision_overhead", f"{p}_{m}"): "—"
        for p in ("fifo", "fair_share")
        for m in ("decision_ms", "batch16_per_run_ms", "window_holder_last_ms", "maintenance_open_ms")
    },
    # Issue 15: the seed server had one process and no replicas.
    **{
        ("replicas", m): "n/a"
        for m in (
            *(f"{c}_{f}" for c in ("sqlite_1", "postgres_1", "postgres_2") for f in REPLICA_FIGURES),
            "failover_lease_s",
            "failover_first_start_s",
        )
    },
    **{
        ("fair_share", f"{p}_wait_{u}_s"): "—"
        for p in ("fifo", "fair_share")
        for u in ("alice", "bob", "carol", "dave")
    },
    # Issue 15: the seed server was one process (no replicas).
    **{
        ("replica_watch", m): "n/a"
        for m in ("cross_replica_watch_ms", "cross_replica_wait_ms", "same_replica_watch_ms")
    },
}

# Rows of the table: (scenario, metric, label, unit).
ROWS: list[tuple[str, str, str, str]] = [
    ("submit_throughput", "jobs_per_s", "1 submit, 8 clients", "jobs/s"),
    ("submit_throughput", "submit_latency_ms", "1 SubmitJob latency (8 clients)", "ms"),
    ("submit_throughput", "batch_jobs_per_s", "1 batch submit", "jobs/s"),
    ("idle_dispatch", "submit_to_started_ms", "2 idle dispatch: submit->started", "ms"),
    ("idle_dispatch", "submit_ack_ms", "2   of which SubmitJob ack", "ms"),
    ("idle_dispatch", "ack_to_started_ms", "2   of which ack->started", "ms"),
    ("notification", "watchjob_ms", "3 notify: end->WatchJob", "ms"),
    ("notification", "wait_for_completion_ms", "3 notify: end->wait_for_completion", "ms"),
    ("board_gap", "gap_ms", "4 board gap (HDF5 end->start)", "ms"),
    ("board_gap", "gap_after_result_ms", "4   result update->next started", "ms"),
    ("board_gap", "run_end_to_result_ms", "4   run end->result (file write)", "ms"),
    ("board_gap", "drain_jobs_per_s", "4 drain rate (no-op jobs)", "jobs/s"),
    ("board_gap", "gap_50ms_runs_ms", "4 board gap, 50 ms runs", "ms"),
    ("queue_depth", "ratio", "5 per-job cost, deep/shallow", "x"),
    ("queue_depth", "submit_ratio", "5   submit part, deep/shallow", "x"),
    ("queue_depth", "dispatch_ratio", "5   dispatch part, deep/shallow", "x"),
    ("queue_depth", "load_jobs_per_s", "5 loader rate (public API)", "jobs/s"),
    ("startup", "cli_queue_s", "6 qsched queue", "s"),
    ("startup", "cli_job_view_s", "6 qsched job view", "s"),
    ("startup", "sdk_import_s", "6 import JobClient", "s"),
    ("startup", "sdk_import_call_s", "6 import JobClient + get_status", "s"),
    ("startup", "python_baseline_s", "6 python -c pass (baseline)", "s"),
    ("watch_fanout", "notify_ms", "7 fan-out notify (N watchers)", "ms"),
    ("rabi", "run_s", "8 AmplitudeRabi 101x1000 (run)", "s"),
    ("rabi", "started_to_result_s", "8   started->result incl. file", "s"),
    ("executor_alone", "noop_runs_per_s", "9 executor alone: no-op runs", "runs/s"),
    ("executor_alone", "gap_ms", "9   board gap (HDF5 end->start)", "ms"),
    ("executor_alone", "run_end_to_result_ms", "9   run end->succeeded (file write)", "ms"),
    ("executor_alone", "writer_cpu_ms_per_file", "9   writer CPU per file", "ms"),
    ("executor_alone", "executor_cpu_ms_per_run", "9   executor CPU per run", "ms"),
    ("calibration_gate", "gate_overhead_ms", "10 calibration gate per dispatch (10k queued)", "ms"),
    ("calibration_gate", "dispatch_without_gate_ms", "10   dispatch decision, no gate", "ms"),
    ("calibration_gate", "dispatch_all_held_ms", "10   all held (stale, chain handed over)", "ms"),
    ("calibration_gate", "dispatch_chain_waiting_ms", "10   all held, chain ahead in the queue", "ms"),
    ("decision_overhead", "fifo_decision_ms", "11 decision per dispatch, fifo (10k queued)", "ms"),
    (
        "decision_overhead",
        "fair_share_decision_ms",
        "11 decision per dispatch, fair_share (10k queued)",
        "ms",
    ),
    ("decision_overhead", "fifo_batch16_per_run_ms", "11   batch of 16, per run, fifo", "ms"),
    ("decision_overhead", "fair_share_batch16_per_run_ms", "11   batch of 16, per run, fair_share", "ms"),
    (
        "decision_overhead",
        "fifo_window_holder_last_ms",
        "11   window open, its holder's job last (~7.5k held)",
        "ms",
    ),
    ("decision_overhead", "fifo_maintenance_open_ms", "11   maintenance window open (all held)", "ms"),
    *[
        ("fair_share", f"{p}_wait_{u}_s", f"12 wait {u} ({n} jobs), {p}", "s")
        for p in ("fifo", "fair_share")
        for u, n in (("alice", 200), ("bob", 100), ("carol", 60), ("dave", 40))
    ],
    ("replica_watch", "cross_replica_watch_ms", "13 watch on the other replica (2 on PostgreSQL)", "ms"),
    ("replica_watch", "cross_replica_wait_ms", "13   wait_for_completion, other replica", "ms"),
    ("replica_watch", "same_replica_watch_ms", "13   watch on the dispatching replica", "ms"),
    *[
        ("replicas", f"{c}_{f}", f"13 {label}, {c.replace('_', ' x')}", unit)
        for f, label, unit in (
            ("jobs_per_s", "submit (8 threads, round-robin)", "jobs/s"),
            ("submit_to_started_ms", "idle dispatch: submit->start", "ms"),
        )
        for c in ("sqlite_1", "postgres_1", "postgres_2")
    ],
    ("replicas", "failover_lease_s", "13 failover: kill -9 -> lease taken over", "s"),
    ("replicas", "failover_first_start_s", "13 failover: kill -9 -> a job starts", "s"),
]


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": commit,
    }


def verdict(scenario: str, metric: str, stats: dict[str, Any]) -> tuple[str, str]:
    """(target text, PASS/MISS/"") for a row."""
    for (s, m, stat), (op, target, unit) in TARGETS.items():
        if s == scenario and m == metric:
            value = stats.get(stat)
            text = f"{stat} {op} {target:g} {unit}"
            if value is None:
                return text, "n/a"
            ok = {">=": value >= target, "<=": value <= target, "<": value < target}[op]
            return text, "PASS" if ok else "MISS"
    return "", ""


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def table(results: dict[str, Any]) -> str:
    header = ("figure", "unit", "n", "median", "p95", "p99", "target", "", "seed server")
    rows = [header]
    for scenario, metric, label, unit in ROWS:
        block = results["scenarios"].get(scenario)
        if block is None:
            continue
        stats = block.get("metrics", {}).get(metric)
        if stats is None:
            if metric == "batch_jobs_per_s" and block.get("completed"):
                rows.append((label, unit, "-", "n/a", "", "", "", "", "no batch RPC in jobs.v1"))
            continue
        target, mark = verdict(scenario, metric, stats)
        if "(N watchers)" in label:
            label = label.replace("N", str(results.get("sizes", {}).get("watchers", "N")))
        rows.append(
            (
                label,
                unit,
                _fmt(stats.get("n")),
                _fmt(stats.get("median")),
                _fmt(stats.get("p95")),
                _fmt(stats.get("p99")),
                target,
                mark,
                SEED.get((scenario, metric), ""),
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    lines = []
    for i, row in enumerate(rows):
        cells = [
            str(c).ljust(w) if j in (0, 1, 6, 7, 8) else str(c).rjust(w)
            for j, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    status = []
    for name, block in results["scenarios"].items():
        state = "completed" if block.get("completed") else "DID NOT COMPLETE"
        status.append(f"  {name}: {state}, {block.get('errors', 0)} errors")
        for sample in block.get("error_samples", [])[:3]:
            status.append(f"      {sample}")
    return "\n".join(lines) + "\n\nScenarios:\n" + "\n".join(status)
