"""Every alarm the pump has, set off on the rig by its real cause, with the time from the cause
to the alarm (the report's "Alarms" table), the tones it sounds (critical: two alternating
tones; others one; a notice none), and the ALARM event it sends unsolicited.

Latency is measured in pump time: where the alarm sounds, from the instant the rig heard the
buzzer start (exact); otherwise at the resolution the test polls. A cause the rig sets (a
needle, the battery, a blockage, a hang) starts at the rig's action; a cause that builds up
(the reservoir running low) starts at the first poll where the rig's plant shows it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from hil.pytest_plugin import HilReport
from hil.rig import Rig
from hil.suites.kit import occlusion_trial, prepare
from host.client import AlarmEvent, PumpClient
from protocol.messages import ALARMS

S = 1000
MIN = 60 * S
HOUR = 60 * MIN
DAY = 24 * HOUR
LEVEL = {name: level for _, name, level in ALARMS}
TONES = {0: 0, 1: 1, 2: 2}  # alarm level -> distinct tones heard


@dataclass
class Latency:
    alarm: str
    trigger: str
    latency_ms: int
    bound_ms: int
    tones: int
    exact: bool


RESULTS: list[Latency] = []


@pytest.fixture(scope="module", autouse=True)
def alarm_table(hil_report: HilReport) -> Iterator[None]:
    yield
    if not RESULTS:
        return
    rows = ["| alarm | level | cause | latency | bound | tones |", "|---|---|---|---|---|---|"]
    for r in sorted(RESULTS, key=lambda r: r.alarm):
        how = "" if r.exact else " (polled)"
        rows.append(f"| {r.alarm} | {LEVEL[r.alarm]} | {r.trigger} | "
                    f"{r.latency_ms / 1000:.1f} s{how} | {r.bound_ms / 1000:.0f} s | {r.tones} |")
    hil_report.add("Alarms: cause to alarm", "\n".join(rows),
                   {r.alarm: r.__dict__ for r in RESULTS})


def active(pump: PumpClient, alarm: str) -> bool:
    return alarm in pump.alarm_state().alarms


def wait_for(pump: PumpClient, rig: Rig, alarm: str, since_ms: int, bound_ms: int,
             poll_ms: int) -> tuple[int, bool]:
    """(latency from since_ms, exact). An alarm that sounds is watched on the rig alone: a
    request would wake the pump's loop, which reads its inputs at every turn, and hide the
    latency of a pump nobody talks to. A notice without a tone is polled on the pump."""
    if LEVEL[alarm]:
        while True:
            m = rig.measure()
            if m.get("buzzer_since_ms") is not None:
                latency, exact = m["buzzer_since_ms"] - since_ms, True
                break
            if m.get("buzzer_hz"):  # a rig that hears the tone but not when it began
                latency, exact = m["now_ms"] - since_ms, False
                break
            if m["now_ms"] - since_ms > bound_ms:
                pytest.fail(f"no {alarm} tone within {bound_ms / 1000:.0f} s of its cause")
            rig.advance(poll_ms)
        assert active(pump, alarm), f"the buzzer sounds, but not for {alarm}"
        return latency, exact
    while not active(pump, alarm):
        if rig.now_ms() - since_ms > bound_ms:
            pytest.fail(f"no {alarm} alarm within {bound_ms / 1000:.0f} s of its cause")
        rig.advance(poll_ms)
    return rig.now_ms() - since_ms, False


def check(pump: PumpClient, rig: Rig, alarm: str, trigger: str, since_ms: int, bound_ms: int,
          poll_ms: int = S) -> Latency:
    latency, exact = wait_for(pump, rig, alarm, since_ms, bound_ms, poll_ms)
    assert 0 <= latency <= bound_ms, (alarm, latency)
    tones = len(rig.measure()["buzzer_tones"])
    assert tones == TONES[LEVEL[alarm]], f"{alarm}: {tones} tones heard"
    event = pump.next_event(2.0)
    while event is not None and not (isinstance(event, AlarmEvent) and event.alarm == alarm):
        event = pump.next_event(2.0)
    assert isinstance(event, AlarmEvent) and event.active, f"no ALARM event for {alarm}"
    result = Latency(alarm, trigger, latency, bound_ms, tones, exact)
    RESULTS.append(result)
    return result


def running(pump: PumpClient, dose: str = "400", **kw: Any) -> None:
    prepare(pump, **kw)
    pump.set_continuous(dose, confirm=["high_dose"] if float(dose) > 1000 else [])


RigAction = Callable[[Rig], None]
# A needle where no session allows one: found at the next turn (at most 5 s apart, three
# debounced reads); the battery is read each minute.
ACTED: list[tuple[str, str, RigAction, int, tuple[str, ...]]] = [
    ("septum_needle", "a needle in the refill septum, no refill session",
     lambda r: r.needle("septum", True), 6 * S, ("needles",)),
    ("cap_violation", "a needle in the catheter access port, no CAP session",
     lambda r: r.needle("cap", True), 6 * S, ("needles",)),
    ("battery_replace", "battery at 3.40 V", lambda r: r.battery(3400), 60 * S, ("battery",)),
    ("battery_end", "battery at 3.25 V", lambda r: r.battery(3250), 60 * S, ("battery",)),
]


@pytest.mark.hil
@pytest.mark.rig("time_control", "tones", "needles", "battery")
@pytest.mark.parametrize(("alarm", "trigger", "act", "bound", "caps"), ACTED,
                         ids=[a[0] for a in ACTED])
def test_alarm_from_the_rig(pump: PumpClient, rig: Rig, alarm: str, trigger: str,
                            act: RigAction, bound: int, caps: tuple[str, ...]) -> None:
    running(pump)
    pump.set_telemetry(0)
    rig.advance(MIN)
    assert not pump.alarm_state().alarms
    t0 = rig.now_ms()
    act(rig)
    check(pump, rig, alarm, trigger, t0, bound)
    assert pump.status().mode == "continuous", "an alarm does not stop delivery by itself"


@pytest.mark.hil
@pytest.mark.rig("time_control", "tones", "occlusion", "plant_model")
@pytest.mark.parametrize("dose", ["400", "1000"])
def test_occlusion_alarm_and_no_bolus_when_it_clears(
    pump: PumpClient, rig: Rig, hil_report: HilReport, dose: str
) -> None:
    # The pressure builds up one step at a time: 3 steps, 27 s apart at 400 mcg/day.
    r = occlusion_trial(pump, rig, dose)
    assert r["occlusion_alarm"] and r["tones"] == 2, r
    assert 0 <= r["blockage_to_alarm_ms"] <= 10 * MIN, r
    assert 0 <= r["limit_to_alarm_ms"] <= 5 * S, "the limit is checked after every step"
    assert r["pushed_over_nl"] <= 250, "at most the step that crossed the limit"
    assert r["pressure_after"] <= 40_000, "drawn back: the pressure is relieved"
    assert r["released_nl"] <= 0, "no bolus when the blockage clears"
    RESULTS.append(Latency("occlusion", f"catheter blocked at {dose} mcg/day",
                           r["blockage_to_alarm_ms"], 10 * MIN, r["tones"], True))
    hil_report.add(
        f"Occlusion at {dose} mcg/day (500 mcg/mL)",
        f"- blockage to alarm: {r['blockage_to_alarm_ms'] / 1000:.1f} s\n"
        f"- pressure limit to alarm: {r['limit_to_alarm_ms'] / 1000:.3f} s, "
        f"{r['pushed_over_nl']} nL pushed after the limit\n"
        f"- released when the blockage cleared: {r['released_nl']} nL "
        "(negative: drawn back by the pump's back-off, no bolus)",
        {"dose_mcg_day": dose, **r})


@pytest.mark.hil
@pytest.mark.rig("time_control", "tones", "plant_model")
def test_low_reservoir_then_empty(pump: PumpClient, rig: Rig) -> None:
    # 400 mcg/day at 50 mcg/mL is 8 mL/day: 0.3 mL above the 2 mL level is 54 min.
    running(pump, concentration=50, fill_ml="2.3")
    pump.alarm_ack("refill_due")  # due at once with so little: quiet, so the next tone is new
    rig.advance(50 * MIN)
    assert not active(pump, "low_reservoir"), "not before the reservoir is low"
    rig.advance(10 * MIN)
    low_ms = rig.measure()["low_ms"]
    assert low_ms is not None, "the syringe reached 2 mL"
    check(pump, rig, "low_reservoir", "reservoir at 2 mL", low_ms, 2 * S)
    pump.alarm_ack("low_reservoir")
    rig.advance(6 * HOUR + 10 * MIN)  # 2 mL at 8 mL/day: 6 h
    empty_ms = rig.measure()["empty_ms"]
    assert empty_ms is not None, "the syringe ran out"
    check(pump, rig, "reservoir_empty", "reservoir empty", empty_ms, 2 * S)


@pytest.mark.hil
@pytest.mark.rig("time_control")
def test_refill_due(pump: PumpClient, rig: Rig) -> None:
    running(pump, "400", fill_ml="10")  # 12.5 days of drug; the refill is due a week before
    due = pump.status().refill_at
    assert due is not None
    ahead_ms = int((due - pump.status().clock).total_seconds() * 1000)
    rig.advance(ahead_ms - MIN)
    assert not active(pump, "refill_due")
    check(pump, rig, "refill_due", "the refill date", rig.now_ms() + MIN, 2 * MIN,
          poll_ms=10 * S)


@pytest.mark.hil
@pytest.mark.rig("time_control", "hang", "reset")
def test_watchdog_reset(pump: PumpClient, rig: Rig) -> None:
    running(pump)
    rig.advance(MIN)
    t0 = rig.now_ms()
    rig.hang()
    check(pump, rig, "watchdog_reset", "the loop hangs", t0, 15 * S)


@pytest.mark.hil
@pytest.mark.rig("time_control", "reset")
def test_config_crc(pump: PumpClient, rig: Rig, sim: Any) -> None:
    if sim is None:
        pytest.skip("corrupting the stored state needs the simulator's flash folder")
    running(pump)
    rig.advance(MIN)
    flash = sim.flash_dir()
    for slot in ("state.a", "state.b"):  # both copies: the store cannot fall back
        data = bytearray((flash / slot).read_bytes())
        data[12] ^= 0xFF
        (flash / slot).write_bytes(bytes(data))
    t0 = rig.now_ms()
    rig.reset()
    check(pump, rig, "config_crc", "both stored copies corrupt, then a reset", t0, 6 * S)


@pytest.mark.hil
@pytest.mark.rig("time_control", "tones")
def test_escalation_notice(pump: PumpClient, rig: Rig) -> None:
    running(pump, "400", phase="maintenance")
    rig.advance(DAY + HOUR)
    pump.refill_begin()
    t0 = rig.now_ms()
    pump.set_continuous("560")  # +40 %: the most a spinal adult's visit allows (label 2.6)
    check(pump, rig, "escalation", "a maintenance increase of +40 %", t0, 0)
    pump.refill_abort()
