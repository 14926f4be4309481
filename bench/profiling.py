"""Where the services spend their time during a scenario: `py-spy record` (sampling, out of
process, --nonblocking so the services are never paused) on the scheduler and the executor,
raw collapsed stacks, and a summary of busy samples by function.

    python -m bench --profile --only board_gap     # records while the scenario runs
    python -m bench.profiling FILE.txt [N]          # summarize a recorded file

Needs py-spy (bench/requirements.txt) and permission to ptrace the services (same user)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.stack import BIN, Stack

RATE_HZ = 100
SERVICES = ("scheduler", "executor")
# Frames that mean "waiting", not working (an idle event loop or an idle pool thread).
_IDLE = re.compile(r"^(select|poll|epoll_wait|wait|_wait_for_tstate_lock|acquire) \(|EpollSelector\.select")
_LINE = re.compile(r":\d+\)$")


class Recorder:
    def __init__(self, procs: dict[str, tuple[subprocess.Popen, Path]]):
        self.procs = procs

    def stop(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for service, (proc, path) in self.procs.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            out[service] = {"raw": str(path), **(summarize(path, 25) if path.exists() else {})}
        return out


def start(stack: Stack, directory: Path, scenario: str) -> Recorder | None:
    py_spy = shutil.which("py-spy") or str(BIN / "py-spy")
    if not Path(py_spy).exists():
        print("   (py-spy not installed: pip install -r bench/requirements.txt)", flush=True)
        return None
    directory.mkdir(parents=True, exist_ok=True)
    procs = {}
    for service, pid in stack.service_pids().items():
        if service not in SERVICES:
            continue
        path = directory / f"{scenario}.{service}.txt"
        argv = [py_spy, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--format", "raw"]
        argv += ["--output", str(path), "--nonblocking", "--threads"]
        procs[service] = (subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), path)
    return Recorder(procs)


def _frames(stack: str) -> list[str]:
    return [_LINE.sub(")", f) for f in stack.split(";")]


def summarize(path: Path, top: int = 30) -> dict:
    """Samples on CPU (py-spy leaves idle threads out unless --idle; leaves that are plainly
    waits are dropped too), inclusive and self, by function; and by thread."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = busy = 0
    for line in Path(path).read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = _frames(stack)
        total += n
        if _IDLE.search(frames[-1]):
            continue
        busy += n
        threads[frames[0]] += n
        for f in set(frames[1:]):
            inclusive[f] += n
        own[frames[-1]] += n

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / busy, 1)) for k, v in counter.most_common(top)] if busy else []

    return {
        "samples": total,
        "busy_samples": busy,
        "busy_seconds": round(busy / RATE_HZ, 2),
        "threads_busy_pct": share(threads),
        "inclusive_pct_of_busy": share(inclusive),
        "self_pct_of_busy": share(own),
    }


def main(argv: list[str]) -> int:
    path = Path(argv[0])
    top = int(argv[1]) if len(argv) > 1 else 40
    s = summarize(path, top)
    print(f"{path}: {s['samples']} samples, {s['busy_samples']} busy ({s['busy_seconds']} s of CPU)")
    for title in ("threads_busy_pct", "inclusive_pct_of_busy", "self_pct_of_busy"):
        print(f"\n{title}:")
        for name, pct in s[title]:
            print(f"  {pct:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
