"""Dosing on the rig: what the pump delivers is what was programmed, to one motor step."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hil.rig import Rig
from hil.suites.kit import FLEX_NIGHT_PLUS_20, prepare
from host import errors
from host.client import PumpClient

HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS


def ideal_nl(dose_mcg_day: Decimal, conc: int, ms: int) -> Decimal:
    # mcg/day / (mcg/mL) = mL/day; x 1e6 nL/mL; x fraction of a day
    return dose_mcg_day / conc * 1_000_000 * ms / (24 * HOUR_MS)


@pytest.mark.hil
@pytest.mark.rig("delivered_volume", "time_control")
@pytest.mark.parametrize(
    ("dose", "conc", "hours"),
    [
        ("400", 500, 6),  # the demo's program: 27 s per step exactly
        ("412.5", 500, 7),  # steps every 26.18... s: the remainder is carried
        ("90", 2000, 24 * 5),  # low rate, high strength: one step every 8 min
        ("200", 500, 24 * 30),  # a month: no drift
    ],
)
def test_continuous_delivery_matches_program(
    pump: PumpClient, rig: Rig, dose: str, conc: int, hours: int
) -> None:
    step_nl = pump.info().step_nl
    prepare(pump, concentration=conc)
    pump.set_continuous(dose)
    start = rig.measure()["delivered_nl"]
    rig.advance(hours * HOUR_MS)
    delivered = rig.measure()["delivered_nl"] - start
    ideal = ideal_nl(Decimal(dose), conc, hours * HOUR_MS)
    print(f"\n{dose} mcg/day at {conc} mcg/mL for {hours} h: delivered {delivered} nL, "
          f"ideal {ideal:.1f} nL, difference {delivered - ideal:+.1f} nL (step {step_nl} nL)")
    assert 0 <= ideal - delivered < step_nl, (delivered, ideal)  # never ahead, < 1 step behind
    # The pump's own account agrees with the plant's, to the nanolitre.
    assert pump.status().delivered_ul * 1000 == delivered


@pytest.mark.hil
@pytest.mark.rig("delivered_volume", "time_control")
def test_nothing_is_delivered_before_profile_refill_and_program(
    pump: PumpClient, rig: Rig
) -> None:
    with pytest.raises(errors.InvalidState) as refused:
        pump.set_continuous("400")
    assert refused.value.rule == "profile_required"
    prepare(pump)
    rig.advance(HOUR_MS)
    assert rig.measure()["delivered_nl"] == 0  # filled, not programmed: nothing moves
    pump.set_continuous("400")
    rig.advance(HOUR_MS)
    assert rig.measure()["delivered_nl"] > 0


@pytest.mark.hil
@pytest.mark.rig("delivered_volume", "time_control")
def test_a_bolus_is_delivered_on_top_of_the_basal_rate(pump: PumpClient, rig: Rig) -> None:
    prepare(pump)
    pump.set_continuous("400")  # 800 uL/day: 27 s per step
    start = rig.measure()["delivered_nl"]
    bolus = pump.bolus("50", 600)  # 50 mcg at 500 mcg/mL: 100 uL over 10 min
    assert (bolus.dose_mcg, bolus.volume_ul) == (Decimal(50), Decimal(100))
    rig.advance(HOUR_MS)
    delivered = rig.measure()["delivered_nl"] - start
    basal = ideal_nl(Decimal(400), 500, HOUR_MS)
    assert 0 <= basal + 100_000 - delivered < pump.info().step_nl
    s = pump.status()
    assert s.bolus == "none" and s.delivered_ul * 1000 == rig.measure()["delivered_nl"]
    assert [e.event for e in pump.events()][-2:] == ["bolus", "bolus_done"]


@pytest.mark.hil
@pytest.mark.rig("delivered_volume", "time_control")
def test_suspend_holds_the_minimum_rate_and_resume_restores_the_program(
    pump: PumpClient, rig: Rig
) -> None:
    prepare(pump)
    pump.set_continuous("400")
    held = pump.suspend("clinician_decision", confirm=True)
    assert pump.status().mode == "minimum_rate"
    start = rig.measure()["delivered_nl"]
    rig.advance(DAY_MS)
    assert rig.measure()["delivered_nl"] - start == held.rate_ul_day * 1000  # a day of it
    assert pump.resume().daily_dose_mcg == 400
    start = rig.measure()["delivered_nl"]
    rig.advance(DAY_MS)
    assert rig.measure()["delivered_nl"] - start == 800_000


@pytest.mark.hil
@pytest.mark.rig("delivered_volume", "time_control")
def test_confirmed_stop_halts_delivery(pump: PumpClient, rig: Rig) -> None:
    prepare(pump)
    pump.set_continuous("400")
    rig.advance(2 * HOUR_MS)
    pump.stop("clinician_decision", confirm=True)
    after_stop = rig.measure()["delivered_nl"]
    rig.advance(5 * HOUR_MS)
    assert rig.measure()["delivered_nl"] == after_stop > 0
    assert pump.status().mode == "stopped"


@pytest.mark.hil
@pytest.mark.rig("plant_model", "time_control")
def test_the_reservoir_runs_dry_when_status_said(pump: PumpClient, rig: Rig) -> None:
    prepare(pump, ceiling_mcg_day="2500")
    pump.set_continuous("2000", confirm=["high_dose"])  # 4 mL/day: 20 mL last 5 days
    forecast = pump.status().dry_at
    assert forecast is not None
    rig.advance(6 * DAY_MS)
    assert rig.measure()["reservoir_nl"] < pump.info().step_nl
    ran_dry = [e for e in pump.events() if e.event == "reservoir_empty"]
    assert len(ran_dry) == 1 and abs((ran_dry[0].time - forecast).total_seconds()) <= 1
    assert "reservoir_empty" in pump.status().alarms


@pytest.mark.hil
def test_battery_voltage_is_reported(pump: PumpClient) -> None:
    assert 3.85 <= pump.status().battery_v <= 3.95  # the simulated battery: 3.9 V


def delivered_between(rig: Rig, start_ms: int, end_ms: int) -> int:
    """Delivered volume from start_ms to end_ms of pump time (advancing the rig)."""
    rig.advance(start_ms - rig.now_ms())
    before = rig.measure()["delivered_nl"]
    rig.advance(end_ms - rig.now_ms())
    return rig.measure()["delivered_nl"] - before


@pytest.mark.hil
@pytest.mark.rig("delivered_volume", "time_control")
def test_a_flex_night_runs_20_percent_over_the_day(pump: PumpClient, rig: Rig) -> None:
    # Label 2.4's example: +20 % at night. The simulator's clock starts at local midnight
    # (UTC, offset 0); 22:00-06:00 at 480 mcg/day, 06:00-22:00 at 400.
    step_nl = pump.info().step_nl
    prepare(pump)
    clock = pump.status().clock
    midnight_ms = rig.now_ms() - (clock.hour * 3600 + clock.minute * 60 + clock.second) * 1000
    pump.set_flex(FLEX_NIGHT_PLUS_20)
    day = delivered_between(rig, midnight_ms + 8 * HOUR_MS, midnight_ms + 20 * HOUR_MS)
    night = delivered_between(rig, midnight_ms + 23 * HOUR_MS, midnight_ms + 29 * HOUR_MS)
    assert abs(day - ideal_nl(Decimal(400), 500, 12 * HOUR_MS)) < step_nl, day
    assert abs(night - ideal_nl(Decimal(480), 500, 6 * HOUR_MS)) < step_nl, night
    # Per hour, the night delivers 1.2 x the day, to the two windows' step rounding.
    assert abs(Decimal(night) / 6 / (Decimal(day) / 12) - Decimal("1.2")) < Decimal("0.01")


@pytest.mark.hil
@pytest.mark.rig("delivered_volume", "time_control")
def test_a_priming_bolus_fills_the_catheter_on_top_of_the_basal_rate(
    pump: PumpClient, rig: Rig
) -> None:
    prepare(pump, catheter_ml="0.15")
    pump.set_continuous("400")
    start = rig.measure()["delivered_nl"]
    bolus = pump.prime(600)
    assert (bolus.kind, bolus.volume_ul) == ("priming", Decimal(150))
    rig.advance(HOUR_MS)
    delivered = rig.measure()["delivered_nl"] - start
    basal = ideal_nl(Decimal(400), 500, HOUR_MS)
    assert 0 <= basal + 150_000 - delivered < pump.info().step_nl, delivered


@pytest.mark.hil
@pytest.mark.rig("delivered_volume", "time_control")
def test_a_screening_bolus_delivers_its_dose_and_nothing_after(
    pump: PumpClient, rig: Rig
) -> None:
    # Screening: the 50 mcg/mL strength, no basal program; 50 mcg is 1 mL over an hour.
    prepare(pump, concentration=50, phase="screening")
    start = rig.measure()["delivered_nl"]
    bolus = pump.screen("50", 3600)
    assert (bolus.kind, bolus.dose_mcg, bolus.volume_ul) == ("screening", 50, 1000)
    rig.advance(HOUR_MS // 2)
    half = rig.measure()["delivered_nl"] - start
    assert abs(half - 500_000) <= pump.info().step_nl, f"{half} nL at half time"
    rig.advance(2 * HOUR_MS)
    assert rig.measure()["delivered_nl"] - start == 1_000_000
    assert [d.dose_mcg for d in pump.screening().given] == [50]


@pytest.mark.hil
@pytest.mark.rig("delivered_volume", "time_control")
def test_a_patient_bolus_delivers_the_clinicians_dose(
    pump: PumpClient, pump_url: str, pump_keys: dict[str, bytes], rig: Rig
) -> None:
    prepare(pump)
    pump.set_continuous("400")
    pump.set_patient_bolus("20", duration_s=600, lockout_s=3600, max_per_day=2)
    start = rig.measure()["delivered_nl"]
    with PumpClient(pump_url, keys=pump_keys, role="patient") as patient:
        bolus = patient.patient_bolus()
    assert (bolus.kind, bolus.volume_ul) == ("patient", Decimal(40))  # 20 mcg at 500 mcg/mL
    rig.advance(HOUR_MS)
    delivered = rig.measure()["delivered_nl"] - start
    basal = ideal_nl(Decimal(400), 500, HOUR_MS)
    assert 0 <= basal + 40_000 - delivered < pump.info().step_nl, delivered
