# Dose delivered in the last 24 h: a ring of quarter-hour buckets of ng, the current one and
# the 96 before it, so the sum covers the last 24 h to 24 h 15 min (it never under-counts).
# Preallocated; rolling only stores ints.

BUCKET_S = 900
BUCKETS = 97  # 24 h of whole buckets, and the current one


class DoseWindow:
    def __init__(self):
        self.ng = [0] * BUCKETS
        self.total = 0  # sum of the buckets, kept as they change: a status read is O(1)
        self.pg = 0  # below 1 ng, carried into the next add
        self.at = 0  # uptime_s // BUCKET_S of the current bucket

    def roll(self, uptime_s):
        """Move to the bucket of uptime_s, emptying those passed over."""
        now = uptime_s // BUCKET_S
        if now - self.at >= BUCKETS:
            for i in range(BUCKETS):
                self.ng[i] = 0
            self.total = 0
        else:
            while self.at < now:
                self.at += 1
                self.total -= self.ng[self.at % BUCKETS]
                self.ng[self.at % BUCKETS] = 0
        self.at = now

    def add_pg(self, pg):
        pg += self.pg
        self.ng[self.at % BUCKETS] += pg // 1000
        self.total += pg // 1000
        self.pg = pg % 1000

    def total_ng(self):
        return self.total


class PeakWindow:
    """The highest level (a daily dose in force) in each quarter hour, the current one and the
    96 before it: peak() is the highest in force at any time in the last 24 h, however many
    changes there were."""

    def __init__(self):
        self.v = [0] * BUCKETS
        self.at = 0

    def roll(self, uptime_s, level):
        """Move to the bucket of uptime_s; the buckets passed over held `level` throughout."""
        now = uptime_s // BUCKET_S
        if now - self.at >= BUCKETS:
            for i in range(BUCKETS):
                self.v[i] = level
        else:
            while self.at < now:
                self.at += 1
                self.v[self.at % BUCKETS] = level
        self.at = now

    def note(self, level):
        i = self.at % BUCKETS
        if level > self.v[i]:
            self.v[i] = level

    def peak(self):
        top = 0
        for v in self.v:
            if v > top:
                top = v
        return top
