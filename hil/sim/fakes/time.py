"""MicroPython's time module on the virtual clock, with the real 2**30 ticks period so that
the firmware's wrap-around handling is exercised."""

from __future__ import annotations

from hil.sim import fakes_state as _s

TICKS_PERIOD = 1 << 30
_HALF = TICKS_PERIOD // 2


def ticks_ms() -> int:
    return _s.sim().clock.now_ms() % TICKS_PERIOD


def ticks_us() -> int:
    return (_s.sim().clock.now_ms() * 1000) % TICKS_PERIOD


def ticks_add(ticks: int, delta: int) -> int:
    return (ticks + delta) % TICKS_PERIOD


def ticks_diff(a: int, b: int) -> int:
    return ((a - b + _HALF) % TICKS_PERIOD) - _HALF


def time() -> int:
    return _s.sim().epoch_s + _s.sim().clock.now_ms() // 1000


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
