# The pump's state: mode, the program in force, delivered totals and the reservoir.
# Pure logic: time comes in as elapsed milliseconds, steps go out as a count.

from firmware.core.infusion import Infusion, rate_nl_per_day
from protocol import messages as m


class Refused(Exception):
    """A command the pump will not carry out: a protocol error code and a reason."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Pump:
    def __init__(self, step_nl, reservoir_nl, volume_nl, max_rate_nl_day, clock_s=0,
                 max_catch_up=4):
        """clock_s: the pump clock at boot (s since 1970), as the board's RTC has it.
        max_catch_up: the most steps made at once when the loop fell behind; more would be
        an unprogrammed bolus, so the rest are skipped and reported (gap_steps)."""
        self.max_catch_up = max_catch_up
        self.gap_steps = 0  # steps skipped by the last advance(); the loop logs them
        self.just_ran_dry = False  # the last advance() took the last step: the loop logs it
        self.battery_mv = 0  # as the shell last read it
        self.step_nl = step_nl
        self.max_rate_nl_day = max_rate_nl_day  # what the mechanism can deliver
        self.reservoir_nl = reservoir_nl  # capacity
        self.volume_nl = volume_nl  # drug left in the reservoir
        self.mode = m.MODE_STOPPED
        self.daily_dose_ng = 0
        self.concentration = 0
        self.stop_reason = 0
        self.infusion = Infusion(step_nl)
        self.delivered_steps = 0
        # Delivered dose as ug + ng + pg remainders: every counter stays a small int on
        # MicroPython (no allocation in the steady state) for the pump's life.
        self.delivered_ug = 0
        self._ng = 0  # below 1 ug
        self._pg = 0  # below 1 ng
        self._pg_per_step = 0
        self.uptime_s = 0
        self._clock_base = clock_s  # the clock is _clock_base + uptime_s
        self._ms = 0  # uptime below 1 s: keeps every counter a small int

    # -- commands -------------------------------------------------------------------------

    def set_continuous(self, daily_dose_ng, concentration):
        rate = rate_nl_per_day(daily_dose_ng, concentration)
        if rate > self.max_rate_nl_day:
            raise Refused(m.ERR_OUT_OF_RANGE, "rate %d nL/day over the pump's maximum %d"
                          % (rate, self.max_rate_nl_day))
        # Start the motor's schedule first: if anything fails, the old program stays whole.
        self.infusion.start(daily_dose_ng, concentration)
        self.daily_dose_ng = daily_dose_ng
        self.concentration = concentration
        self._pg_per_step = self.step_nl * concentration  # 1 nL at C mcg/mL holds C pg
        self.mode = m.MODE_CONTINUOUS
        self.stop_reason = 0

    def stop(self, reason, confirm):
        if confirm != m.STOP_CONFIRM:
            raise Refused(m.ERR_NOT_CONFIRMED, "stop needs the confirmation word 0x%08X"
                          % m.STOP_CONFIRM)
        self.infusion.stop()
        self.mode = m.MODE_STOPPED
        self.stop_reason = reason

    def set_clock(self, clock_s):
        self._clock_base = clock_s - self.uptime_s

    # -- time ---------------------------------------------------------------------------------

    def advance(self, elapsed_ms):
        """Let elapsed_ms pass. Returns the motor steps to make now (never more than the
        reservoir holds)."""
        self._ms += elapsed_ms
        if self._ms >= 1000:
            self.uptime_s += self._ms // 1000
            self._ms %= 1000
        due = self.infusion.advance(elapsed_ms)
        self.gap_steps = 0
        self.just_ran_dry = False
        left = self.volume_nl // self.step_nl
        if due == 0 or left == 0:  # dry: nothing to deliver, so nothing skipped either
            return 0
        if due > self.max_catch_up:
            self.gap_steps = due - self.max_catch_up
            due = self.max_catch_up
        if due >= left:
            self.just_ran_dry = True
            due = left
        self.delivered_steps += due
        self.volume_nl -= due * self.step_nl
        self._pg += due * self._pg_per_step
        if self._pg >= 1000:
            self._ng += self._pg // 1000
            self._pg %= 1000
            if self._ng >= 1000:
                self.delivered_ug += self._ng // 1000
                self._ng %= 1000
        return due

    def delivered_ng(self):
        return self.delivered_ug * 1000 + self._ng

    def ms_until_next(self):
        """Milliseconds until the next step is due, or -1 if none is scheduled."""
        if self.volume_nl < self.step_nl:
            return -1
        return self.infusion.ms_until_next()

    # -- reporting -------------------------------------------------------------------------

    def clock_s(self):
        return self._clock_base + self.uptime_s

    def dry_at_s(self):
        """Pump clock when the program in force takes the reservoir's last step; 0 if none
        runs. (A refill date comes earlier: the low-reservoir margin is issue 5's.)"""
        steps = self.volume_nl // self.step_nl
        inf = self.infusion
        if self.mode == m.MODE_STOPPED or steps == 0 or not inf.divisor:
            return 0
        # The next step in inf.wait ms, then one every whole + rem/divisor ms.
        ms = inf.wait + ((steps - 1) * (inf.whole * inf.divisor + inf.rem)) // inf.divisor
        return self.clock_s() + ms // 1000

    def rate_nl_day(self):
        if self.mode == m.MODE_STOPPED:
            return 0
        return rate_nl_per_day(self.daily_dose_ng, self.concentration)

    def delivered_nl(self):
        return self.delivered_steps * self.step_nl
