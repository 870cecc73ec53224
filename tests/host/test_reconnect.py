"""A port that goes away mid-command (a board that resets drops off USB, a TCP link that
breaks): PumpClient opens it again and the command in flight takes effect once; a port that
does not come back is a one-line PortLost, never a traceback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from hil.launcher import SimProcess
from hil.suites.kit import prepare
from host import errors
from host.client import PumpClient


class DroppingLink:
    """A TCP relay between a client and the simulator that can drop the client's connection
    (once, right after the pump answered, so the answer is lost) or go away for good."""

    def __init__(self, target: str):
        host, port = target.removeprefix("socket://").rsplit(":", 1)
        self.target = (host, int(port))
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.server.getsockname()[1]}"
        self.drop_next_answer = False
        self.dropped = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            pump = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, pump, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(pump, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, answers: bool) -> None:
        try:
            while data := src.recv(4096):
                if answers and self.drop_next_answer:
                    self.drop_next_answer = False
                    self.dropped += 1
                    break  # the answer is lost with the connection
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        try:
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        except OSError:
            pass
        self.server.close()


@pytest.fixture
def sim() -> Iterator[SimProcess]:
    with SimProcess("0") as proc:
        yield proc


def test_a_command_whose_answer_is_lost_with_the_port_runs_once(sim: SimProcess) -> None:
    link = DroppingLink(sim.url)
    with PumpClient(link.url, keys=sim.keys(), timeout=1.0) as pump:
        prepare(pump)
        before = len(pump.events())
        link.drop_next_answer = True
        program = pump.set_continuous("400")  # answered, the answer lost, the port reopened
        assert program.daily_dose_mcg == 400
        assert (link.dropped, pump.reconnects) == (1, 1)
        programs = [e for e in pump.events()[before:] if e.event == "program"]
        assert len(programs) == 1, "the retry was answered from the pump's cache, not rerun"
    link.close()


def test_a_port_that_does_not_come_back_is_lost(sim: SimProcess) -> None:
    link = DroppingLink(sim.url)
    pump = PumpClient(link.url, keys=sim.keys(), timeout=0.5, reconnect_s=1.0).open()
    prepare(pump)
    link.close()  # nothing listens any more: every reopen is refused
    link.drop_next_answer = True
    with pytest.raises(errors.PortLost, match="not back within 1 s"):
        pump.status()
    pump.close()
