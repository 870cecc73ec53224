"""The rp2 module: the BOOTSEL button (the way back to the REPL at boot), and PIO as far as
the firmware uses it: the step-pulse program (firmware/pio.py), whose pulses the fake state
machine puts on the plant's STEP pin."""

from __future__ import annotations

from hil.sim import fakes_state as _s


def bootsel_button() -> int:
    return 1 if _s.sim().bootsel_held else 0


class PIO:
    OUT_LOW = 0
    OUT_HIGH = 1
    IN_LOW = 0
    IN_HIGH = 1


def asm_pio(**_kw):
    """The program is not assembled here: StateMachine knows what it does."""

    def keep(program):
        return program

    return keep


class StateMachine:
    """firmware/pio.py's step_pulses: n - 1 put into the FIFO makes n pulses on the set pin.
    (The simulator's virtual time does not run while they are made: a PIO program takes
    no CPU time from the loop, which is the point of it.)"""

    def __init__(self, id: int, program=None, freq: int = 0, set_base=None, **_kw) -> None:
        self.program = program
        self.pin = set_base.id if set_base is not None else None
        self.running = False

    def active(self, on: int | None = None):
        if on is None:
            return 1 if self.running else 0
        self.running = bool(on)
        return None

    def put(self, value: int, shift: int = 0) -> None:
        if not self.running or self.pin is None:
            return
        plant = _s.sim().plant
        for _ in range((value & 0xFFFFFFFF) + 1):
            plant.pin_written(self.pin, 1)
            plant.pin_written(self.pin, 0)
