# The event log: every change, refusal and reset, in a fixed ring of preallocated records
# (the oldest is dropped first). Records are packed into the ring, which never grows.

import struct

RECORD = "<IBBBBiii"  # time_s, event, role, rule, type, a, b, c
RECORD_SIZE = 20


class EventLog:
    def __init__(self, capacity):
        self.capacity = capacity
        self.ring = bytearray(capacity * RECORD_SIZE)
        self.total = 0  # events ever logged; event n (0-based) sits at n % capacity

    def log(self, time_s, event, role, rule, type_, a, b, c):
        struct.pack_into(RECORD, self.ring, (self.total % self.capacity) * RECORD_SIZE,
                         time_s, event, role, rule, type_, a, b, c)
        self.total += 1

    def oldest(self):
        """Number of the oldest event still held."""
        return self.total - self.capacity if self.total > self.capacity else 0

    def get(self, n):
        """Event n as (time_s, event, role, rule, type, a, b, c), or None if dropped or not
        yet logged."""
        if n < self.oldest() or n >= self.total:
            return None
        return struct.unpack_from(RECORD, self.ring, (n % self.capacity) * RECORD_SIZE)

    def dump(self):
        return struct.pack("<I", self.total) + bytes(self.ring)

    def load(self, data):
        """Put back what dump() gave; False (and nothing changed) if it does not fit."""
        if len(data) != 4 + len(self.ring):
            return False
        self.total = struct.unpack_from("<I", data, 0)[0]
        self.ring[:] = data[4:]
        return True
