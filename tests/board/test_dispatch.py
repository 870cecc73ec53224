# Requests -> therapy engine -> responses (firmware/core/dispatch.py): every request type gives
# its own response or a typed ERROR (never INTERNAL for what the codec lets through), refusals
# are counted by code and logged with who asked, the rule and the values, a failing handler
# becomes ERR_INTERNAL and delivery goes on, frame errors are counted, CHALLENGE opens a
# session in the guard with a nonce from the injected random_bytes, and READ_LOG pages the
# log. Every answer is encoded and decoded by the board codec as the loop would send it.
# The engine is set up through therapy_kit. Board-safe: runs on CPython and on MicroPython.

import binascii
import struct

from prng import lcg
from therapy_kit import (
    BOARD_ID,
    CAPACITY_NL,
    CLINICIAN_KEY,
    CLOCK0,
    DAY_MS,
    FW,
    STEP_NL,
    advance,
    bare,
    dispatcher,
    ready,
    running,
)

from protocol import auth, codec
from protocol import messages as m

PATIENT, CLINICIAN, SERVICE = m.ROLE_PATIENT, m.ROLE_CLINICIAN, m.ROLE_SERVICE
U32 = 0xFFFFFFFF
REASON_MAX = 80  # bytes of ERROR's reason on the wire


class Entropy:
    """random_bytes(n) for the Dispatcher: distinct, predictable bytes; records each call."""

    def __init__(self):
        self.calls = []
        self.drawn = []

    def __call__(self, n):
        self.calls.append(n)
        k = len(self.calls)
        out = bytes((k * 37 + 11 * i) & 0xFF for i in range(n))
        self.drawn.append(out)
        return out


def _fields(rtype, values):
    """Response values by field name."""
    row = m.find(rtype)
    out = {}
    for i in range(len(row[3])):
        out[row[3][i][0]] = values[i]
    return out


def _roundtrip(mtype, values):
    """Encode a response as the firmware does and decode it back: (error, values)."""
    enc = codec.Encoder()
    try:
        n = enc.frame_bytes(mtype, 77, values)
    except Exception as e:  # struct refuses a value that does not fit its field
        return -1, "cannot encode: %r" % (e,)
    d = codec.Decoded()
    err = codec.decode(enc.frame, n, d, "resp")
    if err:
        return err, d.reason
    return err, d.values


def _on_the_wire(rtype, values):
    """values as the host reads them: a str field (ERROR's reason) is cut to its length."""
    row = m.find(rtype)
    last = row[3][-1] if row[3] else None
    if last is not None and last[1] == "str":
        return tuple(values[:-1]) + (values[-1].encode()[: last[3]].decode(),)
    return tuple(values)


def _check_response(rtype, values, want_type):
    assert rtype == want_type, "response type 0x%02x %r, want 0x%02x" % (
        rtype, values, want_type)
    row = m.find(rtype)
    assert row is not None and row[2] == "resp", "0x%02x is a response type" % rtype
    assert len(values) == len(row[3]), "%s has %d values, table %d" % (
        row[1], len(values), len(row[3]))
    err, back = _roundtrip(rtype, values)
    assert err == 0, "%s response %r does not encode/decode: %r" % (row[1], values, back)
    assert tuple(back) == _on_the_wire(rtype, values), "%s round trip: %r != %r" % (
        row[1], back, values)


def _ok(d, mtype, values=(), role=CLINICIAN):
    """Ask; expect the request's own response. Returns its values by field name."""
    rtype, out = d.handle(mtype, values, role)
    _check_response(rtype, out, mtype | 0x80)
    return _fields(rtype, out)


def _refused(d, mtype, values, role, code):
    """Ask; expect an ERROR with `code`. Returns its values by field name."""
    rtype, out = d.handle(mtype, values, role)
    _check_response(rtype, out, m.ERROR)
    got = _fields(m.ERROR, out)
    assert got["code"] == code, "0x%02x %r: code %d, want %d (%s)" % (
        mtype, values, got["code"], code, got["reason"])
    assert got["request_type"] == mtype, "request type 0x%02x" % got["request_type"]
    assert got["reason"], "a refusal has a reason"
    return got


def _status(d):
    return _ok(d, m.GET_STATUS, (), PATIENT)


def _last_event(t):
    """The newest log event as (time_s, event, role, rule, type, a, b, c)."""
    return t.log.get(t.log.total - 1)


# -- reads ---------------------------------------------------------------------------------


def test_get_info():
    d = dispatcher(bare())
    got = _ok(d, m.GET_INFO, (), 0)
    want = {"protocol_version": m.VERSION, "board_id": BOARD_ID, "reservoir_nl": CAPACITY_NL,
            "step_nl": STEP_NL, "fw_version": FW}
    assert got == want, "INFO %r, want %r" % (got, want)


def test_get_status_from_boot():
    d = dispatcher(bare())
    got = _status(d)
    want = {"mode": m.MODE_STOPPED, "phase": m.PHASE_UNSET, "daily_dose_ng": 0,
            "concentration": 0, "rate_nl_day": 0, "bolus": m.BOLUS_NONE, "bolus_left_ng": 0,
            "last_24h_ng": 0, "delivered_nl": 0, "delivered_ng": 0, "reservoir_nl": 0,
            "uptime_s": 0, "clock_s": CLOCK0, "low_at_s": 0, "refill_at_s": 0, "dry_at_s": 0,
            "alarms": 0, "sessions": 0, "battery_mv": 0, "frame_errors": 0}
    assert got == want, "STATUS %r" % (got,)


def test_set_continuous_then_status():
    t = ready()
    d = dispatcher(t)
    got = _ok(d, m.SET_CONTINUOUS, (412_500, 0))
    want = {"mode": m.MODE_CONTINUOUS, "daily_dose_ng": 412_500, "rate_nl_day": 825_000,
            "utc_offset_min": 0, "steps": ((0, 412_500),)}
    assert got == want, "CONTINUOUS_OK %r" % (got,)
    ev = _last_event(t)
    assert ev == (CLOCK0, m.EV_PROGRAM, CLINICIAN, 0, 0, 412_500, 0, m.MODE_CONTINUOUS), (
        "logged %r" % (ev,))
    assert _ok(d, m.GET_PROGRAM, (), PATIENT) == want, "GET_PROGRAM says the same"
    # One day on: 3300 steps = 825000 nL = 412500 ng. The reservoir's dates were set when the
    # program was: 18 mL to the low level, 20 mL to dry, at 825 uL/day (rounded up to 1 s).
    assert advance(t, DAY_MS) == 3300, "a day's steps"
    got = _status(d)
    want = {"mode": m.MODE_CONTINUOUS, "phase": m.PHASE_TITRATION, "daily_dose_ng": 412_500,
            "concentration": 500, "rate_nl_day": 825_000, "bolus": m.BOLUS_NONE,
            "bolus_left_ng": 0, "last_24h_ng": 412_500, "delivered_nl": 825_000,
            "delivered_ng": 412_500, "reservoir_nl": CAPACITY_NL - 825_000, "uptime_s": 86_400,
            "clock_s": CLOCK0 + 86_400, "low_at_s": CLOCK0 + 1_885_091,
            "refill_at_s": CLOCK0 + 1_885_091 - 7 * 86_400, "dry_at_s": CLOCK0 + 2_094_546,
            "alarms": 0, "sessions": 0, "battery_mv": 0, "frame_errors": 0}
    for name in want:
        assert got[name] == want[name], "STATUS %s=%r, want %r" % (name, got[name], want[name])


def test_status_shows_bolus_sessions_and_alarms():
    t = running(100_000)  # a basal step every 108 s
    d = dispatcher(t)
    got = _ok(d, m.BOLUS, (50_000, 600))  # 400 steps, one every 1.5 s
    assert (got["bolus"], got["dose_ng"], got["volume_nl"]) == (m.BOLUS_CLINICIAN, 50_000,
                                                                100_000), "%r" % (got,)
    assert got["ends_at_s"] == CLOCK0 + 600, "ends in 10 min"
    s = _status(d)
    assert (s["bolus"], s["bolus_left_ng"]) == (m.BOLUS_CLINICIAN, 50_000), "%r" % (s,)
    advance(t, 60_000)
    s = _status(d)
    assert s["bolus_left_ng"] == 45_000 and s["last_24h_ng"] == 5_000, "40 steps: %r" % (s,)
    # A refill session cuts the bolus short (logged) and holds the outlet.
    _ok(d, m.REFILL_BEGIN)
    assert _last_event(t)[1] == m.EV_REFILL_BEGIN, "logged"
    done = t.log.get(t.log.total - 2)
    assert done[1] == m.EV_BOLUS_DONE and done[4] == m.BOLUS_CLINICIAN, "%r" % (done,)
    assert (done[5], done[6]) == (5_000, 45_000), "given and not given: %r" % (done,)
    s = _status(d)
    assert (s["bolus"], s["bolus_left_ng"], s["sessions"]) == (0, 0, m.SESSION_REFILL), (
        "%r" % (s,))
    _refused(d, m.CAP_BEGIN, (600,), CLINICIAN, m.ERR_INVALID_STATE)
    _ok(d, m.REFILL_ABORT)
    _ok(d, m.CAP_BEGIN, (600,))
    assert _status(d)["sessions"] == m.SESSION_CAP, "CAP open"
    # A reservoir under the low level raises its alarm (bit alarm - 1).
    t = running(100_000, fill_nl=1_000_000)
    d = dispatcher(t)
    advance(t, 1000)
    s = _status(d)
    want = 1 << (m.ALARM_LOW_RESERVOIR - 1) | 1 << (m.ALARM_REFILL_DUE - 1)  # due at once
    assert s["alarms"] == want, "alarms 0x%x, want 0x%x" % (s["alarms"], want)
    assert t.alarms.pop() == m.ALARM_LOW_RESERVOIR << 1 | 1, "queued for the loop to send"
    assert t.alarms.pop() == m.ALARM_REFILL_DUE << 1 | 1, "in the order raised"
    got = _ok(d, m.ALARM_ACK, (m.ALARM_LOW_RESERVOIR,), PATIENT)
    assert got == {"alarms": want, "unacknowledged": 1 << (m.ALARM_REFILL_DUE - 1),
                   "silenced_until_s": 0}, "acknowledged, still active: %r" % (got,)


def test_telemetry_is_a_subset_of_status():
    t = running(100_000)
    d = dispatcher(t)
    assert _ok(d, m.SET_TELEMETRY, (10,), PATIENT) == {"period_s": 10}, "period"
    assert d.telemetry_ms == 10_000 and d.telemetry_due == 0, "the first one at once"
    advance(t, 3_600_000)
    status = _status(d)
    tele = d.telemetry()
    assert len(tele) == len(m.TELEMETRY_FIELDS), "%d values" % len(tele)
    for i in range(len(tele)):
        name = m.TELEMETRY_FIELDS[i][0]
        assert tele[i] == status[name], "TELEMETRY %s=%r, STATUS %r" % (
            name, tele[i], status[name])
    enc = codec.Encoder()
    n = enc.frame_bytes(m.TELEMETRY, m.SEQ_UNSOLICITED, tele)
    out = codec.Decoded()
    assert codec.decode(enc.frame, n, out, "event") == 0, out.reason
    assert tuple(out.values) == tuple(tele), "TELEMETRY round trip"


# -- programs and stops --------------------------------------------------------------------


def test_every_accepted_program_has_an_encodable_response():
    # The codec accepts any dose of 1000..20000000 ng/day, and a refill any concentration of
    # 1..2000 mcg/mL (confirmed when custom). Whatever the pump answers (accepted, or refused
    # with a typed error), the answer and the STATUS that follows must fit their wire fields.
    for dose in (1000, 400_000, 4_294_967, 4_294_968, 20_000_000):
        for conc in (1, 2, 50, 500, 2000):
            t = ready(concentration=conc, ceiling_ng=20_000_000)
            d = dispatcher(t)
            rtype, values = d.handle(m.SET_CONTINUOUS, (dose, m.CONFIRM_HIGH_DOSE), CLINICIAN)
            what = "SET_CONTINUOUS %d ng/day at %d mcg/mL" % (dose, conc)
            assert rtype in (m.CONTINUOUS_OK, m.ERROR), what
            if rtype == m.ERROR:
                assert values[0] != m.ERR_INTERNAL, "%s: %r" % (what, values)
            _check_response(rtype, values, rtype)
            advance(t, 3_600_000)
            _status(d)


def test_refusals_name_the_rule_the_values_and_the_wait():
    t = running(100_000)
    d = dispatcher(t)
    # Over the profile's hard ceiling (1500 mcg/day).
    got = _refused(d, m.SET_CONTINUOUS, (2_000_000, m.CONFIRM_HIGH_DOSE), CLINICIAN,
                   m.ERR_LIMIT)
    assert (got["rule"], got["requested"], got["allowed"], got["wait_s"]) == (
        m.RULE_HARD_CEILING, 2_000_000, 1_500_000, 0), "%r" % (got,)
    # An increase in the first 24 h of infusion: how long to wait.
    advance(t, 3_600_000)
    got = _refused(d, m.SET_CONTINUOUS, (110_000, 0), CLINICIAN, m.ERR_TOO_SOON)
    assert (got["rule"], got["requested"], got["allowed"], got["wait_s"]) == (
        m.RULE_FIRST_24H, 110_000, 100_000, 86_400 - 3_600), "%r" % (got,)
    # The program in force is untouched by refusals.
    assert _ok(d, m.GET_PROGRAM, (), PATIENT)["daily_dose_ng"] == 100_000, "unchanged"


def test_a_refusal_never_reports_a_wrapped_value():
    # ERROR's requested and allowed are u32. A value past 2**32 must not go out as its low 32
    # bits: at 1 mcg/mL, 4294.968 mcg/day is 4294968000 nL/day, over the pump's 24 mL/day.
    t = ready(concentration=1, ceiling_ng=20_000_000)
    d = dispatcher(t)
    got = _refused(d, m.SET_CONTINUOUS, (4_294_968, m.CONFIRM_HIGH_DOSE), CLINICIAN,
                   m.ERR_LIMIT)
    assert got["rule"] == m.RULE_PUMP_RATE, "rule %d" % got["rule"]
    assert got["requested"] > got["allowed"], (
        "refused for %d nL/day over the maximum %d: the true rate 4294968000 went out as its "
        "low 32 bits" % (got["requested"], got["allowed"]))
    assert got["requested"] == U32, "saturated at the field's top: %d" % got["requested"]


def test_stop_confirmed():
    t = running(400_000)
    d = dispatcher(t)
    for reason in (1, 2, 3, 4):
        got = _ok(d, m.STOP, (reason, m.STOP_CONFIRM))
        assert got == {"reason": reason}, "STOPPED %r" % (got,)
        assert t.mode == m.MODE_STOPPED and t.stop_reason == reason, "stopped"
        assert _last_event(t)[1:6] == (m.EV_STOP, CLINICIAN, 0, 0, reason), "logged"
    s = _status(d)
    assert (s["mode"], s["rate_nl_day"]) == (m.MODE_STOPPED, 0), "STATUS says stopped"
    assert advance(t, DAY_MS) == 0, "no steps"


def test_stop_unconfirmed_refused():
    t = running(400_000)
    d = dispatcher(t)
    got = _refused(d, m.STOP, (1, 0), CLINICIAN, m.ERR_NOT_CONFIRMED)
    assert got["rule"] == m.RULE_STOP_REASON, "rule %d" % got["rule"]
    assert "%08X" % m.STOP_CONFIRM in got["reason"], "names the word: %s" % got["reason"]
    assert t.mode == m.MODE_CONTINUOUS, "refused stop: still running"
    assert advance(t, 27_000) == 1, "refused stop: delivery goes on"
    assert d.frame_errors == 0, "a refusal is not a frame error"


def test_enter_repl():
    t = running(400_000)
    d = dispatcher(t)
    # Wrong word: refused whatever the state.
    _refused(d, m.ENTER_REPL, (m.STOP_CONFIRM,), SERVICE, m.ERR_NOT_CONFIRMED)
    assert not d.repl_requested, "no REPL without the word"
    # Right word while running: refused, delivery goes on.
    _refused(d, m.ENTER_REPL, (m.REPL_CONFIRM,), SERVICE, m.ERR_INVALID_STATE)
    assert not d.repl_requested, "no REPL while delivering"
    assert t.mode == m.MODE_CONTINUOUS and advance(t, 27_000) == 1, "still delivering"
    # Stopped, right word: REPL_OK, logged.
    _ok(d, m.STOP, (4, m.STOP_CONFIRM))
    assert _ok(d, m.ENTER_REPL, (m.REPL_CONFIRM,), SERVICE) == {}, "REPL_OK"
    assert d.repl_requested, "REPL requested"
    assert _last_event(t)[1:3] == (m.EV_REPL, SERVICE), "logged with who asked"


# -- every request type ----------------------------------------------------------------------

# For each request: the state it is sent in (therapy_kit), what the clinician did before it
# (therapy methods and their values), valid values, and who sends it. Each must be answered
# with its own response.
_RUNNING, _READY, _BARE, _SCREENING = "running", "ready", "bare", "screening"
_LOW = "low"  # running on 1 mL: the low-reservoir and refill-due alarms are up
_PB = (("set_patient_bolus", (20_000, 600, 3600, 4)),)
_REFILL = (("refill_begin", ()),)
CASES = (
    (m.GET_INFO, _RUNNING, (), (), 0),
    (m.GET_STATUS, _RUNNING, (), (), PATIENT),
    (m.SET_CONTINUOUS, _READY, (), (100_000, 0), CLINICIAN),
    (m.STOP, _RUNNING, (), (1, m.STOP_CONFIRM), CLINICIAN),
    (m.ENTER_REPL, _READY, (), (m.REPL_CONFIRM,), SERVICE),
    (m.CHALLENGE, _RUNNING, (), (), 0),
    (m.GET_COUNTERS, _RUNNING, (), (), PATIENT),
    (m.READ_LOG, _RUNNING, (), (0, m.LOG_PAGE_EVENTS), CLINICIAN),
    (m.SET_CLOCK, _RUNNING, (), (CLOCK0 + 3600,), CLINICIAN),
    (m.SET_TELEMETRY, _RUNNING, (), (10,), PATIENT),
    (m.SET_PROFILE, _BARE, (), (m.ORIGIN_SPINAL, 40, m.PHASE_TITRATION, 1_500_000, 200_000, 0, 0),
     CLINICIAN),
    (m.GET_PROFILE, _RUNNING, (), (), PATIENT),
    (m.SET_FLEX, _READY, (), (0, 60, ((0, 100_000), (480, 150_000))), CLINICIAN),
    (m.GET_PROGRAM, _RUNNING, (), (), PATIENT),
    (m.BOLUS, _RUNNING, (), (50_000, 600), CLINICIAN),
    (m.PRIME, _RUNNING, (), (600,), CLINICIAN),
    (m.SCREEN, _SCREENING, (), (50_000, 60), CLINICIAN),
    (m.PATIENT_BOLUS, _RUNNING, _PB, (), PATIENT),
    (m.SET_PATIENT_BOLUS, _RUNNING, (), (20_000, 600, 3600, 4), CLINICIAN),
    (m.GET_PATIENT_BOLUS, _RUNNING, _PB, (), PATIENT),
    (m.GET_SCREENING, _SCREENING, (("screen", (50_000, 60)),), (), CLINICIAN),
    (m.SUSPEND, _RUNNING, (), (1, m.STOP_CONFIRM), CLINICIAN),
    (m.RESUME, _RUNNING, (("suspend", (1, m.STOP_CONFIRM)),), (), CLINICIAN),
    (m.REFILL_BEGIN, _RUNNING, (), (), CLINICIAN),
    (m.REFILL_COMMIT, _RUNNING, _REFILL,
     (CAPACITY_NL, CAPACITY_NL, m.DRUG_BACLOFEN, 500, 500, 0), CLINICIAN),
    (m.REFILL_ABORT, _RUNNING, _REFILL, (), CLINICIAN),
    (m.CAP_BEGIN, _RUNNING, (), (600,), CLINICIAN),
    (m.CAP_END, _RUNNING, (("cap_begin", (600,)),), (), CLINICIAN),
    (m.ALARM_ACK, _LOW, (), (m.ALARM_LOW_RESERVOIR,), PATIENT),
    (m.ALARM_SILENCE, _RUNNING, (), (10,), PATIENT),
    (m.SET_TAPER, _RUNNING, (), (90_000, 14, 0), CLINICIAN),
    (m.GET_ALARMS, _LOW, (), (), PATIENT),
)


def _state(name):
    if name == _BARE:
        return bare()
    if name == _READY:
        return ready()
    if name == _SCREENING:
        return ready(phase=m.PHASE_SCREENING)
    if name == _LOW:
        t = running(fill_nl=1_000_000)
        advance(t, 1000)
        return t
    return running()


def _prepared(name, before):
    t = _state(name)
    t.role = CLINICIAN
    for method, args in before:
        getattr(t, method)(*args)
    t.role = 0
    return t


def _requests():
    return [row for row in m.MESSAGES if row[2] == "req"]


def test_every_request_type_is_answered_by_its_response():
    covered = [c[0] for c in CASES]
    for row in _requests():
        assert row[0] in covered, "%s has no case here" % row[1]
    for mtype, state, before, values, role in CASES:
        t = _prepared(state, before)
        d = dispatcher(t)
        n = t.log.total
        rtype, out = d.handle(mtype, values, role)
        assert rtype == mtype | 0x80, "%s %r answered 0x%02x %r" % (
            m.find(mtype)[1], values, rtype, out)
        _check_response(rtype, out, mtype | 0x80)
        if mtype in m.READ_ONLY:
            assert t.log.total == n, "%s logged something" % m.find(mtype)[1]


def _low_values(fields):
    """Every field at its low bound (a list with its fewest items, each at its low bounds)."""
    out = []
    for f in fields:
        if f[1] == "str":
            out.append("")
        elif f[1] == "list":
            out.append(tuple(tuple(_low_values(f[4])) for _ in range(f[2])))
        elif f[1].endswith("s"):
            out.append(bytes(int(f[1][:-1])))
        else:
            out.append(f[2])
    return tuple(out)


def _allowed_role(mtype):
    need = m.ACCESS[mtype]
    for role in (CLINICIAN, PATIENT, SERVICE):
        if need & (1 << role):
            return role
    return 0


def _answered(d, mtype, values, role, what):
    """Own response or a typed ERROR, never INTERNAL; either encodes."""
    rtype, out = d.handle(mtype, values, role)
    if rtype == m.ERROR:
        _check_response(rtype, out, m.ERROR)
        assert out[0] != m.ERR_INTERNAL, "%s: %s %r: %r" % (what, m.find(mtype)[1], values, out)
        assert out[1] == mtype, "%s: request type 0x%02x" % (what, out[1])
    else:
        _check_response(rtype, out, mtype | 0x80)
    return rtype


def test_every_request_at_its_low_bounds_is_answered():
    for state in (_BARE, _READY, _RUNNING, _SCREENING):
        for row in _requests():
            t = _state(state)
            d = dispatcher(t)
            _answered(d, row[0], _low_values(row[3]), _allowed_role(row[0]), state)


def _random_value(below, f):
    kind = f[1]
    if kind == "list":
        hi = f[3] if f[3] < 4 else 4
        n = f[2] + below(hi - f[2] + 1)
        start = below(120)
        items = []
        for _ in range(n):
            item = []
            for g in f[4]:
                if g[0] == "start_min":
                    item.append(start if start <= g[3] else g[3])
                    start += 1 + below(300)
                else:
                    item.append(_random_value(below, g))
            items.append(tuple(item))
        return tuple(items)
    lo, hi = f[2], f[3]
    if f[0] == "confirm" and kind == "I" and below(2):
        return m.STOP_CONFIRM if below(2) else m.REPL_CONFIRM
    r = below(6)
    if r == 0:
        return lo
    if r == 1:
        return hi
    if r == 2:
        span = hi - lo if hi - lo < 1000 else 1000
        return lo + below(span + 1)
    return lo + (hi - lo) * below(1 << 20) // (1 << 20)


def test_random_requests_are_answered_never_internal():
    # A clinician, a patient and time at random: whatever the codec lets through, in whatever
    # state the engine is, gets its own response or a typed refusal.
    reqs = [row for row in _requests() if row[0] != m.ENTER_REPL]
    answered = {}
    for seed, state in ((1, _RUNNING), (2, _READY), (3, _BARE), (4, _SCREENING), (5, _RUNNING)):
        below = lcg(seed)
        t = _state(state)
        d = dispatcher(t)
        for i in range(250):
            row = reqs[below(len(reqs))]
            values = tuple(_random_value(below, f) for f in row[3])
            what = "seed %d request %d" % (seed, i)
            rtype = _answered(d, row[0], values, _allowed_role(row[0]), what)
            if rtype != m.ERROR:
                answered[row[0]] = answered.get(row[0], 0) + 1
            if below(3) == 0:
                advance(t, below(4 * 3_600_000))
    assert len(answered) >= len(reqs) // 2, "few requests went through: %r" % (answered,)


# -- internal errors -------------------------------------------------------------------------

# The engine's handlers, by request type.
_THERAPY_HANDLERS = (
    (m.SET_CONTINUOUS, "set_continuous"), (m.STOP, "stop"), (m.SET_PROFILE, "set_profile"),
    (m.GET_PROFILE, "profile"), (m.SET_FLEX, "set_flex"), (m.GET_PROGRAM, "program"),
    (m.BOLUS, "bolus"), (m.PRIME, "prime"), (m.SCREEN, "screen"),
    (m.PATIENT_BOLUS, "patient_bolus"), (m.SET_PATIENT_BOLUS, "set_patient_bolus"),
    (m.GET_PATIENT_BOLUS, "patient_bolus_state"), (m.GET_SCREENING, "screening"),
    (m.SUSPEND, "suspend"), (m.RESUME, "resume"), (m.REFILL_BEGIN, "refill_begin"),
    (m.REFILL_COMMIT, "refill_commit"), (m.REFILL_ABORT, "refill_abort"),
    (m.CAP_BEGIN, "cap_begin"), (m.CAP_END, "cap_end"), (m.ALARM_ACK, "alarm_ack"),
    (m.ALARM_SILENCE, "alarm_silence"), (m.SET_TAPER, "set_taper"),
    (m.GET_ALARMS, "alarm_state"),
)


def _fail(*args):
    raise ZeroDivisionError("a firmware bug")


class _Broken:
    """A pump or log whose every attribute fails (a firmware bug, as the dispatcher meets it)."""

    def __getattr__(self, name):
        raise AttributeError("broken: " + name)


def _case(mtype):
    for c in CASES:
        if c[0] == mtype:
            return c
    raise AssertionError("no case for 0x%02x" % mtype)


def test_a_failing_handler_becomes_internal_and_delivery_goes_on():
    t = running(400_000)
    for _mtype, name in _THERAPY_HANDLERS:
        setattr(t, name, _fail)  # every engine handler fails inside
    d = dispatcher(t, random_bytes=_fail)
    d.pump = _Broken()  # the dispatcher's own reads fail too: INFO, STATUS, SET_CLOCK
    d.log = _Broken()  # READ_LOG
    before = (t.mode, t.daily_ng, t.pump.basal_nl_day, t.pump.volume_nl)
    own = (m.GET_INFO, m.GET_STATUS, m.SET_CLOCK, m.READ_LOG, m.CHALLENGE)
    failing = own + tuple(c[0] for c in _THERAPY_HANDLERS)
    for k in range(len(failing)):
        mtype = failing[k]
        _c, _s, _b, values, role = _case(mtype)
        got = _refused(d, mtype, values, role, m.ERR_INTERNAL)
        assert got["reason"].startswith("internal error"), "reason %s" % got["reason"]
        assert d.error_counts[m.ERR_INTERNAL] == k + 1, "counted: %d" % (
            d.error_counts[m.ERR_INTERNAL])
        ev = _last_event(t)
        assert ev[1:5] == (m.EV_REFUSED, role, 0, mtype) and ev[5] == m.ERR_INTERNAL, (
            "logged as %r" % (ev,))
    assert d.frame_errors == 0, "internal errors are not frame errors"
    # The dispatcher's own state still answers, and delivery went on.
    assert _ok(d, m.GET_COUNTERS, (), PATIENT)["internal"] == len(failing), "COUNTERS"
    assert (t.mode, t.daily_ng, t.pump.basal_nl_day, t.pump.volume_nl) == before, "as it was"
    assert advance(t, 27_000) == 1, "delivery goes on"


def test_malformed_values_become_internal():
    # Values the codec would never hand over (a codec bug): one too many, none, the wrong
    # kind; a type with no handler. Caught like any other failure.
    t = running(400_000)
    d = dispatcher(t)
    for row in _requests():
        # Two more: some handlers take an optional argument of their own (timed_out).
        _refused(d, row[0], _low_values(row[3]) + (0, 0), _allowed_role(row[0]),
                 m.ERR_INTERNAL)
    for mtype, values in ((m.SET_CONTINUOUS, ()), (m.STOP, (1,)), (m.ENTER_REPL, ()),
                          (0x7E, ()), (m.STATUS, ()), (m.SET_CONTINUOUS, (1000, "x"))):
        _refused(d, mtype, values, CLINICIAN, m.ERR_INTERNAL)
    assert advance(t, 27_000) == 1, "delivery goes on"


def test_long_internal_error_text_still_encodes():
    t = ready()

    def fail(dose, confirm):
        raise ValueError("x" * 300)

    t.set_continuous = fail
    d = dispatcher(t)
    rtype, values = d.handle(m.SET_CONTINUOUS, (400_000, 0), CLINICIAN)
    assert rtype == m.ERROR and values[0] == m.ERR_INTERNAL, "%r" % (values,)
    enc = codec.Encoder()
    n = enc.frame_bytes(rtype, 1, values)
    out = codec.Decoded()
    assert codec.decode(enc.frame, n, out, "resp") == 0, "error %d" % out.error
    assert len(out.values[-1].encode()) == REASON_MAX, "reason cut to 80 bytes"


def test_a_zero_dose_past_the_codec_keeps_the_program_in_force():
    # A dose of 0 cannot come through the codec (SET_CONTINUOUS starts at 1000 ng/day), but
    # the engine must not depend on it: it refuses the value itself (it once divided by zero
    # half-way through the change), and the program in force, and what reports it, stay as
    # they were: the pump must not report one program while it runs another.
    t = running(400_000)
    d = dispatcher(t)
    advance(t, 27_000 * 4)
    before = _status(d)
    program = t.program()
    got = _refused(d, m.SET_CONTINUOUS, (0, m.CONFIRM_LARGE_DECREASE), CLINICIAN,
                   m.ERR_OUT_OF_RANGE)
    assert advance(t, 27_000) == 1, "delivery goes on at the old interval"
    assert t.pump.delivered_ng() == 5 * 125, "5 steps at 500 mcg/mL: %d" % (
        t.pump.delivered_ng())
    assert t.program() == program, (
        "the program in force changed by a failed request (%s): %r -> %r, while the pump "
        "still runs %d nL/day" % (got["reason"], program, t.program(), t.pump.basal_nl_day))
    after = _status(d)
    for name in ("mode", "daily_dose_ng", "rate_nl_day", "dry_at_s"):
        assert after[name] == before[name], "STATUS %s changed by a failed request: %r -> %r" % (
            name, before[name], after[name])


def test_a_failing_program_change_is_not_applied():
    # The same through a handler that fails before it changes anything: all as it was.
    t = running(400_000)
    t.set_continuous = _fail
    d = dispatcher(t)
    advance(t, 27_000 * 4)
    before = _status(d)
    program = _ok(d, m.GET_PROGRAM, (), PATIENT)
    _refused(d, m.SET_CONTINUOUS, (300_000, 0), CLINICIAN, m.ERR_INTERNAL)
    assert _ok(d, m.GET_PROGRAM, (), PATIENT) == program, "GET_PROGRAM unchanged"
    assert _status(d) == before, "STATUS unchanged"
    assert advance(t, 27_000) == 1, "delivery goes on at the old interval"


# -- frame errors and counters ---------------------------------------------------------------


def test_error_counts_frame_errors_and_wraps():
    t = ready()
    d = dispatcher(t)
    n = t.log.total
    rtype, values = d.error(m.ERR_BAD_CRC, 0, "CRC mismatch")
    _check_response(rtype, values, m.ERROR)
    assert tuple(values) == (m.ERR_BAD_CRC, 0, 0, 0, 0, 0, "CRC mismatch"), "%r" % (values,)
    assert d.frame_errors == 1, "counted: %d" % d.frame_errors
    rtype, values = d.error(m.ERR_BAD_LENGTH, m.STOP, "STOP payload of 3 bytes")
    assert tuple(values) == (m.ERR_BAD_LENGTH, m.STOP, 0, 0, 0, 0,
                             "STOP payload of 3 bytes"), "%r" % (values,)
    assert _status(d)["frame_errors"] == 2, "STATUS reports 2 frame errors"
    for _ in range(0xFFFF - 2):
        d.error(m.ERR_BAD_COBS, 0, "bad COBS encoding")
    assert d.frame_errors == 0xFFFF, "65535: %d" % d.frame_errors
    assert _status(d)["frame_errors"] == 0xFFFF, "STATUS reports 65535"
    d.error(m.ERR_OVERSIZE, 0, "frame over 256 bytes")
    assert d.frame_errors == 0, "wraps to 0 at 16 bits: %d" % d.frame_errors
    d.error(m.ERR_TRUNCATED, 0, "frame of 3 bytes")
    assert d.frame_errors == 1, "counts on after the wrap: %d" % d.frame_errors
    assert t.log.total == n, "line noise is not logged"
    assert t.mode == m.MODE_STOPPED and t.pump.volume_nl == CAPACITY_NL, "pump left alone"


def test_error_counts_by_code():
    d = dispatcher(ready())
    codes = [e[0] for e in m.ERRORS]
    assert codes == list(range(1, len(codes) + 1)), "error codes are 1..N: %r" % (codes,)
    assert len(d.error_counts) > codes[-1], "a counter for every code"
    assert d.error_counts == [0] * len(d.error_counts), "all 0 at boot"
    for code in codes:
        for _ in range(code):  # code k refused k times
            rtype, values = d.error(code, m.GET_STATUS, "x")
            assert rtype == m.ERROR and values[0] == code, "%r" % (values,)
    for code in codes:
        assert d.error_counts[code] == code, "code %d counted %d times" % (
            code, d.error_counts[code])
    assert d.frame_errors == sum(codes), "frame_errors %d" % d.frame_errors
    # Codes that are not error codes are answered and counted in total, not by code.
    before = list(d.error_counts)
    for code in (0, codes[-1] + 1, 200, 255):
        rtype, values = d.error(code, 0, "x")
        assert values[0] == code, "answered as given"
    assert d.error_counts == before, "no counter for unknown codes"
    assert d.frame_errors == sum(codes) + 4, "but counted as frame errors"
    got = _ok(d, m.GET_COUNTERS, (), PATIENT)
    for code, name, _ in m.ERRORS:
        assert got[name.lower()] == code, "COUNTERS %s=%d" % (name, got[name.lower()])


def test_error_counts_wrap_per_code():
    d = dispatcher(ready())
    for _ in range(0xFFFF):
        d.error(m.ERR_BAD_TAG, m.STOP, "x")
    assert d.error_counts[m.ERR_BAD_TAG] == 0xFFFF, "65535"
    assert _ok(d, m.GET_COUNTERS, (), PATIENT)["bad_tag"] == 0xFFFF, "COUNTERS at the top"
    d.error(m.ERR_BAD_TAG, m.STOP, "x")
    assert d.error_counts[m.ERR_BAD_TAG] == 0, "wraps at 16 bits"
    d.error(m.ERR_BAD_TAG, m.STOP, "x")
    assert d.error_counts[m.ERR_BAD_TAG] == 1, "and counts on"
    for code in range(1, len(d.error_counts)):
        if code != m.ERR_BAD_TAG:
            assert d.error_counts[code] == 0, "code %d untouched" % code


def test_refusals_are_counted_by_code_and_logged():
    t = running(400_000)
    d = dispatcher(t)
    n = t.log.total
    _refused(d, m.STOP, (1, 0), CLINICIAN, m.ERR_NOT_CONFIRMED)
    assert _last_event(t) == (CLOCK0, m.EV_REFUSED, CLINICIAN, m.RULE_STOP_REASON, m.STOP,
                              m.ERR_NOT_CONFIRMED, 1, 0), "%r" % (_last_event(t),)
    _refused(d, m.SUSPEND, (2, 1), CLINICIAN, m.ERR_NOT_CONFIRMED)
    _refused(d, m.ENTER_REPL, (m.REPL_CONFIRM,), SERVICE, m.ERR_INVALID_STATE)  # running
    assert _last_event(t)[1:5] == (m.EV_REFUSED, SERVICE, 0, m.ENTER_REPL), "who asked"
    _refused(d, m.SET_CONTINUOUS, (2_000_000, m.CONFIRM_HIGH_DOSE), CLINICIAN, m.ERR_LIMIT)
    assert _last_event(t) == (CLOCK0, m.EV_REFUSED, CLINICIAN, m.RULE_HARD_CEILING,
                              m.SET_CONTINUOUS, m.ERR_LIMIT, 2_000_000, 1_500_000), (
        "rule, requested, allowed: %r" % (_last_event(t),))
    _refused(d, m.PATIENT_BOLUS, (), PATIENT, m.ERR_INVALID_STATE)  # not enabled
    assert _last_event(t)[1:5] == (m.EV_REFUSED, PATIENT, m.RULE_PATIENT_BOLUS_OFF,
                                   m.PATIENT_BOLUS), "%r" % (_last_event(t),)
    assert t.log.total == n + 5, "each refusal logged once"
    assert d.error_counts[m.ERR_NOT_CONFIRMED] == 2, "%r" % (d.error_counts,)
    assert d.error_counts[m.ERR_INVALID_STATE] == 2, "%r" % (d.error_counts,)
    assert d.error_counts[m.ERR_LIMIT] == 1, "%r" % (d.error_counts,)
    assert d.frame_errors == 0, "refusals are not frame errors"
    got = _ok(d, m.GET_COUNTERS, (), PATIENT)
    for code, name, _ in m.ERRORS:
        assert got[name.lower()] == d.error_counts[code], "COUNTERS %s" % name


def test_denied_requests_are_counted_and_logged_unproven_ones_once_a_minute():
    t = running(400_000)
    d = dispatcher(t)
    n = t.log.total
    rtype, values = d.denied(m.ERR_AUTH_REQUIRED, m.SET_CONTINUOUS, "authenticate", 0)
    _check_response(rtype, values, m.ERROR)
    assert tuple(values) == (m.ERR_AUTH_REQUIRED, m.SET_CONTINUOUS, 0, 0, 0, 0,
                             "authenticate"), "%r" % (values,)
    assert t.log.total == n + 1, "logged"
    assert _last_event(t)[1:6] == (m.EV_REFUSED, 0, 0, m.SET_CONTINUOUS,
                                   m.ERR_AUTH_REQUIRED), "with no role: %r" % (_last_event(t),)
    # A flood of unproven refusals: each counted, logged at most once a minute.
    for _ in range(100):
        d.denied(m.ERR_BAD_TAG, m.STOP, "tag", 0)
        advance(t, 500)
    assert t.log.total == n + 1, "not logged again within the minute"
    advance(t, 10_000)
    d.denied(m.ERR_BAD_TAG, m.STOP, "tag", 0)
    assert t.log.total == n + 2, "a minute on: logged"
    # A refusal whose tag proved who sent it is always logged, with the role.
    d.denied(m.ERR_WRONG_ROLE, m.STOP, "patient may not send this", PATIENT)
    assert _last_event(t)[1:6] == (m.EV_REFUSED, PATIENT, 0, m.STOP, m.ERR_WRONG_ROLE), (
        "%r" % (_last_event(t),))
    # A clock set back does not silence them for as long.
    t.set_clock(CLOCK0 - 3600)
    d.denied(m.ERR_BAD_TAG, m.STOP, "tag", 0)
    assert _last_event(t)[1] == m.EV_REFUSED and t.log.total == n + 4, "logged after a clock set"
    assert d.error_counts[m.ERR_AUTH_REQUIRED] == 1 and d.error_counts[m.ERR_BAD_TAG] == 102
    assert d.error_counts[m.ERR_WRONG_ROLE] == 1 and d.frame_errors == 0, "counted"


# -- CHALLENGE -------------------------------------------------------------------------------


def test_challenge_returns_slot_and_nonce_from_random_bytes():
    t = running()
    rnd = Entropy()
    d = dispatcher(t, random_bytes=rnd)
    g = d.guard
    slots = []
    for k in range(m.SESSIONS + 2):
        got = _ok(d, m.CHALLENGE, (), 0)
        slot, nonce = got["session"], got["nonce"]
        assert rnd.calls[-1] == m.NONCE_SIZE, "asked for %d bytes" % rnd.calls[-1]
        assert len(rnd.calls) == k + 1, "one draw per CHALLENGE"
        assert nonce == rnd.drawn[-1], "the nonce is what random_bytes gave"
        assert g.nonces[slot] == nonce and g.counters[slot] == 0, "the guard's session"
        slots.append(slot)
    # Fresh slots in turn, then the least recently used.
    assert slots == [0, 1, 2, 3, 0, 1], "slots %r" % (slots,)
    assert len(set(rnd.drawn)) == len(rnd.drawn), "a new nonce each time"
    assert t.pump.volume_nl == CAPACITY_NL and t.log.get(t.log.total - 1)[1] == m.EV_PROGRAM, (
        "the pump untouched, nothing logged")


def test_challenge_then_signed_request_is_admitted():
    # End to end through the dispatcher and the guard: the nonce CHALLENGE_OK gives signs.
    t = ready()
    d = dispatcher(t)
    got = _ok(d, m.CHALLENGE, (), 0)
    slot, nonce = got["session"], got["nonce"]
    head = struct.pack("<BBBH", m.VERSION, m.SET_CONTINUOUS, m.FLAG_AUTH, 7)
    head += struct.pack("<IB", 400_000, 0) + struct.pack("<BBI", slot, CLINICIAN, 1)
    body = head + auth.frame_tag(CLINICIAN_KEY, nonce, head)
    frame = bytearray(m.MAX_FRAME)
    whole = body + struct.pack("<I", binascii.crc32(body) & 0xFFFFFFFF)
    frame[: len(whole)] = whole
    dec = codec.Decoded()
    assert codec.decode(frame, len(whole), dec) == 0, dec.reason
    assert d.guard.admit(dec, frame) == 0, d.guard.reason
    assert d.guard.advance(dec) == 0, d.guard.reason
    rtype, values = d.handle(dec.type, dec.values, dec.role)
    _check_response(rtype, values, m.CONTINUOUS_OK)
    assert t.mode == m.MODE_CONTINUOUS and t.daily_ng == 400_000, "programmed"
    assert _last_event(t)[1:3] == (m.EV_PROGRAM, CLINICIAN), "by the clinician"
    # A second CHALLENGE takes another slot: the first session goes on.
    got = _ok(d, m.CHALLENGE, (), 0)
    assert got["session"] != slot, "another slot"
    assert d.guard.admit(dec, frame) == 0, "first session still open"


def test_challenge_without_entropy_is_internal():
    def broken(n):
        raise OSError("no entropy")

    d = dispatcher(running(), random_bytes=broken)
    _refused(d, m.CHALLENGE, (), 0, m.ERR_INTERNAL)
    assert [n for n in d.guard.nonces if n] == [], "no session opened: %r" % (d.guard.nonces,)


# -- the clock and the log -------------------------------------------------------------------


def test_set_clock_past_2038():
    # SET_CLOCK takes any time up to CLOCK_MAX (2100); the clock_set event logs how far the
    # clock moved, clamped to the log's i32 (messages.ENUMS["event"]). A time past 2038-01-19
    # (2**31 s) must be set and logged like any other.
    for when in (m.CLOCK_MIN, 0x7FFFFFFF, 0x80000000, m.CLOCK_MAX):
        t = running()
        d = dispatcher(t)
        before = t.pump.clock_s()
        got = _ok(d, m.SET_CLOCK, (when,))
        assert got == {"time_s": when} and t.pump.clock_s() == when, "clock %d" % (
            t.pump.clock_s())
        page = _ok(d, m.READ_LOG, (t.log.total - 1, 1))
        assert len(page["events"]) == 1, "one event: %r" % (page,)
        entry = dict(zip([f[0] for f in m.LOG_FIELDS], page["events"][0]))
        assert entry["event"] == m.EV_CLOCK_SET and entry["role"] == CLINICIAN, "%r" % (entry,)
        assert entry["time_s"] == when, "logged at the new time: %d" % entry["time_s"]
        moved = max(-0x80000000, min(0x7FFFFFFF, when - before))
        assert (entry["a"], entry["b"]) == (moved, 0), (
            "SET_CLOCK %d logged as a=%d b=%d" % (when, entry["a"], entry["b"]))
        assert _status(d)["clock_s"] == when, "STATUS has it"


def test_read_log_pages():
    t = ready(log_size=8)  # the profile and the refill: 3 events
    d = dispatcher(t)
    for i in range(20):
        d.therapy.record(m.EV_BOOT, i, -i, 1000 + i)
        advance(t, 1000)
    total = 23
    assert t.log.total == total and t.log.oldest() == total - 8, "8 held"
    # From the start: the oldest still held, in order; count is at most LOG_PAGE.
    page = _ok(d, m.READ_LOG, (0, m.LOG_PAGE_EVENTS))
    assert (page["oldest"], page["total"]) == (15, total), "%r" % (page,)
    numbers = [e[0] for e in page["events"]]
    assert numbers == list(range(15, 23)), "the 8 held: %r" % (numbers,)
    # A page from the middle, and the contents of each event.
    page = _ok(d, m.READ_LOG, (17, 3))
    assert [e[0] for e in page["events"]] == [17, 18, 19], "%r" % (page,)
    for e in page["events"]:
        i = e[0] - 3
        assert e[1:] == (CLOCK0 + i, m.EV_BOOT, 0, 0, 0, i, -i, 1000 + i), "%r" % (e,)
    # The last events, then past the end: an empty page that still says where the log is.
    page = _ok(d, m.READ_LOG, (21, m.LOG_PAGE_EVENTS))
    assert [e[0] for e in page["events"]] == [21, 22], "%r" % (page,)
    for number in (total, total + 1, U32):
        page = _ok(d, m.READ_LOG, (number, m.LOG_PAGE_EVENTS))
        assert page == {"oldest": 15, "total": total, "events": ()}, "%d: %r" % (number, page)
    # Paging through: every held event once, in order, none of the dropped ones.
    seen = []
    number = 0
    while True:
        page = _ok(d, m.READ_LOG, (number, 3))
        if not page["events"]:
            break
        assert len(page["events"]) <= 3, "at most count"
        seen += [e[0] for e in page["events"]]
        number = page["events"][-1][0] + 1
    assert seen == list(range(15, 23)), "%r" % (seen,)
    assert t.log.total == total, "reading logs nothing"
    # More events push the oldest out while paging: the next page starts at the oldest held.
    for i in range(10):
        d.therapy.record(m.EV_BOOT, 100 + i)
    page = _ok(d, m.READ_LOG, (18, 2))
    assert page["oldest"] == 25 and [e[0] for e in page["events"]] == [25, 26], "%r" % (page,)
