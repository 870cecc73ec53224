# Board-side framing: COBS with a 0x00 delimiter, and a byte-at-a-time frame reader that
# resynchronises on the next delimiter. Works into preallocated buffers (MicroPython-safe).

from protocol import messages as m

# Worst-case COBS size of a frame: one overhead byte per 254 data bytes, plus one; and the
# wire size with its 0x00 delimiter.
MAX_ENCODED = m.MAX_FRAME + m.MAX_FRAME // 254 + 1
MAX_WIRE = MAX_ENCODED + 1


def cobs_encode(src, n, dst):
    """COBS-encode src[:n] into dst, append the 0x00 delimiter; return the bytes written."""
    code_at = 0
    out = 1
    code = 1
    i = 0
    while i < n:
        b = src[i]
        i += 1
        if b == 0:
            dst[code_at] = code
            code_at = out
            out += 1
            code = 1
        else:
            dst[out] = b
            out += 1
            code += 1
            if code == 0xFF:
                dst[code_at] = code
                code_at = out
                out += 1
                code = 1
    dst[code_at] = code
    dst[out] = 0
    return out + 1


def cobs_decode(src, n, dst):
    """Decode the COBS block src[:n] (no delimiter) into dst; return its length, -1 if the
    encoding is invalid, or -2 if the decoded frame does not fit dst."""
    i = 0
    out = 0
    cap = len(dst)
    while i < n:
        code = src[i]
        if code == 0:
            return -1
        i += 1
        end = i + code - 1
        if end > n:
            return -1
        while i < end:
            b = src[i]
            if b == 0:
                return -1
            if out >= cap:
                return -2
            dst[out] = b
            out += 1
            i += 1
        if code < 0xFF and i < n:
            if out >= cap:
                return -2
            dst[out] = 0
            out += 1
    return out


# FrameReader.push results
NOTHING = 0
FRAME = 1
BAD_COBS = 2
OVERSIZE = 3


class FrameReader:
    """Collects bytes up to a 0x00 delimiter and COBS-decodes them into `frame`.
    push() returns NOTHING until a delimiter arrives, then FRAME (length in `length`),
    BAD_COBS or OVERSIZE. Empty frames (repeated delimiters) are ignored."""

    def __init__(self):
        self.raw = bytearray(MAX_ENCODED)
        self.frame = bytearray(m.MAX_FRAME)
        self.n = 0
        self.length = 0
        self.overflow = False

    def push(self, b):
        n = self.n  # (a local: a byte at a time, attribute look-ups add up)
        if b != 0:
            if n < MAX_ENCODED:
                self.raw[n] = b
                self.n = n + 1
            else:
                self.overflow = True
            return NOTHING
        self.n = 0
        if self.overflow:
            self.overflow = False
            return OVERSIZE
        if n == 0:
            return NOTHING
        length = cobs_decode(self.raw, n, self.frame)
        if length == -2:
            return OVERSIZE
        if length < 0:
            return BAD_COBS
        self.length = length
        return FRAME
