# Shared set-up for board tests of the therapy engine: a pump, an engine and a dispatcher in
# a known state, built through the engine's own commands (profile, then a refill), so that
# no test reaches into state the protocol could not set. Board-safe (CPython and MicroPython).

from firmware import config
from firmware.core.dispatch import Dispatcher
from firmware.core.eventlog import EventLog
from firmware.core.guard import Guard
from firmware.core.pump import Pump
from firmware.core.therapy import Therapy
from protocol import messages as m

STEP_NL = 250
CAPACITY_NL = 20_000_000
CLOCK0 = 1_800_000_000  # 2027-01-15 08:00 UTC
BOARD_ID = b"\xe6\x61\x38\x52\x83\x47\xa5\x2f"
FW = "0.1.0-test"
CLINICIAN_KEY = bytes((0x80 + 3 * i) & 0xFF for i in range(32))
PATIENT_KEY = bytes((0x11 + 5 * i) & 0xFF for i in range(32))
DAY_MS = 86_400_000


def bare(clock_s=CLOCK0, max_catch_up=1 << 20, log_size=256):
    """A pump fresh from boot: no profile, empty reservoir. max_catch_up defaults to no cap
    (tests advance time in large jumps); pass config.MAX_CATCH_UP_STEPS to test the cap."""
    p = Pump(STEP_NL, CAPACITY_NL, 0, config.MAX_RATE_NL_DAY, clock_s, max_catch_up)
    return Therapy(p, EventLog(log_size), config)


def ready(origin=m.ORIGIN_SPINAL, age=40, phase=m.PHASE_TITRATION, ceiling_ng=1_500_000,
          catheter_nl=200_000, concentration=500, fill_nl=CAPACITY_NL, clock_s=CLOCK0,
          brain_injury_s=0, **kw):
    """A therapy with a profile and a filled reservoir, no program yet."""
    t = bare(clock_s, **kw)
    t.role = m.ROLE_CLINICIAN
    t.set_profile(origin, age, phase, ceiling_ng, catheter_nl, 0, brain_injury_s)
    t.refill_begin()
    t.refill_commit(0, fill_nl, m.DRUG_BACLOFEN, concentration, concentration,
                    0 if concentration in (50, 500, 1000, 2000)
                    else m.CONFIRM_CUSTOM_CONCENTRATION)
    t.role = 0
    return t


def running(daily_ng=100_000, **kw):
    """A therapy running continuous infusion of daily_ng, started now."""
    t = ready(**kw)
    t.set_continuous(daily_ng, m.CONFIRM_HIGH_DOSE if daily_ng > 1_000_000 else 0)
    return t


def advance(t, ms, chunk=60_000):
    """Let ms pass in chunks (as the loop would wake) on a therapy or a bare pump; return the
    steps made."""
    steps = 0
    while ms > 0:
        d = chunk if ms > chunk else ms
        steps += t.advance(d)
        ms -= d
    return steps


def run_for(t, s, chunk_s=3600, samples=None):
    """Let s seconds pass in chunks, waking at each program change or session end as the
    loop does; appends (uptime_s, delivered_ng) to samples after each chunk if given.
    Returns the motor steps made."""
    ms = s * 1000
    steps = 0
    while ms > 0:
        d = chunk_s * 1000
        if d > ms:
            d = ms
        e = t.ms_until_event()
        if 0 < e < d:
            d = e
        if t.pump.bolus_steps and d > 60_000:
            d = 60_000  # the bolus's schedule counts every interval of a long advance
        steps += t.advance(d)
        ms -= d
        if samples is not None:
            samples.append((t.pump.uptime_s, t.pump.delivered_ng()))
    return steps


def code_name(code):
    """An error code's name (messages.ERRORS), OK for 0."""
    for c, name, _ in m.ERRORS:
        if c == code:
            return name
    return "OK" if code == 0 else "code %d" % code


def assert_code(code, want, what):
    assert code == want, "%s: %s, want %s" % (what, code_name(code), code_name(want))


def dispatcher(t, keys=None, random_bytes=None):
    if keys is None:
        keys = {m.ROLE_CLINICIAN: CLINICIAN_KEY, m.ROLE_PATIENT: PATIENT_KEY}
    if random_bytes is None:
        def random_bytes(n):
            return bytes(range(n))
    return Dispatcher(t, (BOARD_ID, FW), Guard(keys), random_bytes)


def refused(fn, *args):
    """Call fn(*args) expecting a Refused; return it (fails the test if it went through)."""
    from firmware.core.pump import Refused

    try:
        fn(*args)
    except Refused as e:
        return e
    raise AssertionError("not refused: %s%r" % (getattr(fn, "__name__", fn), args))


class FakeStepper:
    """board.Stepper for a Loop on fake board objects: counts steps both ways."""

    def __init__(self):
        self.steps = 0
        self.back = 0

    def step(self, n, back=False):
        if back:
            self.back += n
        else:
            self.steps += n


class FakePorts:
    """board.Ports for a Loop on fake board objects: set the inputs; the valves as driven."""

    def __init__(self):
        self.needle_septum = False
        self.needle_cap = False
        self.end_empty = False
        self.driver_fault = False
        self.pressure = 6000
        self.refill_valve = False
        self.cap_valve = False

    def read(self, inp):
        inp.needle_septum = self.needle_septum
        inp.needle_cap = self.needle_cap
        inp.end_empty = self.end_empty
        inp.driver_fault = self.driver_fault
        inp.pressure = self.pressure

    def valves(self, refill_open, cap_open):
        self.refill_valve = refill_open
        self.cap_valve = cap_open


class FakeBuzzer:
    """board.Buzzer for a Loop on fake board objects: the level last sounded."""

    def __init__(self):
        self.level = 0

    def sound(self, level):
        self.level = level


class FakeClock:
    """MicroPython's time for firmware/loop.py: ticks move only when the loop waits (tests
    stay far below the 2**30 ms ticks period, so a plain difference will do); the board's
    clock (time()) runs on with them from wall_s."""

    def __init__(self, wall_s=CLOCK0):
        self.now = 0
        self.wall_s = wall_s

    def ticks_ms(self):
        return self.now

    def ticks_diff(self, a, b):
        return a - b

    def time(self):
        return self.wall_s + self.now // 1000


class FakeLink:
    """The board's link: bytes to read in rx, waits that let the clock run to the deadline."""

    def __init__(self, clock):
        self.clock = clock
        self.rx = bytearray()
        self.at = 0
        self.written = 0

    def read_byte(self):
        if self.at < len(self.rx):
            self.at += 1
            return self.rx[self.at - 1]
        return -1

    def wait(self, timeout_ms):
        if timeout_ms > 0:
            self.clock.now += timeout_ms  # the loop sleeps until its next deadline
        return False

    def write(self, data):
        self.written += len(data)

    def close(self):
        pass


class FakeBoard:
    """firmware/board.Board's surface for a Loop, on fakes. fs outlives a board: a reboot is a
    new FakeBoard on the same fs."""

    def __init__(self, fs=None, wall_s=CLOCK0, clock=None):
        from firmware.core.store import MemoryFS

        self.clock = clock if clock is not None else FakeClock(wall_s)
        self.link = FakeLink(self.clock)
        self.stepper = FakeStepper()
        self.ports = FakePorts()
        self.buzzer = FakeBuzzer()
        self.fs = fs if fs is not None else MemoryFS()

    def unique_id(self):
        return BOARD_ID

    def battery_mv(self):
        return 3900

    def reset_cause(self):
        return 1

    def random_bytes(self, n):
        return bytes(n)

    def start_watchdog(self):
        pass

    def feed(self):
        pass

    def reboot_to_repl(self):
        pass
