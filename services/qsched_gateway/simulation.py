"""One local (qiskit-aer) simulation in a worker process of its own, its address space capped
(RLIMIT_AS) at the gateway's memory budget: a simulation that needs more fails alone, with a clear
message, instead of growing the gateway until the kernel kills it for everyone.

Workers are forked from a forkserver that imported qiskit and qiskit-aer once (quick to start, and
never a fork of the threaded gRPC process)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import resource
import threading
import time
from dataclasses import dataclass
from typing import Any

from qsched_benchmarks.devices import IDEAL, fake_backend
from qsched_benchmarks.estimate import two_qubit_gate_count

_context_lock = threading.Lock()
_context: Any = None
MIB = 1024 * 1024
# The worker's own baseline (interpreter, qiskit, Aer's thread stacks) on top of the budget.
BASELINE_SLACK_BYTES = 512 * MIB


class SimulationFailed(Exception):
    """The simulation raised, ran out of its memory budget or its process died."""


class Cancelled(Exception):
    """The worker was stopped on request."""


class Stopped(Exception):
    """The gateway is stopping: the task is left in flight (the next start reports it lost)."""


@dataclass(frozen=True)
class Outcome:
    counts: list[dict[str, int]]
    elapsed: float
    metadata: dict[str, Any]


def simulate(native: str, circuits: list, shots: int, options: Any, sim: Any = None) -> Outcome:
    """Transpile and run on the named local simulator (in whatever process calls it)."""
    from qiskit import transpile
    from qiskit_aer import AerSimulator

    from qsched_gateway.providers.base import bitstring_counts

    if sim is None:
        sim = AerSimulator() if native == IDEAL else AerSimulator.from_backend(fake_backend(native))
    compiled = transpile(
        circuits,
        backend=sim,
        optimization_level=options.optimization_level,
        seed_transpiler=options.seed_transpiler,
    )
    started = time.perf_counter()
    run_args: dict[str, Any] = {"shots": shots}
    if options.seed_simulator is not None:
        run_args["seed_simulator"] = options.seed_simulator
    result = sim.run(compiled, **run_args).result()
    elapsed = time.perf_counter() - started
    counts = [bitstring_counts(result.get_counts(i)) for i in range(len(compiled))]
    metadata = {
        "simulator": native,
        "noise_model": "" if native == IDEAL else native,
        "backend_name": result.backend_name,
        "qiskit_aer_job_id": result.job_id,
        "time_taken_seconds": getattr(result, "time_taken", elapsed),
        "transpiled_two_qubit_gate_counts": [two_qubit_gate_count(c) for c in compiled],
        "transpiled_depths": [c.depth() for c in compiled],
        "shots": shots,
    }
    return Outcome(counts, float(elapsed), metadata)


def _virtual_size() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _serve(conn, budget: int) -> None:
    """The worker process: simulate each request until the pipe closes."""
    if budget:
        limit = _virtual_size() + BASELINE_SLACK_BYTES + budget
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    simulators: dict[str, Any] = {}
    while True:
        try:
            native, circuits, shots, options = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if native not in simulators:
                from qiskit_aer import AerSimulator

                simulators[native] = (
                    AerSimulator() if native == IDEAL else AerSimulator.from_backend(fake_backend(native))
                )
            conn.send(("ok", simulate(native, circuits, shots, options, simulators[native])))
        except MemoryError:
            conn.send(("memory", "ran out of memory"))
        except BaseException as exc:
            text = f"{type(exc).__name__}: {exc}"
            kind = "memory" if "bad_alloc" in text or "memory" in text.lower() else "error"
            conn.send((kind, text))


def _get_context():
    global _context
    with _context_lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["qsched_gateway.simulation", "qsched_gateway.simulation_warmup"])
            _context = ctx
        return _context


class Worker:
    """A simulation worker process, reused task after task by one thread; `run` blocks. After a
    failure that may have left the process in a bad state (out of memory, killed) the next `run`
    starts a fresh one."""

    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self._process: Any = None
        self._conn: Any = None
        self._killed = False
        self._closed = False
        self._lock = threading.Lock()

    def _ensure(self) -> None:
        if self._process is not None and self._process.is_alive():
            return
        self._discard()
        ctx = _get_context()
        receive, send = ctx.Pipe(duplex=True)
        process = ctx.Process(
            target=_serve, args=(send, self.budget_bytes), name="qsched-local-sim", daemon=True
        )
        process.start()
        send.close()
        self._process, self._conn = process, receive

    def _discard(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join()
        self._process = self._conn = None

    def run(self, native: str, circuits: list, shots: int, options: Any) -> Outcome:
        with self._lock:
            self._killed = False
            self._ensure()
            conn, process = self._conn, self._process
        message = None
        try:
            conn.send((native, circuits, shots, options))
            multiprocessing.connection.wait([conn, process.sentinel])
            if conn.poll():
                message = conn.recv()
        except (EOFError, OSError):
            message = None
        with self._lock:
            killed, closed = self._killed, self._closed
            if message is None or message[0] == "memory":
                self._discard()
        if message is None:
            if closed:
                raise Stopped()
            if killed:
                raise Cancelled()
            raise SimulationFailed(
                f"the simulation process died (exit code {process.exitcode}), most likely over its memory "
                f"budget of {self.budget_bytes // MIB} MiB"
            )
        kind, value = message
        if kind == "ok":
            return value
        if kind == "memory":
            raise SimulationFailed(
                f"the simulation ran out of its memory budget of {self.budget_bytes // MIB} MiB ({value})"
            )
        raise SimulationFailed(value)

    def kill(self) -> None:
        """Stop the simulation under way now (its result would be discarded anyway)."""
        with self._lock:
            self._killed = True
            if self._process is not None and self._process.is_alive():
                self._process.kill()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._discard()
