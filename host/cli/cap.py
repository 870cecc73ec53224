"""pumpctl cap: the catheter access port session (clinician procedures only, label 5.1)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from host.cli.ui import Commands, emit, out, when
from host.client import PumpClient
from host.units import duration

MIN_S, MAX_S = 60, 1800  # CAP_BEGIN's duration_s (protocol/messages.py)
WARNING = ("The catheter access port leads straight into the intrathecal catheter: never fill "
           "the reservoir through it. Direct injection into the catheter access port may cause "
           "a life-threatening overdose (label 5.1). Refill only through the reservoir septum "
           "(pumpctl refill).")


def seconds(text: str) -> int:
    """--minutes N (1 to 30, to the second) as seconds."""
    try:
        value = Decimal(text) * 60
    except ArithmeticError as e:
        raise argparse.ArgumentTypeError(f"not a number of minutes: {text!r}") from e
    if not value.is_finite() or value != value.to_integral_value() or not (
            MIN_S <= value <= MAX_S):
        raise argparse.ArgumentTypeError(f"{text} min: a CAP session lasts {MIN_S // 60} to "
                                         f"{MAX_S // 60} minutes (to the second)")
    return int(value)


def valve(sessions: tuple[str, ...]) -> str:
    """The CAP valve opens with its session and only then (firmware/core/interlocks.py)."""
    return "open" if "cap" in sessions else "closed"


def cap_until(pump: PumpClient) -> datetime | None:
    """When the open CAP session closes by itself: its CAP_BEGIN event in the log (the
    newest; None if the log no longer holds it)."""
    head = pump.read_log(0, 1)
    n = head.total
    while n > head.oldest:
        first = max(head.oldest, n - 8)
        page = pump.read_log(first, n - first)
        for e in reversed(page.events):
            if e.event == "cap_end":
                return None
            if e.event == "cap_begin":
                return datetime.fromtimestamp(e.a & 0xFFFFFFFF, tz=UTC)
        if not page.events:
            return None
        n = first
    return None


def _show(data: dict[str, Any], until: datetime | None, title: str) -> None:
    if data["cap_valve"] == "open":
        out.print(f"[bold yellow]{title}[/]: CAP valve [bold]open[/]"
                  + (f", closes by itself at {when(until)}" if until else ""))
    else:
        out.print(f"[green]{title}[/]: CAP valve closed")
    others = [s for s in data["sessions"] if s != "cap"]
    if others:
        out.print(f"open sessions: {', '.join(others)}")


def cmd_open(pump: PumpClient, args: argparse.Namespace) -> None:
    if not args.json:
        out.print(f"[bold red]{WARNING}[/]")
    until = pump.cap_begin(args.minutes)
    sessions = pump.status().sessions
    data = {"cap_valve": valve(sessions), "until": until.isoformat(),
            "duration_s": args.minutes, "sessions": list(sessions), "warning": WARNING}

    def human() -> None:
        _show(data, until, f"CAP session open for {duration(args.minutes)}")
        out.print("close it as soon as the procedure is done: pumpctl cap close")

    emit(args, data, human)


def cmd_close(pump: PumpClient, args: argparse.Namespace) -> None:
    pump.cap_end()
    sessions = pump.status().sessions
    data = {"cap_valve": valve(sessions), "until": None, "sessions": list(sessions)}
    emit(args, data, lambda: _show(data, None, "CAP session closed"))


def cmd_status(pump: PumpClient, args: argparse.Namespace) -> None:
    sessions = pump.status().sessions
    until = cap_until(pump) if "cap" in sessions else None
    data = {"cap_valve": valve(sessions), "until": until.isoformat() if until else None,
            "sessions": list(sessions)}
    title = "CAP session open" if "cap" in sessions else "no CAP session"
    emit(args, data, lambda: _show(data, until, title))


ORDER = 35


def register(sub: Commands, common: argparse.ArgumentParser) -> None:
    """The commands of this module, on pumpctl's parser."""
    p = sub.add_parser(
        "cap", parents=[common], help="the catheter access port session (clinician "
        "procedures only)",
        description=f"Open or close a catheter access port (CAP) session, or show it. {WARNING}",
    )
    p.set_defaults(func=cmd_status, action="status")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    q = actions.add_parser("status", parents=[common], help="the CAP valve and its session "
                           "(default)")
    q = actions.add_parser("open", parents=[common], help="open a CAP session: the CAP valve "
                           "opens until it is closed or times out")
    q.add_argument("--minutes", type=seconds, default=600, metavar="N",
                   help="close it by itself after N minutes (1 to 30, default 10)")
    q.set_defaults(func=cmd_open)
    q = actions.add_parser("close", parents=[common], help="close the CAP session: the CAP "
                           "valve closes")
    q.set_defaults(func=cmd_close)
