# Board-side codec: struct layouts from the board's compact message table (protocol/layouts.py,
# generated from protocol/spec.py), frame validation in the order the error codes are
# documented, and encoding into preallocated buffers.

import binascii
import struct

from protocol import framing
from protocol import messages as m
from protocol.layouts import AT, ROWS, STRINGS

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython: the host, and the board tests run there too

    def const(x):
        return x


# A row of the table (protocol/layouts.py), by offset (protocol/spec.py: ROW_*, CHECK_*);
# const: the names are gone from the board.
_NAME = const(0)
_KIND = const(1)
_FMT = const(2)
_SIZE = const(3)
_N_FIXED = const(4)
_TAIL = const(5)
_TAIL_FIELD = const(6)
_TAIL_LOW = const(7)
_TAIL_HIGH = const(8)
_ITEM_FMT = const(9)
_ITEM_SIZE = const(10)
_N_CHECKS = const(11)
_N_ITEM_CHECKS = const(12)
_CHECKS = const(13)
_CHECK_SIZE = const(10)
_TAIL_STR = const(1)
_TAIL_LIST = const(2)


def __getattr__(name):
    """LAYOUTS: {type: Layout} with the full field tuples (protocol/spec.py), for the host,
    the tests and the tools; the board's codec never needs them."""
    if name == "LAYOUTS":
        from protocol import spec

        return spec.layouts()
    raise AttributeError(name)


def _check(out, at, n, values):
    """The n range checks at ROWS[at:] on values, in field order: 0, or the first
    field's OUT_OF_RANGE."""
    for k in range(n):
        # field index, STRINGS index of its name, low, high
        i, name, low, high = struct.unpack_from("<BBiI", ROWS, at + k * _CHECK_SIZE)
        value = values[i]
        if not low <= value <= high:
            return _fail(out, m.ERR_OUT_OF_RANGE,
                         "%s=%d outside %d..%d" % (STRINGS[name], value, low, high))
    return 0


class Decoded:
    """Result of decoding one frame. error is 0 when the frame is a valid request."""

    def __init__(self):
        self.error = 0
        self.reason = ""
        self.type = 0
        self.seq = m.SEQ_UNSOLICITED
        self.values = ()
        # The authentication trailer, when the frame has one (FLAG_AUTH).
        self.auth = False
        self.session = 0
        self.role = 0
        self.counter = 0
        self.tag_at = 0  # offset of the tag; the bytes before it are what the tag signs


def decode(frame, length, out, expect="req"):
    """Validate and decode frame[:length] into `out` (a Decoded). Returns out.error."""
    out.error = 0
    out.type = 0
    out.seq = m.SEQ_UNSOLICITED
    out.values = ()
    out.reason = ""
    out.auth = False
    out.role = 0
    if length < m.HEADER_SIZE + m.CRC_SIZE:
        return _fail(out, m.ERR_TRUNCATED, "frame of %d bytes" % length)
    body = length - m.CRC_SIZE
    crc = struct.unpack_from("<I", frame, body)[0]
    if binascii.crc32(memoryview(frame)[:body]) != crc:
        return _fail(out, m.ERR_BAD_CRC, "CRC mismatch")
    version, mtype, flags, seq = struct.unpack_from(m.HEADER_FORMAT, frame, 0)
    out.seq = seq
    out.type = mtype
    if version != m.VERSION:
        return _fail(out, m.ERR_BAD_VERSION, "version %d; supported: %d" % (version, m.VERSION))
    if flags & ~m.FLAGS_KNOWN:
        return _fail(out, m.ERR_BAD_FLAGS, "flags 0x%02x" % flags)
    at = AT.get(mtype)
    if at is None or STRINGS[ROWS[at + _KIND]] != expect:
        return _fail(out, m.ERR_UNKNOWN_TYPE, "type 0x%02x" % mtype)
    start = m.HEADER_SIZE
    end = body
    if flags & m.FLAG_AUTH:
        if end - start < m.AUTH_SIZE:
            return _fail(out, m.ERR_BAD_LENGTH, "authentication trailer cut short")
        end -= m.AUTH_SIZE
        out.session, out.role, out.counter = struct.unpack_from(m.AUTH_FORMAT, frame, end)
        out.tag_at = end + m.AUTH_FIXED
        out.auth = True
    size = end - start
    fixed = ROWS[at + _SIZE]
    tail_kind = ROWS[at + _TAIL]
    tail = size - fixed - 1  # bytes after the tail's count byte
    if tail_kind == _TAIL_STR:
        ok = tail >= 0 and tail == frame[start + fixed]
    elif tail_kind == _TAIL_LIST:
        ok = tail >= 0 and tail == frame[start + fixed] * ROWS[at + _ITEM_SIZE]
    else:
        ok = size == fixed
    if not ok:
        return _fail(out, m.ERR_BAD_LENGTH,
                     "%s payload of %d bytes" % (STRINGS[ROWS[at + _NAME]], size))
    values = struct.unpack_from(STRINGS[ROWS[at + _FMT]], frame, start)
    n_checks = ROWS[at + _N_CHECKS]
    if tail_kind == _TAIL_LIST:
        # Lists come only with rare programming requests: a tuple per item is fine there.
        first = start + fixed
        n = frame[first]
        lo = ROWS[at + _TAIL_LOW]
        hi = ROWS[at + _TAIL_HIGH]
        if not lo <= n <= hi:
            return _fail(out, m.ERR_OUT_OF_RANGE, "%d %s; allowed %d..%d" % (
                n, STRINGS[ROWS[at + _TAIL_FIELD]], lo, hi))
        item_fmt = STRINGS[ROWS[at + _ITEM_FMT]]
        item_size = ROWS[at + _ITEM_SIZE]
        item_checks = ROWS[at + _N_ITEM_CHECKS]
        checks_at = at + _CHECKS + n_checks * _CHECK_SIZE
        items = []
        for k in range(n):
            item = struct.unpack_from(item_fmt, frame, first + 1 + k * item_size)
            if item_checks and _check(out, checks_at, item_checks, item):
                return out.error
            items.append(item)
        values = values + (tuple(items),)
    elif tail_kind == _TAIL_STR:
        first = start + fixed
        n = frame[first]
        name = STRINGS[ROWS[at + _TAIL_FIELD]]
        try:
            text = bytes(frame[first + 1 : first + 1 + n]).decode("utf-8")
        except UnicodeError:
            return _fail(out, m.ERR_OUT_OF_RANGE, name + " is not UTF-8")
        if n > ROWS[at + _TAIL_HIGH]:
            return _fail(out, m.ERR_OUT_OF_RANGE,
                         "%s longer than %d bytes" % (name, ROWS[at + _TAIL_HIGH]))
        values = values + (text,)
    if n_checks and _check(out, at + _CHECKS, n_checks, values):
        return out.error
    out.values = values
    return 0


def _fail(out, code, reason):
    out.error = code
    out.reason = reason
    return code


def _utf8_prefix(data, limit):
    """At most `limit` bytes of UTF-8 `data`, cut at a character boundary."""
    if len(data) <= limit:
        return data
    while limit and data[limit] & 0xC0 == 0x80:  # a continuation byte: back off
        limit -= 1
    return data[:limit]


class Encoder:
    """Builds wire bytes (COBS-encoded, delimited) into its own preallocated buffers."""

    def __init__(self):
        self.frame = bytearray(m.MAX_FRAME)
        self.wire = bytearray(framing.MAX_WIRE)
        self.wire_mv = memoryview(self.wire)

    def frame_bytes(self, mtype, seq, values):
        """Pack header + payload + CRC into self.frame; return the frame length."""
        at = AT[mtype]
        buf = self.frame
        struct.pack_into(m.HEADER_FORMAT, buf, 0, m.VERSION, mtype, 0, seq)
        n_fixed = ROWS[at + _N_FIXED]
        tail_kind = ROWS[at + _TAIL]
        if n_fixed:
            fmt = STRINGS[ROWS[at + _FMT]]
            if tail_kind:
                struct.pack_into(fmt, buf, m.HEADER_SIZE, *values[:n_fixed])
            else:
                struct.pack_into(fmt, buf, m.HEADER_SIZE, *values)
        end = m.HEADER_SIZE + ROWS[at + _SIZE]
        if tail_kind == _TAIL_LIST:
            items = values[-1]
            buf[end] = len(items)
            end += 1
            item_fmt = STRINGS[ROWS[at + _ITEM_FMT]]
            item_size = ROWS[at + _ITEM_SIZE]
            for item in items:
                struct.pack_into(item_fmt, buf, end, *item)
                end += item_size
        elif tail_kind == _TAIL_STR:
            text = _utf8_prefix(values[-1].encode("utf-8"), ROWS[at + _TAIL_HIGH])
            buf[end] = len(text)
            buf[end + 1 : end + 1 + len(text)] = text
            end += 1 + len(text)
        struct.pack_into("<I", buf, end, binascii.crc32(memoryview(buf)[:end]))
        return end + m.CRC_SIZE

    def encode(self, mtype, seq, values):
        """Wire bytes for a message, as a memoryview into self.wire (valid until next call)."""
        n = self.frame_bytes(mtype, seq, values)
        w = framing.cobs_encode(self.frame, n, self.wire)
        return self.wire_mv[:w]
