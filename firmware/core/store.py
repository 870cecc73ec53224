# Records that survive a power cut at any instant: each record has two slot files, written
# alternately, each as MAGIC | sequence u32 | length u16 | body | CRC-32 of all before it.
# A write cut short leaves a slot whose CRC fails; the other slot still holds the previous
# record, so loading always finds the newest record that was written whole.

import binascii
import struct

MAGIC = b"IPS1"
HEAD = "<4sIH"
HEAD_SIZE = 10


class FileFS:
    """The flash filesystem (LittleFS on the Pico; the simulator's flash folder)."""

    def read(self, name):
        try:
            with open(name, "rb") as f:
                return f.read()
        except OSError:
            return None

    def write(self, name, data):
        with open(name, "wb") as f:
            f.write(data)


class MemoryFS:
    """Files in a dict: for tests, and for fakes of a board."""

    def __init__(self):
        self.files = {}

    def read(self, name):
        return self.files.get(name)

    def write(self, name, data):
        self.files[name] = bytes(data)


class Store:
    def __init__(self, fs, name):
        self.fs = fs
        self.names = (name + ".a", name + ".b")
        self.seq = 0  # of the newest record found or written
        self.writes = 0
        self.corrupt = 0  # slot files found that do not hold a whole record (last load)

    def _check(self, raw):
        """(seq, body) of a whole record, or None."""
        if raw is None or len(raw) < HEAD_SIZE + 4:
            return None
        magic, seq, n = struct.unpack_from(HEAD, raw, 0)
        if magic != MAGIC or len(raw) != HEAD_SIZE + n + 4:
            return None
        if binascii.crc32(memoryview(raw)[: HEAD_SIZE + n]) != struct.unpack_from(
                "<I", raw, HEAD_SIZE + n)[0]:
            return None
        return seq, bytes(raw[HEAD_SIZE : HEAD_SIZE + n])

    def load(self):
        """The newest whole record's body, or None if there is none."""
        best = None
        self.corrupt = 0
        for name in self.names:
            raw = self.fs.read(name)
            got = self._check(raw)
            if got is None and raw is not None:
                self.corrupt += 1  # a write cut short, or the flash went bad
            if got is not None and (best is None or got[0] > best[0]):
                best = got
        if best is None:
            return None
        self.seq = best[0]
        return best[1]

    def save(self, body):
        """Write body as the next record, into the slot that does not hold the newest."""
        seq = self.seq + 1
        head = struct.pack(HEAD, MAGIC, seq, len(body))
        rec = head + body
        rec += struct.pack("<I", binascii.crc32(rec))
        self.fs.write(self.names[seq % 2], rec)
        self.seq = seq  # only once written: a failed write must not aim the next one at the
        # slot that holds the newest whole record
        self.writes += 1
