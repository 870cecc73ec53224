# The board codec against the golden vectors (protocol/vectors/golden.json, written by
# tools/make_golden.py with an implementation of its own): every valid vector decodes to its
# fields and encodes to its bytes; every bad vector, fed byte by byte through FrameReader and
# codec.decode as the firmware's loop does, gets the error code, seq and request type listed.
# Board-safe: runs on CPython and on MicroPython (cwd = repo root).

import binascii
import json

from protocol import codec, framing
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
