"""Board access: open the board once per process (re-creating a QickSoc reprograms the FPGA,
qick issue #205), and run programs on it with progress reporting and cancellation.

`--board sim` builds the simulated SoC in-process; `--board pyro://HOST:PORT/NAME` reaches a
board (real, or a simulated one served the same way) through qick's Pyro4 proxy. After
connecting, both go through the same `Board.acquire` path."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from qick import QickConfig

log = logging.getLogger(__name__)

PYRO_URI = re.compile(r"^pyro://(?P<host>[^:/]+):(?P<port>\d+)/(?P<name>[\w.\-]+)$")


class BoardError(RuntimeError):
    """The board could not be opened or refused a program."""


class RunCancelled(Exception):
    """Raised out of Board.acquire when the cancel flag was seen; `partial` holds the rounds done."""

    def __init__(self, partial: list | None, rounds_done: int):
        super().__init__("cancelled")
        self.partial = partial
        self.rounds_done = rounds_done


@dataclass
class Progress:
    rounds_done: int
    rounds_total: int
    shots_done: int  # shots completed across rounds
    shots_total: int
    reps_done: int = 0  # repetitions completed across rounds (shots / sweep points)

    @property
    def fraction(self) -> float:
        return self.shots_done / self.shots_total if self.shots_total else 0.0


ProgressFn = Callable[[Progress], None]
# Called between rounds with (rounds done, the data averaged over them: one array per readout,
# as prog.acquire returns it). Kept cheap for the board: a running sum, O(points) per round.
RoundFn = Callable[[int, list], None]


class _Watched:
    """Forwards every call to the SoC; counts shots as poll_data() returns them and aborts the
    round when the run is cancelled (the board is then stopped)."""

    def __init__(self, soc: Any, on_shots: Callable[[int], None], cancel: threading.Event):
        self._soc = soc
        self._on_shots = on_shots
        self._cancel = cancel

    def __getattr__(self, name: str) -> Any:
        return getattr(self._soc, name)

    def poll_data(self, totaltime=0.1, timeout=None):
        if self._cancel.is_set():
            raise _RoundAborted()
        data = self._soc.poll_data(totaltime=totaltime, timeout=timeout)
        n = sum(int(item[0]) for item in data)
        if n:
            self._on_shots(n)
        return data


class _RoundAborted(Exception):
    pass


def config_sha256(cfg: dict) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()


class Board:
    """One open board. `soc` is a SimSoc or a Pyro proxy; `soccfg` the QickConfig programs
    compile against."""

    def __init__(self, soc: Any, soccfg: QickConfig, uri: str, simulated: bool, extra: dict | None = None):
        self.soc = soc
        self.soccfg = soccfg
        self.uri = uri
        self.simulated = simulated
        self.extra = extra or {}
        cfg = soccfg.get_cfg()
        self.config_sha256 = config_sha256(cfg)
        self.model = str(cfg.get("board", "unknown"))
        self.generator_count = len(cfg.get("gens", []))
        self.readout_count = len(cfg.get("readouts", []))
        # stable identity: the lock file is named after it
        self.board_id = board_identity(uri)

    def acquire(
        self,
        prog: Any,
        rounds: int,
        cancel: threading.Event,
        progress: ProgressFn | None = None,
        on_round: RoundFn | None = None,
        **kwargs: Any,
    ) -> list:
        """prog.acquire() round by round: progress after every poll, cancellation between
        polls (the tProc is stopped) and between rounds. Raises RunCancelled with the
        average of the completed rounds. `on_round` gets the average so far after each round."""
        total_per_round = 1
        for n in prog.loop_dims:
            total_per_round *= int(n)
        state = {"rounds": 0, "shots": 0}
        reps = int(getattr(prog, "reps", 0) or total_per_round)
        points = max(1, total_per_round // max(1, reps))

        def report() -> None:
            if progress:
                progress(
                    Progress(
                        state["rounds"],
                        rounds,
                        state["shots"],
                        total_per_round * rounds,
                        state["shots"] // points,
                    )
                )

        def on_shots(n: int) -> None:
            state["shots"] += n
            report()

        if self.simulated:
            self.soc.sim_load_listing(prog.dump_prog())
        soc = _Watched(self.soc, on_shots, cancel)
        prog.acquire(soc, rounds=rounds, progress=False, step_rounds=True, **kwargs)
        sums: list | None = None
        summed = 0
        try:
            while True:
                if cancel.is_set():
                    raise _RoundAborted()
                more = prog.finish_round()
                state["rounds"] += 1
                report()
                if on_round is not None and prog.rounds_buf:
                    latest = prog.rounds_buf[-1]
                    if sums is None:
                        sums, summed = [np.array(d, dtype=float) for d in latest], 1
                    else:
                        sums, summed = [t + d for t, d in zip(sums, latest, strict=False)], summed + 1
                    try:
                        on_round(state["rounds"], [t / summed for t in sums])
                    except Exception:  # live output must never stop a run
                        log.exception("on_round failed")
                if not more:
                    break
                if cancel.is_set():
                    raise _RoundAborted()
                prog.prepare_round()
        except _RoundAborted:
            try:
                self.soc.stop_tproc()
            except Exception:  # the run is being abandoned anyway
                log.exception("stop_tproc after cancel failed")
            partial = prog._summarize_accumulated(prog.rounds_buf) if prog.rounds_buf else None
            raise RunCancelled(partial, state["rounds"]) from None
        return prog.finish_acquire()

    def describe(self) -> dict[str, Any]:
        return {
            "board_id": self.board_id,
            "board_uri": self.uri,
            "board_model": self.model,
            "config_sha256": self.config_sha256,
            "generator_count": self.generator_count,
            "readout_count": self.readout_count,
            "simulated": self.simulated,
            **self.extra,
        }


def board_identity(spec: str) -> str:
    """The board's stable id, known before connecting (lock files are named after it)."""
    if spec == "sim":
        from qsched_hardware.sim.soc import DEFAULT_BOARD_CONFIG

        cfg = json.loads(Path(DEFAULT_BOARD_CONFIG).read_text())
        return f"sim-{str(cfg.get('board', 'board')).lower()}-{config_sha256(cfg)[:12]}"
    if not PYRO_URI.match(spec):
        raise BoardError(f"--board must be 'sim' or pyro://HOST:PORT/NAME, got {spec!r}")
    return "pyro-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", spec.removeprefix("pyro://")).strip("-")


def open_board(spec: str, device_model: str | Path | None = None, hmac_key: str | None = None) -> Board:
    """`sim` or `pyro://HOST:PORT/NAME`."""
    if spec == "sim":
        from qsched_hardware.sim.soc import SimSoc

        soc = SimSoc(device=device_model)
        return Board(soc, soc, "sim", simulated=True, extra={"device_model": soc.device.source})
    match = PYRO_URI.match(spec)
    if not match:
        raise BoardError(f"--board must be 'sim' or pyro://HOST:PORT/NAME, got {spec!r}")
    from qsched_hardware.pyro import connect

    soc, soccfg = connect(match["host"], int(match["port"]), match["name"], hmac_key=hmac_key)
    try:
        info = soc.sim_info()
        simulated = bool(info.get("simulated"))
    except Exception:  # a real QickSoc has no sim_info
        simulated = False
    return Board(soc, soccfg, spec, simulated=simulated)
