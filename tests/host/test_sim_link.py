"""The simulator's link with several clients: answers go to whoever asked."""

from __future__ import annotations

import threading

from hil.sim.link import VirtualLink
from protocol import host_codec as hc


def test_each_answer_goes_to_the_client_that_sent_its_sequence_number() -> None:
    link = VirtualLink(threading.Condition())
    got: dict[str, list[int]] = {"a": [], "b": []}
    a = link.attach(lambda data: got["a"].append(hc.decode(data).seq))
    b = link.attach(lambda data: got["b"].append(hc.decode(data).seq))
    link.receive(a, hc.encode("GET_INFO", 1001)[:4])  # a frame may arrive in pieces
    link.receive(b, hc.encode("GET_INFO", 2001))  # b asks while a's request is in flight
    link.receive(a, hc.encode("GET_INFO", 1001)[4:])
    link.send(hc.encode("STOPPED", 1001, {"reason": "clinician_decision"}))
    link.send(hc.encode("STOPPED", 2001, {"reason": "clinician_decision"}))
    link.send(hc.encode("TELEMETRY", 0, {"mode": "stopped", "rate_nl_day": 0,
                                         "bolus_left_ng": 0, "delivered_nl": 0,
                                         "delivered_ng": 0, "reservoir_nl": 0, "clock_s": 0,
                                         "alarms": [], "battery_mv": 0}))
    link.send(hc.encode("ALARM", 0, {"alarm": "low_reservoir", "active": 1, "time_s": 0,
                                     "alarms": ["low_reservoir"]}))
    assert got == {"a": [1001, 0, 0], "b": [2001, 0, 0]}  # events (seq 0) go to everyone


def test_at_speed_the_watchdog_does_not_bite_a_busy_but_healthy_loop() -> None:
    # At x N speeds virtual time also runs while CPython computes a turn of the firmware; the
    # simulated watchdog must not take that for a hang (make demo once reset every ~20 min).
    import time

    from hil.launcher import SimProcess
    from hil.suites.kit import prepare

    with SimProcess("8640") as sim:
        with sim.client() as pump:
            prepare(pump)
            pump.set_continuous("400")
            for _ in range(40):  # about a simulated day of busy requests
                pump.status()
                time.sleep(0.2)
        rig = sim.rig()
        try:
            boot = rig.boot()
        finally:
            rig.close()
    assert (boot["boots"], boot["reset_cause"]) == (1, 1), boot


def test_the_firmware_waits_for_input_and_for_notifications_at_once() -> None:
    # SimCondition.wait_or_read (the firmware's wait, reading the pty itself) ends when the
    # wire has input (read by then), when another thread notifies, or when the time runs out.
    import os

    from hil.sim.clock import SimCondition

    cond = SimCondition()
    r, w = os.pipe()
    got: list[bytes] = []

    class Pipe:
        def fileno(self) -> int:
            return r

        def pump(self) -> bool:
            got.append(os.read(r, 100))
            return True

    def notify() -> None:
        with cond:
            cond.notify_all()

    wire = Pipe()
    with cond:
        assert not cond.wait_or_read(wire, 0.01)
        os.write(w, b"abc")
        assert cond.wait_or_read(wire, 5) and got == [b"abc"]
        threading.Timer(0.05, notify).start()
        assert cond.wait_or_read(wire, 5) and got == [b"abc"]  # woken, nothing read
        assert not cond.wait_or_read(wire, 0.01)  # the notification's wake was used up
    os.close(r)
    os.close(w)
