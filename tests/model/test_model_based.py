"""Model-based test of the firmware core against an independent oracle (tests/model/
model_oracle.py, written from ../shared/clinical-rules.md; README.md here says what it models).

A Hypothesis RuleBasedStateMachine drives, with the same random sequence, the firmware core the
way a host's frames reach it (signed frames through the codec, the guard and the dispatcher,
as firmware/loop.py answers them; the interlocks as the loop feeds them its inputs; resets and
power cuts through the store and the snapshot, as a reboot restores them) and the oracle.
After every step:

- the two agree on accepted or refused, and a refusal names an (error, rule) the oracle
  expected (where the rules leave a grey zone the oracle says which refusals are allowed);
- a refused request changed nothing in the pump (one EV_REFUSED record, counters aside);
- what a host can read agrees: mode, daily dose, drug, profile, sessions, patient-bolus
  settings, the bolus running, the modelled alarms, the reservoir (within motor steps);
- delivery, as the plant sees it (the motor's steps), agrees with the oracle's ideal delivery
  in every turn of the loop (two-sided: no abrupt stop, no extra);
- in every window of at most 24 h: delivered <= the hard ceiling (+ a motor step, + what a
  reset made the pump forget); delivered within the oracle's programs + boluses, give or take
  a motor step per change of rate in the window;
- the reservoir only ever fills through an accepted REFILL_COMMIT.

INTRAPUMP_MODEL_SEQUENCES (default 1000) sets how many sequences run; INTRAPUMP_MODEL_SEED
(unset by default) runs a different, seeded set instead of the fixed one.

Firmware bugs this test found (README.md, F1-F7, all fixed) are each reproduced below by the
shortest sequence that showed it, and pinned on the board by tests/board/test_model_findings.py.
"""

import copy
import hashlib
import os
import struct
import sys
from binascii import crc32
from collections import Counter, deque
from pathlib import Path

import pytest
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "board"))

import therapy_kit as kit  # noqa: E402
from model_oracle import (  # noqa: E402
    MODELLED_ALARMS,
    Oracle,
    Plant,
    Verdict,
    message_row,
)

from firmware import config  # noqa: E402
from firmware.core import snapshot  # noqa: E402
from firmware.core.dispatch import Dispatcher  # noqa: E402
from firmware.core.guard import Guard  # noqa: E402
from firmware.core.interlocks import Inputs, Interlocks  # noqa: E402
from firmware.core.store import MemoryFS, Store  # noqa: E402
from protocol import auth, codec  # noqa: E402
from protocol import messages as m  # noqa: E402

SEQUENCES = int(os.environ.get("INTRAPUMP_MODEL_SEQUENCES", "1000"))
SEED = os.environ.get("INTRAPUMP_MODEL_SEED")
STEPS = 50  # rules (requests, visits, pauses, resets) per sequence, at most
MAX_DAYS = 6  # simulated time per sequence, at most
DAY = 86_400
PICO_EPOCH = 1_609_459_200  # where the Pico's clock starts after a power cut
LEAP_CLOCK = 1_836_259_200  # 2028-03-10: 365 days back is 2027-03-11, a year on 2028-03-11
PRESSURE_HIGH = config.PRESSURE_LIMIT_RAW + 1000
PRESSURE_OK = 6000
KEYS = {m.ROLE_CLINICIAN: kit.CLINICIAN_KEY, m.ROLE_PATIENT: kit.PATIENT_KEY}

PLANT = Plant(
    step_nl=config.STEP_NL,
    capacity_nl=config.RESERVOIR_NL,
    max_rate_nl_day=config.MAX_RATE_NL_DAY,
    max_bolus_nl_min=config.MAX_BOLUS_NL_MIN,
    min_rate_nl_day=config.MIN_RATE_NL_DAY,
    refill_timeout_s=config.REFILL_TIMEOUT_S,
    drain_tolerance_nl=config.DRAIN_TOLERANCE_NL,
    retry_s=config.OCCLUSION_RETRY_S,
    loop_sleep_s=1800,  # the simulated loop: see CHUNK_S
)
STEP_TOL = PLANT.max_step_ng  # a motor step at the strongest drug, ng
CHUNK_S = PLANT.loop_sleep_s  # the longest the simulated loop sleeps between two calls


# -- what the run saw, for the closing note ------------------------------------------------------


class Tally:
    sequences = 0
    steps = 0
    outcomes = Counter()  # (request, "accepted") or (request, error, rule)
    grey = Counter()  # refusals inside a grey zone, by rule

    @classmethod
    def report(cls):
        lines = [f"model-based: {cls.sequences} sequences, {cls.steps} steps"]
        acc = Counter()
        ref = Counter()
        for key, n in cls.outcomes.items():
            if key[1] == "accepted":
                acc[key[0]] += n
            else:
                ref[(key[1], key[2])] += n
        lines.append("accepted: " + ", ".join(f"{k} {n}" for k, n in sorted(acc.items())))
        lines.append("refused, by error/rule:")
        for (code, rule_), n in sorted(ref.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {code}/{rule_}: {n}")
        if cls.grey:
            lines.append("of which in a grey zone: " + ", ".join(
                f"{k} {n}" for k, n in sorted(cls.grey.items())))
        return "\n".join(lines)


def _name(code):
    return next(n for c, n, _ in m.ERRORS if c == code)


def _rule(r):
    return dict(m.ENUMS["rule"]).get(r, str(r))


# -- the pump, as a board runs it --------------------------------------------------------------


class _PowerCut(Exception):
    pass


class CutFS(MemoryFS):
    """A flash that loses power after `budget` more bytes (-1: never)."""

    def __init__(self, files):
        MemoryFS.__init__(self)
        self.files = files
        self.budget = -1

    def write(self, name, data):
        if 0 <= self.budget < len(data):
            self.files[name] = bytes(data[: self.budget])
            self.budget = 0
            raise _PowerCut()
        if self.budget >= 0:
            self.budget -= len(data)
        self.files[name] = bytes(data)


class Board:
    """The firmware core on a fake board: therapy, dispatcher, guard, interlocks and a flash
    that outlives a reboot. Requests arrive as frames and are answered as loop.answer() does
    (the codec, the guard, the counter, then the dispatcher; without the loop's answer cache,
    which is the shell's)."""

    def __init__(self, files, clock_s, restore):
        self.fs = CutFS(files)
        self.t = kit.bare(clock_s)
        self.gap = None
        self.nonces = 0
        if restore:
            self._restore(clock_s)
        self.guard = Guard(KEYS)
        self.d = Dispatcher(self.t, (kit.BOARD_ID, kit.FW), self.guard, self._random)
        self.lock = Interlocks(self.t, config)
        self.inputs = Inputs()
        self.inputs.pressure = PRESSURE_OK

    def _random(self, n):
        self.nonces += 1
        return hashlib.sha256(b"%d" % self.nonces).digest()[:n]

    def _restore(self, now_s):
        """loop.restore(): the log, then the newest whole copy of the state."""
        t = self.t
        raw = Store(self.fs, "log").load()
        if raw is not None:
            t.log.load(raw)
        store = Store(self.fs, "state")
        raw = store.load()
        assert raw is not None, "a copy of the state was saved before every reset"
        self.gap = snapshot.load(t, raw, now_s)
        t.restart(self.gap, store.corrupt)

    def save(self):
        """loop.save(): the log first, then the state, each an atomic record."""
        log = Store(self.fs, "log")
        log.load()
        log.save(self.t.log.dump())
        state = Store(self.fs, "state")
        state.load()
        state.save(snapshot.dump(self.t))

    def frame(self, frame):
        d = codec.Decoded()
        if codec.decode(frame, len(frame), d):
            return self.d.error(d.error, d.type, d.reason)
        g = self.guard
        if g.admit(d, frame) or g.advance(d):
            return self.d.denied(g.code, d.type, g.reason, d.role if g.verified else 0)
        return self.d.handle(d.type, d.values, d.role)

    def turn(self):
        """The interlocks' part of a turn of the loop."""
        self.lock.update(self.inputs)

    def state(self):
        """Everything a request could change (counters and the log apart)."""
        t = self.t
        p = t.pump
        return (
            snapshot.dump(t),
            self.d.status()[:-1],  # frame_errors: a counter
            t.program(),
            t.sessions(),
            t.alarm_state(),
            (t.mode, t.program_mode, t.stop_reason, t.change_ms, t.refill_end_up,
             t.cap_end_up, t.refill_expected_nl, t.refill_due_up),
            (p.held, p.blocked, p.bolus_steps, p.basal_nl_day, p.basal.whole, p.basal.rem,
             p.basal.acc, p.basal.divisor, p.basal.wait, p.bolus.wait),
        )


class Host:
    """A host with a clinician's and a patient's session: signed, counted frames."""

    def __init__(self):
        self.enc = codec.Encoder()
        self.seq = 0
        self.sessions = {}  # role -> [slot, nonce, counter]
        self.last = b""

    def plain(self, mtype, values, seq=None):
        self.seq = self.seq % 0xFFFF + 1
        n = self.enc.frame_bytes(mtype, self.seq if seq is None else seq, values)
        return bytes(self.enc.frame[:n])

    def open(self, board):
        for role in (m.ROLE_CLINICIAN, m.ROLE_PATIENT):
            rtype, out = board.frame(self.plain(m.CHALLENGE, ()))
            assert rtype == m.CHALLENGE_OK, out
            self.sessions[role] = [out[0], out[1], 0]
        self.last = b""

    def signed(self, mtype, values, role):
        slot, nonce, counter = self.sessions[role]
        counter += 1
        self.sessions[role][2] = counter
        body = bytearray(self.plain(mtype, values)[: -m.CRC_SIZE])
        body[2] |= m.FLAG_AUTH
        body += struct.pack(m.AUTH_FORMAT, slot, role, counter)
        body += auth.frame_tag(KEYS[role], nonce, bytes(body))
        body += struct.pack("<I", crc32(body))
        return bytes(body)


# -- the state machine -------------------------------------------------------------------------

confirms = st.sampled_from((0, 0, 0, m.CONFIRM_HIGH_DOSE, m.CONFIRM_LARGE_DECREASE,
                            m.CONFIRM_HIGH_DOSE | m.CONFIRM_LARGE_DECREASE, 0x0F))
typical = st.sampled_from((50_000, 100_000, 300_000, 600_000, 1_000_000, 1_200_000))
percent = st.sampled_from((50, 75, 79, 80, 81, 90, 100, 105, 110, 114, 115, 116, 120, 125,
                           130, 131, 140, 141, 150))
near_high = st.sampled_from((999_999, 1_000_000, 1_000_001, 1_050_000))  # §5: 1000 mcg/day
doses = st.one_of(st.tuples(st.just("pct"), percent),
                  st.tuples(st.just("abs"), st.one_of(typical, near_high,
                                                      st.integers(1000, 2_500_000))),
                  st.tuples(st.just("abs"), st.just(999)))  # under the wire's range
pauses = st.one_of(st.integers(1, 3600), st.integers(3600, 12 * 3600),
                   st.sampled_from((60, 599, 600, 1800, 3600, 86_399, DAY, 86_401, 30 * 3600)))


class PumpMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        Tally.sequences += 1
        self.files = {}
        self.board = Board(self.files, kit.CLOCK0, restore=False)
        self.host = Host()
        self.host.open(self.board)
        self.o = Oracle(PLANT, kit.CLOCK0)
        self.saved = None  # the oracle as the flash holds it
        self.real = 0  # s since the start: the plant's time (a reset does not stop it)
        self.delivered = 0.0  # ng the motor put out (plant)
        self.ideal = 0.0  # ng the oracle says should have gone out
        self.changes = 0  # changes of rate so far (accepted requests, resets, the model's)
        self.since_fill = 0  # the same, since the last refill
        self.samples = deque()  # (real s, delivered, ideal, changes, ceiling)
        self.lows = deque()  # sliding minimum of delivered - ideal - STEP_TOL * changes
        self.highs = deque()  # sliding maximum of delivered - ideal + STEP_TOL * changes
        self.ceilings = deque()  # sliding maximum of the hard ceiling
        self.lost = []  # (saved at, reset at, ng delivered between): forgotten by a reset
        self.fs_volume = 0  # the pump's reservoir, to see it never fills but by a refill
        self._filled = False  # ... set just before a REFILL_COMMIT is sent
        self.bad_tags = 0
        self.dry_slack = 0.0  # ng the pump may still give after the model ran dry
        self.sample()

    # -- requests ------------------------------------------------------------------------------

    def request(self, mtype, values, role=m.ROLE_CLINICIAN, frame=None, expect=None):
        """Send a request (or a given frame) to the pump and the oracle; compare. Returns the
        pump's answer values if it was carried out, else None."""
        b = self.board
        if expect is None:
            verdict = self.o.check(mtype, values, role)
        else:
            verdict = expect
        before = b.state()
        logged = b.t.log.total
        if frame is None:
            frame = self.host.signed(mtype, values, role)
        rtype, out = b.frame(frame)
        name = message_row(mtype)[1]
        if len(frame) >= m.HEADER_SIZE + m.AUTH_SIZE + m.CRC_SIZE and frame[2] & m.FLAG_AUTH:
            at = len(frame) - m.CRC_SIZE - m.AUTH_SIZE
            slot, _role, counter = struct.unpack_from(m.AUTH_FORMAT, frame, at)
            if slot < m.SESSIONS and b.guard.counters[slot] == counter:
                self.host.last = frame  # the pump took its counter: a replay can follow
        Tally.steps += 1
        if rtype == m.ERROR:
            code, _type, rule_ = out[0], out[1], out[2]
            assert code != m.ERR_INTERNAL, f"{name}{values!r} raised in the firmware: {out}"
            Tally.outcomes[(name, _name(code), _rule(rule_))] += 1
            assert not verdict.accept or verdict.admits(code, rule_), (
                f"{name}{values!r}: the pump refused it ({_name(code)}/{_rule(rule_)}: "
                f"{out[-1]}), the oracle accepts it: {verdict!r}")
            assert verdict.admits(code, rule_), (
                f"{name}{values!r}: refused with {_name(code)}/{_rule(rule_)} ({out[-1]}); "
                f"the oracle expected {verdict!r}")
            if verdict.accept or not any(c == code and r == rule_ for c, r, _ in verdict.must):
                Tally.grey[_rule(rule_)] += 1
            after = b.state()
            assert after == before, f"refused {name}{values!r} changed the pump's state"
            assert b.t.log.total <= logged + 1, "a refusal is at most one log record"
            if b.t.log.total == logged + 1:
                rec = b.t.log.get(logged)
                assert rec is not None and rec[1] == m.EV_REFUSED and rec[5] == code, rec
            self.agree()
            return None
        assert rtype == mtype | 0x80, (rtype, out)
        Tally.outcomes[(name, "accepted")] += 1
        assert verdict.accept, (
            f"{name}{values!r}: the pump accepted it, the oracle refuses it: {verdict!r}")
        self.o.apply(mtype, values, out)
        if mtype in (m.BOLUS, m.PRIME, m.SCREEN, m.PATIENT_BOLUS):
            given = self.o.bolus
            assert given is not None
            want = (given.kind, given.steps * PLANT.step_nl * self.o.conc // 1000,
                    given.steps * PLANT.step_nl, int(given.end - given.start))
            assert tuple(out[:4]) == want, f"{name}: the pump gives {out[:4]}, the model {want}"
        if mtype not in (m.ALARM_ACK, m.CAP_BEGIN, m.CAP_END, m.SET_PROFILE,
                         m.SET_PATIENT_BOLUS):  # (a new clock moves a flex day's steps)
            self.changes += 1
            self.since_fill += 1
        if mtype == m.REFILL_COMMIT:
            self.since_fill = 0
            self.dry_slack = 0.0
        if mtype == m.REFILL_BEGIN:
            assert abs(out[0] - self.o.volume) <= self.volume_tol(), (
                f"the pump expects {out[0]} nL drained, the model holds {self.o.volume:.0f}")
        self.b_turn()
        self.agree()
        return out

    def b_turn(self):
        """After a request the loop's turn goes on: the interlocks see the inputs."""
        self.board.turn()
        i = self.board.inputs
        self.o.update(i.pressure > config.PRESSURE_LIMIT_RAW, i.needle_cap, i.needle_septum)

    def volume_tol(self):
        return PLANT.step_nl * (3 + self.since_fill)

    def agree(self):
        """What a host can read of the pump agrees with the model."""
        t = self.board.t
        o = self.o
        s = self.board.d.status()
        prog = t.program()
        ctx = f"mode {t.mode}/{o.mode}, dose {s[2]}/{o.dose}"
        assert s[0] == o.mode, f"mode: pump {s[0]}, model {o.mode} ({ctx})"
        assert s[1] == o.phase, f"phase: pump {s[1]}, model {o.phase}"
        assert s[2] in o.held_doses(), f"daily dose: pump {s[2]}, model {o.dose} ({ctx})"
        assert s[3] == o.conc, f"concentration: pump {s[3]}, model {o.conc}"
        sessions = (m.SESSION_REFILL if o.refill else 0) | (m.SESSION_CAP if o.cap_until else 0)
        assert s[17] == sessions, f"sessions: pump {s[17]}, model {sessions}"
        lock = self.board.lock  # §8, DESIGN 4: a valve is open only while its session is
        assert (lock.refill_valve, lock.cap_valve) == (bool(o.refill), bool(o.cap_until)), (
            f"valves: refill {lock.refill_valve}, CAP {lock.cap_valve}; sessions {sessions}")
        assert t.profile() == (o.origin, o.age, o.phase, o.ceiling, o.catheter_nl,
                               o.infusion_start_s, o.brain_injury_s), f"profile {t.profile()}"
        pb = t.patient_bolus_state()[:4]
        assert pb[0] == o.pb[0] and (not o.pb[0] or pb == o.pb), f"patient bolus {pb} {o.pb}"
        b = o.bolus
        if b is None or b.surely_running(o.now):
            kind = b.kind if b is not None else m.BOLUS_NONE
            assert s[5] == kind, f"bolus running: pump {s[5]}, model {kind}"
        mask = sum(1 << (a - 1) for a in MODELLED_ALARMS)
        assert s[16] & mask == o.active, f"alarms: pump {s[16] & mask:#x}, model {o.active:#x}"
        assert abs(s[10] - o.volume) <= self.volume_tol(), (
            f"reservoir: pump {s[10]} nL, model {o.volume:.0f}")
        if o.prog is not None and o.mode in (m.MODE_CONTINUOUS, m.MODE_FLEX):
            assert tuple(tuple(x) for x in prog[4]) == o.prog.steps, (
                f"steps: pump {prog[4]}, model {o.prog.steps}")
        assert len(t.screens) == len(o.screens), "screening boluses given"
        vol = t.pump.volume_nl
        assert vol <= self.fs_volume or self._filled, (
            f"the reservoir went from {self.fs_volume} to {vol} nL without a refill")
        self.fs_volume = vol
        self._filled = False

    # -- time ----------------------------------------------------------------------------------

    def advance(self, seconds):
        """Let time pass, in the loop's chunks; compare delivery in each."""
        seconds = min(seconds, MAX_DAYS * DAY - self.real)
        t = self.board.t
        while seconds > 0:
            d = min(seconds, CHUNK_S)
            e = t.ms_until_event()
            if 0 < e < d * 1000:
                assert e % 1000 == 0, e
                d = e // 1000
            step_ng = PLANT.step_nl * self.o.conc / 1000
            ahead_nl = t.pump.volume_nl - self.o.volume  # what the pump's lag still owes
            had = self.o.usable_nl() > 0
            steps = t.advance(d * 1000)
            got = steps * step_ng
            want, n = self.o.advance(d)
            self.b_turn()
            if had and self.o.usable_nl() <= 0:
                # The model ran dry: the pump, a fraction of a step behind the ideal after
                # each change, gives what it still holds a little later (the same in all).
                self.dry_slack = max(0.0, ahead_nl) * self.o.conc / 1000 + step_ng
            tol = step_ng * (3 + n) + 1e-6
            late = 0.0
            if self.o.usable_nl() <= 0 and got - want > 0:
                late = min(self.dry_slack, got - want)
                self.dry_slack -= late
                n += int(late // step_ng) + 1 if late else 0
            self.changes += n
            self.since_fill += n
            assert abs(got - want - late) <= tol, (
                f"{d} s from {self.real}: the pump delivered {got:.0f} ng, the model "
                f"{want:.0f} (tolerance {tol:.0f}; mode {t.mode}/{self.o.mode})")
            self.delivered += got
            self.ideal += want
            self.real += d
            seconds -= d
            self.sample()
        self.agree()

    def sample(self):
        """Check every window of at most 24 h that ends now (against the earlier samples)."""
        now = self.real
        c = self.changes
        excess = self.delivered - self.ideal
        low = excess - STEP_TOL * c
        high = excess + STEP_TOL * c
        self.samples.append((now, self.delivered, self.ideal, c, self.o.ceiling))
        while self.ceilings and self.ceilings[-1][1] <= self.o.ceiling:
            self.ceilings.pop()
        self.ceilings.append((now, self.o.ceiling))
        while self.lows and self.lows[-1][1] >= low:
            self.lows.pop()
        self.lows.append((now, low))
        while self.highs and self.highs[-1][1] <= high:
            self.highs.pop()
        self.highs.append((now, high))
        for q in (self.samples, self.lows, self.highs, self.ceilings):
            while q and now - q[0][0] > DAY:
                q.popleft()
        # No window holds more than the programs and boluses of the model, give or take a
        # motor step for each change of rate in it (and two at its ends).
        assert low - self.lows[0][1] <= 2 * STEP_TOL + 1, (
            f"window ({self.lows[0][0]}, {now}] s: the pump delivered "
            f"{low - self.lows[0][1]:.0f} ng more than the model's programs and boluses")
        assert high - self.highs[0][1] >= -2 * STEP_TOL - 1, (
            f"window ({self.highs[0][0]}, {now}] s: the pump delivered "
            f"{self.highs[0][1] - high:.0f} ng less than the model's programs and boluses")
        # The hard ceiling, over the longest window ending now: the highest in force in the
        # window (a ceiling lowered after a dose was given does not make that dose an
        # overdose; the pump refuses a new ceiling that what it will still give would pass).
        t0, d0 = self.samples[0][0], self.samples[0][1]
        ceiling = self.ceilings[0][1]
        if ceiling:
            forgot = sum(ng for s, r, ng in self.lost if r > t0 and now > s)
            got = self.delivered - d0
            assert got <= ceiling + STEP_TOL + forgot + 1, (
                f"{got:.0f} ng delivered in ({t0}, {now}] s: over the hard ceiling {ceiling}"
                f" (+ {forgot:.0f} forgotten by a reset)")

    # -- setting up ----------------------------------------------------------------------------

    @initialize(
        phase=st.sampled_from((0, m.PHASE_SCREENING, m.PHASE_SCREENING, m.PHASE_TITRATION,
                               m.PHASE_TITRATION, m.PHASE_TITRATION, m.PHASE_TITRATION,
                               m.PHASE_MAINTENANCE, m.PHASE_MAINTENANCE, m.PHASE_MAINTENANCE)),
        origin=st.sampled_from((m.ORIGIN_SPINAL, m.ORIGIN_CEREBRAL)),
        age=st.one_of(st.sampled_from((4, 8, 17, 18, 40)), st.integers(4, 90)),
        ceiling=st.one_of(st.sampled_from((300_000, 1_000_000, 1_500_000, 2_000_000)),
                          st.integers(100_000, 3_000_000)),
        conc=st.sampled_from((50, 500, 500, 1000, 2000, 25)),
        fill=st.one_of(st.just(config.RESERVOIR_NL), st.integers(500_000, config.RESERVOIR_NL)),
        first=st.one_of(st.none(), typical, st.integers(10_000, 1_500_000)),
        started_ago=st.sampled_from((0, 0, 2 * DAY)),
        injury=st.sampled_from((None,) * 6 + ("year", "year+1s", "year-1s", "2y", "future")),
    )
    def setup(self, phase, origin, age, ceiling, conc, fill, first, started_ago, injury=None):
        if not phase:
            return  # a pump fresh from the box
        start = self.o.clock - started_ago if started_ago else 0
        self.request(m.SET_PROFILE, (origin, age, phase, ceiling, 200_000, start,
                                     self._injury(injury)))
        if self.request(m.REFILL_BEGIN, ()) is not None:
            self._filled = True
            self.request(m.REFILL_COMMIT, (0, fill, m.DRUG_BACLOFEN, conc, conc,
                                           0 if conc in (50, 500, 1000, 2000) else 4))
        if first is not None and phase != m.PHASE_SCREENING:
            self.request(m.SET_CONTINUOUS, (first, m.CONFIRM_HIGH_DOSE))

    def _injury(self, how):
        """A brain injury's date around the one-year boundary by the pump's clock (§10)."""
        clock = self.o.clock
        year = 365 * DAY
        return {None: 0, "year": clock - year, "year+1s": clock - year - 1,
                "year-1s": clock - year + 1, "year-1h": clock - year + 3600,
                "year-1d": clock - year + DAY, "2y": clock - 2 * year, "now": clock,
                "future": clock + 3600}[how]

    # -- what the model says (to steer the choice of rules; never to decide an outcome) ------

    def has_program(self):
        return self.o.prog is not None

    def held(self):
        return self.o.prog is not None and self.o.mode != self.o.prog.mode

    def phase_is(self, phase):
        return self.o.phase == phase

    # -- programs --------------------------------------------------------------------------------

    def _dose(self, how):
        kind, x = how
        if kind == "pct":
            return max(1000, self.o.dose * x // 100) if self.o.dose else 100_000
        return x

    @rule(origin=st.sampled_from((m.ORIGIN_SPINAL, m.ORIGIN_CEREBRAL)),
          age=st.sampled_from((3, 4, 8, 17, 18, 40, 80)),
          phase=st.sampled_from((m.PHASE_SCREENING, m.PHASE_TITRATION, m.PHASE_MAINTENANCE)),
          ceiling=st.one_of(st.sampled_from((100_000, 1_000_000, 1_500_000, 3_000_000)),
                            st.integers(1000, 3_000_000)),
          catheter=st.sampled_from((0, 50_000, 200_000)),
          start=st.sampled_from((None, None, None, "now", "2d", "1h", "future")),
          injury=st.sampled_from((None, None, None, None, "keep", "keep", "year", "year+1s",
                                  "year-1s", "year-1d", "now", "future")))
    def set_profile(self, origin, age, phase, ceiling, catheter, start, injury):
        clock = self.o.clock
        s = {None: 0, "now": clock, "2d": clock - 2 * DAY, "1h": clock - 3600,
             "future": clock + 3600}[start]
        hurt = self.o.brain_injury_s if injury == "keep" else self._injury(injury)
        self.request(m.SET_PROFILE, (origin, age, phase, ceiling, catheter, s, hurt))

    @precondition(lambda self: not self.o.programmed and not self.o.screens)
    @rule(injury=st.sampled_from(("year", "year+1s", "year-1s", "year-1h", "year-1d", "2y",
                                  "now", "future", "leap", "leap")),
          clock_then=st.sampled_from((0, 0, -1, -3600, -DAY, 1, DAY)),
          what=st.sampled_from(("program", "program", "screen", "bolus", "prime")))
    def brain_injury_trial(self, injury, clock_then, what):
        """§10: before any therapy, a profile with a brain injury around a year before the
        clock; the clock set after it (a clock that was ahead, or behind); then the first
        therapy. "leap": 365 days before 10 March 2028, a day short of a calendar year."""
        o = self.o
        if injury == "leap":
            self.request(m.SET_CLOCK, (LEAP_CLOCK,))
            injury = "year"
        phase = m.PHASE_SCREENING if what == "screen" else m.PHASE_TITRATION
        self.request(m.SET_PROFILE, (o.origin or m.ORIGIN_CEREBRAL, max(o.age, 4), phase,
                                     max(o.ceiling, 1_000_000), 200_000, 0,
                                     self._injury(injury)))
        if clock_then:
            self.request(m.SET_CLOCK, (self.board.t.pump.clock_s() + clock_then,))
        if not o.conc and o.phase:
            opened = self.request(m.REFILL_BEGIN, ())
            if opened is not None:
                self._filled = True
                self.request(m.REFILL_COMMIT, (opened[0], config.RESERVOIR_NL, m.DRUG_BACLOFEN,
                                               500, 500, 0))
                self._filled = False
        if what == "program":
            self.request(m.SET_CONTINUOUS, (100_000, 0))
        elif what == "screen":
            self.request(m.SCREEN, (o.screening_next() or 50_000, 60))
        elif what == "bolus":
            self.request(m.BOLUS, (10_000, 600))
        else:
            self.request(m.PRIME, (600,))

    @rule(dose=doses, confirm=confirms)
    def set_continuous(self, dose, confirm):
        self.request(m.SET_CONTINUOUS, (self._dose(dose), confirm))

    @precondition(lambda self: self.has_program() and self.phase_is(m.PHASE_TITRATION))
    @rule(pct=st.sampled_from((105, 114, 115, 116, 129, 130, 131, 135, 150)),
          confirm=st.sampled_from((0, m.CONFIRM_HIGH_DOSE)), wait=st.sampled_from((0, DAY)))
    def titrate(self, pct, confirm, wait):
        """A titration step near the label's limits (§4), maybe a day after the last."""
        if wait:
            self.advance(wait)
        self.request(m.SET_CONTINUOUS, (max(1000, self.o.dose * pct // 100), confirm))

    @precondition(lambda self: self.o.dose >= 900_000)
    @rule(dose=st.sampled_from((999_999, 1_000_000, 1_000_001, 1_050_000, 1_100_000)),
          confirm=st.sampled_from((0, 0, m.CONFIRM_HIGH_DOSE)))
    def near_high_dose(self, dose, confirm):
        """Around 1000 mcg/day, where a confirmation starts to be needed (§5)."""
        self.request(m.SET_CONTINUOUS, (dose, confirm))

    @rule(confirm=confirms, offset=st.sampled_from((-720, 0, 60, 330, 840)),
          n=st.integers(2, 4), rising=st.sampled_from((True, True, True, True, False)),
          data=st.data())
    def set_flex(self, confirm, offset, n, rising, data):
        starts = data.draw(st.lists(st.integers(0, 1439), min_size=n, max_size=n, unique=True))
        if rising:
            starts = sorted(starts)
        pcts = data.draw(st.lists(st.integers(60, 140), min_size=n, max_size=n))
        base = self.o.dose or data.draw(typical)
        steps = tuple((s, max(1000, base * p // 100)) for s, p in zip(starts, pcts, strict=True))
        self.request(m.SET_FLEX, (confirm, offset, steps))

    @precondition(has_program)
    @rule(pct=st.sampled_from((1, 20, 50, 80, 90, 99, 100, 110)),
          days=st.sampled_from((13, 14, 14, 20, 28, 28, 29)), confirm=confirms)
    def set_taper(self, pct, days, confirm):
        target = max(1000, self.o.dose * pct // 100)
        self.request(m.SET_TAPER, (target, days, confirm))

    @rule(reason=st.integers(1, 4), confirmed=st.sampled_from((True, True, False)))
    def stop(self, reason, confirmed):
        self.request(m.STOP, (reason, m.STOP_CONFIRM if confirmed else m.STOP_CONFIRM ^ 0x100))

    @precondition(has_program)
    @rule(reason=st.integers(1, 4), confirmed=st.sampled_from((True, True, False)))
    def suspend(self, reason, confirmed):
        self.request(m.SUSPEND, (reason, m.STOP_CONFIRM if confirmed else 0))

    @precondition(held)
    @rule()
    def resume(self):
        self.request(m.RESUME, ())

    # -- boluses ---------------------------------------------------------------------------------

    @rule(dose=st.one_of(st.sampled_from((25_000, 50_000, 100_000, 600_000)),
                         st.integers(1, 300_000)),
          duration=st.one_of(st.sampled_from((59, 60, 600, 3600)), st.integers(60, 86_400)))
    def bolus(self, dose, duration):
        self.request(m.BOLUS, (dose, duration))

    @rule(duration=st.sampled_from((60, 600, 3600)))
    def prime(self, duration):
        self.request(m.PRIME, (duration,))

    @precondition(lambda self: self.phase_is(m.PHASE_SCREENING))
    @rule(how=st.sampled_from(("next", "next", "next", "25", "50", "75", "100", "60", "125")),
          duration=st.sampled_from((30, 59, 60, 60, 600)),
          then=st.sampled_from((0, 12 * 3600, 86_399, DAY, 25 * 3600)))
    def screen(self, how, duration, then):
        """A screening bolus (§2), often the next of the ladder, and the wait after it."""
        dose = self.o.screening_next() if how == "next" else int(how) * 1000
        self.request(m.SCREEN, (dose or 50_000, duration))
        if then:
            self.advance(then)

    @precondition(lambda self: self.phase_is(m.PHASE_SCREENING))
    @rule(waits=st.lists(st.sampled_from((0, 12 * 3600, 86_399, DAY, DAY, 25 * 3600)),
                         min_size=1, max_size=4),
          child_first=st.booleans(), implant=st.sampled_from((None, 100, 200, 201)))
    def screening_trial(self, waits, child_first, implant):
        """A screening trial (§2): the ladder, each bolus after a wait, then maybe the implant
        and its first daily dose, a factor of the last screening dose (§3)."""
        for i, wait in enumerate(waits):
            dose = 25_000 if child_first and i == 0 else self.o.screening_next() or 100_000
            self.request(m.SCREEN, (dose, 60))
            self.advance(wait)
        if implant is not None and self.o.screens:
            self.implant(m.PHASE_TITRATION, implant, m.CONFIRM_HIGH_DOSE)

    @precondition(lambda self: self.phase_is(m.PHASE_SCREENING) and self.o.screens)
    @rule(phase=st.sampled_from((m.PHASE_TITRATION, m.PHASE_MAINTENANCE)),
          factor=st.sampled_from((100, 150, 200, 200, 201, 250)),
          confirm=st.sampled_from((0, m.CONFIRM_HIGH_DOSE)))
    def implant(self, phase, factor, confirm):
        """Screening done: the pump is implanted (§3); its first daily dose is at most twice
        the screening dose that worked (the last one given)."""
        o = self.o
        self.request(m.SET_PROFILE, (o.origin, o.age, phase, max(o.ceiling, 1_000_000),
                                     o.catheter_nl, 0, o.brain_injury_s))
        self.request(m.SET_CONTINUOUS, (o.screens[-1][1] * factor // 100, confirm))

    @rule(dose=st.sampled_from((0, 5000, 20_000, 20_000, 50_000, 200_000)),
          duration=st.sampled_from((60, 60, 600, 3600)),
          lockout=st.sampled_from((0, 600, 3600, 4 * 3600)),
          most=st.sampled_from((0, 1, 3, 6, 24)))
    def set_patient_bolus(self, dose, duration, lockout, most):
        self.request(m.SET_PATIENT_BOLUS, (dose, duration, lockout, most))

    @precondition(lambda self: self.o.pb[0] > 0 and self.o.running())
    @rule(gap=st.sampled_from((0, 600, 3599, 3600, 3601, 4 * 3600, 6 * 3600)),
          n=st.integers(1, 4), reset_at=st.sampled_from((None, None, 1, 2)))
    def patient_boluses(self, gap, n, reset_at):
        """The patient asks, n times, gap s apart (the lockout, the daily maximum), maybe
        with a reset between two (their use survives it)."""
        for i in range(n):
            if i:
                self.advance(gap)
            if i == reset_at:
                self.flush()
                self.reboot(0, clock_kept=True)
            self.request(m.PATIENT_BOLUS, (), m.ROLE_PATIENT)

    @rule(what=st.sampled_from(("resume", "cap_end", "refill_abort", "patient_bolus",
                                "screen", "ack", "suspend")))
    def out_of_place(self, what):
        """Requests that the state often refuses: resume while running, ends of sessions
        that are not open, a patient bolus while off, screening after screening..."""
        if what == "resume":
            self.request(m.RESUME, ())
        elif what == "cap_end":
            self.request(m.CAP_END, ())
        elif what == "refill_abort":
            self.request(m.REFILL_ABORT, ())
        elif what == "patient_bolus":
            self.request(m.PATIENT_BOLUS, (), m.ROLE_PATIENT)
        elif what == "screen":
            self.request(m.SCREEN, (50_000, 60))
        elif what == "suspend":
            self.request(m.SUSPEND, (1, m.STOP_CONFIRM))
        else:
            self.request(m.ALARM_ACK, (m.ALARM_CAP_VIOLATION,))

    # -- refill and CAP ----------------------------------------------------------------------------

    @rule(drained=st.sampled_from(("same", "same", "+15", "+25", "-30", "none", "+50ul")),
          fill=st.one_of(st.just(config.RESERVOIR_NL), st.just(config.RESERVOIR_NL + 250),
                         st.integers(0, config.RESERVOIR_NL)),
          conc=st.sampled_from((50, 500, 500, 1000, 2000, 750, 2500, 10, 25)),
          same=st.sampled_from((True, True, True, False)),
          confirm=st.sampled_from((0, 0, m.CONFIRM_CUSTOM_CONCENTRATION,
                                   m.CONFIRM_DRAIN_MISMATCH, 0x0F)),
          change=st.sampled_from((None, None, 90, 110, 120, 121, 140, 141)),
          end=st.sampled_from(("commit", "commit", "commit", "commit", "abort", "open")))
    def refill_visit(self, drained, fill, conc, same, confirm, change, end):
        opened = self.request(m.REFILL_BEGIN, ())
        if opened is None:
            return
        expected = opened[0]
        drained_nl = {"same": expected, "+15": expected * 115 // 100,
                      "+25": expected * 125 // 100, "-30": expected * 70 // 100, "none": 0,
                      "+50ul": expected + 50_000}[drained]
        if change is not None:  # a maintenance change inside the visit
            self.request(m.SET_CONTINUOUS, (max(1000, self.o.dose * change // 100),
                                            m.CONFIRM_HIGH_DOSE | m.CONFIRM_LARGE_DECREASE))
        if end == "commit":
            self._filled = True
            self.request(m.REFILL_COMMIT, (drained_nl, fill, m.DRUG_BACLOFEN, conc,
                                           conc if same else conc + 500, confirm))
            self._filled = False
        elif end == "abort":
            self.request(m.REFILL_ABORT, ())

    @precondition(lambda self: self.phase_is(m.PHASE_MAINTENANCE) and self.has_program())
    @rule(pct=st.sampled_from((95, 105, 119, 120, 121, 139, 140, 141, 150)),
          twice=st.sampled_from((None, None, 100, 110, 125)),
          wait=st.sampled_from((0, 0, DAY)))
    def maintenance_visit(self, pct, twice, wait):
        """A refill visit that changes the dose (§5): the limit is per visit."""
        if wait:
            self.advance(wait)
        base = self.o.dose
        opened = self.request(m.REFILL_BEGIN, ())
        if opened is None:
            return
        for p in (pct, twice):
            if p is not None:
                self.request(m.SET_CONTINUOUS, (max(1000, base * p // 100),
                                                m.CONFIRM_HIGH_DOSE))
        conc = self.o.conc
        self._filled = True
        self.request(m.REFILL_COMMIT, (opened[0], config.RESERVOIR_NL, m.DRUG_BACLOFEN, conc,
                                       conc, 0 if conc in (50, 500, 1000, 2000) else 4))
        self._filled = False

    @precondition(has_program)
    @rule(conc=st.sampled_from((10, 25, 40, 100, 250, 1500)),
          fill=st.sampled_from((config.RESERVOIR_NL, 5_000_000, 0)))
    def dilute(self, conc, fill):
        """A refill with a confirmed custom dilution (§1): the program in force must still be
        within the mechanism's rate at the new strength."""
        opened = self.request(m.REFILL_BEGIN, ())
        if opened is None:
            return
        self._filled = True
        self.request(m.REFILL_COMMIT, (opened[0], fill, m.DRUG_BACLOFEN, conc, conc,
                                       m.CONFIRM_CUSTOM_CONCENTRATION))
        self._filled = False
        if self.o.refill is not None:
            self.request(m.REFILL_ABORT, ())

    @precondition(lambda self: self.o.refill is not None)
    @rule()
    def refill_abort(self):
        self.request(m.REFILL_ABORT, ())

    @rule(duration=st.sampled_from((30, 60, 600, 1800)),
          needle=st.sampled_from((None, "in", "in_out", "septum")),
          then=st.sampled_from((0, 59, 300, 1800)), end=st.booleans())
    def cap_visit(self, duration, needle, then, end):
        """A CAP session (§8): a needle in the port inside it, maybe one in the septum."""
        if self.request(m.CAP_BEGIN, (duration,)) is None:
            return
        if needle:
            self.needle("septum" if needle == "septum" else "cap", True)
        if then:
            self.advance(then)
        if needle == "in_out":
            self.needle("cap", False)
        if end:
            self.request(m.CAP_END, ())

    @rule(where=st.sampled_from(("cap", "septum")), on=st.booleans())
    def needle(self, where, on):
        if where == "cap":
            self.board.inputs.needle_cap = on
        else:
            self.board.inputs.needle_septum = on
        self.b_turn()
        self.agree()

    @rule(high=st.booleans(), then=st.sampled_from((0, 0, 60, 600, 1800)))
    def pressure(self, high, then):
        self.board.inputs.pressure = PRESSURE_HIGH if high else PRESSURE_OK
        self.b_turn()
        self.agree()
        if then:
            self.advance(then)

    @precondition(lambda self: self.o.active != 0)
    @rule(alarm=st.sampled_from(MODELLED_ALARMS), role=st.sampled_from(
        (m.ROLE_CLINICIAN, m.ROLE_PATIENT)))
    def alarm_ack(self, alarm, role):
        self.request(m.ALARM_ACK, (alarm,), role)

    @rule(delta=st.sampled_from((-DAY, -3600, 600, 3600, DAY)))
    def set_clock(self, delta):
        self.request(m.SET_CLOCK, (self.board.t.pump.clock_s() + delta,))

    # -- time, resets, power cuts ------------------------------------------------------------------

    @rule(seconds=pauses)
    def wait(self, seconds):
        self.advance(seconds)

    @rule(seconds=st.sampled_from((6 * 3600, DAY, 25 * 3600, 2 * DAY)))
    def wait_long(self, seconds):
        self.advance(seconds)

    def flush(self):
        """The loop's periodic save: the state on flash, the model as the flash holds it."""
        self.board.save()
        self.saved = copy.deepcopy(self.o)
        self.saved_at = (self.real, self.delivered)

    def reboot(self, off_s, clock_kept):
        """Power back after off_s s: a new board on the same flash."""
        now_s = self.board.t.pump.clock_s() + off_s if clock_kept else PICO_EPOCH
        self.real += off_s
        self.board = Board(self.files, now_s, restore=True)
        self.host.open(self.board)
        gap = self.board.gap
        assert self.saved is not None
        o = copy.deepcopy(self.saved)
        o.restarted(gap if gap is not None and gap >= 0 else None)
        self.o = o
        self.changes += 1
        self.since_fill += 1
        self.fs_volume = max(self.fs_volume, self.board.t.pump.volume_nl)  # back as saved
        self.agree()

    @rule(lost=st.sampled_from((0, 0, 1, 300, 599)), off=st.sampled_from((0, 5, 600, 3 * 3600)),
          clock_kept=st.booleans())
    def reset(self, lost, off, clock_kept):
        """A reset: the last periodic save was `lost` s ago (what was delivered since is
        forgotten), the pump stays off `off` s, its clock survives or not."""
        self.flush()
        if lost:
            self.advance(lost)
        saved_real, saved_delivered = self.saved_at
        if self.delivered > saved_delivered:
            self.lost.append((saved_real, self.real, self.delivered - saved_delivered))
        self.reboot(off, clock_kept)

    @rule(pct=percent, confirm=confirms, where=st.sampled_from(("log", "state", "whole")),
          at=st.floats(0, 1), clock_kept=st.booleans())
    def power_cut_in_a_save(self, pct, confirm, where, at, clock_kept):
        """A program change, and the power goes while the loop saves it (before the answer
        reaches the host): the flash holds the old state or, if the save was whole, the new."""
        self.flush()
        out = self.request(m.SET_CONTINUOUS, (max(1000, self.o.dose * pct // 100),
                                              confirm))
        if out is None:
            return
        log_len = len(self.board.t.log.dump()) + 14
        state_len = len(snapshot.dump(self.board.t)) + 14
        k = {"log": int(at * (log_len - 1)), "state": log_len + int(at * (state_len - 1)),
             "whole": log_len + state_len}[where]
        self.board.fs.budget = k
        try:
            self.board.save()
            cut = False
        except _PowerCut:
            cut = True
        self.board.fs.budget = -1
        assert cut == (where != "whole"), (where, k, log_len, state_len)
        if not cut:
            self.saved = copy.deepcopy(self.o)
        self.reboot(0, clock_kept)

    # -- frames the pump must refuse ---------------------------------------------------------

    @rule(kind=st.sampled_from(("crc", "truncated", "version", "flags", "type", "length",
                                "unsigned", "tag", "replay", "session", "wrong_role_patient",
                                "wrong_role_clinician", "range", "drug")))
    def bad_frame(self, kind):
        h = self.host
        if kind == "tag":
            # The guard's brute-force limits (issue 8: repeated bad tags lock a role out,
            # guard.py) are not clinical rules and not modelled: one bad tag per sequence,
            # far below any lockout.
            if self.bad_tags:
                kind = "crc"
            self.bad_tags += 1
        dose = max(1000, self.o.dose)
        values = (dose, 0)
        mtype = m.SET_CONTINUOUS
        code = {"crc": m.ERR_BAD_CRC, "truncated": m.ERR_TRUNCATED,
                "version": m.ERR_BAD_VERSION, "flags": m.ERR_BAD_FLAGS,
                "type": m.ERR_UNKNOWN_TYPE, "length": m.ERR_BAD_LENGTH,
                "unsigned": m.ERR_AUTH_REQUIRED, "tag": m.ERR_BAD_TAG, "replay": m.ERR_REPLAY,
                "session": m.ERR_NO_SESSION}.get(kind)
        role = m.ROLE_CLINICIAN
        if kind == "wrong_role_patient":  # the patient programs therapy
            role = m.ROLE_PATIENT
            frame = h.signed(mtype, values, role)
        elif kind == "wrong_role_clinician":  # the clinician asks for a patient bolus
            mtype, values = m.PATIENT_BOLUS, ()
            frame = h.signed(mtype, values, role)
        elif kind == "range":  # a taper of 13 days: under the wire's 2 weeks
            mtype, values = m.SET_TAPER, (1000, 13, 0)
            frame = h.signed(mtype, values, role)
        elif kind == "drug":  # §1: one drug, baclofen (the wire knows no other)
            mtype, values = m.REFILL_COMMIT, (0, 1_000_000, m.DRUG_BACLOFEN + 1, 500, 500, 0)
            frame = h.signed(mtype, values, role)
        elif kind == "unsigned":
            frame = h.plain(mtype, values)
        elif kind == "replay":
            if not h.last:
                self.request(m.CAP_END, ())
            frame = h.last
            mtype = frame[1]
        else:
            f = bytearray(h.signed(mtype, values, role))
            if kind == "crc":
                f[6] ^= 0x40
            elif kind == "truncated":
                f = f[:7]
            elif kind in ("version", "flags", "type", "length", "tag", "session"):
                body = f[: -m.CRC_SIZE]
                if kind == "version":
                    body[0] = 7
                elif kind == "flags":
                    body[2] |= 0x80
                elif kind == "type":
                    body[1] = 0x7E
                elif kind == "length":
                    body[5:5] = b"\x00"
                elif kind == "tag":
                    body[-1] ^= 1
                elif kind == "session":
                    at = len(body) - m.AUTH_SIZE
                    body[at] = m.SESSIONS - 1 if body[at] != m.SESSIONS - 1 else 0
                f = body + struct.pack("<I", crc32(body))
            frame = bytes(f)
        if code is None:
            verdict = self.o.check(mtype, values, role)
        else:
            verdict = Verdict(kind)
            verdict.need(code, 0, kind)
        self.request(mtype, values, role, frame=frame, expect=verdict)


def _settings():
    return settings(
        max_examples=SEQUENCES,
        stateful_step_count=STEPS,
        deadline=None,
        derandomize=SEED is None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.filter_too_much],
    )


@pytest.mark.timeout(600 + SEQUENCES // 10)
def test_firmware_agrees_with_the_model():
    machine = PumpMachine if SEED is None else seed(int(SEED))(PumpMachine)
    try:
        run_state_machine_as_test(machine, settings=_settings())
    finally:
        print()
        print(Tally.report())


# -- firmware bugs this test found (README "Found and fixed"): each by its shortest sequence ------
# They failed before their fix (as strict xfails, kept out of the random sequences by a narrow
# exclusion); fixed, they pass and the random sequences explore them again.


def test_f1_a_taper_stopped_over_a_day_boundary_steps_on_after_resume():
    s = PumpMachine()
    s.setup(phase=m.PHASE_TITRATION, origin=m.ORIGIN_SPINAL, age=40, ceiling=1_500_000,
            conc=2000, fill=config.RESERVOIR_NL, first=100_000, started_ago=0)
    s.set_taper(pct=50, days=14, confirm=0)  # 100 -> 50 mcg/day, a cut a day
    s.stop(reason=1, confirmed=True)
    s.advance(2 * DAY)  # two of its days pass while it is stopped
    s.resume()  # unfixed, the pump ran 100 mcg/day (day 0) for good; the model: day 2's 92.9
    s.advance(2 * DAY)


def test_f1_a_taper_powered_off_over_a_day_boundary_steps_on_after_the_reset():
    s = PumpMachine()
    s.setup(phase=m.PHASE_TITRATION, origin=m.ORIGIN_SPINAL, age=40, ceiling=1_500_000,
            conc=2000, fill=config.RESERVOIR_NL, first=100_000, started_ago=0)
    s.set_taper(pct=50, days=14, confirm=0)
    s.advance(23 * 3600)
    s.flush()
    s.reboot(2 * 3600, clock_kept=True)  # off for 2 h across the taper's first day boundary
    s.advance(2 * DAY)


def test_f2_a_cut_of_just_over_20_percent_needs_a_confirmation():
    s = PumpMachine()
    s.setup(phase=m.PHASE_MAINTENANCE, origin=m.ORIGIN_SPINAL, age=40, ceiling=300_000,
            conc=50, fill=config.RESERVOIR_NL, first=11_867, started_ago=0)
    # 9493 ng/day is 79.9966 % of 11867: a cut of more than 20 %, unconfirmed.
    s.request(m.SET_CONTINUOUS, (9493, 0))


def test_f3_a_ceiling_under_the_running_priming_bolus_is_refused():
    s = PumpMachine()
    s.setup(phase=m.PHASE_TITRATION, origin=m.ORIGIN_SPINAL, age=40, ceiling=300_000,
            conc=1000, fill=config.RESERVOIR_NL, first=None, started_ago=0)
    s.prime(duration=60)  # 200 uL of 1000 mcg/mL: 200 mcg, before the first program
    s.request(m.SET_PROFILE, (m.ORIGIN_SPINAL, 40, m.PHASE_TITRATION, 100_000, 200_000, 0, 0))


def test_f4_resume_counts_the_running_bolus_against_the_ceiling():
    s = PumpMachine()
    s.setup(phase=m.PHASE_TITRATION, origin=m.ORIGIN_SPINAL, age=40, ceiling=300_000,
            conc=50, fill=config.RESERVOIR_NL, first=300_000, started_ago=0)
    s.stop(reason=1, confirmed=True)
    s.prime(duration=60)  # 200 uL of 50 mcg/mL: 10 mcg, allowed while stopped
    s.request(m.RESUME, ())  # 300 mcg/day + 10 mcg in the next 24 h: ceiling 300 mcg


def test_f5_a_taper_from_a_stop_is_checked_against_the_ceiling():
    s = PumpMachine()
    s.setup(phase=m.PHASE_MAINTENANCE, origin=m.ORIGIN_SPINAL, age=40, ceiling=100_000,
            conc=500, fill=config.RESERVOIR_NL, first=80_000, started_ago=0)
    s.stop(reason=1, confirmed=True)
    s.prime(duration=60)  # 200 uL of 500 mcg/mL: 100 mcg, the whole ceiling, while stopped
    s.request(m.SET_TAPER, (20_000, 14, 0))  # restarts at 80 mcg/day: 180 mcg in 24 h


def test_f6_the_occlusion_alarm_clears_after_a_reset_once_the_motor_runs():
    s = PumpMachine()
    s.setup(phase=m.PHASE_TITRATION, origin=m.ORIGIN_SPINAL, age=40, ceiling=1_500_000,
            conc=500, fill=config.RESERVOIR_NL, first=300_000, started_ago=0)
    s.pressure(high=True, then=600)  # blocked: the critical occlusion alarm
    s.flush()
    s.reboot(0, clock_kept=True)  # a reset: the motor runs again, the alarm was saved
    s.pressure(high=False, then=2 * 3600)  # no blockage: unfixed, the alarm stayed for good


def test_f7_a_flex_day_is_checked_against_the_ceiling_in_its_own_local_time():
    s = PumpMachine()
    s.setup(phase=m.PHASE_TITRATION, origin=m.ORIGIN_SPINAL, age=40, ceiling=800_000,
            conc=2000, fill=config.RESERVOIR_NL, first=600_000, started_ago=0)
    s.advance(2 * DAY)  # 08:00 UTC; 600 mcg/day: 300 mcg in the last 12 h
    # UTC+12: 20:00 local, the high half (1.2 mg/day) starts now: 300 + 600 mcg in the 24 h
    # ending 12 h from now. At the old offset (UTC) it would start 12 h later: 613 mcg.
    s.request(m.SET_FLEX, (0, 720, ((480, 1000), (1200, 1_200_000))))
