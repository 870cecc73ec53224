"""pumpctl log: the pump's event log, each entry's details in words."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from rich.table import Table

from host import errors
from host.cli.ui import Commands, label, mcg, mcg_day, ml, out
from host.client import Event, PumpClient
from host.units import duration
from protocol.host_codec import MESSAGE_NAMES


def cmd_log(pump: PumpClient, args: argparse.Namespace) -> None:
    events = pump.events(args.start)
    if args.json:
        for e in events:
            print(json.dumps(e.to_dict()))
        return
    t = Table(title=f"event log ({len(events)} events)", title_justify="left")
    for col in ("#", "time (UTC)", "event", "by"):
        t.add_column(col, no_wrap=True)
    t.add_column("rule: details")
    for e in events:
        rule = f"[bold]{e.rule}[/]: " if e.rule else ""
        t.add_row(str(e.number), e.time.strftime("%Y-%m-%d %H:%M:%S"), e.event,
                  e.role if e.role != "none" else "pump", rule + event_details(e))
    out.print(t)


def event_details(e: Event) -> str:
    """The three details of a log entry (protocol/messages.py ENUMS["event"]), for people."""
    a, b, c = e.a, e.b, e.c
    ev = e.event
    if ev == "boot":
        return f"reset cause {a}"
    if ev == "program":
        was = f", was {mcg_day(b)}" if b else ""
        return f"{label('mode', c)} {mcg_day(a)}{was}"
    if ev == "refused":
        exc = errors.from_code(a, "", e.type, e.rule, b & 0xFFFFFFFF, c & 0xFFFFFFFF)
        detail = exc.detail()
        return (f"{exc.name} {MESSAGE_NAMES.get(e.type, hex(e.type))}"
                + (f": {detail}" if detail else ""))
    if ev in ("stop", "suspend"):
        return label("stop_reason", a)
    if ev == "clock_set":
        return f"clock moved by {a:+d} s"
    if ev == "delivery_gap":
        return f"{a} steps skipped"
    if ev == "fault":
        return f"{a} faults since boot"
    if ev == "profile":
        return (f"{label('origin', c >> 8)}, {label('phase', c & 0xFF)}, {a} years, "
                f"ceiling {mcg_day(b)}")
    if ev == "bolus":
        return f"{label('bolus', e.type)} {mcg(a)} over {duration(b)} ({ml(c)})"
    if ev == "bolus_done":
        return f"{label('bolus', e.type)}: {mcg(a)} delivered, {mcg(b)} not"
    if ev == "patient_bolus_set":
        return f"{mcg(a)}, lockout {duration(b)}, {c} a day" if a else "off"
    if ev == "resume":
        return label("mode", a)
    if ev == "refill_begin":
        return f"{ml(a)} expected"
    if ev == "refill_commit":
        return f"filled {ml(a)} at {b} mcg/mL, drained {ml(c)}"
    if ev in ("refill_abort", "cap_end"):
        return "timed out" if a else ""
    if ev == "cap_begin":
        return f"until {datetime.fromtimestamp(a & 0xFFFFFFFF, tz=UTC):%Y-%m-%d %H:%M} UTC"
    if ev == "alarm":
        return f"{label('alarm', a)} {'raised' if b else 'cleared'}"
    if ev == "alarm_ack":
        return label("alarm", a)
    if ev == "alarm_silence":
        return f"tones off for {a} min"
    if ev == "escalation":
        return f"{mcg_day(a)} from {mcg_day(b)}, {c} recent increases"
    return ""


ORDER = 60


def register(sub: Commands, common: argparse.ArgumentParser) -> None:
    """The commands of this module, on pumpctl's parser."""
    p = sub.add_parser("log", parents=[common], help="the pump's event log")
    p.add_argument("--start", type=int, default=0, help="first event number (default 0)")
    p.set_defaults(func=cmd_log)

