"""Property tests of the therapy engine (firmware/core/therapy.py) through the firmware's own
dispatcher (firmware/core/dispatch.py), on CPython with Hypothesis.

For random sequences of commands (continuous and flex programs, clinician and patient boluses
with their settings, stop/suspend/resume, refill sessions, tapers, CAP sessions) and time
advances, on a therapy from tests/board/therapy_kit.ready():

- DESIGN safety invariant 1: the dose delivered in any window of at most 24 h (each advance's
  delivered ng, at its time, in sliding windows) never exceeds (a) the patient's hard ceiling
  (plus one motor step) and (b) what the programs in force over the window prescribe (their
  rate integrated over it, flex steps and tapers included, as the engine reports them) plus
  the boluses delivered in it (authorised in it, or still running in it) plus one motor step
  for each program change in it (the part of a step carried over a change).
  (b) is the DESIGN wording, "what is programmed": a day reshaped by a program change can
  put more into one 24 h window than either program's daily dose; only the ceiling bounds
  that (README: "What is not there yet").
- A refused command changes nothing: the program, the profile, every STATUS field, the
  patient-bolus, screening and alarm state and the engine's counters are as before, and the
  event log grew by exactly the one refusal record (EV_REFUSED with the error code).
- No command makes the firmware raise (ERR_INTERNAL).

Sized to run in well under 60 s; examples are derandomized so that a run is reproducible.
"""

import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent / "board"))

import therapy_kit as kit  # noqa: E402

from firmware.core import schedule  # noqa: E402
from protocol import messages as m  # noqa: E402

DAY_MS = 86_400_000
DAY_S = 86_400
CHUNK_MS = 30 * 60 * 1000  # the longest the simulated loop sleeps between two samples
CONCENTRATIONS = (50, 500, 1000, 2000)


# -- strategies --------------------------------------------------------------------------------

# Hypothesis favours small numbers: mix in typical doses so that pumps deliver real volumes.
typical_doses = st.sampled_from((50_000, 100_000, 300_000, 600_000, 1_000_000, 1_400_000))
confirm_flags = st.sampled_from((0, 0, m.CONFIRM_HIGH_DOSE, m.CONFIRM_LARGE_DECREASE, 0x0F))


def flex_steps(relative):
    """2 to 4 steps at rising minutes. relative: doses in percent of the dose in force."""
    dose = st.integers(10, 300) if relative else st.integers(1000, 2_000_000)
    return st.integers(2, 4).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 1439), min_size=n, max_size=n, unique=True).map(sorted),
            st.lists(dose, min_size=n, max_size=n),
        )
    )


def commands(flex):
    cmds = [
        st.tuples(
            st.just("cont"), st.one_of(st.integers(1000, 2_000_000), typical_doses), confirm_flags
        ),
        st.tuples(st.just("cont%"), st.integers(50, 145), confirm_flags),
        st.tuples(
            st.just("bolus"),
            st.one_of(st.integers(1, 600_000), st.sampled_from((25_000, 50_000, 100_000))),
            st.one_of(st.integers(60, 86_400), st.sampled_from((60, 600, 3600))),
        ),
        st.tuples(
            st.just("pbset"),
            st.integers(0, 200_000),
            st.integers(60, 3600),
            st.integers(0, 14_400),
            st.integers(0, 24),
        ),
        st.tuples(st.just("pb")),
        st.tuples(st.just("stop"), st.integers(1, 4), st.booleans()),
        st.tuples(st.just("suspend"), st.integers(1, 4), st.booleans()),
        st.tuples(st.just("resume")),
        st.tuples(
            st.just("refill"),
            st.integers(0, 2),  # drained: as expected, 30 % off, nothing
            st.integers(0, 21_000_000),
            st.sampled_from(CONCENTRATIONS + (750, 2500)),
            st.booleans(),  # the second entry matches
            st.sampled_from((0, m.CONFIRM_CUSTOM_CONCENTRATION, 0x0F)),
        ),
        st.tuples(st.just("refill_begin")),
        st.tuples(st.just("refill_abort")),
        st.tuples(st.just("taper"), st.integers(1, 99), st.integers(14, 28), confirm_flags),
        st.tuples(st.just("cap"), st.integers(60, 1800)),
    ]
    if flex:
        cmds += [
            st.tuples(st.just("flex"), confirm_flags, st.integers(-720, 840), flex_steps(False)),
            st.tuples(st.just("flex%"), confirm_flags, st.integers(-720, 840), flex_steps(True)),
            st.tuples(st.just("flex%"), confirm_flags, st.integers(-720, 840), flex_steps(True)),
        ]
    return st.one_of(cmds)


# Time after each command: often minutes, often hours, sometimes a day; some boundaries.
pauses = st.one_of(
    st.integers(0, 3600),
    st.integers(3600, 12 * 3600),
    st.integers(6 * 3600, 30 * 3600),
    st.sampled_from((60, 3600, 6 * 3600, 12 * 3600, 24 * 3600)),
)
MAX_SIMULATED_MS = 4 * DAY_MS  # per example: enough for several 24 h windows, and fast


def scripts(flex, pause=pauses, max_size=25):
    """Lists of (command, seconds to let pass after it)."""
    return st.lists(st.tuples(commands(flex), pause), min_size=3, max_size=max_size)


setups = st.fixed_dictionaries(
    {
        "origin": st.sampled_from((m.ORIGIN_SPINAL, m.ORIGIN_CEREBRAL)),
        "age": st.integers(4, 90),
        "phase": st.sampled_from((m.PHASE_TITRATION, m.PHASE_MAINTENANCE)),
        "ceiling_ng": st.one_of(
            st.integers(100_000, 3_000_000), st.sampled_from((1_000_000, 1_500_000, 2_000_000))
        ),
        "concentration": st.sampled_from(CONCENTRATIONS),
        "fill_nl": st.one_of(st.integers(1_000_000, kit.CAPACITY_NL), st.just(kit.CAPACITY_NL)),
        "started_ago_s": st.sampled_from((0, 2 * 86400)),
        "first_ng": st.one_of(st.integers(1000, 1_500_000), typical_doses),
    }
)


# -- the model around the engine ---------------------------------------------------------------


class Run:
    """A therapy, its dispatcher, and what happened: delivery samples, doses in force,
    boluses."""

    def __init__(self, setup):
        self.t = t = kit.ready(
            origin=setup["origin"],
            age=setup["age"],
            phase=setup["phase"],
            ceiling_ng=setup["ceiling_ng"],
            concentration=setup["concentration"],
            fill_nl=setup["fill_nl"],
        )
        self.d = kit.dispatcher(t)
        self.ceiling = setup["ceiling_ng"]
        self.ms = 0  # time since the start, ms
        self.steps_ng = [self.step_ng()]
        self.boluses = []  # (authorised at ms, ends at ms, ng)
        self.refusals = 0
        self.accepted = 0
        self.programmed = 0  # ng the programs in force prescribed so far (1/86400 ng units)
        self.changes = 0
        if setup["started_ago_s"]:
            self.call(
                m.SET_PROFILE,
                (
                    setup["origin"],
                    setup["age"],
                    setup["phase"],
                    setup["ceiling_ng"],
                    200_000,
                    kit.CLOCK0 - setup["started_ago_s"],
                    0,
                ),
            )
        self.call(m.SET_CONTINUOUS, (setup["first_ng"], m.CONFIRM_HIGH_DOSE))
        # Samples: (ms, delivered ng, ng prescribed so far, program changes so far).
        self.samples = [(0, t.pump.delivered_ng(), 0, 0)]

    def step_ng(self):
        return (self.t.pump.pg_per_step() + 999) // 1000

    def snapshot(self):
        t = self.t
        p = t.pump
        return (
            self.d.status(),
            t.program(),
            t.profile(),
            t.patient_bolus_state(),
            t.screening(),
            t.alarm_state(),
            t.sessions(),
            (t.mode, t.program_mode, t.stop_reason, t.change_ms, t.steps, t.utc_offset_min),
            (t.taper_start_ng, t.taper_target_ng, t.taper_days, t.taper_day),
            (tuple(t.in_force.v), t.last_increase_up, t.increase_n, t.programmed),
            (t.refill_base_ng, tuple(t.pb_up), t.start_up, t.last_screen_up),
            (t.refill_end_up, t.refill_expected_nl, t.cap_end_up, t.refill_due_up),
            (p.held, p.bolus_steps, p.basal_nl_day, p.basal.whole, p.basal.rem, p.basal.acc),
            (p.basal.divisor, p.basal.wait, p.bolus.wait, p.volume_nl, p.concentration),
        )

    def call(self, mtype, values, role=m.ROLE_CLINICIAN):
        """One request through the dispatcher; checks what a refusal must (not) do."""
        before = self.snapshot()
        logged = self.t.log.total
        rtype, out = self.d.handle(mtype, values, role)
        if rtype == m.ERROR:
            code = out[0]
            assert code != m.ERR_INTERNAL, f"0x{mtype:02x}{values!r} raised: {out[-1]}"
            self.refusals += 1
            after = self.snapshot()
            assert after == before, (
                f"refused 0x{mtype:02x}{values!r} ({out[-1]}) changed the state:\n{before!r}\n"
                f"{after!r}"
            )
            assert self.t.log.total == logged + 1, "a refusal is one log record"
            rec = self.t.log.get(logged)
            assert rec is not None
            assert rec[1] == m.EV_REFUSED and rec[5] == code and rec[3] == out[2], rec
            return None
        assert rtype == mtype | 0x80
        self.accepted += 1
        if mtype in (m.SET_CONTINUOUS, m.SET_FLEX, m.SET_TAPER, m.SUSPEND, m.RESUME, m.STOP,
                     m.REFILL_BEGIN, m.REFILL_COMMIT, m.REFILL_ABORT):
            self.changes += 1
        if mtype in (m.BOLUS, m.PATIENT_BOLUS):
            dose, duration = int(out[1]), int(out[3])
            self.boluses.append((self.ms, self.ms + duration * 1000, dose))
        if mtype == m.REFILL_COMMIT:
            self.steps_ng.append(self.step_ng())
        return out

    def note(self):
        t = self.t
        self.samples.append((self.ms, t.pump.delivered_ng(), self.programmed // DAY_S,
                             self.changes))

    def prescribed(self, ms):
        """What the program in force prescribes over the next ms (as ng * 86400): computed
        from the program the engine reports, before the time passes."""
        t = self.t
        p = t.pump
        if p.held or p.blocked or not p.concentration or p.volume_nl < p.step_nl:
            return 0
        if t.mode == m.MODE_MINIMUM:
            return p.basal_nl_day * p.concentration * ms // 1000 // 1000
        if t.mode == m.MODE_STOPPED:
            return 0
        sod = schedule.local_s(p.clock_s(), t.utc_offset_min)
        return schedule.ng_over(t.steps, sod, (ms + 999) // 1000) * DAY_S

    def advance(self, s):
        ms = s * 1000
        if ms > MAX_SIMULATED_MS - self.ms:
            ms = MAX_SIMULATED_MS - self.ms
        while ms > 0:
            d = CHUNK_MS if ms > CHUNK_MS else ms
            e = self.t.ms_until_event()
            if 0 < e < d:
                d = e
            self.programmed += self.prescribed(d)
            held = self.t.pump.held
            self.t.advance(d)
            if self.t.pump.held != held:  # a refill session that timed out: the outlet
                self.changes += 1  # reopens mid-step, like a change of program
            self.ms += d
            ms -= d
            self.note()

    def play(self, cmd):
        t = self.t
        op = cmd[0]
        if op == "cont":
            self.call(m.SET_CONTINUOUS, (cmd[1], cmd[2]))
        elif op == "cont%":
            dose = max(1000, t.daily_ng * cmd[1] // 100)
            self.call(m.SET_CONTINUOUS, (dose, cmd[2]))
        elif op in ("flex", "flex%"):
            starts, doses = cmd[3]
            if op == "flex%":
                doses = [max(1000, t.daily_ng * p // 100) for p in doses]
            steps = tuple(zip(starts, doses, strict=True))
            self.call(m.SET_FLEX, (cmd[1], cmd[2], steps))
        elif op == "bolus":
            self.call(m.BOLUS, (cmd[1], cmd[2]))
        elif op == "pbset":
            self.call(m.SET_PATIENT_BOLUS, cmd[1:])
        elif op == "pb":
            self.call(m.PATIENT_BOLUS, (), m.ROLE_PATIENT)
        elif op in ("stop", "suspend"):
            word = m.STOP_CONFIRM if cmd[2] else m.STOP_CONFIRM ^ 0x100
            self.call(m.STOP if op == "stop" else m.SUSPEND, (cmd[1], word))
        elif op == "resume":
            self.call(m.RESUME, ())
        elif op == "refill":
            _op, drained_sel, fill, conc, same, confirm = cmd
            opened = self.call(m.REFILL_BEGIN, ())
            if opened is not None:
                expected = opened[0]
                drained = (expected, expected * 13 // 10, 0)[drained_sel]
                again = conc if same else conc + 1
                self.call(m.REFILL_COMMIT, (drained, fill, m.DRUG_BACLOFEN, conc, again, confirm))
        elif op == "refill_begin":
            self.call(m.REFILL_BEGIN, ())
        elif op == "refill_abort":
            self.call(m.REFILL_ABORT, ())
        elif op == "taper":
            target = max(1000, t.daily_ng * cmd[1] // 100)
            self.call(m.SET_TAPER, (target, cmd[2], cmd[3]))
        elif op == "cap":
            if self.call(m.CAP_BEGIN, (cmd[1],)) is not None:
                self.call(m.CAP_END, ())
        else:
            raise AssertionError(op)
        self.note()

    def check_windows(self):
        """Invariant 1 over every window (t_j, t_i] of at most 24 h between samples."""
        s = self.samples
        step = max(self.steps_ng)
        top_ceiling = 0
        j_min = 0
        for i in range(1, len(s)):
            ti, di, pi, ci = s[i]
            while ti - s[j_min][0] > DAY_MS:
                j_min += 1
            # (a) the hard ceiling, over the longest window ending here.
            got = di - s[j_min][1]
            if got > top_ceiling:
                top_ceiling = got
            assert got <= self.ceiling + step, (
                f"{got} ng delivered in ({s[j_min][0]}, {ti}] ms, over the hard ceiling"
                f" {self.ceiling}"
            )
            # (b) every window ending here: what the programs prescribed in it, the boluses
            # delivered in it, a step for each change in it (and one for the window's edge).
            for j in range(i - 1, j_min - 1, -1):
                tj, dj, pj, cj = s[j]
                got = di - dj
                allowed = pi - pj + 1 + step * (1 + ci - cj)
                if got <= allowed:
                    continue  # no need to count the boluses
                boluses = 0
                for a, e, ng in self.boluses:
                    if a < ti and e > tj:
                        boluses += ng
                assert got <= allowed + boluses, (
                    f"{got} ng delivered in ({tj}, {ti}] ms: more than the programs prescribed"
                    f" ({pi - pj}) + boluses {boluses} + a step per change ({ci - cj + 1})"
                )
        return top_ceiling


def _play(setup, script, check=True):
    r = Run(setup)
    for cmd, pause_s in script:
        r.play(cmd)
        r.advance(pause_s)
    if check:
        r.check_windows()
    return r


# -- the properties ------------------------------------------------------------------------------


def _examples(n):
    """Hypothesis settings of these properties: n examples, reproducible, no deadline."""
    return settings(max_examples=n, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_examples(400)
@given(setups, scripts(flex=False))
def test_delivery_in_any_24_h_bounded_continuous_programs(setup, script):
    _play(setup, script)


@_examples(150)
@given(setups, scripts(flex=True))
def test_delivery_in_any_24_h_bounded_with_flex_programs(setup, script):
    _play(setup, script)


@_examples(400)
@given(setups, scripts(flex=True, pause=st.integers(0, 3 * 3600), max_size=40))
def test_refused_command_changes_nothing(setup, script):
    # Each call checks it (Run.call): many short sequences, mostly commands.
    _play(setup, script, check=False)
