# The ports and the motor's health (firmware/core/interlocks.py): a valve is open only while
# its session is (label 5.1, 5.4: the reservoir is filled only through the refill path; the
# CAP leads straight to the catheter), a needle where no session allows one is an alarm (a
# critical one in the CAP), and a blocked motor stops, draws back and tries again later
# without making up the missed steps (no post-occlusion bolus). Board-safe.

import therapy_kit as kit

from firmware import config
from firmware.core.interlocks import Inputs, Interlocks
from protocol import messages as m


def _lock(daily_ng=400_000, **kw):
    t = kit.running(daily_ng, **kw)
    return t, Interlocks(t, config), Inputs()


def _on(t, alarm):
    return bool(t.alarms.active & (1 << (alarm - 1)))


def test_label_5_1_5_4_a_valve_is_open_only_in_its_session():
    t, lock, inp = _lock()
    lock.update(inp)
    assert (lock.refill_valve, lock.cap_valve) == (False, False), "both closed at rest"
    t.refill_begin()
    lock.update(inp)
    assert (lock.refill_valve, lock.cap_valve) == (True, False), "refill: only the refill path"
    t.refill_abort()
    t.cap_begin(600)
    lock.update(inp)
    assert (lock.refill_valve, lock.cap_valve) == (False, True), "CAP: only the CAP"
    kit.advance(t, 600_000)
    lock.update(inp)
    assert (lock.refill_valve, lock.cap_valve) == (False, False), "the CAP session timed out"


def test_label_5_4_a_needle_in_the_cap_outside_a_session_is_critical():
    t, lock, inp = _lock()
    inp.needle_cap = True
    lock.update(inp)
    assert _on(t, m.ALARM_CAP_VIOLATION), "a needle in the CAP with no session"
    assert t.alarms.tone(t.pump.clock_s()) == 2, "critical: the two-tone"
    t.alarm_ack(m.ALARM_CAP_VIOLATION)
    lock.update(inp)
    assert _on(t, m.ALARM_CAP_VIOLATION), "acknowledged, but the needle is still there"
    assert t.alarms.tone(t.pump.clock_s()) == 0, "acknowledged: quiet"
    inp.needle_cap = False
    lock.update(inp)
    assert not _on(t, m.ALARM_CAP_VIOLATION), "out and acknowledged: cleared"
    # Inside a CAP session the needle belongs there.
    t.cap_begin(600)
    inp.needle_cap = True
    lock.update(inp)
    assert not _on(t, m.ALARM_CAP_VIOLATION), "in a CAP session: no alarm"
    ev = [t.log.get(n) for n in range(t.log.total)]
    raised = [e for e in ev if e[1] == m.EV_ALARM and e[5] == m.ALARM_CAP_VIOLATION]
    assert [e[6] for e in raised] == [1, 0], "raised, then cleared, each logged with time"


def test_label_5_1_a_needle_in_the_septum_outside_a_refill_session():
    t, lock, inp = _lock()
    inp.needle_septum = True
    lock.update(inp)
    assert _on(t, m.ALARM_SEPTUM_NEEDLE), "a needle in the septum with no refill session"
    assert t.alarms.tone(t.pump.clock_s()) == 1, "non-critical: one tone"
    inp.needle_septum = False
    t.alarm_ack(m.ALARM_SEPTUM_NEEDLE)
    lock.update(inp)
    assert not _on(t, m.ALARM_SEPTUM_NEEDLE)
    t.refill_begin()
    inp.needle_septum = True
    lock.update(inp)
    assert not _on(t, m.ALARM_SEPTUM_NEEDLE), "in a refill session: no alarm"


def test_an_occlusion_stops_draws_back_and_retries_without_a_bolus():
    t, lock, inp = _lock()
    p = t.pump
    kit.advance(t, 3_600_000)
    inp.pressure = config.PRESSURE_LIMIT_RAW + 1
    lock.update(inp)
    assert p.blocked and _on(t, m.ALARM_OCCLUSION), "blocked, alarmed"
    assert lock.backoff == config.OCCLUSION_BACKOFF_STEPS, "draw back what built up"
    assert t.alarms.tone(p.clock_s()) == 2, "occlusion is critical"
    before = p.delivered_steps
    kit.advance(t, (config.OCCLUSION_RETRY_S - 1) * 1000)
    lock.update(inp)
    assert p.delivered_steps == before and p.blocked, "no steps while blocked"
    kit.advance(t, 1000)
    lock.update(inp)
    assert p.blocked, "still blocked at the retry: try again later"
    inp.pressure = 6000
    kit.advance(t, config.OCCLUSION_RETRY_S * 1000)
    lock.update(inp)
    assert not p.blocked and not _on(t, m.ALARM_OCCLUSION), "cleared at the next retry"
    # The missed steps are not made up: the next hour delivers the program's hour.
    n = p.delivered_steps
    kit.advance(t, 3_600_000)
    per_hour = 400_000 * 1000 // (500 * kit.STEP_NL) // 24
    assert abs(p.delivered_steps - n - per_hour) <= 1, "%d steps after it cleared, want %d" % (
        p.delivered_steps - n, per_hour)
    assert lock.stalls == 1


def test_a_driver_fault_or_an_end_stop_with_drug_left_blocks_the_motor():
    t, lock, inp = _lock()
    inp.driver_fault = True
    lock.update(inp)
    assert t.pump.blocked, "driver fault"
    t, lock, inp = _lock()
    inp.end_empty = True
    lock.update(inp)
    assert t.pump.blocked, "the plunger at its end while the reservoir should hold drug"
    t, lock, inp = _lock(fill_nl=kit.STEP_NL - 1)  # what the pump itself counts as empty
    inp.end_empty = True
    lock.update(inp)
    assert not t.pump.blocked and not _on(t, m.ALARM_OCCLUSION), "empty and at the end: agreed"


def test_label_5_5_battery_alarms_replacement_then_end_of_service():
    # Label 5.5: end of pump battery life is a cause of abrupt withdrawal; the alarm must come
    # early enough to act on: elective replacement (one tone) before end of service (two).
    t = kit.running(400_000)
    t.battery(3_900)
    assert not t.alarms.active, "a healthy battery"
    t.battery(config.BATTERY_REPLACE_MV - 1)
    assert _on(t, m.ALARM_BATTERY_REPLACE) and not _on(t, m.ALARM_BATTERY_END)
    assert t.alarms.tone(t.pump.clock_s()) == 1
    t.battery(config.BATTERY_END_MV - 1)
    assert _on(t, m.ALARM_BATTERY_END) and t.alarms.tone(t.pump.clock_s()) == 2
    t.battery(3_900)
    assert not t.alarms.active, "a new battery clears both"


def test_a_blocked_motor_waits_for_its_retry_even_when_the_blockage_clears():
    t, lock, inp = _lock()
    inp.pressure = config.PRESSURE_LIMIT_RAW + 1
    lock.update(inp)
    inp.pressure = 6000
    kit.advance(t, (config.OCCLUSION_RETRY_S - 1) * 1000)
    lock.update(inp)
    assert t.pump.blocked, "cleared, but the retry is not due: still stopped"
    kit.advance(t, 1000)
    lock.update(inp)
    assert not t.pump.blocked, "the retry"


def test_label_5_4_a_cap_violation_stays_until_acknowledged_and_the_needle_is_out():
    t, lock, inp = _lock()
    inp.needle_cap = True
    lock.update(inp)
    inp.needle_cap = False
    lock.update(inp)
    assert _on(t, m.ALARM_CAP_VIOLATION), "the needle is out, but nobody acknowledged"
    inp.needle_cap = True
    t.alarm_ack(m.ALARM_CAP_VIOLATION)
    t.cap_begin(600)  # a session opened afterwards does not excuse the violation
    lock.update(inp)
    assert _on(t, m.ALARM_CAP_VIOLATION), "the needle is still in"
    inp.needle_cap = False
    lock.update(inp)
    assert not _on(t, m.ALARM_CAP_VIOLATION)
