"""The virtual clock: real time x N, as fast as the firmware's deadlines allow, or paused
(manual: time moves only when the rig says advance)."""

from __future__ import annotations

import os
import select
import threading
import time
from typing import Protocol

MANUAL = 0.0
MAX = float("inf")


class Wire(Protocol):
    """A port the firmware's thread may read itself while it waits for input (ports.PtyPort)."""

    def fileno(self) -> int: ...

    def pump(self) -> bool:
        """Move the bytes waiting on the port to the link (called without the lock)."""
        ...


class SimCondition(threading.Condition):
    """The simulator's lock and condition, plus a wait for the firmware that also ends when a
    wire (the pty) has input: select() on the wire and on a pipe that notify() writes to. A
    request wakes both the firmware and the wire's own reader thread; whichever gets to it
    first reads it (a read by the other thread wakes the firmware through the pipe).
    Measured: 5 to 15 us less per round trip than a hand-off through the condition alone."""

    def __init__(self) -> None:
        super().__init__()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selecting = False  # a thread is in wait_or_read: a notify must wake it too

    def notify(self, n: int = 1) -> None:
        super().notify(n)
        self._wake()

    def notify_all(self) -> None:
        super().notify_all()
        self._wake()

    def _wake(self) -> None:
        if self._selecting:
            self._selecting = False
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:
                pass  # the pipe is full of wakes already

    def wait_or_read(self, wire: Wire, timeout: float | None) -> bool:
        """wait(timeout) that also ends when `wire` has input, which it reads. For one thread
        (the firmware's), holding the lock once. False if the time ran out."""
        self._selecting = True
        self.release()
        try:
            ready = select.select([wire, self._wake_r], [], [], timeout)[0]
            self._selecting = False  # a notify from here on is seen by the caller's recheck
            if self._wake_r in ready:
                os.read(self._wake_r, 64)
            if wire in ready:
                wire.pump()
        finally:
            self._selecting = False
            self.acquire()
        return bool(ready)


class VirtualClock:
    """Virtual milliseconds since boot of the simulator. All methods expect `cond` held,
    except now_ms() which takes it."""

    def __init__(self, cond: SimCondition, speed: float = MANUAL):
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

    def wait(self, deadline: int | None, ready, wire: Wire | None = None) -> bool:
        """Block the firmware until ready() or the deadline (virtual ms; None: no deadline).
        Returns ready(). wire: read it while blocked (the firmware waits for its input)."""
        while True:
            if ready():
                return True
            now = self.now_locked()
            if deadline is not None and now >= deadline:
                return False
            if self.speed == MAX:
                if deadline is None:
                    self._block(None, wire)
                else:
                    self._set(deadline)
            elif self.speed > 0:
                real = None if deadline is None else (deadline - now) / 1000 / self.speed
                if not self._block(real, wire) and deadline is not None:
                    self._set(deadline)
            elif self.target > now:
                self._set(self.target if deadline is None else min(self.target, deadline))
            else:
                self.idle = True
                self.cond.notify_all()
                self._block(None, wire)
                self.idle = False

    def _block(self, timeout: float | None, wire: Wire | None) -> bool:
        if wire is None:
            return self.cond.wait(timeout)
        return self.cond.wait_or_read(wire, timeout)

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
