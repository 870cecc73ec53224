"""make bench: speed and size figures, measured in one run on this machine, with the targets
they answer to. Writes reports/bench.json and prints a table."""

from __future__ import annotations

import json
import os
import threading
import time
import tty
from pathlib import Path

import serial
from rich.console import Console
from rich.table import Table

from hil.launcher import SimProcess
from hil.suites.kit import prepare
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


def time_warp(days: int = 20) -> dict[str, float]:
    """Virtual seconds per real second over days of continuous delivery (20 days at 400
    mcg/day: 16 mL, inside the 20 mL reservoir), the rig driving the clock."""
    with SimProcess("0") as sim:
        with sim.client() as pump:
            prepare(pump, concentration=500, fill_ml="20")
            pump.set_continuous("400")
        rig = sim.rig()
        t0 = time.perf_counter()
        rig.advance(days * DAY_MS)
        real = time.perf_counter() - t0
        steps = rig.plant()["steps"]
        rig.close()
    return {"days": days, "steps": steps, "real_s": real, "warp": days * 86400 / real}


def pty_echo_round_trip(n: int, size: int) -> float:
    """Seconds per round trip of `size` bytes through a pty to a thread that echoes them."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)

    def echo() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            os.write(master, data)

    threading.Thread(target=echo, daemon=True).start()
    port = serial.Serial(path, timeout=2)
    payload = bytes(range(1, size + 1))
    t0 = time.perf_counter()
    for _ in range(n):
        port.write(payload)
        got = port.read(size)
        assert got == payload
    elapsed = (time.perf_counter() - t0) / n
    port.close()
    os.close(master)
    os.close(slave)
    return elapsed


def round_trips(n: int = 300) -> dict[str, float]:
    """An authenticated status request and its answer, over the simulator's pty, against a
    raw echo of the same number of bytes through a pty, measured in the same run."""
    with SimProcess("0") as sim:
        with PumpClient(sim.pty, keys=sim.keys(), role="patient", timeout=5) as pump:
            pump.status()  # opens the session
            t0 = time.perf_counter()
            for _ in range(n):
                pump.status()
            status_s = (time.perf_counter() - t0) / n
            size = len(hc.encode("GET_STATUS", 1, signer=pump._signer, counter=1))
    echo_s = pty_echo_round_trip(n, size)
    return {"status_ms": status_s * 1000, "echo_ms": echo_s * 1000,
            "ratio": status_s / echo_s, "request_bytes": size}


def rate(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t0)


def codec_rates(n: int = 20_000) -> dict[str, float]:
    enc = codec.Encoder()
    wire = hc.encode("STATUS", 1, STATUS_FIELDS)
    reader = framing.FrameReader()
    decoded = codec.Decoded()

    def board_decode() -> None:
        for b in wire:
            reader.push(b)
        codec.decode(reader.frame, reader.length, decoded, expect="resp")

    return {
        "board_encode_per_s": rate(lambda: enc.encode(m.STATUS, 1, STATUS_VALUES), n),
        "board_decode_per_s": rate(board_decode, n),
        "construct_encode_per_s": rate(lambda: hc.encode("STATUS", 1, STATUS_FIELDS), n),
        "construct_decode_per_s": rate(lambda: hc.decode(wire), n),
    }


def mpy_size() -> int:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return sum(local.stat().st_size for local, _ in build(Path(tmp)))


def main() -> int:
    results = {
        "time_warp": time_warp(),
        "round_trip": round_trips(),
        "codec": codec_rates(),
        "mpy_bytes": mpy_size(),
    }
    out = Path("reports")
    out.mkdir(exist_ok=True)
    (out / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    w, c, r = results["time_warp"], results["codec"], results["round_trip"]
    t = Table(title="intrapump bench (reports/bench.json)")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("target")
    t.add_row(f"simulator time warp, {w['days']} days at 400 mcg/day",
              f"{w['warp']:,.0f}x ({w['real_s']:.2f} s)", ">= 500,000x (issue 6)")
    t.add_row("authenticated status round trip (pty)", f"{r['status_ms']:.3f} ms", "")
    t.add_row("raw pty echo, same bytes, same run", f"{r['echo_ms']:.3f} ms", "")
    t.add_row("round trip / echo", f"{r['ratio']:.1f}x", "<= 5x (issue 3)")
    for key, value in c.items():
        t.add_row(key.replace("_", " "), f"{value:,.0f}", "")
    t.add_row("firmware .mpy total", f"{results['mpy_bytes']:,} bytes", "")
    Console().print(t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
