"""MicroPython's time module on the virtual clock, with the real 2**30 ticks period so that
the firmware's wrap-around handling is exercised."""

from __future__ import annotations

from hil.sim import fakes_state as _s

TICKS_PERIOD = 1 << 30
_HALF = TICKS_PERIOD // 2


# A read of the clock needs no lock (the firmware's thread is the only one that moves it on
# its own); this runs several times a turn.
def ticks_ms() -> int:
    return _s.sim().clock.now_locked() % TICKS_PERIOD


def ticks_us() -> int:
    return (_s.sim().clock.now_locked() * 1000) % TICKS_PERIOD


def ticks_add(ticks: int, delta: int) -> int:
    return (ticks + delta) % TICKS_PERIOD


def ticks_diff(a: int, b: int) -> int:
    return ((a - b + _HALF) % TICKS_PERIOD) - _HALF


def time() -> int:
    sim = _s.sim()
    return sim.epoch_s + sim.clock.now_locked() // 1000


def sleep_ms(ms: int) -> None:
    sim = _s.sim()
    with sim.cond:
        sim.clock.consume(int(ms))


def sleep(s: float) -> None:
    sleep_ms(int(s * 1000))


def sleep_us(us: int) -> None:
    # Sub-millisecond pauses (step pulses) are below the clock's resolution.
    if us >= 1000:
        sleep_ms(us // 1000)
