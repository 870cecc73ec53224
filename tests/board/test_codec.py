# The board codec (protocol/codec.py): decode() classifies a bad frame by the first check it
# fails, in the documented order TRUNCATED, BAD_CRC, BAD_VERSION, BAD_FLAGS, UNKNOWN_TYPE,
# BAD_LENGTH, OUT_OF_RANGE; with FLAG_AUTH it reads the trailer (session, role, counter, tag)
# before the CRC, and a trailer cut short is BAD_LENGTH (the tag is the guard's to check:
# test_guard.py). Lists: a count that disagrees with the payload's length is BAD_LENGTH, a
# count outside its bounds or an item's field outside its range OUT_OF_RANGE; lists decode to a
# tuple of item tuples. Flag sets: every bit the table does not name is OUT_OF_RANGE. The
# Encoder round-trips every message of the table. Frames for decode() are built here with
# struct + binascii.crc32, not with the Encoder. The codec reads the board's compact table
# (protocol/layouts.py), which must be what protocol/spec.py's table gives (board_table()).
# Board-safe: runs on CPython and on MicroPython.

import binascii
import struct

from protocol import codec, framing, layouts, spec
from protocol import messages as m

SEQ = 0x1234
KIND_RANGE = {
    "B": (0, 0xFF), "H": (0, 0xFFFF), "I": (0, 0xFFFFFFFF),
    "b": (-0x80, 0x7F), "h": (-0x8000, 0x7FFF), "i": (-0x80000000, 0x7FFFFFFF),
}


def _frame(mtype, payload=b"", seq=SEQ, version=m.VERSION, flags=0, crc_xor=0):
    head = struct.pack("<BBBH", version, mtype, flags, seq) + payload
    return head + struct.pack("<I", (binascii.crc32(head) & 0xFFFFFFFF) ^ crc_xor)


TAG = b"\xa0\x00\xa1\xa2\xa3\xa4\xa5\xa6\xa7\xa8\xa9\xaa\xab\xac\x00\xaf"  # not checked here


def _trailer(session=2, role=m.ROLE_CLINICIAN, counter=0x01020304, tag=TAG):
    return struct.pack("<BBI", session, role, counter) + tag


def _signed(mtype, payload=b"", trailer=None, flags=m.FLAG_AUTH, **kw):
    """A frame with the authentication flag and a trailer (any tag: decode does not check it)."""
    return _frame(mtype, payload + (_trailer() if trailer is None else trailer), flags=flags,
                  **kw)


def _payload(row, values):
    return _pack(row[3], values)


def _pack(fields, values):
    """Values laid out by the field tuples: a list as its count byte and its items."""
    out = b""
    for i in range(len(fields)):  # (MicroPython's zip() takes no strict=)
        f, v = fields[i], values[i]
        if f[1] == "str":
            raw = v.encode("utf-8") if isinstance(v, str) else v
            out += bytes([len(raw)]) + raw
        elif f[1] == "list":
            out += bytes([len(v)])
            for item in v:
                out += _pack(f[4], item)
        else:
            out += struct.pack("<" + f[1], v)
    return out


def _defaults(row):
    return _lows(row[3])


def _lows(fields):
    """The lowest valid values: a list of its fewest items, each at its lowest."""
    vals = []
    for f in fields:
        if f[1] == "str":
            vals.append("")
        elif f[1] == "list":
            vals.append(tuple(tuple(_lows(f[4])) for _ in range(f[2])))
        elif f[1].endswith("s"):
            vals.append(bytes(int(f[1][:-1])))
        else:
            vals.append(f[2])
    return vals


def _flag_bits(f):
    """The bits a flag-set field may carry; 0 for any other field."""
    bits = 0
    if isinstance(f[4], str) and f[4] in m.FLAGS:
        for bit, _label in m.FLAGS[f[4]]:
            bits |= bit
    return bits


def _list_rows():
    """The messages whose last field is a list."""
    return [r for r in m.MESSAGES if r[3] and r[3][-1][1] == "list"]


def _items(f, n, at=None):
    """n items of list field f, each at its lowest values (or `at` for each item's fields)."""
    item = tuple(_lows(f[4])) if at is None else tuple(at)
    return tuple(item for _ in range(n))


def _fits(row, vals):
    return len(_payload(row, vals)) <= m.MAX_PAYLOAD


def _decode(frame, expect="req"):
    buf = bytearray(m.MAX_FRAME)
    buf[: len(frame)] = frame
    d = codec.Decoded()
    err = codec.decode(buf, len(frame), d, expect)
    assert err == d.error or err == 0, "return value %d != out.error %d" % (err, d.error)
    return err, d


def _name(code):
    for c, name, _ in m.ERRORS:
        if c == code:
            return name
    return "OK" if code == 0 else "code %d" % code


def _expect(frame, code, what, expect="req"):
    err, d = _decode(frame, expect)
    assert err == code, "%s: got %s (%s), want %s" % (what, _name(err), d.reason, _name(code))
    return d


def _requests():
    return [r for r in m.MESSAGES if r[2] == "req"]


def test_valid_requests_decode():
    for row in _requests():
        vals = _defaults(row)
        for seq in (1, 0x0100, 0xFFFF):
            err, d = _decode(_frame(row[0], _payload(row, vals), seq=seq))
            assert err == 0, "%s: %s (%s)" % (row[1], _name(err), d.reason)
            assert d.type == row[0] and d.seq == seq, "%s: type/seq" % row[1]
            assert tuple(d.values) == tuple(vals), "%s: %r" % (row[1], d.values)
            assert d.error == 0, "%s: out.error %d on success" % (row[1], d.error)


def test_truncated():
    full = _frame(m.GET_STATUS)
    for n in range(0, m.HEADER_SIZE + m.CRC_SIZE):
        d = _expect(full[:n], m.ERR_TRUNCATED, "%d bytes" % n)
        assert d.seq == m.SEQ_UNSOLICITED and d.type == 0, "%d bytes: header not trusted" % n
        assert d.values == (), "no values"
    # Garbage that is too short is TRUNCATED too, before any CRC check.
    _expect(b"\xff" * 8, m.ERR_TRUNCATED, "8 bytes of garbage")
    err, d = _decode(_frame(m.GET_INFO))
    assert err == 0 and len(_frame(m.GET_INFO)) == 9, "9 bytes: the smallest frame"


def test_bad_crc_seq_reported_as_0():
    for row in _requests():
        good = _frame(row[0], _payload(row, _defaults(row)))
        for bit in range(32):
            d = _expect(_frame(row[0], _payload(row, _defaults(row)), crc_xor=1 << bit),
                        m.ERR_BAD_CRC, "%s CRC bit %d" % (row[1], bit))
            assert d.seq == 0, "BAD_CRC reports seq 0, got %d" % d.seq
            assert d.type == 0, "BAD_CRC reports type 0, got %d" % d.type
        for i in range(len(good) - m.CRC_SIZE):
            bad = good[:i] + bytes([good[i] ^ 0x40]) + good[i + 1:]
            d = _expect(bad, m.ERR_BAD_CRC, "%s byte %d flipped" % (row[1], i))
            assert d.seq == 0 and d.type == 0, "header of a bad frame is not trusted"
    # All-zero CRC on a frame whose CRC is not 0.
    _expect(_frame(m.GET_STATUS)[:-4] + b"\x00" * 4, m.ERR_BAD_CRC, "zero CRC")


def test_bad_version_seq_trusted():
    for version in (0, m.VERSION + 1, 0x7F, 0xFF):
        d = _expect(_frame(m.GET_STATUS, version=version), m.ERR_BAD_VERSION,
                    "version %d" % version)
        assert d.seq == SEQ, "BAD_VERSION trusts the seq: %d" % d.seq
        assert d.type == m.GET_STATUS, "and the type: %d" % d.type
        assert "supported" in d.reason, "reason names the supported version: %s" % d.reason
        tail = d.reason.split("supported")[-1]
        assert str(m.VERSION) in tail, "reason names version %d: %s" % (m.VERSION, d.reason)


def test_bad_flags():
    for bit in range(8):
        flags = 1 << bit
        if flags & m.FLAGS_KNOWN:
            continue
        d = _expect(_frame(m.GET_STATUS, flags=flags), m.ERR_BAD_FLAGS, "flags 0x%02x" % flags)
        assert d.seq == SEQ and d.type == m.GET_STATUS, "BAD_FLAGS trusts the header"
    _expect(_frame(m.GET_STATUS, flags=0xFF), m.ERR_BAD_FLAGS, "flags 0xff")


def test_unknown_type():
    requests = {r[0] for r in _requests()}
    for mtype in range(256):
        if mtype in requests:
            continue
        row = m.find(mtype)
        # A response type with its own valid payload is still not a request.
        payload = _payload(row, _defaults(row)) if row else b""
        d = _expect(_frame(mtype, payload), m.ERR_UNKNOWN_TYPE, "type 0x%02x" % mtype)
        assert d.seq == SEQ and d.type == mtype, "UNKNOWN_TYPE trusts the header"
    # ... and a request type is not a response either.
    for row in _requests():
        _expect(_frame(row[0], _payload(row, _defaults(row))), m.ERR_UNKNOWN_TYPE,
                "%s as a response" % row[1], expect="resp")


def test_bad_length():
    for row in _requests():
        good = _payload(row, _defaults(row))
        wrong = [good + b"\x00", good + b"\x01" * 20, good + b"\x00" * (m.MAX_PAYLOAD - len(good))]
        if good:
            wrong += [good[:-1], b""]
        for p in wrong:
            d = _expect(_frame(row[0], p), m.ERR_BAD_LENGTH, "%s with %d payload bytes" % (
                row[1], len(p)))
            assert d.seq == SEQ and d.type == row[0], "BAD_LENGTH trusts the header"
            assert row[1] in d.reason, "reason names the message: %s" % d.reason
    # A string whose length byte disagrees with the frame (ERROR, as a response).
    err = m.find(m.ERROR)
    head = _payload(err, _defaults(err))[:-1]  # the fields before the reason
    for p in (head, head + b"\x05abc", head + b"\x02abc", head + b"\x00x"):
        _expect(_frame(m.ERROR, p), m.ERR_BAD_LENGTH, "ERROR payload %r" % p, expect="resp")


def test_order_of_checks():
    sc = m.find(m.SET_CONTINUOUS)
    bad_range = _payload(sc, (999, 0x10))
    # TRUNCATED before all: 8 bytes with a wrong version and flags.
    _expect(_frame(m.GET_STATUS, version=9, flags=0x80)[:8], m.ERR_TRUNCATED, "short + bad")
    # BAD_CRC before version, flags, type, length, range.
    for what, fr in (
        ("version", _frame(m.GET_STATUS, version=2, crc_xor=1)),
        ("flags", _frame(m.GET_STATUS, flags=0x80, crc_xor=1)),
        ("trailer", _frame(m.GET_STATUS, flags=m.FLAG_AUTH, crc_xor=1)),
        ("type", _frame(0x7E, crc_xor=1)),
        ("length", _frame(m.SET_CONTINUOUS, b"\x01", crc_xor=1)),
        ("range", _frame(m.SET_CONTINUOUS, bad_range, crc_xor=1)),
    ):
        d = _expect(fr, m.ERR_BAD_CRC, "CRC before " + what)
        assert d.seq == 0, "BAD_CRC: seq 0"
    # BAD_VERSION before flags, type, length, range.
    _expect(_frame(0x7E, b"\x01", version=2, flags=0x80), m.ERR_BAD_VERSION, "version first")
    _expect(_frame(m.SET_CONTINUOUS, bad_range, version=0), m.ERR_BAD_VERSION, "before range")
    # BAD_FLAGS before type, length, range.
    _expect(_frame(0x7E, b"\x01", flags=4), m.ERR_BAD_FLAGS, "flags before type")
    _expect(_frame(m.SET_CONTINUOUS, b"\x01", flags=4), m.ERR_BAD_FLAGS, "flags before length")
    _expect(_frame(m.SET_CONTINUOUS, bad_range, flags=4), m.ERR_BAD_FLAGS, "flags before range")
    # UNKNOWN_TYPE before length.
    _expect(_frame(0x7E, b"\x01\x02\x03"), m.ERR_UNKNOWN_TYPE, "type before length")
    _expect(_frame(m.STATUS, b"\x01"), m.ERR_UNKNOWN_TYPE, "response type before length")
    # BAD_LENGTH before range.
    _expect(_frame(m.SET_CONTINUOUS, bad_range + b"\x00"), m.ERR_BAD_LENGTH, "length first")


def test_out_of_range_every_bound():
    # Every ranged integer field of every message (requests as requests, responses as
    # responses): lo-1 and hi+1 refused, lo and hi accepted; the other fields at a valid value.
    checked = 0
    for row in m.MESSAGES:
        for i, f in enumerate(row[3]):
            if f[1] in ("str", "list") or f[2] is None:
                continue  # (lists: test_list_count_bounds, test_list_item_every_bound)
            kmin, kmax = KIND_RANGE[f[1]]
            lo, hi = f[2], f[3]
            for v, ok in ((lo - 1, False), (lo, True), (hi, True), (hi + 1, False)):
                if not kmin <= v <= kmax:
                    continue  # not representable on the wire: cannot be sent
                vals = _defaults(row)
                vals[i] = v
                fr = _frame(row[0], _payload(row, vals))
                what = "%s.%s=%d" % (row[1], f[0], v)
                err, d = _decode(fr, row[2])
                if ok:
                    assert err == 0, "%s refused: %s (%s)" % (what, _name(err), d.reason)
                    assert tuple(d.values) == tuple(vals), "%s: %r" % (what, d.values)
                else:
                    assert err == m.ERR_OUT_OF_RANGE, "%s: got %s, want OUT_OF_RANGE" % (
                        what, _name(err))
                    assert f[0] in d.reason, "%s: reason names the field: %s" % (what, d.reason)
                    assert d.seq == SEQ and d.type == row[0], "%s: header trusted" % what
                checked += 1
    assert checked >= 8, "only %d bound checks" % checked


def test_out_of_range_request_bounds_explicitly():
    # The request bounds that matter most, spelled out (the loop above derives them).
    sc = m.find(m.SET_CONTINUOUS)
    for dose, confirm, want in (
        (999, 0, m.ERR_OUT_OF_RANGE), (1000, 0, 0),
        (20_000_000, 0, 0), (20_000_001, 0, m.ERR_OUT_OF_RANGE),
        (0, 0, m.ERR_OUT_OF_RANGE), (0xFFFFFFFF, 0, m.ERR_OUT_OF_RANGE),
        (400_000, m.CONFIRM_HIGH_DOSE, 0), (400_000, 0x0F, 0),
        (400_000, 0x10, m.ERR_OUT_OF_RANGE), (400_000, 0x80, m.ERR_OUT_OF_RANGE),
        (400_000, 0xFF, m.ERR_OUT_OF_RANGE),
    ):
        _expect(_frame(m.SET_CONTINUOUS, _payload(sc, (dose, confirm))), want,
                "SET_CONTINUOUS %d ng/day, confirm 0x%02x" % (dose, confirm))
    st = m.find(m.STOP)
    for reason, want in ((0, m.ERR_OUT_OF_RANGE), (1, 0), (4, 0), (5, m.ERR_OUT_OF_RANGE),
                         (255, m.ERR_OUT_OF_RANGE)):
        _expect(_frame(m.STOP, _payload(st, (reason, m.STOP_CONFIRM))), want,
                "STOP reason %d" % reason)
    # The confirmation word is not range-checked by the codec (the pump checks it).
    _expect(_frame(m.STOP, _payload(st, (1, 0))), 0, "STOP confirm 0 decodes")


def test_string_bounds():
    for row in m.MESSAGES:
        f = row[3][-1] if row[3] else None
        if f is None or f[1] != "str":
            continue
        vals = _defaults(row)
        for text, want in (("x" * f[3], 0), ("x" * (f[3] + 1), m.ERR_OUT_OF_RANGE),
                           ("\u00e9" * (f[3] // 2), 0), ("", 0)):
            vals[-1] = text
            err, d = _decode(_frame(row[0], _payload(row, vals)), row[2])
            assert err == want, "%s.%s of %d bytes: %s" % (row[1], f[0], len(text.encode()),
                                                           _name(err))
            if want == 0:
                assert d.values[-1] == text, "%s: text %r" % (row[1], d.values[-1])
        vals[-1] = b"ab\xff\xfe"  # not UTF-8
        err, d = _decode(_frame(row[0], _payload(row, vals)), row[2])
        assert err == m.ERR_OUT_OF_RANGE, "%s: invalid UTF-8: %s" % (row[1], _name(err))


def test_decoded_reused_after_an_error():
    # The loop reuses one Decoded: a valid frame after a bad one must read as valid.
    d = codec.Decoded()
    buf = bytearray(m.MAX_FRAME)
    bad = _frame(m.GET_STATUS, crc_xor=1)
    buf[: len(bad)] = bad
    assert codec.decode(buf, len(bad), d) == m.ERR_BAD_CRC, "bad first"
    good = _frame(m.GET_STATUS, seq=7)
    buf[: len(good)] = good
    assert codec.decode(buf, len(good), d) == 0, "then good"
    assert d.seq == 7 and d.type == m.GET_STATUS and d.values == (), "values of the good one"
    assert d.reason == "", "no reason left over: %s" % d.reason
    assert d.error == 0, "Decoded.error must be 0 for a valid frame, is %d (stale)" % d.error


def _samples(row):
    """Several valid value tuples for a message: low bounds, high bounds, in between."""
    return _samples_of(row[3])


def _samples_of(fields):
    low, high, mid = [], [], []
    for f in fields:
        if f[1] == "str":
            low.append("")
            high.append("v" * f[3])
            mid.append("\u00e9t\u00e9 \u2713"[: f[3]])
        elif f[1] == "list":
            lo_item, hi_item, mid_item = _samples_of(f[4])
            n = (f[2] + f[3]) // 2
            low.append(tuple(tuple(lo_item) for _ in range(f[2])))
            high.append(tuple(tuple(hi_item) for _ in range(f[3])))
            mixed = (tuple(lo_item), tuple(mid_item), tuple(hi_item))
            mid.append(tuple(mixed[k % 3] for k in range(n)))
        elif f[1].endswith("s"):
            n = int(f[1][:-1])
            low.append(bytes(n))
            high.append(b"\xff" * n)
            mid.append(bytes(range(1, n + 1)))
        elif _flag_bits(f):
            low.append(f[2])
            high.append(f[3])
            every_other = 0
            for k in range(len(m.FLAGS[f[4]])):
                if k % 2 == 0:
                    every_other |= m.FLAGS[f[4]][k][0]
            mid.append(every_other)
        else:
            low.append(f[2])
            high.append(f[3])
            mid.append((f[2] + f[3]) // 2)
    return [low, high, mid]


def test_encoder_round_trips_every_message():
    enc = codec.Encoder()
    reader = framing.FrameReader()
    for row in m.MESSAGES:
        for k, vals in enumerate(_samples(row)):
            for seq in (1, 0x00FF, 0x0100, 0xFFFF):
                wire = bytes(enc.encode(row[0], seq, tuple(vals)))
                assert wire[-1] == 0 and 0 not in wire[:-1], "%s: framing" % row[1]
                # Same bytes as the independent packing here.
                want = _frame(row[0], _payload(row, vals), seq=seq)
                n = enc.frame_bytes(row[0], seq, tuple(vals))
                assert bytes(enc.frame[:n]) == want, "%s sample %d: frame bytes" % (row[1], k)
                results = [reader.push(b) for b in wire]
                assert results[-1] == framing.FRAME, "%s: reader %d" % (row[1], results[-1])
                d = codec.Decoded()
                err = codec.decode(reader.frame, reader.length, d, row[2])
                assert err == 0, "%s sample %d: %s (%s)" % (row[1], k, _name(err), d.reason)
                assert d.type == row[0] and d.seq == seq, "%s: type/seq" % row[1]
                assert tuple(d.values) == tuple(vals), "%s sample %d: %r != %r" % (
                    row[1], k, d.values, vals)


def test_encoder_truncates_long_text_to_valid_utf8():
    # Text longer than the field's limit is cut to the limit. ASCII: exactly the limit.
    enc = codec.Encoder()
    row = m.find(m.ERROR)
    limit = row[3][-1][3]

    def error(text):
        vals = _defaults(row)
        vals[0], vals[1], vals[-1] = m.ERR_INTERNAL, 3, text
        return tuple(vals)

    n = enc.frame_bytes(m.ERROR, 1, error("x" * 200))
    err, d = _decode(bytes(enc.frame[:n]), "resp")
    assert err == 0 and d.values[-1] == "x" * limit, "ASCII cut to %d: %s" % (limit, _name(err))
    # Multi-byte text must not be cut inside a character: the frame would not be UTF-8 and
    # no one could read it (the board says OUT_OF_RANGE, the host a decode error).
    for text in ("a" + "\u00e9" * 40, "ab" + "\u2713" * 30, "\U0001F600" * 21):
        n = enc.frame_bytes(m.ERROR, 1, error(text))
        err, d = _decode(bytes(enc.frame[:n]), "resp")
        assert err == 0, "%d-byte text cut inside a character: %s (%s)" % (
            len(text.encode()), _name(err), d.reason)
        got = d.values[-1]
        assert text.startswith(got) and len(got.encode()) <= limit, "a prefix of <= 80 bytes"
        assert len(got.encode()) > limit - 4, "cut at the last whole character: %d" % len(
            got.encode())


def test_encoder_wire_buffer_holds_a_max_frame():
    # A MAX_FRAME frame with no zero byte COBS-encodes to MAX_FRAME + MAX_FRAME // 254 + 1
    # bytes, plus the 0x00 delimiter: for 256 bytes, 259 in the Encoder's wire buffer.
    enc = codec.Encoder()
    frame = bytes(1 + i % 255 for i in range(m.MAX_FRAME))
    need = m.MAX_FRAME + m.MAX_FRAME // 254 + 2
    assert len(enc.wire) >= need, "Encoder.wire has %d bytes; a max frame needs %d" % (
        len(enc.wire), need)
    n = framing.cobs_encode(frame, len(frame), enc.wire)
    assert n == need and enc.wire[n - 1] == 0, "encoded %d bytes" % n


# -- the authentication trailer --------------------------------------------------------------


def test_auth_trailer_decodes():
    for row in _requests():
        vals = _defaults(row)
        for session, role, counter in ((0, 1, 1), (3, 3, 0xFFFFFFFF), (255, 0, 0), (1, 2, 256)):
            fr = _signed(row[0], _payload(row, vals), _trailer(session, role, counter))
            err, d = _decode(fr)
            what = "%s session %d role %d counter %d" % (row[1], session, role, counter)
            assert err == 0, "%s: %s (%s)" % (what, _name(err), d.reason)
            assert d.auth, what + ": auth"
            assert (d.session, d.role, d.counter) == (session, role, counter), "%s: %r" % (
                what, (d.session, d.role, d.counter))
            assert tuple(d.values) == tuple(vals), "%s: values %r" % (what, d.values)
            # The tag is the AUTH_SIZE - AUTH_FIXED bytes before the CRC; what it signs is
            # everything before it.
            assert d.tag_at == len(fr) - m.CRC_SIZE - m.TAG_SIZE, "%s: tag_at %d" % (
                what, d.tag_at)
            assert d.tag_at == m.HEADER_SIZE + len(_payload(row, vals)) + m.AUTH_FIXED, what
            assert fr[d.tag_at : d.tag_at + m.TAG_SIZE] == TAG, what + ": tag bytes"


def test_auth_layout_constants():
    # messages.py's trailer: session u8 | role u8 | counter u32 LE | tag (16 bytes).
    assert m.FLAG_AUTH == 0x01 and m.FLAGS_KNOWN == m.FLAG_AUTH, "flags"
    assert m.AUTH_FORMAT == "<BBI" and struct.calcsize(m.AUTH_FORMAT) == m.AUTH_FIXED == 6
    assert m.TAG_SIZE == 16 and m.AUTH_SIZE == 22, "tag and trailer sizes"
    assert m.NONCE_SIZE == 16 and m.KEY_SIZE == 32 and m.SESSIONS == 4, "sizes"
    assert m.MAX_FRAME == 256 and m.MAX_PAYLOAD == 256 - 5 - 4, "frame sizes"
    assert m.ROLE_NAMES == ("none", "patient", "clinician", "service"), "roles"


def test_unsigned_frame_has_no_auth():
    for row in _requests():
        err, d = _decode(_frame(row[0], _payload(row, _defaults(row))))
        assert err == 0 and not d.auth, "%s: unsigned" % row[1]


def test_auth_trailer_cut_short():
    # GET_STATUS has no payload: 0..21 bytes after the header cannot hold the trailer.
    full = _trailer()
    for n in range(m.AUTH_SIZE):
        d = _expect(_signed(m.GET_STATUS, trailer=full[:n]), m.ERR_BAD_LENGTH,
                    "GET_STATUS with %d trailer bytes" % n)
        assert d.seq == SEQ and d.type == m.GET_STATUS, "BAD_LENGTH trusts the header"
        assert not d.auth, "%d bytes: no trailer read" % n
    # With a payload: a trailer one byte short leaves one payload byte short.
    for row in _requests():
        p = _payload(row, _defaults(row))
        d = _expect(_signed(row[0], p, full[:-1]), m.ERR_BAD_LENGTH, "%s: 21-byte trailer" %
                    row[1])
        d = _expect(_signed(row[0], p, full + b"\x00"), m.ERR_BAD_LENGTH,
                    "%s: 23-byte trailer" % row[1])
        if p:
            _expect(_signed(row[0], p[:-1]), m.ERR_BAD_LENGTH, "%s: payload short" % row[1])
        _expect(_signed(row[0], p + b"\x01"), m.ERR_BAD_LENGTH, "%s: payload long" % row[1])
    # The flag without a trailer (an unsigned frame with the bit set) is the same.
    sc = m.find(m.SET_CONTINUOUS)
    _expect(_frame(m.SET_CONTINUOUS, _payload(sc, (400_000, 0)), flags=m.FLAG_AUTH),
            m.ERR_BAD_LENGTH, "flag without trailer")
    # A trailer without the flag is payload: too long.
    _expect(_frame(m.GET_STATUS, _trailer()), m.ERR_BAD_LENGTH, "trailer without flag")


def test_auth_flags_other_bits():
    sc = m.find(m.SET_CONTINUOUS)
    p = _payload(sc, (400_000, 0))
    for flags in (0x81, 0x03, 0x80, 0x02, 0xFF, 0x41):
        d = _expect(_signed(m.SET_CONTINUOUS, p, flags=flags), m.ERR_BAD_FLAGS,
                    "flags 0x%02x with a trailer" % flags)
        assert d.seq == SEQ and d.type == m.SET_CONTINUOUS and not d.auth, "header trusted"


def test_auth_order_of_checks():
    sc = m.find(m.SET_CONTINUOUS)
    bad_range = _payload(sc, (999, 0))
    # CRC, version, flags and type come before the trailer is looked at.
    _expect(_signed(m.GET_STATUS, trailer=b"", crc_xor=4), m.ERR_BAD_CRC, "CRC first")
    _expect(_signed(m.GET_STATUS, trailer=b"", version=2), m.ERR_BAD_VERSION, "version")
    _expect(_signed(m.GET_STATUS, trailer=b"", flags=0x81), m.ERR_BAD_FLAGS, "flags")
    _expect(_signed(0x7E, trailer=b""), m.ERR_UNKNOWN_TYPE, "type before trailer length")
    _expect(_signed(m.STATUS, trailer=b"\x01"), m.ERR_UNKNOWN_TYPE, "response, short trailer")
    # The trailer's length and the payload's before the range.
    _expect(_signed(m.SET_CONTINUOUS, bad_range, _trailer()[:-1]), m.ERR_BAD_LENGTH,
            "trailer before range")
    _expect(_signed(m.SET_CONTINUOUS, bad_range + b"\x00"), m.ERR_BAD_LENGTH, "length first")
    # A signed frame is range-checked like any other: the codec refuses it before the guard.
    d = _expect(_signed(m.SET_CONTINUOUS, bad_range), m.ERR_OUT_OF_RANGE, "signed, out of range")
    assert "daily_dose_ng" in d.reason, d.reason
    st = m.find(m.STOP)
    _expect(_signed(m.STOP, _payload(st, (0, m.STOP_CONFIRM))), m.ERR_OUT_OF_RANGE, "reason 0")


def test_auth_trailer_can_fill_a_max_frame():
    # The largest request payload with a trailer fits MAX_FRAME; the codec reads it (and
    # refuses it for its length, no request being that long).
    p = bytes(1 + i % 200 for i in range(m.MAX_PAYLOAD - m.AUTH_SIZE))
    fr = _signed(m.GET_STATUS, p)
    assert len(fr) == m.MAX_FRAME, "%d bytes" % len(fr)
    d = _expect(fr, m.ERR_BAD_LENGTH, "max frame, signed")
    assert "GET_STATUS" in d.reason, d.reason


def test_decoded_reused_after_a_signed_frame():
    # The loop reuses one Decoded: an unsigned frame after a signed one must not read as
    # signed (nor a refused one after a signed one).
    d = codec.Decoded()
    buf = bytearray(m.MAX_FRAME)
    for second in (_frame(m.GET_STATUS, seq=9), _frame(m.GET_STATUS, seq=9, crc_xor=1),
                   _frame(m.GET_STATUS, seq=9, version=2), _signed(m.GET_STATUS, trailer=b"")):
        signed = _signed(m.GET_STATUS, seq=8)
        buf[: len(signed)] = signed
        assert codec.decode(buf, len(signed), d) == 0 and d.auth, "signed first"
        buf[: len(second)] = second
        codec.decode(buf, len(second), d)
        assert not d.auth, "then %s: d.auth left over" % _name(d.error)


# -- lists and flag sets -------------------------------------------------------------------


def test_list_count_bounds():
    # Every list field of every message: counts lo - 1 and hi + 1 refused (OUT_OF_RANGE, the
    # reason naming the list), lo and hi accepted and decoded as a tuple of item tuples.
    checked = 0
    for row in _list_rows():
        f = row[3][-1]
        for n, ok in ((f[2] - 1, False), (f[2], True), (f[3], True), (f[3] + 1, False)):
            if n < 0 or n > 255:
                continue
            vals = _defaults(row)
            vals[-1] = _items(f, n)
            if not _fits(row, vals):
                continue
            what = "%s with %d %s" % (row[1], n, f[0])
            err, d = _decode(_frame(row[0], _payload(row, vals)), row[2])
            if ok:
                assert err == 0, "%s refused: %s (%s)" % (what, _name(err), d.reason)
                got = d.values[-1]
                assert isinstance(got, tuple) and len(got) == n, "%s: %r" % (what, got)
                for item in got:
                    assert isinstance(item, tuple), "%s: item %r" % (what, item)
                assert tuple(d.values) == tuple(vals), "%s: %r" % (what, d.values)
            else:
                assert err == m.ERR_OUT_OF_RANGE, "%s: %s, want OUT_OF_RANGE" % (what, _name(err))
                assert f[0] in d.reason, "%s: reason names the list: %s" % (what, d.reason)
                assert d.seq == SEQ and d.type == row[0], "%s: header trusted" % what
            checked += 1
    assert checked >= 8, "only %d count checks" % checked


def test_list_count_disagrees_with_length():
    # The count byte says n items, the payload holds another number of bytes: BAD_LENGTH,
    # whether the count is in its bounds or not (the length is checked first).
    checked = 0
    for row in _list_rows():
        f = row[3][-1]
        n = max(f[2], 2)
        vals = _defaults(row)
        vals[-1] = _items(f, n)
        good = _payload(row, vals)
        at = len(_payload(row, vals[:-1] + [()])) - 1  # the count byte
        size = (len(good) - at - 1) // n
        wrong = []
        for count in (n - 1, n + 1, 0, 255, f[3] + 1):
            if 0 <= count <= 255 and count != n:
                wrong.append(good[:at] + bytes([count]) + good[at + 1:])
        wrong += [good[:-1], good + b"\x00", good[:-size], good + good[-size:-1],
                  good[:at]]  # no count byte at all
        for p in wrong:
            d = _expect(_frame(row[0], p), m.ERR_BAD_LENGTH, "%s: %d bytes, count %s" % (
                row[1], len(p), p[at] if len(p) > at else "none"), row[2])
            assert row[1] in d.reason, "reason names the message: %s" % d.reason
            checked += 1
        # With a trailer too, for the requests: the list ends where the trailer begins.
        if row[2] == "req":
            for p in wrong[:2]:
                _expect(_signed(row[0], p), m.ERR_BAD_LENGTH, "%s signed: %d bytes" % (
                    row[1], len(p)))
            _expect(_signed(row[0], good), 0, "%s signed, right length" % row[1])
    assert checked >= 20, "only %d length checks" % checked


def test_list_item_every_bound():
    # Every field of every list's items, in the first and in the last item: lo - 1 and hi + 1
    # refused (OUT_OF_RANGE, the reason naming the field), lo and hi accepted.
    checked = 0
    for row in _list_rows():
        f = row[3][-1]
        n = max(f[2], 2)
        for i in range(len(f[4])):
            g = f[4][i]
            kmin, kmax = KIND_RANGE[g[1]]
            for v, ok in ((g[2] - 1, False), (g[2], True), (g[3], True), (g[3] + 1, False)):
                if not kmin <= v <= kmax:
                    continue
                for k in (0, n - 1):
                    items = [list(item) for item in _items(f, n)]
                    items[k][i] = v
                    vals = _defaults(row)
                    vals[-1] = tuple(tuple(item) for item in items)
                    what = "%s.%s[%d].%s=%d" % (row[1], f[0], k, g[0], v)
                    err, d = _decode(_frame(row[0], _payload(row, vals)), row[2])
                    if ok:
                        assert err == 0, "%s refused: %s (%s)" % (what, _name(err), d.reason)
                        assert tuple(d.values) == tuple(vals), "%s: %r" % (what, d.values)
                    else:
                        assert err == m.ERR_OUT_OF_RANGE, "%s: %s, want OUT_OF_RANGE" % (
                            what, _name(err))
                        assert g[0] in d.reason, "%s: reason: %s" % (what, d.reason)
                    checked += 1
    assert checked >= 16, "only %d item checks" % checked


def test_list_and_a_fixed_field_both_wrong():
    # Both wrong: a list count out of bounds and a fixed field out of range are OUT_OF_RANGE;
    # a count that disagrees with the length and a fixed field out of range, BAD_LENGTH.
    for row in _list_rows():
        f = row[3][-1]
        bad_fixed = -1
        for i in range(len(row[3]) - 1):
            g = row[3][i]
            if g[2] is not None and g[3] < KIND_RANGE[g[1]][1]:
                bad_fixed = i
                break
        if bad_fixed < 0:
            continue
        vals = _defaults(row)
        vals[bad_fixed] = row[3][bad_fixed][3] + 1
        _expect(_frame(row[0], _payload(row, vals)), m.ERR_OUT_OF_RANGE,
                "%s: %s out of range" % (row[1], row[3][bad_fixed][0]), row[2])
        if f[3] < 255:
            vals[-1] = _items(f, f[3] + 1)
            if _fits(row, vals):
                _expect(_frame(row[0], _payload(row, vals)), m.ERR_OUT_OF_RANGE,
                        "%s: both out of range" % row[1], row[2])
        vals[-1] = _items(f, max(f[2], 1))
        p = _payload(row, vals)
        _expect(_frame(row[0], p + b"\x00"), m.ERR_BAD_LENGTH, "%s: length first" % row[1],
                row[2])


def test_flag_sets_refuse_unknown_bits():
    # Every flag-set field: each named bit alone, and all of them, accepted; each other bit
    # the field's integer can hold, alone or with the named bits, refused (OUT_OF_RANGE).
    checked = 0
    for row in m.MESSAGES:
        for i in range(len(row[3])):
            f = row[3][i]
            bits = _flag_bits(f)
            if not bits:
                continue
            width = 8 * struct.calcsize("<" + f[1])
            for b in range(width):
                bit = 1 << b
                for value in (bit, bit | bits):
                    vals = _defaults(row)
                    vals[i] = value
                    what = "%s.%s=0x%x" % (row[1], f[0], value)
                    err, d = _decode(_frame(row[0], _payload(row, vals)), row[2])
                    if bit & bits:
                        assert err == 0, "%s: named bits refused: %s" % (what, _name(err))
                        assert d.values[i] == value, "%s: %r" % (what, d.values[i])
                    else:
                        assert err == m.ERR_OUT_OF_RANGE, "%s: unknown bit: %s" % (
                            what, _name(err))
                        assert f[0] in d.reason, "%s: reason %s" % (what, d.reason)
                    checked += 1
    assert checked >= 32, "only %d flag checks" % checked


def test_list_encodes_items_in_order():
    # The Encoder writes the count, then the items in the order given; decode reads them back.
    enc = codec.Encoder()
    for row in _list_rows():
        f = row[3][-1]
        n = max(f[2], 3) if f[3] >= 3 else f[3]
        lo_item, hi_item, mid_item = _samples_of(f[4])
        pool = (tuple(hi_item), tuple(lo_item), tuple(mid_item))
        vals = _defaults(row)
        vals[-1] = tuple(pool[k % 3] for k in range(n))
        size = enc.frame_bytes(row[0], 7, tuple(vals))
        frame = bytes(enc.frame[:size])
        assert frame == _frame(row[0], _payload(row, vals), seq=7), "%s: bytes" % row[1]
        err, d = _decode(frame, row[2])
        assert err == 0 and d.values[-1] == vals[-1], "%s: %r" % (row[1], d.values)


def test_board_table_is_the_spec_tables_compact_form():
    # protocol/layouts.py is generated (tools/board_table.py): stale, it would decode by an
    # old table. Checked here, on both VMs, and not only by the tool's --check on the host.
    at, strings, rows = spec.board_table()
    assert layouts.AT == at, "layouts.AT is stale: run tools/board_table.py"
    assert layouts.STRINGS == strings, "layouts.STRINGS is stale: run tools/board_table.py"
    assert layouts.ROWS == rows, "layouts.ROWS is stale: run tools/board_table.py"
    assert sorted(at) == sorted(r[0] for r in m.MESSAGES), "a row per message type"


def test_codec_reads_rows_where_the_spec_lays_them_out():
    # codec.py's row offsets are const() (gone from the module on MicroPython): compared here
    # where they are names (CPython), with the layout protocol/spec.py writes.
    pairs = (("_NAME", "ROW_NAME"), ("_KIND", "ROW_KIND"), ("_FMT", "ROW_FMT"),
             ("_SIZE", "ROW_SIZE"), ("_N_FIXED", "ROW_N_FIXED"), ("_TAIL", "ROW_TAIL"),
             ("_TAIL_FIELD", "ROW_TAIL_FIELD"), ("_TAIL_LOW", "ROW_TAIL_LOW"),
             ("_TAIL_HIGH", "ROW_TAIL_HIGH"), ("_ITEM_FMT", "ROW_ITEM_FMT"),
             ("_ITEM_SIZE", "ROW_ITEM_SIZE"), ("_N_CHECKS", "ROW_N_CHECKS"),
             ("_N_ITEM_CHECKS", "ROW_N_ITEM_CHECKS"), ("_CHECKS", "ROW_CHECKS"),
             ("_CHECK_SIZE", "CHECK_SIZE"), ("_TAIL_STR", "TAIL_STR"),
             ("_TAIL_LIST", "TAIL_LIST"))
    for mine, theirs in pairs:
        value = getattr(codec, mine, None)
        if value is not None:
            assert value == getattr(spec, theirs), "codec.%s != spec.%s" % (mine, theirs)
    assert struct.calcsize(spec.CHECK_FORMAT) == spec.CHECK_SIZE


def test_every_row_agrees_with_its_message():
    # What the board reads of each row (protocol/layouts.py) against the message's fields.
    for row in m.MESSAGES:
        at = layouts.AT[row[0]]
        r = layouts.ROWS
        fields = row[3]
        tail = fields[-1][1] if fields and fields[-1][1] in ("str", "list") else ""
        fixed = fields[:-1] if tail else fields
        assert layouts.STRINGS[r[at + spec.ROW_NAME]] == row[1], row[1]
        assert layouts.STRINGS[r[at + spec.ROW_KIND]] == row[2], row[1]
        fmt = "<" + "".join(f[1] for f in fixed)
        assert layouts.STRINGS[r[at + spec.ROW_FMT]] == fmt, row[1]
        assert r[at + spec.ROW_SIZE] == struct.calcsize(fmt), row[1]
        assert r[at + spec.ROW_N_FIXED] == len(fixed), row[1]
        want = {"": spec.TAIL_NONE, "str": spec.TAIL_STR, "list": spec.TAIL_LIST}[tail]
        assert r[at + spec.ROW_TAIL] == want, row[1]
        # a check for each field whose range is narrower than its kind's, and no other
        n = r[at + spec.ROW_N_CHECKS]
        checked = []
        for k in range(n):
            i, name, lo, hi = struct.unpack_from(spec.CHECK_FORMAT, r,
                                                 at + spec.ROW_CHECKS + k * spec.CHECK_SIZE)
            f = fixed[i]
            assert (layouts.STRINGS[name], lo, hi) == (f[0], f[2], f[3]), "%s.%s" % (
                row[1], f[0])
            checked.append(i)
        for i in range(len(fixed)):
            f = fixed[i]
            narrow = f[2] is not None and (f[1] not in KIND_RANGE or (
                f[2], f[3]) != KIND_RANGE[f[1]])
            assert narrow == (i in checked), "%s.%s: checked %s" % (row[1], f[0], i in checked)
