"""make bench: speed, size and memory figures, measured in one run on this machine, each beside
the target it answers to. Writes reports/bench.json (every figure's raw numbers, and
"figures": one row per figure with its value, unit, target and whether it is met),
reports/bench.md (the same table for people) and prints the table.

    python -m hil.bench [--quick] [--out DIR]

--quick runs everything at tiny sizes (2 days instead of 90, few round trips, ...): the shape
of the results, for tests; its figures are not the bench's. The heap figures come from the
firmware's .mpy files (as built for the board) on the MicroPython VM under Node
(tests/mp/bench_heap.mjs); without Node they are reported as not measured."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tty
from pathlib import Path
from typing import Any

import serial
from rich.console import Console
from rich.table import Table

from hil import accuracy
from hil.launcher import SimProcess
from hil.suites.kit import FLEX_NIGHT_PLUS_20, flex_day_nl, occlusion_trial, prepare
from host.client import PumpClient
from host.deploy import build
from protocol import codec, framing
from protocol import host_codec as hc
from protocol import messages as m

DAY_MS = 86_400_000
# A status answer of a pump 1 day into 400 mcg/day at 500 mcg/mL.
STATUS_VALUES = (1, 2, 400_000, 500, 800_000, 0, 0, 400_000, 123_456, 61_728, 19_876_544, 86_400,
                 1_798_848_000, 1_800_000_000, 1_799_000_000, 1_800_100_000, 0, 0, 3900, 0)
STATUS_FIELDS: dict[str, object] = dict(
    zip([f[0] for f in codec.LAYOUTS[m.STATUS].fields], STATUS_VALUES, strict=True)
)
STATUS_FIELDS.update(mode="continuous", phase="titration", bolus="none", alarms=[],
                     sessions=[])


def time_warp(days: int = 90, refill_every: int = 14) -> dict[str, Any]:
    """Virtual seconds per real second over 90 days of flex therapy (+20 % at night) with a
    refill every two weeks, the rig driving the clock. Only the simulation is timed: the
    refills' request/answer exchanges are excluded (that is the round-trip figure)."""
    with SimProcess("0") as sim:
        rig = sim.rig()
        with sim.client() as pump:
            prepare(pump, concentration=500, fill_ml="20")
            pump.set_flex(FLEX_NIGHT_PLUS_20)
            real = 0.0
            refills = 0
            samples = [rig.measure()["delivered_nl"]]
            for day in range(0, days, refill_every):
                chunk = min(refill_every, days - day)
                for _ in range(chunk * 4):  # every 6 h: the 24 h windows below
                    t0 = time.perf_counter()
                    rig.advance(DAY_MS // 4)
                    real += time.perf_counter() - t0
                    samples.append(rig.measure()["delivered_nl"])
                if day + chunk < days:
                    s = pump.status()
                    pump.refill(20, 500, drained_ml=s.reservoir_ul / 1000,
                                concentration_again=500)
                    refills += 1
            alarms = pump.status().alarms
        steps = rig.measure()["steps"]
        rig.close()
    ideal = flex_day_nl(FLEX_NIGHT_PLUS_20, 500)
    windows = [b - a for a, b in zip(samples, samples[4:], strict=False)]
    worst = max(windows, key=lambda x: abs(x - ideal))
    return {"days": days, "refills": refills, "steps": steps, "real_s": real,
            "warp": days * 86400 / real, "alarms": list(alarms), "worst_window_nl": worst,
            "ideal_window_nl": float(ideal), "windows": len(windows)}


def trumpet(dose: str = "800", concentration: int = 500) -> dict[str, Any]:
    """The accuracy report's intermediate rate (hil/suites/test_accuracy.py): 120 min sampled
    every 0.5 min, the trumpet figures of the second hour."""
    with SimProcess("0") as sim, sim.client() as pump:
        rig = sim.rig()
        prepare(pump, concentration=concentration)
        pump.set_continuous(dose)
        samples, _ = accuracy.sample(rig)
        rig.close()
    acc = accuracy.analyse(samples, accuracy.rate_nl_day(dose, concentration), jitter_ms=10)
    return {"dose_mcg_day": dose, "a_pct": float(acc.mean_error_pct),
            "windows": {w.minutes: [float(w.min_pct), float(w.max_pct)] for w in acc.windows}}


def occlusion(doses: tuple[str, ...] = ("400", "1000")) -> dict[str, dict[str, int]]:
    """The occlusion alarm at two rates (hil/suites/kit.py occlusion_trial)."""
    out = {}
    for dose in doses:
        with SimProcess("0") as sim, sim.client() as pump:
            rig = sim.rig()
            out[dose] = occlusion_trial(pump, rig, dose)
            rig.close()
    return out


# The echo runs in a process of its own, as the simulator does: a pty round trip to another
# process costs wake-ups that a thread in the same process does not (measured on this
# machine: about 25 us to a thread, 60 to 90 us to a process), and the figure compares the
# protocol's cost with the link's, not the link's cost under two set-ups.
ECHO = """
import os, sys
fd = int(sys.argv[1])
os.write(1, b"ready")
while True:
    data = os.read(fd, 4096)
    if not data:
        break
    os.write(fd, data)
"""


class PtyEcho:
    """A pty whose other end is a process that echoes what it reads."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.proc = subprocess.Popen([sys.executable, "-c", ECHO, str(self.master)],
                                     pass_fds=(self.master,), stdout=subprocess.PIPE)
        assert self.proc.stdout is not None and self.proc.stdout.read(5) == b"ready"
        self.port = serial.Serial(os.ttyname(self.slave), timeout=2)

    def round_trip(self, payload: bytes) -> None:
        self.port.write(payload)
        assert self.port.read(len(payload)) == payload

    def close(self) -> None:
        self.port.close()
        self.proc.kill()
        self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


def per_call(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def round_trips(batches: int = 40, n: int = 60) -> dict[str, float]:
    """An authenticated status request and its answer, over the simulator's pty, against a
    raw echo of the same number of bytes through a pty to another process. The two alternate
    in batches and each keeps its fastest batch: on a shared machine a batch that another
    program slowed says nothing about either."""
    echo = PtyEcho()
    try:
        with SimProcess("0") as sim:
            with PumpClient(sim.pty, keys=sim.keys(), role="patient", timeout=5) as pump:
                pump.status()  # opens the session
                size = len(hc.encode("GET_STATUS", 1, signer=pump._signer, counter=1))
                payload = bytes(range(1, size + 1))
                status_s = echo_s = float("inf")
                for _ in range(batches):
                    status_s = min(status_s, per_call(pump.status, n))
                    echo_s = min(echo_s, per_call(lambda: echo.round_trip(payload), n))
    finally:
        echo.close()
    return {"status_ms": status_s * 1000, "echo_ms": echo_s * 1000,
            "ratio": status_s / echo_s, "request_bytes": size}


def rate(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t0)


def codec_rates(n: int = 20_000) -> dict[str, float]:
    """STATUS frames encoded and decoded a second, by the board codec (on CPython) and by the
    host's construct codec."""
    enc = codec.Encoder()
    wire = hc.encode("STATUS", 1, STATUS_FIELDS)
    reader = framing.FrameReader()
    decoded = codec.Decoded()

    def board_decode() -> None:
        for b in wire:
            reader.push(b)
        codec.decode(reader.frame, reader.length, decoded, expect="resp")

    return {
        "status_wire_bytes": len(wire),  # (for the line rate these answer to)
        "board_encode_per_s": rate(lambda: enc.encode(m.STATUS, 1, STATUS_VALUES), n),
        "board_decode_per_s": rate(board_decode, n),
        "construct_encode_per_s": rate(lambda: hc.encode("STATUS", 1, STATUS_FIELDS), n),
        "construct_decode_per_s": rate(lambda: hc.decode(wire), n),
    }


def mpy_size(out: Path | None = None) -> int:
    """Bytes of what `make flash` puts on the board (the .mpy files and main.py), built into
    out (kept there) or a temporary folder."""
    if out is not None:
        return sum(local.stat().st_size for local, _ in build(out))
    with tempfile.TemporaryDirectory() as tmp:
        return sum(local.stat().st_size for local, _ in build(Path(tmp)))


ROOT = Path(__file__).resolve().parents[1]
HEAP_HARNESS = ROOT / "tests" / "mp" / "bench_heap.mjs"


def heap(mpy_dir: Path | None, turns: int = 2000) -> dict[str, Any]:
    """The firmware's heap on the MicroPython VM (tests/mp/bench_heap.py): live after boot,
    while delivering, and what a steady-state turn of the loop allocates (gc.mem_alloc()
    deltas, the collector off) and whether it runs under micropython.heap_lock(). From the
    built .mpy files in mpy_dir, else from the sources. {"error": why} if it cannot run."""
    node = shutil.which("node")
    if node is None:
        return {"error": "node is not installed (the MicroPython VM runs under Node.js)"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "heap.json"
        cmd = [node, str(HEAP_HARNESS), "--json", str(out), "--turns", str(turns)]
        if mpy_dir is not None:
            cmd += ["--mpy", str(mpy_dir)]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        if proc.returncode or not out.exists():
            return {"error": (proc.stderr or proc.stdout).strip()[-500:] or
                    f"exit {proc.returncode}"}
        return json.loads(out.read_text())


# -- the figures and their targets -------------------------------------------------------------

PICO_HEAP = 192 * 1024  # about what MicroPython's rp2 port leaves for its heap on an RP2040
STEP_NL = 250  # the reference rig's motor step


def line_rate(wire_bytes: int, baud: int = 115_200) -> float:
    """Frames a second a UART at `baud` (8N1: 10 bits a byte) carries."""
    return baud / 10 / wire_bytes


def row(figure: str, value: float | int | None, unit: str, shown: str, target: str,
        met: bool | None, source: str = "") -> dict[str, Any]:
    """One figure: its value (None: not measured), how it reads, its target (what it answers
    to; "" if it is for information) and whether it is met (None: no target, or not
    measured)."""
    return {"figure": figure, "value": value, "unit": unit, "shown": shown, "target": target,
            "met": met, "source": source}


def figures(r: dict[str, Any]) -> list[dict[str, Any]]:
    w, tr, rt, c, h = r["time_warp"], r["trumpet"], r["round_trip"], r["codec"], r["heap"]
    out = [row(f"simulator time warp, {w['days']} days of flex with {w['refills']} refills",
               w["warp"], "x", f"{w['warp']:,.0f}x ({w['real_s']:.2f} s)", ">= 500,000x",
               w["warp"] >= 500_000, "issue 6")]
    lo, hi = tr["windows"][31]
    out.append(row(f"trumpet, 31-min window, {tr['dose_mcg_day']} mcg/day at 500 mcg/mL",
                   max(abs(lo), abs(hi)), "%", f"{lo:+.2f} % / {hi:+.2f} %", "within +-1 %",
                   -1 <= lo and hi <= 1, "issue 6"))
    off = w["worst_window_nl"] - w["ideal_window_nl"]
    out.append(row(f"worst 24 h window of the {w['days']} days vs ideal", off, "nL",
                   f"{off:+.1f} nL", f"< 1 step = {STEP_NL} nL", abs(off) < STEP_NL, "issue 6"))
    for dose, o in r["occlusion"].items():
        out.append(row(f"occlusion at {dose} mcg/day: blockage to alarm",
                       o["blockage_to_alarm_ms"] / 1000, "s",
                       f"{o['blockage_to_alarm_ms'] / 1000:.1f} s", "", None,
                       "the pressure builds at the rate"))
        out.append(row(f"occlusion at {dose} mcg/day: pressure limit to alarm",
                       o["limit_to_alarm_ms"], "ms",
                       f"{o['limit_to_alarm_ms']} ms, {o['pushed_over_nl']} nL pushed",
                       f"<= 5 s, <= 1 step ({STEP_NL} nL)",
                       o["limit_to_alarm_ms"] <= 5000 and o["pushed_over_nl"] <= STEP_NL,
                       "IEC 60601-2-24 method"))
        out.append(row(f"occlusion at {dose} mcg/day: released when cleared", o["released_nl"],
                       "nL", f"{o['released_nl']} nL", "<= 0 (no bolus)",
                       o["released_nl"] <= 0, "IEC 60601-2-24 method"))
    out.append(row("authenticated status round trip (pty)", rt["status_ms"], "ms",
                   f"{rt['status_ms']:.3f} ms", "", None))
    out.append(row("raw pty echo to a process, same bytes, same run", rt["echo_ms"], "ms",
                   f"{rt['echo_ms']:.3f} ms", "", None))
    out.append(row("round trip / echo", rt["ratio"], "x", f"{rt['ratio']:.1f}x", "<= 5x",
                   rt["ratio"] <= 5, "issue 3"))
    rate_min = line_rate(c["status_wire_bytes"])
    for key, value in c.items():
        if not key.endswith("_per_s"):
            continue
        out.append(row(f"{key.removesuffix('_per_s').replace('_', ' ')} STATUS frames",
                       value, "/s", f"{value:,.0f}/s",
                       f">= {rate_min:,.0f}/s (115,200 baud of {c['status_wire_bytes']}-byte "
                       "frames; on this machine)", value >= rate_min))
    out.append(row("firmware on flash (.mpy files and main.py)", r["mpy_bytes"], "bytes",
                   f"{r['mpy_bytes']:,} bytes", "<= 256 KiB (budget: an eighth of the Pico's "
                   "2 MB flash)", r["mpy_bytes"] <= 256 * 1024))
    if "error" in h:
        for name in ("heap after boot", "allocations per steady-state loop turn",
                     "steady-state loop under micropython.heap_lock()"):
            out.append(row(name, None, "", f"not measured: {h['error'][:60]}", "", None))
        return out
    where = "on the MicroPython VM" + (", from .mpy" if h.get("from_mpy") else "")
    budget = PICO_HEAP * 2 // 3
    out.append(row(f"heap after boot, live ({where})", h["after_boot_bytes"], "bytes",
                   f"{h['after_boot_bytes']:,} bytes ({h['modules_bytes']:,} modules + "
                   f"{h['boot_state_bytes']:,} state)" + _vm_modules_note(h),
                   f"<= {budget // 1024} KiB (two thirds of a Pico's ~{PICO_HEAP // 1024} KiB "
                   "heap)", h["after_boot_bytes"] <= budget))
    out.append(row("heap while delivering, live", h["delivering_bytes"], "bytes",
                   f"{h['delivering_bytes']:,} bytes", "", None))
    if "repeat_growth_bytes" in h:  # (bench_heap.py's; results of older harnesses lack it)
        out.append(row(f"live heap growth over {h['repeat_rounds']} rounds of commands "
                       "(program, status, save, a loop turn)", h["repeat_growth_bytes"],
                       "bytes", f"{h['repeat_growth_bytes']:,} bytes",
                       "0 bytes (nothing kept per command)", h["repeat_growth_bytes"] <= 0))
    out.append(row(f"allocations per steady-state loop turn ({h['turns']:,} turns, "
                   f"{h['steps']} steps)", h["alloc_per_turn"], "bytes",
                   f"{h['alloc_per_turn']:g} bytes ({h['alloc_bytes']} in all)", "0 bytes",
                   h["alloc_bytes"] == 0, "DESIGN: allocation-free steady state"))
    out.append(row("steady-state loop under micropython.heap_lock()",
                   int(h["heap_lock_ok"]), "", "runs" if h["heap_lock_ok"] else
                   "MemoryError", "runs", bool(h["heap_lock_ok"]),
                   "DESIGN: allocation-free steady state"))
    return out


def _vm_modules_note(h: dict[str, Any]) -> str:
    """What the VM's own Python modules took apart from the figure (tests/mp/bench_heap.py
    VM_PYTHON_MODULES: built into the Pico's MicroPython), if any."""
    if not h.get("vm_modules"):
        return ""
    return f"; not counted: this VM's Python {', '.join(h['vm_modules'])}, " \
           f"{h['vm_modules_bytes']:,}"


def mark(met: bool | None) -> str:
    return "yes" if met else "-" if met is None else "NO"


def markdown(r: dict[str, Any]) -> str:
    lines = ["# intrapump bench", "",
             f"{r['when']} on {r['machine']}" + (" (--quick: tiny sizes, not the bench's "
                                                  "figures)" if r["quick"] else "") + ".",
             "Written by `make bench` (hil/bench.py) with reports/bench.json.", "",
             "| figure | value | target | met | source |", "|---|---:|---|:-:|---|"]
    for f in r["figures"]:
        cells = (f["figure"], f["shown"], f["target"], mark(f["met"]), f["source"])
        lines.append("| " + " | ".join(str(x).replace("|", "\\|") for x in cells) + " |")
    h = r["heap"]
    if "error" not in h:
        vm = ""
        if h.get("vm_modules"):
            vm = (f" So is {', '.join(h['vm_modules'])} ({h['vm_modules_bytes']:,} bytes): a "
                  "Python module on this VM, built into the rp2 port's firmware (C, in flash).")
        lines += ["", f"Heap on {h['micropython']} (32-bit, as the RP2040); the fake board "
                      f"objects ({h['fakes_bytes']} bytes) are left out.{vm} Largest modules: "
                  + ", ".join(f"{k} {v:,}" for k, v in sorted(
                      h.get("by_module", {}).items(), key=lambda kv: -kv[1])[:5]) + "."]
    lines += ["", "The round trip / echo ratio depends on the echo as much as on the protocol: on "
                  "the 2-core machine this was written on, the echo took 0.018 ms with one core "
                  "busy and 0.04-0.05 ms with both idle (the round trip moved far less), so the "
                  "same code read 2.4x to 6.7x. Compare runs on a quiet, steady machine."]
    return "\n".join(lines) + "\n"


def run(quick: bool) -> dict[str, Any]:
    """Every figure, at the bench's sizes or (quick) tiny ones."""
    with tempfile.TemporaryDirectory() as tmp:
        mpy = Path(tmp)
        size = mpy_size(mpy)
        heap_figures = heap(mpy, turns=200 if quick else 2000)
    results: dict[str, Any] = {
        "quick": quick,
        "when": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.node()} ({platform.machine()}, Python "
                   f"{platform.python_version()})",
        "time_warp": time_warp(2, 1) if quick else time_warp(),
        "occlusion": occlusion(("1000",)) if quick else occlusion(),
        "trumpet": trumpet(),
        "round_trip": round_trips(2, 10) if quick else round_trips(),
        "codec": codec_rates(500) if quick else codec_rates(),
        "mpy_bytes": size,
        "heap": heap_figures,
    }
    results["figures"] = figures(results)
    return results


def table(r: dict[str, Any]) -> Table:
    t = Table(title="intrapump bench (reports/bench.json, bench.md)" +
              (" --quick" if r["quick"] else ""))
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("target")
    t.add_column("met")
    for f in r["figures"]:
        t.add_row(f["figure"], f["shown"], f["target"], mark(f["met"]))
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hil.bench",
                                 description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes: the shape of the results (for tests), not the figures")
    ap.add_argument("--out", type=Path, default=Path("reports"),
                    help="folder for bench.json and bench.md (default: reports)")
    args = ap.parse_args(argv)
    results = run(args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "bench.md").write_text(markdown(results))
    Console(width=160).print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
