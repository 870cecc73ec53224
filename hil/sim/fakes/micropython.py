"""MicroPython's micropython module: what the firmware calls, recorded where useful."""

from __future__ import annotations

from hil.sim import fakes_state as _s


def const(x):
    return x


def kbd_intr(ch: int) -> None:
    _s.sim().kbd_intr = ch
