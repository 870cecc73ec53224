# The board codec against the golden vectors (protocol/vectors/golden.json, written by
# tools/make_golden.py with an implementation of its own): every valid vector decodes to its
# fields and encodes to its bytes; every bad vector, fed byte by byte through FrameReader and
# codec.decode as the firmware's loop does, gets the error code, seq and request type listed.
# Authenticated vectors: every signed vector decodes with its trailer and passes the Guard
# (firmware/core/guard.py) provisioned with the vectors' test keys and sessions; every refused
# vector decodes and gets its error from Guard.admit / Guard.advance, in the loop's order.
# Board-safe: runs on CPython and on MicroPython (cwd = repo root).

import binascii
import json
import struct

from firmware.core.guard import Guard
from protocol import auth, codec, framing
from protocol import messages as m

PATH = "protocol/vectors/golden.json"
_cache = []


def _vectors():
    if not _cache:
        with open(PATH) as f:
            _cache.append(json.load(f))
    return _cache[0]


def _unhex(text):
    return binascii.unhexlify(text)


def _values(row, fields):
    """The vector's fields as the codec's values tuple, in table order."""
    assert len(fields) == len(row[3]), "%s: %d fields, table has %d" % (
        row[1], len(fields), len(row[3]))
    out = []
    for f in row[3]:
        assert f[0] in fields, "%s: field %s missing" % (row[1], f[0])
        v = fields[f[0]]
        if f[1].endswith("s"):
            v = _unhex(v)
        out.append(v)
    return tuple(out)


def _code(name):
    for code, n, _ in m.ERRORS:
        if n == name:
            return code
    raise AssertionError("unknown error name " + name)


def test_vectors_cover_the_table():
    doc = _vectors()
    assert doc["protocol_version"] == m.VERSION, "vectors for version %d" % doc["protocol_version"]
    assert doc["max_frame"] == m.MAX_FRAME, "vectors for MAX_FRAME %d" % doc["max_frame"]
    types = [v["type"] for v in doc["valid"]]
    for row in m.MESSAGES:
        assert row[0] in types, "no golden vector for %s" % row[1]
    for v in doc["valid"]:
        row = m.find(v["type"])
        assert row is not None and row[1] == v["message"] and row[2] == v["kind"], v["name"]
    names = [v["error"] for v in doc["bad"]]
    for want in ("BAD_CRC", "TRUNCATED", "BAD_COBS", "OVERSIZE", "BAD_VERSION", "BAD_FLAGS",
                 "UNKNOWN_TYPE", "BAD_LENGTH", "OUT_OF_RANGE"):
        assert want in names, "no bad vector for %s" % want
    signed = [v["type"] for v in doc["signed"]]
    for row in m.MESSAGES:
        if row[2] == "req":
            assert row[0] in signed, "no signed vector for %s" % row[1]
    roles = [v["auth"]["role"] for v in doc["signed"]]
    for role in (m.ROLE_PATIENT, m.ROLE_CLINICIAN, m.ROLE_SERVICE):
        assert role in roles, "no signed vector for role %d" % role
    refused = [v["error"] for v in doc["refused"]]
    for want in ("AUTH_REQUIRED", "NO_SESSION", "NO_KEY", "BAD_TAG", "REPLAY", "WRONG_ROLE"):
        assert want in refused, "no refused vector for %s" % want
    auth_bad = [v["error"] for v in doc["bad"] if v["name"].startswith("auth_")]
    for want in ("BAD_LENGTH", "BAD_FLAGS"):
        assert want in auth_bad, "no bad authenticated vector for %s" % want


def test_decode_valid_vectors():
    d = codec.Decoded()
    for v in _vectors()["valid"]:
        row = m.find(v["type"])
        frame = bytearray(_unhex(v["frame"]))
        err = codec.decode(frame, len(frame), d, v["kind"])
        assert err == 0, "%s: error %d (%s)" % (v["name"], err, d.reason)
        assert d.type == v["type"] and d.seq == v["seq"], "%s: type/seq" % v["name"]
        want = _values(row, v["fields"])
        assert tuple(d.values) == want, "%s: %r != %r" % (v["name"], d.values, want)


def test_decode_valid_wire_through_reader():
    reader = framing.FrameReader()
    d = codec.Decoded()
    stream = b"".join(_unhex(v["wire"]) for v in _vectors()["valid"])
    got = []
    for b in stream:
        r = reader.push(b)
        if r != framing.NOTHING:
            assert r == framing.FRAME, "reader result %d" % r
            got.append(bytes(reader.frame[: reader.length]))
    valid = _vectors()["valid"]
    assert len(got) == len(valid), "%d frames from %d vectors" % (len(got), len(valid))
    for i in range(len(valid)):  # (MicroPython's zip() takes no strict=)
        v, frame = valid[i], got[i]
        assert frame == _unhex(v["frame"]), "%s: frame bytes" % v["name"]
        assert codec.decode(bytearray(frame), len(frame), d, v["kind"]) == 0, v["name"]


def test_encode_valid_vectors():
    enc = codec.Encoder()
    for v in _vectors()["valid"]:
        row = m.find(v["type"])
        values = _values(row, v["fields"])
        n = enc.frame_bytes(v["type"], v["seq"], values)
        got = bytes(enc.frame[:n])
        assert got == _unhex(v["frame"]), "%s: frame %s, want %s" % (
            v["name"], binascii.hexlify(got), v["frame"])
        wire = bytes(enc.encode(v["type"], v["seq"], values))
        assert wire == _unhex(v["wire"]), "%s: wire %s, want %s" % (
            v["name"], binascii.hexlify(wire), v["wire"])


def _answer(reader, d, wire):
    """What the firmware's loop answers to these bytes: [(code, seq, request_type)], one per
    frame or bad block (code 0 for a valid request)."""
    out = []
    for b in wire:
        r = reader.push(b)
        if r == framing.FRAME:
            err = codec.decode(reader.frame, reader.length, d)
            out.append((err, d.seq, d.type) if err else (0, d.seq, d.type))
        elif r == framing.BAD_COBS:
            out.append((m.ERR_BAD_COBS, m.SEQ_UNSOLICITED, 0))
        elif r == framing.OVERSIZE:
            out.append((m.ERR_OVERSIZE, m.SEQ_UNSOLICITED, 0))
    return out


def test_bad_vectors():
    d = codec.Decoded()
    for v in _vectors()["bad"]:
        got = _answer(framing.FrameReader(), d, _unhex(v["wire"]))
        want = (_code(v["error"]), v["seq"], v["request_type"])
        assert got == [want], "%s: got %r, want %r (%s)" % (v["name"], got, want, d.reason)


def test_bad_vectors_in_one_stream():
    # One reader for everything, as on the link: each bad vector gets its error, and a valid
    # request right after it still decodes.
    reader = framing.FrameReader()
    d = codec.Decoded()
    probe = None
    for v in _vectors()["valid"]:
        if v["kind"] == "req":
            probe = v
            break
    assert probe is not None, "a valid request vector"
    for v in _vectors()["bad"]:
        got = _answer(reader, d, _unhex(v["wire"]) + _unhex(probe["wire"]))
        want = [(_code(v["error"]), v["seq"], v["request_type"]), (0, probe["seq"],
                                                                   probe["type"])]
        assert got == want, "%s then %s: %r" % (v["name"], probe["name"], got)


# -- authenticated vectors -----------------------------------------------------------------


def _role(name):
    for i in range(len(m.ROLE_NAMES)):
        if m.ROLE_NAMES[i] == name:
            return i
    raise AssertionError("unknown role " + name)


def _guard():
    """A Guard as the vectors' pump has it: the test keys, the listed sessions opened in turn
    on a fresh pump (and so in those slots), every counter at 0."""
    doc = _vectors()["auth"]
    keys = {}
    for name in doc["keys"]:
        keys[_role(name)] = _unhex(doc["keys"][name])
    g = Guard(keys)
    for s in doc["sessions"]:
        slot = g.open(_unhex(s["nonce"]))
        assert slot == s["session"], "session %d opened in slot %d" % (s["session"], slot)
    return g


def _decode_req(v):
    frame = bytearray(_unhex(v["frame"]))
    d = codec.Decoded()
    err = codec.decode(frame, len(frame), d)
    assert err == 0, "%s: error %d (%s)" % (v["name"], err, d.reason)
    return frame, d


def _check_trailer(v, frame, d):
    a = v["auth"]
    assert d.auth, "%s: decoded without its trailer" % v["name"]
    assert (d.session, d.role, d.counter) == (a["session"], a["role"], a["counter"]), (
        "%s: trailer %r" % (v["name"], (d.session, d.role, d.counter)))
    assert d.tag_at == len(frame) - m.CRC_SIZE - m.TAG_SIZE, "%s: tag_at %d" % (
        v["name"], d.tag_at)
    assert bytes(frame[d.tag_at : d.tag_at + m.TAG_SIZE]) == _unhex(a["tag"]), v["name"]


def test_signed_vectors_decode():
    for v in _vectors()["signed"]:
        frame, d = _decode_req(v)
        assert d.type == v["type"] and d.seq == v["seq"], "%s: type/seq" % v["name"]
        want = _values(m.find(v["type"]), v["fields"])
        assert tuple(d.values) == want, "%s: %r != %r" % (v["name"], d.values, want)
        _check_trailer(v, frame, d)


def test_signed_vectors_signed_here_alike():
    # struct + auth.frame_tag (the board's tag) give the generator's bytes (stdlib hmac).
    for v in _vectors()["signed"]:
        a = v["auth"]
        frame = _unhex(v["frame"])
        body = frame[: m.HEADER_SIZE] + frame[m.HEADER_SIZE : -m.CRC_SIZE - m.AUTH_SIZE]
        assert struct.unpack_from("<BBBH", body, 0) == (
            m.VERSION, v["type"], m.FLAG_AUTH, v["seq"]), "%s: header" % v["name"]
        signed = body + struct.pack("<BBI", a["session"], a["role"], a["counter"])
        tag = auth.frame_tag(_unhex(a["key"]), _unhex(a["nonce"]), signed)
        assert tag == _unhex(a["tag"]), "%s: tag %s, want %s" % (
            v["name"], binascii.hexlify(tag), a["tag"])
        whole = signed + tag
        whole += struct.pack("<I", binascii.crc32(whole) & 0xFFFFFFFF)
        assert whole == frame, "%s: frame bytes" % v["name"]


def test_signed_vectors_pass_the_guard():
    doc = _vectors()["auth"]
    for v in _vectors()["signed"]:
        a = v["auth"]
        role_name = m.ROLE_NAMES[a["role"]]
        assert doc["keys"][role_name] == a["key"], "%s: the role's provisioned key" % v["name"]
        frame, d = _decode_req(v)
        g = _guard()
        assert g.nonces[a["session"]] == _unhex(a["nonce"]), "%s: session nonce" % v["name"]
        code = g.admit(d, frame)
        assert code == 0, "%s: admit %d (%s)" % (v["name"], code, g.reason)
        code = g.advance(d)
        assert code == 0, "%s: advance %d (%s)" % (v["name"], code, g.reason)
        assert g.counters[a["session"]] == a["counter"], "%s: counter taken" % v["name"]
        # The same frame again: admitted (the tag is still right), but its counter is spent.
        assert g.admit(d, frame) == 0, "%s: admitted again" % v["name"]
        assert g.advance(d) == m.ERR_REPLAY, "%s: replay refused" % v["name"]


def test_signed_wire_through_reader():
    reader = framing.FrameReader()
    d = codec.Decoded()
    signed = _vectors()["signed"]
    stream = b"".join(_unhex(v["wire"]) for v in signed)
    i = 0
    for b in stream:
        r = reader.push(b)
        if r == framing.NOTHING:
            continue
        assert r == framing.FRAME, "reader result %d" % r
        v = signed[i]
        i += 1
        frame = bytearray(reader.frame[: reader.length])
        assert frame == _unhex(v["frame"]), "%s: frame bytes" % v["name"]
        assert codec.decode(frame, len(frame), d) == 0, "%s: %s" % (v["name"], d.reason)
        _check_trailer(v, frame, d)
    assert i == len(signed), "%d frames from %d vectors" % (i, len(signed))


def test_refused_vectors():
    for v in _vectors()["refused"]:
        wire = _unhex(v["wire"])
        reader = framing.FrameReader()
        results = [reader.push(b) for b in wire]
        assert results[-1] == framing.FRAME, "%s: reader %d" % (v["name"], results[-1])
        frame = bytearray(reader.frame[: reader.length])
        assert frame == _unhex(v["frame"]), "%s: frame bytes" % v["name"]
        d = codec.Decoded()
        err = codec.decode(frame, len(frame), d)
        assert err == 0, "%s: the codec refuses it: %d (%s)" % (v["name"], err, d.reason)
        assert (d.seq, d.type) == (v["seq"], v["request_type"]), "%s: header" % v["name"]
        a = v["auth"]
        if a is None:
            assert not d.auth, "%s: unsigned" % v["name"]
        else:
            _check_trailer(v, frame, d)
        g = _guard()
        code = g.admit(d, frame) or g.advance(d)
        want = _code(v["error"])
        assert code == want, "%s: got %d (%s), want %s" % (v["name"], code, g.reason,
                                                           v["error"])
        assert g.code == want and g.reason, "%s: guard.code/reason" % v["name"]
        for s in range(m.SESSIONS):
            assert g.counters[s] == 0, "%s: a refused frame moved counter %d" % (v["name"], s)


def test_refused_vectors_untampered_are_signed_as_listed():
    # The refused vectors that were not edited after signing carry the tag of their key,
    # nonce and trailer: what the guard refuses them for is the key, nonce, session or role,
    # not a slip in the vector.
    n = 0
    for v in _vectors()["refused"]:
        a = v["auth"]
        if a is None or a["tampered"] is not None:
            continue
        frame = _unhex(v["frame"])
        at = len(frame) - m.CRC_SIZE - m.TAG_SIZE
        tag = auth.frame_tag(_unhex(a["key"]), _unhex(a["nonce"]), frame[:at])
        assert tag == _unhex(a["tag"]), v["name"]
        n += 1
    assert n >= 5, "only %d untampered refused vectors" % n
