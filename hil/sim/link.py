"""The virtual serial link between the firmware's USB CDC (stdin/stdout) and the outside
(a pty and TCP clients). Output goes to whoever spoke last, or to every client if none has."""

from __future__ import annotations

import threading
from collections.abc import Callable

Sink = Callable[[bytes], None]
RX_LIMIT = 64 * 1024


class _In:
    def __init__(self, link: VirtualLink):
        self.link = link

    def readinto(self, buf) -> int:
        return self.link.readinto(buf)

    def read(self, n: int = 1) -> bytes:
        buf = bytearray(n)
        return bytes(buf[: self.link.readinto(buf)])


class _Out:
    def __init__(self, link: VirtualLink):
        self.link = link

    def write(self, data) -> int:
        self.link.send(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


class _Stream:
    """Stands in for sys.stdin / sys.stdout; the firmware uses their .buffer."""

    def __init__(self, buffer):
        self.buffer = buffer

    def write(self, text: str) -> int:  # a stray print() from firmware still reaches the link
        return self.buffer.write(text.encode())

    def flush(self) -> None:
        pass


class VirtualLink:
    def __init__(self, cond: threading.Condition):
        self.cond = cond
        self.rx = bytearray()
        self._sinks: dict[int, Sink] = {}
        self._talker: int | None = None
        self._next_id = 0
        self.stdin = _Stream(_In(self))
        self.stdout = _Stream(_Out(self))
        self.bytes_in = 0
        self.rx_dropped = 0
        self.bytes_out = 0

    # -- the outside ----------------------------------------------------------------------

    def attach(self, sink: Sink) -> int:
        with self.cond:
            self._next_id += 1
            self._sinks[self._next_id] = sink
            return self._next_id

    def detach(self, sink_id: int) -> None:
        with self.cond:
            self._sinks.pop(sink_id, None)
            if self._talker == sink_id:
                self._talker = None

    def receive(self, sink_id: int, data: bytes) -> None:
        """Bytes from a client towards the firmware. Past RX_LIMIT waiting bytes the rest is
        dropped, as a UART or USB buffer would."""
        with self.cond:
            room = RX_LIMIT - len(self.rx)
            if room < len(data):
                self.rx_dropped += len(data) - max(room, 0)
                data = data[: max(room, 0)]
            self.rx += data
            self.bytes_in += len(data)
            self._talker = sink_id
            self.cond.notify_all()

    # -- the firmware ---------------------------------------------------------------------

    def readinto(self, buf) -> int:
        # No lock: the firmware is the only reader and receive() only appends, so taking
        # from the front is safe between appends (each bytearray operation is atomic).
        n = min(len(buf), len(self.rx))
        buf[:n] = self.rx[:n]
        del self.rx[:n]
        return n

    def send(self, data: bytes) -> None:
        with self.cond:
            self.bytes_out += len(data)
            if self._talker in self._sinks:
                targets = [self._sinks[self._talker]]
            else:
                targets = list(self._sinks.values())
        for sink in targets:
            sink(data)
