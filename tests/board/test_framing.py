# COBS framing (protocol/framing.py): encode/decode round trips and known vectors, and the
# byte-at-a-time FrameReader (resynchronisation, repeated delimiters, OVERSIZE, BAD_COBS).
# Board-safe: runs on CPython and on MicroPython.

import binascii

from prng import lcg

from protocol import framing
from protocol import messages as m
from protocol.framing import BAD_COBS, FRAME, NOTHING, OVERSIZE, FrameReader


def _h(text):
    return binascii.unhexlify(text.replace(" ", ""))


def _hex(data):
    return binascii.hexlify(bytes(data)).decode()


def _enc(data):
    dst = bytearray(len(data) + len(data) // 254 + 2)
    n = framing.cobs_encode(data, len(data), dst)
    return bytes(dst[:n])


def _nonzero(n):
    """n bytes with no zero among them: 01..FF, 01..FF, ..."""
    return bytes(1 + i % 255 for i in range(n))


def _dec(block, cap=1000):
    dst = bytearray(cap)
    n = framing.cobs_decode(block, len(block), dst)
    if n < 0:
        return n
    return bytes(dst[:n])



def _feed(reader, data):
    """Push bytes; return the list of non-NOTHING results, with the frame for FRAME."""
    out = []
    for b in data:
        r = reader.push(b)
        if r == FRAME:
            out.append((FRAME, bytes(reader.frame[: reader.length])))
        elif r != NOTHING:
            out.append((r, None))
    return out


# Wikipedia "Consistent Overhead Byte Stuffing", encoding examples (data -> wire, with the
# 0x00 delimiter), and the same cases in the COBS paper (Cheshire & Baker 1999).
RUN_01_FE = bytes(range(1, 255))  # 254 non-zero bytes
VECTORS = (
    (b"", "01 00"),
    (_h("00"), "01 01 00"),
    (_h("00 00"), "01 01 01 00"),
    (_h("00 11 00"), "01 02 11 01 00"),
    (_h("11 22 00 33"), "03 11 22 02 33 00"),
    (_h("11 22 33 44"), "05 11 22 33 44 00"),
    (_h("11 00 00 00"), "02 11 01 01 01 00"),
    # 255 bytes 01..FF: a full block of 254, then a block holding FF
    (bytes(range(1, 256)), "ff" + _hex(RUN_01_FE) + "02 ff 00"),
    # 02..FF 00: 254 non-zero bytes then a zero
    (bytes(range(2, 256)) + b"\x00", "ff" + _hex(range(2, 256)) + "01 01 00"),
    # 03..FF 00 01
    (bytes(range(3, 256)) + b"\x00\x01", "fe" + _hex(range(3, 256)) + "02 01 00"),
)


def test_known_vectors():
    for data, want in VECTORS:
        want = _h(want)
        got = _enc(data)
        assert got == want, "encode %s: %s, want %s" % (_hex(data[:8]), _hex(got), _hex(want))
        back = _dec(want[:-1])
        assert back == data, "decode %s: %r" % (_hex(want[:8]), back)


def test_254_byte_run_at_the_end():
    # 01..FE (254 non-zero bytes, Wikipedia example 9) and 00 01..FE (example 10). Wikipedia
    # shows them without a final code byte (FF 01..FE 00); the paper's StuffData (and this
    # encoder) closes the last block with 01 (FF 01..FE 01 00). Both decode to the same data.
    short = "ff" + _hex(RUN_01_FE)
    for data, prefix in ((RUN_01_FE, ""), (b"\x00" + RUN_01_FE, "01")):
        got = _enc(data)
        assert got == _h(prefix + short + "01 00"), "encode: %s..%s" % (
            _hex(got[:4]), _hex(got[-4:]))
        assert _dec(got[:-1]) == data, "decode own encoding"
        assert _dec(_h(prefix + short)) == data, "decode Wikipedia's encoding"


def test_round_trip_edge_cases():
    cases = [
        b"",
        b"\x00",
        b"\x00" * 300,
        b"\x01",
        b"\xff",
        b"\xff" * 253,
        b"\xff" * 254,
        b"\xff" * 255,
        b"\x01" * 253 + b"\x00",
        b"\x01" * 254 + b"\x00",
        b"\x01" * 255 + b"\x00",
        b"\x00" + b"\x01" * 254 + b"\x00",
        b"\x01" * 508,
        b"\x01" * 509,
        b"\x01" * 254 + b"\x00" + b"\x01" * 254,
        bytes(range(256)) * 3,
        bytes(m.MAX_FRAME),
        _nonzero(m.MAX_FRAME),
        _nonzero(m.MAX_FRAME - 1) + b"\x00",
        b"\x00" + _nonzero(m.MAX_FRAME - 1),
    ]
    for data in cases:
        enc = _enc(data)
        assert enc[-1] == 0 and 0 not in enc[:-1], "only the delimiter is 0 (%d bytes)" % len(
            data)
        bound = len(data) + len(data) // 254 + 2
        assert len(enc) <= bound, "overhead %d for %d bytes" % (len(enc) - len(data), len(data))
        back = _dec(enc[:-1])
        assert back == data, "round trip of %d bytes: %r" % (len(data), back)


def test_round_trip_random():
    below = lcg(1)
    for i in range(300):
        n = below(m.MAX_FRAME + 1)
        zeros = below(4)  # vary the density of zeros
        data = bytes((0 if below(4) < zeros else 1 + below(255)) for _ in range(n))
        enc = _enc(data)
        assert 0 not in enc[:-1] and enc[-1] == 0, "case %d: stray zero" % i
        assert len(enc) <= framing.MAX_ENCODED + 1, "case %d: %d bytes" % (i, len(enc))
        assert _dec(enc[:-1]) == data, "case %d: round trip" % i


def test_decode_invalid():
    for block in ("05 01 02", "02", "ff 01 02 03", "03 11 00 22", "00", "01 00", "02 11 05 22"):
        got = _dec(_h(block))
        assert got == -1, "%s: %r, want -1" % (block, got)
    # A decoded frame larger than the destination: -2.
    assert _dec(_h("05 11 22 33 44"), cap=3) == -2, "data overflows dst"
    assert _dec(_h("02 11 02 22"), cap=2) == -2, "implied zero overflows dst"
    assert _dec(_h("02 11 02 22"), cap=3) == _h("11 00 22"), "fits exactly"


def test_max_encoded_bound():
    # A MAX_FRAME frame with no zeros is the worst case: a code byte per 254 data bytes, and
    # one more (this encoder closes a full block with its own code byte). 256 bytes: 258.
    assert m.MAX_FRAME == 256, "the numbers below are for MAX_FRAME 256"
    assert framing.MAX_ENCODED == 258, "MAX_ENCODED %d" % framing.MAX_ENCODED
    assert framing.MAX_WIRE == framing.MAX_ENCODED + 1, "MAX_WIRE %d" % framing.MAX_WIRE
    enc = _enc(_nonzero(m.MAX_FRAME))
    assert len(enc) == framing.MAX_ENCODED + 1, "block + delimiter: %d" % len(enc)
    # No frame of at most MAX_FRAME bytes encodes longer, wherever its zeros are.
    worst = 0
    for n in (m.MAX_FRAME - 2, m.MAX_FRAME - 1, m.MAX_FRAME):
        for z in range(-1, n):
            data = bytearray(_nonzero(n))
            if z >= 0:
                data[z] = 0
            worst = max(worst, len(_enc(bytes(data))) - 1)
    assert worst == framing.MAX_ENCODED, "worst case %d, MAX_ENCODED %d" % (
        worst, framing.MAX_ENCODED)


def _frames(below, count):
    out = []
    for _ in range(count):
        n = 1 + below(m.MAX_FRAME)
        out.append(bytes((0 if below(3) == 0 else 1 + below(255)) for _ in range(n)))
    return out


def test_reader_stream_of_frames():
    below = lcg(2)
    frames = _frames(below, 60)
    stream = b"".join(_enc(f) for f in frames)
    r = FrameReader()
    got = _feed(r, stream)
    assert len(got) == len(frames), "%d results for %d frames" % (len(got), len(frames))
    for i, (res, data) in enumerate(got):
        assert res == FRAME and data == frames[i], "frame %d" % i


def test_reader_every_length_up_to_max_frame():
    below = lcg(3)
    r = FrameReader()
    for n in range(0, m.MAX_FRAME + 1):
        data = bytes((0 if below(5) == 0 else 1 + below(255)) for _ in range(n))
        got = _feed(r, _enc(data))
        assert got == [(FRAME, data)], "length %d: %r" % (n, got)
    # The largest frame with no zero at all (MAX_ENCODED bytes before the delimiter).
    data = _nonzero(m.MAX_FRAME)
    got = _feed(r, _enc(data))
    assert len(_enc(data)) == framing.MAX_ENCODED + 1, "the worst case of COBS"
    assert got == [(FRAME, data)], "max frame, no zeros: %r" % (got,)


def test_reader_oversize_then_recovers():
    r = FrameReader()
    good = _h("11 22 00 33")
    for big in (m.MAX_FRAME + 1, m.MAX_FRAME + 2, 300, 1000):
        data = bytes(range(1, 256)) * 4
        data = data[:big]
        enc = _enc(data)
        results = [r.push(b) for b in enc]
        assert results[:-1] == [NOTHING] * (len(enc) - 1), "%d: nothing before the delimiter" % (
            big)
        assert results[-1] == OVERSIZE, "%d bytes: %d, want OVERSIZE" % (big, results[-1])
        assert _feed(r, _enc(good)) == [(FRAME, good)], "next frame after %d decodes" % big
    # Garbage longer than any frame, no valid COBS at all: OVERSIZE, not BAD_COBS.
    assert _feed(r, b"\xff" * 400 + b"\x00") == [(OVERSIZE, None)], "long garbage"
    assert _feed(r, _enc(good)) == [(FRAME, good)], "and the next frame decodes"
    # MAX_ENCODED + 1 bytes before a delimiter is one too many.
    assert _feed(r, b"\x01" * (framing.MAX_ENCODED + 1) + b"\x00") == [(OVERSIZE, None)], "+1"
    # k codes 01 decode to k - 1 zeros: MAX_FRAME + 1 of them are a MAX_FRAME frame, one more
    # is a frame too long for the reader's buffer although the block fits MAX_ENCODED.
    assert _feed(r, b"\x01" * (m.MAX_FRAME + 1) + b"\x00") == [
        (FRAME, bytes(m.MAX_FRAME))], "MAX_FRAME zeros"
    for k in range(m.MAX_FRAME + 2, framing.MAX_ENCODED + 1):
        assert _feed(r, b"\x01" * k + b"\x00") == [(OVERSIZE, None)], "%d codes 01" % k
    assert _feed(r, _enc(good)) == [(FRAME, good)], "and the next frame decodes"


def test_reader_bad_cobs_then_recovers():
    r = FrameReader()
    good = _h("01 02 00 01 00 67 27 50 48")
    for bad in ("05 01 02", "ff 01", "03 11", "02 11 05 22 33"):
        got = _feed(r, _h(bad) + b"\x00")
        assert got == [(BAD_COBS, None)], "%s: %r" % (bad, got)
        got = _feed(r, _enc(good))
        assert got == [(FRAME, good)], "after %s: %r" % (bad, got)


def test_reader_repeated_delimiters_ignored():
    r = FrameReader()
    good = _h("11 22 00 33")
    assert _feed(r, b"\x00" * 10) == [], "delimiters alone give nothing"
    got = _feed(r, b"\x00\x00" + _enc(good) + b"\x00\x00\x00" + _enc(good) + b"\x00")
    assert got == [(FRAME, good), (FRAME, good)], "%r" % (got,)


def test_reader_resynchronises_after_garbage():
    # Joining a stream mid-frame: whatever came before the first delimiter is one bad block
    # (or, by chance, a frame); the next frame decodes whole.
    below = lcg(4)
    good = _h("01 03 00 02 01 80 1a 06 00 f4 01 ee 09 30 b3")
    for trial in range(200):
        junk = bytes(1 + below(255) for _ in range(below(200)))
        r = FrameReader()
        got = _feed(r, junk + b"\x00" + _enc(good))
        assert got[-1] == (FRAME, good), "trial %d: %r" % (trial, got[-1])
        assert len(got) <= 2, "trial %d: one result for the junk at most" % trial
    # Half a frame (its tail) before a full one.
    enc = _enc(good)
    r = FrameReader()
    got = _feed(r, enc[5:] + enc)
    assert got[-1] == (FRAME, good) and len(got) == 2, "tail then frame: %r" % (got,)
