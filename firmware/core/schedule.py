# A day's program: steps of (start minute of the day, rate as ng/day), in rising start order;
# each runs until the next one starts, the last one past midnight to the first. Simple
# continuous infusion is the one-step day. Integers only; the clock is UTC and the day is the
# patient's local one (utc_offset_min).

DAY_MIN = 1440
DAY_S = 86400


def day_numerator(steps):
    """sum(rate * minutes): the day's dose is this / 1440 ng (kept whole: exact compares)."""
    n = len(steps)
    total = 0
    for i in range(n):
        start, dose = steps[i]
        end = steps[i + 1][0] if i + 1 < n else steps[0][0] + DAY_MIN
        total += dose * (end - start)
    return total


def daily_dose(steps):
    """The day's dose in ng, rounded up: a limit is never checked against less than it."""
    return (day_numerator(steps) + DAY_MIN - 1) // DAY_MIN


def valid(steps):
    """'' if the steps make a day, else what is wrong with them."""
    if not steps:
        return "no steps"
    for i in range(1, len(steps)):
        if steps[i][0] <= steps[i - 1][0]:
            return "step %d starts at minute %d, not after %d" % (
                i + 1, steps[i][0], steps[i - 1][0])
    return ""


def local_s(clock_s, utc_offset_min):
    """Seconds since local midnight."""
    return (clock_s + utc_offset_min * 60) % DAY_S


def index_at(steps, second_of_day):
    """The step in force at a second of the local day."""
    minute = second_of_day // 60
    i = len(steps) - 1  # before the first start: the last step, from the day before
    for k in range(len(steps)):
        if steps[k][0] <= minute:
            i = k
    return i


def s_until_change(steps, second_of_day):
    """Seconds until the next step starts (one step: a day, i.e. never sooner)."""
    if len(steps) < 2:
        return DAY_S
    i = index_at(steps, second_of_day)
    nxt = steps[(i + 1) % len(steps)][0] * 60
    wait = nxt - second_of_day
    if wait <= 0:
        wait += DAY_S
    return wait


def s_to_deliver(steps, second_of_day, volume_nl, concentration):
    """Seconds the program takes, from a second of the local day, to deliver volume_nl of a
    drug at concentration (mcg/mL). 0 if nothing is running."""
    if not steps or concentration <= 0 or volume_nl <= 0:
        return 0
    # In units of 1/86400 pg: a step at dose D ng/day delivers D * 1000 of them each second,
    # and the volume holds volume_nl * concentration pg. Big ints: only on a change.
    need = volume_nl * concentration * DAY_S
    per_day = day_numerator(steps) * 60 * 1000
    if per_day <= 0:
        return 0
    days = need // per_day
    if days:
        days -= 1  # walk the last partial day (at least one) step by step
    need -= days * per_day
    t = days * DAY_S
    s = second_of_day
    i = index_at(steps, s)
    while True:
        wait = s_until_change(steps, s)
        per_s = steps[i][1] * 1000
        if per_s * wait >= need:
            return t + (need + per_s - 1) // per_s
        need -= per_s * wait
        t += wait
        s = (s + wait) % DAY_S
        i = (i + 1) % len(steps)


def ng_over(steps, second_of_day, seconds):
    """ng the program delivers from a second of the local day over `seconds`, rounded up."""
    if not steps or seconds <= 0:
        return 0
    # In units of 1/86400 ng: a step at D ng/day gives D of them each second.
    total = 0
    s = second_of_day
    i = index_at(steps, s)
    while seconds > 0:
        wait = s_until_change(steps, s)
        if wait > seconds:
            wait = seconds
        total += steps[i][1] * wait
        seconds -= wait
        s = (s + wait) % DAY_S
        i = (i + 1) % len(steps)
    return (total + DAY_S - 1) // DAY_S
