"""pumpctl log: the pump's event log, each entry's details in words; exported as CSV or JSON.

    pumpctl log                                  a table, for people
    pumpctl log --json                           JSON lines: one event object a line (scripts)
    pumpctl log --format csv --output log.csv    a file (the format also follows its suffix)
    pumpctl log --since 2026-03-01 --until 2026-03-02T12:00

--json keeps to JSON lines, one event a line, without the details in words (a stable shape for
scripts). The exports (--format csv|json, or --output FILE) are records for people and
spreadsheets: each event with its details in words. With --output, stdout gets a one-line
summary (a JSON object with --json)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from host import errors
from host.cli.ui import Commands, UsageError, emit, err, label, mcg, mcg_day, ml, out
from host.client import Event, PumpClient
from host.units import duration
from protocol import messages as m
from protocol.host_codec import MESSAGE_NAMES

FORMATS = ("table", "csv", "json", "jsonl")
CSV_COLUMNS: tuple[str, ...] = (
    "number", "time", "event", "role", "rule", "type", "a", "b", "c", "details")
SUFFIXES = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".txt": "table"}
PROGRESS_PAGES = 4  # a bar when the log takes more pages than this (at a terminal)


def cmd_log(pump: PumpClient, args: argparse.Namespace) -> None:
    since, until = iso_time(args.since, "--since"), iso_time(args.until, "--until")
    target = writable(args.output) if args.output else None
    fmt = log_format(args)
    events = [e for e in read_events(pump, args.start)
              if (since is None or e.time >= since) and (until is None or e.time <= until)]
    if target is None:
        if fmt == "table":
            out.print(table(events, args))
        else:
            write_events(sys.stdout, events, fmt)
        return
    try:
        with target.open("w", newline="", encoding="utf-8") as f:
            write_events(f, events, fmt)
    except OSError as e:
        raise UsageError(f"cannot write {target}: {e.strerror or e}") from e
    summary = {
        "output": str(target), "format": fmt, "events": len(events),
        "first": events[0].number if events else None,
        "last": events[-1].number if events else None,
    }
    emit(args, summary, lambda: out.print(
        f"wrote {len(events)} events to {target} ({fmt})", markup=False))


def log_format(args: argparse.Namespace) -> str:
    """The format: --format, else the --output file's suffix, else JSON lines for --json and
    a table for people."""
    if args.format:
        if args.format == "table" and args.json and not args.output:
            raise UsageError("--json prints JSON lines; --format table is for people: "
                             "give one of them")
        return args.format
    if args.output:
        suffix = Path(args.output).suffix.lower()
        if suffix not in SUFFIXES:
            raise UsageError(f"--output {args.output}: give --format ({', '.join(FORMATS)}); "
                             f"the suffix {suffix or '(none)'} does not say")
        return SUFFIXES[suffix]
    return "jsonl" if args.json else "table"


def iso_time(text: str | None, option: str) -> datetime | None:
    """An ISO date or date and time (UTC unless it says otherwise)."""
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError as e:
        raise UsageError(f"{option}: not an ISO date or date and time: {text!r} "
                         "(e.g. 2026-03-01 or 2026-03-01T08:00)") from e
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def writable(path: str) -> Path:
    """An output file that can be written: checked before the pump is asked for anything."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UsageError(f"cannot write {target}: it is a folder")
    if not folder.is_dir():
        raise UsageError(f"cannot write {target}: no folder {folder}")
    if not os.access(target if target.exists() else folder, os.W_OK):
        raise UsageError(f"cannot write {target}: permission denied")
    return target


def read_events(pump: PumpClient, start: int = 0, progress: bool | None = None) -> list[Event]:
    """The event log from number `start` (or the oldest held) to the newest, a page at a time
    (as PumpClient.events), with a progress bar on stderr when it takes many pages at a
    terminal (progress None) or when asked (True)."""
    page = pump.read_log(start)
    events = list(page.events)
    if not page.events or events[-1].number + 1 >= page.total:
        return events
    first = events[0].number
    if progress is None:
        progress = err.is_terminal and page.total - first > PROGRESS_PAGES * m.LOG_PAGE_EVENTS
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=err, transient=True, disable=not progress) as bar:
        task = bar.add_task("reading the event log", total=page.total - first,
                            completed=len(events))
        while True:
            page = pump.read_log(events[-1].number + 1)
            events.extend(page.events)
            bar.update(task, total=page.total - first, completed=len(events))
            if not page.events or events[-1].number + 1 >= page.total:
                return events


def export_row(e: Event) -> dict[str, Any]:
    """An event as the exports hold it: its fields, and its details in words."""
    return {**e.to_dict(), "details": event_details(e)}


def write_events(f: TextIO, events: list[Event], fmt: str) -> None:
    if fmt == "jsonl":  # as --json: the event's fields only
        for e in events:
            f.write(json.dumps(e.to_dict()) + "\n")
    elif fmt == "json":
        json.dump([export_row(e) for e in events], f, indent=1)
        f.write("\n")
    elif fmt == "csv":
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, lineterminator="\n")
        w.writeheader()
        for e in events:
            row = export_row(e)
            row["rule"] = row["rule"] or ""
            w.writerow(row)
    else:  # a table as plain text
        buf = io.StringIO()
        Console(file=buf, width=160, no_color=True, highlight=False).print(
            table(events, None))
        f.write(buf.getvalue())


def table(events: list[Event], args: argparse.Namespace | None) -> Table:
    window = ""
    if args is not None and (args.since or args.until):
        window = f", {args.since or 'start'} to {args.until or 'now'}"
    t = Table(title=f"event log ({len(events)} events{window})", title_justify="left")
    for col in ("#", "time (UTC)", "event", "by"):
        t.add_column(col, no_wrap=True)
    t.add_column("rule: details")
    for e in events:
        rule = f"[bold]{e.rule}[/]: " if e.rule else ""
        t.add_row(str(e.number), e.time.strftime("%Y-%m-%d %H:%M:%S"), e.event,
                  e.role if e.role != "none" else "pump", rule + event_details(e))
    return t


def event_details(e: Event) -> str:
    """The three details of a log entry (protocol/messages.py ENUMS["event"]), for people."""
    a, b, c = e.a, e.b, e.c
    ev = e.event
    if ev == "boot":
        return f"reset cause {a}"
    if ev == "program":
        was = f", was {mcg_day(b)}" if b else ""
        if label("mode", c) == "taper":
            return f"taper from {mcg_day(b)} to {mcg_day(a)}"
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
    if ev == "lockout":
        if a == 0:
            return f"CHALLENGE throttled, next in {duration(b)}"
        return f"{label('role', a)} locked out for {duration(b)} ({c} in a row)"
    if ev == "escalation":
        return f"{mcg_day(a)} from {mcg_day(b)}, {c} recent increases"
    if ev == "restored":
        off = "off for an unknown time" if a < 0 else f"off for {duration(a)}"
        return f"{off}, {label('mode', b)} resumed" + (", older copy used" if c else "")
    return ""


ORDER = 60


def register(sub: Commands, common: argparse.ArgumentParser) -> None:
    """The commands of this module, on pumpctl's parser."""
    p = sub.add_parser(
        "log", parents=[common], help="the pump's event log (table, CSV or JSON)",
        description="The pump's event log. --json prints JSON lines (one event a line); "
        "--format csv|json (or --output FILE.csv/.json) exports each event with its details "
        "in words.")
    p.add_argument("--start", type=int, default=0, help="first event number (default 0)")
    p.add_argument("--since", metavar="ISO", help="events at or after this pump time (UTC "
                   "unless given), e.g. 2026-03-01 or 2026-03-01T08:00")
    p.add_argument("--until", metavar="ISO", help="events at or before this pump time")
    p.add_argument("--format", "-f", choices=FORMATS,
                   help="table (default), csv, json (a list) or jsonl (--json's lines); "
                   "with --output the default follows the file's suffix")
    p.add_argument("--output", "-o", metavar="FILE", help="write the log to FILE")
    p.set_defaults(func=cmd_log)
