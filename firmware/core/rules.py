# The label's rules (../shared/clinical-rules.md, from the baclofen intrathecal label), as the
# pump enforces them. Each check raises Refused naming its rule (protocol/messages.py RULES),
# the value asked for and the limit, or returns. Integers only: no float decides a limit.

from firmware.core.pump import Refused
from protocol import messages as m

DAY_S = 86400

# Who the patient is (label 1, 8.4): 4 years and above; pediatric under 18 (label 6.1 counts
# patients "under age 18 at enrollment" as pediatric).
MIN_AGE_YEARS = 4
ADULT_AGE_YEARS = 18
# Spasticity after a traumatic brain injury (label 1: "wait at least one year after injury
# before considering baclofen injection therapy"; clinical-rules 10). The profile carries the
# injury's date (brain_injury_s, s since 1970 UTC, as the pump clock; 0: no brain injury, or
# not the cause). check_brain_injury runs on the pump's clock (the wall clock: the label's
# year is a calendar span, not a span of pump uptime) at two times:
#   - SET_PROFILE: a profile whose injury is less than a year before the clock is refused;
#   - the pump's first therapy (the first SCREEN, program, BOLUS or PRIME, while no program
#     was ever set and no screening bolus given: therapy.Therapy._check_first_therapy): the
#     clock may have been set since the profile, so it is checked again. Once therapy began,
#     the rule has nothing more to decide (moving the clock back later stops nothing).
# Edge cases:
#   - a year is 365 days (BRAIN_INJURY_WAIT_S): from an injury before a 29 February, therapy
#     may start on the day before its anniversary;
#   - an injury at the pump's clock or after it: the injury at the clock is under a year ago
#     (TOO_SOON); one after it cannot have happened yet: OUT_OF_RANGE (a wrong date, or a
#     clock not set), allowed = the clock;
#   - a clock not set: the pump cannot tell, but an unset clock only lags the true date (the
#     Pico's RTC starts at 2021-01-01; after a power cut the clock resumes from the snapshot's,
#     snapshot.load), so it can only make the rule refuse more, never let therapy through
#     early: set the clock, and the first therapy is checked against it. A clock set ahead
#     by a host is a host's error (SET_CLOCK is a clinician's command, logged).
# A refusal names the injury's date (requested) and, for TOO_SOON, the date therapy may start
# (allowed), wait_s until then.
BRAIN_INJURY_WAIT_S = 365 * DAY_S

# Drug and concentrations (label 2.3, 3, 16).
LABEL_CONCENTRATIONS = (50, 500, 1000, 2000)
MAX_CONCENTRATION = 2000

# Screening (label 2.2): 50, then 75, then 100 mcg, each over >= 1 min, >= 24 h apart;
# 25 mcg may come first for a very small (pediatric) patient; 100 mcg is the maximum.
SCREENING_LADDER_NG = (25_000, 50_000, 75_000, 100_000)
SCREENING_MIN_S = 60
SCREENING_GAP_S = DAY_S

# Titration (label 2.5): once per 24 h, at most +30 % (spinal adult) or +15 % (cerebral, or
# pediatric); none in the first 24 h of infusion. Maintenance (label 2.6): at refill visits,
# at most +40 % (spinal) or +20 % (cerebral, pediatric).
TITRATION_PCT_SPINAL = 30
TITRATION_PCT_OTHER = 15
MAINTENANCE_PCT_SPINAL = 40
MAINTENANCE_PCT_OTHER = 20
FIRST_DAY_S = DAY_S
# The hard ceiling (the profile's, over any 24 h) is checked where the delivered past is known:
# therapy.py _check_peak, for every program, resume and bolus.
# Label 2.3: a concentration changes only through a refill commit (therapy.refill_commit):
# no other command sets one, so there is no check to make (RULE_CONCENTRATION_CHANGE).
# Label 2.6: limited experience above 1000 mcg/day: confirm it.
HIGH_DOSE_NG = 1_000_000
# Label 2.6 (decreases 10-20 %) and 5.5 (never stop abruptly): a cut of more than 20 % below
# the highest dose in force during the last 24 h needs a confirmation. (The engine keeps that
# highest dose per quarter hour, so it may remember it up to 15 min longer: it asks, never
# lets one through.)
LARGE_DECREASE_PCT = 20


def refuse(code, rule, requested, allowed, reason, wait_s=0):
    raise Refused(code, reason, rule, requested, allowed, wait_s)


def pediatric(age_years):
    return age_years < ADULT_AGE_YEARS


def check_age(age_years):
    if age_years < MIN_AGE_YEARS:
        refuse(m.ERR_LIMIT, m.RULE_PATIENT_AGE, age_years, MIN_AGE_YEARS,
               "patient under %d years: not a candidate (label 1, 8.4)" % MIN_AGE_YEARS)


def check_brain_injury(injury_s, clock_s):
    """Therapy at least a year after a traumatic brain injury (label 1). injury_s: its date
    (0: none); clock_s: the pump's clock now. (Big ints on MicroPython: commands only.)"""
    if not injury_s:
        return
    if injury_s > clock_s:
        refuse(m.ERR_OUT_OF_RANGE, m.RULE_BRAIN_INJURY_WAIT, injury_s, clock_s,
               "brain injury after the pump's clock: check the date, or set the clock")
    start = injury_s + BRAIN_INJURY_WAIT_S
    if clock_s < start:
        refuse(m.ERR_TOO_SOON, m.RULE_BRAIN_INJURY_WAIT, injury_s, start,
               "under a year since the brain injury: no therapy yet (label 1)",
               start - clock_s)


def check_concentration(concentration, confirm):
    if concentration < 1:
        refuse(m.ERR_OUT_OF_RANGE, m.RULE_CONCENTRATION, concentration, 1, "no drug at 0 mcg/mL")
    if concentration > MAX_CONCENTRATION:
        refuse(m.ERR_LIMIT, m.RULE_CONCENTRATION, concentration, MAX_CONCENTRATION,
               "%d mcg/mL over the maximum %d (label 2.3)" % (concentration, MAX_CONCENTRATION))
    if concentration not in LABEL_CONCENTRATIONS and not confirm & m.CONFIRM_CUSTOM_CONCENTRATION:
        refuse(m.ERR_NOT_CONFIRMED, m.RULE_CUSTOM_CONCENTRATION, concentration, 0,
               "%d mcg/mL is a custom dilution: confirm it (label 2.3)" % concentration)


def step_pct(origin, age_years, maintenance):
    """The largest increase, in percent of the dose in force, that one change may make."""
    small = origin != m.ORIGIN_SPINAL or pediatric(age_years)
    if maintenance:
        return MAINTENANCE_PCT_OTHER if small else MAINTENANCE_PCT_SPINAL
    return TITRATION_PCT_OTHER if small else TITRATION_PCT_SPINAL


def check_high_dose(new_daily, confirm):
    if new_daily > HIGH_DOSE_NG and not confirm & m.CONFIRM_HIGH_DOSE:
        refuse(m.ERR_NOT_CONFIRMED, m.RULE_HIGH_DOSE, new_daily, HIGH_DOSE_NG,
               "above 1000 mcg/day: confirm the high dose (label 2.6)")


def check_increase(new_daily, in_force, phase, pct, now, infusion_start_s, last_increase_s,
                   in_refill):
    """An increase over the dose in force (in maintenance: the dose when the refill visit
    began): when it may come and how large it may be. Times are the pump's monotonic
    seconds; last_increase_s is None if there was none."""
    if now - infusion_start_s < FIRST_DAY_S:
        refuse(m.ERR_TOO_SOON, m.RULE_FIRST_24H, new_daily, in_force,
               "no increase in the first 24 h of infusion (label 2.5)",
               FIRST_DAY_S - (now - infusion_start_s))
    allowed = in_force * (100 + pct) // 100
    if phase == m.PHASE_MAINTENANCE:
        if not in_refill:
            refuse(m.ERR_INVALID_STATE, m.RULE_MAINTENANCE_AT_REFILL, new_daily, in_force,
                   "maintenance: increases only at a refill session (label 2.6)")
        if new_daily > allowed:
            refuse(m.ERR_LIMIT, m.RULE_MAINTENANCE_STEP, new_daily, allowed,
                   "more than +%d %% at a refill (label 2.6)" % pct)
        return
    if last_increase_s is not None and now - last_increase_s < DAY_S:
        refuse(m.ERR_TOO_SOON, m.RULE_TITRATION_INTERVAL, new_daily, in_force,
               "titration: one increase per 24 h (label 2.5)", DAY_S - (now - last_increase_s))
    if new_daily > allowed:
        refuse(m.ERR_LIMIT, m.RULE_TITRATION_STEP, new_daily, allowed,
               "more than +%d %% in one titration step (label 2.5)" % pct)


def check_decrease(new_daily, highest_24h, confirm):
    # Exact: new < 80 % of highest, compared in whole numbers (a threshold rounded down would
    # let a cut of just over 20 % through). The refusal names the least dose allowed
    # unconfirmed: 80 % rounded up.
    pct = 100 - LARGE_DECREASE_PCT
    if new_daily * 100 < highest_24h * pct and not confirm & m.CONFIRM_LARGE_DECREASE:
        floor = (highest_24h * pct + 99) // 100
        refuse(m.ERR_NOT_CONFIRMED, m.RULE_LARGE_DECREASE, new_daily, floor,
               "a cut of more than %d %% within 24 h: confirm it (label 2.6, 5.5)"
               % LARGE_DECREASE_PCT)


def check_starting_dose(new_daily, screening_ng):
    """The first program after screening: at most twice the screening dose (label 2.5)."""
    if screening_ng and new_daily > 2 * screening_ng:
        refuse(m.ERR_LIMIT, m.RULE_STARTING_DOSE, new_daily, 2 * screening_ng,
               "starting dose over twice the screening dose (label 2.5)")


def screening_next(given):
    """The largest screening dose allowed next, given the doses so far (ng); 0: no more."""
    if not given:
        return SCREENING_LADDER_NG[1]
    last = given[-1]
    for i in range(len(SCREENING_LADDER_NG) - 1):
        if SCREENING_LADDER_NG[i] == last:
            return SCREENING_LADDER_NG[i + 1]
    return 0


def check_screening(dose_ng, duration_s, given, last_s, now, age_years):
    if duration_s < SCREENING_MIN_S:
        refuse(m.ERR_LIMIT, m.RULE_SCREENING_DURATION, duration_s, SCREENING_MIN_S,
               "a screening bolus takes at least 1 minute (label 2.2)")
    top = SCREENING_LADDER_NG[-1]
    if dose_ng > top:
        refuse(m.ERR_LIMIT, m.RULE_SCREENING_DOSE, dose_ng, top,
               "100 mcg is the maximum screening dose (label 2.2)")
    nxt = screening_next(given)
    small_first = not given and pediatric(age_years) and dose_ng == SCREENING_LADDER_NG[0]
    if not small_first and (dose_ng not in SCREENING_LADDER_NG[1:] or dose_ng > nxt):
        refuse(m.ERR_LIMIT, m.RULE_SCREENING_DOSE, dose_ng, nxt,
               "screening goes 50, 75, 100 mcg (25 first for a child); next at most %d ng"
               % nxt)
    if given and now - last_s < SCREENING_GAP_S:
        refuse(m.ERR_TOO_SOON, m.RULE_SCREENING_INTERVAL, dose_ng, nxt,
               "24 h between screening boluses (label 2.2)", SCREENING_GAP_S - (now - last_s))
