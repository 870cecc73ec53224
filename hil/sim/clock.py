"""The virtual clock: real time x N, as fast as the firmware's deadlines allow, or paused
(manual: time moves only when the rig says advance)."""

from __future__ import annotations

import threading
import time

MANUAL = 0.0
MAX = float("inf")


class VirtualClock:
    """Virtual milliseconds since boot of the simulator. All methods expect `cond` held,
    except now_ms() which takes it."""

    def __init__(self, cond: threading.Condition, speed: float = MANUAL):
        self.cond = cond
        self.speed = speed
        self._now = 0
        self._real0 = time.monotonic()
        self._virt0 = 0
        self.target = 0  # manual mode: run until here
        self.idle = False  # firmware waiting, caught up with target, no input pending

    # -- reading --------------------------------------------------------------------------

    def now_ms(self) -> int:
        with self.cond:
            return self.now_locked()

    def now_locked(self) -> int:
        if 0 < self.speed < MAX:
            t = self._virt0 + int((time.monotonic() - self._real0) * self.speed * 1000)
            if t > self._now:
                self._now = t
        return self._now

    def _set(self, t: int) -> None:
        if t > self._now:
            self._now = t
            self._real0 = time.monotonic()
            self._virt0 = t

    # -- the firmware waits ---------------------------------------------------------------

    def consume(self, ms: int) -> None:
        """The firmware spent ms (sleep_ms): time moves on in every mode."""
        self._set(self.now_locked() + ms)
        self.target = max(self.target, self._now)

    def jump(self, deadline: int) -> bool:
        """Paused clock, deadline within what the rig asked for: time goes straight there
        (what wait() would do, without its loop: the simulator's hot path)."""
        if self.speed == MANUAL and self.target >= deadline:
            self._set(deadline)
            return True
        return False

    def wait(self, deadline: int | None, ready) -> bool:
        """Block the firmware until ready() or the deadline (virtual ms; None: no deadline).
        Returns ready()."""
        while True:
            if ready():
                return True
            now = self.now_locked()
            if deadline is not None and now >= deadline:
                return False
            if self.speed == MAX:
                if deadline is None:
                    self.cond.wait()
                else:
                    self._set(deadline)
            elif self.speed > 0:
                real = None if deadline is None else (deadline - now) / 1000 / self.speed
                if not self.cond.wait(real) and deadline is not None:
                    self._set(deadline)
            elif self.target > now:
                self._set(self.target if deadline is None else min(self.target, deadline))
            else:
                self.idle = True
                self.cond.notify_all()
                self.cond.wait()
                self.idle = False

    # -- the rig drives time (manual mode) ----------------------------------------------------

    def advance(self, ms: int, timeout: float = 600.0) -> int:
        """Run the firmware until `ms` more virtual ms have passed and it is idle again."""
        if self.speed != MANUAL:
            raise RuntimeError("advance needs a simulator started with --speed 0 (manual)")
        self.target = self.now_locked() + ms
        self.cond.notify_all()
        if not self.cond.wait_for(lambda: self.idle and self._now >= self.target, timeout):
            raise TimeoutError(f"firmware did not reach t={self.target} ms in {timeout} s")
        return self._now
