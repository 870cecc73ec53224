# MicroPython only (tests/board/conftest.py keeps it from CPython, whose ints are all heap
# objects): the firmware's steady state, between commands, allocates nothing, so the garbage
# collector can never stall delivery. Each steady state runs under micropython.heap_lock(): any
# allocation raises MemoryError there, and the test fails with the line that allocated.
# Checked: Therapy.advance() and Loop.once() (with fake board objects and a fake clock) while
# the basal rate runs, while a bolus runs on top of it, and while a flex program crosses from
# one step of its day to the next. The lane checks that this file ran on the MicroPython VM.
# Small ints are 31-bit here: the pump clock (~1.8e9 s) is a big int, uptime seconds are not.

import gc

import micropython
from therapy_kit import (
    CAPACITY_NL,
    FakeBoard,
    FakeClock,
    ready,
    running,
)

from firmware import config
from protocol import framing
from protocol import messages as m


def _locked(fn, times):
    """Call fn() `times` times with the heap locked: True if nothing allocated."""
    fn()  # warm up: first calls may create attributes or caches
    gc.collect()
    micropython.heap_lock()
    try:
        for _ in range(times):
            fn()
        ok = True
    except MemoryError:  # no traceback: it cannot be recorded with the heap locked
        ok = False
    finally:
        micropython.heap_unlock()
    return ok


def _allocated_by(fn, times):
    """Bytes allocated by `times` calls of fn (the heap unlocked)."""
    fn()
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        for _ in range(times):
            fn()
        return gc.mem_alloc() - before
    finally:
        gc.enable()


def _steady(build, times, what):
    """build() -> (subject, tick) in a fresh state. Runs `times` ticks under heap_lock; if
    that allocates, runs them again on a fresh subject, heap unlocked, to say how much.
    Returns the subject that ran locked."""
    subject, tick = build()
    if _locked(tick, times):
        return subject
    _, tick = build()
    grew = _allocated_by(tick, times)
    raise AssertionError("%s allocated (MemoryError under heap_lock; %d bytes in %d ticks "
                         "unlocked)" % (what, grew, times))


# -- the therapy engine ----------------------------------------------------------------------


def _ticking(t, chunk_ms):
    def tick():
        t.advance(chunk_ms)  # a loop wake: steps now and then, buckets rolling
        t.pump.ms_until_next()
        t.ms_until_event()

    return tick


def test_therapy_delivering_allocates_nothing():
    def build():
        t = running(412_500)  # a step every 26.2 s
        return t, _ticking(t, 997)

    t = _steady(build, 20_000, "Therapy.advance() delivering")
    assert t.pump.delivered_steps > 700, "steps were made: %d" % t.pump.delivered_steps


def test_therapy_with_a_bolus_running_allocates_nothing():
    def build():
        t = running(412_500)
        t.role = m.ROLE_CLINICIAN
        t.bolus(1_000_000, 86_400)  # 8000 steps over a day, on top of the basal rate
        t.role = 0
        return t, _ticking(t, 997)

    t = _steady(build, 20_000, "Therapy.advance() with a bolus running")
    assert t.pump.bolus_done_steps > 1800 and t.pump.bolus_steps, "the bolus ran: %d" % (
        t.pump.bolus_done_steps)


# CLOCK0 is 08:00 UTC: a flex day whose second step starts at 08:10 (minute 490).
FLEX = (0, 0, ((0, 100_000), (490, 150_000)))
FLEX_DAILY_NG = (100_000 * 490 + 150_000 * 950 + 1439) // 1440


def test_therapy_crossing_a_flex_step_allocates_nothing():
    def build():
        t = ready()
        t.role = m.ROLE_CLINICIAN
        t.set_flex(*FLEX)
        t.role = 0
        assert t.change_ms == 600_000, "the next step in 10 min: %d ms" % t.change_ms
        return t, _ticking(t, 997)

    t = _steady(build, 1000, "Therapy.advance() crossing into a flex day's next step")
    assert t.daily_ng == FLEX_DAILY_NG, "the day's dose: %d" % t.daily_ng
    assert t.pump.basal_nl_day == 300_000, "the second step runs: %d" % t.pump.basal_nl_day


# -- the loop --------------------------------------------------------------------------------


def _ask(lp, mtype, values):
    rtype, out = lp.dispatcher.handle(mtype, values, m.ROLE_CLINICIAN)
    assert rtype == mtype | 0x80, "0x%02x answered %r" % (mtype, out)
    return out


def _with_loop(program, check):
    """A Loop on fake board objects and a fake clock, set up as a host would (profile, refill,
    then program(loop)); check(loop, board) runs with the fakes in place."""
    from firmware import loop as loop_mod

    saved = loop_mod.time
    clock = FakeClock()
    loop_mod.time = clock
    try:
        board = FakeBoard(clock=clock)
        lp = loop_mod.Loop(board)
        _ask(lp, m.SET_PROFILE, (m.ORIGIN_SPINAL, 40, m.PHASE_TITRATION, 1_500_000, 200_000, 0, 0))
        _ask(lp, m.REFILL_BEGIN, ())
        _ask(lp, m.REFILL_COMMIT, (0, CAPACITY_NL, m.DRUG_BACLOFEN, 500, 500, 0))
        program(lp)
        for _ in range(3):
            lp.once()
        # The flush to flash every config.FLUSH_S opens files, which allocates on any VM: it
        # is a turn of its own every 10 min, not the steady state measured here.
        lp.flush_due = 1 << 29
        check(lp, board)
    finally:
        loop_mod.time = saved


def test_loop_delivering_allocates_nothing():
    def check(lp, board):
        assert lp.pump.max_catch_up == config.MAX_CATCH_UP_STEPS, "the firmware's own pump"
        if not _locked(lp.once, 3000):
            _with_loop(program, lambda lp2, b2: _fail_with_bytes(lp2, 3000, "delivering"))
        assert board.stepper.steps > 300, "the motor stepped: %d" % board.stepper.steps
        assert board.stepper.steps == lp.pump.delivered_steps, "every step made"

    def program(lp):
        _ask(lp, m.SET_CONTINUOUS, (412_500, 0))

    _with_loop(program, check)


def test_loop_with_a_bolus_running_allocates_nothing():
    def program(lp):
        _ask(lp, m.SET_CONTINUOUS, (412_500, 0))
        _ask(lp, m.BOLUS, (1_000_000, 86_400))

    def check(lp, board):
        if not _locked(lp.once, 3000):
            _with_loop(program, lambda lp2, b2: _fail_with_bytes(lp2, 3000,
                                                                 "with a bolus running"))
        assert lp.pump.bolus_done_steps > 300 and lp.pump.bolus_steps, "the bolus ran: %d" % (
            lp.pump.bolus_done_steps)

    _with_loop(program, check)


def test_loop_crossing_a_flex_step_allocates_nothing():
    def program(lp):
        _ask(lp, m.SET_FLEX, FLEX)

    def check(lp, board):
        assert lp.pump.basal_nl_day == 200_000, "still in the first step"
        if not _locked(lp.once, 200):
            _with_loop(program, lambda lp2, b2: _fail_with_bytes(
                lp2, 200, "crossing into a flex day's next step"))
        assert lp.pump.basal_nl_day == 300_000, "the second step runs"

    _with_loop(program, check)


def _fail_with_bytes(lp, times, what):
    grew = _allocated_by(lp.once, times)
    raise AssertionError("Loop.once() %s allocated (MemoryError under heap_lock; %d bytes in "
                         "%d turns unlocked)" % (what, grew, times))


# -- the link --------------------------------------------------------------------------------


def test_idle_frame_reader_allocates_nothing():
    r = framing.FrameReader()
    noise = (0x11, 0x22, 0x33)

    def feed():
        for b in noise:
            r.push(b)

    grew = _allocated_by(feed, 10)  # bytes between frames are stored, not allocated
    assert grew == 0, "the frame reader allocated %d bytes" % grew
    assert r.n == 33, "the bytes are held in the preallocated buffer: %d" % r.n
