# The board codec against the golden vectors (protocol/vectors/golden.json, written by
# tools/make_golden.py with an implementation of its own): every valid vector decodes to its
# fields and encodes to its bytes (lists as tuples of item tuples, flag sets as ints); every bad
# vector, fed byte by byte through FrameReader and codec.decode as the firmware's loop does, gets
# the error code, seq and request type listed. The vectors cover lists (several items, the
# largest count, none) and flag sets (several bits), and the bad ones a list's count out of its
# bounds or disagreeing with the payload's length, a list item out of range and an unknown bit
# (classified here from the table, not by the vectors' names).
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
    return _tuple(row[1], row[3], fields)


def _tuple(where, spec, fields):
    """JSON fields laid out by `spec` as the codec gives them: a tuple in table order, bytes
    from hex, a list as a tuple of item tuples."""
    assert len(fields) == len(spec), "%s: %d fields, table has %d" % (
        where, len(fields), len(spec))
    out = []
    for f in spec:
        assert f[0] in fields, "%s: field %s missing" % (where, f[0])
        v = fields[f[0]]
        if f[1] == "list":
            v = tuple(_tuple(where + "." + f[0], f[4], item) for item in v)
        elif f[1].endswith("s"):
            v = _unhex(v)
        out.append(v)
    return tuple(out)


def _flag_bits(f):
    """The bits a flag-set field may carry; 0 for any other field."""
    bits = 0
    if isinstance(f[4], str) and f[4] in m.FLAGS:
        for bit, _label in m.FLAGS[f[4]]:
            bits |= bit
    return bits


def _ones(n):
    count = 0
    while n:
        count += n & 1
        n >>= 1
    return count


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


def test_vectors_cover_lists_and_flags():
    # Every list field of the table: a vector with several items, one at its largest count,
    # one with none where its count may be 0. Every flag set: a vector with several bits.
    counts = {}
    bits = {}
    for v in _vectors()["valid"] + _vectors()["signed"]:
        for f in m.find(v["type"])[3]:
            if f[1] == "list":
                key = "%s.%s" % (v["message"], f[0])
                if key not in counts:
                    counts[key] = []
                counts[key].append(len(v["fields"][f[0]]))
            elif _flag_bits(f):
                bits[f[4]] = max(bits.get(f[4], 0), _ones(v["fields"][f[0]]))
    for row in m.MESSAGES:
        for f in row[3]:
            if f[1] == "list":
                seen = counts.get("%s.%s" % (row[1], f[0]), [])
                assert seen, "no vector for %s.%s" % (row[1], f[0])
                assert max(seen) <= f[3] and min(seen) >= f[2], "%s.%s: %r" % (
                    row[1], f[0], seen)
            elif _flag_bits(f):
                assert bits.get(f[4], 0) >= 2, "no vector with several %s bits" % f[4]
    # Across the table, each list layout at its extremes (by the field's name).
    names = {}
    for row in m.MESSAGES:
        for f in row[3]:
            if f[1] == "list":
                lo, hi = names.get(f[0], (f[2], f[3]))
                names[f[0]] = (min(lo, f[2]), max(hi, f[3]))
    for name in names:
        seen = []
        for key in counts:
            if key.endswith("." + name):
                seen += counts[key]
        lo, hi = names[name]
        assert hi in seen, "%s: no vector with %d items (%r)" % (name, hi, seen)
        assert max(seen) >= 2, "%s: no vector with several items" % name
        if lo == 0:
            assert 0 in seen, "%s: no vector with an empty list" % name


def _classify(v):
    """What a bad request frame does wrong to a list or a flag set, read here from the table:
    "count_over_max", "count_under_min", "count_vs_length", "item_out_of_range",
    "unknown_bit", or None (none of these, or a frame refused earlier)."""
    if v["frame"] is None:
        return None
    frame = _unhex(v["frame"])
    if len(frame) < m.HEADER_SIZE + m.CRC_SIZE or len(frame) > m.MAX_FRAME:
        return None
    if struct.unpack_from("<I", frame, len(frame) - 4)[0] != binascii.crc32(frame[:-4]):
        return None
    row = m.find(frame[1])
    if frame[0] != m.VERSION or frame[2] & ~m.FLAG_AUTH or row is None or row[2] != "req":
        return None
    end = len(frame) - m.CRC_SIZE
    if frame[2] & m.FLAG_AUTH:
        end -= m.AUTH_SIZE
    payload = frame[m.HEADER_SIZE:end]
    fields = row[3]
    fmt = "<"
    for f in fields:
        if f[1] not in ("str", "list"):
            fmt += f[1]
    size = struct.calcsize(fmt)
    last = fields[-1] if fields else None
    what = None
    if last is not None and last[1] == "list":
        if len(payload) < size + 1:
            return None
        n = payload[size]
        item_fmt = "<" + "".join(g[1] for g in last[4])
        item_size = struct.calcsize(item_fmt)
        if len(payload) != size + 1 + n * item_size:
            return "count_vs_length"
        if n > last[3]:
            return "count_over_max"
        if n < last[2]:
            return "count_under_min"
        for k in range(n):
            item = struct.unpack_from(item_fmt, payload, size + 1 + k * item_size)
            for i in range(len(item)):
                g = last[4][i]
                if not g[2] <= item[i] <= g[3]:
                    what = "item_out_of_range"
    elif (last is not None and last[1] == "str") or len(payload) != size:
        return None
    values = struct.unpack_from(fmt, payload, 0)
    for i in range(len(values)):
        bits = _flag_bits(fields[i])
        if bits and values[i] & ~bits:
            return "unknown_bit"
    return what


def test_bad_vectors_cover_lists_and_flags():
    want = {"count_over_max": "OUT_OF_RANGE", "count_under_min": "OUT_OF_RANGE",
            "count_vs_length": "BAD_LENGTH", "item_out_of_range": "OUT_OF_RANGE",
            "unknown_bit": "OUT_OF_RANGE"}
    seen = {}
    for v in _vectors()["bad"]:
        what = _classify(v)
        if what is None:
            continue
        seen[what] = seen.get(what, 0) + 1
        assert v["error"] == want[what], "%s (%s): listed as %s, want %s" % (
            v["name"], what, v["error"], want[what])
    for what in want:
        assert seen.get(what, 0) > 0, "no bad vector for %s: %r" % (what, seen)


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
