# The pump's state (firmware/core/pump.py): programs, confirmed stops, the reservoir, the
# delivered totals and uptime. Board-safe: runs on CPython and on MicroPython.

from prng import lcg

from firmware import config
from firmware.core.pump import Pump, Refused
from protocol import messages as m

STEP_NL = 250
FULL_NL = 20_000_000


# For tests that empty a reservoir in seconds: no mechanism could, but the arithmetic must.
UNLIMITED_NL_DAY = 1 << 40


# Most tests here check the arithmetic over long advances, which the loop never makes (it
# wakes at least each minute): they let every overdue step through. The cap itself is
# tested below with the configured value.
ALL_DUE = 1 << 30


def _pump(volume_nl=FULL_NL, max_rate=config.MAX_RATE_NL_DAY, catch_up=ALL_DUE):
    return Pump(STEP_NL, FULL_NL, volume_nl, max_rate, 0, catch_up)



def test_new_pump_is_stopped():
    p = _pump()
    assert p.mode == m.MODE_STOPPED, "a new pump is stopped"
    assert p.rate_nl_day() == 0, "stopped: rate 0"
    assert p.ms_until_next() == -1, "stopped: no deadline"
    assert p.advance(10 * 86_400_000) == 0, "stopped: no steps"
    assert p.delivered_nl() == 0 and p.delivered_ng() == 0, "nothing delivered"
    assert p.volume_nl == FULL_NL, "reservoir untouched: %d" % p.volume_nl
    assert p.reservoir_nl == FULL_NL, "capacity"


def test_set_continuous():
    p = _pump()
    p.set_continuous(400_000, 500)
    assert p.mode == m.MODE_CONTINUOUS, "running"
    assert p.daily_dose_ng == 400_000 and p.concentration == 500, "program stored"
    assert p.rate_nl_day() == 800_000, "800 uL/day, got %d" % p.rate_nl_day()
    assert p.ms_until_next() == 27_000, "step every 27 s: %d" % p.ms_until_next()
    assert p.advance(26_999) == 0, "not before 27 s"
    assert p.advance(1) == 1, "at 27 s"
    assert p.delivered_nl() == 250 and p.volume_nl == FULL_NL - 250, "one step delivered"
    # A new program takes effect at once, counting a full new interval.
    p.set_continuous(800_000, 500)
    assert p.rate_nl_day() == 1_600_000, "new rate"
    assert p.ms_until_next() == 13_500, "new interval: %d" % p.ms_until_next()
    assert p.advance(86_400_000) == 6400, "a day at 1.6 mL/day = 6400 steps"


def test_stop_needs_confirmation():
    p = _pump()
    p.set_continuous(400_000, 500)
    for bad in (0, m.STOP_CONFIRM ^ 1, m.STOP_CONFIRM + 1, 0x504F5453, 0xFFFFFFFF):
        try:
            p.stop(1, bad)
            raise AssertionError("stop with confirm 0x%08X was not refused" % bad)
        except Refused as e:
            assert e.code == m.ERR_NOT_CONFIRMED, "code %d" % e.code
            assert e.reason, "a refusal has a reason"
        assert p.mode == m.MODE_CONTINUOUS, "refused stop: still running"
        assert p.stop_reason == 0, "refused stop: no stop reason"
    # Delivery went on, on its old schedule.
    assert p.ms_until_next() == 27_000, "schedule untouched: %d" % p.ms_until_next()
    assert p.advance(27_000) == 1, "still delivering after refused stops"
    assert p.rate_nl_day() == 800_000, "rate unchanged"


def test_stop_confirmed():
    p = _pump()
    p.set_continuous(400_000, 500)
    p.advance(27_000 * 3)
    p.stop(2, m.STOP_CONFIRM)
    assert p.mode == m.MODE_STOPPED, "stopped"
    assert p.stop_reason == 2, "reason kept: %d" % p.stop_reason
    assert p.rate_nl_day() == 0, "stopped: rate 0"
    assert p.ms_until_next() == -1, "stopped: no deadline"
    assert p.advance(30 * 86_400_000) == 0, "stopped: no steps for 30 days"
    assert p.delivered_nl() == 750, "delivered before the stop only: %d" % p.delivered_nl()
    # Stopping a stopped pump is fine (and still needs the word).
    p.stop(4, m.STOP_CONFIRM)
    assert p.stop_reason == 4, "second stop's reason"
    try:
        p.stop(1, 0)
        raise AssertionError("unconfirmed stop of a stopped pump accepted")
    except Refused as e:
        assert e.code == m.ERR_NOT_CONFIRMED, "code %d" % e.code
    # A new program clears the stop reason and restarts with a full interval.
    p.set_continuous(400_000, 500)
    assert p.mode == m.MODE_CONTINUOUS and p.stop_reason == 0, "running again"
    assert p.ms_until_next() == 27_000, "restart interval %d" % p.ms_until_next()


def test_reservoir_runs_empty_never_over_delivered():
    # 1100 nL: room for 4 steps of 250 nL (100 nL can never be delivered).
    p = _pump(1100)
    p.set_continuous(400_000, 500)
    assert p.advance(27_000 * 3) == 3, "3 steps"
    assert p.volume_nl == 350, "350 nL left: %d" % p.volume_nl
    got = p.advance(27_000 * 5)
    assert got == 1, "only one more step fits, got %d" % got
    assert p.volume_nl == 100, "100 nL left: %d" % p.volume_nl
    assert p.ms_until_next() == -1, "no deadline once empty: %d" % p.ms_until_next()
    for _ in range(10):
        assert p.advance(86_400_000) == 0, "empty: no more steps"
    assert p.volume_nl == 100, "volume never below what is left: %d" % p.volume_nl
    assert p.delivered_nl() == 1000, "1000 nL delivered: %d" % p.delivered_nl()
    assert p.delivered_ng() == 500, "1000 nL at 500 mcg/mL = 500 ng: %d" % p.delivered_ng()


def test_reservoir_empty_in_one_long_advance():
    # Exactly 4 steps' worth and a day's sleep (3200 steps due): the count is clamped.
    p = _pump(1000)
    p.set_continuous(400_000, 500)
    got = p.advance(86_400_000)
    assert got == 4, "clamped to the 4 steps the reservoir holds, got %d" % got
    assert p.volume_nl == 0, "empty: %d" % p.volume_nl
    assert p.advance(86_400_000) == 0, "nothing after empty"
    assert p.volume_nl == 0, "never negative: %d" % p.volume_nl
    assert p.ms_until_next() == -1, "empty: no deadline"
    assert p.delivered_nl() == 1000, "delivered what it held: %d" % p.delivered_nl()
    # At the fastest rate the protocol allows (a step every 1.08 ms).
    p = _pump(1000, UNLIMITED_NL_DAY)
    p.set_continuous(20_000_000, 1)
    got = p.advance(100)
    assert got == 4, "fast: clamped to 4, got %d" % got
    assert p.advance(100) == 0 and p.volume_nl == 0, "fast: nothing after empty"
    # An empty pump (less than one step) delivers nothing.
    p = _pump(249, UNLIMITED_NL_DAY)
    p.set_continuous(20_000_000, 1)
    assert p.ms_until_next() == -1, "less than a step: no deadline"
    assert p.advance(1000) == 0 and p.volume_nl == 249, "less than a step: nothing delivered"


def test_reservoir_conservation_random_chunks():
    below = lcg(99)
    start = 1_234_567  # 4938 steps and 67 nL
    p = _pump(start, UNLIMITED_NL_DAY)
    p.set_continuous(20_000_000, 7)  # 7.56 ms per step: empties after about 37 s
    total = 0
    for _ in range(3000):
        got = p.advance(below(50))
        assert got >= 0, "negative step count"
        total += got
        assert p.volume_nl >= 0, "negative volume"
        assert p.volume_nl + p.delivered_nl() == start, "volume not conserved"
        assert p.delivered_nl() == total * STEP_NL, "delivered != steps made"
    assert p.advance(1000) == 0, "empty by now"
    assert p.volume_nl == start % STEP_NL, "ends with less than one step: %d" % p.volume_nl
    assert p.delivered_nl() == start - start % STEP_NL, "all whole steps delivered"


def test_delivered_ng_exact_when_integral():
    # 250 nL at 500 mcg/mL = 125 ng per step, exactly.
    p = _pump()
    p.set_continuous(400_000, 500)
    for k in range(1, 200):
        assert p.advance(27_000) == 1, "one step per interval"
        assert p.delivered_ng() == 125 * k, "%d steps: %d ng" % (k, p.delivered_ng())
        assert p.delivered_ng() * 1000 == p.delivered_nl() * 500, "ng = nL * conc / 1000"


def test_delivered_ng_carries_remainder():
    # 250 nL at 3 mcg/mL = 750 pg per step: 0.75 ng; the remainder is carried, never lost.
    p = _pump()
    p.set_continuous(1000, 3)
    for k in range(1, 400):
        got = p.advance(p.ms_until_next())
        assert got == 1, "one step at the deadline"
        want = k * 750 // 1000
        assert p.delivered_ng() == want, "%d steps: %d ng, want %d" % (k, p.delivered_ng(), want)
        if k % 4 == 0:
            assert p.delivered_ng() == p.delivered_nl() * 3 // 1000, "integral at 4 steps"
            assert p.delivered_ng() * 1000 == p.delivered_nl() * 3, "exact at %d steps" % k


def test_delivered_ng_across_concentrations():
    # A concentration change mid-way: the sub-ng remainder carries across programs.
    p = _pump(FULL_NL, UNLIMITED_NL_DAY)
    pg = 0
    for conc, steps in ((3, 5), (7, 3), (1999, 11), (1, 1), (2000, 2), (333, 9)):
        p.set_continuous(20_000_000, conc)
        made = 0
        while made < steps:
            made += p.advance(p.ms_until_next())
        assert made == steps, "overshot the steps: %d" % made
        pg += steps * STEP_NL * conc
        assert p.delivered_ng() == pg // 1000, "conc %d: %d ng, want %d" % (
            conc, p.delivered_ng(), pg // 1000)


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
    # Uptime counts whether the pump runs or not.
    p.set_continuous(400_000, 500)
    p.advance(1000)
    p.stop(1, m.STOP_CONFIRM)
    p.advance(1000)
    assert p.uptime_s == 11, "running and stopped both count: %d" % p.uptime_s
    # A long sleep in one go.
    p.advance(90 * 86_400_000 + 999)
    assert p.uptime_s == 11 + 90 * 86_400, "90 days: %d" % p.uptime_s
    p.advance(1)
    assert p.uptime_s == 12 + 90 * 86_400, "carried ms: %d" % p.uptime_s


def test_uptime_random_chunks():
    below = lcg(5)
    p = _pump()
    total = 0
    for _ in range(2000):
        dt = below(3000)
        p.advance(dt)
        total += dt
        assert p.uptime_s == total // 1000, "after %d ms: %d s" % (total, p.uptime_s)


def test_rate_over_the_mechanism_maximum_is_refused_whole():
    p = _pump()
    p.set_continuous(400_000, 500)
    before = p.ms_until_next()
    try:
        p.set_continuous(20_000_000, 500)  # 40 mL/day: beyond 1 mL/h
    except Refused as e:
        assert e.code == m.ERR_OUT_OF_RANGE, "code %d" % e.code
        assert "24000000" in e.reason, "names the maximum: %s" % e.reason
    else:
        raise AssertionError("a rate over the maximum was accepted")
    assert (p.daily_dose_ng, p.concentration) == (400_000, 500), "old program still in force"
    assert p.ms_until_next() == before, "the motor's schedule untouched"
    p.set_continuous(12_000_000, 500)  # exactly 24 mL/day: allowed
    assert p.rate_nl_day() == config.MAX_RATE_NL_DAY, "the maximum itself is allowed"


def test_a_loop_that_fell_behind_skips_steps_rather_than_bolus():
    p = _pump(catch_up=config.MAX_CATCH_UP_STEPS)
    p.set_continuous(400_000, 500)  # a step every 27 s
    got = p.advance(27_000 * 10)  # the loop stalled for 10 steps' time
    assert got == config.MAX_CATCH_UP_STEPS, "made %d steps at once" % got
    assert p.gap_steps == 10 - config.MAX_CATCH_UP_STEPS, "skipped %d" % p.gap_steps
    assert p.advance(27_000) == 1 and p.gap_steps == 0, "then back to one step per interval"


def test_running_dry_is_noticed_once():
    p = _pump(STEP_NL * 2)
    p.set_continuous(400_000, 500)
    assert p.advance(27_000) == 1 and not p.just_ran_dry, "one step left"
    assert p.advance(27_000) == 1 and p.just_ran_dry, "the last step empties it"
    assert p.advance(27_000) == 0 and not p.just_ran_dry, "noticed once, not again"


def test_dry_at_is_when_the_last_step_falls():
    p = _pump(STEP_NL * 10)  # ten steps left
    assert p.dry_at_s() == 0, "stopped: never"
    p.set_continuous(400_000, 500)  # a step every 27 s
    assert p.dry_at_s() == 270, "the 10th step at 270 s: %d" % p.dry_at_s()
    p.advance(100_000)
    assert p.dry_at_s() == 270, "the forecast holds as time passes: %d" % p.dry_at_s()
    p.set_continuous(800_000, 500)  # twice the rate from t=100 s: 7 steps left, 13.5 s each
    want = 100 + (108_000 - 100_000) // 2000 + 6 * 135 // 10
    assert abs(p.dry_at_s() - want) <= 1, "%d, want about %d" % (p.dry_at_s(), want)


def test_a_dry_reservoir_reports_no_gaps():
    p = _pump(STEP_NL, catch_up=config.MAX_CATCH_UP_STEPS)
    p.set_continuous(12_000_000, 500)  # fast: 24 mL/day
    p.advance(5_000)
    for _ in range(10):  # the loop's minute wakes after the reservoir ran dry
        assert p.advance(60_000) == 0 and p.gap_steps == 0, "dry is not a delivery gap"
