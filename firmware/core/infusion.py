# Dose -> volume -> motor steps, in integers. The time between steps is the exact rational
#   interval_ms = step_nl * concentration * 86400 / daily_dose_ng
# split once, when a program is set, into a whole part and a remainder; an accumulator carries
# the remainder from step to step (Bresenham). Step k falls due at ceil(k * interval): never
# before its ideal time, less than 1 ms after it, so delivery never runs ahead of the program
# and no error builds up, however long it runs. The steady state only adds and compares small
# ints: it never allocates on MicroPython.

DAY_S = 86400
NONE = -1  # ms_until_next() when no step is scheduled


def rate_nl_per_day(daily_dose_ng, concentration):
    """Volume per day for a dose (ng/day) at a concentration (mcg/mL), rounded to 1 nL."""
    # 1 mcg/mL = 1 ng/uL = 1/1000 ng/nL, so nL/day = ng/day * 1000 / (mcg/mL).
    return (daily_dose_ng * 1000 + concentration // 2) // concentration


class Infusion:
    """When the next motor step is due, for a constant daily dose."""

    def __init__(self, step_nl):
        self.step_nl = step_nl
        self.stop()

    def stop(self):
        self.whole = 0  # ms per step, integer part
        self.rem = 0  # remainder, in units of 1/divisor ms
        self.divisor = 0  # the interval's denominator; 0 when stopped
        self.acc = 0  # carried remainder, 0 <= acc < divisor
        self.wait = NONE  # ms until the next step

    def start(self, daily_dose_ng, concentration):
        """Run at a daily dose (ng/day) of a drug at `concentration` (mcg/mL)."""
        # interval_ms = step_nl * concentration * 86400 / daily_dose_ng (1 nL at C mcg/mL
        # holds C pg): may exceed a small int, but only here, once per change.
        self.start_interval(self.step_nl * concentration * DAY_S, daily_dose_ng)

    def start_volume(self, nl_per_day):
        """Run at a volume rate (nL/day), whatever the drug."""
        self.start_interval(self.step_nl * DAY_S * 1000, nl_per_day)

    def start_interval(self, num, den):
        """Run with one step every num / den ms."""
        self.start_split(num // den, num % den, den)

    def start_split(self, whole, rem, den):
        """Run with one step every whole + rem / den ms (split ahead of time: a flex day's
        steps switch without big ints, so without allocating on MicroPython). From a stop,
        the first step falls one full interval from now; from another rate, the part of a step
        already run carries over (reprogramming must not push the next step back, or frequent
        changes would deliver nothing)."""
        first = -1
        if self.divisor and self.whole:
            # The same fraction of the new interval as was left of the old one: a / b, both
            # cut to 15 bits so every product below stays a small int (off by < 1/16384 of
            # an interval, and by under 1 ms for the new interval's fraction of a ms).
            a = self.wait if self.wait > 0 else 0  # ms to the next step at the old rate
            b = self.whole
            while b > 0x7FFF:
                a >>= 1
                b >>= 1
            first = (whole // b) * a + ((whole % b) * a + b - 1) // b
        self.whole = whole
        self.rem = rem
        self.divisor = den
        self.acc = den - 1  # rounds every due time up: ceil, not floor
        self.wait = 0
        self._schedule_next()
        if 0 <= first < self.wait:
            self.wait = first

    def _schedule_next(self):
        self.wait += self.whole
        self.acc += self.rem
        if self.acc >= self.divisor:
            self.acc -= self.divisor
            self.wait += 1

    def advance(self, elapsed_ms):
        """Let elapsed_ms pass; return how many steps fell due."""
        if self.divisor == 0:
            return 0
        self.wait -= elapsed_ms
        due = 0
        while self.wait <= 0:
            due += 1
            self._schedule_next()
        return due

    def ms_until_next(self):
        return self.wait if self.divisor else NONE
