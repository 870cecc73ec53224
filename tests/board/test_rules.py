# The label's rules (../shared/clinical-rules.md, label section numbers in each test's name or
# first comment) as the therapy engine enforces them: each refusal names its error code, rule,
# requested and allowed values (and wait_s for TOO_SOON), and changes nothing (program,
# delivered dose, reservoir, log); each limit's boundary value is accepted.
# Board-safe: runs on CPython (pytest) and on the MicroPython VM (tests/mp). Time advances in
# chunks of minutes to hours; no test simulates more than a few days.

import therapy_kit as kit

from firmware import config
from firmware.core.pump import Refused
from protocol import codec
from protocol import messages as m

DAY = 86400
HOUR = 3600
T0 = kit.CLOCK0


# -- helpers ---------------------------------------------------------------------------------


def _snap(t):
    """Everything a refused command must leave as it was."""
    p = t.pump
    return (
        t.program(), t.profile(), t.mode, t.program_mode, t.stop_reason, t.change_ms,
        p.delivered_ng(), p.delivered_steps, p.volume_nl, p.concentration, p.basal_nl_day,
        p.bolus_steps, p.held, t.bolus_kind, t.log.total, t.sessions(), t.alarm_state(),
        t.patient_bolus_state(), t.screening(), tuple(t.in_force.v), t.last_increase_up,
        t.programmed, t.refill_base_ng, tuple(t.pb_up), t.start_up, t.last_screen_up,
        t.low_at_s, t.refill_at_s, t.dry_at_s, t.infusion_start_s,
    )  # fmt: skip


def _refused(t, code, rule, requested, allowed, wait_s, fn, *args):
    """fn(*args) is refused with these values and changes nothing; returns the refusal."""
    before = _snap(t)
    e = kit.refused(fn, *args)
    got = (e.code, e.rule, e.requested, e.allowed, e.wait_s)
    want = (code, rule, requested, allowed, wait_s)
    assert got == want, "refusal (code, rule, requested, allowed, wait_s) %r, want %r: %s" % (
        got, want, e.reason)
    after = _snap(t)
    assert after == before, "a refused command changed the state:\n%r\n%r" % (before, after)
    return e


_run = kit.run_for


def _windows(samples):
    """The most delivered (ng) in any window of at most 24 h between samples, from samples
    (uptime_s, delivered_ng) in time order."""
    top = 0
    j = 0
    for i in range(len(samples)):
        while samples[i][0] - samples[j][0] > DAY:
            j += 1
        d = samples[i][1] - samples[j][1]
        if d > top:
            top = d
    return top


def _run_sampled(t, s, samples, chunk_s=600):
    kit.run_for(t, s, chunk_s, samples)


def _started(daily_ng=100_000, origin=m.ORIGIN_SPINAL, age=40, phase=m.PHASE_TITRATION,
             ceiling_ng=1_500_000, **kw):
    """A therapy running daily_ng whose infusion started 2 days ago (as the profile may say
    for a pump that replaced another): the first-24 h rule is behind it."""
    t = kit.ready(origin=origin, age=age, phase=phase, ceiling_ng=ceiling_ng, **kw)
    t.set_profile(origin, age, phase, ceiling_ng, 200_000, T0 - 2 * DAY, 0)
    t.set_continuous(daily_ng, m.CONFIRM_HIGH_DOSE if daily_ng > 1_000_000 else 0)
    return t


def _events(t, since, event=None):
    """Log records from number `since` on (only `event` ones if given)."""
    out = []
    for n in range(since, t.log.total):
        r = t.log.get(n)
        if event is None or r[1] == event:
            out.append(r)
    return out


def _wire(mtype, values):
    """Encode a request as a host would and decode it as the firmware does: the error code
    (0: valid) and the values."""
    enc = codec.Encoder()
    n = enc.frame_bytes(mtype, 1, values)
    out = codec.Decoded()
    codec.decode(enc.frame, n, out)
    return out.error, out.values


def _alarm_on(t, alarm):
    return bool(t.alarms.active & (1 << (alarm - 1)))


def _step_ng(t):
    return (t.pump.pg_per_step() + 999) // 1000


# -- label 1, 8.4: who the patient is ----------------------------------------------------------


def test_label_1_8_4_patient_under_4_refused():
    t = kit.bare()
    _refused(t, m.ERR_LIMIT, m.RULE_PATIENT_AGE, 3, 4, 0,
             t.set_profile, m.ORIGIN_SPINAL, 3, m.PHASE_TITRATION, 1_000_000, 0, 0, 0)
    assert t.phase == m.PHASE_UNSET, "no profile after the refusal"
    assert t.set_profile(m.ORIGIN_SPINAL, 4, m.PHASE_TITRATION, 1_000_000, 0, 0, 0)[1] == 4
    # A profile in force is not replaced by an under-4 one either.
    _refused(t, m.ERR_LIMIT, m.RULE_PATIENT_AGE, 0, 4, 0,
             t.set_profile, m.ORIGIN_CEREBRAL, 0, m.PHASE_TITRATION, 1_000_000, 0, 0, 0)
    assert t.profile()[:2] == (m.ORIGIN_SPINAL, 4)


# -- label 1: spasticity after a traumatic brain injury, at least a year after it -----------

YEAR = 365 * DAY  # rules.py: a year is 365 days


def _profile_injured(t, injury_s, phase=m.PHASE_TITRATION):
    """SET_PROFILE's values with a brain injury on injury_s (0: none)."""
    return (t.set_profile, m.ORIGIN_CEREBRAL, 40, phase, 1_500_000, 200_000, 0, injury_s)


def test_label_1_brain_injury_profile_under_a_year_refused():
    t = kit.bare()
    # A second under a year: TOO_SOON, naming the injury's date and the date therapy may start.
    _refused(t, m.ERR_TOO_SOON, m.RULE_BRAIN_INJURY_WAIT, T0 - YEAR + 1, T0 + 1, 1,
             *_profile_injured(t, T0 - YEAR + 1))
    _refused(t, m.ERR_TOO_SOON, m.RULE_BRAIN_INJURY_WAIT, T0 - 30 * DAY, T0 + YEAR - 30 * DAY,
             YEAR - 30 * DAY, *_profile_injured(t, T0 - 30 * DAY))
    # An injury at the clock: under a year ago too.
    _refused(t, m.ERR_TOO_SOON, m.RULE_BRAIN_INJURY_WAIT, T0, T0 + YEAR, YEAR,
             *_profile_injured(t, T0))
    assert t.phase == m.PHASE_UNSET, "no profile after the refusals"
    # A year to the second: taken, and reported.
    out = t.set_profile(m.ORIGIN_CEREBRAL, 40, m.PHASE_TITRATION, 1_500_000, 200_000, 0,
                        T0 - YEAR)
    assert out[6] == T0 - YEAR and t.profile() == out, out
    # A profile in force is not replaced by one with a recent injury either.
    _refused(t, m.ERR_TOO_SOON, m.RULE_BRAIN_INJURY_WAIT, T0 - DAY, T0 - DAY + YEAR,
             YEAR - DAY, *_profile_injured(t, T0 - DAY))
    # 0: no brain injury (or not the cause): no wait.
    assert t.set_profile(m.ORIGIN_SPINAL, 40, m.PHASE_TITRATION, 1_500_000, 200_000, 0,
                         0)[6] == 0


def test_label_1_brain_injury_after_the_pump_clock_refused_as_out_of_range():
    t = kit.bare()
    _refused(t, m.ERR_OUT_OF_RANGE, m.RULE_BRAIN_INJURY_WAIT, T0 + 1, T0, 0,
             *_profile_injured(t, T0 + 1))
    _refused(t, m.ERR_OUT_OF_RANGE, m.RULE_BRAIN_INJURY_WAIT, m.CLOCK_MAX, T0, 0,
             *_profile_injured(t, m.CLOCK_MAX))
    # A clock not set lags the true date (the Pico's RTC starts at 2021-01-01): an injury
    # after it is refused, never taken as a year ago.
    pico = kit.bare(1_609_459_200)
    _refused(pico, m.ERR_OUT_OF_RANGE, m.RULE_BRAIN_INJURY_WAIT, T0 - 2 * YEAR,
             1_609_459_200, 0, *_profile_injured(pico, T0 - 2 * YEAR))
    pico.set_clock(T0)
    assert pico.set_profile(*_profile_injured(pico, T0 - 2 * YEAR)[1:])[6] == T0 - 2 * YEAR
    # SET_PROFILE's wire range: 0 to 2100, as every date.
    assert _wire(m.SET_PROFILE, (1, 40, 2, 1_500_000, 0, 0, m.CLOCK_MAX))[0] == 0
    err, _ = _wire(m.SET_PROFILE, (1, 40, 2, 1_500_000, 0, 0, m.CLOCK_MAX + 1))
    assert err == m.ERR_OUT_OF_RANGE, err


def test_label_1_brain_injury_first_program_waits_a_year_by_the_clock_then():
    # The profile was taken a year after the injury by the clock then; the clock is set back
    # a day before the first program (it had been set ahead): the first therapy waits.
    t = kit.ready(origin=m.ORIGIN_CEREBRAL, brain_injury_s=T0 - YEAR)
    t.set_clock(T0 - DAY)
    for fn, args in ((t.set_continuous, (100_000, 0)),
                     (t.set_flex, (0, 0, ((0, 100_000), (720, 120_000)))),
                     (t.bolus, (10_000, 600)), (t.prime, (600,))):
        _refused(t, m.ERR_TOO_SOON, m.RULE_BRAIN_INJURY_WAIT, T0 - YEAR, T0, DAY, fn, *args)
    _run(t, HOUR)
    _refused(t, m.ERR_TOO_SOON, m.RULE_BRAIN_INJURY_WAIT, T0 - YEAR, T0, DAY - HOUR,
             t.set_continuous, 100_000, 0)
    t.set_clock(T0)
    assert t.set_continuous(100_000, 0)[1] == 100_000, "a year after the injury: it starts"
    # Therapy began: the rule has no more to say (a clock moved back again stops nothing).
    t.set_clock(T0 - 30 * DAY)
    assert t.set_continuous(90_000, 0)[1] == 90_000
    assert t.bolus(10_000, 600)[1] == 10_000


def test_label_1_brain_injury_first_screening_bolus_waits_a_year_by_the_clock_then():
    t = kit.ready(phase=m.PHASE_SCREENING, concentration=50, brain_injury_s=T0 - YEAR)
    t.set_clock(T0 - 1)
    _refused(t, m.ERR_TOO_SOON, m.RULE_BRAIN_INJURY_WAIT, T0 - YEAR, T0, 1,
             t.screen, 50_000, 60)
    _run(t, 1)
    assert t.screen(50_000, 60)[1] == 50_000, "a year after the injury: screening starts"
    _run(t, DAY)
    t.set_clock(T0 - DAY)  # screening began: its next bolus is not held back by the clock
    assert t.screen(75_000, 120)[1] == 75_000
    # An injury that is not the cause (0) holds nothing back.
    u = kit.ready(phase=m.PHASE_SCREENING, concentration=50)
    u.set_clock(m.CLOCK_MIN)
    assert u.screen(50_000, 60)[1] == 50_000


# -- label 2.3, 3, 16: drug and concentrations ------------------------------------------------


def test_label_2_3_label_concentrations_accepted():
    for c in (50, 500, 1000, 2000):
        t = kit.ready()
        t.refill_begin()
        out = t.refill_commit(kit.CAPACITY_NL, 10_000_000, m.DRUG_BACLOFEN, c, c, 0)
        assert out[1] == c and t.pump.concentration == c, "%d mcg/mL: %r" % (c, out)
        assert t.pump.volume_nl == 10_000_000


def test_label_2_3_custom_concentration_needs_confirmation():
    t = kit.ready()
    t.refill_begin()
    _refused(t, m.ERR_NOT_CONFIRMED, m.RULE_CUSTOM_CONCENTRATION, 750, 0, 0,
             t.refill_commit, kit.CAPACITY_NL, 10_000_000, m.DRUG_BACLOFEN, 750, 750, 0)
    # Another confirmation is not this one.
    _refused(t, m.ERR_NOT_CONFIRMED, m.RULE_CUSTOM_CONCENTRATION, 750, 0, 0,
             t.refill_commit, kit.CAPACITY_NL, 10_000_000, m.DRUG_BACLOFEN, 750, 750,
             m.CONFIRM_HIGH_DOSE | m.CONFIRM_DRAIN_MISMATCH | m.CONFIRM_LARGE_DECREASE)
    t.refill_commit(kit.CAPACITY_NL, 10_000_000, m.DRUG_BACLOFEN, 750, 750,
                    m.CONFIRM_CUSTOM_CONCENTRATION)
    assert t.pump.concentration == 750


def test_label_2_3_over_2000_mcg_ml_refused_even_confirmed():
    t = kit.ready()
    t.refill_begin()
    _refused(t, m.ERR_LIMIT, m.RULE_CONCENTRATION, 2001, 2000, 0,
             t.refill_commit, kit.CAPACITY_NL, 10_000_000, m.DRUG_BACLOFEN, 2001, 2001,
             m.CONFIRM_CUSTOM_CONCENTRATION)
    _refused(t, m.ERR_LIMIT, m.RULE_CONCENTRATION, 4000, 2000, 0,
             t.refill_commit, kit.CAPACITY_NL, 10_000_000, m.DRUG_BACLOFEN, 4000, 4000, 0x0F)
    t.refill_commit(kit.CAPACITY_NL, 10_000_000, m.DRUG_BACLOFEN, 2000, 2000, 0)
    assert t.pump.concentration == 2000


def test_label_2_3_two_concentration_entries_must_match():
    t = kit.ready()
    t.refill_begin()
    _refused(t, m.ERR_NOT_CONFIRMED, m.RULE_CONCENTRATION, 500, 1000, 0,
             t.refill_commit, kit.CAPACITY_NL, 10_000_000, m.DRUG_BACLOFEN, 500, 1000, 0)
    _refused(t, m.ERR_NOT_CONFIRMED, m.RULE_CONCENTRATION, 2000, 200, 0,
             t.refill_commit, kit.CAPACITY_NL, 10_000_000, m.DRUG_BACLOFEN, 2000, 200, 0x0F)
    assert t.pump.concentration == 500 and t.sessions() == m.SESSION_REFILL


def test_label_16_one_drug_baclofen_on_the_wire():
    # The firmware's codec refuses any drug but baclofen in REFILL_COMMIT.
    err, values = _wire(m.REFILL_COMMIT, (0, 10_000_000, m.DRUG_BACLOFEN, 500, 500, 0))
    assert err == 0 and values[2] == m.DRUG_BACLOFEN, (err, values)
    for drug in (0, 2, 255):
        err, _ = _wire(m.REFILL_COMMIT, (0, 10_000_000, drug, 500, 500, 0))
        assert err == m.ERR_OUT_OF_RANGE, "drug %d: error %d" % (drug, err)


def test_label_2_3_concentration_changes_only_through_a_refill_commit():
    t = _started(100_000)
    p = t.pump
    conc = p.concentration
    t.set_flex(0, 0, ((0, 100_000), (600, 90_000)))
    t.set_continuous(95_000, 0)
    t.bolus(10_000, 600)
    _run(t, 600)
    t.set_patient_bolus(5_000, 600, 3600, 4)
    t.patient_bolus()
    t.suspend(1, m.STOP_CONFIRM)
    t.resume()
    t.cap_begin(600)
    t.cap_end()
    t.set_taper(60_000, 14, 0)
    t.stop(1, m.STOP_CONFIRM)
    t.resume()
    t.refill_begin()
    t.refill_abort()
    t.refill_begin()
    kit.refused(t.refill_commit, 0, 10_000_000, m.DRUG_BACLOFEN, 1000, 500, 0)
    kit.refused(t.refill_commit, 0, kit.CAPACITY_NL + 1, m.DRUG_BACLOFEN, 1000, 1000, 0)
    t.refill_abort()
    _run(t, HOUR)
    assert p.concentration == conc, "only a refill commit changes it: %d" % p.concentration
    before = t.program()
    t.refill_begin()
    t.refill_commit(p.volume_nl, 10_000_000, m.DRUG_BACLOFEN, 1000, 1000, 0)
    after = t.program()
    assert p.concentration == 1000
    assert after[1] == before[1], "the same daily dose at the new concentration"
    assert after[2] * 2 == before[2], "half the volume: %d vs %d" % (after[2], before[2])


# -- label 2.2: screening -----------------------------------------------------------------------


def test_label_2_2_screening_ladder_50_75_100_and_nothing_after():
    t = kit.ready(phase=m.PHASE_SCREENING, concentration=50)
    _refused(t, m.ERR_LIMIT, m.RULE_SCREENING_DOSE, 25_000, 50_000, 0, t.screen, 25_000, 60)
    _refused(t, m.ERR_LIMIT, m.RULE_SCREENING_DOSE, 75_000, 50_000, 0, t.screen, 75_000, 120)
    _refused(t, m.ERR_LIMIT, m.RULE_SCREENING_DOSE, 60_000, 50_000, 0, t.screen, 60_000, 120)
    _refused(t, m.ERR_LIMIT, m.RULE_SCREENING_DOSE, 125_000, 100_000, 0,
             t.screen, 125_000, 600)
    out = t.screen(50_000, 60)
    assert out == (m.BOLUS_SCREENING, 50_000, 1_000_000, 60, T0 + 60), out
    assert t.screening()[:2] == (75_000, T0 + DAY), t.screening()
    _run(t, DAY - 1)
    _refused(t, m.ERR_TOO_SOON, m.RULE_SCREENING_INTERVAL, 75_000, 75_000, 1,
             t.screen, 75_000, 120)
    _run(t, 1)
    _refused(t, m.ERR_LIMIT, m.RULE_SCREENING_DOSE, 100_000, 75_000, 0, t.screen, 100_000, 120)
    assert t.screen(75_000, 120)[1] == 75_000
    _run(t, DAY)
    _refused(t, m.ERR_LIMIT, m.RULE_SCREENING_DOSE, 125_000, 100_000, 0,
             t.screen, 125_000, 600)
    assert t.screen(100_000, 120)[1] == 100_000
    assert t.screening()[:2] == (0, 0), "no screening dose after 100 mcg: %r" % (
        t.screening(),)
    _run(t, DAY)
    _refused(t, m.ERR_LIMIT, m.RULE_SCREENING_DOSE, 100_000, 0, 0, t.screen, 100_000, 120)
    _refused(t, m.ERR_LIMIT, m.RULE_SCREENING_DOSE, 50_000, 0, 0, t.screen, 50_000, 60)
    doses = [s[1] for s in t.screening()[2]]
    assert doses == [50_000, 75_000, 100_000], doses


def test_label_2_2_screening_bolus_over_at_least_one_minute():
    t = kit.ready(phase=m.PHASE_SCREENING, concentration=50)
    _refused(t, m.ERR_LIMIT, m.RULE_SCREENING_DURATION, 59, 60, 0, t.screen, 50_000, 59)
    _refused(t, m.ERR_LIMIT, m.RULE_SCREENING_DURATION, 1, 60, 0, t.screen, 50_000, 1)
    out = t.screen(50_000, 60)
    assert out[3] == 60
    steps = _run(t, 59, 1)
    assert steps < 4000, "not all of it before 1 minute: %d steps" % steps
    steps += _run(t, 1, 1)
    assert steps == 4000, "1 mL in 250 nL steps by 60 s: %d" % steps


def test_label_2_2_first_dose_25_mcg_only_for_a_child():
    t = kit.ready(phase=m.PHASE_SCREENING, concentration=50, age=17)
    assert t.screen(25_000, 60)[1] == 25_000
    _run(t, DAY)
    _refused(t, m.ERR_LIMIT, m.RULE_SCREENING_DOSE, 25_000, 50_000, 0, t.screen, 25_000, 60)
    _refused(t, m.ERR_LIMIT, m.RULE_SCREENING_DOSE, 75_000, 50_000, 0, t.screen, 75_000, 120)
    assert t.screen(50_000, 60)[1] == 50_000
    adult = kit.ready(phase=m.PHASE_SCREENING, concentration=50, age=18)
    _refused(adult, m.ERR_LIMIT, m.RULE_SCREENING_DOSE, 25_000, 50_000, 0,
             adult.screen, 25_000, 60)


def test_label_2_2_screening_phase_boluses_only():
    t = kit.ready(phase=m.PHASE_SCREENING, concentration=50)
    _refused(t, m.ERR_INVALID_STATE, m.RULE_PHASE, m.PHASE_SCREENING, m.PHASE_TITRATION, 0,
             t.set_continuous, 50_000, 0)
    _refused(t, m.ERR_INVALID_STATE, m.RULE_PHASE, m.PHASE_SCREENING, m.PHASE_TITRATION, 0,
             t.bolus, 50_000, 60)
    r = kit.ready()
    _refused(r, m.ERR_INVALID_STATE, m.RULE_PHASE, m.PHASE_TITRATION, m.PHASE_SCREENING, 0,
             r.screen, 50_000, 60)


# -- label 2.5: starting dose and the first 24 h ------------------------------------------------


def test_label_2_5_starting_dose_at_most_twice_the_screening_dose():
    t = kit.ready(phase=m.PHASE_SCREENING, concentration=50)
    t.screen(50_000, 60)
    _run(t, DAY)
    t.screen(75_000, 120)
    _run(t, 8 * HOUR)
    t.set_profile(m.ORIGIN_SPINAL, 40, m.PHASE_TITRATION, 1_500_000, 200_000, 0, 0)
    _refused(t, m.ERR_LIMIT, m.RULE_STARTING_DOSE, 150_001, 150_000, 0,
             t.set_continuous, 150_001, 0)
    _refused(t, m.ERR_LIMIT, m.RULE_STARTING_DOSE, 150_001, 150_000, 0,
             t.set_flex, 0, 0, ((0, 150_000), (720, 150_002)))
    assert t.set_continuous(150_000, 0)[1] == 150_000
    assert t.infusion_start_s == t.pump.clock_s(), "infusion starts with the first program"


def test_label_2_5_no_increase_in_the_first_24_h():
    t = kit.running(100_000)
    _run(t, 1)
    _refused(t, m.ERR_TOO_SOON, m.RULE_FIRST_24H, 100_001, 100_000, DAY - 1,
             t.set_continuous, 100_001, 0)
    _run(t, DAY - 2)
    _refused(t, m.ERR_TOO_SOON, m.RULE_FIRST_24H, 100_001, 100_000, 1,
             t.set_continuous, 100_001, 0)
    _refused(t, m.ERR_TOO_SOON, m.RULE_FIRST_24H, 100_001, 100_000, 1,
             t.set_flex, 0, 0, ((0, 100_000), (720, 100_002)))
    _run(t, 1)
    assert t.set_continuous(130_000, 0)[1] == 130_000, "at 24 h: +30 % accepted"
    # A decrease is allowed in the first 24 h.
    d = kit.running(100_000)
    assert d.set_continuous(90_000, 0)[1] == 90_000


# -- label 2.5: titration -----------------------------------------------------------------------


def _titration(origin, age, pct):
    t = _started(100_000, origin=origin, age=age)
    top = 100_000 * (100 + pct) // 100
    _refused(t, m.ERR_LIMIT, m.RULE_TITRATION_STEP, top + 1, top, 0,
             t.set_continuous, top + 1, 0)
    assert t.set_continuous(top, 0)[1] == top, "+%d %% exactly is accepted" % pct


def test_label_2_5_titration_spinal_adult_plus_30_percent():
    _titration(m.ORIGIN_SPINAL, 40, 30)
    _titration(m.ORIGIN_SPINAL, 18, 30)


def test_label_2_5_titration_cerebral_adult_plus_15_percent():
    _titration(m.ORIGIN_CEREBRAL, 40, 15)


def test_label_2_5_titration_pediatric_plus_15_percent():
    # Label 2.5 / 6.1: pediatric is under 18, whatever the origin.
    _titration(m.ORIGIN_SPINAL, 17, 15)
    _titration(m.ORIGIN_SPINAL, 4, 15)
    _titration(m.ORIGIN_CEREBRAL, 12, 15)


def test_label_2_5_titration_flex_step_counts_its_daily_dose():
    t = _started(100_000)
    # 12 h at 160 000 and 12 h at 100 000 ng/day: 130 000 ng/day, +30 % exactly.
    assert t.set_flex(0, 0, ((0, 160_000), (720, 100_000)))[1] == 130_000
    t = _started(100_000)
    _refused(t, m.ERR_LIMIT, m.RULE_TITRATION_STEP, 130_001, 130_000, 0,
             t.set_flex, 0, 0, ((0, 160_001), (720, 100_001)))


def test_label_2_5_titration_once_per_24_h():
    t = _started(100_000)
    t.set_continuous(120_000, 0)
    t0 = t.pump.clock_s()
    _run(t, HOUR)
    # A decrease in between does not open a new increase.
    t.set_continuous(110_000, 0)
    _run(t, DAY - HOUR - 1)
    _refused(t, m.ERR_TOO_SOON, m.RULE_TITRATION_INTERVAL, 111_000, 110_000, 1,
             t.set_continuous, 111_000, 0)
    _run(t, 1)
    assert t.pump.clock_s() == t0 + DAY
    assert t.set_continuous(143_000, 0)[1] == 143_000, "24 h later: +30 % again"
    _refused(t, m.ERR_TOO_SOON, m.RULE_TITRATION_INTERVAL, 143_001, 143_000, DAY,
             t.set_continuous, 143_001, 0)


# -- label 2.6: maintenance ---------------------------------------------------------------------


def test_label_2_6_maintenance_increase_only_in_a_refill_session():
    t = _started(100_000, phase=m.PHASE_MAINTENANCE)
    _refused(t, m.ERR_INVALID_STATE, m.RULE_MAINTENANCE_AT_REFILL, 110_000, 100_000, 0,
             t.set_continuous, 110_000, 0)
    assert t.set_continuous(95_000, 0)[1] == 95_000, "a decrease needs no refill"
    t.refill_begin()
    assert t.set_continuous(110_000, 0)[1] == 110_000
    t.refill_abort()
    _refused(t, m.ERR_INVALID_STATE, m.RULE_MAINTENANCE_AT_REFILL, 120_000, 110_000, 0,
             t.set_continuous, 120_000, 0)


def _maintenance(origin, age, pct):
    t = _started(100_000, origin=origin, age=age, phase=m.PHASE_MAINTENANCE)
    t.refill_begin()
    top = 100_000 * (100 + pct) // 100
    _refused(t, m.ERR_LIMIT, m.RULE_MAINTENANCE_STEP, top + 1, top, 0,
             t.set_continuous, top + 1, 0)
    assert t.set_continuous(top, 0)[1] == top, "+%d %% exactly is accepted" % pct
    return t


def test_label_2_6_maintenance_spinal_plus_40_percent():
    _maintenance(m.ORIGIN_SPINAL, 40, 40)


def test_label_2_6_maintenance_cerebral_plus_20_percent():
    _maintenance(m.ORIGIN_CEREBRAL, 40, 20)


def test_label_2_6_maintenance_pediatric_plus_20_percent():
    _maintenance(m.ORIGIN_SPINAL, 17, 20)
    _maintenance(m.ORIGIN_CEREBRAL, 8, 20)


def test_label_2_6_one_refill_visit_raises_the_dose_at_most_40_percent():
    # Label 2.6: at a refill, "never more than 40 %". Two increases in one refill session
    # must not compound to +96 %.
    t = _maintenance(m.ORIGIN_SPINAL, 40, 40)
    e = kit.refused(t.set_continuous, 196_000, 0)
    assert (e.code, e.rule, e.requested) == (m.ERR_LIMIT, m.RULE_MAINTENANCE_STEP, 196_000), (
        e.code, e.rule, e.requested)
    assert e.allowed <= 140_000, "the visit's limit is 140 000 ng/day: %d" % e.allowed


def test_label_2_6_escalation_notice_on_a_maximal_maintenance_increase():
    t = _started(100_000, phase=m.PHASE_MAINTENANCE)
    t.refill_begin()
    n = t.log.total
    t.set_continuous(139_999, 0)
    assert not _alarm_on(t, m.ALARM_ESCALATION), "+39.999 %: no notice"
    assert not _events(t, n, m.EV_ESCALATION)
    t.refill_abort()
    c = _started(100_000, phase=m.PHASE_MAINTENANCE)
    c.refill_begin()
    n = c.log.total
    c.set_continuous(140_000, 0)
    assert _alarm_on(c, m.ALARM_ESCALATION), "+40 %: the catheter notice"
    ev = _events(c, n, m.EV_ESCALATION)
    assert len(ev) == 1 and ev[0][5:7] == (140_000, 100_000), ev
    assert _events(c, n, m.EV_ALARM)[0][5:7] == (m.ALARM_ESCALATION, 1)
    assert c.alarms.tone(c.pump.clock_s()) == 0, "a notice for the clinician: no tone"
    c.alarm_ack(m.ALARM_ESCALATION)
    assert not _alarm_on(c, m.ALARM_ESCALATION), "acknowledged: cleared"


def test_label_2_6_escalation_notice_on_the_third_increase_in_90_days():
    t = _started(100_000, origin=m.ORIGIN_CEREBRAL, phase=m.PHASE_MAINTENANCE)
    t.refill_begin()
    t.set_continuous(105_000, 0)
    t.refill_abort()
    _run(t, 50 * DAY, DAY)
    t.refill_begin()
    t.set_continuous(110_000, 0)
    t.refill_abort()
    assert not _alarm_on(t, m.ALARM_ESCALATION), "two small increases: no notice"
    # The first is 90 days old now: out of the window.
    _run(t, 40 * DAY, DAY)
    t.refill_begin()
    t.set_continuous(115_000, 0)
    assert not _alarm_on(t, m.ALARM_ESCALATION), "the first increase is 90 days old"
    n = t.log.total
    t.set_continuous(120_000, 0)
    assert _alarm_on(t, m.ALARM_ESCALATION), "the third increase within 90 days"
    ev = _events(t, n, m.EV_ESCALATION)
    assert len(ev) == 1 and ev[0][5:8] == (120_000, 115_000, 3), ev


def test_label_2_5_24_h_rules_run_on_the_pumps_own_time():
    # Label 2.5 (once per 24 h), and every other "within 24 h" rule: a clock set a day ahead
    # does not open a new day of increases, boluses or screening doses.
    t = _started(100_000)
    t.set_continuous(130_000, 0)
    t.set_clock(T0 + 2 * DAY)
    _refused(t, m.ERR_TOO_SOON, m.RULE_TITRATION_INTERVAL, 131_000, 130_000, DAY,
             t.set_continuous, 131_000, 0)
    s = kit.ready(phase=m.PHASE_SCREENING)
    s.screen(50_000, 60)
    s.set_clock(T0 + 3 * DAY)
    _refused(s, m.ERR_TOO_SOON, m.RULE_SCREENING_INTERVAL, 75_000, 75_000, DAY,
             s.screen, 75_000, 60)


def test_label_2_6_above_1000_mcg_day_needs_confirmation():
    t = kit.ready()
    _refused(t, m.ERR_NOT_CONFIRMED, m.RULE_HIGH_DOSE, 1_000_001, 1_000_000, 0,
             t.set_continuous, 1_000_001, m.CONFIRM_LARGE_DECREASE)
    _refused(t, m.ERR_NOT_CONFIRMED, m.RULE_HIGH_DOSE, 1_000_001, 1_000_000, 0,
             t.set_flex, 0, 0, ((0, 1_000_000), (720, 1_000_002)))
    assert t.set_continuous(1_000_000, 0)[1] == 1_000_000, "1000 mcg/day: no confirmation"
    h = kit.ready()
    assert h.set_continuous(1_000_001, m.CONFIRM_HIGH_DOSE)[1] == 1_000_001
    # Titration into the high range needs it too.
    g = _started(900_000)
    _refused(g, m.ERR_NOT_CONFIRMED, m.RULE_HIGH_DOSE, 1_100_000, 1_000_000, 0,
             g.set_continuous, 1_100_000, 0)
    assert g.set_continuous(1_100_000, m.CONFIRM_HIGH_DOSE)[1] == 1_100_000


# -- hard ceiling (profile; DESIGN invariant 1) -------------------------------------------------


def test_hard_ceiling_caps_programs():
    # Hard ceiling (the profile's; label 5.4, 10: overdose; DESIGN invariant 1).
    t = kit.ready(ceiling_ng=1_500_000)
    _refused(t, m.ERR_LIMIT, m.RULE_HARD_CEILING, 1_500_001, 1_500_000, 0,
             t.set_continuous, 1_500_001, m.CONFIRM_HIGH_DOSE)
    # A flex day whose integral is 0.5 ng over: the daily dose rounds up, so it is refused.
    _refused(t, m.ERR_LIMIT, m.RULE_HARD_CEILING, 1_500_001, 1_500_000, 0,
             t.set_flex, m.CONFIRM_HIGH_DOSE, 0, ((0, 1_500_000), (720, 1_500_001)))
    assert t.set_continuous(1_500_000, m.CONFIRM_HIGH_DOSE)[1] == 1_500_000


def test_hard_ceiling_counts_boluses_over_24_h():
    # Hard ceiling, label 5.4, 10 and DESIGN invariant 1: the program plus the boluses
    # authorised in the last 24 h stay under it.
    t = _started(100_000, ceiling_ng=1_000_000)
    step = _step_ng(t)  # 125 ng: boluses are whole steps
    _refused(t, m.ERR_LIMIT, m.RULE_BOLUS_CEILING, 900_000 + step, 900_000, 0,
             t.bolus, 900_000 + step, 600)
    assert t.bolus(880_000, 600)[1] == 880_000
    _run(t, 600)
    # Delivered in the last 24 h (880 000 + 10 min of basal) plus the program's next 23 h 50
    # min leave 20 000 ng. The engine reckons by quarter hours, rounding outward: it may
    # allow up to 15 min of the program (1 042 ng) less, never more.
    e = kit.refused(t.bolus, 20_000 + step, 600)
    assert (e.code, e.rule, e.requested) == (m.ERR_LIMIT, m.RULE_BOLUS_CEILING, 20_000 + step)
    assert 20_000 - 100_000 * 900 // DAY <= e.allowed <= 20_000, e.allowed
    assert t.bolus(e.allowed - e.allowed % step, 600)[1] == e.allowed - e.allowed % step
    _run(t, 600)
    # A higher program too: the window that holds the boluses holds the next hours of it.
    e = kit.refused(t.set_continuous, 120_001, 0)
    assert (e.code, e.rule, e.requested) == (m.ERR_LIMIT, m.RULE_HARD_CEILING, 120_001)
    assert e.allowed < 100_000, "with 1 000 000 - 900 000 ng left: %d" % e.allowed
    _refused(t, m.ERR_LIMIT, m.RULE_BOLUS_CEILING, step, 0, 0, t.bolus, step, 600)
    # 24 h after they were given the boluses leave the count (by the quarter hour).
    _run(t, DAY - 1201)
    _refused(t, m.ERR_LIMIT, m.RULE_BOLUS_CEILING, step, 0, 0, t.bolus, step, 600)
    _run(t, 1201 + 900)
    assert t.bolus(880_000, 600)[1] == 880_000


def test_hard_ceiling_holds_over_any_24_h_for_a_long_bolus():
    # Label 5.4, 10 (overdose); DESIGN invariant 1: never above the ceiling in any 24-hour
    # window. A bolus spread over 24 h is still being delivered when its authorisation leaves
    # the 24 h count.
    t = kit.running(100_000, ceiling_ng=1_000_000)
    samples = [(t.pump.uptime_s, t.pump.delivered_ng())]
    t.bolus(900_000, DAY)
    _run_sampled(t, DAY, samples)
    try:
        t.bolus(900_000, 600)
    except Refused:
        pass
    _run_sampled(t, HOUR, samples)
    top = _windows(samples)
    assert top <= 1_000_000 + _step_ng(t), (
        "%d ng delivered within 24 h; the hard ceiling is 1000000" % top)


def test_hard_ceiling_holds_when_the_clock_is_set_forward():
    # Label 5.4, 10 (overdose); DESIGN invariant 1 is about real time: setting the pump clock
    # a day forward must not free the bolus room of the last 24 h.
    t = kit.running(100_000, ceiling_ng=1_000_000)
    samples = [(t.pump.uptime_s, t.pump.delivered_ng())]
    t.bolus(900_000, 600)
    _run_sampled(t, 600, samples)
    t.set_clock(t.pump.clock_s() + DAY)
    try:
        t.bolus(900_000, 600)
    except Refused:
        pass
    _run_sampled(t, HOUR, samples)
    top = _windows(samples)
    assert top <= 1_000_000 + _step_ng(t), (
        "%d ng delivered within 24 h; the hard ceiling is 1000000" % top)


def test_hard_ceiling_holds_when_a_flex_day_is_reshaped():
    # Label 2.4 (flex), 5.4, 10 (overdose); DESIGN invariant 1: two flex days of the same
    # daily dose, the second one's high part where the first one's low part was, must not
    # deliver both high parts in 24 h.
    t = kit.ready(ceiling_ng=1_000_000)
    samples = [(t.pump.uptime_s, t.pump.delivered_ng())]
    # Local midnight now (08:00 UTC, offset -8 h): 12 h high, 12 h low.
    t.set_flex(0, -480, ((0, 1_900_000), (720, 100_000)))
    _run_sampled(t, 12 * HOUR, samples, 1800)
    try:
        t.set_flex(0, -480, ((0, 100_000), (720, 1_900_000)))
    except Refused:
        pass
    _run_sampled(t, 12 * HOUR, samples, 1800)
    top = _windows(samples)
    assert top <= 1_000_000 + _step_ng(t), (
        "%d ng delivered within 24 h; the hard ceiling is 1000000" % top)


# -- label 2.6, 5.5: decreases ------------------------------------------------------------------


def test_label_2_6_5_5_large_decrease_needs_confirmation():
    t = kit.running(100_000)
    _refused(t, m.ERR_NOT_CONFIRMED, m.RULE_LARGE_DECREASE, 79_999, 80_000, 0,
             t.set_continuous, 79_999, m.CONFIRM_HIGH_DOSE)
    assert t.set_continuous(80_000, 0)[1] == 80_000, "-20 % exactly: no confirmation"
    # Measured from the highest dose in force in the last 24 h, not the one now.
    _refused(t, m.ERR_NOT_CONFIRMED, m.RULE_LARGE_DECREASE, 64_000, 80_000, 0,
             t.set_continuous, 64_000, 0)
    _refused(t, m.ERR_NOT_CONFIRMED, m.RULE_LARGE_DECREASE, 79_999, 80_000, 0,
             t.set_flex, 0, 0, ((0, 80_000), (720, 79_998)))
    _run(t, DAY - 1)
    _refused(t, m.ERR_NOT_CONFIRMED, m.RULE_LARGE_DECREASE, 64_000, 80_000, 0,
             t.set_continuous, 64_000, 0)
    # The highest dose is kept per quarter hour: it may be remembered 15 min longer.
    _run(t, 1 + 900)
    assert t.set_continuous(64_000, 0)[1] == 64_000, "24 h at 80 000: -20 % of that"
    c = kit.running(100_000)
    assert c.set_continuous(10_000, m.CONFIRM_LARGE_DECREASE)[1] == 10_000
    n = c.log.total - 1
    assert c.log.get(n)[1] == m.EV_PROGRAM and c.log.get(n)[5:8] == (10_000, 100_000, 1)


def test_label_2_6_5_5_large_decrease_not_lost_after_many_changes():
    # Label 2.6, 5.5: the highest dose in force in the last 24 h is 100 000 ng/day however
    # many times the program was re-sent since.
    t = kit.running(100_000)
    t.set_continuous(80_000, 0)
    for _ in range(16):
        t.set_continuous(80_000, 0)
    _refused(t, m.ERR_NOT_CONFIRMED, m.RULE_LARGE_DECREASE, 64_000, 80_000, 0,
             t.set_continuous, 64_000, 0)


def test_label_2_6_5_5_decrease_after_taper_days_measured_from_the_doses_in_force():
    # A taper 100 000 -> 30 000 over 14 days: 95 000 on day 1, 90 000 on day 2. An hour into
    # day 2 the highest dose in force in the last 24 h is 95 000: a cut to 76 000 (-20 %)
    # needs no confirmation, 75 999 does.
    t = kit.running(100_000)
    t.set_taper(30_000, 14, 0)
    _run(t, 2 * DAY + HOUR)
    assert t.program()[:2] == (m.MODE_TAPER, 90_000), t.program()
    _refused(t, m.ERR_NOT_CONFIRMED, m.RULE_LARGE_DECREASE, 75_999, 76_000, 0,
             t.set_continuous, 75_999, 0)
    assert t.set_continuous(76_000, 0)[1] == 76_000


# -- boxed warning, 5.5, 17: never stop abruptly; 5.4, 10: overdose ---------------------------


def test_boxed_warning_stop_and_suspend_need_the_confirmation_word():
    t = kit.running(100_000)
    _run(t, HOUR)
    for word in (0, m.STOP_CONFIRM ^ 1, m.STOP_CONFIRM + 1, m.REPL_CONFIRM, 0xFFFFFFFF):
        _refused(t, m.ERR_NOT_CONFIRMED, m.RULE_STOP_REASON, 1, 0, 0, t.stop, 1, word)
        _refused(t, m.ERR_NOT_CONFIRMED, m.RULE_STOP_REASON, 2, 0, 0, t.suspend, 2, word)
    assert _run(t, HOUR) > 0, "still delivering"
    n = t.log.total
    assert t.suspend(4, m.STOP_CONFIRM) == (4, config.MIN_RATE_NL_DAY)
    assert t.mode == m.MODE_MINIMUM and t.pump.basal_nl_day == config.MIN_RATE_NL_DAY
    assert _events(t, n, m.EV_SUSPEND)[0][5] == 4
    t.resume()
    assert t.program()[:3] == (m.MODE_CONTINUOUS, 100_000, 200_000)
    n = t.log.total
    assert t.stop(1, m.STOP_CONFIRM) == (1,)
    assert t.mode == m.MODE_STOPPED and t.pump.basal_nl_day == 0
    assert _events(t, n, m.EV_STOP)[0][5] == 1, "the stop and its reason are logged"


def test_label_5_5_suspended_rate_stays_under_the_program_after_a_refill():
    # Boxed warning / 5.5 (suspend holds at a minimum rate) and DESIGN invariant 1 (never more
    # than programmed). 20 000 ng/day at 500 mcg/mL is 40 000 nL/day, under the minimum rate:
    # suspended, it keeps its own rate. A refill at 2000 mcg/mL while suspended must not make
    # that volume four times the programmed dose.
    t = kit.running(20_000)
    assert t.suspend(1, m.STOP_CONFIRM) == (1, 40_000)
    t.refill_begin()
    t.refill_commit(t.pump.volume_nl, kit.CAPACITY_NL, m.DRUG_BACLOFEN, 2000, 2000, 0)
    before = t.pump.delivered_ng()
    _run(t, DAY)
    got = t.pump.delivered_ng() - before
    assert got <= 20_000 + _step_ng(t), (
        "suspended after a refill at 2000 mcg/mL: %d ng in 24 h, the program is 20000 ng/day"
        % got)


def test_label_5_4_overdose_emergency_stop_halts_at_once_bolus_included():
    t = kit.running(100_000)
    t.bolus(500_000, 3600)
    _run(t, 600, 60)
    p = t.pump
    assert p.bolus_steps > 0, "the bolus is running"
    delivered = p.delivered_ng()
    volume = p.volume_nl
    n = t.log.total
    t.stop(2, m.STOP_CONFIRM)
    assert t.mode == m.MODE_STOPPED and p.bolus_steps == 0 and t.bolus_kind == m.BOLUS_NONE
    assert p.ms_until_next() == -1, "nothing scheduled"
    assert _run(t, DAY) == 0, "no step after the stop"
    assert p.delivered_ng() == delivered and p.volume_nl == volume
    stop = _events(t, n, m.EV_STOP)
    assert len(stop) == 1 and stop[0][5] == 2, "overdose_emergency logged: %r" % stop
    done = _events(t, n, m.EV_BOLUS_DONE)
    assert len(done) == 1 and done[0][6] > 0, "the bolus's undelivered part logged: %r" % done
    # During a taper too: the stop does not wait for it.
    k = kit.running(100_000)
    k.set_taper(50_000, 14, 0)
    k.stop(2, m.STOP_CONFIRM)
    assert _run(k, DAY) == 0 and k.mode == m.MODE_STOPPED


# -- label 2.6: taper (drug holiday over 2-4 weeks) ----------------------------------------


def test_label_2_6_taper_days_14_to_28_on_the_wire():
    for days in (14, 28):
        err, values = _wire(m.SET_TAPER, (30_000, days, 0))
        assert err == 0 and values[1] == days, (days, err)
    for days in (0, 13, 29):
        err, _ = _wire(m.SET_TAPER, (30_000, days, 0))
        assert err == m.ERR_OUT_OF_RANGE, "taper over %d days: error %d" % (days, err)


def test_label_2_6_taper_steps_down_daily_and_ends_as_continuous():
    t = kit.running(100_000)
    _refused(t, m.ERR_LIMIT, m.RULE_TAPER, 100_000, 100_000, 0, t.set_taper, 100_000, 14, 0)
    _refused(t, m.ERR_LIMIT, m.RULE_TAPER, 120_000, 100_000, 0, t.set_taper, 120_000, 14, 0)
    # 70 000 in 14 steps of 5 000: the last day's cut is 5 000 / 35 000 = 14 %.
    out = t.set_taper(30_000, 14, 0)
    assert out == (100_000, 30_000, 14, 5_000, T0 + 14 * DAY), out
    for day in range(14):
        assert t.program()[:2] == (m.MODE_TAPER, 100_000 - 5_000 * day), (day, t.program())
        _run(t, DAY - 1, 6 * HOUR)
        assert t.daily_ng == 100_000 - 5_000 * day, "a second before day %d ends" % day
        _run(t, 1)
    assert t.program()[:3] == (m.MODE_CONTINUOUS, 30_000, 60_000), t.program()
    assert t.ms_until_event() == -1
    _run(t, DAY, 6 * HOUR)
    assert t.program()[:2] == (m.MODE_CONTINUOUS, 30_000), "the target stays"


def test_label_2_6_taper_cut_over_20_percent_a_day_needs_confirmation():
    t = kit.running(100_000)
    # 99 000 in 14 steps of 7 072: the last day goes 8 072 -> 1 000, -88 %.
    _refused(t, m.ERR_NOT_CONFIRMED, m.RULE_LARGE_DECREASE, 1_000, 100_000, 0,
             t.set_taper, 1_000, 14, 0)
    assert t.set_taper(1_000, 14, m.CONFIRM_LARGE_DECREASE)[3] == 7_072


# -- therapy manager: patient boluses -----------------------------------------------------------


def test_patient_bolus_off_by_default():
    # Patient boluses (rule "therapy manager": no label section; DESIGN invariant 1).
    t = kit.running(100_000)
    assert t.patient_bolus_state()[0] == 0 and t.patient_bolus_state()[3] == 0
    _refused(t, m.ERR_INVALID_STATE, m.RULE_PATIENT_BOLUS_OFF, 0, 0, 0, t.patient_bolus)
    t.set_patient_bolus(10_000, 600, 3600, 3)
    t.set_patient_bolus(0, 600, 3600, 3)
    _refused(t, m.ERR_INVALID_STATE, m.RULE_PATIENT_BOLUS_OFF, 0, 0, 0, t.patient_bolus)


def test_patient_bolus_lockout_and_daily_maximum():
    # Patient boluses (rule "therapy manager"): lockout and a maximum in any 24 h.
    t = kit.running(100_000)
    t.set_patient_bolus(10_000, 600, 3600, 3)
    t0 = t.pump.clock_s()
    out = t.patient_bolus()
    assert out == (m.BOLUS_PATIENT, 10_000, 20_000, 600, t0 + 600), out
    _run(t, 3599)
    _refused(t, m.ERR_TOO_SOON, m.RULE_PATIENT_BOLUS_LOCKOUT, 3600, 3600, 1, t.patient_bolus)
    _run(t, 1)
    t.patient_bolus()
    _run(t, 3600)
    t.patient_bolus()
    assert t.patient_bolus_state()[4] == 3
    _run(t, 3600)
    _refused(t, m.ERR_TOO_SOON, m.RULE_PATIENT_BOLUS_MAX, 4, 3, DAY - 3 * 3600,
             t.patient_bolus)
    assert t.patient_bolus_state()[5] == t0 + DAY, "the next allowed when the first leaves"
    _run(t, DAY - 3 * 3600 - 1)
    _refused(t, m.ERR_TOO_SOON, m.RULE_PATIENT_BOLUS_MAX, 4, 3, 1, t.patient_bolus)
    _run(t, 1)
    assert t.patient_bolus()[1] == 10_000


def test_patient_bolus_settings_within_the_ceiling():
    # Patient boluses: their daily maximum fits under the hard ceiling (label 5.4, 10).
    t = kit.running(100_000, ceiling_ng=1_000_000)
    # 900 000 ng of room: 4 x 225 000 fits, 4 x 225 001 does not.
    _refused(t, m.ERR_LIMIT, m.RULE_BOLUS_CEILING, 225_001, 225_000, 0,
             t.set_patient_bolus, 225_001, 600, 3600, 4)
    assert t.set_patient_bolus(225_000, 600, 3600, 4)[:4] == (225_000, 600, 3600, 4)


# -- label 5.1: refill -------------------------------------------------------------------------


def test_label_5_1_refill_no_overfill():
    t = kit.ready(fill_nl=10_000_000)
    t.refill_begin()
    _refused(t, m.ERR_LIMIT, m.RULE_OVERFILL, kit.CAPACITY_NL + 1, kit.CAPACITY_NL, 0,
             t.refill_commit, 10_000_000, kit.CAPACITY_NL + 1, m.DRUG_BACLOFEN, 500, 500, 0x0F)
    t.refill_commit(10_000_000, kit.CAPACITY_NL, m.DRUG_BACLOFEN, 500, 500, 0)
    assert t.pump.volume_nl == kit.CAPACITY_NL


def test_label_5_1_drained_volume_mismatch_over_20_percent_needs_confirmation():
    t = kit.ready(fill_nl=10_000_000)
    assert t.refill_begin()[0] == 10_000_000, "the volume the pump expects to be drained"
    for drained in (7_999_999, 12_000_001, 0):
        _refused(t, m.ERR_NOT_CONFIRMED, m.RULE_DRAIN_MISMATCH, drained, 10_000_000, 0,
                 t.refill_commit, drained, 10_000_000, m.DRUG_BACLOFEN, 500, 500,
                 m.CONFIRM_CUSTOM_CONCENTRATION)
    for drained in (8_000_000, 12_000_000):
        t.refill_commit(drained, 10_000_000, m.DRUG_BACLOFEN, 500, 500, 0)
        t.refill_begin()
    t.refill_commit(0, 10_000_000, m.DRUG_BACLOFEN, 500, 500, m.CONFIRM_DRAIN_MISMATCH)
    # A small expected volume: within the tolerance any drained volume matches.
    s = kit.ready(fill_nl=200_000)
    s.refill_begin()
    _refused(s, m.ERR_NOT_CONFIRMED, m.RULE_DRAIN_MISMATCH, 99_999, 200_000, 0,
             s.refill_commit, 99_999, 10_000_000, m.DRUG_BACLOFEN, 500, 500, 0)
    s.refill_commit(100_000, 10_000_000, m.DRUG_BACLOFEN, 500, 500, 0)


def test_label_5_1_refill_commit_needs_an_open_session():
    t = kit.running(100_000)
    _refused(t, m.ERR_INVALID_STATE, 0, 0, 0, 0,
             t.refill_commit, 0, 10_000_000, m.DRUG_BACLOFEN, 500, 500, 0)
    _refused(t, m.ERR_INVALID_STATE, 0, 0, 0, 0, t.refill_abort)


def test_label_5_1_refill_session_times_out():
    t = kit.running(100_000)
    p = t.pump
    t.refill_begin()
    assert p.held and t.sessions() == m.SESSION_REFILL
    assert t.ms_until_event() == config.REFILL_TIMEOUT_S * 1000
    volume = p.volume_nl
    n = t.log.total
    assert _run(t, config.REFILL_TIMEOUT_S - 1, 60) == 0, "the outlet is held"
    assert t.sessions() == m.SESSION_REFILL
    _run(t, 1)
    assert t.sessions() == 0 and not p.held, "aborted after REFILL_TIMEOUT_S"
    ab = _events(t, n, m.EV_REFILL_ABORT)
    assert len(ab) == 1 and ab[0][5] == 1, "logged as timed out: %r" % ab
    assert p.volume_nl == volume and p.concentration == 500, "nothing filled"
    assert _run(t, HOUR) > 0, "delivery goes on"


# -- label 5.4, 8: the catheter access port ----------------------------------------------------


def test_label_5_4_cap_never_fills_the_reservoir():
    t = kit.running(100_000)
    p = t.pump
    volume = p.volume_nl
    assert t.cap_begin(600) == (T0 + 600,)
    assert t.sessions() == m.SESSION_CAP
    # No refill while the CAP is open, no commit without a refill session.
    _refused(t, m.ERR_INVALID_STATE, 0, 0, 0, 0, t.refill_begin)
    _refused(t, m.ERR_INVALID_STATE, 0, 0, 0, 0,
             t.refill_commit, volume, kit.CAPACITY_NL, m.DRUG_BACLOFEN, 2000, 2000, 0x0F)
    _refused(t, m.ERR_INVALID_STATE, 0, 0, 0, 0, t.cap_begin, 600)
    t.cap_end()
    assert t.sessions() == 0
    assert p.volume_nl == volume and p.concentration == 500, "the CAP changed the reservoir"
    # And no CAP while a refill session is open.
    t.refill_begin()
    _refused(t, m.ERR_INVALID_STATE, 0, 0, 0, 0, t.cap_begin, 600)
    _refused(t, m.ERR_INVALID_STATE, 0, 0, 0, 0, t.cap_end)


def test_label_5_4_cap_session_ends_by_itself():
    for duration in (60, 600, 1800):  # the wire's range; 600 is the host's default
        t = kit.running(100_000)
        volume = t.pump.volume_nl
        start = t.pump.clock_s()
        assert t.cap_begin(duration) == (start + duration,)
        assert t.ms_until_event() == duration * 1000
        n = t.log.total
        _run(t, duration - 1, 60)
        assert t.sessions() == m.SESSION_CAP, "open before %d s" % duration
        _run(t, 1)
        assert t.sessions() == 0, "closed at %d s" % duration
        end = _events(t, n, m.EV_CAP_END)
        assert len(end) == 1 and end[0][5] == 1, "logged as timed out: %r" % end
        delivered = t.pump.delivered_nl()
        assert t.pump.volume_nl == volume - delivered, "only delivery took from the reservoir"


def test_label_5_4_cap_duration_on_the_wire():
    for d in (60, 600, 1800):
        assert _wire(m.CAP_BEGIN, (d,))[0] == 0
    for d in (0, 59, 1801):
        assert _wire(m.CAP_BEGIN, (d,))[0] == m.ERR_OUT_OF_RANGE, d


# -- label 5.5, 7: reservoir alarms --------------------------------------------------------------


def test_label_5_5_low_reservoir_then_empty_alarms():
    # 1 000 000 ng/day at 500 mcg/mL: 2 mL/day, a 250 nL step every 10.8 s. 3 mL: low (2 mL)
    # after 0.5 day, dry after 1.5 days.
    t = kit.running(1_000_000, fill_nl=3_000_000)
    assert (t.low_at_s, t.dry_at_s) == (T0 + 43_200, T0 + 129_600), (t.low_at_s, t.dry_at_s)
    _run(t, 43_199)
    assert not _alarm_on(t, m.ALARM_LOW_RESERVOIR)
    _run(t, 1)
    assert t.pump.volume_nl == config.LOW_RESERVOIR_NL
    assert _alarm_on(t, m.ALARM_LOW_RESERVOIR), "low at 2 mL"
    n = t.log.total
    _run(t, 129_600 - 43_200 - 1)
    assert not _alarm_on(t, m.ALARM_RESERVOIR_EMPTY) and t.pump.volume_nl == 250
    _run(t, 1)
    assert _alarm_on(t, m.ALARM_RESERVOIR_EMPTY) and t.pump.volume_nl == 0
    assert len(_events(t, n, m.EV_RESERVOIR_EMPTY)) == 1
    assert t.alarms.tone(t.pump.clock_s()) == 2, "empty is critical"
    assert _run(t, HOUR) == 0
    t.refill_begin()
    t.refill_commit(0, 10_000_000, m.DRUG_BACLOFEN, 500, 500, 0)
    _run(t, 60)
    assert not _alarm_on(t, m.ALARM_RESERVOIR_EMPTY) and not _alarm_on(
        t, m.ALARM_LOW_RESERVOIR), "refilled: both clear"


def test_label_5_5_refill_due_alarm():
    # 2 mL/day from 20 mL: low (2 mL left) after 9 days; due 7 days (REFILL_MARGIN_S) before.
    t = kit.running(1_000_000)
    assert config.REFILL_MARGIN_S == 7 * DAY
    assert t.refill_at_s == T0 + 2 * DAY and t.low_at_s == T0 + 9 * DAY
    _run(t, 2 * DAY - 1)
    assert not _alarm_on(t, m.ALARM_REFILL_DUE)
    _run(t, 1)
    assert _alarm_on(t, m.ALARM_REFILL_DUE), "due at 2 days"
    assert t.alarms.tone(t.pump.clock_s()) == 1


# -- label 2.4: flex programs ---------------------------------------------------------------


def test_label_2_4_flex_steps_start_at_their_local_minute():
    # +20 % from 22:00 to 06:00 local time (UTC+1); the pump clock is 08:00 UTC = 09:00 local.
    t = kit.ready()
    out = t.set_flex(0, 60, ((0, 864_000), (360, 720_000), (1320, 864_000)))
    assert out[:4] == (m.MODE_FLEX, 768_000, 1_440_000, 60), out
    assert t.ms_until_event() == 13 * HOUR * 1000
    d0 = t.pump.delivered_nl()
    _run(t, 13 * HOUR - 1)
    assert t.program()[2] == 1_440_000, "day rate until 21:59:59"
    _run(t, 1)
    assert t.program()[2] == 1_728_000, "night rate (+20 %%) from 22:00: %d" % t.program()[2]
    _run(t, 8 * HOUR - 1)
    assert t.program()[2] == 1_728_000
    _run(t, 1)
    assert t.program()[2] == 1_440_000, "day rate from 06:00"
    _run(t, 3 * HOUR)
    got = t.pump.delivered_nl() - d0
    # 16 h at 60 000 nL/h and 8 h at 72 000 nL/h.
    assert 1_536_000 - 250 <= got <= 1_536_000, "a day delivers %d nL" % got


def test_label_2_4_flex_local_time_west_of_utc():
    # UTC-5: 08:00 UTC is 03:00 local; a step at 04:00 local starts in 1 h.
    t = kit.ready()
    t.set_flex(0, -300, ((0, 100_000), (240, 120_000), (1200, 100_000)))
    assert t.program()[2] == 200_000
    _run(t, HOUR - 1, 60)
    assert t.program()[2] == 200_000
    _run(t, 1)
    assert t.program()[2] == 240_000


def test_label_2_4_flex_daily_dose_is_the_integral_rounded_up():
    t = kit.ready()
    # 12 h at 100 000 and 12 h at 100 001: 100 000.5 ng/day, rounded up.
    assert t.set_flex(0, 0, ((0, 100_000), (720, 100_001)))[1] == 100_001
    u = kit.ready()
    # 1 min at 1 440 000, the rest at 1 000: 1000 + 1 439 000 / 1440 = 1999.3 -> 2000.
    assert u.set_flex(m.CONFIRM_HIGH_DOSE, 0, ((0, 1_440_000), (1, 1_000)))[1] == 2_000


def test_label_2_4_flex_steps_must_rise():
    t = kit.running(100_000)
    _refused(t, m.ERR_LIMIT, m.RULE_FLEX_STEPS, 2, m.FLEX_STEPS_MAX, 0,
             t.set_flex, 0, 0, ((720, 100_000), (0, 100_000)))
    _refused(t, m.ERR_LIMIT, m.RULE_FLEX_STEPS, 3, m.FLEX_STEPS_MAX, 0,
             t.set_flex, 0, 0, ((0, 100_000), (60, 90_000), (60, 100_000)))
    _refused(t, m.ERR_LIMIT, m.RULE_FLEX_STEPS, 0, m.FLEX_STEPS_MAX, 0, t.set_flex, 0, 0, ())


# -- reservoir dates (label 5.5: refill intervals so that it never runs dry) --------------------


def test_label_5_5_dates_of_a_continuous_program():
    # 500 000 ng/day at 500 mcg/mL = 1 mL/day from 20 mL: low (2 mL left) at 18 days, dry at
    # 20 days, refill due 7 days before low.
    t = kit.running(500_000)
    assert (t.low_at_s - T0, t.dry_at_s - T0, t.refill_at_s - T0) == (
        18 * DAY, 20 * DAY, 11 * DAY), (t.low_at_s - T0, t.dry_at_s - T0, t.refill_at_s - T0)
    # The same dose at 1000 mcg/mL from a full reservoir: twice as long.
    _run(t, HOUR)
    now = t.pump.clock_s()
    t.refill_begin()
    t.refill_commit(t.pump.volume_nl, kit.CAPACITY_NL, m.DRUG_BACLOFEN, 1000, 1000, 0)
    assert (t.low_at_s - now, t.dry_at_s - now, t.refill_at_s - now) == (
        36 * DAY, 40 * DAY, 29 * DAY), (t.low_at_s - now, t.dry_at_s - now)


def test_label_5_5_dates_of_a_flex_program():
    # UTC+1, from 09:00 local; 20 mL at 500 mcg/mL. Day rate 720 000 ng/day = 60 000 nL/h
    # (06:00-22:00), night 864 000 = 72 000 nL/h (22:00-06:00): from 09:00 to 09:00
    # 13 h x 60 000 + 8 h x 72 000 + 3 h x 60 000 = 1 536 000 nL.
    #   dry: 20 000 000 = 13 x 1 536 000 + 32 000; 32 000 nL at 60 000 nL/h = 1920 s.
    #   low (18 mL delivered): 11 x 1 536 000 + 1 104 000; 780 000 by 22:00, then
    #     324 000 at 72 000 nL/h = 4.5 h: 17.5 h = 63 000 s after 09:00.
    #   refill due: low - 7 days.
    t = kit.ready()
    t.set_flex(0, 60, ((0, 864_000), (360, 720_000), (1320, 864_000)))
    assert t.dry_at_s == T0 + 13 * DAY + 1920, t.dry_at_s - T0
    assert t.low_at_s == T0 + 11 * DAY + 63_000, t.low_at_s - T0
    assert t.refill_at_s == T0 + 4 * DAY + 63_000, t.refill_at_s - T0
    # Stopped: no dates.
    t.stop(3, m.STOP_CONFIRM)
    assert (t.low_at_s, t.refill_at_s, t.dry_at_s) == (0, 0, 0)
