"""SimSoc: a QickConfig that implements the SoC calls qick's acquire() path makes, and fills
the readout buffers from the physics model.

What happens on `acquire()` (qick 0.2.436, tProc v2): start_src, stop_tproc, load_envelope...,
set_nyquist..., load_bin_program, config_avg, enable_buf, reload_mem, clear_tproc_counter,
prepare_round, start_src, start_readout, start_tproc, poll_data..., cleanup_round.

The board runs the program it was given. Because qick publishes no disassembler for tProc v2
machine code, the program listing (qick's own `dump_prog()` serialisation: the instruction
list, labels and declared channels) is handed over with `sim_load_listing()` before
`acquire()`; the board re-assembles that listing with qick's assembler and refuses to run
unless it is bit-identical to the binary loaded through `load_bin_program()`. Wave memory is
taken from the loaded binary. The listing is then interpreted (sim/tproc.py) shot by shot."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from qick import QickConfig
from qick.tprocv2_assembler import Assembler

from qsched_hardware.sim.device import DeviceModel, load_device_model
from qsched_hardware.sim.physics import Drive, ReadoutChain, Tone, Transmon
from qsched_hardware.sim.tproc import PortWrite, ProgramError, TprocInterpreter, to_int32

log = logging.getLogger(__name__)
DEFAULT_BOARD_CONFIG = Path(__file__).with_name("qick_zcu216_tprocv2.json")
POLL_CHUNKS = 10  # a round's data is handed out in about this many poll_data() calls


class SimulationError(RuntimeError):
    """The simulated board cannot run what it was given."""


def _signed16(value: int) -> int:
    value &= 0xFFFF
    return value - 0x10000 if value & 0x8000 else value


class SimSoc(QickConfig):
    """A simulated tProc v2 board. `board_config` is a QickConfig dump (default: the shipped
    ZCU216 tProc v2 dump); `device` is the physics model (default: sim/default_device.yml)."""

    def __init__(
        self,
        board_config: str | Path | dict | None = None,
        device: DeviceModel | str | Path | None = None,
    ):
        cfg = (
            board_config
            if isinstance(board_config, dict)
            else json.loads(Path(board_config or DEFAULT_BOARD_CONFIG).read_text())
        )
        super().__init__(copy.deepcopy(cfg))
        if not isinstance(device, DeviceModel):
            device = load_device_model(device)
        self.device = device
        self.transmon = Transmon(device)
        self._pi_gain = device.qubit.pi_gain
        self.chain = ReadoutChain(device)
        self.rng = np.random.default_rng(device.seed)
        self._lock = threading.RLock()
        self._envelopes: dict[int, np.ndarray] = {}
        self._nyquist: dict[int, int] = {}
        self._mixer: dict[int, float] = {}
        self._avg_len: dict[int, int] = {}
        self._binprog: dict | None = None
        self._listing: dict | None = None
        self._verified_for: str = ""
        self._counter = 0
        self._total = 0
        self._pending: list[tuple[int, tuple[list[np.ndarray], tuple]]] = []
        self._chunk_delay_s = 0.0
        self._running = False
        self.rounds_run = 0
        # test hook: called at the start of every round (e.g. to hold a round until released)
        self.on_round: Callable[[], None] | None = None

    # ---- identity ------------------------------------------------------------------------------
    def sim_info(self) -> dict[str, Any]:
        return {"simulated": True, "device_model": self.device.source, "seed": self.device.seed}

    # ---- program loading ---------------------------------------------------------------------------
    def sim_load_listing(self, progdict: dict) -> None:
        """The program's listing (qick `dump_prog()` form), checked against the loaded binary."""
        with self._lock:
            self._listing = progdict
            self._verified_for = ""

    def load_bin_program(self, binprog, load_mem=True):
        with self._lock:
            self._binprog = copy.deepcopy(binprog)
            self._verified_for = ""

    def reload_mem(self):
        pass

    def load_mem(self, data, mem_sel="dmem", addr=0):
        pass

    def start_src(self, src):
        if src not in ("internal", "external"):
            raise ValueError(f"start source must be internal or external, not {src!r}")

    def stop_tproc(self, lazy=False):
        with self._lock:
            self._running = False
            self._pending.clear()

    def clear_tproc_counter(self, addr):
        with self._lock:
            self._counter = 0

    def get_tproc_counter(self, addr):
        with self._lock:
            return self._counter

    def prepare_round(self):
        pass

    def cleanup_round(self):
        pass

    # ---- generators -------------------------------------------------------------------------------
    def load_envelope(self, ch, data, addr):
        gen = self["gens"][ch]
        arr = np.asarray(data, dtype=np.float64).reshape(-1, 2)
        maxlen = int(gen.get("maxlen") or 65536)
        if addr + len(arr) > maxlen:
            raise SimulationError(f"envelope at {addr}+{len(arr)} exceeds generator {ch} memory ({maxlen})")
        mem = self._envelopes.setdefault(ch, np.zeros(maxlen, dtype=np.complex128))
        mem[addr : addr + len(arr)] = arr[:, 0] + 1j * arr[:, 1]

    def load_weights(self, ch, data, addr=0):
        pass

    def set_nyquist(self, ch, nqz, force=False):
        if nqz not in (1, 2):
            raise ValueError("nqz must be 1 or 2")
        self._nyquist[ch] = nqz

    def set_mixer_freq(self, ch, f, ro_ch=None, phase_reset=True, fullscale=False):
        self._mixer[ch] = float(f)

    def config_mux_gen(self, ch, tones):
        raise SimulationError("the simulated board has no multiplexed generators wired to the device")

    # ---- readouts ---------------------------------------------------------------------------------
    def configure_readout(self, ch, ro_regs):
        pass

    def config_mux_readout(self, pfbpath, cfgs, sel=None):
        pass

    def config_avg(self, ch, address=0, length=1, edge_counting=False, high_threshold=1000, low_threshold=0):
        self._avg_len[ch] = int(length)

    def config_buf(self, ch, address=0, length=1):
        pass

    def enable_buf(self, ch, enable_avg=True, enable_buf=True):
        pass

    def start_readout(self, total_shots, counter_addr=1, ch_list=None, reads_per_shot=1, stride=None):
        if self.on_round is not None:
            self.on_round()
        self._drift()
        ch_list = list(ch_list if ch_list is not None else [0, 1])
        if isinstance(reads_per_shot, int):
            reads_per_shot = [reads_per_shot] * len(ch_list)
        data, duration_s = self._simulate(int(total_shots), ch_list, list(reads_per_shot))
        chunks = max(1, min(POLL_CHUNKS, total_shots))
        bounds = np.linspace(0, total_shots, chunks + 1).astype(int)
        pending = []
        for a, b in itertools.pairwise(bounds):
            if b <= a:
                continue
            accs = [d[a * r : b * r] for d, r in zip(data, reads_per_shot, strict=False)]
            pending.append((int(b - a), (accs, (0, 0, 0))))
        with self._lock:
            self._pending = pending
            self._total = int(total_shots)
            self._chunk_delay_s = duration_s * self.device.realtime_factor / max(1, len(pending))
        self.rounds_run += 1

    def start_tproc(self):
        with self._lock:
            self._running = True
            if not self._pending and self._total == 0:
                # no streaming readout (run_rounds / decimated): the program runs to completion
                self._counter = 2**31 - 1

    def poll_data(self, totaltime=0.1, timeout=None):
        with self._lock:
            if not self._pending:
                return []
            item = self._pending.pop(0)
            delay = self._chunk_delay_s
            self._counter += item[0]
            if not self._pending:
                self._total = 0
        if delay > 0:
            time.sleep(delay)  # the simulated hardware's own pace, not synchronisation
        return [item]

    def get_decimated(self, ch, address=0, length=None):
        length = int(length or 1)
        noise = self.chain.noise_std(1.0) * 0.1
        return np.round(self.rng.normal(0, noise, size=(length, 2))).astype(np.int64)

    def get_accumulated(self, ch, address=0, length=None):
        length = int(length or 1)
        return np.zeros((length, 2), dtype=np.int64)

    # ---- drift ----------------------------------------------------------------------------------------
    def sim_truth(self) -> dict[str, float]:
        """The device's true drifting parameters now (what a perfect calibration would find)."""
        self._drift()
        return {"qubit_frequency_mhz": self.transmon.f_q, "pi_gain": self._pi_gain}

    def _drift(self) -> None:
        """Move the transmon to where the drift has taken it (once per round: a round is short
        against the drift's hours)."""
        drift = self.device.drift
        q = self.device.qubit
        if drift is None:
            self._pi_gain = q.pi_gain
            return
        offsets = drift.offsets()
        pi_gain = max(1e-3, q.pi_gain + offsets.get("pi_gain", 0.0))
        with self._lock:
            self.transmon.f_q = q.frequency_mhz + offsets.get("qubit_frequency_mhz", 0.0)
            self.transmon.rabi_full = dataclasses.replace(q, pi_gain=pi_gain).rabi_mhz_full_gain()
            self._pi_gain = pi_gain

    # ---- the simulation ---------------------------------------------------------------------------
    def _verify(self) -> dict:
        if self._binprog is None:
            raise SimulationError("no program loaded (load_bin_program was not called)")
        if self._listing is None:
            raise SimulationError(
                "the simulated board needs the program listing: call sim_load_listing(prog.dump_prog()) "
                "before acquire() (qsched_hardware.board.Board.acquire does this)"
            )
        key = hashlib.sha256(json.dumps(self._binprog["pmem"], default=int).encode()).hexdigest()
        if self._verified_for != key:
            _, pmem = Assembler.list2bin(
                copy.deepcopy(self._listing["prog_list"]), dict(self._listing["labels"])
            )
            if [list(map(int, row)) for row in pmem] != [
                list(map(int, row)) for row in self._binprog["pmem"]
            ]:
                raise SimulationError("the program listing does not match the loaded binary")
            self._verified_for = key
        return self._listing

    def _simulate(self, total_shots: int, ch_list: list[int], reads: list[int]):
        with self._lock:
            listing = self._verify()
            wmem = self._binprog.get("wmem") or []
        try:
            interp = TprocInterpreter(listing["prog_list"], listing["labels"], wmem)
            loops = interp.loops()
            factor, outer = 1, True
            overrides: dict[str, int] = {}
            if "reps" in loops and loops["reps"][2] > 1:
                factor = loops["reps"][2]
                overrides["reps"] = 1
                addrs = [v[1] for v in loops.values()]
                outer = loops["reps"][1] == min(addrs)
            trace = interp.run(loop_overrides=overrides)
        except ProgramError as exc:
            raise SimulationError(f"simulated tProc: {exc}") from exc
        unique = trace.shots
        if unique * factor != total_shots:
            raise SimulationError(
                f"the program counts {unique * factor} shots but the readout expects {total_shots}"
            )
        f_time = float(self["tprocs"][0]["f_time"])
        wiring = self.device.wiring
        gens = {int(k) for k in listing.get("gen_chs", {})} or {wiring.qubit_gen, wiring.readout_gen}
        port_to_gen = {int(self["gens"][g]["tproc_ch"]): g for g in gens if g < len(self["gens"])}
        # tProc-configured readouts share a wave port and are told apart by the tmux channel in
        # the waveform's conf field (bits 8 and up)
        port_to_ro: dict[tuple[int, int], int] = {}
        for i, r in enumerate(self["readouts"]):
            if "tproc_ctrl" in r:
                port_to_ro[(int(r["tproc_ctrl"]), int(r.get("tmux_ch") or 0))] = i
        trig_to_ro = {int(r["trigger_port"]): i for i, r in enumerate(self["readouts"])}

        # group events per shot
        writes: list[list[PortWrite]] = [[] for _ in range(unique)]
        for w in trace.writes:
            if 0 <= w.shot < unique:
                writes[w.shot].append(w)
        trigs: list[list] = [[] for _ in range(unique)]
        for t in trace.triggers:
            if t.high and 0 <= t.shot < unique:
                trigs[t.shot].append(t)

        nmeas = {ch: r for ch, r in zip(ch_list, reads, strict=False)}
        sig_g = {ch: np.zeros((unique, r), complex) for ch, r in nmeas.items()}
        sig_e = {ch: np.zeros((unique, r), complex) for ch, r in nmeas.items()}
        p_e = {ch: np.zeros((unique, r)) for ch, r in nmeas.items()}
        sigma = {ch: np.zeros((unique, r)) for ch, r in nmeas.items()}
        shot_span_us = 0.0
        for j in range(unique):
            pulses, ro_cfgs = self._pulses(writes[j], port_to_gen, port_to_ro, f_time)
            t_first = min([p[1].t0_us for p in pulses] + [t.time / f_time for t in trigs[j]] or [0.0])
            drives = [p[1] for p in pulses if p[0] == wiring.qubit_gen and isinstance(p[1], Drive)]
            tones = [p[1] for p in pulses if p[0] == wiring.readout_gen and isinstance(p[1], Tone)]
            counts = dict.fromkeys(nmeas, 0)
            for trig in sorted(trigs[j], key=lambda t: t.time):
                ro = trig_to_ro.get(trig.port)
                if ro not in nmeas:
                    continue
                k = counts[ro]
                counts[ro] += 1
                if k >= nmeas[ro]:
                    raise SimulationError(f"more readout triggers on readout {ro} than reads_per_shot")
                t_us = trig.time / f_time
                window_us = self.cycles2us(self._avg_len.get(ro, 1), ro_ch=ro)
                sigma[ro][j, k] = self.chain.noise_std(window_us)
                if ro != wiring.readout_ro:
                    continue
                tone = self._tone_in_window(tones, t_us, window_us)
                t_probe = tone.t0_us if tone is not None else t_us
                p_e[ro][j, k] = self.transmon.excited_population(drives, t_probe, t_first)
                cfg = self._ro_config_at(ro_cfgs.get(ro, []), t_us)
                offset, ro_phase = self._demod(ro, cfg, tone)
                g, e = self.chain.signal(tone, t_us, window_us, offset, ro_phase)
                sig_g[ro][j, k], sig_e[ro][j, k] = g, e
            for ro, n in counts.items():
                if n != nmeas[ro]:
                    raise SimulationError(f"readout {ro}: {n} triggers per shot, but {nmeas[ro]} expected")
            if writes[j] or trigs[j]:
                last = max([w.time for w in writes[j]] + [t.time for t in trigs[j]])
                shot_span_us = max(shot_span_us, last / f_time)

        out = []
        draws = self.rng.random((factor, unique))
        for ch in ch_list:
            excited = draws[:, :, None] < p_e[ch][None, :, :]
            iq = np.where(excited, sig_e[ch][None], sig_g[ch][None])
            noise = sigma[ch][None] * (
                self.rng.standard_normal(iq.shape) + 1j * self.rng.standard_normal(iq.shape)
            )
            iq = iq + noise
            if not outer:
                iq = np.swapaxes(iq, 0, 1)
            length = self._avg_len.get(ch, 1)
            offset = float(self["readouts"][ch].get("iq_offset", 0.0))
            flat = iq.reshape(-1)
            acc = np.empty((flat.size, 2), dtype=np.int64)
            acc[:, 0] = np.round((flat.real + offset) * length)
            acc[:, 1] = np.round((flat.imag + offset) * length)
            out.append(acc)
        duration_s = shot_span_us * 1e-6 * factor
        return out, duration_s

    def _pulses(self, writes: list[PortWrite], port_to_gen, port_to_ro, f_time):
        """Turn port writes into pulses (per-generator queue) and readout configurations."""
        busy: dict[int, float] = {}
        pulses: list[tuple[int, Drive | Tone]] = []
        ro_cfgs: dict[int, list[tuple[float, tuple]]] = {}
        for w in sorted(writes, key=lambda w: w.time):
            t_us = w.time / f_time
            if w.port in port_to_gen:
                gen = port_to_gen[w.port]
                pulse = self._gen_pulse(gen, w.wave, max(t_us, busy.get(gen, -math.inf)))
                if pulse is None:
                    continue
                busy[gen] = pulse.t0_us + pulse.duration_us
                pulses.append((gen, pulse))
            elif (w.port, w.wave[5] >> 8) in port_to_ro:
                ro_cfgs.setdefault(port_to_ro[(w.port, w.wave[5] >> 8)], []).append((t_us, w.wave))
        return pulses, ro_cfgs

    def _gen_pulse(self, gen: int, wave: tuple, t0: float) -> Drive | Tone | None:
        cfg = self["gens"][gen]
        freq_reg, phase_reg, env_addr, gain_reg, length_reg, conf = wave
        length = length_reg & 0xFFFF
        duration = self.cycles2us(length, gen_ch=gen)
        outsel = conf & 0b11
        gain = _signed16(gain_reg) / float(cfg["maxv"])
        if cfg.get("has_mixer"):
            freq = self.reg2freq(to_int32(freq_reg), gen_ch=gen) + self._mixer.get(gen, 0.0)
        else:
            freq = self.reg2freq(freq_reg & 0xFFFFFFFF, gen_ch=gen)
        phase = math.radians(self.reg2deg(phase_reg & 0xFFFFFFFF, gen_ch=gen))
        # output outside the selected Nyquist zone is strongly attenuated
        fs = float(cfg["fs"])
        zone = 1 if (freq % fs) < fs / 2 else 2
        if cfg.get("interpolation", 1) == 1 and self._nyquist.get(gen, zone) != zone:
            gain *= 0.1
        if outsel == 3 or length == 0:
            return None
        if outsel == 2:  # envelope only, no carrier: nothing near the device's frequencies
            return None
        if outsel == 1:  # DDS only: constant envelope
            envelope = np.array([complex(gain)])
        else:
            spc = int(cfg.get("samps_per_clk") or 1)
            mem = self._envelopes.get(gen)
            if mem is None:
                raise SimulationError(f"generator {gen} plays an envelope that was never loaded")
            samples = mem[(env_addr & 0xFFFFFF) * spc : ((env_addr & 0xFFFFFF) + length) * spc]
            envelope = samples / float(cfg["maxv"]) * gain
        if gen == self.device.wiring.readout_gen:
            return Tone(t0, duration, freq, phase, complex(np.mean(envelope)))
        return Drive(t0, duration, freq, phase, envelope)

    @staticmethod
    def _tone_in_window(tones: list[Tone], t_us: float, window_us: float) -> Tone | None:
        best, best_overlap = None, 0.0
        for tone in tones:
            overlap = min(tone.t0_us + tone.duration_us, t_us + window_us) - max(tone.t0_us, t_us - 1.0)
            if overlap > best_overlap:
                best, best_overlap = tone, overlap
        return best

    @staticmethod
    def _ro_config_at(cfgs: list[tuple[float, tuple]], t_us: float) -> tuple | None:
        chosen = None
        for t, wave in cfgs:
            if t <= t_us + 1e-9:
                chosen = wave
        return chosen

    def _demod(self, ro: int, cfg: tuple | None, tone: Tone | None) -> tuple[float, float]:
        """Offset (MHz) between the tone and the readout's demodulation frequency, and the
        readout's phase (rad)."""
        rocfg = self["readouts"][ro]
        if cfg is None:
            if "tproc_ctrl" in rocfg:
                return 1e3, 0.0  # never configured: demodulating at an arbitrary frequency
            return 0.0, 0.0
        if tone is None:
            return 0.0, 0.0
        freq_reg, phase_reg = cfg[0], cfg[1]
        bits = int(rocfg["b_dds"])
        f_dds = float(rocfg["f_dds"])
        expected = self.freq2reg_adc(tone.freq_mhz, ro_ch=ro)
        best = math.inf
        for sign in (-1, 1):  # tProc v2 flips the downconversion sign
            diff = (freq_reg - sign * expected) % (1 << bits)
            if diff >= 1 << (bits - 1):
                diff -= 1 << bits
            best = min(best, abs(diff) * f_dds / (1 << bits), key=abs)
        phase = math.radians(self.reg2deg(phase_reg & 0xFFFFFFFF, gen_ch=None, ro_ch=ro))
        return best, phase
