# Board-side codec: struct layouts built from the message table, frame validation in the
# order the error codes are documented, and encoding into preallocated buffers.

import binascii
import struct

from protocol import framing
from protocol import messages as m


class Layout:
    """A message's wire layout: fixed fields in one struct format, then an optional tail:
    a string, or a list of items that each have a fixed struct format."""

    def __init__(self, row):
        self.type = row[0]
        self.name = row[1]
        self.kind = row[2]
        self.fields = row[3]
        fmt = "<"
        self.has_str = False
        self.has_list = False
        for i, f in enumerate(self.fields):
            if f[1] in ("str", "list"):
                if i != len(self.fields) - 1:
                    raise ValueError("str or list field must be last: " + self.name)
                self.has_str = f[1] == "str"
                self.has_list = f[1] == "list"
            else:
                fmt += f[1]
        self.fmt = fmt
        self.fixed_size = struct.calcsize(fmt)
        self.has_tail = self.has_str or self.has_list
        self.n_fixed = len(self.fields) - (1 if self.has_tail else 0)
        if self.has_list:
            self.item_fields = self.fields[-1][4]
            self.item_fmt = "<" + "".join(f[1] for f in self.item_fields)
            self.item_size = struct.calcsize(self.item_fmt)


LAYOUTS = {}
for _row in m.MESSAGES:
    LAYOUTS[_row[0]] = Layout(_row)


def check_range(fields, n, values):
    """Index of the first of the first n integer fields outside its range, or -1."""
    for i in range(n):
        f = fields[i]
        lo = f[2]
        if lo is not None and not lo <= values[i] <= f[3]:
            return i
    return -1


def _range_error(out, f, value):
    return _fail(out, m.ERR_OUT_OF_RANGE, "%s=%d outside %d..%d" % (f[0], value, f[2], f[3]))


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
    layout = LAYOUTS.get(mtype)
    if layout is None or layout.kind != expect:
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
    tail = size - layout.fixed_size - 1  # bytes after the tail's count byte
    if layout.has_str:
        ok = tail >= 0 and tail == frame[start + layout.fixed_size]
    elif layout.has_list:
        ok = tail >= 0 and tail == frame[start + layout.fixed_size] * layout.item_size
    else:
        ok = size == layout.fixed_size
    if not ok:
        return _fail(out, m.ERR_BAD_LENGTH, "%s payload of %d bytes" % (layout.name, size))
    values = struct.unpack_from(layout.fmt, frame, start)
    if layout.has_list:
        # Lists come only with rare programming requests: a tuple per item is fine there.
        at = start + layout.fixed_size
        n = frame[at]
        f = layout.fields[-1]
        if not f[2] <= n <= f[3]:
            return _fail(out, m.ERR_OUT_OF_RANGE, "%d %s; allowed %d..%d" % (n, f[0], f[2], f[3]))
        items = []
        for k in range(n):
            item = struct.unpack_from(layout.item_fmt, frame, at + 1 + k * layout.item_size)
            bad = check_range(layout.item_fields, len(item), item)
            if bad >= 0:
                return _range_error(out, layout.item_fields[bad], item[bad])
            items.append(item)
        values = values + (tuple(items),)
    if layout.has_str:
        at = start + layout.fixed_size
        n = frame[at]
        f = layout.fields[-1]
        try:
            text = bytes(frame[at + 1 : at + 1 + n]).decode("utf-8")
        except UnicodeError:
            return _fail(out, m.ERR_OUT_OF_RANGE, f[0] + " is not UTF-8")
        if n > f[3]:
            return _fail(out, m.ERR_OUT_OF_RANGE, "%s longer than %d bytes" % (f[0], f[3]))
        values = values + (text,)
    bad = check_range(layout.fields, layout.n_fixed, values)
    if bad >= 0:
        return _range_error(out, layout.fields[bad], values[bad])
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
        layout = LAYOUTS[mtype]
        buf = self.frame
        struct.pack_into(m.HEADER_FORMAT, buf, 0, m.VERSION, mtype, 0, seq)
        at = m.HEADER_SIZE
        if layout.n_fixed:
            if layout.has_tail:
                struct.pack_into(layout.fmt, buf, at, *values[: layout.n_fixed])
            else:
                struct.pack_into(layout.fmt, buf, at, *values)
        at += layout.fixed_size
        if layout.has_list:
            items = values[-1]
            buf[at] = len(items)
            at += 1
            for item in items:
                struct.pack_into(layout.item_fmt, buf, at, *item)
                at += layout.item_size
        if layout.has_str:
            text = _utf8_prefix(values[-1].encode("utf-8"), layout.fields[-1][3])
            buf[at] = len(text)
            buf[at + 1 : at + 1 + len(text)] = text
            at += 1 + len(text)
        struct.pack_into("<I", buf, at, binascii.crc32(memoryview(buf)[:at]))
        return at + m.CRC_SIZE

    def encode(self, mtype, seq, values):
        """Wire bytes for a message, as a memoryview into self.wire (valid until next call)."""
        n = self.frame_bytes(mtype, seq, values)
        w = framing.cobs_encode(self.frame, n, self.wire)
        return self.wire_mv[:w]
