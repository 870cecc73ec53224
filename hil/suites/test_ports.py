"""The refill and catheter-access-port interlocks and an occlusion, on the rig: the valves
follow the sessions, a needle in the CAP outside a session is a critical alarm, and a blocked
catheter stops the motor, draws it back and gives no bolus when it clears (label 5.1, 5.4;
DESIGN invariant 4)."""

from __future__ import annotations

import pytest

from hil.rig import Rig
from hil.suites.kit import prepare
from host.client import PumpClient

HOUR_MS = 3_600_000
MIN_MS = 60_000


@pytest.mark.hil
@pytest.mark.rig("needles", "time_control", "tones", "valves")
def test_valves_follow_the_sessions_and_a_cap_needle_alarms(pump: PumpClient,
                                                             rig: Rig) -> None:
    prepare(pump)
    pump.set_continuous("400")
    rig.advance(MIN_MS)
    plant = rig.measure()
    assert (plant["refill_valve"], plant["cap_valve"]) == (0, 0)
    pump.cap_begin(600)
    rig.advance(1000)
    assert (rig.measure()["refill_valve"], rig.measure()["cap_valve"]) == (0, 1)
    pump.cap_end()
    rig.advance(1000)
    assert rig.measure()["cap_valve"] == 0
    rig.needle("cap", True)
    rig.advance(6000)  # the loop's next turn (it wakes at least every 5 s)
    state = pump.alarm_state()
    assert "cap_violation" in state.alarms and "cap_violation" in state.unacknowledged
    assert rig.measure()["cap_valve"] == 0, "the CAP stays closed"
    assert rig.measure()["buzzer_hz"] > 0, "the buzzer sounds"
    assert len(rig.measure()["buzzer_tones"]) == 2, "critical: two tones in turn"
    pump.alarm_ack("cap_violation")
    rig.advance(6000)
    assert rig.measure()["buzzer_hz"] == 0, "acknowledged: quiet"
    assert "cap_violation" in pump.alarm_state().alarms, "the needle is still in"
    rig.needle("cap", False)
    rig.advance(6000)
    assert "cap_violation" not in pump.alarm_state().alarms


@pytest.mark.hil
@pytest.mark.rig("occlusion", "plant_model", "steps", "time_control")
def test_an_occlusion_alarms_and_clears_without_a_bolus(pump: PumpClient, rig: Rig) -> None:
    prepare(pump)
    pump.set_continuous("1000", confirm=())  # 2 mL/day: a step every 10.8 s
    rig.advance(HOUR_MS)
    rig.occlude(True)
    rig.advance(MIN_MS)
    state = pump.alarm_state()
    assert "occlusion" in state.alarms, state
    plant = rig.measure()
    assert plant["pressure"] < 40_000, "drawn back: the pressure built up is relieved"
    blocked_at = plant["steps"]
    rig.advance(5 * MIN_MS)
    assert rig.measure()["steps"] == blocked_at, "the motor stays stopped"
    rig.occlude(False)
    rig.advance(10 * MIN_MS)  # the next retry
    assert "occlusion" not in pump.alarm_state().alarms
    # No post-occlusion bolus: the next hour delivers the program's hour, no more.
    steps = rig.measure()["steps"]
    rig.advance(HOUR_MS)
    made = rig.measure()["steps"] - steps
    assert made <= 2_000_000 // 250 // 24 + 1, f"{made} steps in the hour after it cleared"


@pytest.mark.hil
@pytest.mark.rig("plant_model", "time_control")
def test_the_syringe_holds_what_each_refill_put_in(pump: PumpClient, rig: Rig) -> None:
    # Three fills of 2 mL at 1 mL/day (2000 mcg/day at 2000 mcg/mL): before each refill and
    # after it the simulated syringe holds what the pump counts, so no end stop is taken for
    # an occlusion on a long run with refills.
    prepare(pump, concentration=2000, fill_ml="2", ceiling_mcg_day="5000")
    pump.set_continuous("2000", confirm=["high_dose"])
    for _ in range(3):
        rig.advance(36 * HOUR_MS)  # 1.5 mL of the 2
        s = pump.status()
        assert rig.measure()["reservoir_nl"] == s.reservoir_ul * 1000, "syringe vs account"
        done = pump.refill("2", 2000, drained_ml=s.reservoir_ul / 1000,
                           concentration_again=2000)
        assert rig.measure()["reservoir_nl"] == done.reservoir_ml * 1_000_000
    assert "occlusion" not in pump.alarm_state().alarms


@pytest.mark.hil
@pytest.mark.rig("needles", "time_control", "tones")
def test_a_non_critical_alarm_sounds_one_tone(pump: PumpClient, rig: Rig) -> None:
    prepare(pump)
    pump.set_continuous("400")
    rig.needle("septum", True)  # a needle in the septum with no refill session
    rig.advance(6000)
    assert "septum_needle" in pump.alarm_state().alarms
    assert len(rig.measure()["buzzer_tones"]) == 1, rig.measure()


@pytest.mark.hil
@pytest.mark.rig("battery", "time_control", "tones")
def test_battery_replacement_then_end_of_service(pump: PumpClient, rig: Rig) -> None:
    # Label 5.5: the end of the battery is a cause of abrupt withdrawal; the pump warns first.
    prepare(pump)
    pump.set_continuous("400")
    rig.battery(3400)
    rig.advance(61_000)  # the battery is read each minute
    s = pump.status()
    assert "battery_replace" in s.alarms and "battery_end" not in s.alarms, s.alarms
    assert len(rig.measure()["buzzer_tones"]) == 1, "non-critical: one tone"
    rig.battery(3200)
    rig.advance(61_000)
    assert "battery_end" in pump.status().alarms
    assert len(rig.measure()["buzzer_tones"]) == 2, "end of service is critical"
    assert pump.status().mode == "continuous", "the pump keeps delivering meanwhile"
