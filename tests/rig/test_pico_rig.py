"""PicoRig (hil/pico_rig.py) end to end: the rig controller's own core and loop
(hil/rigctl/core.py) with a fake board shell, served on a pty in a thread, driven through the
pty's path as a real rig is through /dev/ttyACM1. Then what must fail clearly: nothing at the
port, a busy port, a silent device, a device that answers garbage, a MicroPython REPL, and the
pump itself."""

from __future__ import annotations

import json
import os
import pty
import select
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rigfake import FakeBoard

from firmware import config
from hil import pico_rig
from hil.pico_rig import PicoRig
from hil.rig import Rig, RigError
from hil.rigctl import core

ROOT = Path(__file__).resolve().parents[2]
CALIBRATED = json.dumps({"tare": 1000, "noise_counts": 6, "cal_counts": 200000,
                         "cal_mg": 10000})  # 20 counts per mg: 50 nL a count at 1.000 mg/uL


class PtyLink:
    """The board's UsbLink, on the master side of a pty."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buf = b""

    def wait(self, timeout_ms: int) -> bool:
        if self.buf:
            return True
        ready, _, _ = select.select([self.fd], [], [], timeout_ms / 1000)
        if ready:
            try:
                self.buf += os.read(self.fd, 4096)
            except OSError:  # the pty is gone: the test is over
                time.sleep(timeout_ms / 1000)
        return bool(self.buf)

    def read_byte(self) -> int:
        if not self.buf:
            return -1
        b, self.buf = self.buf[0], self.buf[1:]
        return b

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)


class PtyDevice:
    """A pty whose master side runs `serve(master_fd, running)` in a thread (or nothing: a
    silent device). .path is what a host opens."""

    def __init__(self, serve: Callable[[int, Callable[[], bool]], None] | None):
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)  # no echo, no line editing: a USB CDC port is raw
        self.path = os.ttyname(self.slave)
        self._running = True
        self.thread = None
        if serve is not None:
            self.thread = threading.Thread(target=serve, args=(self.master, self.running),
                                           daemon=True)
            self.thread.start()

    def running(self) -> bool:
        return self._running

    def close(self) -> None:
        self._running = False
        if self.thread is not None:
            self.thread.join(5)
        os.close(self.master)
        os.close(self.slave)


def real_time_board(**kw: Any) -> FakeBoard:
    t0 = time.monotonic()
    return FakeBoard(clock=lambda: (time.monotonic() - t0) * 1000, **kw)


@pytest.fixture
def rig_device() -> Iterator[tuple[PtyDevice, FakeBoard]]:
    """The rig controller (core + loop, fake board on real time, calibrated) on a pty."""
    board = real_time_board(config=CALIBRATED)
    board.load = 1000  # the tare: the vessel empty
    ctl = core.Controller(board)
    dev = PtyDevice(lambda fd, running: core.serve(ctl, PtyLink(fd), running))
    yield dev, board
    dev.close()


@pytest.fixture
def rig(rig_device: tuple[PtyDevice, FakeBoard]) -> Iterator[PicoRig]:
    with PicoRig(rig_device[0].path) as r:
        yield r


def answering(reply: Callable[[bytes], bytes]) -> Callable[[int, Callable[[], bool]], None]:
    """A device that answers each line it is sent with reply(line)."""

    def serve(fd: int, running: Callable[[], bool]) -> None:
        buf = b""
        while running():
            if not select.select([fd], [], [], 0.05)[0]:
                continue
            try:
                buf += os.read(fd, 4096)
            except OSError:
                return
            while b"\n" in buf or b"\x00" in buf:
                cut = min(i for i in (buf.find(b"\n"), buf.find(b"\x00")) if i >= 0)
                line, buf = buf[:cut + 1], buf[cut + 1:]
                os.write(fd, reply(line))

    return serve


# -- the rig controller's constants -------------------------------------------------------


def test_the_rig_is_wired_to_the_pins_the_firmware_uses() -> None:
    assert core.PUMP_PIN_STEP == config.PIN_STEP
    assert core.PUMP_PIN_DIR == config.PIN_DIR
    assert core.PUMP_PIN_REFILL_VALVE == config.PIN_REFILL_VALVE
    assert core.PUMP_PIN_CAP_VALVE == config.PIN_CAP_VALVE
    assert core.PUMP_PIN_NEEDLE_SEPTUM == config.PIN_NEEDLE_SEPTUM
    assert core.PUMP_PIN_NEEDLE_CAP == config.PIN_NEEDLE_CAP
    assert core.PUMP_PIN_BUZZER == config.PIN_BUZZER
    assert core.PUMP_PIN_BATTERY_ADC == config.PIN_BATTERY_ADC
    assert core.PUMP_BATTERY_DIVIDER == config.BATTERY_DIVIDER
    assert core.PORTS == pico_rig.PORTS
    assert set(core.ALL_CAPABILITIES) == pico_rig.REAL_CAPABILITIES
    assert core.RIG_NAME == pico_rig.RIG_NAME and core.VERSION == pico_rig.PROTOCOL_VERSION


# -- end to end: every method ---------------------------------------------------------------


def test_hello_gives_capabilities_and_tolerance(rig: PicoRig) -> None:
    as_rig: Rig = rig  # PicoRig is a Rig (pyright checks this line)
    assert as_rig.capabilities == pico_rig.REAL_CAPABILITIES
    assert not as_rig.capabilities & {"time_control", "hang", "flash_cut", "plant_model"}
    assert rig.delivered_tolerance_nl == 400  # (6 counts of noise + 2) x 50 nL
    assert rig.hello["rig"] == "intrapump-rig" and rig.hello["uid"]


def test_time_runs_in_real_time(rig: PicoRig) -> None:
    t0 = rig.now_ms()
    started = time.monotonic()
    after = rig.advance(300)
    assert after >= t0 + 300
    assert time.monotonic() - started >= 0.29
    assert rig.now_ms() >= after


def test_measure_reads_steps_valves_tones_and_volume(rig_device: tuple[PtyDevice, FakeBoard],
                                                     rig: PicoRig) -> None:
    _, board = rig_device
    m = rig.measure()
    assert m["delivered_nl"] == 0 and m["steps"] == 0 and m["buzzer_tones"] == []
    board.fwd += 40
    board.back += 8
    board.refill, board.cap = 1, 0
    board.load = 1000 + 200  # 200 counts: 10 uL
    # A 2 kHz tone on the buzzer line, its edges counted from the board's clock at the instant
    # the gate reads them (the core reads counters(), then ticks_us()): a tone thread updated
    # every few ms, or a thread switch between the two reads, put a loaded machine's readings
    # 5-10 % off. The gating arithmetic itself is tested on a manual clock (test_rigctl_core).
    t0, start, read_counters = board.now_ms(), board.buzzer, board.counters
    read_at: list[int] = []

    def counters() -> tuple[int, int, int]:
        now = board.now_ms()
        read_at.append(now)
        fwd, back, _ = read_counters()
        return fwd, back, (start + (now - t0) * 2000 // 1000) & 0xFFFFFFFF

    def ticks_us() -> int:
        now = read_at.pop() if read_at else board.now_ms()
        return now * 1000 % board.TICKS_PERIOD

    board.counters, board.ticks_us = counters, ticks_us  # type: ignore[method-assign]
    rig.advance(1000)  # the scale's window refills; the gates hear the tone
    m = rig.measure()
    assert (m["steps"], m["steps_back"]) == (40, 8)
    assert (m["refill_valve"], m["cap_valve"]) == (1, 0)
    assert abs(m["delivered_nl"] - 10_000) <= rig.delivered_tolerance_nl
    assert abs(m["buzzer_hz"] - 2000) <= 100
    assert len(m["buzzer_tones"]) == 1 and abs(m["buzzer_tones"][0] - 2000) <= 100
    assert isinstance(m["now_ms"], int) and isinstance(m["delivered_nl"], int)


def test_fault_injection_reaches_the_board(rig_device: tuple[PtyDevice, FakeBoard],
                                           rig: PicoRig) -> None:
    _, board = rig_device
    rig.needle("cap", True)
    rig.needle("septum", False)
    assert board.needles == {"septum": False, "cap": True}
    rig.needle("cap", False)
    assert board.needles["cap"] is False
    with pytest.raises(ValueError):
        rig.needle("arm", True)
    rig.occlude(True)
    assert board.pinch is True and rig.measure()["occluded"] is True
    rig.occlude(False)
    assert board.pinch is False
    rig.battery(3400)
    assert board.dac == 2110 and rig.measure()["battery_mv"] == 3400
    rig.battery(None)
    assert board.dac == 2420 and rig.measure()["battery_mv"] == 3900
    rig.power(False)
    assert board.powered is False and board.dac_is_off
    rig.power(True)
    assert board.powered is True and board.dac == 2420
    rig.reset()
    assert board.run_pulses == [20]
    boot = rig.boot()
    assert (boot["boots"], boot["resets"], boot["power_cycles"]) == (2, 1, 1)
    assert boot["reset_cause"] is None
    rig.needle("septum", True)
    rig.occlude(True)
    rig.battery(3000)
    rig.rest()
    assert board.needles == {"septum": False, "cap": False} and board.pinch is False
    assert board.dac == 2420 and board.powered is True


def test_what_a_real_rig_cannot_do_is_a_clear_error(rig: PicoRig) -> None:
    with pytest.raises(RigError, match="cannot hang"):
        rig.hang()
    with pytest.raises(RigError, match="flash byte"):
        rig.cut_power_at_flash_byte(100)


def test_a_refusal_is_a_rig_error_naming_its_code(rig: PicoRig) -> None:
    with pytest.raises(RigError, match="refused 'battery': bad_request: .*full scale"):
        rig.battery(9000)
    with pytest.raises(RigError, match="unknown_command"):
        rig.call("levitate")
    assert rig.now_ms() > 0  # the link is still in step


def test_tare_calibrate_and_configure(rig_device: tuple[PtyDevice, FakeBoard],
                                      rig: PicoRig) -> None:
    _, board = rig_device
    board.load = 5000
    rig.advance(600)
    assert rig.tare()["tare"] == 5000
    board.load = 5000 + 300_000  # a 10 g mass: 30 counts per mg
    rig.advance(600)
    out = rig.calibrate(10_000)
    assert out["cal_counts"] == 300_000 and out["delivered_nl"] == 10_000_000
    # noise 0 + 2 counts of 33.3 nL
    assert rig.delivered_tolerance_nl == 67
    rig.configure(density_mg_per_ul=1.25)
    assert rig.measure()["delivered_nl"] == 8_000_000
    saved = json.loads(board.config_text or "")
    assert saved["density_ug_per_ul"] == 1250 and saved["tare"] == 5000
    rig.configure(without=["occlusion"])
    assert "occlusion" not in rig.capabilities
    with pytest.raises(RigError, match="unsupported"):
        rig.occlude(True)


def test_a_stale_late_reply_is_not_taken_for_the_next_answer(rig: PicoRig) -> None:
    rig._request("now", {})  # an answer nobody waits for
    time.sleep(0.2)
    assert rig.call("boot")["boots"] == 0  # not the stale {"now_ms": ...}


def test_the_plugin_opens_a_serial_rig_as_picorig(rig_device: tuple[PtyDevice, FakeBoard]) -> None:
    from hil.pytest_plugin import open_rig

    r = open_rig(rig_device[0].path)
    try:
        assert isinstance(r, PicoRig)
    finally:
        r.close()


def test_the_command_line(rig_device: tuple[PtyDevice, FakeBoard],
                          capsys: pytest.CaptureFixture[str]) -> None:
    path = rig_device[0].path
    assert pico_rig.main(["hello", "--port", path]) == 0
    assert json.loads(capsys.readouterr().out)["rig"] == "intrapump-rig"
    assert pico_rig.main(["measure", "-p", path]) == 0
    assert "steps" in json.loads(capsys.readouterr().out)
    assert pico_rig.main(["config", "-p", path, "--battery-mv", "3800", "--without", ""]) == 0
    assert json.loads(capsys.readouterr().out)["battery_mv"] == 3800
    assert pico_rig.main(["hello", "--port", "/dev/nonexistent-rig"]) == 3
    assert "no such port" in capsys.readouterr().err


# -- what must fail, and how ----------------------------------------------------------------


def one_line(e: pytest.ExceptionInfo[RigError]) -> str:
    text = str(e.value)
    assert "\n" not in text, text
    return text


def test_nothing_at_the_port() -> None:
    with pytest.raises(RigError) as e:
        PicoRig("/dev/ttyACM-no-such-rig")
    text = one_line(e)
    assert "/dev/ttyACM-no-such-rig" in text and "plugged in" in text and "RIG.md" in text
    with pytest.raises(RigError, match="nothing listening"):
        PicoRig("socket://127.0.0.1:1")


def test_a_busy_port(rig_device: tuple[PtyDevice, FakeBoard]) -> None:
    path = rig_device[0].path
    with PicoRig(path):
        with pytest.raises(RigError) as e:
            PicoRig(path)
    assert path in one_line(e) and "busy" in str(e.value)
    PicoRig(path).close()  # free again


def test_a_silent_device() -> None:
    dev = PtyDevice(None)
    try:
        started = time.monotonic()
        with pytest.raises(RigError) as e:
            PicoRig(dev.path, hello_timeout=0.3)
        text = one_line(e)
        assert dev.path in text and "no answer to hello" in text and "flash" in text
        assert time.monotonic() - started < 3
    finally:
        dev.close()


def test_a_device_that_answers_garbage() -> None:
    dev = PtyDevice(answering(lambda line: b"?SYNTAX ERROR\r\n"))
    try:
        with pytest.raises(RigError) as e:
            PicoRig(dev.path, hello_timeout=0.3)
        text = one_line(e)
        assert dev.path in text and "not the rig controller" in text and "SYNTAX" in text
    finally:
        dev.close()


def test_a_device_that_answers_json_but_is_another_thing() -> None:
    def reply(line: bytes) -> bytes:
        req = json.loads(line) if line.strip(b"\x00\n") else {}
        return json.dumps({"ok": True, "id": req.get("id"), "rig": "other-rig"}).encode() + b"\n"

    dev = PtyDevice(answering(reply))
    try:
        with pytest.raises(RigError, match="'other-rig', not 'intrapump-rig'"):
            PicoRig(dev.path, hello_timeout=0.3)
    finally:
        dev.close()


def test_a_rig_of_another_protocol_version() -> None:
    def reply(line: bytes) -> bytes:
        req = json.loads(line) if line.strip(b"\x00\n") else {}
        return json.dumps({"ok": True, "id": req.get("id"), "rig": "intrapump-rig",
                           "version": 2, "capabilities": []}).encode() + b"\n"

    dev = PtyDevice(answering(reply))
    try:
        with pytest.raises(RigError, match="version 2.*flash"):
            PicoRig(dev.path, hello_timeout=0.3)
    finally:
        dev.close()


def test_a_micropython_repl_is_named() -> None:
    dev = PtyDevice(answering(lambda line: line.replace(b"\n", b"\r\n") + b">>> "))
    try:
        with pytest.raises(RigError) as e:
            PicoRig(dev.path, hello_timeout=0.3)
        assert "REPL" in one_line(e) and "flash" in str(e.value)
    finally:
        dev.close()


def test_the_pump_itself_is_named() -> None:
    """The pump's firmware (on the simulator) says nothing to a JSON line: the zero byte
    sent after the silence makes it answer with a binary error frame."""
    from hil.launcher import SimProcess

    with SimProcess() as sim:
        with pytest.raises(RigError) as e:
            PicoRig(sim.url, hello_timeout=0.5)
    text = one_line(e)
    assert sim.url in text and "binary frames" in text and "pump" in text


def test_a_rig_that_goes_away_mid_session(rig_device: tuple[PtyDevice, FakeBoard]) -> None:
    dev, _ = rig_device
    r = PicoRig(dev.path, timeout=0.5)
    try:
        dev._running = False  # the controller stops answering (unplugged, crashed)
        assert dev.thread is not None
        dev.thread.join(5)
        with pytest.raises(RigError) as e:
            r.measure()
        assert "did not answer 'measure'" in one_line(e)
    finally:
        r.close()


# -- finding the rig on USB -----------------------------------------------------------------


@pytest.fixture
def no_cached_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pico_rig, "_auto_port", None)


def test_auto_finds_the_one_rig_among_the_picos(
        rig_device: tuple[PtyDevice, FakeBoard], monkeypatch: pytest.MonkeyPatch,
        no_cached_port: None) -> None:
    silent = PtyDevice(None)
    try:
        monkeypatch.setattr(pico_rig, "find_picos", lambda: [silent.path, rig_device[0].path])
        assert pico_rig.find_rig_ports(timeout=0.3) == [rig_device[0].path]
        with PicoRig("auto") as r:
            assert r.url == rig_device[0].path
        monkeypatch.setattr(pico_rig, "find_picos", lambda: [])
        PicoRig("auto").close()  # found once: a session does not probe the pump's port again
    finally:
        silent.close()


def test_auto_with_no_rig_says_what_it_found(monkeypatch: pytest.MonkeyPatch,
                                             no_cached_port: None) -> None:
    monkeypatch.setattr(pico_rig, "find_picos", lambda: [])
    with pytest.raises(RigError, match="no Pico on USB"):
        PicoRig("auto")
    silent = PtyDevice(None)
    try:
        monkeypatch.setattr(pico_rig, "find_picos", lambda: [silent.path])
        with pytest.raises(RigError) as e:
            pico_rig.auto_port(timeout=0.3)
        assert "no rig controller among" in one_line(e) and silent.path in str(e.value)
    finally:
        silent.close()


def test_auto_refuses_to_guess_between_two_rigs(monkeypatch: pytest.MonkeyPatch,
                                                no_cached_port: None) -> None:
    devs = []
    for _ in range(2):
        board = real_time_board()
        ctl = core.Controller(board)
        devs.append(PtyDevice(lambda fd, running, c=ctl: core.serve(c, PtyLink(fd), running)))
    try:
        monkeypatch.setattr(pico_rig, "find_picos", lambda: [d.path for d in devs])
        with pytest.raises(RigError, match="several rig controllers"):
            pico_rig.auto_port()
    finally:
        for d in devs:
            d.close()


# -- flashing -------------------------------------------------------------------------------


def test_flash_with_no_board_fails_clearly(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(pico_rig, "find_picos", lambda: [])
    assert pico_rig.main(["flash"]) == 3
    err = capsys.readouterr().err
    assert "no Pico found on USB" in err and err.count("\n") == 1
    assert pico_rig.main(["flash", "--port", "/dev/ttyACM-no-such-rig"]) == 3
    assert "no such port" in capsys.readouterr().err


def test_flash_will_not_guess_between_the_pump_and_the_rig(
        monkeypatch: pytest.MonkeyPatch) -> None:
    silent = [PtyDevice(None), PtyDevice(None)]
    try:
        monkeypatch.setattr(pico_rig, "find_picos", lambda: [d.path for d in silent])
        monkeypatch.setattr(pico_rig, "probe", lambda port, timeout=1.0: "silent")
        with pytest.raises(RigError, match="several Picos.*give --port"):
            pico_rig.flash_port(None)
    finally:
        for d in silent:
            d.close()


def test_the_flash_command_copies_every_board_file_and_is_the_one_documented() -> None:
    cmd = pico_rig.flash_command("/dev/ttyACM1")
    board_files = sorted(p.name for p in (ROOT / "hil" / "rigctl").glob("*.py"))
    copied = sorted(Path(a).name for a in cmd if a.startswith("hil/rigctl/"))
    assert copied == board_files
    assert cmd[cmd.index("exec") + 1] == pico_rig.MKDIR_RIGCTL
    # RIG.md gives the same line to type
    typed = " ".join(cmd[2:]).replace(pico_rig.MKDIR_RIGCTL, f'"{pico_rig.MKDIR_RIGCTL}"')
    assert typed in (ROOT / "hil" / "RIG.md").read_text()
