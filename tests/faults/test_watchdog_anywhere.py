"""A loop that hangs anywhere in its turn ends in a watchdog reset and resumed therapy
(DESIGN invariants 3 and 6; config.WDT_MS; loop.py feeds the watchdog only after a turn
that finished).

On the simulator (paused clock): a trace of the turns the pump goes through while it answers
a read and a command, raises and clears an alarm (the buzzer), steps, reads the battery and
flushes (with and without new events) gives the distinct points of a turn: each of the
firmware's call stacks down to a fake MicroPython call (hil/sim/lossy.py). Then, one point
at a time, the firmware is made to block inside that call (hang_at) while the same things
happen, and after the watchdog bites: a reset with cause WDT, the program restored from
flash and running (EV_RESTORED then EV_BOOT with cause 3), the watchdog_reset alarm
active, the next hour's delivery within one step of the program's, and the pump's delivery
account at most FLUSH_S behind the plant's."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import faultkit as fk
import pytest

from hil.launcher import SimProcess
from hil.rig import SimRig
from hil.suites.kit import prepare
from host import errors
from host.client import PumpClient

HOUR_MS = 3_600_000
WDT_RESET = 3
FLUSH_STEPS = 600 * 3200 / 86_400  # steps the program makes in one flush interval (22.2)


@pytest.fixture
def pumpsim():
    with SimProcess("0") as sim:
        rig = sim.rig()
        # retries=0, a short timeout: a request the firmware hangs in fails fast (the paused
        # clock only moves when the rig advances it).
        pump = PumpClient(sim.url, keys=sim.keys(), timeout=0.3, retries=0)
        pump.open()
        try:
            prepare(pump)
            pump.set_continuous("400")
            rig.advance(HOUR_MS)
            yield sim, rig, pump
        finally:
            pump.close()
            rig.close()


def stimulus(pump: PumpClient, rig: SimRig) -> list[Callable[[], Any]]:
    """What the pump does while a hang is waited for, step by step: a read, a command
    (saved: log and state), an alarm raised and cleared (tones on and off), steps, battery
    readings, a flush with new events and one without."""
    return [
        pump.status,
        lambda: pump.set_patient_bolus("25", 600, 3600, 4),
        lambda: rig.battery(3400),
        lambda: rig.advance(61_000),
        lambda: rig.battery(None),
        lambda: rig.advance(61_000),
        lambda: rig.advance(11 * 60_000),
        lambda: rig.advance(11 * 60_000),
    ]


def run_until_hung(pump: PumpClient, rig: SimRig) -> str | None:
    """The stimulus until the armed hang fires; where it fired (None: it never did)."""
    for step in stimulus(pump, rig):
        try:
            step()
        except errors.LinkError:
            pass  # the firmware hung while answering: no answer
        fired = rig.call("hang_at")["fired"]
        if fired is not None:
            return fired
    return None


def account(pump: PumpClient, rig: SimRig) -> int:
    """Steps the plant made that the pump's account does not hold (at one instant)."""
    return rig.measure()["steps"] - fk.pump_steps(pump.status())


def check_reset(pump: PumpClient, rig: SimRig, boots: int, behind: int, what: str) -> int:
    """After a hang: the watchdog reset and resumed therapy. Returns the account's lag."""
    rig.battery(None)  # the stimulus stopped where the hang fired: the battery back
    rig.advance(10_000)  # the watchdog's 8 s from the last feed (the hang is after it)
    boot = rig.boot()
    assert (boot["boots"], boot["reset_cause"]) == (boots + 1, WDT_RESET), f"{what}: {boot}"
    s = pump.status()
    assert (s.mode, s.daily_dose_mcg) == ("continuous", 400), f"{what}: {s.mode} " \
        f"{s.daily_dose_mcg} mcg/day after the reset"
    assert "watchdog_reset" in s.alarms, f"{what}: no watchdog_reset alarm: {s.alarms}"
    events = fk.recent_events(pump, 12)
    at = max(i for i, e in enumerate(events) if e.event == "boot")
    assert events[at].a == WDT_RESET, f"{what}: boot cause {events[at].a}"
    restored = events[at - 1]
    assert restored.event == "restored" and restored.b == 1, f"{what}: before the boot " \
        f"{restored.event} {restored.b} (want restored, continuous)"
    # The account: what the reset lost is at most the steps made since the last save.
    lag = account(pump, rig)
    assert 0 <= lag - behind <= FLUSH_STEPS + 1, f"{what}: the pump's account fell " \
        f"{lag - behind} steps behind the plant (at most {FLUSH_STEPS:.1f}: one flush)"
    steps = rig.measure()["steps"]
    rig.advance(HOUR_MS)
    made = rig.measure()["steps"] - steps
    assert abs(made - fk.STEPS_PER_HOUR_400) <= 1, f"{what}: {made} steps in the hour " \
        f"after the reset, want {fk.STEPS_PER_HOUR_400:.1f} +- 1"
    pump.alarm_ack("watchdog_reset")  # seen: its tone stops (the next hang sounds again)
    return lag


def test_a_hang_at_every_point_of_a_turn_ends_in_a_reset_and_resumed_therapy(
    pumpsim: tuple[SimProcess, SimRig, PumpClient],
) -> None:
    _sim, rig, pump = pumpsim
    rig.call("trace_turns", on=True)
    run_until_hung(pump, rig)
    traced = rig.call("trace_turns", on=False)
    points = sorted(traced["points"])
    fakes = {fk.point_fake(p) for p in points}
    want = {"time.ticks_ms", "time.ticks_diff", "Pin.value", "StateMachine.put",
            "time.sleep_us", "ADC.read_u16", "PWM.freq", "PWM.duty_u16", "Timer.deinit",
            "link.readinto", "link.write", "poll.ipoll", "flash.write", "WDT.feed"}
    assert want <= fakes, f"the trace missed {sorted(want - fakes)}"
    callers = {fk.point_caller(p) for p in points}
    assert {"Stepper.step", "Ports._low", "Ports.read", "Ports.valves", "Board.battery_mv",
            "Buzzer.sound", "UsbLink.read_byte", "UsbLink.write", "UsbLink.wait",
            "FileFS.write", "Board.feed"} <= callers, sorted(callers)
    saves = [p for p in points if fk.point_fake(p) == "flash.write"]
    assert len(saves) >= 3, f"flash writes: the log and the state, after a command and in a " \
        f"flush: {saves}"
    start = time.perf_counter()
    behind = account(pump, rig)
    fired_at: list[str] = []
    for i, point in enumerate(points):
        what = f"hang {i + 1}/{len(points)} at {point}"
        boots = rig.boot()["boots"]
        rig.call("hang_at", point=point)
        fired = run_until_hung(pump, rig)
        assert fired == point, f"{what}: the hang fired at {fired}"
        behind = check_reset(pump, rig, boots, behind, what)
        fired_at.append(point)
    took = time.perf_counter() - start
    print(f"\nwatchdog: {len(fired_at)} distinct points of a turn (over "
          f"{traced['turns_traced']} turns traced), a hang at each: {len(fired_at)} watchdog "
          f"resets, all resumed therapy ({took:.1f} s); the pump's account "
          f"{behind} steps behind the plant after them all")
    for p in fired_at:
        print(f"  {p}")


def test_a_hang_at_the_nth_call_of_a_turn(
    pumpsim: tuple[SimProcess, SimRig, PumpClient],
) -> None:
    """hang_at by position: the 7th fake call of the next turn that has one."""
    _sim, rig, pump = pumpsim
    behind = account(pump, rig)
    boots = rig.boot()["boots"]
    got = rig.call("hang_at", call=7)
    assert got["armed"] and got["fired"] is None
    fired = run_until_hung(pump, rig)
    assert fired is not None and rig.call("hang_at")["fired_call"] == 7, fired
    check_reset(pump, rig, boots, behind, f"the 7th call ({fired})")


def test_the_reset_checks_catch_a_pump_that_does_not_resume(
    pumpsim: tuple[SimProcess, SimRig, PumpClient],
) -> None:
    """The same checks when the state on flash is gone before the watchdog bites (a store
    broken on purpose): the pump boots empty, and check_reset says so."""
    sim, rig, pump = pumpsim
    behind = account(pump, rig)
    boots = rig.boot()["boots"]
    rig.call("hang_at", call=1)  # the first call of the next turn: before any save
    for f in sim.flash_dir().glob("state.*"):
        f.unlink()
    assert run_until_hung(pump, rig) is not None
    with pytest.raises(AssertionError, match="after the reset"):
        check_reset(pump, rig, boots, behind, "flash wiped")


# -- a finding -------------------------------------------------------------------------------


# Found by this suite: acknowledging watchdog_reset left it active, so every later reset
# was silent. Now an acknowledged watchdog_reset clears (Therapy.alarm_ack).
def test_a_second_watchdog_reset_after_an_ack_alarms_again() -> None:
    from firmware.core.store import MemoryFS
    from protocol import messages as m

    bit = 1 << (m.ALARM_WATCHDOG_RESET - 1)
    with fk.core_time() as boot:
        fs = MemoryFS()
        board = fk.CoreBoard(fs, cause=WDT_RESET)
        lp = boot(board)  # the first watchdog reset
        if not (lp.therapy.alarms.unacked & bit and lp.therapy.tone() == 1):
            raise RuntimeError("the first watchdog reset is not an unacknowledged alarm")
        fk.Host(lp, board).ask("ALARM_ACK", {"alarm": "watchdog_reset"})  # seen, saved
        if lp.therapy.alarms.unacked & bit or lp.therapy.tone():
            raise RuntimeError("the acknowledgement did not take")
        lp2 = boot(fk.CoreBoard(fs, cause=WDT_RESET))  # the loop hung again
        t = lp2.therapy
        assert t.alarms.unacked & bit, "the second watchdog reset is not an unacknowledged alarm"
        assert t.tone() == 1, "no tone for the second watchdog reset"
