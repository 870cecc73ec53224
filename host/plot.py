"""Delivered against programmed dose, and an alarm timeline, as a PNG. Pure: data in, PNG out
(pumpctl plot, host/cli/plot.py, gathers the data from a pump), so it is tested with
synthetic events.

What goes in:
- the pump's event log (host.client.Event): program changes, stops, suspends and resumes,
  refill sessions, boluses, alarms raised and cleared, reboots, refusals;
- delivery readings (Sample: the pump clock and the pump's delivered total in mcg), from
  TELEMETRY events or the lines of `pumpctl status --watch --json`.

What is computed (PlotData; these series are what the tests check):
- `programmed`: what the pump is set to deliver, in mcg/day, as a step function of pump time:
  the program's daily dose while it runs, the minimum (catheter-patency) rate while suspended,
  nothing while stopped, while a refill session holds the outlet, or while the pump was off.
  During a taper the log holds its start and target but not each day's step: the value is
  None there (drawn as a band from start to target);
- `spans`: stopped, suspended, refill (outlet held), cap (access port session), taper and off
  (the pump was off before a reboot);
- `alarms`: each alarm from raised to cleared (end None: still active);
- `boluses`: each bolus, its dose and how long it ran;
- from the readings: `delivered` (mcg since the first reading) against `expected` (what the
  programmed dose and the boluses should have given over the same time), and
  `delivered_rate` (mcg/day averaged over bins, e.g. a quarter of an hour).

The figure (render): on top the dose rate, programmed (a step line) with the delivered rate
(bins) over it and the stopped/suspended/refill times shaded; in the middle the delivered
total against the expected total since the first reading, with the difference; at the bottom
a timeline: program changes, stops and suspends, refill sessions, boluses, one row per alarm
(red critical, orange alarm, blue notice) and the other events of note (refusals, reboots,
faults, clock changes).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from host.client import ALARM_LEVELS, Event
from protocol import messages as m

# The minimum (catheter-patency) rate a suspended pump runs: firmware/config.py
# MIN_RATE_NL_DAY (0.048 mL/day), never more than the program itself would give.
MIN_RATE_UL_DAY = 48.0
WIDTH_IN, HEIGHT_IN, DPI = 12.0, 8.5, 100  # the PNG: 1200 x 850 pixels
# Bin widths for the delivered rate (s): the smallest giving at most MAX_BINS bins.
BIN_CHOICES_S = (60, 300, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400)
MAX_BINS = 48
DAY_S = 86400.0

_MODES = dict(m.ENUMS["mode"])
_BOLUS_KINDS = dict(m.ENUMS["bolus"])
_ALARMS = dict(m.ENUMS["alarm"])
_STOP_REASONS = dict(m.ENUMS["stop_reason"])
# Events marked on the timeline's last row, and how.
OTHER_MARKS = {
    "refused": "refused request",
    "boot": "reboot",
    "fault": "firmware fault",
    "clock_set": "clock set",
    "delivery_gap": "delivery gap",
    "reservoir_empty": "reservoir ran dry",
    "escalation": "escalation",
    "repl": "link to REPL",
}


@dataclass(frozen=True)
class Sample:
    """A delivery reading: the pump clock and the pump's delivered total (mcg)."""

    time: datetime
    delivered_mcg: float


@dataclass(frozen=True)
class Span:
    """A stretch of time in a state: stopped, suspended, refill, cap, taper, off."""

    kind: str
    start: datetime
    end: datetime
    text: str = ""
    doses: tuple[float, float] | None = None  # a taper's (from, to), mcg/day


@dataclass(frozen=True)
class AlarmSpan:
    alarm: str
    level: int  # 2 critical, 1 alarm, 0 notice
    start: datetime
    end: datetime | None  # None: still active at the end of the window


@dataclass(frozen=True)
class BolusSpan:
    kind: str  # clinician, priming, screening, patient
    start: datetime
    end: datetime  # when it ended (or is to end)
    dose_mcg: float  # asked
    delivered_mcg: float | None  # None: not ended yet (or its end is not in the log)

    def given_by(self, t: datetime) -> float:
        """mcg of it given by time t, spread evenly over its run."""
        amount = self.dose_mcg if self.delivered_mcg is None else self.delivered_mcg
        if t <= self.start:
            return 0.0
        if t >= self.end or self.end <= self.start:
            return amount
        return amount * (t - self.start).total_seconds() / (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class Mark:
    """An event of note at one time (a program change, a refill, a refusal ...)."""

    kind: str
    time: datetime
    text: str


@dataclass
class PlotData:
    start: datetime
    end: datetime
    programmed: list[tuple[datetime, float | None]]  # steps: each value holds until the next
    spans: list[Span] = field(default_factory=list)
    alarms: list[AlarmSpan] = field(default_factory=list)
    boluses: list[BolusSpan] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    delivered: list[tuple[datetime, float]] = field(default_factory=list)  # mcg since 1st
    expected: list[tuple[datetime, float | None]] = field(default_factory=list)
    delivered_rate: list[tuple[datetime, datetime, float]] = field(default_factory=list)
    bin_s: int = 0

    def programmed_at(self, t: datetime) -> float | None:
        value: float | None = 0.0
        for when, v in self.programmed:
            if when > t:
                break
            value = v
        return value

    def programmed_total(self, t0: datetime, t1: datetime) -> float | None:
        """mcg the programmed dose and the boluses give from t0 to t1 (None: unknown, a
        taper)."""
        basal = integrate(self.programmed, t0, t1)
        if basal is None:
            return None
        return basal + sum(b.given_by(t1) - b.given_by(t0) for b in self.boluses)

    def summary(self) -> dict[str, Any]:
        """The figures the plot shows, for --json."""
        delivered = self.delivered[-1][1] if self.delivered else None
        expected = self.expected[-1][1] if self.expected else None
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "programmed_now_mcg_day": _round(self.programmed_at(self.end)),
            "programmed_total_mcg": _round(self.programmed_total(self.start, self.end)),
            "readings": len(self.delivered),
            "readings_from": self.delivered[0][0].isoformat() if self.delivered else None,
            "readings_to": self.delivered[-1][0].isoformat() if self.delivered else None,
            "delivered_mcg": _round(delivered),
            "expected_mcg": _round(expected),
            "difference_pct": difference_pct(delivered, expected),
            "bin_s": self.bin_s,
            "alarms": [{"alarm": a.alarm, "level": a.level, "raised": a.start.isoformat(),
                        "cleared": a.end.isoformat() if a.end else None} for a in self.alarms],
            "spans": [{"kind": s.kind, "start": s.start.isoformat(), "end": s.end.isoformat()}
                      for s in self.spans],
            "boluses": [{"kind": b.kind, "start": b.start.isoformat(), "dose_mcg": b.dose_mcg,
                         "delivered_mcg": b.delivered_mcg} for b in self.boluses],
        }


def _round(x: float | None, places: int = 3) -> float | None:
    return None if x is None else round(x, places)


def difference_pct(delivered: float | None, expected: float | None) -> float | None:
    """(delivered - expected) / expected in %, None when either is unknown or nothing was
    expected."""
    if delivered is None or expected is None or expected <= 0:
        return None
    return round((delivered - expected) / expected * 100, 2)


def integrate(steps: Sequence[tuple[datetime, float | None]], t0: datetime,
              t1: datetime) -> float | None:
    """mcg a step function of mcg/day gives from t0 to t1 (before its first step: 0)."""
    total = 0.0
    for i, (when, value) in enumerate(steps):
        until = steps[i + 1][0] if i + 1 < len(steps) else t1
        lo, hi = max(when, t0), min(until, t1)
        if hi <= lo:
            continue
        if value is None:
            return None
        total += value * (hi - lo).total_seconds() / DAY_S
    return total


# -- from the log to the series ---------------------------------------------------------------


@dataclass
class _Pump:
    """The state the log's events leave the pump in, as far as the dose goes."""

    dose: float | None = None  # mcg/day of the program in force (None: none)
    mode: str = "stopped"  # the program's mode: continuous, flex, taper
    run: str = "stopped"  # stopped, running, suspended
    held: bool = False  # a refill session holds the outlet
    cap: bool = False
    concentration: int | None = None  # mcg/mL
    taper: tuple[float, float] | None = None  # (from, to) mcg/day

    def rate(self, min_rate_ul_day: float) -> float | None:
        if self.held or self.run == "stopped" or (self.dose is None and self.taper is None):
            return 0.0
        if self.run == "suspended":
            dose = self.dose if self.taper is None else self.taper[0]
            floor = min_rate_ul_day * (self.concentration or 0) / 1000
            return min(floor, dose) if dose is not None else floor
        if self.taper is not None:
            return None
        return self.dose


def compute(
    events: Iterable[Event],
    samples: Iterable[Sample],
    start: datetime,
    end: datetime,
    *,
    concentration: int | None = None,
    min_rate_ul_day: float = MIN_RATE_UL_DAY,
    bin_s: int | None = None,
) -> PlotData:
    """The series of the plot over [start, end] (pump time, UTC). Events before start set the
    state the window begins in. concentration: the reservoir's before the first refill in the
    log (the suspended rate's dose depends on it)."""
    events = sorted(events, key=lambda e: (e.time, e.number))
    pump = _Pump(concentration=concentration)
    steps: list[tuple[datetime, float | None]] = []
    spans: list[Span] = []
    opened: dict[str, tuple[datetime, tuple[float, float] | None]] = {}
    alarms: list[AlarmSpan] = []
    raised: dict[str, datetime] = {}
    boluses: list[BolusSpan] = []
    marks: list[Mark] = []
    off: list[tuple[datetime, datetime]] = []
    first = events[0].time if events else start

    def state_spans(t: datetime) -> None:
        """Open and close the spans the pump's state now calls for."""
        want = {
            "stopped": pump.run == "stopped" and pump.dose is not None,
            "suspended": pump.run == "suspended",
            "refill": pump.held,
            "cap": pump.cap,
            "taper": pump.taper is not None and pump.run == "running",
        }
        for kind, on in want.items():
            if on and kind not in opened:
                opened[kind] = (t, pump.taper if kind == "taper" else None)
            elif not on and kind in opened:
                since, doses = opened.pop(kind)
                spans.append(_span(kind, since, t, doses))

    def step(t: datetime) -> None:
        value = pump.rate(min_rate_ul_day)
        if steps and steps[-1][0] == t:
            steps[-1] = (t, value)
        elif not steps or steps[-1][1] != value:
            steps.append((t, value))
        state_spans(t)

    step(first)
    for e in events:
        t, ev = e.time, e.event
        if ev == "program":
            mode = _MODES.get(e.c, str(e.c))
            if mode == "taper":
                pump.taper, pump.dose = (e.b / 1000, e.a / 1000), e.b / 1000
                text = f"taper {_n(e.b / 1000)} to {_n(e.a / 1000)} mcg/day"
            else:
                pump.taper, pump.dose = None, e.a / 1000
                text = f"{_n(e.a / 1000)} mcg/day" + ("" if mode == "continuous" else
                                                      f" ({mode})")
            pump.mode, pump.run = mode, "running"
            marks.append(Mark("program", t, text))
        elif ev == "stop":
            pump.run = "stopped"
            if pump.dose is None:  # stopped with nothing programmed: still a stop
                pump.dose = 0.0
            marks.append(Mark("stop", t, _STOP_REASONS.get(e.a, str(e.a))))
        elif ev == "suspend":
            pump.run = "suspended"
            marks.append(Mark("suspend", t, _STOP_REASONS.get(e.a, str(e.a))))
        elif ev == "resume":
            pump.run = "running"
            marks.append(Mark("resume", t, _MODES.get(e.a, str(e.a))))
        elif ev == "restored":  # state read back at boot; a: s the pump was off
            mode = _MODES.get(e.b, "stopped")
            pump.run = {"stopped": "stopped", "minimum_rate": "suspended"}.get(mode, "running")
            if e.a > 0:
                off.append((t - timedelta(seconds=e.a), t))
            pump.held = pump.cap = False  # sessions are closed at a reboot
        elif ev == "refill_begin":
            pump.held = True
        elif ev == "refill_commit":
            pump.held = False
            pump.concentration = e.b
            marks.append(Mark("refill", t, f"refill {e.a / 1e6:g} mL at {e.b} mcg/mL"))
        elif ev == "refill_abort":
            pump.held = False
        elif ev == "cap_begin":
            pump.cap = True
        elif ev == "cap_end":
            pump.cap = False
        elif ev == "bolus":
            kind = _BOLUS_KINDS.get(e.type, str(e.type))
            boluses.append(BolusSpan(kind, t, t + timedelta(seconds=e.b), e.a / 1000, None))
        elif ev == "bolus_done":
            kind = _BOLUS_KINDS.get(e.type, str(e.type))
            for i in range(len(boluses) - 1, -1, -1):
                b = boluses[i]
                if b.kind == kind and b.delivered_mcg is None:
                    boluses[i] = BolusSpan(b.kind, b.start, min(t, b.end) if t > b.start
                                           else b.start, b.dose_mcg, e.a / 1000)
                    break
        elif ev == "alarm":
            name = _ALARMS.get(e.a, f"alarm_{e.a}")
            if e.b:
                raised.setdefault(name, t)
            else:
                since = raised.pop(name, None)
                alarms.append(AlarmSpan(name, ALARM_LEVELS.get(name, 1),
                                        since if since is not None else min(first, start), t))
        if ev in OTHER_MARKS:
            marks.append(Mark(ev, t, OTHER_MARKS[ev]))
        step(t)
    step(max(end, first))
    for kind, (since, doses) in opened.items():
        spans.append(_span(kind, since, max(end, since), doses))
    for name, since in raised.items():
        alarms.append(AlarmSpan(name, ALARM_LEVELS.get(name, 1), since, None))
    for lo, hi in off:
        steps = _zero(steps, lo, hi)
        spans.append(Span("off", lo, hi, "pump off"))

    data = PlotData(start, end, _window(steps, start, end))
    data.spans = sorted((_clip(s, start, end) for s in spans if s.end > start and s.start < end
                         and s.end > s.start), key=lambda s: s.start)
    data.alarms = sorted((a for a in alarms if (a.end is None or a.end > start)
                          and a.start < end), key=lambda a: (a.start, a.alarm))
    data.boluses = [b for b in boluses if b.end >= start and b.start <= end]
    data.marks = [k for k in marks if start <= k.time <= end]
    readings(data, samples, steps, bin_s)
    return data


def _span(kind: str, start: datetime, end: datetime,
          doses: tuple[float, float] | None) -> Span:
    text = f"taper {_n(doses[0])} to {_n(doses[1])} mcg/day" if doses else ""
    return Span(kind, start, end, text, doses)


def _n(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".")


def _zero(steps: list[tuple[datetime, float | None]], lo: datetime,
          hi: datetime) -> list[tuple[datetime, float | None]]:
    """The step function with 0 from lo to hi."""
    before = [s for s in steps if s[0] < lo]
    after_value: float | None = 0.0
    for when, v in steps:
        if when <= hi:
            after_value = v
    after = [s for s in steps if s[0] > hi]
    return before + [(lo, 0.0), (hi, after_value)] + after


def _window(steps: list[tuple[datetime, float | None]], start: datetime,
            end: datetime) -> list[tuple[datetime, float | None]]:
    """The steps from start to end: the value at start first, the value at end last."""
    value: float | None = 0.0
    out: list[tuple[datetime, float | None]] = []
    for when, v in steps:
        if when <= start:
            value = v
        elif when < end and v != (out[-1][1] if out else value):
            out.append((when, v))
    out.insert(0, (start, value))
    out.append((end, out[-1][1]))
    return out


def _clip(s: Span, start: datetime, end: datetime) -> Span:
    return Span(s.kind, max(s.start, start), min(s.end, end), s.text, s.doses)


def readings(data: PlotData, samples: Iterable[Sample],
             steps: list[tuple[datetime, float | None]], bin_s: int | None = None) -> None:
    """From the delivery readings in the window: the delivered total since the first, the
    expected total over the same times, and the delivered rate per bin."""
    points = sorted((s for s in samples if data.start <= s.time <= data.end),
                    key=lambda s: s.time)
    if not points:
        return
    t0 = points[0].time
    offset = points[0].delivered_mcg
    last = offset
    for s in points:
        if s.delivered_mcg < last:  # the total went back (another pump, a reset): go on
            offset -= last - s.delivered_mcg
        last = s.delivered_mcg
        data.delivered.append((s.time, s.delivered_mcg - offset))
        basal = integrate(steps, t0, s.time)
        data.expected.append((s.time, None if basal is None else basal + sum(
            b.given_by(s.time) - b.given_by(t0) for b in data.boluses)))
    span = (points[-1].time - t0).total_seconds()
    if bin_s is None:
        bin_s = next((b for b in BIN_CHOICES_S if span / b <= MAX_BINS), BIN_CHOICES_S[-1])
    data.bin_s = bin_s
    if span < bin_s:
        return
    times = [t for t, _ in data.delivered]
    totals = [v for _, v in data.delivered]
    lo = t0
    while lo + timedelta(seconds=bin_s) <= points[-1].time:
        hi = lo + timedelta(seconds=bin_s)
        given = _interp(times, totals, hi) - _interp(times, totals, lo)
        data.delivered_rate.append((lo, hi, given * DAY_S / bin_s))
        lo = hi


def _interp(times: list[datetime], values: list[float], t: datetime) -> float:
    if t <= times[0]:
        return values[0]
    for i in range(1, len(times)):
        if times[i] >= t:
            a, b = times[i - 1], times[i]
            f = (t - a).total_seconds() / (b - a).total_seconds()
            return values[i - 1] + (values[i] - values[i - 1]) * f
    return values[-1]


# -- the figure -------------------------------------------------------------------------------

SPAN_STYLE = {  # shading on the dose panels
    "stopped": ("0.82", "stopped"),
    "suspended": ("#f6e7a8", "suspended (minimum rate)"),
    "refill": ("#cfe3f7", "refill session (outlet held)"),
    "off": ("0.55", "pump off"),
}
LEVEL_COLORS = {2: "tab:red", 1: "tab:orange", 0: "tab:blue"}
LEVEL_NAMES = {2: "critical", 1: "alarm", 0: "notice"}


def render(data: PlotData, path: Path, title: str = "", subtitle: str = "") -> tuple[int, int]:
    """Draw the plot to path (PNG); returns its size in pixels."""
    from matplotlib import dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # Agg: no display, no pyplot state
    rows = _timeline_rows(data)
    has_readings = bool(data.delivered)
    ratios = [3.2, 2.2 if has_readings else 0.9, max(1.6, 0.32 * len(rows) + 0.5)]
    rate_ax, total_ax, line_ax = fig.subplots(
        3, 1, sharex=True, gridspec_kw={"height_ratios": ratios})
    x0, x1 = mdates.date2num(data.start), mdates.date2num(data.end)

    def num(t: datetime) -> float:
        return float(mdates.date2num(t))

    # -- the dose rate
    shown: set[str] = set()
    for ax in (rate_ax, total_ax) if has_readings else (rate_ax,):
        for s in data.spans:
            if s.kind not in SPAN_STYLE:
                continue
            color, label = SPAN_STYLE[s.kind]
            ax.axvspan(num(s.start), num(s.end), color=color, alpha=0.6, lw=0, zorder=0,
                       label=label if ax is rate_ax and s.kind not in shown else None)
            if ax is rate_ax:
                shown.add(s.kind)
    xs = [num(t) for t, _ in data.programmed]
    ys = [math.nan if v is None else v for _, v in data.programmed]
    rate_ax.step(xs, ys, where="post", color="tab:blue", lw=2, label="programmed", zorder=3)
    for s in data.spans:
        if s.kind == "taper" and s.doses:
            hi, lo = s.doses
            rate_ax.fill_between([num(s.start), num(s.end)], [hi, hi], [lo, lo], hatch="//",
                                 facecolor="none", edgecolor="tab:blue", lw=0,
                                 label=s.text + " (daily steps)")
    if data.delivered_rate:
        edges = [num(a) for a, _, _ in data.delivered_rate] + [num(data.delivered_rate[-1][1])]
        rate_ax.stairs([r for _, _, r in data.delivered_rate], edges, baseline=None,
                       color="tab:orange", lw=1.6, zorder=4,
                       label=f"delivered (mean over {_span_text(data.bin_s)})")
    top = max([v for v in ys if not math.isnan(v)] + [r for _, _, r in data.delivered_rate]
              + [1.0])
    rate_ax.set_ylim(0, top * 1.35)
    for k in data.marks:
        if k.kind == "program":
            v = data.programmed_at(k.time)
            rate_ax.annotate(k.text, (num(k.time), v if v is not None else top),
                             xytext=(3, 4), textcoords="offset points", fontsize=8,
                             color="tab:blue")
    top_of = rate_ax.get_xaxis_transform()  # x in data, y in axes
    for b in data.boluses:
        rate_ax.plot([num(b.start)], [0.97], marker="v", color="tab:purple", ms=7,
                     transform=top_of, clip_on=False)
        rate_ax.annotate(f"{_n(b.dose_mcg)} mcg {b.kind} bolus", (num(b.start), 0.97),
                         xycoords=top_of, xytext=(6, 0), textcoords="offset points",
                         fontsize=8, color="tab:purple", va="center")
    rate_ax.set_ylabel("dose (mcg/day)")
    rate_ax.grid(True, alpha=0.3)
    rate_ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), fontsize=8, ncol=6,
                   frameon=False)

    # -- the totals
    if has_readings:
        tx = [num(t) for t, _ in data.delivered]
        delivered = [v for _, v in data.delivered]
        expected = [math.nan if v is None else v for _, v in data.expected]
        total_ax.plot(tx, delivered, color="tab:orange", lw=2.2, label="delivered")
        total_ax.plot(tx, expected, color="tab:blue", ls="--", lw=1.4,
                      label="expected (programmed + boluses)")
        total_ax.fill_between(tx, delivered, expected, color="tab:red", alpha=0.15, lw=0)
        s = data.summary()
        diff = s["difference_pct"]
        text = (f"delivered {_n(delivered[-1])} mcg, expected "
                f"{'-' if s['expected_mcg'] is None else _n(s['expected_mcg'])} mcg"
                + ("" if diff is None else f" ({diff:+.2f} %)"))
        total_ax.text(0.99, 0.05, text, transform=total_ax.transAxes, ha="right",
                      va="bottom", fontsize=9,
                      bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"})
        total_ax.set_ylabel("mcg since the\nfirst reading")
        total_ax.legend(loc="upper left", fontsize=8)
        total_ax.grid(True, alpha=0.3)
    else:
        total_ax.text(0.5, 0.5, "no delivery readings: add --watch-seconds N, or --telemetry "
                      "FILE (lines of `pumpctl status --watch --json`)", ha="center",
                      va="center", transform=total_ax.transAxes, fontsize=9, color="0.4")
        total_ax.set_yticks([])

    # -- the timeline
    for y, (_label, items) in enumerate(rows):
        for item in items:
            if isinstance(item, AlarmSpan):
                end = item.end or data.end
                line_ax.broken_barh([(num(item.start), num(end) - num(item.start))],
                                    (y - 0.35, 0.7), color=LEVEL_COLORS.get(item.level, "k"),
                                    alpha=0.85 if item.end else 0.55)
            elif isinstance(item, Span):
                color = SPAN_STYLE.get(item.kind, ("tab:cyan", ""))[0]
                line_ax.broken_barh([(num(item.start), num(item.end) - num(item.start))],
                                    (y - 0.35, 0.7), color=color, edgecolor="0.4", lw=0.5)
            elif isinstance(item, BolusSpan):
                width = max(num(item.end) - num(item.start), (x1 - x0) / 400)
                line_ax.broken_barh([(num(item.start), width)], (y - 0.35, 0.7),
                                    color="tab:purple")
            else:  # a Mark
                style = {"program": ("D", "tab:blue"), "refill": ("v", "tab:green"),
                         "refused": ("x", "tab:red"), "boot": ("^", "k"),
                         "fault": ("X", "tab:red"), "stop": ("s", "0.3"),
                         "suspend": ("s", "#c9a400"), "resume": (">", "tab:green")}
                marker, color = style.get(item.kind, ("o", "0.3"))
                line_ax.plot([num(item.time)], [y], marker=marker, color=color, ls="none",
                             ms=6)
    line_ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=8)
    line_ax.set_ylim(len(rows) - 0.5, -0.5)
    line_ax.grid(True, axis="x", alpha=0.3)
    line_ax.set_xlim(x0, x1)
    locator = mdates.AutoDateLocator(tz=UTC)
    line_ax.xaxis.set_major_locator(locator)
    line_ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    line_ax.set_xlabel("pump time (UTC)")
    if title or subtitle:
        fig.suptitle(title + (f"\n{subtitle}" if subtitle else ""), fontsize=11)
    fig.savefig(path, format="png")
    width, height = fig.canvas.get_width_height()
    return int(width), int(height)


def _timeline_rows(data: PlotData) -> list[tuple[str, list[Any]]]:
    """The timeline's rows, top down: (label, items)."""
    rows: list[tuple[str, list[Any]]] = [
        ("program", [k for k in data.marks if k.kind in ("program", "resume")]),
        ("stopped / suspended", [s for s in data.spans if s.kind in ("stopped", "suspended")]
         + [k for k in data.marks if k.kind in ("stop", "suspend")]),
        ("refill", [s for s in data.spans if s.kind == "refill"]
         + [k for k in data.marks if k.kind == "refill"]),
        ("bolus", list(data.boluses)),
    ]
    if any(s.kind == "cap" for s in data.spans):
        rows.append(("access port", [s for s in data.spans if s.kind == "cap"]))
    names = sorted({a.alarm for a in data.alarms},
                   key=lambda n: (-ALARM_LEVELS.get(n, 1), n))
    for name in names:
        level = ALARM_LEVELS.get(name, 1)
        rows.append((f"{name} ({LEVEL_NAMES.get(level, level)})",
                     [a for a in data.alarms if a.alarm == name]))
    if not names:
        rows.append(("alarms: none", []))
    other = [k for k in data.marks if k.kind in OTHER_MARKS and k.kind != "escalation"]
    if other:
        kinds = sorted({k.kind for k in other})
        rows.append((", ".join(OTHER_MARKS[k] for k in kinds), other))
    return rows


def _span_text(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min"
