"""Dosing on the rig: what the pump delivers is what was programmed, to one motor step."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hil.rig import Rig
from host.client import PumpClient

HOUR_MS = 3600 * 1000


def ideal_nl(dose_mcg_day: Decimal, conc: int, ms: int) -> Decimal:
    # mcg/day / (mcg/mL) = mL/day; x 1e6 nL/mL; x fraction of a day
    return dose_mcg_day / conc * 1_000_000 * ms / (24 * HOUR_MS)


@pytest.mark.hil
@pytest.mark.rig("time_control", "delivered_volume")
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
    pump.set_continuous(dose, conc)
    start = rig.plant()["delivered_nl"]
    rig.advance(hours * HOUR_MS)
    delivered = rig.plant()["delivered_nl"] - start
    ideal = ideal_nl(Decimal(dose), conc, hours * HOUR_MS)
    print(f"\n{dose} mcg/day at {conc} mcg/mL for {hours} h: delivered {delivered} nL, "
          f"ideal {ideal:.1f} nL, difference {delivered - ideal:+.1f} nL (step {step_nl} nL)")
    assert 0 <= ideal - delivered < step_nl, (delivered, ideal)  # never ahead, < 1 step behind
    # The pump's own account agrees with the plant's, to the nanolitre.
    assert pump.status().delivered_ul * 1000 == delivered


@pytest.mark.hil
@pytest.mark.rig("time_control", "delivered_volume")
def test_confirmed_stop_halts_delivery(pump: PumpClient, rig: Rig) -> None:
    pump.set_continuous("400", 500)
    rig.advance(2 * HOUR_MS)
    pump.stop("clinician_decision", confirm=True)
    after_stop = rig.plant()["delivered_nl"]
    rig.advance(5 * HOUR_MS)
    assert rig.plant()["delivered_nl"] == after_stop > 0
    assert pump.status().mode == "stopped"


@pytest.mark.hil
@pytest.mark.rig("time_control", "delivered_volume")
def test_the_reservoir_runs_dry_when_status_said(pump: PumpClient, rig: Rig) -> None:
    pump.set_continuous("2000", 500)  # 4 mL/day: the 20 mL reservoir lasts 5 days
    forecast = pump.status().dry_at
    assert forecast is not None
    rig.advance(6 * 24 * HOUR_MS)
    assert rig.plant()["reservoir_nl"] < pump.info().step_nl
    ran_dry = [e for e in pump.events() if e.event == "reservoir_empty"]
    assert len(ran_dry) == 1 and abs((ran_dry[0].time - forecast).total_seconds()) <= 1


@pytest.mark.hil
def test_battery_voltage_is_reported(pump: PumpClient) -> None:
    assert 3.85 <= pump.status().battery_v <= 3.95  # the simulated battery: 3.9 V
