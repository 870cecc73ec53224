"""MicroPython's micropython module: what the firmware calls, recorded where useful."""

from __future__ import annotations

from hil.sim import fakes_state as _s


def const(x):
    return x


def kbd_intr(ch: int) -> None:
    _s.sim().kbd_intr = ch


def heap_lock() -> int:
    return 0


def heap_unlock() -> int:
    return 0


def alloc_emergency_exception_buf(size: int) -> None:
    pass


def mem_info(verbose: int = 0) -> None:
    pass


def schedule(func, arg) -> None:
    func(arg)


def native(f):
    return f


viper = native
