# The therapy engine's small parts: the flex day (firmware/core/schedule.py), the 24 h dose
# window (firmware/core/window.py) and the alarms with their tones and event queue
# (firmware/core/alarms.py). Board-safe: runs on CPython and on the MicroPython VM.

from prng import lcg

from firmware.core import schedule
from firmware.core.alarms import QUEUE, Alarms
from firmware.core.window import BUCKET_S, BUCKETS, DoseWindow
from protocol import messages as m

DAY = 86400
NIGHT = ((0, 864_000), (360, 720_000), (1320, 864_000))  # +20 % from 22:00 to 06:00


def _random_steps(below, low=1000):
    """1 to 6 steps at distinct rising minutes, doses from `low` to 2 000 000 ng/day."""
    n = 1 + below(6)
    starts = []
    while len(starts) < n:
        s = below(1440)
        if s not in starts:
            starts.append(s)
    starts.sort()
    return tuple((s, low + below(2_000_000 - low)) for s in starts)


def _units_by(steps, sod, secs):
    """Independent of schedule.py: what the day's steps deliver in `secs` seconds from second
    `sod` of the day, in units of 1/86400 pg (a step at D ng/day gives D * 1000 a second)."""
    n = len(steps)
    total = 0
    s = sod
    left = secs
    while left > 0:
        cur = -1
        for k in range(n):
            if steps[k][0] * 60 <= s:
                cur = k
        if cur < 0:  # before the first start: the last step, from the day before
            dose = steps[n - 1][1]
            end = steps[0][0] * 60
        else:
            dose = steps[cur][1]
            end = steps[cur + 1][0] * 60 if cur + 1 < n else steps[0][0] * 60 + DAY
        run = end - s
        if run > left:
            run = left
        total += dose * 1000 * run
        left -= run
        s = (s + run) % DAY
    return total


# -- schedule.valid ---------------------------------------------------------------------------


def test_valid_accepts_rising_steps():
    assert schedule.valid(((0, 1000),)) == ""
    assert schedule.valid(((600, 1000),)) == "", "one step may start at any minute"
    assert schedule.valid(NIGHT) == ""
    assert schedule.valid(((0, 1000), (1, 1000), (1439, 5000))) == ""


def test_valid_refuses_empty_and_unordered_steps():
    assert schedule.valid(()) == "no steps"
    why = schedule.valid(((0, 1000), (0, 2000)))
    assert why == "step 2 starts at minute 0, not after 0", why
    why = schedule.valid(((0, 1000), (720, 1000), (360, 1000)))
    assert why == "step 3 starts at minute 360, not after 720", why


# -- schedule.daily_dose ------------------------------------------------------------------------


def test_daily_dose_of_one_step_is_its_dose():
    assert schedule.daily_dose(((0, 123_456),)) == 123_456
    assert schedule.daily_dose(((777, 123_456),)) == 123_456, "wraps a whole day"


def test_daily_dose_is_the_integral_of_the_steps():
    # 16 h at 720 000 and 8 h at 864 000: 768 000 exactly.
    assert schedule.daily_dose(NIGHT) == 768_000
    # The first step need not start at midnight: the last one wraps to it.
    assert schedule.daily_dose(((360, 720_000), (1320, 864_000))) == 768_000
    assert schedule.daily_dose(((0, 1440), (720, 2880))) == 2160, "exact: not rounded up"


def test_daily_dose_rounds_up():
    # 12 h at 100 000 and 12 h at 100 001: 100 000.5 -> 100 001.
    assert schedule.daily_dose(((0, 100_000), (720, 100_001))) == 100_001
    # 1 min at 1 440 000, 1439 at 1000: 1999.3 -> 2000.
    assert schedule.daily_dose(((0, 1_440_000), (1, 1000))) == 2000


def test_daily_dose_never_under_the_integral():
    below = lcg(2024)
    for _ in range(200):
        steps = _random_steps(below)
        d = schedule.daily_dose(steps)
        exact = _units_by(steps, 0, DAY) // 1000  # sum(dose * seconds): the day's dose * 86400
        assert d * DAY >= exact, "%r: %d under %d/86400" % (steps, d, exact)
        assert (d - 1) * DAY < exact, "%r: %d more than rounded up" % (steps, d)


# -- schedule.local_s, index_at, s_until_change --------------------------------------------------


def test_local_s():
    assert schedule.local_s(0, 0) == 0
    assert schedule.local_s(0, 60) == 3600
    assert schedule.local_s(0, -60) == DAY - 3600
    assert schedule.local_s(1_800_000_000, 60) == 9 * 3600, "08:00 UTC is 09:00 at UTC+1"
    assert schedule.local_s(1_800_000_000, -300) == 3 * 3600
    assert schedule.local_s(1_800_000_000 + 16 * 3600, 840) == 14 * 3600, "UTC+14"


def test_index_at_boundaries():
    steps = ((360, 1000), (1320, 2000))
    assert schedule.index_at(steps, 0) == 1, "before the first start: the last, from the day before"
    assert schedule.index_at(steps, 360 * 60 - 1) == 1
    assert schedule.index_at(steps, 360 * 60) == 0, "a step starts at its minute exactly"
    assert schedule.index_at(steps, 1320 * 60 - 1) == 0
    assert schedule.index_at(steps, 1320 * 60) == 1
    assert schedule.index_at(steps, DAY - 1) == 1
    assert schedule.index_at(((0, 1000),), 12345) == 0
    assert schedule.index_at(NIGHT, 0) == 0


def test_s_until_change_boundaries():
    assert schedule.s_until_change(((0, 1000),), 0) == DAY, "one step: never sooner than a day"
    assert schedule.s_until_change(((600, 1000),), 5) == DAY
    assert schedule.s_until_change(NIGHT, 0) == 6 * 3600
    assert schedule.s_until_change(NIGHT, 6 * 3600 - 1) == 1
    assert schedule.s_until_change(NIGHT, 6 * 3600) == 16 * 3600
    assert schedule.s_until_change(NIGHT, 22 * 3600) == 2 * 3600, "past midnight to 00:00"
    assert schedule.s_until_change(NIGHT, DAY - 1) == 1
    steps = ((360, 1000), (1320, 2000))
    assert schedule.s_until_change(steps, 22 * 3600) == 8 * 3600, "wraps to 06:00"
    assert schedule.s_until_change(steps, 3600) == 5 * 3600


def test_s_until_change_lands_on_the_next_step():
    below = lcg(77)
    for _ in range(200):
        steps = _random_steps(below)
        if len(steps) < 2:
            continue
        sod = below(DAY)
        wait = schedule.s_until_change(steps, sod)
        assert 0 < wait <= DAY, (steps, sod, wait)
        i = schedule.index_at(steps, sod)
        j = schedule.index_at(steps, (sod + wait) % DAY)
        assert j == (i + 1) % len(steps), "%r from %d: %d s to step %d" % (steps, sod, wait, j)
        assert schedule.index_at(steps, (sod + wait - 1) % DAY) == i, "a second earlier"
        assert (sod + wait) % 60 == 0, "a step starts on its minute"


# -- schedule.s_to_deliver ----------------------------------------------------------------------


def test_s_to_deliver_nothing():
    assert schedule.s_to_deliver((), 0, 1000, 500) == 0
    assert schedule.s_to_deliver(((0, 1000),), 0, 1000, 0) == 0
    assert schedule.s_to_deliver(((0, 1000),), 0, 0, 500) == 0


def test_s_to_deliver_continuous():
    # 1 000 000 ng/day at 500 mcg/mL: 2 mL a day.
    c = ((0, 1_000_000),)
    assert schedule.s_to_deliver(c, 0, 2_000_000, 500) == DAY
    assert schedule.s_to_deliver(c, 12345, 2_000_000, 500) == DAY
    assert schedule.s_to_deliver(c, 0, 20_000_000, 500) == 10 * DAY
    assert schedule.s_to_deliver(c, 0, 1, 500) == 1, "rounded up to a whole second"
    assert schedule.s_to_deliver(c, 0, 2_000_001, 500) == DAY + 1
    assert schedule.s_to_deliver(c, 0, 2_000_000, 1000) == 2 * DAY, "twice as strong"


def test_s_to_deliver_flex_by_hand():
    # From 09:00 (UTC+1 at 08:00 UTC), 500 mcg/mL: 60 000 nL/h by day, 72 000 at night;
    # 1 536 000 nL from 09:00 to 09:00 (see test_rules.py for the arithmetic).
    sod = 9 * 3600
    assert schedule.s_to_deliver(NIGHT, sod, 20_000_000, 500) == 13 * DAY + 1920
    assert schedule.s_to_deliver(NIGHT, sod, 18_000_000, 500) == 11 * DAY + 63_000
    assert schedule.s_to_deliver(NIGHT, sod, 780_000, 500) == 13 * 3600, "09:00 to 22:00"
    assert schedule.s_to_deliver(NIGHT, sod, 780_001, 500) == 13 * 3600 + 1


def test_s_to_deliver_is_the_first_second_it_is_all_out():
    below = lcg(31337)
    for _ in range(60):
        steps = _random_steps(below, 100_000)  # at most 40 days of 2 mL: a short walk
        sod = below(DAY)
        conc = (50, 500, 1000, 2000, 750)[below(5)]
        volume = 1 + below(2_000_000)
        s = schedule.s_to_deliver(steps, sod, volume, conc)
        need = volume * conc * DAY  # the same units: 1/86400 pg
        assert s > 0
        assert _units_by(steps, sod, s) >= need, "%r %d %d %d: not all out at %d s" % (
            steps, sod, volume, conc, s)
        assert _units_by(steps, sod, s - 1) < need, "%r %d %d %d: all out before %d s" % (
            steps, sod, volume, conc, s)


# -- window.DoseWindow ------------------------------------------------------------------------


def test_window_starts_empty_and_carries_pg():
    w = DoseWindow()
    assert w.total_ng() == 0
    w.add_pg(999)
    assert w.total_ng() == 0 and w.pg == 999
    w.add_pg(1)
    assert w.total_ng() == 1 and w.pg == 0
    w.add_pg(2500)
    assert w.total_ng() == 3 and w.pg == 500
    w.roll(BUCKET_S)
    w.add_pg(500)
    assert w.total_ng() == 4 and w.pg == 0, "the remainder carries into the next bucket"


def test_window_keeps_a_dose_for_24_h_at_least_and_24_h_15_min_at_most():
    for at in (0, 1, BUCKET_S - 1, BUCKET_S, 5 * BUCKET_S + 450):
        w = DoseWindow()
        w.roll(at)
        w.add_pg(7_000)
        w.roll(at + DAY - 1)
        assert w.total_ng() == 7, "%d s: dropped before 24 h" % at
        w.roll(at + DAY)
        start = at - at % BUCKET_S
        w.roll(start + (BUCKETS - 1) * BUCKET_S + BUCKET_S - 1)
        assert w.total_ng() == 7, "%d s: kept to the end of its bucket + 24 h" % at
        w.roll(start + BUCKETS * BUCKET_S)
        assert w.total_ng() == 0, "%d s: dropped after 24 h 15 min" % at


def test_window_buckets_roll_one_by_one():
    w = DoseWindow()
    for b in range(3 * BUCKETS):
        w.roll(b * BUCKET_S + 7)
        w.add_pg(1000 * (b % 5 + 1))
        lo = b - BUCKETS + 1 if b >= BUCKETS else 0
        want = 0
        for k in range(lo, b + 1):
            want += k % 5 + 1
        assert w.total_ng() == want, "bucket %d: %d, want %d" % (b, w.total_ng(), want)


def test_window_large_gap_clears():
    w = DoseWindow()
    w.roll(100)
    w.add_pg(5_000_000)
    w.roll(100 + BUCKETS * BUCKET_S)
    assert w.total_ng() == 0
    w.add_pg(3000)
    w.roll(10 * DAY)
    assert w.total_ng() == 0, "a jump of days clears all"
    assert w.at == 10 * DAY // BUCKET_S
    w.add_pg(4000)
    assert w.total_ng() == 4
    w.roll(10 * DAY + 96 * BUCKET_S)
    assert w.total_ng() == 4, "96 buckets later: still in"


def test_window_sum_never_under_counts_24_h():
    below = lcg(5)
    w = DoseWindow()
    adds = []  # (uptime_s, ng)
    now = 0
    for _ in range(300):
        r = below(10)
        now += below(600) if r < 8 else below(6 * 3600) if r < 9 else below(2 * DAY)
        w.roll(now)
        ng = below(5000)
        w.add_pg(ng * 1000)
        adds = [x for x in adds if now - x[0] < DAY + BUCKET_S]
        adds.append((now, ng))
        lo = hi = 0
        for a, g in adds:
            if now - a < DAY:
                lo += g
            if now - a < DAY + BUCKET_S:
                hi += g
        got = w.total_ng()
        assert lo <= got <= hi, "at %d s: %d ng, the last 24 h had %d (24 h 15 min: %d)" % (
            now, got, lo, hi)


# -- alarms.Alarms ------------------------------------------------------------------------------


def _bit(alarm):
    return 1 << (alarm - 1)


def test_alarm_set_and_clear():
    a = Alarms()
    assert a.active == 0 and a.unacked == 0 and a.tone(0) == 0 and a.pop() == -1
    assert a.set(m.ALARM_LOW_RESERVOIR, True) is True
    assert a.set(m.ALARM_LOW_RESERVOIR, True) is False, "no change: not queued again"
    assert a.active == _bit(m.ALARM_LOW_RESERVOIR) == a.unacked
    assert a.set(m.ALARM_OCCLUSION, False) is False, "clearing a clear alarm"
    assert a.set(m.ALARM_LOW_RESERVOIR, False) is True
    assert a.active == 0 and a.unacked == 0
    assert a.pop() == m.ALARM_LOW_RESERVOIR << 1 | 1
    assert a.pop() == m.ALARM_LOW_RESERVOIR << 1
    assert a.pop() == -1


def test_alarm_ack_stops_the_tone_not_the_alarm():
    a = Alarms()
    a.set(m.ALARM_RESERVOIR_EMPTY, True)
    a.set(m.ALARM_REFILL_DUE, True)
    assert a.tone(0) == 2
    a.ack(m.ALARM_RESERVOIR_EMPTY)
    assert a.active == _bit(m.ALARM_RESERVOIR_EMPTY) | _bit(m.ALARM_REFILL_DUE)
    assert a.unacked == _bit(m.ALARM_REFILL_DUE)
    assert a.tone(0) == 1, "the non-critical one still sounds"
    a.ack(m.ALARM_REFILL_DUE)
    assert a.tone(0) == 0 and a.unacked == 0
    # Raised again after it cleared: unacknowledged again.
    a.set(m.ALARM_RESERVOIR_EMPTY, False)
    a.set(m.ALARM_RESERVOIR_EMPTY, True)
    assert a.tone(0) == 2
    a.ack(m.ALARM_OCCLUSION)  # not active: no effect
    assert a.unacked == _bit(m.ALARM_RESERVOIR_EMPTY)


def test_alarm_tone_levels_follow_the_table():
    for alarm, name, level in m.ALARMS:
        a = Alarms()
        a.set(alarm, True)
        assert a.tone(0) == level, "%s: tone %d, want %d" % (name, a.tone(0), level)
    a = Alarms()
    a.set(m.ALARM_ESCALATION, True)
    assert a.tone(0) == 0, "a notice has no tone"
    a.set(m.ALARM_LOW_RESERVOIR, True)
    assert a.tone(0) == 1
    a.set(m.ALARM_CAP_VIOLATION, True)
    assert a.tone(0) == 2, "the highest level sounds"
    a.set(m.ALARM_CAP_VIOLATION, False)
    assert a.tone(0) == 1


def test_alarm_silence():
    a = Alarms()
    a.set(m.ALARM_OCCLUSION, True)
    a.silence(1000)
    assert a.tone(0) == 0 and a.tone(999) == 0, "silenced"
    assert a.tone(1000) == 2, "back at the end of the silence"
    assert a.active == _bit(m.ALARM_OCCLUSION), "silence keeps the alarm"
    a.set(m.ALARM_BATTERY_END, True)
    a.silence(2000)
    assert a.tone(1500) == 0, "a new alarm in a silence is silent too"


def test_alarm_queue_overflow_keeps_the_newest():
    a = Alarms()
    changes = []
    for k in range(QUEUE + 5):
        alarm = 1 + k % len(m.ALARMS)
        on = (k // len(m.ALARMS)) % 2 == 0
        assert a.set(alarm, on)
        changes.append(alarm << 1 | (1 if on else 0))
    assert a.queued == QUEUE
    got = []
    v = a.pop()
    while v != -1:
        got.append(v)
        v = a.pop()
    assert got == changes[-QUEUE:], "%r, want the newest %r" % (got, changes[-QUEUE:])
    # After draining, the ring goes on in order.
    lo = m.ALARM_LOW_RESERVOIR  # cleared last in the loop above
    assert a.set(lo, True) and a.set(lo, False)
    assert a.queued == 2
    assert a.pop() == lo << 1 | 1 and a.pop() == lo << 1
    assert a.pop() == -1
