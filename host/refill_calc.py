"""How long a reservoir lasts at a program: the refill interval, in exact arithmetic.

Given the volume filled, the drug's concentration and the program (continuous infusion, or a
flex day of steps), when does the reservoir reach the low-reservoir alarm level, when does it
run dry, and when is the refill due (REFILL_MARGIN_S before the low level)? The pump works the
same dates out itself (firmware/core/therapy.py _dates, schedule.s_to_deliver) and reports them
in STATUS (low_at, refill_at, dry_at); this module does it on its own, in Fractions, from the
same constants (firmware/config.py), so that the two can check each other to the second.

As the pump does it: only whole motor steps of the fill can be delivered (the rest is never
pumped); each time is the first moment the program has delivered that much, rounded up to
the next whole second; the refill is due the margin before the low level, or at once. Pure:
no pump, no clock (the start is given)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from fractions import Fraction
from typing import Any

from firmware import config
from host.units import Number, mcg_to_ng, ml_to_nl

DAY_S = 86_400
DAY_MIN = 1_440
# The pump models (config.py: "a 20 mL or a 40 mL reservoir"); the board's is RESERVOIR_ML.
RESERVOIR_SIZES_ML = (20, 40)
MAX_FLEX_STEPS = 24  # protocol/messages.py FLEX_STEPS_MAX

ProgramSteps = tuple[tuple[int, int], ...]  # (start minute of the local day, ng/day), rising


def minute_of_day(text: str) -> int:
    """'HH:MM' (00:00 to 23:59) -> minutes since midnight."""
    h, sep, mnt = text.strip().partition(":")
    if not (sep and h.isdigit() and mnt.isdigit() and len(mnt) == 2):
        raise ValueError(f"a step starts at HH:MM, not {text!r}")
    hour, minute = int(h), int(mnt)
    if hour > 23 or minute > 59:
        raise ValueError(f"{text!r} is not a time of day (00:00 to 23:59)")
    return hour * 60 + minute


def parse_step(text: str) -> tuple[int, int]:
    """'HH:MM=DOSE' (DOSE in mcg/day, up to 0.001) -> (start minute, ng/day)."""
    start, sep, dose = text.partition("=")
    if not sep:
        raise ValueError(f"a step is HH:MM=DOSE (mcg/day), e.g. 22:00=480, not {text!r}")
    return minute_of_day(start), mcg_to_ng(dose.strip())


def program_steps(steps: Iterable[tuple[int, int]]) -> ProgramSteps:
    """Steps checked as the pump checks a program: at least one, rising starts within the
    day, every dose at least 1 ng/day."""
    out = tuple((int(start), int(dose)) for start, dose in steps)
    if not out:
        raise ValueError("a program needs a dose (continuous) or steps (flex)")
    if len(out) > MAX_FLEX_STEPS:
        raise ValueError(f"at most {MAX_FLEX_STEPS} steps in a day, not {len(out)}")
    for i, (start, dose) in enumerate(out):
        if not 0 <= start < DAY_MIN:
            raise ValueError(f"step {i + 1} starts at minute {start}: not in the day")
        if i and start <= out[i - 1][0]:
            raise ValueError(f"step {i + 1} starts at minute {start}, not after "
                             f"{out[i - 1][0]}: give the steps in the order of the day")
        if dose < 1:
            raise ValueError(f"step {i + 1}: a dose of at least 0.001 mcg/day")
    return out


def _segments(steps: ProgramSteps) -> list[tuple[int, int, int]]:
    """The day as (start second, end second, ng/day) pieces covering 0..DAY_S, the step in
    force before the first start being the last one (from the day before)."""
    edges = [(start * 60, dose) for start, dose in steps]
    if edges[0][0] != 0:
        edges.insert(0, (0, steps[-1][1]))
    out = []
    for i, (start, dose) in enumerate(edges):
        end = edges[i + 1][0] if i + 1 < len(edges) else DAY_S
        out.append((start, end, dose))
    return out


def day_dose_ng(steps: ProgramSteps) -> Fraction:
    """ng the program delivers in a day, exactly."""
    return sum((Fraction(dose * (end - start), DAY_S) for start, end, dose in
                _segments(steps)), Fraction(0))


def seconds_to_deliver(steps: ProgramSteps, second_of_day: int, volume_nl: int,
                       concentration: int) -> Fraction:
    """Exact seconds the program takes, from a second of the local day, to deliver volume_nl
    of a drug at concentration mcg/mL (1 nL at C mcg/mL holds C pg). Every dose is at least
    1 ng/day, so the delivered amount rises strictly and the moment is unique."""
    need = Fraction(volume_nl * concentration)  # pg
    if need <= 0:
        return Fraction(0)
    per_day = day_dose_ng(steps) * 1000  # pg a day
    days = math.floor(need / per_day)
    need -= days * per_day
    t = Fraction(days * DAY_S)
    segments = _segments(steps)
    s = second_of_day % DAY_S
    i = next(k for k, (start, end, _dose) in enumerate(segments) if start <= s < end)
    while need > 0:
        start, end, dose = segments[i]
        span = end - s
        per_s = Fraction(dose * 1000, DAY_S)  # pg a second
        if per_s * span >= need:
            return t + need / per_s
        need -= per_s * span
        t += span
        i = (i + 1) % len(segments)
        s = segments[i][0]
    return t


def _days(seconds: int) -> Fraction:
    return Fraction(seconds, DAY_S)


def days_text(days: Fraction, places: int = 2) -> str:
    """Days for people and JSON: rounded down (a reservoir lasts at least this long)."""
    q = (Decimal(days.numerator) / Decimal(days.denominator)).quantize(
        Decimal(1).scaleb(-places), rounding=ROUND_FLOOR)
    text = f"{q:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _decimal(value: Fraction, places: int = 3, rounding: str = ROUND_CEILING) -> Decimal:
    q = (Decimal(value.numerator) / Decimal(value.denominator)).quantize(
        Decimal(1).scaleb(-places), rounding=rounding)
    return q.normalize() if q != q.to_integral_value() else q.quantize(Decimal(1))


@dataclass(frozen=True)
class RefillPlan:
    """When a fill runs low, is due for a refill and runs dry, from `start`."""

    start: datetime
    reservoir_nl: int
    fill_nl: int
    concentration: int  # mcg/mL
    steps: ProgramSteps
    utc_offset_min: int
    usable_nl: int  # the fill in whole motor steps: what the pump can deliver
    low_nl: int  # the low-reservoir alarm level
    margin_s: int  # the refill is due this long before the low level
    low_s: int  # seconds from start (0: at or below the low level already)
    dry_s: int
    refill_s: int
    low_exact: Fraction  # the same, before rounding up to whole seconds
    dry_exact: Fraction

    @property
    def mode(self) -> str:
        return "continuous" if len(self.steps) == 1 and self.steps[0][0] == 0 else "flex"

    @property
    def daily_dose_ng(self) -> Fraction:
        return day_dose_ng(self.steps)

    @property
    def rate_nl_day(self) -> Fraction:
        """Mean volume a day (nL/day) at the concentration."""
        return self.daily_dose_ng * 1000 / self.concentration

    @property
    def drug_mcg(self) -> Fraction:
        return Fraction(self.usable_nl * self.concentration, 1_000_000)

    @property
    def days_to_low(self) -> Fraction:
        return _days(self.low_s)

    @property
    def days_to_empty(self) -> Fraction:
        return _days(self.dry_s)

    @property
    def days_to_refill(self) -> Fraction:
        return _days(self.refill_s)

    @property
    def low_at(self) -> datetime:
        return self.start + timedelta(seconds=self.low_s)

    @property
    def dry_at(self) -> datetime:
        return self.start + timedelta(seconds=self.dry_s)

    @property
    def refill_at(self) -> datetime:
        return self.start + timedelta(seconds=self.refill_s)

    def to_dict(self) -> dict[str, Any]:
        """For --json: quantities as strings (mcg, mL, days), dates in ISO 8601."""
        return {
            "start": self.start.isoformat(),
            "reservoir_ml": str(_decimal(Fraction(self.reservoir_nl, 1_000_000), 6)),
            "fill_ml": str(_decimal(Fraction(self.fill_nl, 1_000_000), 6)),
            "usable_ml": str(_decimal(Fraction(self.usable_nl, 1_000_000), 6)),
            "concentration_mcg_ml": self.concentration,
            "mode": self.mode,
            "steps": [{"start_min": start, "daily_dose_mcg": str(_decimal(Fraction(dose, 1000)))}
                      for start, dose in self.steps],
            "utc_offset_min": self.utc_offset_min,
            "daily_dose_mcg": str(_decimal(self.daily_dose_ng / 1000)),
            "rate_ul_day": str(_decimal(self.rate_nl_day / 1000)),
            "low_reservoir_ml": str(_decimal(Fraction(self.low_nl, 1_000_000), 6)),
            "refill_margin_days": days_text(_days(self.margin_s), 3),
            "days_to_low": days_text(self.days_to_low),
            "days_to_empty": days_text(self.days_to_empty),
            "days_to_refill": days_text(self.days_to_refill),
            "low_at": self.low_at.isoformat(),
            "refill_at": self.refill_at.isoformat(),
            "dry_at": self.dry_at.isoformat(),
        }


def plan(
    fill_ml: Number,
    concentration: int,
    steps: Sequence[tuple[int, int]],
    start: datetime,
    *,
    utc_offset_min: int = 0,
    reservoir_ml: Number = config.RESERVOIR_ML,
    step_nl: int = config.STEP_NL,
    low_nl: int = config.LOW_RESERVOIR_NL,
    margin_s: int = config.REFILL_MARGIN_S,
    max_rate_nl_day: int = config.MAX_RATE_NL_DAY,
) -> RefillPlan:
    """The plan for a fill of fill_ml at concentration mcg/mL running `steps` ((start minute
    of the local day, ng/day), one step at minute 0 for continuous infusion) from `start` (a
    naive time is UTC). The local day is UTC + utc_offset_min, as the pump's program has it.
    Raises ValueError for what the pump would not take (an overfill, a rate over the pump's
    maximum, a concentration out of range)."""
    prog = program_steps(steps)
    if not -720 <= utc_offset_min <= 840:
        raise ValueError(f"a UTC offset of -720 to 840 min, not {utc_offset_min}")
    if not 1 <= concentration <= 2000:
        raise ValueError(f"a concentration of 1 to 2000 mcg/mL (label 2.3), not {concentration}")
    reservoir_nl = ml_to_nl(reservoir_ml)
    fill_nl = ml_to_nl(fill_ml)
    if fill_nl <= 0:
        raise ValueError("nothing filled: give the volume in the reservoir after the refill")
    if fill_nl > reservoir_nl:
        raise ValueError(f"{fill_ml} mL is more than the reservoir holds "
                         f"({_decimal(Fraction(reservoir_nl, 1_000_000), 6)} mL)")
    top = max(dose for _start, dose in prog)
    if -(-top * 1000 // concentration) > max_rate_nl_day:
        raise ValueError(f"{_decimal(Fraction(top, 1000))} mcg/day at {concentration} mcg/mL "
                         f"is over the pump's maximum rate of "
                         f"{_decimal(Fraction(max_rate_nl_day, 1_000_000), 6)} mL/day")
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    start = start.replace(microsecond=0)
    sod = (int(start.timestamp()) + utc_offset_min * 60) % DAY_S
    usable = fill_nl - fill_nl % step_nl
    dry = seconds_to_deliver(prog, sod, usable, concentration)
    low = (seconds_to_deliver(prog, sod, usable - low_nl, concentration)
           if usable > low_nl else Fraction(0))
    low_s = math.ceil(low)
    return RefillPlan(
        start=start, reservoir_nl=reservoir_nl, fill_nl=fill_nl, concentration=concentration,
        steps=prog, utc_offset_min=utc_offset_min, usable_nl=usable, low_nl=low_nl,
        margin_s=margin_s, low_s=low_s, dry_s=math.ceil(dry),
        refill_s=max(0, low_s - margin_s), low_exact=low, dry_exact=dry,
    )
