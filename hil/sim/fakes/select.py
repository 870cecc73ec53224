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
        self._sim = _s.sim()  # the board this poll object was made on
        self._objs: list[object] = []
        self._ready: tuple = ()  # what a poll returns when input is waiting

    def register(self, obj: object, mask: int = POLLIN) -> None:
        self._objs.append(obj)
        self._ready = ((self._objs[0], POLLIN),)

    def unregister(self, obj: object) -> None:
        self._objs.remove(obj)
        self._ready = ((self._objs[0], POLLIN),) if self._objs else ()

    def modify(self, obj: object, mask: int) -> None:
        pass

    def ipoll(self, timeout: int = -1, flags: int = 0):
        sim = self._sim
        # The firmware polls before each byte it reads: be quick.
        if timeout == 0 and not sim.reset_requested and sim.plant.powered:
            return self._ready if sim.link.rx else ()
        with sim.cond:
            sim.check_supply()
            clock = sim.clock
            deadline = None if timeout < 0 else clock.now_locked() + timeout
            if (deadline is not None and not sim.hung and not sim.link.rx
                    and not sim.reset_requested and sim.powered and clock.jump(deadline)):
                return ()
            if sim.hung:  # the loop stopped turning: only the watchdog (or a reset) ends this
                # Only here does the simulated watchdog bite: at x N speeds virtual time also
                # runs while the firmware computes (a Pico computes a turn in a few ms, the
                # simulator's CPython x N can make that seconds), so a slow turn here says
                # nothing about the board; a loop that stops turning does.
                bark = sim.wdt_deadline()
                clock.wait(bark, lambda: sim.reset_requested or not sim.powered)
                if sim.powered and not sim.reset_requested and bark is not None:
                    raise _machine.Reset(_machine.WDT_RESET)  # not fed in time
                ready = False
            else:
                ready = clock.wait(deadline, lambda: bool(sim.link.rx) or sim.reset_requested
                                   or not sim.powered, sim.link.wire)
            if not sim.powered:
                raise _s.PowerLoss()
            if sim.reset_requested:
                raise _machine.Reset()  # the reset button, pressed while the firmware waits
        return self._ready if ready else ()

    poll = ipoll


def poll() -> _Poll:
    return _Poll()
