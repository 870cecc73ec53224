"""Where clients reach the simulated pump: a pty (like the Pico's /dev/ttyACM0) and a TCP
socket (pyserial's socket://host:port)."""

from __future__ import annotations

import errno
import os
import socket
import threading
import tty

from hil.sim.link import VirtualLink


class PtyPort:
    """Two threads read the pty: its own, always, and the firmware's while it waits for input
    (link.wire: clock.SimCondition.wait_or_read); a lock keeps the bytes in order."""

    def __init__(self, link: VirtualLink):
        self.link = link
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # bytes pass as they are: no echo, no CR/LF mapping
        self.path = os.ttyname(self._slave)
        os.set_blocking(self.master, False)
        self._reading = threading.Lock()  # one reader at a time: the bytes keep their order
        self._id = link.attach(self._write)
        link.wire = self
        threading.Thread(target=self._read_loop, name="pty", daemon=True).start()

    def fileno(self) -> int:
        return self.master

    def _write(self, data: bytes) -> None:
        try:
            os.write(self.master, data)
        except BlockingIOError:
            pass  # nobody reading and the pty buffer full: drop, as a USB CDC with no host

    def pump(self) -> bool:
        """Move what the pty holds to the link. False if the pty is unusable."""
        with self._reading:
            try:
                data = os.read(self.master, 4096)
            except BlockingIOError:
                return True  # the other reader was first
            except OSError as e:
                if e.errno == errno.EIO:  # no client has the pty open
                    return True
                self.link.wire = None
                return False
            if data:
                self.link.receive(self._id, data)
        return True

    def _read_loop(self) -> None:
        import select

        while True:
            select.select([self.master], [], [])
            if not self.pump():
                return


class TcpPort:
    """Accepts any number of clients; each is a talker on the shared link."""

    def __init__(self, link: VirtualLink, host: str = "127.0.0.1", port: int = 0):
        self.link = link
        self.server = socket.create_server((host, port), reuse_port=False)
        self.host, self.port = self.server.getsockname()[:2]
        self.url = f"socket://{self.host}:{self.port}"
        threading.Thread(target=self._accept_loop, name="tcp-accept", daemon=True).start()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        def write(data: bytes) -> None:
            # Called on the firmware's thread: never block it. A client that does not read
            # loses output, as a USB CDC host that stops reading does.
            try:
                conn.send(data, socket.MSG_DONTWAIT)
            except OSError:
                pass

        sink = self.link.attach(write)
        try:
            while True:
                data = conn.recv(4096)
                if not data:
                    break
                self.link.receive(sink, data)
        except OSError:
            pass
        finally:
            self.link.detach(sink)
            conn.close()

    def close(self) -> None:
        self.server.close()
