"""Flow accuracy in the style of IEC 60601-2-24:2012, clause 201.12.1: the start-up graph,
the mean flow error A and the trumpet curve, from delivered-volume samples.

The standard weighs the output of an infusion pump every S = 0.5 min over a test period of
120 min (T0 to T2) at a set rate r, then computes:

- the flow of each sample interval, Q_i = (V_i - V_(i-1)) / S, drawn against time over the
  whole period with r as a line: the start-up graph;
- the mean percentage flow error over the analysis period, A = 100 (Q - r) / r, where Q is the
  mean flow of that period;
- for observation windows P = 2, 5, 11, 19, 31 min (m = P / S sample intervals each), every
  window of m consecutive intervals that lies in the analysis period, sliding by one interval:
  E_p(max) and E_p(min), the largest and the smallest of the windows' mean percentage flow
  errors, (1/m) sum 100 (Q_i - r) / r. Drawn against P they make the trumpet curve.

The analysis period here is the second hour (60 to 120 min), as the standard takes it for the
trumpet curve of its 2-hour test: the first hour is the start-up, seen on the start-up graph.

The samples are the rig's delivered volume (nL, an integer: the plant's exact count or the
meter's reading), so every error is computed exactly, with integers and Fractions; floats are
used only to draw. Units for people: mL/day (how an intrathecal pump is programmed) and uL/h
(how the standard states a rate).

Input: (time_ms, delivered_nl) pairs, one every S from the start of the program, T / S + 1 of
them (241 for 120 min at 0.5 min). A series with a missing, late or extra sample is refused:
a gap would silently become one long interval and its flow would be wrong.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from hil.rig import Rig

MIN_MS = 60_000
DAY_MS = 86_400_000
HOUR_MS = 3_600_000

INTERVAL_MS = 30_000  # S = 0.5 min
PERIOD_MS = 120 * MIN_MS  # T0 to T2
ANALYSIS_START_MS = 60 * MIN_MS  # T1: the analysis period is the second hour
WINDOWS_MIN = (2, 5, 11, 19, 31)  # observation windows P

Rational = int | Fraction | Decimal


class AccuracyError(ValueError):
    """The samples cannot give the standard's figures (missing, late, too few...)."""


# -- units ------------------------------------------------------------------------------------


def rate_nl_day(dose_mcg_day: Rational | str, concentration_mcg_ml: int) -> Fraction:
    """The volume rate of a daily dose: mcg/day / (mcg/mL) = mL/day, in nL/day."""
    dose = Fraction(Decimal(dose_mcg_day) if isinstance(dose_mcg_day, str) else dose_mcg_day)
    return dose * 1_000_000 / concentration_mcg_ml


def ul_per_h(nl_day: Rational) -> Fraction:
    return Fraction(nl_day) / 24_000


def ml_per_day(nl_day: Rational) -> Fraction:
    return Fraction(nl_day) / 1_000_000


def fmt(value: Rational, places: int = 2, sign: bool = False) -> str:
    """An exact decimal rendering of value, rounded half-even to places."""
    q = round(Fraction(value) * 10**places)
    digits = f"{abs(q):0{places + 1}d}"
    text = digits[:-places] + "." + digits[-places:] if places else digits
    return ("-" if q < 0 else "+" if sign else "") + text


def rate_text(nl_day: Rational) -> str:
    """"1.6 mL/day (66.67 uL/h)": a rate as a clinician and as the standard state it."""
    ml = ml_per_day(nl_day)
    ml_text = fmt(ml, 4).rstrip("0").rstrip(".")
    return f"{ml_text} mL/day ({fmt(ul_per_h(nl_day), 2)} uL/h)"


# -- the figures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """The trumpet figures of one observation window P."""

    minutes: int  # P
    samples: int  # m = P / S, sample intervals per window
    count: int  # windows in the analysis period (sliding by one interval)
    max_pct: Fraction  # E_p(max)
    min_pct: Fraction  # E_p(min)
    max_at_ms: int  # where the window of E_p(max) starts (from T0; the first such window)
    min_at_ms: int

    @property
    def max_deviation_pct(self) -> Fraction:
        """The larger of |E_p(max)| and |E_p(min)|."""
        return max(abs(self.max_pct), abs(self.min_pct))


@dataclass(frozen=True)
class Accuracy:
    """The standard's figures for one run at one set rate (all exact)."""

    rate_nl_day: Fraction  # r
    interval_ms: int  # S
    analysis_start_ms: int  # T1
    delivered_nl: tuple[int, ...]  # V_0 .. V_n, counted from the first sample (V_0 = 0)
    mean_error_pct: Fraction  # A, over the analysis period
    windows: tuple[Window, ...]

    @property
    def period_ms(self) -> int:
        return self.interval_ms * (len(self.delivered_nl) - 1)

    @property
    def intervals(self) -> int:
        return len(self.delivered_nl) - 1

    def time_ms(self, k: int) -> int:
        return k * self.interval_ms

    def ideal_nl(self, k: int) -> Fraction:
        """What the set rate gives from T0 to sample k."""
        return self.rate_nl_day * self.time_ms(k) / DAY_MS

    @property
    def flows_nl_day(self) -> tuple[Fraction, ...]:
        """Q_1 .. Q_n: the mean flow of each sample interval (Q_i ends at sample i)."""
        per_day = Fraction(DAY_MS, self.interval_ms)
        v = self.delivered_nl
        return tuple((v[i] - v[i - 1]) * per_day for i in range(1, len(v)))

    @property
    def interval_errors_pct(self) -> tuple[Fraction, ...]:
        """100 (Q_i - r) / r for each sample interval."""
        r = self.rate_nl_day
        return tuple(100 * (q - r) / r for q in self.flows_nl_day)

    def window(self, minutes: int) -> Window:
        for w in self.windows:
            if w.minutes == minutes:
                return w
        raise KeyError(f"no {minutes}-min observation window (have "
                       f"{', '.join(str(w.minutes) for w in self.windows)})")


def _error_pct(delivered: int, rate_nl_day: Fraction, ms: int) -> Fraction:
    ideal = rate_nl_day * ms / DAY_MS
    return 100 * (delivered - ideal) / ideal


def analyse(
    samples: Sequence[tuple[int, int]],
    rate: Rational,
    *,
    interval_ms: int = INTERVAL_MS,
    period_ms: int = PERIOD_MS,
    analysis_start_ms: int = ANALYSIS_START_MS,
    windows_min: Iterable[int] = WINDOWS_MIN,
    jitter_ms: int = 0,
) -> Accuracy:
    """The standard's figures from (time_ms, delivered_nl) samples taken every interval_ms
    from the start (sample 0, T0) to period_ms, at a set rate in nL/day.

    Sample k must be at samples[0] time + k * interval_ms, give or take jitter_ms (a rig that
    sleeps in real time cannot hit the millisecond; each sample is taken as at its nominal
    time). Refused (AccuracyError): a missing, late or extra sample, too few samples for the
    period, a rate that is not positive, a window that is not a whole number of intervals or
    longer than the analysis period."""
    r = Fraction(rate)
    if r <= 0:
        raise AccuracyError(f"the set rate must be above 0 nL/day, not {r}")
    if interval_ms <= 0 or period_ms % interval_ms or analysis_start_ms % interval_ms:
        raise AccuracyError(f"the period ({period_ms} ms) and the start of its analysis "
                            f"({analysis_start_ms} ms) must be whole numbers of sample "
                            f"intervals ({interval_ms} ms)")
    if not 0 <= analysis_start_ms < period_ms:
        raise AccuracyError(f"the analysis period must start within the test period, not at "
                            f"{analysis_start_ms} ms of {period_ms} ms")
    n = period_ms // interval_ms
    if not samples:
        raise AccuracyError("no samples")
    t0 = samples[0][0]
    for k, (t, _v) in enumerate(samples):
        nominal = t0 + k * interval_ms
        if abs(t - nominal) > jitter_ms:
            raise AccuracyError(
                f"sample {k} is at {t - t0} ms, not {k * interval_ms} ms (+- {jitter_ms} ms): "
                f"a sample is missing or out of step (one every {interval_ms} ms)")
    if len(samples) != n + 1:
        have = (len(samples) - 1) * interval_ms
        raise AccuracyError(
            f"{len(samples)} samples cover {have / MIN_MS:g} min; the test period is "
            f"{period_ms / MIN_MS:g} min: {n + 1} samples, one every {interval_ms / 1000:g} s "
            f"from T0" + (" (too few)" if len(samples) < n + 1 else " (too many)"))
    v = tuple(s[1] - samples[0][1] for s in samples)
    a0 = analysis_start_ms // interval_ms
    mean = _error_pct(v[n] - v[a0], r, (n - a0) * interval_ms)

    windows = []
    for minutes in windows_min:
        p_ms = minutes * MIN_MS
        if p_ms % interval_ms:
            raise AccuracyError(f"a {minutes}-min window is not a whole number of "
                                f"{interval_ms} ms sample intervals")
        m = p_ms // interval_ms
        if m > n - a0:
            raise AccuracyError(f"a {minutes}-min window is longer than the analysis period "
                                f"({(n - a0) * interval_ms / MIN_MS:g} min)")
        errors = [(_error_pct(v[j + m] - v[j], r, p_ms), j) for j in range(a0, n - m + 1)]
        hi = max(errors, key=lambda e: e[0])  # the first window of the largest error
        lo = min(errors, key=lambda e: e[0])
        windows.append(Window(minutes, m, len(errors), hi[0], lo[0],
                              hi[1] * interval_ms, lo[1] * interval_ms))
    return Accuracy(r, interval_ms, analysis_start_ms, v, mean, tuple(windows))


def sample(rig: Rig, interval_ms: int = INTERVAL_MS,
           period_ms: int = PERIOD_MS) -> tuple[list[tuple[int, int]], int]:
    """(now_ms, delivered_nl) at T0 and every S after it until T, on the rig: it advances to
    each sample's time (so a rig that sleeps does not drift by the time a measure takes)."""
    first = rig.measure()
    t0 = first["now_ms"]
    samples = [(t0, first["delivered_nl"])]
    now = t0
    for k in range(1, period_ms // interval_ms + 1):
        target = t0 + k * interval_ms
        if now < target:
            now = rig.advance(target - now)
        reading = rig.measure()
        now = reading["now_ms"]
        samples.append((now, reading["delivered_nl"]))
    return samples, t0


# -- the files --------------------------------------------------------------------------------


def write_samples_csv(acc: Accuracy, path: Path) -> Path:
    """time_min, delivered_ul, ideal_ul, flow_ul_per_h (Q_i, ending at this sample),
    set_rate_ul_per_h. Exact decimals (flows rounded to 0.0001 uL/h)."""
    rate = fmt(ul_per_h(acc.rate_nl_day), 4)
    flows = ("",) + tuple(fmt(ul_per_h(q), 4) for q in acc.flows_nl_day)
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["time_min", "delivered_ul", "ideal_ul", "flow_ul_per_h",
                      "set_rate_ul_per_h"])
        for k, v in enumerate(acc.delivered_nl):
            out.writerow([fmt(Fraction(acc.time_ms(k), MIN_MS), 1), fmt(Fraction(v, 1000), 3),
                          fmt(acc.ideal_nl(k) / 1000, 3), flows[k], rate])
    return path


def write_trumpet_csv(acc: Accuracy, path: Path) -> Path:
    """One row per observation window: P, m, how many windows, E_p(max), E_p(min) (%), where
    they start (min from T0), A (%) and the set rate."""
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["window_min", "samples_m", "windows", "ep_max_pct", "ep_min_pct",
                      "ep_max_from_min", "ep_min_from_min", "a_pct", "set_rate_ml_per_day",
                      "set_rate_ul_per_h"])
        for w in acc.windows:
            out.writerow([w.minutes, w.samples, w.count, fmt(w.max_pct, 4), fmt(w.min_pct, 4),
                          fmt(Fraction(w.max_at_ms, MIN_MS), 1),
                          fmt(Fraction(w.min_at_ms, MIN_MS), 1), fmt(acc.mean_error_pct, 4),
                          fmt(ml_per_day(acc.rate_nl_day), 6),
                          fmt(ul_per_h(acc.rate_nl_day), 4)])
    return path


def _figure(width: float, height: float, rows: int = 1, **kw):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)  # Agg: no display, no pyplot state
    return fig, fig.subplots(rows, 1, squeeze=False, **kw)[:, 0]


def _ml_day_axis(ax) -> None:
    """A right-hand axis in mL/day for a left-hand axis in uL/h."""
    side = ax.secondary_yaxis("right", functions=(lambda u: u * 0.024, lambda m: m / 0.024))
    side.set_ylabel("mL/day")


def plot_startup(acc: Accuracy, path: Path, subtitle: str = "") -> Path:
    """The start-up graph: Q_i (uL/h, and mL/day on the right) over the test period with the
    set rate; below, the delivered volume against the ideal."""
    fig, (ax, vol) = _figure(9, 6.4, 2, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    edges = [acc.time_ms(k) / MIN_MS for k in range(len(acc.delivered_nl))]
    rate = float(ul_per_h(acc.rate_nl_day))
    t1, t2 = acc.analysis_start_ms / MIN_MS, acc.period_ms / MIN_MS
    flows = [float(ul_per_h(q)) for q in acc.flows_nl_day]
    ax.stairs(flows, edges, baseline=None, color="tab:blue", linewidth=1,
              label=f"flow Q_i (mean over each {acc.interval_ms / 1000:g} s)")
    ax.axhline(rate, color="tab:red", linestyle="--", linewidth=1.5,
               label=f"set rate r = {rate_text(acc.rate_nl_day)}")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.axvspan(t1, t2, color="0.92", zorder=0,
               label=f"analysis period ({t1:g}-{t2:g} min): A = "
                     f"{fmt(acc.mean_error_pct, 2, sign=True)} %")
    ax.set_ylabel("flow (uL/h)")
    low = min(0.0, *flows)
    ax.set_ylim(low, low + (max(rate, *flows) - low) * 1.45)  # headroom for the legend
    _ml_day_axis(ax)
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    ax.grid(True, alpha=0.3)
    title = f"Start-up graph, set rate {rate_text(acc.rate_nl_day)}"
    ax.set_title(title + (f"\n{subtitle}" if subtitle else ""))

    vol.plot(edges, [v / 1000 for v in acc.delivered_nl], color="tab:blue", linewidth=1.2,
             drawstyle="steps-post", label="delivered")
    vol.plot(edges, [float(acc.ideal_nl(k)) / 1000 for k in range(len(edges))],
             color="tab:red", linestyle="--", linewidth=1.2, label="ideal (set rate x time)")
    vol.axvspan(t1, t2, color="0.92", zorder=0)
    vol.set_ylabel("volume since T0 (uL)")
    vol.set_xlabel("time since the program started (min)")
    vol.set_xlim(0, t2)
    vol.set_xticks(range(0, int(t2) + 1, 10))
    vol.legend(loc="upper left", fontsize=8)
    vol.grid(True, alpha=0.3)
    fig.savefig(path)
    return path


def plot_trumpet(acc: Accuracy, path: Path, subtitle: str = "") -> Path:
    """The trumpet curve: E_p(max) and E_p(min) against the observation window P, with A."""
    fig, (ax,) = _figure(8, 5.2)
    ps = [w.minutes for w in acc.windows]
    ax.plot(ps, [float(w.max_pct) for w in acc.windows], "o-", color="tab:red",
            label="E_p(max)")
    ax.plot(ps, [float(w.min_pct) for w in acc.windows], "o-", color="tab:blue",
            label="E_p(min)")
    for w in acc.windows:
        ax.annotate(f"{fmt(w.max_pct, 2, sign=True)}", (w.minutes, float(w.max_pct)),
                    textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
        ax.annotate(f"{fmt(w.min_pct, 2, sign=True)}", (w.minutes, float(w.min_pct)),
                    textcoords="offset points", xytext=(0, -13), ha="center", fontsize=8)
    ax.axhline(float(acc.mean_error_pct), color="tab:green", linestyle="--",
               label=f"A = {fmt(acc.mean_error_pct, 2, sign=True)} % (mean, analysis period)")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(ps)
    ax.set_xlim(0, max(ps) + 2)
    lo = min(min(float(w.min_pct) for w in acc.windows), float(acc.mean_error_pct), -1)
    hi = max(max(float(w.max_pct) for w in acc.windows), float(acc.mean_error_pct), 1)
    pad = (hi - lo) * 0.12
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("observation window P (min)")
    ax.set_ylabel("flow error (%)")
    t1, t2 = acc.analysis_start_ms / MIN_MS, acc.period_ms / MIN_MS
    ax.set_title(f"Trumpet curve, set rate {rate_text(acc.rate_nl_day)}\n"
                 f"analysis period {t1:g}-{t2:g} min, S = {acc.interval_ms / MIN_MS:g} min"
                 + (f"; {subtitle}" if subtitle else ""))
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.savefig(path)
    return path


def write_files(acc: Accuracy, path_for: Callable[[str], Path], stem: str,
                subtitle: str = "") -> dict[str, Path]:
    """All four files, named stem + -samples.csv, -trumpet.csv, -startup.png, -trumpet.png;
    path_for turns a file name into where it goes."""
    return {
        "samples_csv": write_samples_csv(acc, path_for(f"{stem}-samples.csv")),
        "trumpet_csv": write_trumpet_csv(acc, path_for(f"{stem}-trumpet.csv")),
        "startup_png": plot_startup(acc, path_for(f"{stem}-startup.png"), subtitle),
        "trumpet_png": plot_trumpet(acc, path_for(f"{stem}-trumpet.png"), subtitle),
    }


def markdown_table(rows: Sequence[tuple[str, Accuracy]]) -> str:
    """One row per run: what was set, A, then E_p(max) / E_p(min) for each window (%)."""
    if not rows:
        return ""
    ps = [w.minutes for w in rows[0][1].windows]
    head = (["set", "rate", "A (%)"]
            + [f"E_{p} max / min (%)" for p in ps])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, acc in rows:
        cells = [label, rate_text(acc.rate_nl_day), fmt(acc.mean_error_pct, 2, sign=True)]
        cells += [f"{fmt(w.max_pct, 2, sign=True)} / {fmt(w.min_pct, 2, sign=True)}"
                  for w in acc.windows]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
