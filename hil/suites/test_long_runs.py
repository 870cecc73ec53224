"""Long runs: 30 and 90 days of flex therapy (+20 % at night, label 2.4) with a refill every
two weeks, as a patient's pump lives them. Sampled every hour on the rig: every 24 h window
between samples delivers the flex day's integral to one motor step (a repeating day makes
any 24 h window hold exactly one day's dose), the pump's own account agrees with the
rig's meter, and no alarm other than the notices a refill answers is raised."""

from __future__ import annotations

import time

import pytest

from hil.pytest_plugin import HilReport
from hil.rig import Rig
from hil.suites.kit import FLEX_NIGHT_PLUS_20, flex_day_nl, prepare
from host.client import PumpClient

HOUR_MS = 3_600_000
DAY_H = 24
CONC = 500  # mcg/mL
FLEX = FLEX_NIGHT_PLUS_20
REFILL_EVERY_DAYS = 14
FILL_ML = 20


@pytest.mark.hil
@pytest.mark.rig("time_control", "delivered_volume")
@pytest.mark.timeout(900)
@pytest.mark.parametrize("days", [30, 90])
def test_flex_therapy_with_refills(
    pump: PumpClient, rig: Rig, hil_report: HilReport, days: int
) -> None:
    step_nl = pump.info().step_nl
    prepare(pump, concentration=CONC, fill_ml=FILL_ML)
    pump.set_flex(FLEX)
    ideal = flex_day_nl(FLEX, CONC)
    tolerance = step_nl + rig.delivered_tolerance_nl
    samples = [rig.measure()["delivered_nl"]]
    refills = 0
    t0 = time.perf_counter()
    for hour in range(1, days * DAY_H + 1):
        rig.advance(HOUR_MS)
        samples.append(rig.measure()["delivered_nl"])
        if hour % (REFILL_EVERY_DAYS * DAY_H) == 0:
            s = pump.status()
            pump.refill(FILL_ML, CONC, drained_ml=s.reservoir_ul / 1000, concentration_again=CONC)
            refills += 1
    real_s = time.perf_counter() - t0
    windows = [samples[i + DAY_H] - samples[i] for i in range(len(samples) - DAY_H)]
    worst = max(windows, key=lambda w: abs(w - ideal))
    s = pump.status()
    alarms = set(s.alarms) - {"refill_due", "low_reservoir"}
    hil_report.add(
        f"Long run: {days} days of flex therapy",
        f"- program: {FLEX} mcg/day at {CONC} mcg/mL, ideal {float(ideal) / 1000:.3f} uL/day\n"
        f"- {refills} refills of {FILL_ML} mL, {len(windows)} 24 h windows checked (hourly)\n"
        f"- worst window: {worst} nL, {float(worst - ideal):+.1f} nL from ideal "
        f"(one step = {step_nl} nL)\n"
        f"- delivered: {samples[-1] - samples[0]} nL; the pump's account: "
        f"{s.delivered_ul * 1000} nL\n"
        f"- run time: {real_s:.1f} s ({days * 86400 / real_s:,.0f}x real time, "
        "with the rig sampling every hour)",
        {"days": days, "refills": refills, "worst_window_nl": worst,
         "ideal_nl": float(ideal), "real_s": real_s},
    )
    assert refills == days // REFILL_EVERY_DAYS
    assert abs(worst - ideal) < tolerance, f"a 24 h window delivered {worst} nL, ideal {ideal}"
    assert abs(s.delivered_ul * 1000 - (samples[-1] - samples[0])) <= rig.delivered_tolerance_nl
    assert not alarms, f"alarms on a healthy run: {alarms}"
    assert s.mode == "flex"
