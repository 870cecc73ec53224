"""pumpctl against the simulator: every command, its --json shape, and every error path."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from hil.launcher import SimProcess
from host import cli, discovery, keys

STATUS_KEYS = {
    "mode", "daily_dose_mcg", "concentration_mcg_ml", "rate_ul_day", "delivered_ul",
    "delivered_mcg", "reservoir_ul", "uptime_s", "clock", "dry_at", "battery_v", "frame_errors",
}


@pytest.fixture(autouse=True)
def sim_keys(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests against the simulator hold its development keys, as a user who exported
    PUMPCTL_KEYS would; no test sees the user's own key files."""
    monkeypatch.setattr(keys, "CONFIG_DIR", Path("/nonexistent/intrapump-keys"))
    monkeypatch.delenv("PUMPCTL_KEYS", raising=False)
    if "sim" in request.fixturenames:
        monkeypatch.setenv("PUMPCTL_KEYS", request.getfixturevalue("sim").keyfile)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code, out, _ = run(capsys, *argv, "--json")
    return code, json.loads(out)


def test_info_json(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "info", "--port", sim.url)
    assert code == 0
    assert data == {
        "protocol_version": 1,
        "fw_version": data["fw_version"],
        "board_id": "e66118604b3c2a21",
        "reservoir_ml": "20",
        "step_nl": 250,
    }
    assert data["fw_version"].count(".") == 2


def test_info_human(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--port", sim.url, "info")
    assert code == 0
    assert "board id" in out and "e66118604b3c2a21" in out and "20 mL" in out


def test_set_dose_status_stop(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "set-dose", "412.5", "-c", "500", "--port", sim.url)
    assert (code, data) == (0, {
        "mode": "continuous", "daily_dose_mcg": "412.5", "concentration_mcg_ml": 500,
        "rate_ul_day": "825",
    })
    code, status = run_json(capsys, "status", "--port", sim.url)
    assert code == 0 and set(status) == STATUS_KEYS
    assert status["mode"] == "continuous" and status["daily_dose_mcg"] == "412.5"
    code, out, _ = run(capsys, "status", "--port", sim.url)
    assert "412.5 mcg/day at 500 mcg/mL" in out and "825 uL/day" in out
    code, data = run_json(capsys, "stop", "--confirm", "--reason", "end_of_therapy",
                          "--port", sim.url)
    assert (code, data) == (0, {"mode": "stopped", "reason": "end_of_therapy"})
    _, status = run_json(capsys, "status", "--port", sim.url)
    assert status["mode"] == "stopped"


def test_status_watch_json_lines(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "status", "--watch", "0.01", "--count", "3", "--json",
                       "--port", sim.url)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(lines) == 3 and all(set(x) == STATUS_KEYS for x in lines)


def test_stop_without_confirm_sends_nothing(
    sim: SimProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "set-dose", "400", "-c", "500", "--port", sim.url)
    code, out, err = run(capsys, "stop", "--port", sim.url)
    assert code == cli.EXIT_USAGE and "needs --confirm" in err
    _, status = run_json(capsys, "status", "--port", sim.url)
    assert status["mode"] == "continuous"


def test_pump_refusal_exit_4(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "set-dose", "0.5", "-c", "500", "--port", sim.url)
    assert code == 4
    assert data["error"]["type"] == "OutOfRange"
    assert "daily_dose_ng=500 outside" in data["error"]["message"]
    code, _, err = run(capsys, "set-dose", "0.5", "-c", "500", "--port", sim.url)
    assert code == 4 and "pump refused (OUT_OF_RANGE)" in err


def test_dose_finer_than_resolution_is_refused_on_host(
    sim: SimProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "set-dose", "400.0001", "-c", "500", "--port", sim.url)
    assert code == cli.EXIT_USAGE and "resolution" in err
    code, _, err = run(capsys, "set-dose", "lots", "-c", "500", "--port", sim.url)
    assert code == cli.EXIT_USAGE and "not a number" in err


# --- the link failing ------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["socket://127.0.0.1:1", "/dev/ttyNOPE"])
def test_missing_port(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "status", "--port", url)
    assert code == 3 and data["error"]["type"] == "PortNotFound"
    code, _, err = run(capsys, "status", "--port", url)
    assert err.count("\n") == 1 and "no such port" in err


def test_no_port_and_no_pico(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PUMPCTL_PORT", raising=False)
    monkeypatch.setattr(discovery, "find_picos", lambda: [])
    code, _, err = run(capsys, "status")
    assert code == 3 and "no Pico found" in err
    monkeypatch.setattr(discovery, "find_picos", lambda: ["/dev/ttyACM0", "/dev/ttyACM1"])
    code, _, err = run(capsys, "status")
    assert code == 3 and "several Picos" in err and "/dev/ttyACM1" in err


def test_port_from_environment(
    sim: SimProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PUMPCTL_PORT", sim.url)
    code, data = run_json(capsys, "info")
    assert code == 0 and data["step_nl"] == 250


def test_busy_port(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    holder = serial.Serial(sim.pty, exclusive=True)
    try:
        code, _, err = run(capsys, "status", "--port", sim.pty)
    finally:
        holder.close()
    assert code == 3 and "busy" in err
    code, _, _ = run(capsys, "status", "--port", sim.pty)
    assert code == 0  # the pty works once it is free


class FakeDevice:
    """A TCP 'device' that misbehaves: says nothing, talks garbage, or hangs up."""

    def __init__(self, behaviour: str):
        self.behaviour = behaviour
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                while conn.recv(4096):
                    if self.behaviour == "garbage":
                        conn.sendall(b"\x01\x02garbage\x00")
                    elif self.behaviour == "hangup":
                        break

    def close(self) -> None:
        self.server.close()


@pytest.fixture(params=["silent", "garbage", "hangup"])
def bad_device(request: pytest.FixtureRequest) -> Iterator[FakeDevice]:
    dev = FakeDevice(request.param)
    yield dev
    dev.close()


def test_misbehaving_device(bad_device: FakeDevice, capsys: pytest.CaptureFixture[str]) -> None:
    expected = {"silent": "NoResponse", "garbage": "GarbledResponse", "hangup": "PortLost"}
    code, data = run_json(capsys, "info", "--timeout", "0.2", "--port", bad_device.url)
    assert code == 3
    assert data["error"]["type"] == expected[bad_device.behaviour]


# --- roles and keys ----------------------------------------------------------------------------


def test_no_keys_sends_nothing_that_needs_a_role(
    sim: SimProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PUMPCTL_KEYS")
    code, _, err = run(capsys, "status", "--port", sim.url)
    assert code == 2 and "no clinician key" in err
    code, data = run_json(capsys, "info", "--port", sim.url)  # identity needs no role
    assert code == 0 and data["step_nl"] == 250


def test_patient_reads_but_cannot_program(
    sim: SimProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code, status = run_json(capsys, "status", "--role", "patient", "--port", sim.url)
    assert code == 0 and status["mode"] == "stopped"
    code, data = run_json(capsys, "set-dose", "400", "-c", "500", "--role", "patient",
                          "--port", sim.url)
    assert code == 4 and data["error"]["type"] == "WrongRole"
    _, status = run_json(capsys, "status", "--port", sim.url)
    assert status["mode"] == "stopped"


def test_wrong_key_is_refused(
    sim: SimProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forged = tmp_path / "forged.json"
    keys.write(forged, keys.generate())
    code, data = run_json(capsys, "set-dose", "400", "-c", "500", "--keys", str(forged),
                          "--port", sim.url)
    assert code == 4 and data["error"]["type"] == "BadTag"


@pytest.mark.parametrize("content", ["not json", '{"clinician": "abcd"}', '{"root": "00"}'])
def test_bad_key_file(
    sim: SimProcess, tmp_path: Path, content: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "keys.json"
    bad.write_text(content)
    code, _, err = run(capsys, "status", "--keys", str(bad), "--port", sim.url)
    assert code == 2 and str(bad) in err


def test_log_counters_and_time_sync(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "set-dose", "400", "-c", "500", "--port", sim.url)
    code, clock = run_json(capsys, "time-sync", "--port", sim.url)
    assert code == 0 and clock["clock"].startswith("20")
    code, out, _ = run(capsys, "log", "--json", "--port", sim.url)
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in events] == ["boot", "program", "clock_set"]
    assert events[1]["role"] == "clinician" and events[1]["a"] == 400_000
    code, out, _ = run(capsys, "log", "--port", sim.url)
    assert "400 mcg/day at 500 mcg/mL" in out
    code, counts = run_json(capsys, "counters", "--port", sim.url)
    assert code == 0 and counts["REPLAY"] == 0 and len(counts) == 18
