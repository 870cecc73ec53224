# The ports and the motor's health, from the board's inputs each turn: which valve may be open
# (only the one whose session is open), a needle where no session allows one, and a motor
# that is blocked (downstream pressure, driver fault, or the plunger at its end stop while
# the reservoir should still hold drug). Pure: the shell reads the pins into Inputs and drives
# the valves and the motor from what update() decides.

from protocol import messages as m


class Inputs:
    """The board's inputs, as the shell last read them (debounced)."""

    def __init__(self):
        self.needle_septum = False
        self.needle_cap = False
        self.end_empty = False  # the plunger at its end stop
        self.driver_fault = False
        self.pressure = 0  # raw 16-bit ADC reading of the downstream pressure sensor


class Interlocks:
    def __init__(self, therapy, cfg):
        self.t = therapy
        self.pressure_limit = cfg.PRESSURE_LIMIT_RAW
        self.backoff_steps = cfg.OCCLUSION_BACKOFF_STEPS
        self.retry_s = cfg.OCCLUSION_RETRY_S
        self.refill_valve = False
        self.cap_valve = False
        self.backoff = 0  # steps to draw the plunger back now (the shell makes them)
        self.retry_up = 0  # uptime when a blocked motor tries again
        self.stalls = 0
        self.occlusion_bit = 1 << (m.ALARM_OCCLUSION - 1)

    def update(self, inp):
        t = self.t
        p = t.pump
        up = p.uptime_s
        # A valve is open only while its session is; the reservoir has no path from the CAP.
        self.refill_valve = t.refill_end_up != 0
        self.cap_valve = t.cap_end_up != 0
        self._port(m.ALARM_CAP_VIOLATION, inp.needle_cap, self.cap_valve)
        self._port(m.ALARM_SEPTUM_NEEDLE, inp.needle_septum, self.refill_valve)
        blocked = (inp.pressure > self.pressure_limit or inp.driver_fault
                   or (inp.end_empty and p.volume_nl >= p.step_nl))
        if blocked and not p.blocked:
            # Stop, and draw back a little so that what the pressure built up does not reach
            # the patient as a bolus when the blockage clears.
            p.blocked = True
            self.backoff = self.backoff_steps
            self.retry_up = up + self.retry_s
            self.stalls += 1
            t.set_alarm(m.ALARM_OCCLUSION, True)
        elif p.blocked and up >= self.retry_up:
            if blocked:
                self.retry_up = up + self.retry_s
            else:  # the motor runs again: steps missed meanwhile are not made up
                p.blocked = False
                t.set_alarm(m.ALARM_OCCLUSION, False)
        elif not blocked and not p.blocked and t.alarms.active & self.occlusion_bit:
            # No blockage and the motor runs, yet the alarm is on: a reset during an
            # occlusion (the motor's state is RAM, the alarm was saved). An alarm stays active
            # while its cause does (ALARM_ACK), no longer.
            t.set_alarm(m.ALARM_OCCLUSION, False)

    def _port(self, alarm, needle, session_open):
        """A needle outside its session raises the alarm; it stays until the needle is out
        and the alarm was acknowledged."""
        a = self.t.alarms
        bit = 1 << (alarm - 1)
        if needle and not session_open:
            if not a.active & bit:
                self.t.set_alarm(alarm, True)
        elif a.active & bit and not needle and not a.unacked & bit:
            self.t.set_alarm(alarm, False)
