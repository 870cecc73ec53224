"""pumpctl sim: start the simulator (pumpsim: the unchanged firmware on a virtual Pico), print
where to reach it and the lines to paste into another shell, and run until Ctrl-C."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import time
from pathlib import Path
from types import FrameType

from hil.launcher import SimProcess
from hil.sim.cli import parse_speed
from host import errors
from host.cli.ui import Commands, UsageError, err, out


class SimFailed(errors.PumpError):
    """The simulator did not start, or stopped on its own (a firmware crash)."""

    exit_code = 1


def _speed(text: str) -> str:
    parse_speed(text)  # refuses what pumpsim would (argparse says so)
    return text


def cmd_sim(args: argparse.Namespace) -> None:
    extra: list[str] = []
    if args.tcp_port is not None:
        extra += ["--port", str(args.tcp_port)]
    if args.control_port is not None:
        extra += ["--control-port", str(args.control_port)]
    if args.board_id:
        extra += ["--board-id", args.board_id]
    if args.flash:
        extra += ["--flash", args.flash]
    keyfile = getattr(args, "keys", None)
    if keyfile:
        if not Path(keyfile).is_file():
            raise UsageError(f"--keys {keyfile}: no such key file")
        extra += ["--keys", keyfile]
    sim = SimProcess(args.speed, *extra)
    # SIGTERM as Ctrl-C: the simulator is stopped either way.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        try:
            sim.start()
        except RuntimeError as e:
            raise SimFailed(" ".join(str(e).split())[-300:]) from e
        env = {"PUMPCTL_PORT": sim.url, "PUMPCTL_KEYS": sim.keyfile}
        export = "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        if args.json:
            assert sim.proc is not None
            print(json.dumps({"url": sim.url, "pty": sim.pty, "control": sim.control,
                              "keys": sim.keyfile, "speed": _speed_json(args.speed),
                              "env": env,
                              "export": export, "pid": sim.proc.pid}), flush=True)
        else:
            speed = {"max": "as fast as deadlines allow",
                     "0": "paused (the rig advances time)"}.get(args.speed,
                                                                f"x{args.speed} real time")
            out.print(f"[bold]intrapump simulator[/]: firmware/main.py on a virtual Pico, "
                      f"{speed}", soft_wrap=True)
            for name, value in (("socket", sim.url), ("pty", sim.pty),
                                ("control", f"{sim.control} (JSON lines: the rig)"),
                                ("keys", sim.keyfile)):
                out.print(f"  {name + ':':9}{value}", markup=False, soft_wrap=True)
            out.print("Paste into another shell, then run pumpctl there (pumpctl info):",
                      soft_wrap=True)
            print(export, flush=True)  # plain: copied as it is
            out.print("Ctrl-C stops the simulator.")
        try:
            while sim.proc is not None and sim.proc.poll() is None:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        else:
            code = sim.proc.returncode if sim.proc else None
            raise SimFailed(f"the simulator stopped by itself (exit {code}): "
                            + " ".join(sim.stderr_text().split())[-300:])
    finally:
        signal.signal(signal.SIGTERM, previous)
        code = sim.stop()
        sim.log.unlink(missing_ok=True)
    if not args.json:
        err.print(f"simulator stopped (exit {code})")


def _speed_json(text: str) -> float | str:
    """The speed as pumpsim --json gives it: a number, or "max"."""
    return "max" if text == "max" else float(text)


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


ORDER = 90


def register(sub: Commands, common: argparse.ArgumentParser) -> None:
    """The commands of this module, on pumpctl's parser."""
    p = sub.add_parser(
        "sim", help="start the simulator and print how to reach it (Ctrl-C stops it)",
        description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--speed", type=_speed, default="1",
                   help="virtual time as a multiple of real time; 'max' as fast as the "
                   "firmware's deadlines allow; 0 paused until the rig advances it (default 1)")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="print the endpoints as one JSON line")
    p.add_argument("--keys", metavar="FILE", default=argparse.SUPPRESS,
                   help="role keys to provision (default: new development keys)")
    p.add_argument("--flash", metavar="DIR", help="a folder standing for the board's flash, "
                   "kept (default: a temporary one)")
    p.add_argument("--board-id", metavar="HEX", help="16 hex digits reported as the board id")
    p.add_argument("--tcp-port", type=int, metavar="N", help="TCP port of the pump's socket "
                   "(default: any free one)")
    p.add_argument("--control-port", type=int, metavar="N", help="TCP port of the rig "
                   "control channel (default: any free one)")
    p.set_defaults(run=cmd_sim)
