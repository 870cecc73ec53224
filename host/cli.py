"""pumpctl: talk to an intrapump pump (a board or the simulator) from the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from host import errors, keys
from host.client import DEFAULT_RETRIES, DEFAULT_TIMEOUT, PumpClient, Status
from host.discovery import pick_port
from host.units import ng_to_mcg, nl_to_ul
from protocol import messages as m
from protocol.host_codec import MESSAGE_NAMES

STOP_REASONS = [label for _, label in m.ENUMS["stop_reason"]]
EXIT_USAGE = 2

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class UsageError(errors.PumpError):
    """Refused on the host before anything was sent."""

    exit_code = EXIT_USAGE


def _fmt(value: Decimal, places: int = 3) -> str:
    text = f"{value:.{places}f}".rstrip("0").rstrip(".")
    return text or "0"


def _emit(args: argparse.Namespace, data: dict[str, Any], human: Callable[[], None]) -> None:
    if args.json:
        print(json.dumps(data))
    else:
        human()


# --- commands --------------------------------------------------------------------------------


def cmd_info(pump: PumpClient, args: argparse.Namespace) -> None:
    info = pump.info()

    def human() -> None:
        t = Table(title="intrapump", show_header=False, title_justify="left")
        t.add_row("port", pump.url)
        t.add_row("firmware", info.fw_version)
        t.add_row("protocol", str(info.protocol_version))
        t.add_row("board id", info.board_id)
        t.add_row("reservoir", f"{_fmt(info.reservoir_ml)} mL")
        t.add_row("step volume", f"{info.step_nl} nL")
        out.print(t)

    _emit(args, info.to_dict(), human)


def _status_table(s: Status, title: str) -> Table:
    t = Table(title=title, show_header=False, title_justify="left")
    mode = "[bold green]continuous[/]" if s.mode == "continuous" else f"[yellow]{s.mode}[/]"
    t.add_row("mode", mode)
    t.add_row("daily dose", f"{_fmt(s.daily_dose_mcg)} mcg/day at {s.concentration_mcg_ml} mcg/mL")
    t.add_row("rate", f"{_fmt(s.rate_ul_day)} uL/day")
    t.add_row("delivered", f"{_fmt(s.delivered_ul)} uL = {_fmt(s.delivered_mcg)} mcg")
    dry = f", runs dry {s.dry_at:%Y-%m-%d %H:%M} UTC" if s.dry_at else ""
    t.add_row("reservoir", f"{_fmt(s.reservoir_ul / 1000)} mL left{dry}")
    t.add_row("pump clock", s.clock.strftime("%Y-%m-%d %H:%M:%S UTC"))
    t.add_row("pump uptime", _duration(s.uptime_s))
    t.add_row("battery", f"{_fmt(s.battery_v, 2)} V")
    if s.frame_errors:
        t.add_row("link errors", f"[red]{s.frame_errors}[/] bad frames received")
    return t


def _duration(seconds: int) -> str:
    d, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    mnt, sec = divmod(rest, 60)
    return (f"{d} d " if d else "") + f"{h:02d}:{mnt:02d}:{sec:02d}"


def cmd_status(pump: PumpClient, args: argparse.Namespace) -> None:
    if args.watch is None:
        s = pump.status()
        _emit(args, s.to_dict(), lambda: out.print(_status_table(s, "intrapump status")))
        return
    # --watch: one line per reading (readable in a terminal and in a log file alike)
    if not args.json:
        out.print(
            f"[bold]{'pump time':>14}  {'mode':<10} {'delivered':>12} {'dose':>12} "
            f"{'reservoir':>11}[/]"
        )
    n = 0
    while args.count is None or n < args.count:
        if n:
            time.sleep(args.watch)
        s = pump.status()
        n += 1
        if args.json:
            print(json.dumps(s.to_dict()), flush=True)
        else:
            out.print(
                f"{_duration(s.uptime_s):>14}  {s.mode:<10} {_fmt(s.delivered_ul, 2):>9} uL "
                f"{_fmt(s.delivered_mcg, 2):>8} mcg {_fmt(s.reservoir_ul / 1000, 3):>8} mL"
            )


def cmd_set_dose(pump: PumpClient, args: argparse.Namespace) -> None:
    try:
        r = pump.set_continuous(args.dose, args.concentration)
    except ValueError as e:
        raise UsageError(str(e)) from e
    data = {
        "mode": "continuous",
        "daily_dose_mcg": str(ng_to_mcg(r["daily_dose_ng"])),
        "concentration_mcg_ml": r["concentration"],
        "rate_ul_day": str(nl_to_ul(r["rate_nl_day"])),
    }
    _emit(
        args,
        data,
        lambda: out.print(
            f"[green]programmed[/] continuous infusion: {data['daily_dose_mcg']} mcg/day at "
            f"{data['concentration_mcg_ml']} mcg/mL = {_fmt(nl_to_ul(r['rate_nl_day']))} uL/day"
        ),
    )


def cmd_stop(pump: PumpClient, args: argparse.Namespace) -> None:
    confirmed = args.confirm
    if not confirmed and sys.stdin.isatty() and not args.json:
        err.print(
            "[bold red]Stopping intrathecal baclofen abruptly can cause withdrawal[/] "
            "(high fever, altered mental status, rebound spasticity)."
        )
        confirmed = input("Type STOP to stop delivery: ").strip() == "STOP"
    if not confirmed:
        raise UsageError("not stopped: stopping delivery needs --confirm")
    r = pump.stop(args.reason, confirm=True)
    _emit(
        args,
        {"mode": "stopped", "reason": r["reason"]},
        lambda: out.print(f"[yellow]delivery stopped[/] (reason: {r['reason']})"),
    )


def cmd_log(pump: PumpClient, args: argparse.Namespace) -> None:
    events = pump.events(args.start)
    if args.json:
        for e in events:
            print(json.dumps(e.to_dict()))
        return
    t = Table(title=f"event log ({len(events)} events)", title_justify="left")
    for col in ("#", "time (UTC)", "event", "by", "details"):
        t.add_column(col)
    for e in events:
        t.add_row(str(e.number), e.time.strftime("%Y-%m-%d %H:%M:%S"), e.event, e.role,
                  _event_details(e.event, e.a, e.b))
    out.print(t)


def _event_details(event: str, a: int, b: int) -> str:
    if event == "program":
        return f"{_fmt(ng_to_mcg(a))} mcg/day at {b} mcg/mL"
    if event == "refused":
        return f"{errors.ERROR_NAME.get(a, a)} for {MESSAGE_NAMES.get(b, hex(b))}"
    if event == "stop":
        return dict(m.ENUMS["stop_reason"]).get(a, str(a))
    if event == "clock_set":
        return f"clock moved by {a:+d} s"
    if event == "boot":
        return f"reset cause {a}"
    return ""


def cmd_counters(pump: PumpClient, args: argparse.Namespace) -> None:
    counts = pump.counters()

    def human() -> None:
        t = Table(title="refusals since boot", show_header=False, title_justify="left")
        for name, n in counts.items():
            t.add_row(name, f"[red]{n}[/]" if n else "0")
        out.print(t)

    _emit(args, counts, human)


def cmd_time_sync(pump: PumpClient, args: argparse.Namespace) -> None:
    clock = pump.set_clock()
    _emit(args, {"clock": clock.isoformat()},
          lambda: out.print(f"pump clock set to {clock:%Y-%m-%d %H:%M:%S} UTC"))


# --- the parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: an option given before the command is not reset by the command's defaults.
    common.add_argument(
        "--port", "-p", default=argparse.SUPPRESS,
        help="pyserial URL or device (/dev/ttyACM0, COM3, socket://host:port); "
        "default: $PUMPCTL_PORT, else the one Pico found on USB",
    )
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print JSON for scripts")
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS,
                        help=f"seconds to wait for each answer (default {DEFAULT_TIMEOUT:g})")
    common.add_argument("--keys", default=argparse.SUPPRESS, metavar="FILE",
                        help="role keys (default: $PUMPCTL_KEYS, else "
                        "~/.config/intrapump/keys/BOARD_ID.json)")
    common.add_argument("--role", choices=keys.ROLES, default=argparse.SUPPRESS,
                        help="the role to sign requests as (default: clinician)")

    ap = argparse.ArgumentParser(
        prog="pumpctl", parents=[common],
        description="Program and inspect an intrapump pump (a board or pumpsim).",
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", parents=[common], help="identity and capabilities")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("status", parents=[common], help="delivery state and totals")
    p.add_argument("--watch", type=float, nargs="?", const=1.0, metavar="SECONDS",
                   help="keep reading every SECONDS (default 1)")
    p.add_argument("--count", type=int, help="with --watch: stop after COUNT readings")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("set-dose", parents=[common], help="program continuous infusion")
    p.add_argument("dose", help="daily dose in mcg/day, e.g. 400 or 412.5")
    p.add_argument("--concentration", "-c", type=int, required=True,
                   help="drug concentration in mcg/mL (e.g. 500)")
    p.set_defaults(func=cmd_set_dose)

    p = sub.add_parser("log", parents=[common], help="the pump's event log")
    p.add_argument("--start", type=int, default=0, help="first event number (default 0)")
    p.set_defaults(func=cmd_log)

    p = sub.add_parser("counters", parents=[common], help="refusals since boot, by error")
    p.set_defaults(func=cmd_counters)

    p = sub.add_parser("time-sync", parents=[common], help="set the pump clock to this "
                       "computer's")
    p.set_defaults(func=cmd_time_sync)

    p = sub.add_parser("stop", parents=[common], help="stop delivery (needs confirmation)")
    p.add_argument("--reason", choices=STOP_REASONS, default="clinician_decision")
    p.add_argument("--confirm", action="store_true", help="confirm without a prompt")
    p.set_defaults(func=cmd_stop)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.json = getattr(args, "json", False)
    timeout = getattr(args, "timeout", DEFAULT_TIMEOUT)
    try:
        url = getattr(args, "port", None) or os.environ.get("PUMPCTL_PORT") or pick_port()
        keyfile = keys.find(getattr(args, "keys", None), None)
        with PumpClient(
            url,
            timeout=timeout,
            retries=DEFAULT_RETRIES,
            keys=keys.load(keyfile) if keyfile else None,
            role=getattr(args, "role", "clinician"),
        ) as pump:
            if keyfile is None and keys.CONFIG_DIR.is_dir():
                keyfile = keys.find(None, pump.info().board_id)  # keys kept per board
                pump.keys = keys.load(keyfile) if keyfile else {}
            args.func(pump, args)
    except errors.PumpError as e:
        if args.json:
            print(json.dumps({"error": {"type": type(e).__name__, "message": str(e)}}))
        err.print(f"pumpctl: {e}", style="red", markup=False, soft_wrap=True)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
