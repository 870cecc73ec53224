# The event log ring (firmware/core/eventlog.py): records (time_s, event, role, rule, type, a,
# b, c) in a preallocated ring, the oldest dropped first. Board-safe: CPython and MicroPython.

import struct

from firmware.core.eventlog import RECORD, RECORD_SIZE, EventLog
from protocol import messages as m


def test_record_layout():
    assert struct.calcsize(RECORD) == RECORD_SIZE == 20, "20 bytes a record"
    log = EventLog(5)
    assert len(log.ring) == 5 * RECORD_SIZE, "preallocated: %d bytes" % len(log.ring)
    for i in range(23):
        log.log(i, 1, 0, 0, 0, i, 0, 0)
    assert len(log.ring) == 5 * RECORD_SIZE, "the ring never grows"


def test_events_read_back_in_order():
    log = EventLog(4)
    assert log.total == 0 and log.oldest() == 0 and log.get(0) is None, "empty"
    for i in range(3):
        log.log(1000 + i, m.EV_PROGRAM, m.ROLE_CLINICIAN, i, 0x03, i * 10, -i, 7)
    assert log.total == 3 and log.oldest() == 0, "3 logged, none dropped"
    got = log.get(1)
    assert got == (1001, m.EV_PROGRAM, m.ROLE_CLINICIAN, 1, 0x03, 10, -1, 7), "%r" % (got,)
    assert log.get(3) is None, "not logged yet"
    assert [log.get(n)[5] for n in range(3)] == [0, 10, 20], "in order"


def test_oldest_is_dropped_first():
    log = EventLog(4)
    for i in range(10):
        log.log(i, m.EV_BOOT, 0, 0, 0, i, 0, 0)
    assert log.total == 10 and log.oldest() == 6, "keeps the last 4: %d" % log.oldest()
    assert log.get(5) is None, "dropped"
    assert log.get(10) is None, "not yet"
    assert [log.get(n)[5] for n in range(6, 10)] == [6, 7, 8, 9], "the newest four, in order"
    assert [log.get(n)[0] for n in range(6, 10)] == [6, 7, 8, 9], "with their times"


def test_every_field_survives_at_its_extremes():
    log = EventLog(2)
    first = (m.CLOCK_MAX, 255, 3, 255, 255, -0x80000000, 0x7FFFFFFF, -1)
    second = (0, 0, 0, 0, 0, 0, 0, 0)
    log.log(*first)
    log.log(*second)
    assert log.get(0) == first, "%r" % (log.get(0),)
    assert log.get(1) == second, "%r" % (log.get(1),)
    log.log(0xFFFFFFFF, 1, 1, len(m.RULES), m.SET_TAPER, 1, 2, 3)
    assert log.get(0) is None and log.get(2)[0] == 0xFFFFFFFF, "u32 time"
    assert log.get(1) == second, "its neighbour untouched"
