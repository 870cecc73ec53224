# The integer dose accumulator (firmware/core/infusion.py): steps fall due at exact times,
# the remainder is carried, and nothing drifts over months. Board-safe: runs on CPython and
# on MicroPython.

from prng import lcg

from firmware.core.infusion import DAY_S, NONE, Infusion, rate_nl_per_day

STEP_NL = 250


def _ideal_steps(t_ms, dose, conc, step_nl=STEP_NL):
    """Steps a perfect pump has made by t_ms: floor(t * dose / (step_nl * conc * 86400))."""
    return t_ms * dose // (step_nl * conc * DAY_S)


def _ideal_time(k, dose, conc, step_nl=STEP_NL):
    """The first whole ms at which step k (1-based) is due: ceil(k * interval)."""
    num = k * step_nl * conc * DAY_S
    return (num + dose - 1) // dose



def test_400_mcg_per_day_steps_every_27000_ms():
    # 400 mcg/day at 500 mcg/mL = 800 uL/day = 3200 steps of 250 nL: one per 27 s exactly.
    inf = Infusion(STEP_NL)
    inf.start(400_000, 500)
    assert inf.ms_until_next() == 27000, "first step one interval after start: %d" % (
        inf.ms_until_next())
    assert inf.advance(26999) == 0, "no step before 27000 ms"
    assert inf.ms_until_next() == 1, "1 ms left, got %d" % inf.ms_until_next()
    assert inf.advance(1) == 1, "step exactly at 27000 ms"
    assert inf.ms_until_next() == 27000, "next one 27000 ms later: %d" % inf.ms_until_next()
    for k in range(2, 50):
        got = inf.advance(26999)
        assert got == 0, "step %d early: %d" % (k, got)
        got = inf.advance(1)
        assert got == 1, "step %d not at %d ms: %d" % (k, k * 27000, got)
    # A whole day: 3200 steps, exactly.
    inf.start(400_000, 500)
    n = inf.advance(DAY_S * 1000)
    assert n == 3200, "3200 steps a day, got %d" % n
    assert inf.ms_until_next() == 27000, "day boundary falls on a step: %d" % inf.ms_until_next()


def test_zero_elapsed_and_a_new_rate_mid_step():
    inf = Infusion(STEP_NL)
    inf.start(400_000, 500)
    assert inf.advance(0) == 0, "no step at t=0"
    inf.advance(13_000)
    # A new program keeps the progress: 14 of 27 s were left, so 14/27 of the new 13.5 s.
    inf.start(800_000, 500)
    assert inf.ms_until_next() == 7000, "carried over: %d" % inf.ms_until_next()
    assert inf.advance(6_999) == 0, "reprogrammed pump stepped early"
    assert inf.advance(1) == 1, "reprogrammed pump did not step at 7000 ms"
    assert inf.ms_until_next() == 13_500, "then whole new intervals: %d" % inf.ms_until_next()


def test_remainder_carried_412_5_mcg_per_day():
    # 412.5 mcg/day = 412500 ng/day at 500 mcg/mL, 250 nL/step: interval
    # 10_800_000_000 / 412_500 = 26181.8181... ms (26181 + 9/11 ms).
    dose, conc = 412_500, 500
    inf = Infusion(STEP_NL)
    inf.start(dose, conc)
    t = 0
    for k in range(1, 2001):
        due = _ideal_time(k, dose, conc)
        got = inf.advance(due - 1 - t)
        assert got == 0, "step %d fell due at %d ms, before its time %d ms (%d)" % (
            k, due - 1, due, got)
        got = inf.advance(1)
        assert got == 1, "step %d not due at its time %d ms (%d)" % (k, due, got)
        t = due
    # 11 steps take exactly 288000 ms: 11 * 26181.81.. = 288000
    assert _ideal_time(11, dose, conc) == 288_000, "arithmetic of the test itself"


def test_remainder_carried_first_step_not_early():
    # The first step of 412.5 mcg/day is ideally at 26181.8 ms: nothing may be due at 26181.
    inf = Infusion(STEP_NL)
    inf.start(412_500, 500)
    assert inf.ms_until_next() == 26182, "first step at ceil(26181.8) = 26182 ms, got %d" % (
        inf.ms_until_next())
    got = inf.advance(26181)
    assert got == 0, "a step fell due at 26181 ms, before its ideal time 26181.8 ms"


def test_remainder_carried_whole_days():
    # Over whole days the count is exact: 825000 nL/day = 3300 steps/day.
    inf = Infusion(STEP_NL)
    inf.start(412_500, 500)
    total = 0
    for day in range(1, 4):
        total += inf.advance(DAY_S * 1000)
        assert total == 3300 * day, "day %d: %d steps, want %d" % (day, total, 3300 * day)


def _run_no_drift(dose, conc, days, seed):
    inf = Infusion(STEP_NL)
    inf.start(dose, conc)
    below = lcg(seed)
    end = days * DAY_S * 1000
    t = 0
    steps = 0
    checks = 0
    while t < end:
        pick = below(8)
        if pick == 0:
            dt = inf.ms_until_next()  # what the event loop does: wake at the deadline
        elif pick == 1:
            dt = max(inf.ms_until_next() - 1, 0)  # 1 ms short of it
        elif pick == 2:
            dt = below(1000)  # short, irregular
        elif pick == 3:
            dt = 6 * 3600 * 1000 + below(3600 * 1000)  # a long sleep: many steps at once
        else:
            dt = below(3 * 3600 * 1000)
        if t + dt > end:
            dt = end - t
        steps += inf.advance(dt)
        t += dt
        ideal = _ideal_steps(t, dose, conc)
        assert steps == ideal, "t=%d ms: %d steps, ideal %d (drift %d)" % (
            t, steps, ideal, steps - ideal)
        nxt = inf.ms_until_next()
        want = _ideal_time(ideal + 1, dose, conc) - t
        assert nxt == want, "t=%d ms: next step in %d ms, ideal %d" % (t, nxt, want)
        checks += 1
    return steps, checks


def test_no_drift_over_90_days_irregular_chunks():
    # 412.5 mcg/day at 2000 mcg/mL: 206.25 uL/day, one step per 104727.27.. ms.
    steps, checks = _run_no_drift(412_500, 2000, 90, 12345)
    assert steps == 90 * 825, "90 days: %d steps" % steps
    assert checks > 1000, "too few checkpoints: %d" % checks


def test_no_drift_over_90_days_awkward_rate():
    # 1234.567 mcg/day at 1999 mcg/mL: the interval (43178400000/1234567 ms) is far from whole.
    steps, checks = _run_no_drift(1_234_567, 1999, 90, 777)
    assert steps == _ideal_steps(90 * DAY_S * 1000, 1_234_567, 1999), "90 days: %d" % steps
    assert checks > 1000, "too few checkpoints: %d" % checks


def test_ms_until_next_counts_down():
    inf = Infusion(STEP_NL)
    assert inf.ms_until_next() == NONE, "not started: NONE"
    inf.start(400_000, 500)
    for elapsed in (1000, 5000, 20000):
        before = inf.ms_until_next()
        inf.advance(elapsed)
        assert inf.ms_until_next() == before - elapsed, "counts down by %d" % elapsed
    # 26000 ms passed; 1000 ms left
    assert inf.ms_until_next() == 1000, "1000 ms left, got %d" % inf.ms_until_next()
    assert inf.advance(1000 + 27000 * 2) == 3, "three steps fell due at once"
    assert inf.ms_until_next() == 27000, "next one a full interval on"
    # Overshooting a deadline by 500 ms leaves 26500 ms to the next.
    assert inf.advance(27500) == 1, "one step"
    assert inf.ms_until_next() == 26500, "got %d" % inf.ms_until_next()


def test_stop():
    inf = Infusion(STEP_NL)
    inf.start(400_000, 500)
    inf.advance(26000)
    inf.stop()
    assert inf.ms_until_next() == NONE, "stopped: no next step"
    assert inf.ms_until_next() == -1, "NONE is -1"
    assert inf.advance(10 * DAY_S * 1000) == 0, "stopped: no steps, however long"
    assert inf.ms_until_next() == NONE, "still stopped"
    # Starting again: the first step one full interval from the start, not from the old one.
    inf.start(400_000, 500)
    assert inf.ms_until_next() == 27000, "restart: %d" % inf.ms_until_next()
    assert inf.advance(26999) == 0 and inf.advance(1) == 1, "restart steps at 27000 ms"
    inf.stop()
    inf.stop()  # stopping twice is harmless
    assert inf.advance(1) == 0, "stopped twice"


def test_extreme_programs():
    # Highest rate the protocol allows: 20000 mcg/day at 1 mcg/mL = 20 L/day: a step every
    # 1.08 ms (the pump cannot do it, but the arithmetic must hold).
    inf = Infusion(STEP_NL)
    inf.start(20_000_000, 1)
    assert inf.ms_until_next() == 2, "interval 1.08 ms: first step at ceil = 2 ms, got %d" % (
        inf.ms_until_next())
    n = inf.advance(1000)
    assert n == 925, "1000 ms / 1.08 ms = 925.9 steps: got %d" % n
    n += inf.advance(26)
    assert n == 950, "1026 ms / 1.08 ms = 950 steps: got %d" % n
    # Lowest rate: 1 mcg/day at 2000 mcg/mL = 500 nL/day: one 250 nL step per 12 h.
    inf.start(1000, 2000)
    assert inf.ms_until_next() == 43_200_000, "12 h: %d" % inf.ms_until_next()
    assert inf.advance(43_199_999) == 0, "not before 12 h"
    assert inf.advance(1) == 1, "at 12 h"
    assert inf.advance(90 * DAY_S * 1000) == 180, "90 days: 180 more steps"


def test_rate_nl_per_day():
    # nL/day = ng/day * 1000 / (mcg/mL), rounded to the nearest nL (halves up).
    cases = (
        (400_000, 500, 800_000),
        (412_500, 500, 825_000),
        (1000, 1, 1_000_000),
        (20_000_000, 2000, 10_000_000),
        (20_000_000, 1, 20_000_000_000),
        (1000, 3, 333_333),  # 333333.33 -> down
        (2000, 3, 666_667),  # 666666.67 -> up
        (1000, 16, 62_500),
        (1, 16, 63),  # 62.5 -> up (half)
        (1, 2000, 1),  # 0.5 -> up (half)
        (1, 2001, 0),  # 0.49975 -> down
        (0, 500, 0),
        (123_457, 7, 17_636_714),  # 17636714.28 -> down
        (1_234_567, 1999, 617_592),  # 617592.29 -> down
    )
    for dose, conc, want in cases:
        got = rate_nl_per_day(dose, conc)
        assert got == want, "rate(%d, %d) = %d, want %d" % (dose, conc, got, want)
    # Against exact rounding, for many values (halves rounded up).
    for dose in range(1000, 40000, 997):
        for conc in (1, 2, 3, 7, 16, 333, 500, 1999, 2000):
            exact2 = 2 * dose * 1000  # twice the numerator: round(x/c) = floor((2x + c)/(2c))
            want = (exact2 + conc) // (2 * conc)
            got = rate_nl_per_day(dose, conc)
            assert got == want, "rate(%d, %d) = %d, want %d" % (dose, conc, got, want)


def test_reprogramming_keeps_the_progress_towards_the_next_step():
    inf = Infusion(STEP_NL)
    inf.start(400_000, 500)  # a step every 27 s
    assert inf.advance(20_000) == 0, "20 s in: no step yet"
    inf.start(400_000, 500)  # the same program again
    assert inf.ms_until_next() == 7_000, "still due at 27 s: %d" % inf.ms_until_next()
    inf.start(800_000, 500)  # twice the rate: the 7/27 left of a step take half as long
    assert inf.ms_until_next() == 3_500, "half of 7 s: %d" % inf.ms_until_next()
    # Reprogrammed every 5 minutes for 3 hours, delivery still follows the program.
    inf = Infusion(STEP_NL)
    steps = 0
    for _ in range(36):
        inf.start(90_000, 2000)  # 90 mcg/day at 2000 mcg/mL: a step every 480 s
        steps += inf.advance(300_000)
    assert steps == 3 * 3600 // 480, "%d steps in 3 h, want %d" % (steps, 3 * 3600 // 480)
