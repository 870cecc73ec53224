# The mechanism (firmware/core/pump.py): a basal rate and a bolus on top of it turned into
# motor steps, the reservoir and what it holds, delivered totals, the 24 h window, uptime and
# the clock. The pump is reached through therapy_kit.bare() (a pump fresh from boot) and filled
# with Pump.fill(); the few checks that belong to the engine driving it (the rate limit, stop,
# the dry date, the refill hold) go through the Therapy as a host would.
# Board-safe: runs on CPython and on MicroPython.

from prng import lcg
from therapy_kit import (
    CAPACITY_NL,
    CLOCK0,
    DAY_MS,
    STEP_NL,
    advance,
    bare,
    ready,
    refused,
    running,
)

from firmware import config
from firmware.core.window import BUCKET_S, BUCKETS
from protocol import messages as m

# Most tests here check the arithmetic over long advances, which the loop never makes (it
# wakes at least each minute): they let every overdue step through. The cap itself is tested
# below with the configured value.
ALL_DUE = 1 << 30


def _pump(volume_nl=CAPACITY_NL, concentration=500, catch_up=ALL_DUE):
    """A pump from boot (therapy_kit.bare), its reservoir filled; no rate yet."""
    p = bare(max_catch_up=catch_up).pump
    p.fill(volume_nl, concentration)
    return p


def _next_step(p, limit_ms=DAY_MS):
    """Advance to the next step (jumping deadlines); return (ms waited, steps made)."""
    waited = 0
    while waited < limit_ms:
        w = p.ms_until_next()
        assert w >= 0, "no step scheduled"
        waited += w
        n = p.advance(w)
        if n:
            return waited, n
    raise AssertionError("no step within %d ms" % limit_ms)


# -- a pump from boot ----------------------------------------------------------------------


def test_pump_from_boot_is_empty_and_idle():
    p = bare().pump
    assert p.volume_nl == 0 and p.concentration == 0, "boots empty, no drug known"
    assert p.capacity_nl == CAPACITY_NL and p.step_nl == STEP_NL, "the plant's constants"
    assert p.basal_nl_day == 0 and p.bolus_steps == 0, "no rate, no bolus"
    assert p.ms_until_next() == -1, "no deadline"
    assert p.advance(10 * DAY_MS) == 0, "nothing to deliver"
    assert p.delivered_nl() == 0 and p.delivered_ng() == 0, "nothing delivered"
    assert p.window.total_ng() == 0 and p.bolus_left_ng() == 0, "nothing in 24 h, no bolus"
    assert not p.held and p.gap_steps == 0 and not p.just_ran_dry, "no flags"


def test_filled_pump_without_a_rate_makes_no_steps():
    p = _pump()
    assert p.volume_nl == CAPACITY_NL and p.concentration == 500, "filled"
    assert p.ms_until_next() == -1, "no rate: no deadline"
    assert p.advance(30 * DAY_MS) == 0 and p.volume_nl == CAPACITY_NL, "no rate: no steps"


# -- the basal rate ------------------------------------------------------------------------


def test_run_dose_steps_at_the_dose_interval():
    p = _pump()
    p.run_dose(400_000)  # 400 mcg/day at 500 mcg/mL = 800 uL/day = a step every 27 s
    assert p.basal_nl_day == 800_000, "800 uL/day, got %d" % p.basal_nl_day
    assert p.ms_until_next() == 27_000, "step every 27 s: %d" % p.ms_until_next()
    assert p.advance(26_999) == 0, "not before 27 s"
    assert p.advance(1) == 1, "at 27 s"
    assert p.delivered_nl() == 250 and p.volume_nl == CAPACITY_NL - 250, "one step delivered"
    p.run_dose(800_000)  # at a step boundary: a whole new interval
    assert p.basal_nl_day == 1_600_000, "new rate"
    assert p.ms_until_next() == 13_500, "new interval: %d" % p.ms_until_next()
    assert p.advance(DAY_MS) == 6400, "a day at 1.6 mL/day = 6400 steps"


def test_reprogramming_keeps_the_part_of_a_step_alreadyadvance():
    # From a stop the first step is a full interval away; from another rate the fraction of
    # a step still to run carries over (frequent changes must not deliver nothing).
    p = _pump()
    p.run_dose(400_000)
    assert p.advance(20_000) == 0, "20 of 27 s"
    p.run_dose(800_000)  # 7/27 of a step left, at 13.5 s a step: 3.5 s
    assert p.ms_until_next() == 3_500, "carried over: %d" % p.ms_until_next()
    assert p.advance(3_499) == 0 and p.advance(1) == 1, "steps at the carried deadline"
    assert p.ms_until_next() == 13_500, "then whole intervals"
    p.halt()
    p.run_dose(800_000)
    assert p.ms_until_next() == 13_500, "after a halt: a full interval"
    # Reprogrammed every minute for a day at the same dose (26181.8 ms a step): delivery
    # follows the program. Each restart rounds the carried part of a step up (by the old
    # interval's whole ms), so it may fall a little behind, never ahead: at most 3 s a day
    # at a change a minute (the loop changes the rate a few times a day at most).
    p = _pump()
    steps = 0
    for _ in range(1440):
        p.run_dose(412_500)
        steps += p.advance(60_000)
    late = 0 if steps == 3300 else p.ms_until_next()
    assert steps in (3299, 3300) and late < 3000, "%d steps, the 3300th %d ms late" % (
        steps, late)


def test_step_times_never_early_never_a_ms_late():
    # 412.5 mcg/day at 500 mcg/mL: 26181.8 ms a step. Step k falls at ceil(k * interval).
    p = _pump()
    p.run_dose(412_500)
    num = STEP_NL * 500 * 86_400
    t = 0
    for k in range(1, 3301):
        waited, n = _next_step(p)
        t += waited
        assert n == 1, "one step at a time: %d" % n
        want = (k * num + 412_500 - 1) // 412_500
        assert t == want, "step %d at %d ms, want %d" % (k, t, want)
    assert t == DAY_MS, "3300 steps in exactly a day: %d" % t


def test_no_drift_over_ten_days_of_minute_wakes():
    p = _pump()
    p.run_dose(412_500)
    assert advance(p, 10 * DAY_MS) == 33_000, "10 days: 33000 steps"
    assert p.delivered_ng() == 10 * 412_500, "the dose, exactly: %d" % p.delivered_ng()
    assert p.ms_until_next() == 26_182, "the next step a whole interval on (ceil)"


def test_run_volume_is_an_exact_volume_run_dose_an_exact_dose():
    # run_volume: nL/day whatever the drug (the minimum rate while suspended).
    for conc in (50, 500, 2000):
        p = _pump(concentration=conc)
        p.run_volume(48_000)
        assert p.basal_nl_day == 48_000, "the volume rate shown as is"
        assert p.ms_until_next() == 450_000, "192 steps a day: %d" % p.ms_until_next()
        assert advance(p, DAY_MS) == 192, "48 uL/day at %d mcg/mL" % conc
    # run_dose: the dose's exact rate; nL/day is only its rounded display. 1 mcg/day at
    # 3 mcg/mL is 333333.3 nL/day: 3 days are 4000 steps and exactly 3 mcg ...
    p = _pump(concentration=3)
    p.run_dose(1000)
    assert p.basal_nl_day == 333_333, "rounded display: %d" % p.basal_nl_day
    assert advance(p, 3 * DAY_MS) == 4000, "3 days of 1 mcg/day at 3 mcg/mL"
    assert p.delivered_ng() == 3000, "exactly the dose: %d ng" % p.delivered_ng()
    # ... while the rounded volume, run as a volume, falls short of the 4000th step.
    p = _pump(concentration=3)
    p.run_volume(333_333)
    assert advance(p, 3 * DAY_MS) == 3999, "333333 nL/day for 3 days: 999999 nL"
    # The display rounds to the nearest nL.
    for dose, conc, shown in ((1001, 3, 333_667), (412_500, 2000, 206_250),
                              (400_000, 500, 800_000), (1000, 7, 142_857)):
        p = _pump(concentration=conc)
        p.run_dose(dose)
        assert p.basal_nl_day == shown, "%d ng/day at %d: %d nL/day, want %d" % (
            dose, conc, p.basal_nl_day, shown)
    # The same dose at a stronger drug is less volume; the same volume is not.
    for conc, per_day in ((500, 3200), (1000, 1600), (2000, 800)):
        p = _pump(concentration=conc)
        p.run_dose(400_000)
        assert advance(p, DAY_MS) == per_day, "400 mcg/day at %d mcg/mL" % conc


def test_halt_stops_basal_and_bolus():
    p = _pump()
    p.run_dose(400_000)
    p.start_bolus(100, 100_000)
    assert advance(p, 30_000, 1000) == 31, "30 bolus steps and one basal step"
    p.halt()
    assert p.basal_nl_day == 0 and p.bolus_steps == 0, "nothing runs"
    assert p.ms_until_next() == -1, "no deadline"
    assert p.advance(DAY_MS) == 0, "no steps after a halt"


# -- boluses -------------------------------------------------------------------------------


def test_bolus_steps_on_top_of_basal():
    p = _pump()
    p.run_dose(400_000)  # a step every 27 s
    p.start_bolus(40, 40_000)  # 40 steps over 40 s: one a second
    assert p.bolus_steps == 40 and p.bolus_done_steps == 0, "40 to make"
    assert p.ms_until_next() == 1000, "the sooner of the two deadlines: %d" % p.ms_until_next()
    assert p.bolus_left_ng() == 40 * 125, "5000 ng to go: %d" % p.bolus_left_ng()
    made = []
    for _ in range(40):
        made.append(p.advance(1000))
    assert made[26] == 2, "second 27: a bolus step and a basal step: %r" % (made,)
    assert made.count(1) == 39 and sum(made) == 41, "one bolus step a second: %r" % (made,)
    assert p.bolus_steps == 0 and p.bolus_done_steps == 40, "all 40 made"
    assert p.delivered_steps == 41 and p.volume_nl == CAPACITY_NL - 41 * 250, "41 steps out"
    assert p.delivered_ng() == 41 * 125, "bolus and basal counted alike"
    assert p.ms_until_next() == 14_000, "then the basal alone: %d" % p.ms_until_next()
    assert advance(p, 60_000, 1000) == 2, "at 54 and 81 s"


def test_bolus_interval_is_exact_over_its_duration():
    # 7 steps over 10 s: 1428.57 ms each; the last one exactly at 10 s, never before.
    p = _pump()
    p.start_bolus(7, 10_000)
    assert p.advance(9_999) == 6 and p.bolus_steps == 1, "6 steps before 10 s"
    assert p.advance(1) == 1 and p.bolus_ended, "the 7th at 10 s"
    assert p.ms_until_next() == -1, "no basal: nothing else scheduled"


def test_bolus_ended_is_set_once():
    p = _pump()
    p.run_dose(400_000)
    p.start_bolus(3, 3000)
    flags = []
    for _ in range(6):
        p.advance(1000)
        flags.append(p.bolus_ended)
    assert flags == [False, False, True, False, False, False], "%r" % (flags,)
    # A bolus cancelled is not a bolus ended; its steps left are returned.
    p.start_bolus(10, 10_000)
    p.advance(4000)
    assert p.cancel_bolus() == 6 and p.bolus_steps == 0, "6 steps were left"
    assert not p.bolus_ended, "cancelled, not ended"
    assert p.advance(60_000) == 2 and not p.bolus_ended, "the basal goes on alone"


def test_bolus_that_falls_behind_is_owed_not_skipped():
    p = _pump(catch_up=config.MAX_CATCH_UP_STEPS)
    p.run_dose(400_000)  # a step every 27 s
    p.start_bolus(40, 40_000)  # a step a second
    got = p.advance(10_000)  # the loop stalled 10 s: 10 bolus steps due
    assert got == config.MAX_CATCH_UP_STEPS, "at most %d at once: %d" % (
        config.MAX_CATCH_UP_STEPS, got)
    assert p.gap_steps == 0, "a bolus behind is not a basal gap: %d" % p.gap_steps
    assert p.bolus_steps == 36 and p.bolus_done_steps == 4, "36 still owed"
    t = 10
    bolus = 4
    while not p.bolus_ended:
        assert t < 100, "the bolus never ended"
        before = p.bolus_done_steps
        p.advance(1000)
        t += 1
        assert p.bolus_done_steps - before <= 1, "no burst after the stall"
        bolus = p.bolus_done_steps
    assert bolus == 40 and p.bolus_steps == 0, "every step of the bolus made: %d" % bolus
    assert t == 46, "it ends 6 s late (the steps the stall held back): %d s" % t
    assert p.delivered_steps == 41, "40 bolus steps and one basal step: %d" % p.delivered_steps


def test_a_stall_longer_than_the_bolus_still_delivers_all_of_it():
    p = _pump(catch_up=config.MAX_CATCH_UP_STEPS)
    p.start_bolus(20, 20_000)
    assert p.advance(100_000) == config.MAX_CATCH_UP_STEPS, "capped"
    n = advance(p, 60_000, 1000)
    assert n == 16 and p.bolus_done_steps == 20, "the rest, one a second: %d" % n
    assert p.ms_until_next() == -1, "then nothing"


# -- the reservoir -------------------------------------------------------------------------


def test_reservoir_runs_empty_never_over_delivered():
    # 1100 nL: room for 4 steps of 250 nL (100 nL can never be delivered).
    p = _pump(1100)
    p.run_dose(400_000)
    assert p.advance(27_000 * 3) == 3, "3 steps"
    assert p.volume_nl == 350, "350 nL left: %d" % p.volume_nl
    got = p.advance(27_000 * 5)
    assert got == 1, "only one more step fits, got %d" % got
    assert p.volume_nl == 100, "100 nL left: %d" % p.volume_nl
    assert p.ms_until_next() == -1, "no deadline once empty: %d" % p.ms_until_next()
    for _ in range(10):
        assert p.advance(DAY_MS) == 0, "empty: no more steps"
    assert p.volume_nl == 100, "volume never below what is left: %d" % p.volume_nl
    assert p.delivered_nl() == 1000, "1000 nL delivered: %d" % p.delivered_nl()
    assert p.delivered_ng() == 500, "1000 nL at 500 mcg/mL = 500 ng: %d" % p.delivered_ng()


def test_reservoir_empty_in_one_long_advance():
    # Exactly 4 steps' worth and a day's sleep (3200 steps due): the count is clamped.
    p = _pump(1000)
    p.run_dose(400_000)
    got = p.advance(DAY_MS)
    assert got == 4, "clamped to the 4 steps the reservoir holds, got %d" % got
    assert p.volume_nl == 0, "empty: %d" % p.volume_nl
    assert p.advance(DAY_MS) == 0 and p.volume_nl == 0, "nothing after empty, never negative"
    assert p.ms_until_next() == -1, "empty: no deadline"
    assert p.delivered_nl() == 1000, "delivered what it held: %d" % p.delivered_nl()
    # At 20 mg/day of 1 mcg/mL (a step every 1.08 ms): the mechanism does not judge the rate.
    p = _pump(1000, 1)
    p.run_dose(20_000_000)
    assert p.advance(100) == 4, "fast: clamped to 4"
    assert p.advance(100) == 0 and p.volume_nl == 0, "fast: nothing after empty"
    # Less than one step delivers nothing.
    p = _pump(249, 1)
    p.run_dose(20_000_000)
    assert p.ms_until_next() == -1, "less than a step: no deadline"
    assert p.advance(1000) == 0 and p.volume_nl == 249, "less than a step: nothing delivered"


def test_reservoir_conservation_random_chunks():
    below = lcg(99)
    start = 1_234_567  # 4938 steps and 67 nL
    p = _pump(start, 7)
    p.run_dose(20_000_000)  # 7.56 ms per step: empties after about 37 s
    total = 0
    for i in range(3000):
        if i % 500 == 0 and not p.bolus_steps:
            p.start_bolus(1 + below(300), 1 + below(5000))
        got = p.advance(below(50))
        assert got >= 0, "negative step count"
        total += got
        assert p.volume_nl >= 0, "negative volume"
        assert p.volume_nl + p.delivered_nl() == start, "volume not conserved"
        assert p.delivered_nl() == total * STEP_NL, "delivered != steps made"
    assert p.advance(1000) == 0, "empty by now"
    assert p.volume_nl == start % STEP_NL, "ends with less than one step: %d" % p.volume_nl
    assert p.delivered_nl() == start - start % STEP_NL, "all whole steps delivered"


def test_running_dry_is_noticed_once():
    p = _pump(STEP_NL * 2)
    p.run_dose(400_000)
    assert p.advance(27_000) == 1 and not p.just_ran_dry, "one step left"
    assert p.advance(27_000) == 1 and p.just_ran_dry, "the last step empties it"
    assert p.advance(27_000) == 0 and not p.just_ran_dry, "noticed once, not again"
    assert p.ms_until_next() == -1, "dry: no deadline"


def test_bolus_and_basal_together_stop_at_the_last_step():
    p = _pump(STEP_NL * 3)
    p.run_dose(400_000)
    p.start_bolus(10, 1000)
    got = p.advance(27_000)  # a basal step and all 10 bolus steps due; 3 in the reservoir
    assert got == 3 and p.volume_nl == 0, "what the reservoir held: %d" % got
    assert p.just_ran_dry, "noticed"
    assert p.bolus_done_steps + p.bolus_steps == 10, "the bolus's books still add up"
    assert p.advance(60_000) == 0 and p.volume_nl == 0, "nothing more"
    assert p.delivered_nl() == 3 * STEP_NL, "never over-delivered"


def test_a_dry_reservoir_reports_no_gaps():
    p = _pump(STEP_NL, catch_up=config.MAX_CATCH_UP_STEPS)
    p.run_dose(12_000_000)  # fast: 24 mL/day
    p.advance(5_000)
    for _ in range(10):  # the loop's minute wakes after the reservoir ran dry
        assert p.advance(60_000) == 0 and p.gap_steps == 0, "dry is not a delivery gap"


def test_a_held_outlet_drops_due_steps():
    p = _pump(catch_up=config.MAX_CATCH_UP_STEPS)
    p.run_dose(400_000)
    assert p.advance(27_000) == 1, "delivering"
    p.held = True  # a refill session: the outlet is closed
    assert p.ms_until_next() == -1, "held: no deadline"
    assert p.advance(27_000 * 5) == 0, "held: 5 steps fall due, none made"
    assert p.gap_steps == 0 and not p.just_ran_dry, "held is not a gap"
    assert p.delivered_steps == 1 and p.volume_nl == CAPACITY_NL - STEP_NL, "nothing out"
    assert p.uptime_s == 162, "time went on: %d" % p.uptime_s
    p.held = False
    assert p.ms_until_next() == 27_000, "the schedule went on: %d" % p.ms_until_next()
    assert p.advance(27_000) == 1, "one step, not the 5 dropped ones"
    assert p.window.total_ng() == 2 * 125, "only what went out is in the window"


# -- delivered totals ----------------------------------------------------------------------


def test_delivered_ng_exact_when_integral():
    # 250 nL at 500 mcg/mL = 125 ng per step, exactly.
    p = _pump()
    p.run_dose(400_000)
    for k in range(1, 200):
        assert p.advance(27_000) == 1, "one step per interval"
        assert p.delivered_ng() == 125 * k, "%d steps: %d ng" % (k, p.delivered_ng())
        assert p.delivered_ng() * 1000 == p.delivered_nl() * 500, "ng = nL * conc / 1000"


def test_delivered_ng_carries_remainder():
    # 250 nL at 3 mcg/mL = 750 pg per step: 0.75 ng; the remainder is carried, never lost.
    p = _pump(concentration=3)
    p.run_dose(1000)
    for k in range(1, 400):
        got = p.advance(p.ms_until_next())
        assert got == 1, "one step at the deadline"
        want = k * 750 // 1000
        assert p.delivered_ng() == want, "%d steps: %d ng, want %d" % (k, p.delivered_ng(), want)
        if k % 4 == 0:
            assert p.delivered_ng() * 1000 == p.delivered_nl() * 3, "exact at %d steps" % k


def test_delivered_ng_across_refills():
    # New drug at another concentration each time: the sub-ng remainder carries across.
    p = _pump(concentration=3)
    pg = 0
    for conc, steps in ((3, 5), (7, 3), (1999, 11), (1, 1), (2000, 2), (333, 9)):
        p.fill(p.volume_nl, conc)
        p.run_dose(20_000_000)
        made = 0
        while made < steps:
            made += p.advance(p.ms_until_next())
        assert made == steps, "overshot the steps: %d" % made
        pg += steps * STEP_NL * conc
        assert p.delivered_ng() == pg // 1000, "conc %d: %d ng, want %d" % (
            conc, p.delivered_ng(), pg // 1000)
        assert p.pg_per_step() == STEP_NL * conc, "pg per step at %d" % conc


def test_delivered_dose_is_kept_in_small_parts():
    # ug + ng + pg remainders: each part below 1000 but the ug, which at 20 mg/day would take
    # 147 years to pass a MicroPython small int (2**30).
    below = lcg(7)
    p = _pump(concentration=1999)
    p.run_dose(9_000_000)  # 18 mL/day
    pg = 0
    for i in range(2000):
        if i % 300 == 0 and not p.bolus_steps:
            p.start_bolus(1 + below(200), 1000 + below(60_000))
        n = p.advance(below(20_000))
        pg += n * STEP_NL * 1999
        assert 0 <= p._pg < 1000 and 0 <= p._ng < 1000, "parts %d ng %d pg" % (p._ng, p._pg)
        assert p.delivered_ug == pg // 1_000_000, "ug %d, want %d" % (p.delivered_ug, pg)
        assert p.delivered_ng() == pg // 1000, "ng %d, want %d" % (p.delivered_ng(), pg // 1000)
    assert p.delivered_ug > 1000, "more than a mg went out: %d ug" % p.delivered_ug
    assert 20_000 * 365 * 147 < (1 << 30), "the ug counter's headroom"


# -- the 24 h window -----------------------------------------------------------------------


def _window_want(t_s, per_step_ng=125, interval_s=27):
    """What the window holds at t_s (a multiple of 60) after a step every interval_s from 0,
    advanced in 60 s chunks: each chunk's steps land in the bucket of the chunk's end, and
    the window is the current bucket and the 96 before it."""
    first = t_s // BUCKET_S - (BUCKETS - 1)  # the oldest bucket held
    if first <= 0:
        return t_s // interval_s * per_step_ng
    after = first * BUCKET_S - 60  # steps after this time ended their chunk in a held bucket
    return (t_s // interval_s - after // interval_s) * per_step_ng


def test_window_sums_the_last_24_hours():
    p = _pump()
    p.run_dose(400_000)
    for minute in range(1, 50 * 60 + 1):
        p.advance(60_000)
        t = minute * 60
        want = _window_want(t)
        got = p.window.total_ng()
        assert got == want, "at %d s: %d ng in the window, want %d" % (t, got, want)
        if t >= 86_400:
            # Never less than the last 24 h, never more than the last 24 h 15 min.
            assert 400_000 <= got <= 400_000 + 125 * (BUCKET_S + 60) // 27 + 125, (
                "%d ng at %d s" % (got, t))
    assert p.delivered_ng() == 50 * 3600 // 27 * 125, "and the total goes on"


def test_window_forgets_after_a_day_and_a_quarter_hour():
    p = _pump()
    p.run_dose(400_000)
    advance(p, 48 * 3_600_000)
    p.halt()
    advance(p, DAY_MS)  # the window's oldest bucket still holds the last minute's steps
    assert p.window.total_ng() == 3 * 125, "steps at 172746, 172773, 172800 s: %d" % (
        p.window.total_ng())
    advance(p, BUCKET_S * 1000)
    assert p.window.total_ng() == 0, "gone: %d" % p.window.total_ng()
    # And after a sleep of many days in one advance (every bucket is emptied at once).
    p.run_dose(400_000)
    advance(p, 3_600_000)
    assert p.window.total_ng() == 133 * 125, "an hour: %d" % p.window.total_ng()
    p.halt()
    p.advance(30 * DAY_MS)
    assert p.window.total_ng() == 0, "30 days later: %d" % p.window.total_ng()


def test_window_counts_boluses_and_sub_ng_remainders():
    p = _pump(concentration=3)  # 750 pg a step
    p.run_dose(1000)  # a step every 64.8 s
    p.start_bolus(100, 100_000)
    advance(p, 3_600_000)
    assert p.delivered_steps == 100 + 55, "100 bolus and 55 basal steps: %d" % (
        p.delivered_steps)
    assert p.delivered_ng() == 155 * 750 // 1000, "116 ng: %d" % p.delivered_ng()
    assert p.window.total_ng() == p.delivered_ng(), "all of it in the window: %d" % (
        p.window.total_ng())


# -- uptime and the clock ------------------------------------------------------------------


def test_uptime_s():
    p = _pump()
    assert p.uptime_s == 0, "starts at 0"
    p.advance(999)
    assert p.uptime_s == 0, "999 ms: 0 s"
    p.advance(1)
    assert p.uptime_s == 1, "1000 ms: 1 s"
    p.advance(2500)
    assert p.uptime_s == 3, "3500 ms: 3 s, got %d" % p.uptime_s
    p.advance(500)
    assert p.uptime_s == 4, "4000 ms: 4 s, got %d" % p.uptime_s
    for _ in range(5000):
        p.advance(1)
    assert p.uptime_s == 9, "5000 x 1 ms: 9 s, got %d" % p.uptime_s
    # Uptime counts whether the pump runs, holds or not.
    p.run_dose(400_000)
    p.advance(1000)
    p.held = True
    p.advance(1000)
    p.held = False
    p.halt()
    p.advance(1000)
    assert p.uptime_s == 12, "running, held and stopped all count: %d" % p.uptime_s
    # A long sleep in one go.
    p.advance(90 * DAY_MS + 999)
    assert p.uptime_s == 12 + 90 * 86_400, "90 days: %d" % p.uptime_s
    p.advance(1)
    assert p.uptime_s == 13 + 90 * 86_400, "carried ms: %d" % p.uptime_s


def test_uptime_random_chunks():
    below = lcg(5)
    p = _pump()
    total = 0
    for _ in range(2000):
        dt = below(3000)
        p.advance(dt)
        total += dt
        assert p.uptime_s == total // 1000, "after %d ms: %d s" % (total, p.uptime_s)


def test_clock_is_the_boot_clock_plus_uptime():
    p = bare(clock_s=CLOCK0).pump
    assert p.clock_s() == CLOCK0, "the RTC at boot"
    p.advance(90_500)
    assert p.clock_s() == CLOCK0 + 90, "+90 s: %d" % (p.clock_s() - CLOCK0)
    p.set_clock(m.CLOCK_MAX)
    assert p.clock_s() == m.CLOCK_MAX and p.uptime_s == 90, "set: uptime untouched"
    p.advance(500)
    assert p.clock_s() == m.CLOCK_MAX + 1, "and it runs on from there"


# -- the catch-up cap ----------------------------------------------------------------------


def test_a_loop_that_fell_behind_skips_basal_steps_rather_than_bolus():
    p = _pump(catch_up=config.MAX_CATCH_UP_STEPS)
    p.run_dose(400_000)  # a step every 27 s
    got = p.advance(27_000 * 10)  # the loop stalled for 10 steps' time
    assert got == config.MAX_CATCH_UP_STEPS, "made %d steps at once" % got
    assert p.gap_steps == 10 - config.MAX_CATCH_UP_STEPS, "skipped %d" % p.gap_steps
    assert p.advance(27_000) == 1 and p.gap_steps == 0, "then back to one step per interval"
    assert p.delivered_steps == config.MAX_CATCH_UP_STEPS + 1, "the skipped ones are gone"
    # A stall of exactly the cap is no gap.
    p = _pump(catch_up=config.MAX_CATCH_UP_STEPS)
    p.run_dose(400_000)
    assert p.advance(27_000 * config.MAX_CATCH_UP_STEPS) == config.MAX_CATCH_UP_STEPS
    assert p.gap_steps == 0, "no gap at the cap"


# -- what the engine adds to the mechanism (through the Therapy, as a host would) -----------


def test_rate_over_the_mechanism_maximum_is_refused_whole():
    t = running(400_000, ceiling_ng=20_000_000)
    p = t.pump
    before = (t.program(), p.ms_until_next(), p.basal_nl_day, t.log.total)
    e = refused(t.set_continuous, 20_000_000, m.CONFIRM_HIGH_DOSE)  # 40 mL/day: over 1 mL/h
    assert e.code == m.ERR_LIMIT and e.rule == m.RULE_PUMP_RATE, "code %d rule %d" % (
        e.code, e.rule)
    assert e.requested == 40_000_000 and e.allowed == config.MAX_RATE_NL_DAY, "%d, %d" % (
        e.requested, e.allowed)
    assert "40000000" in e.reason, "names the rate: %s" % e.reason
    after = (t.program(), p.ms_until_next(), p.basal_nl_day, t.log.total)
    assert after == before, "nothing changed, nothing logged: %r -> %r" % (before, after)
    # Exactly 24 mL/day (the first program, so no titration rule): allowed.
    t = ready(ceiling_ng=20_000_000)
    t.set_continuous(12_000_000, m.CONFIRM_HIGH_DOSE)
    assert t.pump.basal_nl_day == config.MAX_RATE_NL_DAY, "the maximum itself is allowed"
    # A flex day is judged by its fastest step.
    t = ready(ceiling_ng=20_000_000)
    e = refused(t.set_flex, m.CONFIRM_HIGH_DOSE, 0, ((0, 1_000_000), (600, 12_000_500)))
    assert e.rule == m.RULE_PUMP_RATE and e.requested == 24_001_000, "%d" % e.requested


def test_stop_needs_confirmation():
    t = running(400_000)
    p = t.pump
    for bad in (0, m.STOP_CONFIRM ^ 1, m.STOP_CONFIRM + 1, 0x504F5453, 0xFFFFFFFF):
        e = refused(t.stop, 1, bad)
        assert e.code == m.ERR_NOT_CONFIRMED and e.rule == m.RULE_STOP_REASON, "code %d" % (
            e.code)
        assert e.reason, "a refusal has a reason"
        assert t.mode == m.MODE_CONTINUOUS and t.stop_reason == 0, "refused stop: running"
    assert p.ms_until_next() == 27_000, "schedule untouched: %d" % p.ms_until_next()
    assert advance(t, 27_000) == 1, "still delivering after refused stops"
    assert p.basal_nl_day == 800_000, "rate unchanged"


def test_stop_confirmed():
    t = running(400_000)
    p = t.pump
    advance(t, 27_000 * 3)
    t.role = m.ROLE_CLINICIAN
    t.bolus(1250, 600)  # 10 steps over 10 min, cut short
    t.stop(2, m.STOP_CONFIRM)
    assert t.mode == m.MODE_STOPPED and t.stop_reason == 2, "stopped, reason kept"
    assert p.basal_nl_day == 0 and p.bolus_steps == 0, "no rate, no bolus"
    assert p.ms_until_next() == -1, "stopped: no deadline"
    assert advance(t, 30 * DAY_MS, DAY_MS) == 0, "stopped: no steps for 30 days"
    assert p.delivered_nl() == 750, "delivered before the stop only: %d" % p.delivered_nl()
    t.stop(4, m.STOP_CONFIRM)  # stopping a stopped pump is fine (and still needs the word)
    assert t.stop_reason == 4, "second stop's reason"
    refused(t.stop, 1, 0)
    # A new program clears the stop reason and restarts with a full interval.
    t.set_continuous(400_000, 0)
    assert t.mode == m.MODE_CONTINUOUS and t.stop_reason == 0, "running again"
    assert p.ms_until_next() == 27_000, "restart interval %d" % p.ms_until_next()


def test_dry_at_is_when_the_last_step_falls():
    t = ready(fill_nl=STEP_NL * 10)  # ten steps in the reservoir
    assert t.dry_at_s == 0, "no program: never"
    t.set_continuous(400_000, 0)  # a step every 27 s
    assert t.dry_at_s == CLOCK0 + 270, "the 10th step at 270 s: %d" % (t.dry_at_s - CLOCK0)
    advance(t, 100_000)
    assert t.dry_at_s == CLOCK0 + 270, "the forecast holds as time passes"
    # Halved at 100 s (8 s short of the 4th step): 7 steps left, 54 s each.
    t.set_continuous(200_000, m.CONFIRM_LARGE_DECREASE)
    forecast = t.dry_at_s - CLOCK0
    at = 100
    while t.pump.volume_nl >= STEP_NL:
        waited, n = _next_step(t.pump)
        at += waited // 1000
    assert abs(forecast - at) <= 54, "forecast %d s, last step at %d s" % (forecast, at)


def test_a_refill_session_holds_the_outlet():
    t = running(400_000)
    p = t.pump
    assert advance(t, 60_000) == 2, "delivering"
    t.role = m.ROLE_CLINICIAN
    t.refill_begin()
    assert p.held and p.ms_until_next() == -1, "held"
    assert advance(t, 600_000) == 0, "10 min of a refill session: nothing out"
    t.refill_commit(p.volume_nl, CAPACITY_NL, m.DRUG_BACLOFEN, 500, 500, 0)
    assert not p.held and p.volume_nl == CAPACITY_NL, "refilled, outlet open"
    w = p.ms_until_next()
    assert 0 < w <= 27_000, "the next step within an interval: %d" % w
    assert advance(t, 27_000) == 1, "one step: the 22 that fell due while held are dropped"
