"""pumpctl plot: delivered against programmed dose over time, and an alarm timeline, as a PNG.

The programmed dose comes from the event log (program changes, stops, suspends, refill
sessions, boluses; host/plot.py rebuilds it as a step function); the alarms too. What was
delivered comes from delivery readings: recorded earlier with `pumpctl status --watch N --json
> readings.jsonl` and given as --telemetry FILE (JSON lines, or CSV with clock and
delivered_mcg columns), or read now for --watch-seconds S (the pump's TELEMETRY every --period
pump seconds). Without readings the plot shows the programmed dose and the timeline, and the
pump's own count of the last 24 h against the programmed dose of those 24 h."""

from __future__ import annotations

import argparse
import csv
import io
import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from host import errors
from host.cli.log import iso_time, read_events, writable
from host.cli.ui import Commands, UsageError, emit, err, out
from host.client import PumpClient, Telemetry
from host.plot import Sample, compute, difference_pct, render

DEFAULT_HOURS = 24 * 7


def cmd_plot(pump: PumpClient, args: argparse.Namespace) -> None:
    target = writable(args.output)
    since = iso_time(args.since, "--since")
    if args.hours <= 0:
        raise UsageError("--hours must be more than 0")
    if args.watch_seconds is not None and args.watch_seconds <= 0:
        raise UsageError("--watch-seconds must be more than 0")
    if args.period < 1:
        raise UsageError("--period must be at least 1 s")
    samples = load_samples(Path(args.telemetry)) if args.telemetry else []
    info = pump.info()
    status = pump.status()
    events = read_events(pump)
    if args.watch_seconds:
        samples.append(Sample(status.clock, float(status.delivered_mcg)))
        samples += watch(pump, args.watch_seconds, args.period)
        status = pump.status()
        samples.append(Sample(status.clock, float(status.delivered_mcg)))
        last = events[-1].number if events else -1
        events += [e for e in read_events(pump, last + 1) if e.number > last]
    end = max([status.clock] + [s.time for s in samples])
    start = since if since is not None else end - timedelta(hours=args.hours)
    if start >= end:
        raise UsageError(f"--since {args.since}: after the pump's clock ({end:%Y-%m-%d %H:%M} "
                         "UTC)")
    concentration = status.concentration_mcg_ml or None
    bin_s = round(args.bin_minutes * 60) if args.bin_minutes else None
    data = compute(events, samples, start, end, concentration=concentration, bin_s=bin_s)
    day = compute(events, [], end - timedelta(hours=24), end, concentration=concentration)
    day_programmed = day.programmed_total(day.start, day.end)
    last_24h = {
        "delivered_mcg": float(status.last_24h_mcg),
        "programmed_mcg": None if day_programmed is None else round(day_programmed, 3),
        "difference_pct": difference_pct(float(status.last_24h_mcg), day_programmed),
    }
    title = (f"intrapump {info.board_id}: delivered against programmed dose, "
             f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC")
    drug = f" at {status.concentration_mcg_ml} mcg/mL" if status.concentration_mcg_ml else ""
    subtitle = (f"now {status.mode}, {_n(status.daily_dose_mcg)} mcg/day{drug}; last 24 h "
                f"(pump's count): {_n(status.last_24h_mcg)} mcg delivered, "
                + ("programmed unknown (taper)" if day_programmed is None
                   else f"{_n(day_programmed)} mcg programmed")
                + f"; active alarms: {', '.join(status.alarms) or 'none'}")
    try:
        width, height = render(data, target, title, subtitle)
    except OSError as e:
        raise UsageError(f"cannot write {target}: {e.strerror or e}") from e
    skipped = sum(1 for s in samples if not start <= s.time <= end)
    summary: dict[str, Any] = {
        "output": str(target), "width": width, "height": height,
        "board_id": info.board_id, "events": len(events), "readings_skipped": skipped,
        **data.summary(), "last_24h": last_24h,
    }

    def human() -> None:
        out.print(f"wrote {target} ({width} x {height} px): {start:%Y-%m-%d %H:%M} to "
                  f"{end:%Y-%m-%d %H:%M} UTC, {len(events)} events", markup=False,
                  soft_wrap=True)
        if data.delivered:
            diff = summary["difference_pct"]
            expected = summary["expected_mcg"]
            out.print(f"  {len(data.delivered)} readings: delivered "
                      f"{_n(summary['delivered_mcg'])} mcg, expected "
                      + ("unknown (taper)" if expected is None else f"{_n(expected)} mcg")
                      + ("" if diff is None else f" ({diff:+.2f} %)"), markup=False)
        else:
            out.print("  no delivery readings (add --watch-seconds or --telemetry)")
        out.print(f"  last 24 h: {_n(status.last_24h_mcg)} mcg delivered"
                  + ("" if day_programmed is None else f", {_n(day_programmed)} mcg programmed"))
        if skipped:
            err.print(f"pumpctl: {skipped} readings outside the window left out")

    emit(args, summary, human)


def _n(x: float | Decimal, places: int = 1) -> str:
    """A dose for people: to 0.1 mcg (the figures in --json keep 0.001 mcg)."""
    text = f"{float(x):.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def watch(pump: PumpClient, seconds: float, period_s: int) -> list[Sample]:
    """Delivery readings from the pump's TELEMETRY for `seconds` of this computer's time."""
    samples: list[Sample] = []
    pump.set_telemetry(period_s)
    try:
        deadline = time.monotonic() + seconds
        with err.status("reading telemetry", spinner="dots") as spin:
            while (left := deadline - time.monotonic()) > 0:
                event = pump.next_event(min(left, 0.5))
                if isinstance(event, Telemetry):
                    samples.append(Sample(event.clock, float(event.delivered_mcg)))
                    spin.update(f"reading telemetry: {len(samples)} readings, pump time "
                                f"{event.clock:%Y-%m-%d %H:%M:%S}")
    finally:
        try:
            pump.set_telemetry(0)
        except errors.PumpError:
            pass  # the link's failure is the news
    return samples


def load_samples(path: Path) -> list[Sample]:
    """Delivery readings from a file: the JSON lines of `pumpctl status --watch --json` (or of
    TELEMETRY events), or CSV with a header naming clock (or time) and delivered_mcg."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"--telemetry {path}: cannot read: {e.strerror or e}") from e
    rows: list[tuple[int, dict[str, Any]]] = []
    if text.lstrip().startswith("{"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise UsageError(f"--telemetry {path}:{n}: not JSON ({e})") from e
            if not isinstance(row, dict):
                raise UsageError(f"--telemetry {path}:{n}: not a JSON object")
            if "error" not in row:  # a failed reading in the record
                rows.append((n, row))
    else:
        reader = csv.DictReader(io.StringIO(text))
        rows = [(n, row) for n, row in enumerate(reader, 2)]
    samples = []
    for n, row in rows:
        when, total = row.get("clock") or row.get("time"), row.get("delivered_mcg")
        if when is None or total is None:
            raise UsageError(f"--telemetry {path}:{n}: a reading needs clock (or time) and "
                             "delivered_mcg")
        try:
            t = datetime.fromisoformat(str(when))
            mcg = float(Decimal(str(total)))
        except (ValueError, InvalidOperation) as e:
            raise UsageError(f"--telemetry {path}:{n}: not a time and a number: {when!r}, "
                             f"{total!r}") from e
        samples.append(Sample(t if t.tzinfo is not None else t.replace(tzinfo=UTC), mcg))
    if not samples:
        raise UsageError(f"--telemetry {path}: no readings in it")
    return samples


ORDER = 65


def register(sub: Commands, common: argparse.ArgumentParser) -> None:
    """The commands of this module, on pumpctl's parser."""
    p = sub.add_parser(
        "plot", parents=[common],
        help="delivered against programmed dose, and the alarms, as a PNG",
        description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("--output", "-o", required=True, metavar="FILE.png", help="the PNG to write")
    p.add_argument("--hours", type=float, default=DEFAULT_HOURS,
                   help=f"hours of pump time up to now (default {DEFAULT_HOURS}: a week)")
    p.add_argument("--since", metavar="ISO", help="from this pump time instead of --hours")
    p.add_argument("--telemetry", metavar="FILE",
                   help="delivery readings: lines of `pumpctl status --watch N --json`, or "
                   "CSV with clock and delivered_mcg columns")
    p.add_argument("--watch-seconds", type=float, metavar="S",
                   help="read the pump's telemetry for S seconds first (slow on a real pump: "
                   "its time runs at 1x)")
    p.add_argument("--period", type=int, default=60, metavar="S",
                   help="with --watch-seconds: a reading every S s of pump time (default 60)")
    p.add_argument("--bin-minutes", type=float, metavar="M",
                   help="average the delivered rate over M minutes (default: 48 bins at most)")
    p.set_defaults(func=cmd_plot)
