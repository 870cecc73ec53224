# The mechanism: a basal rate and a bolus on top of it, turned into motor steps; the reservoir
# and what it holds; delivered totals. Pure logic: time comes in as elapsed milliseconds, steps
# go out as a count. What is allowed (the label's rules) is decided above it, in therapy.py.

from firmware.core.infusion import Infusion
from firmware.core.window import DoseWindow


class Refused(Exception):
    """A command the pump will not carry out: a protocol error code, a reason, and for a
    clinical rule its id, the value asked for, the limit, and how long to wait."""

    def __init__(self, code, reason, rule=0, requested=0, allowed=0, wait_s=0):
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.rule = rule
        self.requested = requested
        self.allowed = allowed
        self.wait_s = wait_s


class Pump:
    def __init__(self, step_nl, capacity_nl, volume_nl, max_rate_nl_day, clock_s=0,
                 max_catch_up=4):
        """clock_s: the pump clock at boot (s since 1970), as the board's RTC has it.
        max_catch_up: the most basal steps made at once when the loop fell behind; more would
        be an unprogrammed bolus, so the rest are skipped and reported (gap_steps)."""
        self.max_catch_up = max_catch_up
        self.gap_steps = 0  # basal steps skipped by the last advance(); the loop logs them
        self.just_ran_dry = False  # the last advance() took the last step: the loop logs it
        self.bolus_ended = False  # the last advance() made the bolus's last step
        self.battery_mv = 0  # as the shell last read it
        self.step_nl = step_nl
        self.max_rate_nl_day = max_rate_nl_day  # the mechanism's top basal rate
        self.capacity_nl = capacity_nl
        self.volume_nl = volume_nl  # drug left in the reservoir
        self.concentration = 0  # mcg/mL of what the reservoir holds; 0: nothing known
        self.held = False  # outlet closed (a refill session): steps that fall due are dropped
        self.blocked = False  # motor blocked (occlusion, stall): steps that fall due are dropped
        self.basal = Infusion(step_nl)
        self.basal_nl_day = 0  # for display
        self.bolus = Infusion(step_nl)
        self.bolus_steps = 0  # steps of the running bolus still to make
        self.bolus_done_steps = 0  # steps of it made so far
        self.delivered_steps = 0
        # Delivered dose as ug + ng + pg remainders: every counter stays a small int on
        # MicroPython (no allocation in the steady state) for the pump's life.
        self.delivered_ug = 0
        self._ng = 0  # below 1 ug
        self._pg = 0  # below 1 ng
        self.window = DoseWindow()
        # The pump's own time in s: monotonic, carried across resets by the snapshot (so 24 h
        # rules hold over a reboot); boot_s is its value at this boot.
        self.uptime_s = 0
        self.boot_s = 0
        self._clock_base = clock_s  # the clock is _clock_base + uptime_s
        self._ms = 0  # uptime below 1 s: keeps every counter a small int

    # -- what to run -----------------------------------------------------------------------

    def pg_per_step(self):
        return self.step_nl * self.concentration  # 1 nL at C mcg/mL holds C pg

    def run_dose(self, daily_dose_ng):
        """Basal rate: a daily dose at the reservoir's concentration."""
        self.run_volume((daily_dose_ng * 1000 + self.concentration // 2) // self.concentration,
                        daily_dose_ng)

    def run_volume(self, nl_per_day, daily_dose_ng=0):
        """Basal rate in nL/day (exactly, when daily_dose_ng is 0; otherwise the rate is the
        dose's, and nl_per_day only its rounded display)."""
        if daily_dose_ng:
            self.basal.start(daily_dose_ng, self.concentration)
        else:
            self.basal.start_volume(nl_per_day)
        self.basal_nl_day = nl_per_day

    def run_split(self, split):
        """Basal rate from split(): what run_dose() would run, without computing it."""
        self.basal.start_split(split[0], split[1], split[2])
        self.basal_nl_day = split[3]

    def split(self, daily_dose_ng):
        """A daily dose at the reservoir's concentration as (whole ms, remainder, divisor,
        nL/day) for run_split(): the big-int work done ahead of time."""
        num = self.step_nl * self.concentration * 86400
        return (num // daily_dose_ng, num % daily_dose_ng, daily_dose_ng,
                (daily_dose_ng * 1000 + self.concentration // 2) // self.concentration)

    def halt(self):
        """No basal rate, no bolus: an immediate stop."""
        self.basal.stop()
        self.basal_nl_day = 0
        self.cancel_bolus()

    def start_bolus(self, steps, duration_ms):
        """steps motor steps spread evenly over duration_ms, on top of the basal rate."""
        self.bolus_steps = steps
        self.bolus_done_steps = 0
        self.bolus.start_interval(duration_ms, steps)

    def cancel_bolus(self):
        """Stop a running bolus; return the steps it did not make."""
        left = self.bolus_steps
        self.bolus_steps = 0
        self.bolus.stop()
        return left

    def fill(self, volume_nl, concentration):
        """A new reservoir content. The caller restarts the basal rate: at a new concentration
        the same dose is another volume."""
        self.volume_nl = volume_nl
        self.concentration = concentration

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
            self.window.roll(self.uptime_s)
        due = self.basal.advance(elapsed_ms)
        extra = self.bolus.advance(elapsed_ms) if self.bolus_steps else 0
        self.gap_steps = 0
        self.just_ran_dry = False
        self.bolus_ended = False
        left = self.volume_nl // self.step_nl
        if self.held or self.blocked or left == 0 or due + extra == 0:
            return 0  # outlet closed, blocked or dry: nothing delivered, nothing owed either
        if due > self.max_catch_up:
            self.gap_steps = due - self.max_catch_up
            due = self.max_catch_up
        # A bolus that fell behind is owed, not skipped: at most max_catch_up now, the rest
        # as its schedule runs on.
        if extra > self.max_catch_up:
            extra = self.max_catch_up
        if extra > self.bolus_steps:
            extra = self.bolus_steps
        if due + extra >= left:
            self.just_ran_dry = True
            if extra > left:
                extra = left
            due = left - extra
        if extra:
            self.bolus_steps -= extra
            self.bolus_done_steps += extra
            if self.bolus_steps == 0:
                self.bolus.stop()
                self.bolus_ended = True
        n = due + extra
        self.delivered_steps += n
        self.volume_nl -= n * self.step_nl
        pg = n * self.pg_per_step()
        self.window.add_pg(pg)
        self._pg += pg
        if self._pg >= 1000:
            self._ng += self._pg // 1000
            self._pg %= 1000
            if self._ng >= 1000:
                self.delivered_ug += self._ng // 1000
                self._ng %= 1000
        return n

    def ms_until_next(self):
        """Milliseconds until the next step is due, or -1 if none is scheduled."""
        if self.volume_nl < self.step_nl or self.held or self.blocked:
            return -1
        wait = self.basal.ms_until_next()
        if self.bolus_steps:
            b = self.bolus.ms_until_next()
            if wait < 0 or b < wait:
                wait = b
        return wait

    # -- reporting -------------------------------------------------------------------------

    def clock_s(self):
        return self._clock_base + self.uptime_s

    def delivered_ng(self):
        return self.delivered_ug * 1000 + self._ng

    def delivered_nl(self):
        return self.delivered_steps * self.step_nl

    def bolus_left_ng(self):
        return self.bolus_steps * self.pg_per_step() // 1000
