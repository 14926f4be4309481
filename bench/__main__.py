"""`python -m bench [--quick] [--only NAME ...] [--profile]`: run the scenarios against real
stacks on loopback, print the table, write bench/results/<timestamp>.json. Exit status 0 when
every scenario completed with 0 errors (targets are reported, never enforced), else 1."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench import profiling, report
from bench.scenarios import FULL, QUICK, SCENARIOS
from bench.stack import Clients, Stack

RESULTS = Path(__file__).resolve().parent / "results"
# Each group runs on a fresh stack: the latency scenarios need an idle device, and 1 and 5
# leave thousands of jobs queued behind a held board.
GROUPS = [
    [
        "idle_dispatch",
        "notification",
        "board_gap",
        "watch_fanout",
        "startup",
        "rabi",
        "executor_alone",
    ],
    ["submit_throughput"],
    ["queue_depth"],
    # In process on the scheduler's own objects, and issue 13's sharing scenario, which starts its
    # own stacks (one per queue order): no shared stack for these.
    ["calibration_gate", "decision_overhead"],
    ["fair_share"],
    # Issue 15: schedulers on PostgreSQL databases of their own (replicas, events across them).
    ["replicas"],
    ["replica_watch"],
]
NO_STACK = {"calibration_gate", "decision_overhead", "fair_share", "replicas", "replica_watch"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("BENCH_QUICK", "") not in ("", "0"),
        help="small counts (CI: checks the harness runs; figures are not meaningful). Also BENCH_QUICK=1",
    )
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="run only these scenarios")
    parser.add_argument(
        "--depth-large",
        type=int,
        default=int(os.environ.get("BENCH_DEPTH_LARGE", "0")) or None,
        help="scenario 5's deep queue (default 100000; quick 200). Also BENCH_DEPTH_LARGE",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="results file (default bench/results/<ts>.json)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy record the scheduler and executor during each scenario (needs py-spy; "
        "bench/requirements.txt); raw stacks and a summary go next to the results file",
    )
    parser.add_argument("--keep-data", action="store_true", help="keep the stacks' data directories")
    args = parser.parse_args(argv)

    sizes = QUICK if args.quick else FULL
    if args.depth_large:
        sizes = dataclasses.replace(sizes, depth_large=args.depth_large)
    wanted = set(args.only or SCENARIOS)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = args.output or RESULTS / f"{stamp}{'-quick' if args.quick else ''}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    profile_dir = output.with_suffix("") if args.profile else None

    results: dict = {
        "timestamp": stamp,
        "quick": args.quick,
        "machine": report.machine(),
        "sizes": dataclasses.asdict(sizes),
        "scenarios": {},
    }
    print(
        f"qsched bench ({'quick' if args.quick else 'full'}) on {results['machine']['nproc']} x "
        f"{results['machine']['cpu_model']}, Python {results['machine']['python']}",
        flush=True,
    )
    base = Path(tempfile.mkdtemp(prefix="qsched-bench-"))
    for group in GROUPS:
        names = [n for n in group if n in wanted]
        if not names:
            continue
        stack = Stack(base / names[0])
        own = all(name in NO_STACK for name in names)
        try:
            t0 = time.perf_counter()
            if not own:
                stack.start()
                print(f"stack up in {time.perf_counter() - t0:.1f}s ({stack.scheduler})", flush=True)
        except Exception as exc:
            for name in names:
                results["scenarios"][name] = _failed(f"stack did not start: {exc}")
            continue
        clients = None if own else Clients(stack)
        try:
            for name in names:
                if name in ("submit_throughput",):
                    clients.hold()  # the window measures the submit path alone
                print(f"-- {name} ...", flush=True)
                t0 = time.perf_counter()
                recorder = profiling.start(stack, profile_dir, name) if profile_dir else None
                try:
                    block = SCENARIOS[name](stack, clients, sizes)
                except Exception as exc:
                    block = _failed(f"{type(exc).__name__}: {exc}", traceback.format_exc())
                finally:
                    if recorder is not None:
                        block_profile = recorder.stop()
                block["seconds"] = round(time.perf_counter() - t0, 1)
                if recorder is not None:
                    block["profile"] = block_profile
                results["scenarios"][name] = block
                print(
                    f"   {'done' if block['completed'] else 'FAILED'} in {block['seconds']}s, "
                    f"{block['errors']} errors",
                    flush=True,
                )
        finally:
            if clients is not None:
                clients.close()
            stack.stop()
    if not args.keep_data:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    else:
        results["data_dir"] = str(base)

    output.write_text(json.dumps(results, indent=2, default=str))
    print()
    print(report.table(results))
    print(f"\nresults: {output}")
    ok = all(b.get("completed") and b.get("errors") == 0 for b in results["scenarios"].values())
    return 0 if ok and results["scenarios"] else 1


def _failed(message: str, detail: str = "") -> dict:
    return {
        "completed": False,
        "errors": 1,
        "error_samples": [message],
        "traceback": detail,
        "metrics": {},
        "notes": "",
    }


if __name__ == "__main__":
    sys.exit(main())
