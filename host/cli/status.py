"""pumpctl info, status (and status --watch), counters, time-sync."""

from __future__ import annotations

import argparse
import json
import time

from rich.table import Table

from host.cli.ui import LEVELS, Commands, emit, hms, num, out, when
from host.client import ALARM_LEVELS, AlarmEvent, PumpClient, Status


def cmd_info(pump: PumpClient, args: argparse.Namespace) -> None:
    info = pump.info()

    def human() -> None:
        t = Table(title="intrapump", show_header=False, title_justify="left")
        t.add_row("port", pump.url)
        t.add_row("firmware", info.fw_version)
        t.add_row("protocol", str(info.protocol_version))
        t.add_row("board id", info.board_id)
        t.add_row("reservoir", f"{num(info.reservoir_ml)} mL")
        t.add_row("step volume", f"{info.step_nl} nL")
        out.print(t)

    emit(args, info.to_dict(), human)


def status_table(s: Status, title: str) -> Table:
    t = Table(title=title, show_header=False, title_justify="left")
    running = s.mode in ("continuous", "flex", "taper")
    t.add_row("mode", f"[bold green]{s.mode}[/]" if running else f"[yellow]{s.mode}[/]")
    t.add_row("phase", s.phase if s.phase != "unset" else "[yellow]no patient profile[/]")
    drug = f"at {s.concentration_mcg_ml} mcg/mL" if s.concentration_mcg_ml else "(no drug)"
    t.add_row("daily dose", f"{num(s.daily_dose_mcg)} mcg/day {drug}")
    t.add_row("rate", f"{num(s.rate_ul_day)} uL/day")
    if s.bolus != "none":
        t.add_row("bolus", f"{s.bolus}: {num(s.bolus_left_mcg)} mcg still to deliver")
    t.add_row("last 24 h", f"{num(s.last_24h_mcg)} mcg")
    t.add_row("delivered", f"{num(s.delivered_ul)} uL = {num(s.delivered_mcg)} mcg")
    dry = f", runs dry {s.dry_at:%Y-%m-%d %H:%M} UTC" if s.dry_at else ""
    t.add_row("reservoir", f"{num(s.reservoir_ul / 1000)} mL left{dry}")
    if s.refill_at:
        t.add_row("refill due", f"{when(s.refill_at)} (low reservoir {when(s.low_at)})")
    t.add_row("alarms", "[bold red]" + ", ".join(s.alarms) + "[/]" if s.alarms else "none")
    if s.sessions:
        t.add_row("open sessions", ", ".join(s.sessions))
    t.add_row("pump clock", s.clock.strftime("%Y-%m-%d %H:%M:%S UTC"))
    t.add_row("pump uptime", hms(s.uptime_s))
    t.add_row("battery", f"{num(s.battery_v, 2)} V")
    if s.frame_errors:
        t.add_row("link errors", f"[red]{s.frame_errors}[/] bad frames received")
    return t


def cmd_status(pump: PumpClient, args: argparse.Namespace) -> None:
    if args.watch is None:
        s = pump.status()
        emit(args, s.to_dict(), lambda: out.print(status_table(s, "intrapump status")))
        return
    # --watch: one line per reading (readable in a terminal and in a log file alike)
    if not args.json:
        out.print(
            f"[bold]{'pump time':>14}  {'mode':<12} {'delivered':>12} {'dose':>12} "
            f"{'reservoir':>11}  alarms[/]"
        )
    n = 0
    while args.count is None or n < args.count:
        if n:
            _alarm_events(pump, args, args.watch)
        s = pump.status()
        n += 1
        if args.json:
            print(json.dumps(s.to_dict()), flush=True)
        else:
            alarms = ", ".join(s.alarms)
            out.print(
                f"{hms(s.uptime_s):>14}  {s.mode:<12} {num(s.delivered_ul, 2):>9} uL "
                f"{num(s.delivered_mcg, 2):>8} mcg {num(s.reservoir_ul / 1000, 3):>8} mL  "
                + (f"[bold red]{alarms}[/]" if alarms else "-")
            )


def _alarm_events(pump: PumpClient, args: argparse.Namespace, seconds: float) -> None:
    """Wait between readings, showing each alarm the pump announces as it comes."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        event = pump.next_event(left)
        if not isinstance(event, AlarmEvent):
            continue
        if args.json:
            print(json.dumps({"event": "alarm", **event.to_dict()}), flush=True)
            continue
        level = LEVELS[ALARM_LEVELS[event.alarm]]
        if event.active:
            out.print(f"[bold red]{'ALARM':>14}  {event.alarm} ({level}) raised at "
                      f"{event.time:%Y-%m-%d %H:%M:%S} UTC[/]")
        else:
            out.print(f"[green]{'cleared':>14}  {event.alarm} at "
                      f"{event.time:%Y-%m-%d %H:%M:%S} UTC[/]")


def cmd_counters(pump: PumpClient, args: argparse.Namespace) -> None:
    counts = pump.counters()

    def human() -> None:
        t = Table(title="refusals since boot", show_header=False, title_justify="left")
        for name, n in counts.items():
            t.add_row(name, f"[red]{n}[/]" if n else "0")
        out.print(t)

    emit(args, counts, human)


def cmd_time_sync(pump: PumpClient, args: argparse.Namespace) -> None:
    clock = pump.set_clock()
    emit(args, {"clock": clock.isoformat()},
          lambda: out.print(f"pump clock set to {clock:%Y-%m-%d %H:%M:%S} UTC"))


ORDER = 10


def register(sub: Commands, common: argparse.ArgumentParser) -> None:
    """The commands of this module, on pumpctl's parser."""
    p = sub.add_parser("info", parents=[common], help="identity and capabilities")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("status", parents=[common], help="delivery state and totals")
    p.add_argument("--watch", type=float, nargs="?", const=1.0, metavar="SECONDS",
                   help="keep reading every SECONDS (default 1)")
    p.add_argument("--count", type=int, help="with --watch: stop after COUNT readings")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("counters", parents=[common], help="refusals since boot, by error")
    p.set_defaults(func=cmd_counters)

    p = sub.add_parser("time-sync", parents=[common], help="set the pump clock to this "
                       "computer's")
    p.set_defaults(func=cmd_time_sync)

