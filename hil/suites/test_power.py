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
