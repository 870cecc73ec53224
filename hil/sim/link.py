"""The virtual serial link between the firmware's USB CDC (stdin/stdout) and the outside
(a pty and TCP clients, any number at once). One wire in reality; here each answer goes to
the client whose request carried its sequence number, and frames with sequence number 0
(events, errors about unreadable frames) go to every client."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from cobs import cobs

if TYPE_CHECKING:
    from hil.sim.clock import Wire
    from hil.sim.lossy import LossyLink

Sink = Callable[[bytes], None]
RX_LIMIT = 64 * 1024
OWNERS_KEPT = 1024  # sequence numbers remembered per link


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
        self._partial: dict[int, bytearray] = {}  # each client's bytes since its last 0x00
        self._owner: dict[int, int] = {}  # sequence number -> the client that sent it
        self._next_id = 0
        self.stdin = _Stream(_In(self))
        self.stdout = _Stream(_Out(self))
        self.bytes_in = 0
        self.rx_dropped = 0
        self.bytes_out = 0
        # Called with each frame the firmware sends, COBS-decoded (b"" if it cannot be; cond
        # held): the simulator's hands on the plant where a person's would be (simulator.py:
        # a refill fills the syringe).
        self.on_frame: Callable[[bytes], None] | None = None
        self.lossy: LossyLink | None = None  # faults on the wire (hil/sim/lossy.py)
        self.wire: Wire | None = None  # read by the firmware as it waits (ports.PtyPort)

    # -- the outside ----------------------------------------------------------------------

    def attach(self, sink: Sink) -> int:
        with self.cond:
            self._next_id += 1
            self._sinks[self._next_id] = sink
            self._partial[self._next_id] = bytearray()
            return self._next_id

    def detach(self, sink_id: int) -> None:
        with self.cond:
            self._sinks.pop(sink_id, None)
            self._partial.pop(sink_id, None)

    def receive(self, sink_id: int, data: bytes) -> None:
        """Bytes from a client towards the firmware. Past RX_LIMIT waiting bytes the rest is
        dropped, as a UART or USB buffer would."""
        with self.cond:
            if self.lossy is not None:
                data = self.lossy.mangle(data, inbound=True)
            room = RX_LIMIT - len(self.rx)
            if room < len(data):
                self.rx_dropped += len(data) - max(room, 0)
                data = data[: max(room, 0)]
            self.rx += data
            self.bytes_in += len(data)
            self._note_requests(sink_id, data)
            self.cond.notify_all()

    def _note_requests(self, sink_id: int, data: bytes) -> None:
        """Remember which client sent each sequence number (cond held)."""
        partial = self._partial.setdefault(sink_id, bytearray())
        partial += data
        while (end := partial.find(0)) >= 0:
            seq = _seq(_decoded(bytes(partial[:end])))
            del partial[: end + 1]
            if seq:
                self._owner.pop(seq, None)
                self._owner[seq] = sink_id
                if len(self._owner) > OWNERS_KEPT:
                    del self._owner[next(iter(self._owner))]
        if len(partial) > RX_LIMIT:
            partial.clear()

    # -- the firmware ---------------------------------------------------------------------

    def readinto(self, buf) -> int:
        # No lock: the firmware is the only reader and receive() only appends, so taking
        # from the front is safe between appends (each bytearray operation is atomic).
        rx = self.rx
        if len(buf) == 1 and rx:  # the firmware reads a byte at a time: keep that quick
            buf[0] = rx[0]
            del rx[0]
            return 1
        n = min(len(buf), len(rx))
        buf[:n] = rx[:n]
        del rx[:n]
        return n

    def send(self, data: bytes) -> None:
        """A frame from the firmware (it writes one frame per call)."""
        frame = _decoded(data.rstrip(b"\x00"))
        with self.cond:
            self.bytes_out += len(data)
            if self.on_frame is not None:
                self.on_frame(frame)
            owner = self._owner.get(_seq(frame) or -1)
            if owner in self._sinks:
                targets = [self._sinks[owner]]
            else:
                targets = list(self._sinks.values())
            if self.lossy is not None:  # after on_frame: the pump did send the frame
                data = self.lossy.mangle(data, inbound=False)
        for sink in targets:
            sink(data)


def _decoded(block: bytes) -> bytes:
    """A COBS block decoded, or b"" if it cannot be."""
    try:
        return cobs.decode(block)
    except cobs.DecodeError:
        return b""


def _seq(frame: bytes) -> int:
    """The sequence number in a frame's header, or 0 if it has none."""
    return frame[3] | frame[4] << 8 if len(frame) >= 5 else 0
