"""pumpctl alarms, ack."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from host.cli.ui import LEVELS, Commands, UsageError, emit, out
from host.client import ALARM_LEVELS, ALARMS, PumpClient


def cmd_alarms(pump: PumpClient, args: argparse.Namespace) -> None:
    state = pump.alarm_state()
    data = state.to_dict()

    def human() -> None:
        if not state.alarms:
            out.print("no active alarms")
            return
        t = Table(title="active alarms", title_justify="left")
        t.add_column("alarm")
        t.add_column("level")
        t.add_column("acknowledged")
        for name in state.alarms:
            level = LEVELS[ALARM_LEVELS[name]]
            t.add_row(name, f"[bold red]{level}[/]" if level == "critical" else level,
                      "no" if name in state.unacknowledged else "yes")
        out.print(t)
        if state.silenced_until:
            out.print(f"tones silenced until {state.silenced_until:%Y-%m-%d %H:%M} UTC")

    emit(args, data, human)


def cmd_ack(pump: PumpClient, args: argparse.Namespace) -> None:
    names = list(dict.fromkeys(args.alarm))
    if args.all:
        names = list(dict.fromkeys(names + list(pump.status().alarms)))
    elif not names:
        raise UsageError("name the alarms to acknowledge, or give --all")
    data: dict[str, Any] = {"acknowledged": [], "alarms": [], "unacknowledged": [],
                            "silenced_until": None}
    for name in names:
        data.update(pump.alarm_ack(name).to_dict())
        data["acknowledged"].append(name)

    def human() -> None:
        if not names:
            out.print("no active alarm to acknowledge")
            return
        out.print(f"acknowledged: {', '.join(names)}; still active: "
                  f"{', '.join(data['alarms']) or 'none'}")

    emit(args, data, human)


ORDER = 40


def register(sub: Commands, common: argparse.ArgumentParser) -> None:
    """The commands of this module, on pumpctl's parser."""
    p = sub.add_parser("alarms", parents=[common], help="the active alarms")
    p.set_defaults(func=cmd_alarms)

    p = sub.add_parser("ack", parents=[common], help="acknowledge alarms (their tone stops)")
    p.add_argument("alarm", nargs="*", default=[], metavar="ALARM",
                   help=f"alarm names: {', '.join(ALARMS)}")
    p.add_argument("--all", action="store_true", help="every active alarm")
    p.set_defaults(func=cmd_ack)

