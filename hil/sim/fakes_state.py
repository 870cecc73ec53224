"""Which simulator the fake MicroPython modules act on (one per process)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hil.sim.simulator import Simulator

_current: Simulator | None = None


class PowerLoss(BaseException):
    """The board lost power (the rig cut it, a brown-out, or a cut armed for a flash write):
    raised where the firmware next touches the simulated hardware; nothing after it runs."""


def bind(sim: Simulator) -> None:
    global _current
    _current = sim


def sim() -> Simulator:
    if _current is None:
        raise RuntimeError("no simulator is running in this process")
    return _current
