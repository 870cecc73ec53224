# The engine's own guards, each tested where a mutation sweep (removing one guard at a time,
# re-running tests/board and tests/test_therapy_property.py) found no test that failed:
# sessions, boluses, resume and profile changes that would otherwise let a dose or a state
# through that the label's rules or the mechanism forbid. Board-safe (CPython and MicroPython).

import therapy_kit as kit
from test_rules import DAY, HOUR, _refused, _run

from firmware import config
from protocol import messages as m


def test_no_return_to_screening_once_infusion_started():
    t = kit.running(100_000)
    _refused(t, m.ERR_INVALID_STATE, m.RULE_PHASE, m.PHASE_SCREENING, m.PHASE_TITRATION, 0,
             t.set_profile, m.ORIGIN_SPINAL, 40, m.PHASE_SCREENING, 1_500_000, 200_000, 0, 0)


def test_the_start_of_infusion_stays_once_infusion_ran_on_this_pump():
    # Moved back, it would open the first 24 h early (label 2.5: no increase in them).
    t = kit.running(100_000)
    start = t.profile()[5]
    backdated = t.pump.clock_s() - 3 * DAY
    _refused(t, m.ERR_INVALID_STATE, m.RULE_INFUSION_START, 0, 0, 0, t.set_profile,
             m.ORIGIN_SPINAL, 40, m.PHASE_TITRATION, 1_500_000, 200_000, backdated, 0)
    kit.advance(t, HOUR * 1000)
    e = kit.refused(t.set_continuous, 110_000, 0)
    assert e.rule == m.RULE_FIRST_24H
    if start:  # the same start again (a profile re-sent as it was) is no change
        t.set_profile(m.ORIGIN_SPINAL, 40, m.PHASE_TITRATION, 1_500_000, 200_000, start, 0)
    b = kit.ready()  # infusion started on an earlier pump: its start is taken
    b.set_profile(m.ORIGIN_SPINAL, 40, m.PHASE_TITRATION, 1_500_000, 200_000, backdated, 0)
    assert b.profile()[5] == backdated


def test_profile_ceiling_not_under_the_program_in_force():
    t = kit.running(1_000_000)  # ceiling 1 500 000
    before = t.profile()
    e = kit.refused(t.set_profile, m.ORIGIN_SPINAL, 40, m.PHASE_TITRATION, 999_999, 200_000, 0,
                    0)
    assert (e.code, e.rule, e.requested) == (m.ERR_LIMIT, m.RULE_HARD_CEILING, 999_999)
    assert e.allowed >= 1_000_000, e.allowed
    assert t.profile() == before


def test_taper_days_checked_by_the_engine_not_only_the_codec():
    t = kit.running(100_000)
    for days in (13, 29):
        _refused(t, m.ERR_LIMIT, m.RULE_TAPER, days, 28, 0, t.set_taper, 30_000, days, 0)


def test_refill_and_programs_need_a_profile():
    t = kit.bare()
    _refused(t, m.ERR_INVALID_STATE, m.RULE_PROFILE_REQUIRED, 0, 0, 0, t.refill_begin)
    _refused(t, m.ERR_INVALID_STATE, m.RULE_PROFILE_REQUIRED, 0, 0, 0,
             t.set_continuous, 100_000, 0)


def test_suspend_needs_a_program():
    t = kit.ready()
    _refused(t, m.ERR_INVALID_STATE, 0, 0, 0, 0, t.suspend, 1, m.STOP_CONFIRM)


def test_resume_needs_a_held_program():
    t = kit.ready()
    _refused(t, m.ERR_INVALID_STATE, 0, 0, 0, 0, t.resume)
    r = kit.running(100_000)
    _refused(r, m.ERR_INVALID_STATE, 0, 0, 0, 0, r.resume)


def test_prime_needs_the_catheter_volume_and_no_screening():
    t = kit.ready(catheter_nl=0)
    _refused(t, m.ERR_INVALID_STATE, m.RULE_PROFILE_REQUIRED, 0, 0, 0, t.prime, 600)
    s = kit.ready(phase=m.PHASE_SCREENING, concentration=50)
    _refused(s, m.ERR_INVALID_STATE, m.RULE_PHASE, m.PHASE_SCREENING, m.PHASE_TITRATION, 0,
             s.prime, 600)
    p = kit.ready()
    assert p.prime(600)[1] == 100_000, "200 uL of catheter at 500 mcg/mL"


def test_patient_bolus_settings():
    t = kit.running(100_000)
    _refused(t, m.ERR_OUT_OF_RANGE, 0, 0, 1, 0, t.set_patient_bolus, 10_000, 600, 3600, 0)
    s = kit.ready(phase=m.PHASE_SCREENING, concentration=50)
    _refused(s, m.ERR_INVALID_STATE, m.RULE_PHASE, m.PHASE_SCREENING, m.PHASE_TITRATION, 0,
             s.set_patient_bolus, 10_000, 600, 3600, 2)


def test_no_patient_bolus_while_stopped_or_suspended():
    t = kit.running(100_000)
    t.set_patient_bolus(10_000, 600, 3600, 3)
    t.stop(2, m.STOP_CONFIRM)
    _refused(t, m.ERR_INVALID_STATE, 0, 0, 0, 0, t.patient_bolus)
    t.resume()
    t.suspend(1, m.STOP_CONFIRM)
    _refused(t, m.ERR_INVALID_STATE, 0, 0, 0, 0, t.patient_bolus)


def test_screening_bolus_needs_drug_in_the_reservoir():
    t = kit.bare()
    t.set_profile(m.ORIGIN_SPINAL, 40, m.PHASE_SCREENING, 1_500_000, 200_000, 0, 0)
    _refused(t, m.ERR_INVALID_STATE, m.RULE_RESERVOIR, 0, 0, 0, t.screen, 50_000, 60)


def test_one_bolus_at_a_time():
    t = kit.running(100_000)
    t.bolus(10_000, 3600)
    _run(t, 60)
    _refused(t, m.ERR_INVALID_STATE, 0, 0, 0, 0, t.bolus, 10_000, 600)


def test_no_bolus_while_a_refill_session_holds_the_outlet():
    t = kit.running(100_000)
    t.refill_begin()
    _refused(t, m.ERR_INVALID_STATE, 0, 0, 0, 0, t.bolus, 10_000, 600)


def test_bolus_no_faster_than_the_mechanism():
    # 600 000 ng at 500 mcg/mL = 1.2 mL in 60 s; the mechanism's top is 1 mL/min.
    t = kit.running(100_000)
    _refused(t, m.ERR_LIMIT, m.RULE_PUMP_RATE, 1_728_000_000, config.MAX_BOLUS_NL_MIN * 1440,
             0, t.bolus, 600_000, 60)
    assert t.bolus(500_000, 60)[1] == 500_000, "1 mL/min exactly"


def test_baclofen_only_in_the_engine_not_only_the_codec():
    t = kit.ready()
    t.refill_begin()
    _refused(t, m.ERR_LIMIT, m.RULE_DRUG, 2, m.DRUG_BACLOFEN, 0,
             t.refill_commit, kit.CAPACITY_NL, 10_000_000, 2, 500, 500, 0)


def test_cap_session_lasts_at_least_1_s():
    t = kit.running(100_000)
    _refused(t, m.ERR_OUT_OF_RANGE, 0, 0, 1, 0, t.cap_begin, 0)


def test_ack_of_an_inactive_alarm_refused():
    t = kit.running(100_000)
    _refused(t, m.ERR_INVALID_STATE, 0, 0, 0, 0, t.alarm_ack, m.ALARM_ESCALATION)


def test_refill_at_a_weaker_concentration_keeps_the_pump_rate():
    # 1 400 000 ng/day at 50 mcg/mL is 28 mL/day: over the pump's 24 mL/day.
    t = kit.running(1_400_000)
    t.refill_begin()
    _refused(t, m.ERR_LIMIT, m.RULE_PUMP_RATE, 28_000_000, config.MAX_RATE_NL_DAY, 0,
             t.refill_commit, t.pump.volume_nl, kit.CAPACITY_NL, m.DRUG_BACLOFEN, 50, 50, 0)


def test_resume_holds_the_ceiling():
    # Stopped, a 900 000 ng bolus fits under the 1 000 000 ceiling; resuming 500 000 ng/day
    # within 24 h of it would not.
    t = kit.running(500_000, ceiling_ng=1_000_000)
    t.stop(1, m.STOP_CONFIRM)
    t.bolus(900_000, 600)
    _run(t, HOUR)
    e = kit.refused(t.resume)
    assert (e.code, e.rule) == (m.ERR_LIMIT, m.RULE_HARD_CEILING), (e.code, e.rule)
    assert t.mode == m.MODE_STOPPED
    _run(t, DAY)
    assert t.resume()[0] == m.MODE_CONTINUOUS


def test_no_concentration_of_0_even_confirmed():
    t = kit.ready()
    t.refill_begin()
    e = kit.refused(t.refill_commit, 0, 1_000_000, m.DRUG_BACLOFEN, 0, 0,
                    m.CONFIRM_CUSTOM_CONCENTRATION)
    assert (e.code, e.rule) == (m.ERR_OUT_OF_RANGE, m.RULE_CONCENTRATION), (e.code, e.rule)


def test_a_40_ml_model_takes_a_40_ml_fill_and_no_more():
    # Label 5.1, the refill: never over the reservoir's capacity, whichever model the pump is.
    from firmware.core.eventlog import EventLog
    from firmware.core.pump import Pump
    from firmware.core.therapy import Therapy

    p = Pump(kit.STEP_NL, 40_000_000, 0, config.MAX_RATE_NL_DAY, kit.CLOCK0)
    t = Therapy(p, EventLog(16), config)
    t.set_profile(m.ORIGIN_SPINAL, 40, m.PHASE_TITRATION, 1_500_000, 200_000, 0, 0)
    t.refill_begin()
    e = kit.refused(t.refill_commit, 0, 40_000_001, m.DRUG_BACLOFEN, 500, 500, 0)
    assert (e.code, e.rule, e.allowed) == (m.ERR_LIMIT, m.RULE_OVERFILL, 40_000_000)
    assert t.refill_commit(0, 40_000_000, m.DRUG_BACLOFEN, 500, 500, 0)[0] == 40_000_000


def test_an_acknowledged_watchdog_reset_clears_so_the_next_one_alarms_again():
    t = kit.running(100_000)
    bit = 1 << (m.ALARM_WATCHDOG_RESET - 1)
    t.set_alarm(m.ALARM_WATCHDOG_RESET, True)  # as Loop does after a watchdog reset
    t.alarm_ack(m.ALARM_WATCHDOG_RESET)
    assert not t.alarms.active & bit, "seen and handled: cleared"
    t.set_alarm(m.ALARM_WATCHDOG_RESET, True)  # the next watchdog reset
    assert t.alarms.unacked & bit and t.tone() == 1, "it sounds again"
