# MicroPython only (tests/board/conftest.py keeps it from CPython, whose ints are all heap
# objects): the firmware's steady state, between commands, allocates nothing, so the garbage
# collector can never stall delivery. The lane checks that this file ran on the MicroPython VM.

import gc

from firmware import config
from firmware.core.pump import Pump
from protocol import framing


def _allocated_by(fn, times):
    fn()  # warm up: first calls may create attributes or caches
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        for _ in range(times):
            fn()
        return gc.mem_alloc() - before
    finally:
        gc.enable()


def test_delivery_steady_state_allocates_nothing():
    p = Pump(config.STEP_NL, config.RESERVOIR_NL, config.RESERVOIR_NL, config.MAX_RATE_NL_DAY,
             1798761600)
    p.set_continuous(412_500, 500)

    def tick():
        p.advance(997)  # about 26 loop wakes per step, steps falling now and then
        p.ms_until_next()

    grew = _allocated_by(tick, 20_000)
    assert grew == 0, "the delivery path allocated %d bytes in 20000 ticks" % grew
    assert p.delivered_steps > 700, "steps were made: %d" % p.delivered_steps


def test_idle_frame_reader_allocates_nothing():
    r = framing.FrameReader()
    noise = (0x11, 0x22, 0x33)

    def feed():
        for b in noise:
            r.push(b)

    grew = _allocated_by(feed, 10)  # bytes between frames are stored, not allocated
    assert grew == 0, "the frame reader allocated %d bytes" % grew
    assert r.n == 33, "the bytes are held in the preallocated buffer: %d" % r.n
