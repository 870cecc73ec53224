"""pumpsim: run the unchanged firmware on a virtual Pico; reach it on a pty or a socket."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
from pathlib import Path

from hil.sim.clock import MANUAL, MAX
from hil.sim.control import ControlServer
from hil.sim.lossy import LossyLink, parse_spec
from hil.sim.ports import PtyPort, TcpPort
from hil.sim.simulator import Simulator
from host import keys


def parse_speed(text: str) -> float:
    if text == "max":
        return MAX
    try:
        speed = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError("speed is a number (x real time), 0 or 'max'") from e
    if speed < 0:
        raise argparse.ArgumentTypeError("speed must be >= 0")
    return speed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="pumpsim",
        description="Run the intrapump firmware on a simulated Pico and plant.",
    )
    ap.add_argument(
        "--speed",
        type=parse_speed,
        default=1.0,
        help="virtual time as a multiple of real time; 'max' runs as fast as the firmware's "
        "deadlines allow; 0 pauses time until the rig advances it (default: 1)",
    )
    ap.add_argument("--port", type=int, default=0, help="TCP port for the pump (default: any)")
    ap.add_argument("--control-port", type=int, default=0, help="TCP port for the rig control")
    ap.add_argument("--board-id", help="16 hex digits reported as the board's unique id")
    ap.add_argument("--flash", type=Path, help="folder standing for the board's flash "
                    "(default: a new temporary folder, removed at exit)")
    ap.add_argument("--keys", type=Path, help="role keys to provision (default: new "
                    "development keys, written to FLASH/keys.json)")
    ap.add_argument("--json", action="store_true", help="print the endpoints as one JSON line")
    ap.add_argument("--lossy", metavar="SPEC", help="faults on the link, e.g. 'drop=0.002,"
                    "dup=0.002,reorder=0.002,corrupt=0.002,seed=7' (per byte; hil/sim/lossy.py)")
    args = ap.parse_args(argv)
    try:
        lossy = parse_spec(args.lossy)
    except ValueError as e:
        ap.error(str(e))
    out = sys.stdout  # saved: the firmware takes sys.stdout over as its USB CDC

    kw = {}
    if args.board_id:
        kw["board_id"] = bytes.fromhex(args.board_id)
    tmp = None
    if args.flash is None:
        tmp = tempfile.TemporaryDirectory(prefix="pumpsim-flash-")
        args.flash = Path(tmp.name)
    args.flash.mkdir(parents=True, exist_ok=True)
    keyfile = args.flash / "keys.json"
    if args.keys is not None:
        keys.write(keyfile, keys.load(args.keys))
    elif not keyfile.exists():
        keys.write(keyfile, keys.generate())
    sim = Simulator(args.flash.resolve(), speed=args.speed, **kw)
    if lossy.total:
        sim.link.lossy = LossyLink(lossy)
    pty = PtyPort(sim.link)
    tcp = TcpPort(sim.link, port=args.port)
    control = ControlServer(sim, port=args.control_port)
    sim.start()

    endpoints = {
        "pty": pty.path,
        "url": tcp.url,
        "control": f"{control.host}:{control.port}",
        "keys": str(keyfile.resolve()),
        "speed": "max" if args.speed == MAX else args.speed,
    }
    if args.json:
        out.write(json.dumps(endpoints) + "\n")
    else:
        speed = {MAX: "as fast as deadlines allow", MANUAL: "paused (rig advances time)"}.get(
            args.speed, f"x{args.speed:g} real time"
        )
        out.write(
            f"intrapump simulator: firmware/main.py on a virtual Pico, {speed}\n"
            f"  pty:     {pty.path}\n"
            f"  socket:  {tcp.url}\n"
            f"  control: {control.host}:{control.port} (JSON lines)\n"
            f"  keys:    {keyfile.resolve()} (development keys)\n"
            f"try: pumpctl --port {tcp.url} --keys {keyfile.resolve()} status\n"
            "Ctrl-C stops the simulator.\n"
        )
    out.flush()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sim.stopped.set())
    while not sim.stopped.wait(0.5):
        pass
    tcp.close()
    control.close()
    if tmp is not None:
        tmp.cleanup()
    if sim.crashed is not None:
        sys.stderr.write("pumpsim: the firmware crashed (traceback above)\n")
        return 70
    return 0


if __name__ == "__main__":
    sys.exit(main())
