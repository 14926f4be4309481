"""An interpreter for tProc v2 programs, at the level of qick's instruction listing.

qick compiles an `AveragerProgramV2` to a list of instruction dicts (`prog.prog_list`, the
ASM form, e.g. ``{'CMD': 'WPORT_WR', 'DST': '1', 'SRC': 'wmem', 'ADDR': '&1', 'TIME': '@0'}``)
and assembles that to machine code. The simulated board receives both through the ordinary
`load_bin_program` call plus the listing (see `SimSoc.sim_load_listing`), checks that the listing
assembles to exactly the binary it was given, and then runs the listing here.

The interpreter executes the control flow (registers, TEST flags, conditional jumps with
write-back, CALL/RET, wave-register arithmetic, WMEM_WR) and records the timed side effects:
wave-port writes (pulses and readout configurations) and trigger edges, with the reference
time accumulated by TIME instructions. It does not model the real-time dispatcher's queues; the
simulated board applies per-generator queueing when it turns port writes into pulses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MASK32 = 0xFFFFFFFF
# wave-register fields, in wave-memory order
WAVE_FIELDS = ("freq", "phase", "env", "gain", "length", "conf")
WAVE_WIDTHS = (4, 4, 3, 4, 4, 2)
MAX_STEPS = 20_000_000


class ProgramError(RuntimeError):
    """The program does something the simulated tProc cannot run."""


def to_int32(value: int) -> int:
    value &= MASK32
    return value - (1 << 32) if value & 0x80000000 else value


def decode_wave_row(row) -> list[int]:
    """One wave-memory entry (eight int32 words, as in binprog['wmem']) -> six unsigned fields."""
    import numpy as np

    raw = np.asarray(row, dtype=np.int64).astype(np.uint32).tobytes()
    packed = raw[:11] + raw[12:22]
    out, pos = [], 0
    for width in WAVE_WIDTHS:
        out.append(int.from_bytes(packed[pos : pos + width], "little", signed=False))
        pos += width
    return out


@dataclass(frozen=True)
class PortWrite:
    """A wave-port write: a waveform handed to generator/readout port `port` at `time` (tProc cycles)."""

    shot: int
    time: int
    port: int
    wave: tuple[int, ...]  # freq, phase, env, gain, length, conf (raw register values)


@dataclass(frozen=True)
class TriggerEdge:
    shot: int
    time: int
    port: int
    high: bool


@dataclass
class Trace:
    """What one execution of a program did."""

    writes: list[PortWrite] = field(default_factory=list)
    triggers: list[TriggerEdge] = field(default_factory=list)
    shots: int = 0  # increments of the shot counter
    steps: int = 0


_REG = re.compile(r"^(s|r|w)(\d+)$")
_TIME = re.compile(r"^@(-?\d+)$")


class TprocInterpreter:
    """Runs one program listing. `counter_reg` is the register the program counts shots in
    (s12 for `s_core_w1`, qick's counter address 1)."""

    SPECIAL_LABELS = ("PREV", "HERE", "NEXT", "SKIP")

    def __init__(self, prog_list: list[dict], labels: dict[str, str], wmem: list[list[int]]):
        self.prog = sorted(prog_list, key=lambda inst: inst["P_ADDR"])
        self.by_addr = {inst["P_ADDR"]: i for i, inst in enumerate(self.prog)}
        self.labels = {name: int(str(addr).lstrip("&")) for name, addr in labels.items()}
        self.wmem_init = [decode_wave_row(row) for row in wmem]

    # -- helpers --------------------------------------------------------------------------------
    def label_addr(self, inst: dict, label: str) -> int:
        if label in self.labels:
            return self.labels[label]
        here = inst["P_ADDR"]
        offsets = {"PREV": -1, "HERE": 0, "NEXT": 1, "SKIP": 2}
        if label in offsets:
            return here + offsets[label]
        raise ProgramError(f"unknown label {label!r}")

    def run(
        self, counter_reg: str = "s12", loop_overrides: dict[str, int] | None = None, max_shots: int = 0
    ) -> Trace:
        """Execute from address 0. `loop_overrides` maps a loop label to the iteration count to
        run instead of the compiled one (the board uses it to run one pass of the repetitions
        loop, which is identical on every pass)."""
        regs: dict[str, int] = {}
        wregs = [0] * 6
        wmem = [list(row) for row in self.wmem_init]
        flags = {"Z": False, "S": False}
        stack: list[int] = []
        ref = 0
        trace = Trace()
        tests = self._loop_tests(loop_overrides or {})
        pc = 0
        n = len(self.prog)
        steps = 0

        def get(name: str) -> int:
            name = name.strip()
            if name.startswith("#"):
                return int(name[1:])
            if name.startswith("&"):
                return int(name[1:])
            m = _REG.match(name)
            if not m:
                raise ProgramError(f"cannot read operand {name!r}")
            if m.group(1) == "w":
                return to_int32(wregs[int(m.group(2))])
            if name == "s11":  # the current time register
                return ref
            return regs.get(name, 0)

        def put(name: str, value: int) -> None:
            name = name.strip()
            if name == "r_wave":
                raise ProgramError("r_wave is written only from wave memory")
            m = _REG.match(name)
            if not m:
                raise ProgramError(f"cannot write register {name!r}")
            if m.group(1) == "w":
                wregs[int(m.group(2))] = value & MASK32
            else:
                regs[name] = to_int32(value)

        def evaluate(op: str) -> int:
            parts = op.replace("-op(", "").replace(")", "").split()
            if len(parts) == 1:
                return get(parts[0])
            if len(parts) == 2:
                unary, arg = parts
                if unary == "ABS":
                    return abs(get(arg))
                if unary == "NOT":
                    return ~get(arg)
                raise ProgramError(f"unsupported operation {op!r}")
            a, operator, b = parts
            x, y = get(a), get(b)
            if operator == "+":
                return x + y
            if operator == "-":
                return x - y
            if operator == "AND":
                return x & y
            if operator == "OR":
                return x | y
            if operator == "XOR":
                return x ^ y
            if operator == "SL":
                return x << y
            if operator in ("SR", "ASR"):
                return x >> y if operator == "ASR" else (x & MASK32) >> y
            raise ProgramError(f"unsupported operation {op!r}")

        def condition(cond: str | None) -> bool:
            if cond in (None, "1"):
                return True
            if cond == "Z":
                return flags["Z"]
            if cond == "NZ":
                return not flags["Z"]
            if cond == "S":
                return flags["S"]
            if cond == "NS":
                return not flags["S"]
            if cond == "0":
                return False
            raise ProgramError(f"unsupported condition {cond!r}")

        def time_of(inst: dict) -> int:
            spec = inst.get("TIME")
            if spec is None:
                return ref
            m = _TIME.match(str(spec).strip())
            if m:
                return ref + int(m.group(1))
            raise ProgramError(f"unsupported time operand {spec!r}")

        def wave_addr(spec: str) -> int:
            spec = str(spec).strip().strip("[]")
            if spec.startswith("&"):
                return int(spec[1:])
            return get(spec)

        while 0 <= pc < n:
            steps += 1
            if steps > MAX_STEPS:
                raise ProgramError("program did not finish (step limit reached)")
            inst = self.prog[pc]
            cmd = inst["CMD"]
            jump_to: int | None = None
            if cmd == "NOP" or cmd == "WAIT" or cmd == "DPORT_WR" or cmd == "FLAG":
                pass
            elif cmd == "REG_WR":
                if condition(inst.get("IF")):
                    src = inst["SRC"]
                    dst = inst["DST"]
                    if src == "imm":
                        put(dst, int(str(inst["LIT"]).lstrip("#")))
                    elif src == "op":
                        put(dst, evaluate(inst["OP"]))
                    elif src == "label":
                        put(
                            dst,
                            self.label_addr(inst, inst["LABEL"]) if "LABEL" in inst else get(inst["ADDR"]),
                        )
                    elif src == "wmem":
                        addr = wave_addr(inst["ADDR"])
                        wregs[:] = list(wmem[addr])
                    else:
                        raise ProgramError(f"unsupported REG_WR source {src!r}")
                    if dst == "s_core_w1" or dst == counter_reg:
                        trace.shots = max(trace.shots, regs.get(counter_reg, 0))
            elif cmd == "TIME":
                op = inst.get("C_OP")
                value = int(str(inst["LIT"]).lstrip("#")) if "LIT" in inst else get(inst["R1"])
                if op == "inc_ref":
                    ref += value
                elif op == "set_ref":
                    ref = value
                elif op == "rst":
                    ref = 0
                else:
                    raise ProgramError(f"unsupported TIME operation {op!r}")
            elif cmd == "WPORT_WR":
                if inst.get("SRC", "wmem") == "wmem":
                    wave = tuple(wmem[wave_addr(inst["ADDR"])])
                else:
                    wave = tuple(wregs)
                trace.writes.append(
                    PortWrite(regs.get(counter_reg, 0), time_of(inst), int(inst["DST"]), wave)
                )
            elif cmd == "TRIG":
                high = inst["SRC"] == "set"
                trace.triggers.append(
                    TriggerEdge(regs.get(counter_reg, 0), time_of(inst), int(inst["DST"]), high)
                )
            elif cmd == "WMEM_WR":
                addr = wave_addr(inst.get("DST", inst.get("ADDR")))
                while len(wmem) <= addr:
                    wmem.append([0] * 6)
                wmem[addr] = list(wregs)
            elif cmd == "TEST":
                result = tests[pc](get) if pc in tests else evaluate(inst["OP"])
                result = to_int32(result)
                flags["Z"] = result == 0
                flags["S"] = result < 0
            elif cmd in ("JUMP", "CALL"):
                target = (
                    self.label_addr(inst, inst["LABEL"]) if inst.get("LABEL") else wave_addr(inst["ADDR"])
                )
                taken = condition(inst.get("IF"))
                if "WR" in inst:
                    reg, _, source = str(inst["WR"]).partition(" ")
                    put(reg, evaluate(inst["OP"]) if source.strip() == "op" else int(inst["LIT"].lstrip("#")))
                if taken:
                    if cmd == "CALL":
                        stack.append(inst["P_ADDR"] + 1)
                    if target == inst["P_ADDR"]:  # END: jump to itself
                        break
                    jump_to = target
            elif cmd == "RET":
                if not stack:
                    raise ProgramError("RET without CALL")
                jump_to = stack.pop()
            else:
                raise ProgramError(f"the simulated tProc does not implement {cmd}")
            if jump_to is not None:
                if jump_to not in self.by_addr:
                    break  # jumped past the end of the program
                pc = self.by_addr[jump_to]
            else:
                pc += 1
            if max_shots and regs.get(counter_reg, 0) >= max_shots:
                break
        trace.shots = regs.get(counter_reg, 0)
        trace.steps = steps
        return trace

    # -- loop structure -------------------------------------------------------------------------
    def loops(self) -> dict[str, tuple[int, int, int]]:
        """Loops closed by the `TEST rN - #K` + conditional JUMP pattern qick's loops compile to:
        label -> (test index, label address, compiled count)."""
        out: dict[str, tuple[int, int, int]] = {}
        for i, inst in enumerate(self.prog[:-1]):
            nxt = self.prog[i + 1]
            if inst["CMD"] != "TEST" or nxt["CMD"] != "JUMP" or nxt.get("IF") != "NZ":
                continue
            parts = inst["OP"].replace("-op(", "").replace(")", "").split()
            if len(parts) != 3 or parts[1] != "-" or not parts[2].startswith("#"):
                continue
            # the jump target is the label written to s15 just before the TEST
            prev = self.prog[i - 1] if i else {}
            label = prev.get("LABEL") if prev.get("CMD") == "REG_WR" and prev.get("SRC") == "label" else None
            if label and label in self.labels:
                out[label] = (i, self.labels[label], int(parts[2][1:]) + 1)
        return out

    def _loop_tests(self, overrides: dict[str, int]):
        tests = {}
        loops = self.loops()
        for label, count in overrides.items():
            if label not in loops:
                raise ProgramError(f"no loop labelled {label!r}")
            index = loops[label][0]
            parts = self.prog[index]["OP"].replace("-op(", "").replace(")", "").split()
            reg = parts[0]
            tests[index] = lambda get, reg=reg, count=count: get(reg) - (count - 1)
        return tests
