# Active alarms, their acknowledgement and silencing, and the queue of ALARM events the loop
# sends to the host. Bit sets and a preallocated ring: nothing allocates.

from protocol import messages as m

QUEUE = 8  # raised/cleared changes waiting to be sent; the oldest is dropped if full
_LEVELS = [0] * (len(m.ALARMS) + 1)
for _id, _name, _level in m.ALARMS:
    _LEVELS[_id] = _level


class Alarms:
    def __init__(self):
        self.active = 0  # bit (alarm - 1)
        self.unacked = 0
        self.silenced_until = 0  # tones off until this time (the caller's clock; therapy.py:
        # the pump's own uptime), 0: not silenced
        self.queue = [0] * QUEUE  # alarm << 1 | active
        self.queued = 0
        self._head = 0

    def set(self, alarm, on):
        """Raise (on) or clear an alarm. Returns True if that changed anything."""
        bit = 1 << (alarm - 1)
        if bool(self.active & bit) == bool(on):
            return False
        if on:
            self.active |= bit
            self.unacked |= bit
        else:
            self.active &= ~bit
            self.unacked &= ~bit
        if self.queued == QUEUE:  # full: drop the oldest change (status still has it all)
            self._head = (self._head + 1) % QUEUE
            self.queued -= 1
        self.queue[(self._head + self.queued) % QUEUE] = alarm << 1 | (1 if on else 0)
        self.queued += 1
        return True

    def pop(self):
        """The oldest change not yet sent, as alarm << 1 | active; -1 if none."""
        if not self.queued:
            return -1
        v = self.queue[self._head]
        self._head = (self._head + 1) % QUEUE
        self.queued -= 1
        return v

    def ack(self, alarm):
        self.unacked &= ~(1 << (alarm - 1))

    def silence(self, until_s):
        self.silenced_until = until_s

    def tone(self, now_s):
        """What the buzzer sounds now: 2 two-tone (critical), 1 single tone, 0 quiet."""
        if now_s < self.silenced_until:
            return 0
        level = 0
        bits = self.unacked
        a = 1
        while bits:
            if bits & 1 and _LEVELS[a] > level:
                level = _LEVELS[a]
            bits >>= 1
            a += 1
        return level
