"""Faults the simulator can inject beyond the rig's (power, reset, hang at the next wait):

- a lossy link: bytes on the virtual wire dropped, duplicated, reordered or corrupted, at
  seeded, configurable rates, in either direction (`pumpsim --lossy SPEC`, or the control
  command {"cmd": "lossy", "spec": SPEC} at run time);
- a hang anywhere in a turn of the firmware's loop: the firmware blocks inside one of its
  calls into the fake MicroPython modules (a pin, an ADC, the PIO, the clock, the link, a
  flash write...) until the watchdog resets it ({"cmd": "hang_at", ...}), and a trace of the
  distinct points a turn goes through ({"cmd": "trace_turns", ...}) to pick them from.

A point is the firmware's own call stack down to the fake it calls, e.g.
"Loop.run:104 > Loop.once:128 > Stepper.step:84 > Pin.value": two calls of the same fake from
different lines are different points. A turn of the loop ends where the firmware feeds the
watchdog (loop.py: only after a turn that finished), so "the next turn" starts at the next feed.

SPEC: comma-separated key=value: drop, dup, reorder, corrupt (each a probability per byte,
0..1), seed (int), dir (both, in = host to pump, out = pump to host); "off" or "" for none.
E.g. "drop=0.002,dup=0.002,reorder=0.002,corrupt=0.002,seed=7".
"""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hil.sim.simulator import Simulator

FIRMWARE_DIR = str(Path(__file__).resolve().parents[2] / "firmware")
COMMANDS = ("lossy", "hang_at", "trace_turns")
DIRECTIONS = ("both", "in", "out")
TRACE_TURNS_KEPT = 64  # whole turns kept by a trace (each a list of points), oldest dropped


# -- the lossy link --------------------------------------------------------------------------


@dataclass(frozen=True)
class LossSpec:
    drop: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    seed: int = 0
    dir: str = "both"

    @property
    def total(self) -> float:
        return self.drop + self.dup + self.reorder + self.corrupt


def parse_spec(text: str | None) -> LossSpec:
    """A LossSpec from "drop=0.01,dup=0.01,reorder=0.01,corrupt=0.01,seed=7,dir=both"."""
    text = (text or "").strip()
    if text in ("", "off", "none"):
        return LossSpec()
    kw: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise ValueError(f"lossy spec: {part!r} is not key=value")
        if key in ("drop", "dup", "reorder", "corrupt"):
            rate = float(value)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"lossy spec: {key} is a probability (0..1), not {value}")
            kw[key] = rate
        elif key == "seed":
            kw[key] = int(value)
        elif key == "dir":
            if value not in DIRECTIONS:
                raise ValueError(f"lossy spec: dir is one of {DIRECTIONS}, not {value!r}")
            kw[key] = value
        else:
            raise ValueError(f"lossy spec: unknown key {key!r} (drop, dup, reorder, corrupt, "
                             "seed, dir)")
    spec = LossSpec(**kw)
    if spec.total > 1.0:
        raise ValueError("lossy spec: the rates add up to more than 1")
    return spec


class LossyLink:
    """Mangles the bytes of each chunk that crosses the virtual wire, byte by byte: each is
    dropped, duplicated, held back (reordered: it goes out after the next byte in the same
    direction, which may be in the next chunk) or has one bit flipped, with the spec's
    probabilities, from one seeded generator (the same traffic gives the same faults)."""

    def __init__(self, spec: LossSpec):
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self._held = {True: bytearray(), False: bytearray()}
        self.stats = {f"{d}_{k}": 0 for d in ("in", "out")
                      for k in ("bytes", "dropped", "duplicated", "reordered", "corrupted")}

    def applies(self, inbound: bool) -> bool:
        d = self.spec.dir
        return d == "both" or (d == "in") == inbound

    def mangle(self, data: bytes, inbound: bool) -> bytes:
        """What arrives at the other end of the wire when `data` is sent (inbound: from the
        host to the pump)."""
        side = "in" if inbound else "out"
        self.stats[side + "_bytes"] += len(data)
        held = self._held[inbound]
        if not self.applies(inbound) or not self.spec.total:
            if not held:
                return data
            out = bytearray(data[:1]) + held + data[1:]
            held.clear()
            return bytes(out)
        s = self.spec
        drop, dup, reorder = s.drop, s.drop + s.dup, s.drop + s.dup + s.reorder
        corrupt = reorder + s.corrupt
        rng = self.rng
        out = bytearray()
        for b in data:
            r = rng.random()
            if r < drop:
                self.stats[side + "_dropped"] += 1
                continue
            if r < dup:
                self.stats[side + "_duplicated"] += 1
                out.append(b)
            elif r < reorder:
                self.stats[side + "_reordered"] += 1
                held.append(b)
                continue
            elif r < corrupt:
                self.stats[side + "_corrupted"] += 1
                b ^= 1 << rng.randrange(8)
            out.append(b)
            if held:  # what was held back goes out after this byte
                out += held
                held.clear()
        return bytes(out)

    def report(self) -> dict[str, Any]:
        return {"spec": asdict(self.spec), **self.stats}


# -- a hang anywhere in a turn ---------------------------------------------------------------


class TurnPoints:
    """Watches the firmware's calls into the fakes, turn by turn (a turn ends at a watchdog
    feed). Traces the distinct points; armed, hangs the firmware at one of them until the
    watchdog (or a reset, or a power cut) ends it, as a loop stuck there would."""

    def __init__(self, sim: Simulator):
        self.sim = sim
        self.lock = threading.Lock()
        self.tracing = False
        self.seen: dict[str, int] = {}  # point -> turns it was reached in, while tracing
        self.turns: list[list[str]] = []
        self.turns_traced = 0
        self.armed = False
        self.point: str | None = None  # hang at this point ...
        self.nth = 1  # ... at its nth call within a turn
        self.call = 0  # or at the call-th fake call of a turn
        self.counting = False  # armed, and the next turn has started
        self.count = 0
        self.occurrences: dict[str, int] = {}
        self.this_turn: list[str] = []
        self.fired: str | None = None  # where the last armed hang happened
        self.fired_call = 0

    @property
    def watching(self) -> bool:
        return self.tracing or self.armed

    def arm(self, point: str | None, call: int, nth: int) -> None:
        with self.lock:
            self.point, self.call, self.nth = point, call, nth
            self.armed = True
            self.counting = False  # from the next feed on
            self.fired = None
            self.fired_call = 0

    def disarm(self) -> None:
        with self.lock:
            self.armed = self.counting = False

    def trace(self, on: bool) -> None:
        with self.lock:
            if on:
                self.seen = {}
                self.turns = []
                self.turns_traced = 0
                self.this_turn = []
            elif self.tracing:  # the turn under way counts as far as it went
                for p in set(self.this_turn):
                    self.seen[p] = self.seen.get(p, 0) + 1
            self.tracing = on

    def fed(self) -> None:
        """The firmware fed the watchdog: a turn ended, the next one starts."""
        with self.lock:
            if self.tracing and self.this_turn:
                self.turns_traced += 1
                for p in set(self.this_turn):
                    self.seen[p] = self.seen.get(p, 0) + 1
                self.turns.append(self.this_turn)
                del self.turns[:-TRACE_TURNS_KEPT]
            self.this_turn = []
            self.count = 0
            self.occurrences = {}
            if self.armed:
                self.counting = True

    def reached(self, fake: str) -> None:
        """The firmware called `fake` (in its own thread)."""
        point = _point(fake)
        if " > " not in point:
            return  # not the firmware's call (the rig's, the plant's)
        with self.lock:
            if self.tracing:
                self.this_turn.append(point)
            if not self.counting:
                return
            self.count += 1
            n = self.occurrences[point] = self.occurrences.get(point, 0) + 1
            hit = (self.call and self.count == self.call) or (
                self.point == point and n == self.nth)
            if not hit:
                return
            self.armed = self.counting = False
            self.fired = point
            self.fired_call = self.count
        hang_here(self.sim)

    def report(self) -> dict[str, Any]:
        with self.lock:
            return {"tracing": self.tracing, "armed": self.armed, "fired": self.fired,
                    "fired_call": self.fired_call, "turns_traced": self.turns_traced,
                    "points": dict(self.seen), "turns": [list(t) for t in self.turns]}


def _point(fake: str) -> str:
    """The firmware's call stack (its own frames, outermost first) down to `fake`."""
    parts = [fake]
    f = sys._getframe(3)  # _point <- reached <- the wrapper <- its caller
    while f is not None:
        code = f.f_code
        if code.co_filename.startswith(FIRMWARE_DIR) and code.co_name != "<module>":
            parts.append(f"{code.co_qualname}:{f.f_lineno}")
        f = f.f_back
    return " > ".join(reversed(parts))


def hang_here(sim: Simulator) -> None:
    """Block the firmware's thread as a stuck loop would: virtual time goes on, nothing
    feeds the watchdog; it bites (machine.Reset(WDT_RESET)), unless a reset or a power cut
    comes first (select.py's hang, from anywhere)."""
    from hil.sim import fakes_state
    from hil.sim.fakes import machine

    with sim.cond:
        sim.hung = True
        bark = sim.wdt_deadline()
        sim.clock.wait(bark, lambda: sim.reset_requested or not sim.powered)
        if not sim.powered:
            raise fakes_state.PowerLoss()
        if sim.reset_requested or bark is None:
            raise machine.Reset()
        raise machine.Reset(machine.WDT_RESET)


_points: TurnPoints | None = None


def _hooked(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def hooked(*args: Any, **kw: Any) -> Any:
        tp = _points
        if tp is not None and tp.watching:
            tp.reached(name)
        return fn(*args, **kw)

    hooked.__wrapped__ = fn  # type: ignore[attr-defined]
    return hooked


def _feed_hooked(fn: Callable[..., Any]) -> Callable[..., Any]:
    def feed(*args: Any, **kw: Any) -> Any:
        tp = _points
        if tp is not None and tp.watching:
            tp.reached("WDT.feed")
        out = fn(*args, **kw)
        if tp is not None:
            tp.fed()
        return out

    feed.__wrapped__ = fn  # type: ignore[attr-defined]
    return feed


def turn_points(sim: Simulator) -> TurnPoints:
    """The simulator's TurnPoints, its hooks put on the fakes at the first call (they stay:
    the fakes outlive the firmware's reboots)."""
    global _points
    if _points is not None and _points.sim is sim:
        return _points
    from hil.sim import link, simulator
    from hil.sim.fakes import machine, rp2
    from hil.sim.fakes import select as fake_select
    from hil.sim.fakes import time as fake_time

    if _points is None:
        targets: list[tuple[Any, str, str]] = [
            (machine.Pin, "value", "Pin.value"),
            (machine.Pin, "__call__", "Pin.value"),
            (machine.ADC, "read_u16", "ADC.read_u16"),
            (machine.PWM, "freq", "PWM.freq"),
            (machine.PWM, "duty_u16", "PWM.duty_u16"),
            (machine.Timer, "init", "Timer.init"),
            (machine.Timer, "deinit", "Timer.deinit"),
            (machine.UART, "readinto", "UART.readinto"),
            (machine.UART, "write", "UART.write"),
            (rp2.StateMachine, "put", "StateMachine.put"),
            (rp2.StateMachine, "active", "StateMachine.active"),
            (fake_select._Poll, "ipoll", "poll.ipoll"),
            (fake_select._Poll, "poll", "poll.ipoll"),
            (link._In, "readinto", "link.readinto"),
            (link._Out, "write", "link.write"),
            (simulator.FlashFile, "write", "flash.write"),
        ]
        targets += [(fake_time, name, f"time.{name}") for name in (
            "ticks_ms", "ticks_us", "ticks_add", "ticks_diff", "time", "sleep_ms", "sleep",
            "sleep_us")]
        for owner, attr, name in targets:
            setattr(owner, attr, _hooked(name, getattr(owner, attr)))
        machine.WDT.feed = _feed_hooked(machine.WDT.feed)  # type: ignore[method-assign]
    _points = TurnPoints(sim)
    return _points


# -- the control channel ---------------------------------------------------------------------


def control(sim: Simulator, req: dict[str, Any]) -> dict[str, Any]:
    """The control commands of this module (hil/sim/control.py hands them over):
    {"cmd": "lossy", "spec": SPEC} sets the link's faults ("off": none; without spec: only
    the counts); {"cmd": "hang_at", "point": P, "nth": 1} or {"cmd": "hang_at", "call": N}
    arms a hang at that point (or at the Nth fake call) of the first turn after the next
    watchdog feed that reaches it, {"cmd": "hang_at", "off": true} disarms, and
    {"cmd": "hang_at"} reports; {"cmd": "trace_turns", "on": bool} starts or stops a trace
    of the points turns go through. Each answers with the state after it."""
    cmd = req.get("cmd")
    if cmd == "lossy":
        if "spec" in req:
            spec = parse_spec(req["spec"])
            with sim.cond:
                sim.link.lossy = LossyLink(spec) if spec.total else None
        lossy = sim.link.lossy
        return {"ok": True, "lossy": lossy.report() if lossy is not None else None}
    tp = turn_points(sim)
    if cmd == "hang_at":
        if req.get("off"):
            tp.disarm()
        elif "point" in req or "call" in req:
            call = int(req.get("call", 0))
            point = req.get("point")
            nth = int(req.get("nth", 1))
            if (point is None) == (call <= 0) or nth < 1:
                raise ValueError("hang_at: give a point (and nth >= 1) or a call >= 1")
            tp.arm(point, call, nth)
        return {"ok": True, **tp.report()}
    if cmd == "trace_turns":
        if "on" in req:
            tp.trace(bool(req["on"]))
        return {"ok": True, **tp.report()}
    raise ValueError(f"unknown command {cmd!r}")
