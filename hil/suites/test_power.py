"""After a reset the pump resumes the programmed therapy at once, from what it kept on flash
(clinical-rules.md section 7: never stop abruptly; DESIGN invariant 3 and 6)."""

from __future__ import annotations

import pytest

from hil.rig import Rig
from hil.suites.kit import prepare
from host import errors
from host.client import PumpClient

HOUR_MS = 3_600_000
STEP_NL = 250
STEPS_PER_HOUR_400 = 800 * 1000 // STEP_NL // 24  # 400 mcg/day at 500 mcg/mL: 800 uL/day


@pytest.mark.hil
@pytest.mark.rig("reset", "steps", "time_control")
def test_a_reset_resumes_the_program(pump: PumpClient, rig: Rig) -> None:
    prepare(pump)
    pump.set_continuous("400")
    rig.advance(HOUR_MS)
    before = pump.status()
    steps = rig.measure()["steps"]
    rig.reset()
    rig.advance(HOUR_MS)
    after = pump.status()
    assert (after.mode, after.daily_dose_mcg, after.reservoir_ul > 0) == (
        "continuous", 400, True)
    assert after.uptime_s < 3600 + 5, "a new boot"
    made = rig.measure()["steps"] - steps
    assert abs(made - STEPS_PER_HOUR_400) <= 1, f"{made} steps in the hour after the reset"
    assert after.delivered_ul >= before.delivered_ul, "the totals were kept"
    events = [e.event for e in pump.events()]
    at = events.index("restored")
    assert events[at - 1 : at + 2] == ["program", "restored", "boot"], events
    restored = pump.events()[at]
    # The clock ran on through the reset: the gap is the time since the last save, at most
    # one flush interval (10 min); the mode restored is continuous.
    assert 0 <= restored.a <= 600 and restored.b == 1, (restored.a, restored.b)


@pytest.mark.hil
@pytest.mark.rig("reset", "time_control")
def test_the_24_h_rules_hold_across_a_reset(pump: PumpClient, rig: Rig) -> None:
    prepare(pump)
    pump.set_continuous("400")
    rig.reset()
    rig.advance(HOUR_MS)
    with pytest.raises(errors.TooSoon) as refused:
        pump.set_continuous("450")  # still in the first 24 h of infusion
    assert refused.value.rule == "first_24h"


@pytest.mark.hil
@pytest.mark.rig("hang", "reset", "steps", "time_control")
def test_a_hung_loop_ends_in_a_watchdog_reset_and_resumed_delivery(
    pump: PumpClient, rig: Rig
) -> None:
    prepare(pump)
    pump.set_continuous("400")
    rig.advance(HOUR_MS)
    boots = rig.boot()["boots"]
    rig.hang()
    rig.advance(15_000)  # the wait in progress (up to 5 s), then the watchdog's 8 s
    boot = rig.boot()
    assert (boot["boots"], boot["reset_cause"]) == (boots + 1, 3), boot  # 3: WDT_RESET
    steps = rig.measure()["steps"]
    rig.advance(HOUR_MS)
    made = rig.measure()["steps"] - steps
    assert abs(made - STEPS_PER_HOUR_400) <= 1, f"{made} steps in the hour after the reset"
    s = pump.status()
    assert (s.mode, s.daily_dose_mcg) == ("continuous", 400)
    assert "watchdog_reset" in s.alarms, "the reset is an alarm, not only a log entry"
    events = pump.events()
    boot_event = next(e for e in reversed(events) if e.event == "boot")
    assert boot_event.a == 3, "the boot logs the watchdog as its cause"


@pytest.mark.hil
@pytest.mark.rig("time_control", "power", "steps", "reset")
def test_a_power_cut_stops_delivery_and_power_back_resumes_it(
    pump: PumpClient, rig: Rig
) -> None:
    prepare(pump)
    pump.set_continuous("400")
    rig.advance(HOUR_MS)
    rig.power(False)
    steps = rig.measure()["steps"]
    rig.advance(HOUR_MS)
    assert rig.measure()["steps"] == steps, "no supply, no steps"
    rig.power(True)
    rig.advance(HOUR_MS)
    made = rig.measure()["steps"] - steps
    assert abs(made - STEPS_PER_HOUR_400) <= 1, "the hour after: the program's hour, no make-up"
    s = pump.status()
    assert (s.mode, s.daily_dose_mcg) == ("continuous", 400)
    boot = next(e for e in reversed(pump.events()) if e.event == "boot")
    assert boot.a == 1, "a power-on boot"
    assert rig.boot()["power_cycles"] == 1


@pytest.mark.hil
@pytest.mark.rig("time_control", "battery", "steps", "plant_model")
def test_a_brown_out_stops_the_board_until_the_voltage_is_back(
    pump: PumpClient, rig: Rig
) -> None:
    prepare(pump)
    pump.set_continuous("400")
    rig.advance(HOUR_MS)
    rig.battery(2900)  # under the regulator's drop-out
    rig.advance(60_000)
    m = rig.measure()
    assert not m["powered"] and m["buzzer_hz"] == 0, "the board is off: no tone either"
    rig.battery(3050)  # back over the drop-out, but within its hysteresis: still off
    rig.advance(60_000)
    assert not rig.measure()["powered"]
    rig.battery(3400)
    rig.advance(61_000)
    assert rig.measure()["powered"]
    s = pump.status()
    assert s.mode == "continuous" and "battery_replace" in s.alarms, s


@pytest.mark.hil
@pytest.mark.rig("time_control", "flash_cut", "power")
@pytest.mark.parametrize("at", [0, 1, 9, 10, 13, 14, 200, 2000, 6000])
def test_a_power_cut_during_a_flash_write_loses_no_acknowledged_change(
    pump_url: str, pump_keys: dict[str, bytes], rig: Rig, at: int
) -> None:
    """The pump writes a change to flash (the log, then the state) before it answers: a cut
    at any byte of either write leaves no answer, and after power-up the pump holds the old
    or the new program, never a mix. The log is written first, so it may record a change the
    state did not keep (a cut between the two), never the other way round."""
    with PumpClient(pump_url, keys=pump_keys, timeout=0.5, retries=0) as pump:
        prepare(pump)
        pump.set_continuous("400")
        rig.advance(25 * HOUR_MS)  # past the first 24 h: an increase is allowed
        rig.cut_power_at_flash_byte(at)
        try:
            pump.set_continuous("500")
            answered = True
        except errors.LinkError:
            answered = False
        cut = not rig.boot()["powered"]
        rig.power(True)
        rig.advance(60_000)
    with PumpClient(pump_url, keys=pump_keys) as pump:
        s = pump.status()
        changed = [e for e in pump.events() if e.event == "program"]
    assert cut, f"the write was shorter than {at} bytes: pick offsets inside it"
    assert not answered, "the change was answered before it was on flash"
    assert s.mode == "continuous" and s.daily_dose_mcg in (400, 500), s
    logged = [e.a for e in changed]
    assert logged[0] == 400_000 and len(logged) <= 2, logged
    if s.daily_dose_mcg == 500:
        assert logged[1:] == [500_000], "a change in force that the log does not record"
