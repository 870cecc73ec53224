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
        self._ready: tuple = ()

    def register(self, obj: object, mask: int = POLLIN) -> None:
        self._objs.append(obj)
        self._ready = ((self._objs[0], POLLIN),)

    def unregister(self, obj: object) -> None:
        self._objs.remove(obj)

    def modify(self, obj: object, mask: int) -> None:
        pass

    def ipoll(self, timeout: int = -1, flags: int = 0):
        sim = _s.sim()
        if timeout == 0 and not sim.reset_requested:  # the firmware's per-byte check: be quick
            return self._ready if sim.link.rx and self._objs else ()
        with sim.cond:
            clock = sim.clock
            deadline = None if timeout < 0 else clock.now_locked() + timeout
            bark = sim.wdt_deadline()  # when the watchdog resets the board; None: not started
            if sim.hung:  # the loop stopped turning: only a reset ends this
                ready = clock.wait(bark, lambda: sim.reset_requested)
            else:
                if bark is not None and (deadline is None or bark < deadline):
                    deadline = bark
                ready = clock.wait(deadline, lambda: bool(sim.link.rx) or sim.reset_requested)
            if sim.reset_requested:
                raise _machine.Reset()  # the reset button, pressed while the firmware waits
            if bark is not None and clock.now_locked() >= bark:
                raise _machine.Reset(_machine.WDT_RESET)  # not fed in time
        return ((self._objs[0], POLLIN),) if ready and self._objs else ()

    poll = ipoll


def poll() -> _Poll:
    return _Poll()
