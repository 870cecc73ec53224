"""host/refill_calc.py: the refill interval in exact arithmetic, checked by hand, against the
firmware's own schedule arithmetic, and against the dates a (simulated) pump reports."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from firmware import config
from firmware.core import schedule
from hil.launcher import SimProcess
from host import refill_calc as rc
from host.client import PumpClient

START = datetime(2027, 1, 1, tzinfo=UTC)
H = 3600


def test_continuous_by_hand() -> None:
    # 20 mL at 500 mcg/mL = 10 000 mcg at 400 mcg/day: dry in 25 days; 2 mL (1000 mcg) before
    # that the low level, at 22.5 days; the refill due 7 days earlier still
    p = rc.plan("20", 500, [(0, 400_000)], START)
    assert (p.dry_exact, p.low_exact) == (25 * 86_400, Fraction(45, 2) * 86_400)
    assert (p.days_to_empty, p.days_to_low, p.days_to_refill) == (25, Fraction(45, 2),
                                                                   Fraction(31, 2))
    assert p.refill_at == START + timedelta(days=15, hours=12)
    assert (p.mode, p.daily_dose_ng, p.rate_nl_day, p.drug_mcg) == (
        "continuous", 400_000, 800_000, 10_000)
    d = p.to_dict()
    assert (d["days_to_low"], d["days_to_empty"], d["days_to_refill"], d["rate_ul_day"]) == (
        "22.5", "25", "15.5", "800")
    assert (d["low_reservoir_ml"], d["refill_margin_days"]) == ("2", "7")


def test_flex_day_by_hand() -> None:
    # 10 mcg/h from midnight, 20 mcg/h from noon (the label's "more at night", turned round)
    steps = ((0, 240_000), (720, 480_000))
    volume = 300_000  # 0.3 mL at 500 mcg/mL: 150 mcg
    # from midnight: 12 h give 120 mcg, the last 30 mcg take 1.5 h at 20 mcg/h
    assert rc.seconds_to_deliver(steps, 0, volume, 500) == Fraction(27, 2) * H
    # from 11:00: 1 h gives 10 mcg, 140 mcg take 7 h more
    assert rc.seconds_to_deliver(steps, 11 * H, volume, 500) == 8 * H
    # from 23:00: the noon step runs until midnight, then 10 mcg/h: 20 + 12 * 10 + 10 / 20
    assert rc.seconds_to_deliver(steps, 23 * H, volume, 500) == Fraction(27, 2) * H
    assert rc.day_dose_ng(steps) == 360_000
    # before the first start, the last step runs (from the day before)
    night = ((420, 400_000), (1320, 480_000))
    # 1 uL at 480 mcg/mL is 480 ng: at 480 000 ng/day, 86.4 s
    assert rc.seconds_to_deliver(night, 0, 1000, 480) == Fraction(432, 5)


def test_utc_offset_moves_the_day() -> None:
    steps = [(0, 240_000), (720, 480_000)]
    utc = rc.plan("3", 500, steps, START)
    # at UTC+11 h, 00:00 UTC is 11:00 local
    local = rc.plan("3", 500, steps, START, utc_offset_min=660)
    assert utc.dry_exact != local.dry_exact
    assert local.dry_exact == rc.seconds_to_deliver(tuple(steps), 11 * H, 3_000_000, 500)


def test_whole_steps_and_a_low_fill() -> None:
    p = rc.plan("18.1234", 500, [(0, 400_000)], START)
    assert (p.fill_nl, p.usable_nl) == (18_123_400, 18_123_250)  # 250 nL a step
    low = rc.plan("2", 500, [(0, 400_000)], START)
    assert (low.low_s, low.refill_s, low.dry_s) == (0, 0, 216_000)  # at the alarm level
    short = rc.plan("5", 500, [(0, 400_000)], START)  # 3.75 days to the low level: due now
    assert (short.low_s, short.refill_s) == (324_000, 0)
    big = rc.plan("40", 2000, [(0, 400_000)], START, reservoir_ml=40)
    assert big.days_to_low == 190


def test_a_naive_start_is_utc_and_whole_seconds() -> None:
    p = rc.plan("20", 500, [(0, 400_000)], datetime(2027, 1, 1, 0, 0, 0, 500_000))
    assert p.start == START


def test_days_are_rounded_down() -> None:
    assert rc.days_text(Fraction(2, 3)) == "0.66"
    assert rc.days_text(Fraction(7)) == "7"
    assert rc.days_text(Fraction(1, 86_400)) == "0"


@pytest.mark.parametrize(("text", "message"), [
    ("7:00", "HH:MM=DOSE"),
    ("7=400", "HH:MM"),
    ("24:00=400", "not a time of day"),
    ("07:60=400", "not a time of day"),
    ("07:00=lots", "not a number"),
    ("07:00=0.0001", "resolution"),
])
def test_parse_step_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rc.parse_step(text)


def test_parse_step() -> None:
    assert rc.parse_step("22:00=480.5") == (1320, 480_500)
    assert rc.parse_step(" 07:05 = 400") == (425, 400_000)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"steps": []}, "needs a dose"),
    ({"steps": [(600, 1000), (600, 1000)]}, "order of the day"),
    ({"steps": [(0, 0)]}, "at least 0.001"),
    ({"steps": [(1440, 1000)]}, "not in the day"),
    ({"steps": [(m, 1000) for m in range(25)]}, "at most 24 steps"),
    ({"fill_ml": "20.25"}, "more than the reservoir holds"),
    ({"fill_ml": "0"}, "nothing filled"),
    ({"concentration": 0}, "1 to 2000"),
    ({"concentration": 50, "steps": [(0, 1_250_000)]}, "maximum rate"),
    ({"utc_offset_min": 900}, "UTC offset"),
])
def test_plan_refuses(kwargs: dict, message: str) -> None:
    args = {"fill_ml": "20", "concentration": 500, "steps": [(0, 400_000)], "start": START}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        rc.plan(**args)


# --- against the firmware's arithmetic and the pump's dates ---------------------------------------


@st.composite
def day_programs(draw: st.DrawFn, top_ng: int = 3_000_000) -> tuple[tuple[int, int], ...]:
    """A continuous dose or a flex day of 2 to 6 steps, each 1 mcg/day to top_ng."""
    if draw(st.booleans()):
        return ((0, draw(st.integers(1000, top_ng))),)
    starts = sorted(draw(st.sets(st.integers(0, 1439), min_size=2, max_size=6)))
    return tuple((s, draw(st.integers(1000, top_ng))) for s in starts)


@settings(max_examples=300, deadline=None)
@given(steps=day_programs(), sod=st.integers(0, 86_399), volume=st.integers(0, 40_000_000),
       conc=st.integers(1, 2000))
def test_agrees_with_the_firmware_schedule(steps: tuple[tuple[int, int], ...], sod: int,
                                           volume: int, conc: int) -> None:
    """Worked out apart (Fractions, the day cut in pieces), rounded up to the second, the time
    is the firmware's own (integers, step by step: schedule.s_to_deliver)."""
    exact = rc.seconds_to_deliver(steps, sod, volume, conc)
    assert math.ceil(exact) == schedule.s_to_deliver(steps, sod, volume, conc)


@st.composite
def refills(draw: st.DrawFn) -> tuple[int, int, tuple[tuple[int, int], ...], int, int]:
    """(concentration, fill nL, steps, UTC offset, start as pump clock s): what a clinician
    could program, within the pump's rate (24 mL/day) at that concentration."""
    conc = draw(st.sampled_from((500, 1000, 2000)) | st.integers(1, 2000))
    top = min(3_000_000, conc * config.MAX_RATE_NL_DAY // 1000)
    steps = draw(day_programs(top))
    fill = draw(st.integers(config.STEP_NL, config.RESERVOIR_NL))
    offset = draw(st.integers(-720, 840))
    start = draw(st.integers(int(START.timestamp()), int(START.timestamp()) + 3 * 365 * 86_400))
    return conc, fill, steps, offset, start


def check_against_the_pump(conc: int, fill_nl: int, steps: tuple[tuple[int, int], ...],
                           offset: int, start_s: int) -> None:
    """The calculator's dates are the ones a simulated pump reports in STATUS (low_at,
    refill_at, dry_at) for the same fill and program, to the second."""
    start = datetime.fromtimestamp(start_s, tz=UTC)
    plan = rc.plan(_ml(fill_nl), conc, steps, start, utc_offset_min=offset)
    with SimProcess("0") as sim, PumpClient(sim.pty, keys=sim.keys()) as pump:
        pump.set_clock(start)
        pump.set_profile("spinal", 40, "titration", "20000")
        confirm = () if conc in (50, 500, 1000, 2000) else ("custom_concentration",)
        pump.refill(_ml(fill_nl), conc, confirm=confirm)
        if len(steps) == 1:
            pump.set_continuous(_mcg(steps[0][1]), confirm="high_dose")
        else:
            pump.set_flex([(m, _mcg(d)) for m, d in steps], offset, confirm="high_dose")
        s = pump.status()
    assert s.clock == plan.start
    assert (s.low_at, s.refill_at, s.dry_at) == (plan.low_at, plan.refill_at, plan.dry_at)


def _ml(nl: int) -> str:
    return f"{nl // 1_000_000}.{nl % 1_000_000:06d}"


def _mcg(ng: int) -> str:
    return f"{ng // 1000}.{ng % 1000:03d}"


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=refills())
def test_agrees_with_the_pump(case: tuple[int, int, tuple[tuple[int, int], ...], int, int]
                              ) -> None:
    conc, fill_nl, steps, offset, start_s = case
    plan = rc.plan(_ml(fill_nl), conc, steps, datetime.fromtimestamp(start_s, tz=UTC),
                   utc_offset_min=offset)
    assume(plan.dry_at.timestamp() < 2**32)  # the pump's clock fields are u32 seconds
    check_against_the_pump(*case)


def test_agrees_with_the_pump_on_the_labels_night_program() -> None:
    """The label's example (2.4): 20 % more at night, from 2 h before it is wanted; a full
    reservoir at 09:00 local time."""
    steps = ((360, 400_000), (1200, 480_000))  # 06:00 400, 20:00 480 mcg/day
    check_against_the_pump(500, 20_000_000, steps, 60, int(START.timestamp()) + 8 * H)
