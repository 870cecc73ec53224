"""A reference model of the pump's clinical rules: the oracle of tests/model/test_model_based.py.

Written from ../shared/clinical-rules.md (section numbers below are its own; the label's are in
brackets) and the safety invariants of ../shared/DESIGN.md, NOT from the firmware: nothing here
imports or copies firmware/core. It imports:
  - protocol.messages for the wire: error codes, rule ids, enums, field ranges (the wire table
    is the protocol's one definition; the oracle only reads ranges and codes from it);
  - nothing from firmware.config: the test passes in a Plant built from it (step volume,
    reservoir size, the mechanism's top rates, the minimum patency rate, the refill session's
    time-out, the drain tolerance, the occlusion retry period). These are properties of the
    device, not of the label, and the oracle cannot predict a pump-rate refusal or a session
    time-out without them.

It is meant to be read, not to be fast: a list of (time, daily dose in force), a list of
(time, delivered ng) breakpoints, brute-force 24 h windows over them. Dose rules are in
integers (ng/day, percent); the delivery model and the 24 h sums are floats, and every
comparison of a float with a limit keeps a margin of motor steps (`_grey`) far above any float
error, so a float never decides.

What a request gets from the oracle is a Verdict: the rules it must break (the firmware has to
refuse it, naming one of them) and the rules it may break (a grey zone where the firmware is
allowed to be more careful than the exact rule: 24 h windows reckoned by the quarter hour,
delivery that lags the ideal by part of a motor step). Accepted means: no rule it must break.
A refusal is right when its (error code, rule) is among the must or may ones. The order in
which a firmware checks its rules is not specified anywhere, so the oracle does not model it.

Time is the pump's own monotonic time in whole seconds (`now`), as clinical-rules.md wants
every "within 24 h" rule; the wall clock (`clock`) only places a flex day's steps.
"""

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from protocol import messages as m

DAY = 86_400

# -- the rules' numbers (clinical-rules.md) ---------------------------------------------------

# §10 [1, 8.4]: 4 years and above. Pediatric: under 18 ([6.1, 6.2] count patients "under age 18
# at enrollment" as pediatric); §4 and §5 give children the cerebral limits.
MIN_AGE = 4
ADULT_AGE = 18
# §10 [1]: spasticity after a traumatic brain injury: therapy at least 1 year after the injury.
# A year by the calendar: 365 days at least, and up to 366 when it spans a 29 February
# (`year_after`); between the two a pump may refuse. The profile carries the injury's date
# (0: none); the wall clock, not the pump's own time, says when a year has passed (the label's
# year is a date's). A date after the clock is no injury yet: a wrong date.
YEAR_MIN_S = 365 * DAY
# §1 [2.3, 3, 16]: the label's strengths; anything else is a confirmed custom dilution, never
# above 2000 mcg/mL; one drug.
STRENGTHS = (50, 500, 1000, 2000)
MAX_STRENGTH = 2000
# §2 [2.2]: 50, then 75, then 100 mcg (25 first for a small child), each over at least a
# minute, at least 24 h apart; 100 mcg is the maximum.
SCREEN_CHILD_FIRST = 25_000
SCREEN_LADDER = (50_000, 75_000, 100_000)
SCREEN_MIN_S = 60
SCREEN_GAP_S = DAY
# §3 [2.5]: the first daily dose is at most twice the screening dose; no increase in the first
# 24 h of infusion.
FIRST_DAY_S = DAY
# §4 [2.5]: titration steps (the upper end of each range), at most one increase per 24 h.
TITRATION_PCT_SPINAL_ADULT = 30
TITRATION_PCT_OTHER = 15
# §5 [2.6]: at a refill visit, never more than +40 % (spinal) or +20 % (cerebral, pediatric).
MAINTENANCE_PCT_SPINAL = 40
MAINTENANCE_PCT_OTHER = 20
# §5 [2.6]: limited experience above 1000 mcg/day: an explicit confirmation.
HIGH_DOSE_NG = 1_000_000
# §5 [2.6] decreases for side effects are 10-20 %; §7 [5.5, boxed warning] a large cut must be
# deliberate: a cut of more than 20 % below the highest dose in force within 24 h is confirmed.
CUT_PCT = 20
# §7 [2.6]: a drug holiday tapers over 2 to 4 weeks.
TAPER_DAYS = (14, 28)
# §8 [5.1] and DESIGN (refill practice): a drained volume more than 20 % off the expected one
# is explained (confirmed) before the refill; the plant's tolerance below which it never is.
DRAIN_PCT = 20

# The modelled alarms (the others are the pump's business: battery, refill dates, escalation).
MODELLED_ALARMS = (m.ALARM_OCCLUSION, m.ALARM_CAP_VIOLATION, m.ALARM_SEPTUM_NEEDLE)

# Who may ask for what (DESIGN invariant 5: every therapy-changing command is authenticated
# for a role). The patient asks for patient boluses and nothing else that changes therapy.
PATIENT_REQUESTS = (m.PATIENT_BOLUS, m.ALARM_ACK, m.ALARM_SILENCE, m.GET_STATUS)
CLINICIAN_REQUESTS = (
    m.SET_PROFILE, m.SET_CONTINUOUS, m.SET_FLEX, m.SET_TAPER, m.STOP, m.SUSPEND, m.RESUME,
    m.BOLUS, m.PRIME, m.SCREEN, m.SET_PATIENT_BOLUS, m.REFILL_BEGIN, m.REFILL_COMMIT,
    m.REFILL_ABORT, m.CAP_BEGIN, m.CAP_END, m.SET_CLOCK, m.ALARM_ACK, m.ALARM_SILENCE,
    m.GET_STATUS,
)

PROGRAM_MODES = (m.MODE_CONTINUOUS, m.MODE_FLEX, m.MODE_TAPER)


@dataclass(frozen=True)
class Plant:
    """The device's constants the rules need (from firmware/config.py, by the test)."""

    step_nl: int  # volume of one motor step
    capacity_nl: int  # reservoir
    max_rate_nl_day: int  # the mechanism's top basal rate
    max_bolus_nl_min: int  # its top bolus rate
    min_rate_nl_day: int  # the catheter-patency rate a suspended pump keeps
    refill_timeout_s: int  # a refill session left open this long closes by itself
    drain_tolerance_nl: int  # a drained volume this close to the expected one never mismatches
    retry_s: int  # a blocked motor tries again this often
    # Not the device's: the longest its loop sleeps between two calls of the core (the test's
    # choice). The core counts a motor step when it is called, so its 24 h windows may see a
    # delivery up to this much later than the ideal delivery the model reckons with.
    loop_sleep_s: int = 0
    max_step_ng: int = 0  # the largest step at the strongest drug (set in __post_init__)

    def __post_init__(self):
        object.__setattr__(self, "max_step_ng", self.step_nl * MAX_STRENGTH // 1000)


# -- verdicts ----------------------------------------------------------------------------------


class Verdict:
    """The rules a request must break and those it may break, as (error code, rule) pairs."""

    def __init__(self, what):
        self.what = what
        self.must = []  # (code, rule, why)
        self.may = []

    def need(self, code, rule, why):
        self.must.append((code, rule, why))

    def maybe(self, code, rule, why):
        self.may.append((code, rule, why))

    @property
    def accept(self):
        return not self.must

    def admits(self, code, rule):
        """Whether a refusal with this code and rule is right."""
        return any(c == code and r == rule for c, r, _ in self.must + self.may)

    def __repr__(self):
        def names(lst):
            return ", ".join(f"{_code_name(c)}/{_rule_name(r)} ({why})" for c, r, why in lst)

        return f"<{self.what}: must [{names(self.must)}] may [{names(self.may)}]>"


def year_after(t):
    """The same date and time a calendar year after wall clock t (29 February: 1 March)."""
    d = datetime.fromtimestamp(t, tz=UTC)
    try:
        later = d.replace(year=d.year + 1)
    except ValueError:  # 29 February
        later = d.replace(year=d.year + 1, month=3, day=1)
    return int(later.timestamp())


def _code_name(code):
    for c, name, _ in m.ERRORS:
        if c == code:
            return name
    return str(code)


def _rule_name(rule):
    return dict(m.ENUMS["rule"]).get(rule, str(rule))


def message_row(mtype) -> Any:
    """The wire table's row of a message type (its fields are tuples of mixed kinds)."""
    row = m.find(mtype)
    assert row is not None, mtype
    return row


def wire_violations(v, mtype, values):
    """A field outside the wire table's range is refused before any rule (OUT_OF_RANGE)."""
    f: Any
    for f, value in zip(message_row(mtype)[3], values, strict=False):
        kind, lo, hi = f[1], f[2], f[3]
        if kind == "list":
            if not lo <= len(value) <= hi:
                v.need(m.ERR_OUT_OF_RANGE, 0, f"{len(value)} {f[0]}")
            for item in value:
                for g, x in zip(f[4], item, strict=True):
                    if not g[2] <= x <= g[3]:
                        v.need(m.ERR_OUT_OF_RANGE, 0, f"{g[0]}={x}")
        elif kind != "str" and lo is not None and not lo <= value <= hi:
            v.need(m.ERR_OUT_OF_RANGE, 0, f"{f[0]}={value}")


# -- the model ---------------------------------------------------------------------------------


@dataclass
class Program:
    """What the clinician programmed: a day of (start minute, ng/day) steps in local time (one
    step for continuous infusion), or a taper (§7: down from start to target, a cut a day)."""

    mode: int
    steps: tuple
    offset_min: int = 0
    taper: tuple | None = None  # (start ng/day, target ng/day, days, daily cut, start time)


@dataclass
class Bolus:
    kind: int
    steps: int  # whole motor steps, never more than asked (BOLUS_OK: "whole motor steps")
    ng: float  # what they hold
    start: int
    end: int  # moves later while the motor is blocked (a bolus pauses, it is not dropped)
    given: float = 0.0
    dry: bool = False  # the reservoir ran dry under it: it never ends
    fuzz: int = 0  # s either side of `end` where it may have ended (0; a step's interval once
    # paused: a pump may keep its step schedule through a blockage rather than pause it)

    def surely_running(self, now):
        return not self.dry and now < self.end - self.fuzz


@dataclass
class Oracle:
    plant: Plant
    clock0: int  # wall clock at pump time 0
    now: int = 0
    clock_base: int = 0  # wall clock = clock_base + now
    # §10 the profile
    phase: int = m.PHASE_UNSET
    origin: int = m.ORIGIN_UNSET
    age: int = 0
    ceiling: int = 0
    catheter_nl: int = 0
    infusion_start_s: int = 0  # wall clock, as the profile reports it
    brain_injury_s: int = 0  # wall clock: the date of a brain injury behind it (§10); 0: none
    bolused: bool = False  # a bolus was given (a priming or clinician bolus before a program)
    started: int | None = None  # pump time infusion started (§3's first 24 h)
    programmed: bool = False  # a program was ever set on this pump
    # the reservoir
    conc: int = 0  # mcg/mL; 0: never filled
    volume: float = 0.0  # nL the ideal pump still holds
    dead_nl: int = 0  # nL below one motor step: never delivered
    # the program
    mode: int = m.MODE_STOPPED
    prog: Program | None = None  # the program in force, or held (stopped, suspended)
    dose: int = 0  # its daily dose, ng/day
    doses: list = field(default_factory=list)  # (since, daily dose in force)
    last_increase: int | None = None
    held_dose: int = 0  # the dose in force when the program was stopped or suspended
    screens: list = field(default_factory=list)  # (time, ladder dose ng)
    pb: tuple = (0, 600, 0, 0)  # patient bolus: dose ng, duration s, lockout s, max per 24 h
    pb_uses: list = field(default_factory=list)  # times
    # sessions
    refill: tuple | None = None  # (closes at, expected nL as the pump told it, base dose)
    cap_until: int | None = None
    bolus: Bolus | None = None
    # delivery (ideal)
    cum: float = 0.0  # ng delivered since the pump was made
    hist: list = field(default_factory=list)  # (time, cum): breakpoints of a piecewise line
    changes: list = field(default_factory=list)  # times delivery changed its rate schedule
    n_changes: int = 0  # how many, ever
    # interlocks
    blocked: bool = False
    retry_at: int = 0
    active: int = 0  # modelled alarm bits
    unacked: int = 0

    def __post_init__(self):
        self.clock_base = self.clock0
        self.doses = [(0, 0)]
        self.hist = [(0.0, 0.0)]

    # -- small things ------------------------------------------------------------------------

    @property
    def clock(self):
        return self.clock_base + self.now

    def pediatric(self):
        return self.age < ADULT_AGE

    def running(self):
        return self.mode in PROGRAM_MODES

    def held(self):
        """Nothing leaves the pump: the refill path is open or the motor is blocked."""
        return self.refill is not None or self.blocked

    def usable_nl(self):
        return max(0.0, self.volume - self.dead_nl)

    def _grey(self, hours=25):
        """How far the pump's own account of a window may be from the ideal one: a few motor
        steps, and one more for each change of rate in the window (each may lose part of a
        step)."""
        n = sum(1 for t in self.changes if t > self.now - hours * 3600)
        return self.plant.max_step_ng * (3 + n) + 2

    def _change(self):
        self.changes.append(self.now)
        self.n_changes += 1

    # -- the program's doses -----------------------------------------------------------------

    @staticmethod
    def day_dose(steps):
        """A day of steps as ng/day: its integral, rounded up (a limit never sees less)."""
        n = len(steps)
        total = 0
        for i, (start, dose) in enumerate(steps):
            end = steps[i + 1][0] if i + 1 < n else steps[0][0] + 1440
            total += dose * (end - start)
        return -(-total // 1440)

    def taper_dose(self, taper, t):
        start, target, _days, cut, t0 = taper
        day = (t - t0) // DAY
        return max(target, start - cut * day)

    def prog_dose(self, prog, t=None):
        if prog.mode == m.MODE_TAPER:
            return self.taper_dose(prog.taper, self.now if t is None else t)
        return self.day_dose(prog.steps)

    def local_min(self, prog, t):
        return int(((self.clock_base + t + prog.offset_min * 60) % DAY) // 60)

    def prog_rate(self, prog, t):
        """ng/day the program runs at pump time t."""
        if prog.mode == m.MODE_TAPER:
            return self.taper_dose(prog.taper, int(t))
        steps = prog.steps
        if len(steps) == 1:
            return steps[0][1]
        minute = self.local_min(prog, t)
        rate = steps[-1][1]  # before the first start: the last step, from the day before
        for start, dose in steps:
            if start <= minute:
                rate = dose
        return rate

    def prog_breaks(self, prog, t0, t1):
        """Times in (t0, t1) where the program's rate may change."""
        out = []
        if prog.mode == m.MODE_TAPER:
            _s, _t, _d, _c, start = prog.taper
            k = (int(t0) - start) // DAY + 1
            while start + k * DAY < t1:
                out.append(start + k * DAY)
                k += 1
        elif len(prog.steps) > 1:
            base = (self.clock_base + prog.offset_min * 60) % DAY  # local second at time 0
            for start_min, _dose in prog.steps:
                first = start_min * 60 - base
                k = -(-(int(t0) + 1 - first) // DAY)
                t = first + k * DAY
                while t < t1:
                    if t > t0:
                        out.append(t)
                    t += DAY
        return sorted(out)

    def min_rate_nl(self):
        """The suspended pump's rate: the patency trickle, never above the program's own."""
        if not self.conc:
            return 0
        return min(self.plant.min_rate_nl_day, self.dose * 1000 // self.conc)

    def basal_rate(self, t):
        """ng/day the pump should give at time t if nothing holds it."""
        if self.mode == m.MODE_MINIMUM:
            return self.min_rate_nl() * self.conc / 1000
        if self.running() and self.prog is not None:
            return self.prog_rate(self.prog, t)
        return 0

    def _set_dose(self, dose):
        self.dose = dose
        self.doses.append((self.now, dose))

    def highest_dose(self, seconds):
        """The highest daily dose in force at any time in (now - seconds, now]."""
        top = 0
        for i, (_since, dose) in enumerate(self.doses):
            until = self.doses[i + 1][0] if i + 1 < len(self.doses) else self.now + 1
            if until > self.now - seconds and dose > top:
                top = dose
        return top

    # -- 24 h windows ------------------------------------------------------------------------

    def cum_at(self, t):
        """ng delivered by time t <= now (the line through the breakpoints)."""
        h = self.hist
        i = bisect_right(h, (t, float("inf"))) - 1
        if i < 0:
            return h[0][1]
        t0, c0 = h[i]
        if i + 1 >= len(h):
            return c0
        t1, c1 = h[i + 1]
        return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c1

    def future(self, what, horizon, flat_taper=False):
        """What would run from now for `horizon` s, as (start, end, ng/day) pieces. what: a
        Program, "minimum" (the patency rate) or None (nothing). flat_taper: a taper at
        today's dose throughout (a careful pump may reckon it so)."""
        t0, t1 = self.now, self.now + horizon
        if what is None:
            return []
        if what == "minimum":
            return [(t0, t1, self.min_rate_nl() * self.conc / 1000)]
        prog = what
        if prog.mode == m.MODE_TAPER and flat_taper:
            return [(t0, t1, self.taper_dose(prog.taper, t0))]
        cuts = [t0] + self.prog_breaks(prog, t0, t1) + [t1]
        return [(a, b, self.prog_rate(prog, a)) for a, b in zip(cuts, cuts[1:], strict=False)
                if b > a]

    def peak(self, length, pieces, extra):
        """The most any window of `length` s reaching from the past into the future would
        hold: what was delivered in its past part, what `pieces` give in its future part, and
        `extra` ng given at once (a bolus, or what is left of the running one)."""
        now = self.now
        ends = [now, now + length] + [a for a, _b, _r in pieces if now < a < now + length]
        ends += [t + length for t, _c in self.hist if now - length < t < now]
        # cumulative future at each piece's start
        starts = []
        acc = 0.0
        for a, b, rate in pieces:
            starts.append((a, acc, rate))
            acc += rate * (b - a) / DAY
        cum_now = self.cum_at(now)

        def fut(e):
            total = 0.0
            for a, acc0, rate in starts:
                if a < e:
                    total = acc0 + rate * (e - a) / DAY
            return total

        best = 0.0
        for e in ends:
            got = cum_now - self.cum_at(e - length) + fut(e)
            if got > best:
                best = got
        return best + extra

    def check_ceiling(self, v, code, rule, what, extra, ceiling=None, must=True):
        """Invariant 1: no 24 h window over the hard ceiling. The pump may reckon its windows
        by the quarter hour, rounded outward (README: up to 15 min longer than a day, never
        shorter; with the quarter hour under way, up to half an hour), and count a delivery
        when its loop next ran: between a day and a day, half an hour and a loop's sleep, it
        may refuse."""
        ceiling = self.ceiling if ceiling is None else ceiling
        grey = self._grey()
        exact = self.peak(DAY, self.future(what, DAY), extra)
        longer = DAY + 1800 + self.plant.loop_sleep_s
        careful = self.peak(longer, self.future(what, longer, True), extra)
        if exact - grey > ceiling and must:
            v.need(code, rule, f"{exact:.0f} ng in 24 h over the ceiling {ceiling}")
        elif careful + grey > ceiling:
            v.maybe(code, rule, f"{exact:.0f}..{careful:.0f} ng in 24 h, ceiling {ceiling}")

    # -- time --------------------------------------------------------------------------------

    def _next_event(self, t_end):
        """The next time in (now, t_end] where a rate may change."""
        t = t_end
        p = self.prog
        if p is not None and (self.running() or p.mode == m.MODE_TAPER):
            breaks = self.prog_breaks(p, self.now, t_end)
            if breaks:
                t = breaks[0]
        b = self.bolus
        if b is not None:
            for e in (b.end, b.end + b.fuzz):
                if self.now < e < t:
                    t = e
        if self.refill is not None and self.refill[0] < t:
            t = self.refill[0]
        if self.cap_until is not None and self.cap_until < t:
            t = self.cap_until
        return t

    def advance(self, seconds):
        """Let `seconds` pass: the ideal delivery, the taper's days, sessions closing.
        Returns (ng delivered, how many times the rate schedule changed meanwhile)."""
        end = self.now + seconds
        got = 0.0
        n0 = self.n_changes
        while True:
            t1 = self._next_event(end)
            if t1 > self.now:
                got += self._deliver(self.now, t1)
                self.now = t1
            self._events()
            if self.now >= end:
                break
        self.now = int(end)
        return got, self.n_changes - n0

    def _deliver(self, t0, t1):
        """Ideal delivery over [t0, t1), where every rate is constant."""
        dt = t1 - t0
        basal = 0.0 if self.held() else self.basal_rate(t0) / DAY  # ng/s
        b = self.bolus
        bolus = 0.0
        if b is not None:
            if self.held():
                b.end += dt  # paused
                b.fuzz = -(-(b.end - b.start) // max(1, b.steps)) + 1
            elif t0 < b.end:
                bolus = (b.ng - b.given) / (b.end - t0)
        want = (basal + bolus) * dt
        room = self.usable_nl() * self.conc / 1000
        frac = 1.0
        if want > room:
            frac = room / want if want else 0.0
            if b is not None:
                b.dry = True
        gave = want * frac
        if b is not None:
            b.given += bolus * dt * frac
        if self.conc:
            self.volume -= gave * 1000 / self.conc
        self.cum += gave
        # a breakpoint where the slope changes (and at the end of each piece)
        self.hist.append((float(t1), self.cum))
        self._prune()
        return gave

    def _prune(self):
        """Breakpoints older than two days are of no use to any window."""
        h = self.hist
        while len(h) > 2 and h[1][0] < self.now - 2 * DAY:
            h.pop(0)
        while len(self.changes) > 0 and self.changes[0] < self.now - 2 * DAY:
            self.changes.pop(0)
        while len(self.doses) > 1 and self.doses[1][0] < self.now - 2 * DAY:
            self.doses.pop(0)

    def _events(self):
        """What falls due at `now`."""
        t = self.now
        b = self.bolus
        if b is not None and t >= b.end + b.fuzz and not b.dry:
            self.bolus = None
            self._change()
        if self.refill is not None and t >= self.refill[0]:
            self.refill = None  # the session times out; the outlet reopens
            self._change()
        if self.cap_until is not None and t >= self.cap_until:
            self.cap_until = None
        p = self.prog
        if p is not None and p.mode == m.MODE_TAPER:
            dose = self.taper_dose(p.taper, t)
            if dose != self.dose:
                self._set_dose(dose)
                self._change()
            assert p.taper is not None
            if dose <= p.taper[1]:  # the target reached: it stays as continuous infusion
                self.prog = Program(m.MODE_CONTINUOUS, ((0, dose),), p.offset_min)
                if self.mode == m.MODE_TAPER:
                    self.mode = m.MODE_CONTINUOUS
        elif p is not None and self.running() and len(p.steps) > 1:
            if t in self.prog_breaks(p, t - 1, t + 1):
                self._change()

    def update(self, pressure_high, needle_cap, needle_septum):
        """The interlocks, as each turn of the pump's loop reads its inputs: a blocked motor
        stops and tries again every retry_s; a needle where no session allows one is an alarm
        that stays until the needle is out and the alarm acknowledged (§8, DESIGN 4)."""
        if pressure_high and not self.blocked:
            self.blocked = True
            self.retry_at = self.now + self.plant.retry_s
            self._alarm(m.ALARM_OCCLUSION, True)
            self._change()
        elif self.blocked and self.now >= self.retry_at:
            if pressure_high:
                self.retry_at = self.now + self.plant.retry_s
            else:
                self.blocked = False
                self._alarm(m.ALARM_OCCLUSION, False)
                self._change()
        elif not self.blocked and not pressure_high:
            # No blockage, the motor runs (after a reset, say): an alarm "stays active while
            # its cause does" (ALARM_ACK), no longer.
            self._alarm(m.ALARM_OCCLUSION, False)
        self._port(m.ALARM_CAP_VIOLATION, needle_cap, self.cap_until is not None)
        self._port(m.ALARM_SEPTUM_NEEDLE, needle_septum, self.refill is not None)

    def _port(self, alarm, needle, session_open):
        bit = 1 << (alarm - 1)
        if needle and not session_open:
            self._alarm(alarm, True)
        elif self.active & bit and not needle and not self.unacked & bit:
            self._alarm(alarm, False)

    def _alarm(self, alarm, on):
        bit = 1 << (alarm - 1)
        if on and not self.active & bit:
            self.active |= bit
            self.unacked |= bit
        elif not on:
            self.active &= ~bit
            self.unacked &= ~bit

    # -- requests ----------------------------------------------------------------------------

    def check(self, mtype, values, role):
        """The verdict on a request from `role`, before it runs."""
        v = Verdict(message_row(mtype)[1])
        wire_violations(v, mtype, values)
        allowed = CLINICIAN_REQUESTS if role == m.ROLE_CLINICIAN else (
            PATIENT_REQUESTS if role == m.ROLE_PATIENT else ())
        if mtype not in allowed:
            v.need(m.ERR_WRONG_ROLE, 0, f"{m.ROLE_NAMES[role]} may not send it")
        if v.must:  # refused before any rule reads it
            return v
        getattr(self, "_check_" + message_row(mtype)[1].lower())(v, *values)
        return v

    def apply(self, mtype, values, answer):
        """The request was carried out: the model follows. answer: the pump's response values
        (only REFILL_OPEN's expected volume is taken from it: the drained volume is compared
        with what the pump told the clinician; it is checked against the model apart)."""
        getattr(self, "_do_" + message_row(mtype)[1].lower())(answer, *values)

    # profile (§10)

    def _check_injury(self, v, injury_s, what):
        """§10: a year since the brain injury on injury_s (0: none), by the clock now."""
        if not injury_s:
            return
        clock = self.clock
        if injury_s > clock:
            # A date to come: refused; the rules do not say by which code (a wrong date, or
            # a year not passed).
            v.need(m.ERR_OUT_OF_RANGE, m.RULE_BRAIN_INJURY_WAIT, f"{what}: injury after the clock")
            v.maybe(m.ERR_TOO_SOON, m.RULE_BRAIN_INJURY_WAIT, "injury after the clock")
        elif clock - injury_s < YEAR_MIN_S:
            v.need(m.ERR_TOO_SOON, m.RULE_BRAIN_INJURY_WAIT,
                   f"{what}: {(clock - injury_s) // DAY} days after the injury")
        elif clock < year_after(injury_s):
            v.maybe(m.ERR_TOO_SOON, m.RULE_BRAIN_INJURY_WAIT, f"{what}: 365 days, not a year")

    def _check_first_therapy(self, v):
        """§10: the first therapy (a screening bolus, a program, a bolus) waits a year after a
        brain injury, by the clock when it is given (a clock set after the profile counts).
        Once therapy began the rule has no more to say. A pump may count only programs and
        screening boluses as its beginning (and check again after a priming or clinician
        bolus given before any program)."""
        if self.programmed or self.screens:
            return
        if not self.bolused:
            self._check_injury(v, self.brain_injury_s, "first therapy")
            return
        w = Verdict("after a bolus")
        self._check_injury(w, self.brain_injury_s, "first program after a bolus")
        for code, rule, why in w.must + w.may:
            v.maybe(code, rule, why)

    def _check_set_profile(self, v, origin, age, phase, ceiling, catheter_nl, start_s,
                           injury_s):
        if age < MIN_AGE:
            v.need(m.ERR_LIMIT, m.RULE_PATIENT_AGE, f"{age} years")
        # §10: a profile says the patient is a candidate: not under a year after the injury.
        self._check_injury(v, injury_s, "profile")
        started = self.programmed or self.started is not None
        if phase == m.PHASE_SCREENING and started:
            v.need(m.ERR_INVALID_STATE, m.RULE_PHASE, "infusion has started: no screening")
        # What the pump will still deliver in the next 24 h (the program running, what is
        # left of a bolus) must fit under the new ceiling, or the ceiling would be broken by
        # the pump itself (DESIGN 1). The README's list of ceiling checks does not name the
        # profile, so a pump may also count the last 24 h's delivery, or a program held for a
        # resume (which checks it again): those are grey.
        what = self.prog if self.running() else (
            "minimum" if self.mode == m.MODE_MINIMUM else None)
        ahead = sum(r * (b - a) / DAY for a, b, r in self.future(what, DAY))
        ahead += self._bolus_left()
        if ahead - self._grey() > ceiling:
            v.need(m.ERR_LIMIT, m.RULE_HARD_CEILING, f"{ahead:.0f} ng ahead > {ceiling}")
        elif self.prog is not None and self.dose > ceiling - self._grey():
            v.maybe(m.ERR_LIMIT, m.RULE_HARD_CEILING, f"program {self.dose} > {ceiling}")
        self.check_ceiling(v, m.ERR_LIMIT, m.RULE_HARD_CEILING, self.prog, self._bolus_left(),
                           ceiling, must=False)
        if start_s and started and start_s != self.infusion_start_s:
            if self.programmed:
                v.need(m.ERR_INVALID_STATE, m.RULE_INFUSION_START, "infusion ran on this pump")
            else:  # only a profile gave the start: the rules do not say whether it may move
                v.maybe(m.ERR_INVALID_STATE, m.RULE_INFUSION_START, "a start was set")

    def _do_set_profile(self, _answer, origin, age, phase, ceiling, catheter_nl, start_s,
                        injury_s):
        self.origin, self.age, self.phase = origin, age, phase
        self.ceiling, self.catheter_nl = ceiling, catheter_nl
        self.brain_injury_s = injury_s
        if start_s:
            self.infusion_start_s = start_s
            self.started = self.now - (self.clock - start_s)

    # programs (§3, §4, §5, §7)

    def _setup(self, v):
        """A program or a bolus needs a profile past screening and a drug in the reservoir."""
        if self.phase == m.PHASE_UNSET:
            v.need(m.ERR_INVALID_STATE, m.RULE_PROFILE_REQUIRED, "no profile")
            return False
        if self.phase == m.PHASE_SCREENING:
            v.need(m.ERR_INVALID_STATE, m.RULE_PHASE, "screening: boluses only")
            return False
        if not self.conc:
            v.need(m.ERR_INVALID_STATE, m.RULE_RESERVOIR, "no drug")
            return False
        return True

    def _check_set_continuous(self, v, dose, confirm):
        self._check_program(v, Program(m.MODE_CONTINUOUS, ((0, dose),), self._offset()), confirm)

    def _do_set_continuous(self, _answer, dose, confirm):
        self._do_program(Program(m.MODE_CONTINUOUS, ((0, dose),), self._offset()))

    def _check_set_flex(self, v, confirm, offset, steps):
        if any(steps[i][0] <= steps[i - 1][0] for i in range(1, len(steps))):
            v.need(m.ERR_LIMIT, m.RULE_FLEX_STEPS, "steps not in rising order")
            self._setup(v)
            return
        self._check_program(v, Program(m.MODE_FLEX, tuple(steps), offset), confirm)

    def _do_set_flex(self, _answer, confirm, offset, steps):
        self._do_program(Program(m.MODE_FLEX, tuple(tuple(s) for s in steps), offset))

    def _offset(self):
        return self.prog.offset_min if self.prog is not None else 0

    def _pct(self, maintenance):
        small = self.origin != m.ORIGIN_SPINAL or self.pediatric()
        if maintenance:
            return MAINTENANCE_PCT_OTHER if small else MAINTENANCE_PCT_SPINAL
        return TITRATION_PCT_OTHER if small else TITRATION_PCT_SPINAL_ADULT

    def _check_program(self, v, prog, confirm):
        if not self._setup(v):
            return
        self._check_first_therapy(v)
        top = max(d for _s, d in prog.steps)
        if top * 1000 > self.plant.max_rate_nl_day * self.conc:
            v.need(m.ERR_LIMIT, m.RULE_PUMP_RATE, f"{top} ng/day at {self.conc} mcg/mL")
        new = self.prog_dose(prog)
        self.check_ceiling(v, m.ERR_LIMIT, m.RULE_HARD_CEILING, prog, self._bolus_left())
        if new > HIGH_DOSE_NG and not confirm & m.CONFIRM_HIGH_DOSE:
            v.need(m.ERR_NOT_CONFIRMED, m.RULE_HIGH_DOSE, f"{new} > 1000 mcg/day")
        old = self.dose
        if not self.programmed:
            if self.screens and new > 2 * self.screens[-1][1]:
                v.need(m.ERR_LIMIT, m.RULE_STARTING_DOSE, f"{new} > 2 x screening")
        elif new > old:
            self._check_increase(v, new, old)
        elif new < old:
            self._check_cut(v, new, confirm)

    def _check_increase(self, v, new, old):
        now = self.now
        if self.started is not None and now - self.started < FIRST_DAY_S:
            v.need(m.ERR_TOO_SOON, m.RULE_FIRST_24H, f"{now - self.started} s into infusion")
        if self.phase == m.PHASE_MAINTENANCE:
            if self.refill is None:
                v.need(m.ERR_INVALID_STATE, m.RULE_MAINTENANCE_AT_REFILL, "no refill visit")
                return
            base = self.refill[2]  # the limit is per visit, from the dose when it opened
            pct = self._pct(True)
            if new * 100 > base * (100 + pct):
                v.need(m.ERR_LIMIT, m.RULE_MAINTENANCE_STEP, f"{new} > {base} + {pct} %")
            return
        if self.last_increase is not None and now - self.last_increase < DAY:
            v.need(m.ERR_TOO_SOON, m.RULE_TITRATION_INTERVAL, "an increase within 24 h")
        pct = self._pct(False)
        if new * 100 > old * (100 + pct):
            v.need(m.ERR_LIMIT, m.RULE_TITRATION_STEP, f"{new} > {old} + {pct} %")

    def _check_cut(self, v, new, confirm):
        if confirm & m.CONFIRM_LARGE_DECREASE:
            return
        top = self.highest_dose(DAY)
        if new * 100 < top * (100 - CUT_PCT):
            v.need(m.ERR_NOT_CONFIRMED, m.RULE_LARGE_DECREASE, f"{new} < 80 % of {top}")
            return
        # A pump that keeps the highest dose per quarter hour remembers it a little longer.
        top = self.highest_dose(DAY + 900)
        if new * 100 < top * (100 - CUT_PCT) + 100:
            v.maybe(m.ERR_NOT_CONFIRMED, m.RULE_LARGE_DECREASE, f"{new} ~ 80 % of {top}")

    def _do_program(self, prog):
        new = self.prog_dose(prog)
        if self.started is None:
            self.started = self.now
            self.infusion_start_s = self.clock
        if self.programmed and new > self.dose:
            self.last_increase = self.now
        self.programmed = True
        self.prog = prog
        self.mode = prog.mode
        self._set_dose(new)
        self._change()

    def _check_set_taper(self, v, target, days, confirm):
        if not TAPER_DAYS[0] <= days <= TAPER_DAYS[1]:
            v.need(m.ERR_LIMIT, m.RULE_TAPER, f"{days} days")
        start = self.dose
        if self.prog is None or not 0 < target < start:
            v.need(m.ERR_LIMIT, m.RULE_TAPER, f"from {start} down to {target}")
            return
        if not self._setup(v):
            return
        cut = -(-(start - target) // days)  # equal cuts, rounded up: the target in `days`
        if not confirm & m.CONFIRM_LARGE_DECREASE:
            worst = 0  # the largest cut of one day on the day before, in 1/100 %
            for d in range(1, days + 1):
                a, b = max(target, start - cut * (d - 1)), max(target, start - cut * d)
                if a > b:
                    worst = max(worst, (a - b) * 10_000 // a)
            if worst > CUT_PCT * 100:
                v.need(m.ERR_NOT_CONFIRMED, m.RULE_LARGE_DECREASE, f"a day cut {worst} / 100 %")
            elif cut * 100 > CUT_PCT * (target + cut) - 100:
                # a careful pump may reckon the last day's cut on target + a whole cut
                v.maybe(m.ERR_NOT_CONFIRMED, m.RULE_LARGE_DECREASE, "last day's cut ~ 20 %")
        if not self.running():
            # From a stop or a suspension a taper restarts delivery: the same check as a
            # resume (DESIGN invariant 1).
            taper = Program(m.MODE_TAPER, ((0, start),), self._offset(),
                            (start, target, days, cut, self.now))
            self.check_ceiling(v, m.ERR_LIMIT, m.RULE_HARD_CEILING, taper, self._bolus_left())

    def _do_set_taper(self, _answer, target, days, confirm):
        start = self.dose
        cut = -(-(start - target) // days)
        self.prog = Program(m.MODE_TAPER, ((0, start),), self._offset(),
                            (start, target, days, cut, self.now))
        self.mode = m.MODE_TAPER
        self._set_dose(start)
        self._change()

    # stopping (§7, §9)

    def _check_stop(self, v, reason, word):
        if word != m.STOP_CONFIRM:
            v.need(m.ERR_NOT_CONFIRMED, m.RULE_STOP_REASON, "no confirmation word")

    def held_doses(self):
        """The daily doses a pump may report while a program is held. A taper's days go on
        by the calendar (its end date is fixed when it is set), but the rules do not say
        whether the dose "in force" while it is held is that day's or the held day's."""
        if self.mode in (m.MODE_STOPPED, m.MODE_MINIMUM) and self.prog is not None and (
                self.prog.mode == m.MODE_TAPER or self.held_dose != self.dose):
            return (self.dose, self.held_dose)
        return (self.dose,)

    def _do_stop(self, _answer, reason, word):
        if self.running():
            self.held_dose = self.dose
        self.mode = m.MODE_STOPPED
        self.bolus = None  # §9: an emergency stop does not wait, a bolus stops too
        self._change()

    def _check_suspend(self, v, reason, word):
        if word != m.STOP_CONFIRM:
            v.need(m.ERR_NOT_CONFIRMED, m.RULE_STOP_REASON, "no confirmation word")
        if self.prog is None:
            v.need(m.ERR_INVALID_STATE, 0, "no program to hold")

    def _do_suspend(self, _answer, reason, word):
        if self.running():
            self.held_dose = self.dose
        self.mode = m.MODE_MINIMUM
        self.bolus = None
        self._change()

    def _check_resume(self, v):
        if self.prog is None:
            v.need(m.ERR_INVALID_STATE, 0, "no program")
            return
        if self.mode == self.prog.mode:
            v.need(m.ERR_INVALID_STATE, 0, "the program is running")
            return
        self.check_ceiling(v, m.ERR_LIMIT, m.RULE_HARD_CEILING, self.prog, self._bolus_left())

    def _do_resume(self, _answer):
        assert self.prog is not None
        self.mode = self.prog.mode
        self._change()

    # boluses (§2, §9, the profile's ceiling)

    def _bolus_left(self):
        b = self.bolus
        return max(0.0, b.ng - b.given) if b is not None else 0.0

    def _check_bolus_common(self, v, dose, duration):
        if not self.conc:
            v.need(m.ERR_INVALID_STATE, m.RULE_RESERVOIR, "no drug")
            return
        if self.bolus is not None:
            if self.bolus.surely_running(self.now):
                v.need(m.ERR_INVALID_STATE, 0, "a bolus is running")
            else:
                v.maybe(m.ERR_INVALID_STATE, 0, "a bolus that ran dry or was paused")
        if self.refill is not None:
            v.need(m.ERR_INVALID_STATE, 0, "the refill session holds the outlet")
        step_pg = self.plant.step_nl * self.conc
        steps = dose * 1000 // step_pg
        if steps == 0:
            v.need(m.ERR_OUT_OF_RANGE, 0, "less than a motor step")
            return
        if steps * self.plant.step_nl * 60 > self.plant.max_bolus_nl_min * duration:
            v.need(m.ERR_LIMIT, m.RULE_PUMP_RATE, "faster than the mechanism")
        what = None if self.mode == m.MODE_STOPPED else (
            "minimum" if self.mode == m.MODE_MINIMUM else self.prog)
        self.check_ceiling(v, m.ERR_LIMIT, m.RULE_BOLUS_CEILING, what, steps * step_pg / 1000)

    def _start_bolus(self, kind, dose, duration):
        self.bolused = True
        step_pg = self.plant.step_nl * self.conc
        steps = dose * 1000 // step_pg
        self.bolus = Bolus(kind, steps, steps * step_pg / 1000, self.now, self.now + duration)
        self._change()

    def _check_bolus(self, v, dose, duration):
        if self._setup(v):
            self._check_first_therapy(v)
            self._check_bolus_common(v, dose, duration)

    def _do_bolus(self, _answer, dose, duration):
        self._start_bolus(m.BOLUS_CLINICIAN, dose, duration)

    def _check_prime(self, v, duration):
        if not self._setup(v):
            return
        self._check_first_therapy(v)
        if not self.catheter_nl:
            v.need(m.ERR_INVALID_STATE, m.RULE_PROFILE_REQUIRED, "no catheter volume")
            return
        self._check_bolus_common(v, self.catheter_nl * self.conc // 1000, duration)

    def _do_prime(self, _answer, duration):
        self._start_bolus(m.BOLUS_PRIMING, self.catheter_nl * self.conc // 1000, duration)

    def screening_next(self):
        """The largest screening dose allowed next (0: none)."""
        if not self.screens:
            return SCREEN_LADDER[0]
        last = self.screens[-1][1]
        ladder = (SCREEN_CHILD_FIRST,) + SCREEN_LADDER
        i = ladder.index(last)
        return ladder[i + 1] if i + 1 < len(ladder) else 0

    def _check_screen(self, v, dose, duration):
        if self.phase != m.PHASE_SCREENING:
            v.need(m.ERR_INVALID_STATE, m.RULE_PHASE, "not the screening phase")
            return
        self._check_first_therapy(v)
        if duration < SCREEN_MIN_S:
            v.need(m.ERR_LIMIT, m.RULE_SCREENING_DURATION, f"{duration} s")
        if dose > SCREEN_LADDER[-1]:
            v.need(m.ERR_LIMIT, m.RULE_SCREENING_DOSE, "over 100 mcg")
        child_first = (not self.screens and self.pediatric() and dose == SCREEN_CHILD_FIRST)
        if not child_first and (dose not in SCREEN_LADDER or dose > self.screening_next()):
            v.need(m.ERR_LIMIT, m.RULE_SCREENING_DOSE, f"{dose} ng, next {self.screening_next()}")
        if self.screens and self.now - self.screens[-1][0] < SCREEN_GAP_S:
            v.need(m.ERR_TOO_SOON, m.RULE_SCREENING_INTERVAL, "within 24 h")
        self._check_bolus_common(v, dose, duration)

    def _do_screen(self, _answer, dose, duration):
        self._start_bolus(m.BOLUS_SCREENING, dose, duration)
        self.screens.append((self.now, dose))

    def pb_used(self):
        return [t for t in self.pb_uses if self.now - t < DAY]

    def _check_patient_bolus(self, v):
        dose, duration, lockout, most = self.pb
        if not dose:
            v.need(m.ERR_INVALID_STATE, m.RULE_PATIENT_BOLUS_OFF, "off")
            return
        if self.mode in (m.MODE_STOPPED, m.MODE_MINIMUM):
            v.need(m.ERR_INVALID_STATE, 0, "therapy is held")
        used = self.pb_used()
        if len(used) >= most:
            v.need(m.ERR_TOO_SOON, m.RULE_PATIENT_BOLUS_MAX, f"{len(used)} in 24 h")
        if used and self.now - max(used) < lockout:
            v.need(m.ERR_TOO_SOON, m.RULE_PATIENT_BOLUS_LOCKOUT, "inside the lockout")
        self._check_bolus_common(v, dose, duration)

    def _do_patient_bolus(self, _answer):
        self._start_bolus(m.BOLUS_PATIENT, self.pb[0], self.pb[1])
        self.pb_uses = self.pb_used() + [self.now]

    def _check_set_patient_bolus(self, v, dose, duration, lockout, most):
        if not dose:
            return
        if not self._setup(v):
            return
        if not most:
            v.need(m.ERR_OUT_OF_RANGE, 0, "max_per_day 0")
            return
        if dose * most > self.ceiling - self.dose:
            v.need(m.ERR_LIMIT, m.RULE_BOLUS_CEILING, "the day's boluses pass the ceiling")

    def _do_set_patient_bolus(self, _answer, dose, duration, lockout, most):
        self.pb = (dose, duration, lockout, most if dose else 0)

    # refill and CAP (§8, DESIGN 4)

    def _check_refill_begin(self, v):
        if self.phase == m.PHASE_UNSET:
            v.need(m.ERR_INVALID_STATE, m.RULE_PROFILE_REQUIRED, "no profile")
        if self.refill is not None or self.cap_until is not None:
            v.need(m.ERR_INVALID_STATE, 0, "a session is open")

    def _do_refill_begin(self, answer):
        expected = answer[0]
        self.bolus = None  # the outlet closes: nothing leaves the pump
        self.refill = (self.now + self.plant.refill_timeout_s, expected, self.dose)
        self._change()

    def _check_refill_commit(self, v, drained, fill, drug, conc, again, confirm):
        if self.refill is None:
            v.need(m.ERR_INVALID_STATE, 0, "no refill session")
            return
        if conc != again:
            v.need(m.ERR_NOT_CONFIRMED, m.RULE_CONCENTRATION, "entered twice, not the same")
        if conc > MAX_STRENGTH:
            v.need(m.ERR_LIMIT, m.RULE_CONCENTRATION, f"{conc} mcg/mL")
        elif conc not in STRENGTHS and not confirm & m.CONFIRM_CUSTOM_CONCENTRATION:
            v.need(m.ERR_NOT_CONFIRMED, m.RULE_CUSTOM_CONCENTRATION, f"{conc} mcg/mL")
        if fill > self.plant.capacity_nl:
            v.need(m.ERR_LIMIT, m.RULE_OVERFILL, f"{fill} nL")
        expected = self.refill[1]
        off = abs(drained - expected)
        if (off * 100 > DRAIN_PCT * expected and off > self.plant.drain_tolerance_nl
                and not confirm & m.CONFIRM_DRAIN_MISMATCH):
            v.need(m.ERR_NOT_CONFIRMED, m.RULE_DRAIN_MISMATCH, f"{drained} vs {expected}")
        if self.prog is not None and fill and conc <= MAX_STRENGTH:
            top = max(d for _s, d in self.prog.steps)
            if self.prog.mode == m.MODE_TAPER:
                top = self.dose
            if top * 1000 > self.plant.max_rate_nl_day * conc:
                v.need(m.ERR_LIMIT, m.RULE_PUMP_RATE, f"{top} ng/day at {conc} mcg/mL")

    def _do_refill_commit(self, _answer, drained, fill, drug, conc, again, confirm):
        self.conc = conc
        self.volume = float(fill)
        self.dead_nl = fill % self.plant.step_nl
        self.refill = None
        self._change()

    def _check_refill_abort(self, v):
        if self.refill is None:
            v.need(m.ERR_INVALID_STATE, 0, "no refill session")

    def _do_refill_abort(self, _answer):
        self.refill = None
        self._change()

    def _check_cap_begin(self, v, duration):
        if self.refill is not None or self.cap_until is not None:
            v.need(m.ERR_INVALID_STATE, 0, "a session is open")

    def _do_cap_begin(self, _answer, duration):
        self.cap_until = self.now + duration

    def _check_cap_end(self, v):
        if self.cap_until is None:
            v.need(m.ERR_INVALID_STATE, 0, "no CAP session")

    def _do_cap_end(self, _answer):
        self.cap_until = None

    # the rest

    def _check_set_clock(self, v, time_s):
        pass

    def _do_set_clock(self, _answer, time_s):
        self.clock_base = time_s - self.now
        if self.prog is not None and self.running() and len(self.prog.steps) > 1:
            self._change()

    def _check_alarm_ack(self, v, alarm):
        if not self.active & (1 << (alarm - 1)):
            v.need(m.ERR_INVALID_STATE, 0, "that alarm is not active")

    def _do_alarm_ack(self, _answer, alarm):
        self.unacked &= ~(1 << (alarm - 1))

    # -- a reset -----------------------------------------------------------------------------

    def restarted(self, gap_s):
        """This model as saved on flash, after a reset: `gap_s` s passed with the pump off
        (None: the clock did not survive, so no time counts as passed and the clock resumes
        from the saved one). §7: the programmed therapy resumes at once; a bolus the reset cut
        short is not given; sessions are closed (DESIGN 3, 4)."""
        if gap_s:
            self.now += gap_s
            self.hist.append((float(self.now), self.cum))
        self.bolus = None
        self.refill = None
        self.cap_until = None
        self.blocked = False
        self._change()
        p = self.prog
        if p is not None and p.mode == m.MODE_TAPER:
            self._events()  # the taper's days went on while the pump was off
