# The event log ring (firmware/core/eventlog.py). Board-safe: CPython and MicroPython.

from firmware.core.eventlog import EventLog


def test_events_read_back_in_order():
    log = EventLog(4)
    for i in range(3):
        log.log(1000 + i, 2, 2, i * 10, -i)
    assert log.total == 3 and log.oldest() == 0, "3 logged, none dropped"
    assert log.get(1) == (1001, 2, 2, 10, -1), "event 1: %r" % (log.get(1),)
    assert log.get(3) is None, "not logged yet"


def test_oldest_is_dropped_first():
    log = EventLog(4)
    for i in range(10):
        log.log(i, 1, 0, i, 0)
    assert log.total == 10 and log.oldest() == 6, "keeps the last 4: %d" % log.oldest()
    assert log.get(5) is None, "dropped"
    assert [log.get(n)[3] for n in range(6, 10)] == [6, 7, 8, 9], "the newest four, in order"


def test_extreme_details_survive():
    log = EventLog(2)
    log.log(4102444800, 255, 3, -0x80000000, 0x7FFFFFFF)
    assert log.get(0) == (4102444800, 255, 3, -0x80000000, 0x7FFFFFFF), "%r" % (log.get(0),)
