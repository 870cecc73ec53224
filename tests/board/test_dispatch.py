# Requests -> pump -> responses (firmware/core/dispatch.py): every request type gives the right
# response, refusals become typed ERRORs, a failing handler never lets an exception out, frame
# errors are counted (in total and by error code), and CHALLENGE opens a session in the guard
# with a nonce from the injected random_bytes. Board-safe: runs on CPython and on MicroPython.

import binascii
import struct

from firmware import config
from firmware.core.dispatch import Dispatcher
from firmware.core.eventlog import EventLog
from firmware.core.guard import Guard
from firmware.core.pump import Pump
from protocol import auth, codec
from protocol import messages as m

BOARD_ID = b"\xe6\x61\x38\x52\x83\x47\xa5\x2f"
FW = "0.1.0-test"
STEP_NL = 250
FULL_NL = 20_000_000
CLINICIAN_KEY = bytes((0x80 + 3 * i) & 0xFF for i in range(32))


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


def _dispatcher(pump, guard=None, random_bytes=None):
    if guard is None:
        guard = Guard({m.ROLE_CLINICIAN: CLINICIAN_KEY})
    if random_bytes is None:
        random_bytes = Entropy()
    return Dispatcher(pump, (BOARD_ID, FW), guard, random_bytes, EventLog(32))


def _setup(volume_nl=FULL_NL):
    p = Pump(STEP_NL, FULL_NL, volume_nl, config.MAX_RATE_NL_DAY, 0, 1 << 30)  # no cap
    return p, _dispatcher(p)


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
    except Exception as e:  # CPython's struct refuses a value that does not fit its field
        return -1, "cannot encode: %r" % (e,)
    d = codec.Decoded()
    err = codec.decode(enc.frame, n, d, "resp")
    return err, d.values


def _check_response(rtype, values, want_type):
    assert rtype == want_type, "response type 0x%02x, want 0x%02x" % (rtype, want_type)
    row = m.find(rtype)
    assert row is not None and row[2] == "resp", "0x%02x is a response type" % rtype
    assert len(values) == len(row[3]), "%s has %d values, table %d" % (
        row[1], len(values), len(row[3]))
    err, back = _roundtrip(rtype, values)
    assert err == 0, "%s response does not encode/decode: error %d" % (row[1], err)
    assert tuple(back) == tuple(values), "%s round trip: %r != %r" % (row[1], back, values)


def _status(d):
    rtype, values = d.handle(m.GET_STATUS, ())
    _check_response(rtype, values, m.STATUS)
    return values


def test_get_info():
    p, d = _setup()
    rtype, values = d.handle(m.GET_INFO, ())
    _check_response(rtype, values, m.INFO)
    want = (m.VERSION, BOARD_ID, FULL_NL, STEP_NL, FW)
    assert tuple(values) == want, "INFO %r, want %r" % (values, want)


def test_get_status_fresh():
    p, d = _setup()
    got = _fields(m.STATUS, _status(d))
    want = {"mode": m.MODE_STOPPED, "daily_dose_ng": 0, "concentration": 0, "rate_nl_day": 0,
            "delivered_nl": 0, "delivered_ng": 0, "reservoir_nl": FULL_NL, "uptime_s": 0,
            "frame_errors": 0}
    for name in want:
        assert got[name] == want[name], "STATUS %s=%r, want %r" % (name, got[name], want[name])


def test_set_continuous_then_status():
    p, d = _setup()
    rtype, values = d.handle(m.SET_CONTINUOUS, (412_500, 500))
    _check_response(rtype, values, m.SET_CONTINUOUS_OK)
    assert tuple(values) == (412_500, 500, 825_000), "SET_CONTINUOUS_OK %r" % (values,)
    assert p.mode == m.MODE_CONTINUOUS, "pump running"
    # One day on: 3300 steps = 825000 nL = 412500 ng; 20 mL - 825 uL left.
    p.advance(86_400_000)
    got = _fields(m.STATUS, _status(d))
    want = {"mode": m.MODE_CONTINUOUS, "daily_dose_ng": 412_500, "concentration": 500,
            "rate_nl_day": 825_000, "delivered_nl": 825_000, "delivered_ng": 412_500,
            "reservoir_nl": FULL_NL - 825_000, "uptime_s": 86_400, "frame_errors": 0}
    for name in want:
        assert got[name] == want[name], "STATUS %s=%r, want %r" % (name, got[name], want[name])


def test_every_accepted_program_has_an_encodable_response():
    # The codec accepts any dose of 1000..20000000 ng/day at 1..2000 mcg/mL. Whatever the
    # pump answers (accepted, or refused with a typed error), the answer and the STATUS that
    # follows must fit their wire fields exactly (rate_nl_day is a u32: 20000 mcg/day at
    # 1 mcg/mL is 2e10 nL/day).
    for dose in (1000, 400_000, 4_294_967, 4_294_968, 20_000_000):
        for conc in (1, 2, 500, 2000):
            p, d = _setup()
            rtype, values = d.handle(m.SET_CONTINUOUS, (dose, conc))
            what = "SET_CONTINUOUS %d ng/day at %d mcg/mL" % (dose, conc)
            assert rtype in (m.SET_CONTINUOUS_OK, m.ERROR), what
            assert rtype == m.SET_CONTINUOUS_OK or values[0] != m.ERR_INTERNAL, what
            err, back = _roundtrip(rtype, values)
            assert err == 0, "%s: response does not encode: %r" % (what, back)
            assert tuple(back) == tuple(values), "%s: response %r goes out as %r" % (
                what, values, back)
            rtype, values = d.handle(m.GET_STATUS, ())
            err, back = _roundtrip(rtype, values)
            assert err == 0 and tuple(back) == tuple(values), "%s: STATUS %r goes out as %r" % (
                what, values, back)


def test_stop_confirmed():
    p, d = _setup()
    d.handle(m.SET_CONTINUOUS, (400_000, 500))
    for reason in (1, 2, 3, 4):
        rtype, values = d.handle(m.STOP, (reason, m.STOP_CONFIRM))
        _check_response(rtype, values, m.STOPPED)
        assert tuple(values) == (reason,), "STOPPED %r" % (values,)
        assert p.mode == m.MODE_STOPPED and p.stop_reason == reason, "pump stopped"
    assert _fields(m.STATUS, _status(d))["mode"] == m.MODE_STOPPED, "STATUS says stopped"
    assert _fields(m.STATUS, _status(d))["rate_nl_day"] == 0, "stopped: rate 0"


def test_stop_unconfirmed_refused():
    p, d = _setup()
    d.handle(m.SET_CONTINUOUS, (400_000, 500))
    rtype, values = d.handle(m.STOP, (1, 0))
    _check_response(rtype, values, m.ERROR)
    assert values[0] == m.ERR_NOT_CONFIRMED, "code %d" % values[0]
    assert values[1] == m.STOP, "request type 0x%02x" % values[1]
    assert "%08X" % m.STOP_CONFIRM in values[2], "reason names the word: %s" % values[2]
    assert p.mode == m.MODE_CONTINUOUS, "refused stop: still running"
    assert p.advance(27_000) == 1, "refused stop: delivery goes on"
    assert d.frame_errors == 0, "a refusal is not a frame error"


def test_enter_repl():
    p, d = _setup()
    d.handle(m.SET_CONTINUOUS, (400_000, 500))
    # Wrong word: refused whatever the state.
    rtype, values = d.handle(m.ENTER_REPL, (m.STOP_CONFIRM,))
    _check_response(rtype, values, m.ERROR)
    assert values[0] == m.ERR_NOT_CONFIRMED and values[1] == m.ENTER_REPL, "%r" % (values,)
    assert not d.repl_requested, "no REPL without the word"
    # Right word while running: refused, delivery goes on.
    rtype, values = d.handle(m.ENTER_REPL, (m.REPL_CONFIRM,))
    _check_response(rtype, values, m.ERROR)
    assert values[0] == m.ERR_INVALID_STATE and values[1] == m.ENTER_REPL, "%r" % (values,)
    assert not d.repl_requested, "no REPL while delivering"
    assert p.mode == m.MODE_CONTINUOUS and p.advance(27_000) == 1, "still delivering"
    # Stopped, right word: REPL_OK.
    d.handle(m.STOP, (4, m.STOP_CONFIRM))
    rtype, values = d.handle(m.ENTER_REPL, (m.REPL_CONFIRM,))
    _check_response(rtype, values, m.REPL_OK)
    assert d.repl_requested, "REPL requested"


# Valid values for the requests, answered with their own response by a fresh dispatcher
# whose log holds one event.
REQUESTS = {
    m.GET_INFO: (),
    m.GET_STATUS: (),
    m.SET_CONTINUOUS: (400_000, 500),
    m.STOP: (1, m.STOP_CONFIRM),
    m.ENTER_REPL: (m.REPL_CONFIRM,),
    m.CHALLENGE: (),
}


def _low_values(row):
    """Every field of a request at its low bound (for the requests not in REQUESTS)."""
    out = []
    for f in row[3]:
        if f[1] == "str":
            out.append("")
        elif f[1].endswith("s"):
            out.append(bytes(int(f[1][:-1])))
        else:
            out.append(f[2])
    return tuple(out)


def test_every_request_type_is_handled():
    # Each request in the table gets its own response type (those spelled out above) or a
    # typed refusal (the others, at their low bounds), never INTERNAL.
    for row in m.MESSAGES:
        if row[2] != "req":
            continue
        p, d = _setup()
        d.record(1)  # an event in the log (the loop logs the boot)
        rtype, values = d.handle(row[0], REQUESTS.get(row[0], _low_values(row)))
        if row[0] in REQUESTS or rtype != m.ERROR:
            assert rtype == row[0] | 0x80, "%s answered with 0x%02x %r" % (
                row[1], rtype, values)
            _check_response(rtype, values, row[0] | 0x80)
        else:
            _check_response(rtype, values, m.ERROR)
            assert values[0] != m.ERR_INTERNAL, "%s: %r" % (row[1], values)


class BrokenPump:
    """A pump whose every command and reading fails inside (its clock alone works, for the
    log): what a firmware bug in the pump looks like to the dispatcher."""

    mode = property(lambda self: 1 // 0)
    reservoir_nl = property(lambda self: 1 // 0)

    def clock_s(self):
        return 0

    def __getattr__(self, name):
        raise AttributeError("broken pump: " + name)


def test_unexpected_exception_becomes_internal_error():
    # Every handler fails inside; nothing escapes.
    def no_entropy(n):
        raise OSError("no entropy")

    d = Dispatcher(BrokenPump(), (BOARD_ID, FW), None, no_entropy, EventLog(8))
    cases = (
        (m.GET_INFO, ()),
        (m.GET_STATUS, ()),
        (m.SET_CONTINUOUS, (400_000, 500)),
        (m.STOP, (1, m.STOP_CONFIRM)),
        (m.ENTER_REPL, (m.REPL_CONFIRM,)),
        (m.CHALLENGE, ()),
    )
    for mtype, args in cases:
        rtype, values = d.handle(mtype, args)
        _check_response(rtype, values, m.ERROR)
        assert values[0] == m.ERR_INTERNAL, "0x%02x: code %d" % (mtype, values[0])
        assert values[1] == mtype, "request type 0x%02x, want 0x%02x" % (values[1], mtype)
        assert values[2].startswith("internal error"), "reason %s" % values[2]
    # Malformed values and types with no handler (codec bugs) are caught the same way.
    p, d = _setup()
    for mtype, args in ((m.SET_CONTINUOUS, ()), (m.STOP, (1,)), (m.ENTER_REPL, ()),
                        (0x7E, ()), (m.STATUS, ()), (m.SET_CONTINUOUS, (1000, "x"))):
        rtype, values = d.handle(mtype, args)
        _check_response(rtype, values, m.ERROR)
        assert values[0] == m.ERR_INTERNAL, "0x%02x %r: code %d" % (mtype, args, values[0])
        assert values[1] == mtype, "request type 0x%02x" % values[1]
    assert d.frame_errors == 0, "internal errors are not frame errors"


def test_long_internal_error_text_still_encodes():
    p, d = _setup()

    def fail(dose, conc):
        raise ValueError("x" * 300)

    p.set_continuous = fail
    rtype, values = d.handle(m.SET_CONTINUOUS, (400_000, 500))
    assert rtype == m.ERROR and values[0] == m.ERR_INTERNAL, "%r" % (values,)
    enc = codec.Encoder()
    n = enc.frame_bytes(rtype, 1, values)
    out = codec.Decoded()
    assert codec.decode(enc.frame, n, out, "resp") == 0, "error %d" % out.error
    assert len(out.values[2].encode()) <= 80, "reason cut to 80 bytes"


def test_internal_error_keeps_the_program_in_force():
    # ERRORS: INTERNAL = "the firmware failed handling the request; delivery goes on". A
    # SET_CONTINUOUS that fails inside (a dose of 0 cannot come through the codec, so this is
    # the "firmware bug" case) must leave the program in force, and the STATUS that reports
    # it, as they were.
    p, d = _setup()
    d.handle(m.SET_CONTINUOUS, (400_000, 500))
    p.advance(27_000 * 4)
    before = _status(d)
    rtype, values = d.handle(m.SET_CONTINUOUS, (0, 1000))
    assert rtype == m.ERROR and values[0] == m.ERR_INTERNAL, "%r" % (values,)
    after = _status(d)
    assert tuple(after) == tuple(before), "STATUS changed by a failed request: %r -> %r" % (
        before, after)
    assert p.advance(27_000) == 1, "delivery goes on at the old interval"
    assert p.delivered_ng() == 5 * 125, "5 steps at 500 mcg/mL = 625 ng: %d" % p.delivered_ng()


def test_error_counts_frame_errors_and_wraps():
    p, d = _setup()
    rtype, values = d.error(m.ERR_BAD_CRC, 0, "CRC mismatch")
    _check_response(rtype, values, m.ERROR)
    assert tuple(values) == (m.ERR_BAD_CRC, 0, "CRC mismatch"), "%r" % (values,)
    assert d.frame_errors == 1, "counted: %d" % d.frame_errors
    rtype, values = d.error(m.ERR_BAD_LENGTH, m.STOP, "STOP payload of 3 bytes")
    assert tuple(values) == (m.ERR_BAD_LENGTH, m.STOP, "STOP payload of 3 bytes"), "%r" % (
        values,)
    assert _fields(m.STATUS, _status(d))["frame_errors"] == 2, "STATUS reports 2 frame errors"
    for _ in range(0xFFFF - 2):
        d.error(m.ERR_BAD_COBS, 0, "bad COBS encoding")
    assert d.frame_errors == 0xFFFF, "65535: %d" % d.frame_errors
    assert _fields(m.STATUS, _status(d))["frame_errors"] == 0xFFFF, "STATUS reports 65535"
    d.error(m.ERR_OVERSIZE, 0, "frame over 256 bytes")
    assert d.frame_errors == 0, "wraps to 0 at 16 bits: %d" % d.frame_errors
    d.error(m.ERR_TRUNCATED, 0, "frame of 3 bytes")
    assert d.frame_errors == 1, "counts on after the wrap: %d" % d.frame_errors
    assert p.mode == m.MODE_STOPPED and p.volume_nl == FULL_NL, "errors leave the pump alone"


# -- error counts by code ------------------------------------------------------------------


def test_error_counts_by_code():
    p, d = _setup()
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


def test_error_counts_wrap_per_code():
    p, d = _setup()
    for _ in range(0xFFFF):
        d.error(m.ERR_BAD_TAG, m.STOP, "x")
    assert d.error_counts[m.ERR_BAD_TAG] == 0xFFFF, "65535"
    d.error(m.ERR_BAD_TAG, m.STOP, "x")
    assert d.error_counts[m.ERR_BAD_TAG] == 0, "wraps at 16 bits"
    d.error(m.ERR_BAD_TAG, m.STOP, "x")
    assert d.error_counts[m.ERR_BAD_TAG] == 1, "and counts on"
    for code in range(1, len(d.error_counts)):
        if code != m.ERR_BAD_TAG:
            assert d.error_counts[code] == 0, "code %d untouched" % code


def test_refusals_of_requests_are_counted_by_code():
    # A request the pump refuses (not a frame error) is counted under its code too.
    p, d = _setup()
    d.handle(m.SET_CONTINUOUS, (400_000, 500))
    d.handle(m.STOP, (1, 0))
    d.handle(m.STOP, (1, 1))
    d.handle(m.ENTER_REPL, (m.REPL_CONFIRM,))  # while running
    assert d.error_counts[m.ERR_NOT_CONFIRMED] == 2, "%r" % (d.error_counts,)
    assert d.error_counts[m.ERR_INVALID_STATE] == 1, "%r" % (d.error_counts,)
    assert d.frame_errors == 0, "refusals are not frame errors"
    if hasattr(m, "GET_COUNTERS"):
        rtype, values = d.handle(m.GET_COUNTERS, ())
        _check_response(rtype, values, m.COUNTERS)
        got = _fields(rtype, values)
        for code, name, _ in m.ERRORS:
            assert got[name.lower()] == d.error_counts[code], "COUNTERS %s" % name


# -- CHALLENGE -----------------------------------------------------------------------------


def test_challenge_returns_slot_and_nonce_from_random_bytes():
    p = Pump(STEP_NL, FULL_NL, FULL_NL, config.MAX_RATE_NL_DAY)
    g = Guard({m.ROLE_CLINICIAN: CLINICIAN_KEY})
    rnd = Entropy()
    d = _dispatcher(p, g, rnd)
    slots = []
    for k in range(m.SESSIONS + 2):
        rtype, values = d.handle(m.CHALLENGE, ())
        _check_response(rtype, values, m.CHALLENGE_OK)
        slot, nonce = values
        assert rnd.calls[-1] == m.NONCE_SIZE, "asked for %d bytes" % rnd.calls[-1]
        assert len(rnd.calls) == k + 1, "one draw per CHALLENGE"
        assert nonce == rnd.drawn[-1], "the nonce is what random_bytes gave"
        assert g.nonces[slot] == nonce and g.counters[slot] == 0, "the guard's session"
        slots.append(slot)
    # Fresh slots in turn, then the least recently used.
    assert slots == [0, 1, 2, 3, 0, 1], "slots %r" % (slots,)
    assert len(set(rnd.drawn)) == len(rnd.drawn), "a new nonce each time"
    assert p.mode == m.MODE_STOPPED and p.volume_nl == FULL_NL, "the pump untouched"


def test_challenge_then_signed_request_is_admitted():
    # End to end through the dispatcher and the guard: the nonce CHALLENGE_OK gives signs.
    p, d = _setup()
    rtype, values = d.handle(m.CHALLENGE, ())
    slot, nonce = values
    head = struct.pack("<BBBH", m.VERSION, m.SET_CONTINUOUS, m.FLAG_AUTH, 7)
    head += struct.pack("<IH", 400_000, 500) + struct.pack("<BBI", slot, m.ROLE_CLINICIAN, 1)
    body = head + auth.frame_tag(CLINICIAN_KEY, nonce, head)
    frame = bytearray(m.MAX_FRAME)
    whole = body + struct.pack("<I", binascii.crc32(body) & 0xFFFFFFFF)
    frame[: len(whole)] = whole
    dec = codec.Decoded()
    assert codec.decode(frame, len(whole), dec) == 0, dec.reason
    assert d.guard.admit(dec, frame) == 0, d.guard.reason
    assert d.guard.advance(dec) == 0, d.guard.reason
    rtype, values = d.handle(dec.type, dec.values)
    _check_response(rtype, values, m.SET_CONTINUOUS_OK)
    assert p.mode == m.MODE_CONTINUOUS, "programmed"
    # A second CHALLENGE takes another slot: the first session goes on.
    rtype, values = d.handle(m.CHALLENGE, ())
    assert values[0] != slot, "another slot"
    assert d.guard.admit(dec, frame) == 0, "first session still open"


def test_challenge_without_entropy_is_internal():
    def broken(n):
        raise OSError("no entropy")

    p = Pump(STEP_NL, FULL_NL, FULL_NL, config.MAX_RATE_NL_DAY)
    g = Guard({})
    d = _dispatcher(p, g, broken)
    rtype, values = d.handle(m.CHALLENGE, ())
    _check_response(rtype, values, m.ERROR)
    assert values[0] == m.ERR_INTERNAL and values[1] == m.CHALLENGE, "%r" % (values,)
    assert [n for n in g.nonces if n] == [], "no session opened: %r" % (g.nonces,)


# -- the clock and its event -----------------------------------------------------------------


def test_set_clock_past_2038():
    # SET_CLOCK takes any time up to CLOCK_MAX (2100); the clock_set event logs how far the
    # clock moved, clamped to the log's i32 (messages.ENUMS["event"]). A time past 2038-01-19
    # (2**31 s) must be set and logged like any other.
    for t in (m.CLOCK_MIN, 0x7FFFFFFF, 0x80000000, m.CLOCK_MAX):
        p, d = _setup()
        before = p.clock_s()
        rtype, values = d.handle(m.SET_CLOCK, (t,), m.ROLE_CLINICIAN)
        if rtype == m.ERROR:
            assert p.clock_s() == before, (
                "SET_CLOCK %d refused %r, but the clock changed to %d" % (t, values, p.clock_s()))
        assert rtype == m.CLOCK_OK, "SET_CLOCK %d: %r" % (t, values)
        assert tuple(values) == (t,) and p.clock_s() == t, "clock %d" % p.clock_s()
        n = d.log.total - 1
        rtype, values = d.handle(m.READ_LOG, (n,), m.ROLE_CLINICIAN)
        _check_response(rtype, values, m.LOG_ENTRY)
        entry = _fields(rtype, values)
        assert entry["event"] == m.EV_CLOCK_SET, "event %r" % (entry,)
        moved = max(-0x80000000, min(0x7FFFFFFF, t - before))
        assert (entry["a"], entry["b"]) == (moved, 0), (
            "SET_CLOCK %d logged as a=%d b=%d" % (t, entry["a"], entry["b"]))
