"""MicroPython's select.poll on the virtual link and clock: waiting is where virtual time
passes."""

from __future__ import annotations

from hil.sim import fakes_state as _s
from hil.sim.fakes import machine as _machine

POLLIN = 1
POLLOUT = 4
POLLERR = 8
POLLHUP = 16


class _Poll:
    def __init__(self) -> None:
        self._objs: list[object] = []

    def register(self, obj: object, mask: int = POLLIN) -> None:
        self._objs.append(obj)

    def unregister(self, obj: object) -> None:
        self._objs.remove(obj)

    def modify(self, obj: object, mask: int) -> None:
        pass

    def ipoll(self, timeout: int = -1, flags: int = 0):
        sim = _s.sim()
        if timeout == 0 and not sim.reset_requested:  # the firmware's per-byte check: be quick
            return ((self._objs[0], POLLIN),) if sim.link.rx and self._objs else ()
        with sim.cond:
            deadline = None if timeout < 0 else sim.clock.now_locked() + timeout
            ready = sim.clock.wait(deadline, lambda: bool(sim.link.rx) or sim.reset_requested)
            if sim.reset_requested:
                raise _machine.Reset()  # the reset button, pressed while the firmware waits
        return ((self._objs[0], POLLIN),) if ready and self._objs else ()

    poll = ipoll


def poll() -> _Poll:
    return _Poll()
