# Requests -> pump -> responses (firmware/core/dispatch.py): every request type gives the right
# response, refusals become typed ERRORs, a failing handler never lets an exception out, and
# frame errors are counted. Board-safe: runs on CPython and on MicroPython.

from firmware import config
from firmware.core.dispatch import Dispatcher
from firmware.core.pump import Pump
from protocol import codec
from protocol import messages as m

BOARD_ID = b"\xe6\x61\x38\x52\x83\x47\xa5\x2f"
FW = "0.1.0-test"
STEP_NL = 250
FULL_NL = 20_000_000


def _setup(volume_nl=FULL_NL):
    p = Pump(STEP_NL, FULL_NL, volume_nl, config.MAX_RATE_NL_DAY)
    return p, Dispatcher(p, (BOARD_ID, FW))


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
    values = _status(d)
    want = (m.MODE_STOPPED, 0, 0, 0, 0, 0, FULL_NL, 0, 0)
    assert tuple(values) == want, "STATUS %r, want %r" % (values, want)


def test_set_continuous_then_status():
    p, d = _setup()
    rtype, values = d.handle(m.SET_CONTINUOUS, (412_500, 500))
    _check_response(rtype, values, m.SET_CONTINUOUS_OK)
    assert tuple(values) == (412_500, 500, 825_000), "SET_CONTINUOUS_OK %r" % (values,)
    assert p.mode == m.MODE_CONTINUOUS, "pump running"
    # One day on: 3300 steps = 825000 nL = 412500 ng; 20 mL - 825 uL left.
    p.advance(86_400_000)
    values = _status(d)
    want = (m.MODE_CONTINUOUS, 412_500, 500, 825_000, 825_000, 412_500,
            FULL_NL - 825_000, 86_400, 0)
    assert tuple(values) == want, "STATUS %r, want %r" % (values, want)


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
    assert _status(d)[0] == m.MODE_STOPPED, "STATUS says stopped"
    assert _status(d)[3] == 0, "stopped: rate 0"


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


def test_every_request_type_is_handled():
    # Each request in the table gets its own response type or a typed refusal, never INTERNAL.
    requests = {
        m.GET_INFO: (),
        m.GET_STATUS: (),
        m.SET_CONTINUOUS: (400_000, 500),
        m.STOP: (1, m.STOP_CONFIRM),
        m.ENTER_REPL: (m.REPL_CONFIRM,),
    }
    for row in m.MESSAGES:
        if row[2] != "req":
            continue
        assert row[0] in requests, "no test values for request %s" % row[1]
        p, d = _setup()
        rtype, values = d.handle(row[0], requests[row[0]])
        assert rtype == row[0] | 0x80, "%s answered with 0x%02x %r" % (row[1], rtype, values)
        _check_response(rtype, values, row[0] | 0x80)


def test_unexpected_exception_becomes_internal_error():
    # A pump that is not there: every handler fails inside; nothing escapes.
    d = Dispatcher(None, (BOARD_ID, FW))
    cases = (
        (m.GET_INFO, ()),
        (m.GET_STATUS, ()),
        (m.SET_CONTINUOUS, (400_000, 500)),
        (m.STOP, (1, m.STOP_CONFIRM)),
        (m.ENTER_REPL, (m.REPL_CONFIRM,)),
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
    assert p.delivered_ng == 5 * 125, "5 steps at 500 mcg/mL = 625 ng: %d" % p.delivered_ng


def test_error_counts_frame_errors_and_wraps():
    p, d = _setup()
    rtype, values = d.error(m.ERR_BAD_CRC, 0, "CRC mismatch")
    _check_response(rtype, values, m.ERROR)
    assert tuple(values) == (m.ERR_BAD_CRC, 0, "CRC mismatch"), "%r" % (values,)
    assert d.frame_errors == 1, "counted: %d" % d.frame_errors
    rtype, values = d.error(m.ERR_BAD_LENGTH, m.STOP, "STOP payload of 3 bytes")
    assert tuple(values) == (m.ERR_BAD_LENGTH, m.STOP, "STOP payload of 3 bytes"), "%r" % (
        values,)
    assert _status(d)[8] == 2, "STATUS reports 2 frame errors"
    for _ in range(0xFFFF - 2):
        d.error(m.ERR_BAD_COBS, 0, "bad COBS encoding")
    assert d.frame_errors == 0xFFFF, "65535: %d" % d.frame_errors
    assert _status(d)[8] == 0xFFFF, "STATUS reports 65535"
    d.error(m.ERR_OVERSIZE, 0, "frame over 128 bytes")
    assert d.frame_errors == 0, "wraps to 0 at 16 bits: %d" % d.frame_errors
    d.error(m.ERR_TRUNCATED, 0, "frame of 3 bytes")
    assert d.frame_errors == 1, "counts on after the wrap: %d" % d.frame_errors
    assert p.mode == m.MODE_STOPPED and p.volume_nl == FULL_NL, "errors leave the pump alone"
