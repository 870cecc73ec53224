"""pumpctl against the simulator: every command, its --json shape, and every error path."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import serial
from clikit import run, run_json

from hil.launcher import SimProcess
from host import cli, discovery, keys
from host.client import PumpClient
from protocol import messages as m

STATUS_KEYS = {
    "mode", "phase", "daily_dose_mcg", "concentration_mcg_ml", "rate_ul_day", "bolus",
    "bolus_left_mcg", "last_24h_mcg", "delivered_ul", "delivered_mcg", "reservoir_ul",
    "uptime_s", "clock", "low_at", "refill_at", "dry_at", "alarms", "sessions", "battery_v",
    "frame_errors",
}
PROGRAM_KEYS = {"mode", "daily_dose_mcg", "rate_ul_day", "utc_offset_min", "steps"}



pytestmark = pytest.mark.usefixtures("cli_env")




def set_up(capsys: pytest.CaptureFixture[str], sim: SimProcess, ceiling: str = "1500",
           fill_ml: str = "20") -> None:
    """A pump ready to program, set up as a clinician would: profile, then refill."""
    code, profile = run_json(capsys, "profile", "set", "--origin", "spinal", "--age", "40",
                             "--phase", "titration", "--ceiling", ceiling, "--port", sim.pty)
    assert code == 0 and profile["phase"] == "titration", profile
    code, refill = run_json(capsys, "refill", "--fill-ml", fill_ml, "--concentration", "500",
                            "--concentration-again", "500",
                            "--drained-ml", "0", "--port", sim.pty)
    assert code == 0 and refill["concentration_mcg_ml"] == 500, refill


def test_info_json(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "info", "--port", sim.pty)
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
    code, out, _ = run(capsys, "--port", sim.pty, "info")
    assert code == 0
    assert "board id" in out and "e66118604b3c2a21" in out and "20 mL" in out


def test_set_dose_status_stop(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    set_up(capsys, sim)
    code, data = run_json(capsys, "set-dose", "412.5", "--port", sim.pty)
    assert (code, data) == (0, {
        "mode": "continuous", "daily_dose_mcg": "412.5", "rate_ul_day": "825",
        "utc_offset_min": 0, "steps": [{"start_min": 0, "daily_dose_mcg": "412.5"}],
    })
    code, out, _ = run(capsys, "set-dose", "400", "--port", sim.pty)
    assert code == 0 and "400 mcg/day = 800 uL/day" in out
    code, status = run_json(capsys, "status", "--port", sim.pty)
    assert code == 0 and set(status) == STATUS_KEYS
    assert status["mode"] == "continuous" and status["daily_dose_mcg"] == "400"
    assert status["alarms"] == [] and status["sessions"] == [] and status["phase"] == "titration"
    code, out, _ = run(capsys, "status", "--port", sim.pty)
    assert "400 mcg/day at 500 mcg/mL" in out and "800 uL/day" in out and "refill due" in out
    code, data = run_json(capsys, "stop", "--confirm", "--reason", "end_of_therapy",
                          "--port", sim.pty)
    assert (code, data) == (0, {"mode": "stopped", "reason": "end_of_therapy"})
    _, status = run_json(capsys, "status", "--port", sim.pty)
    assert status["mode"] == "stopped"


def test_status_watch_json_lines(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "status", "--watch", "0.01", "--count", "3", "--json",
                       "--port", sim.pty)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(lines) == 3 and all(set(x) == STATUS_KEYS for x in lines)


def test_status_watch_shows_alarms_as_they_come(
    sim: SimProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    set_up(capsys, sim)
    rig = sim.rig()

    def needle() -> None:  # while pumpctl waits between its readings
        time.sleep(0.3)
        rig.needle("septum", True)  # no refill session: the septum_needle alarm
        rig.advance(6000)

    threading.Thread(target=needle, daemon=True).start()
    code, out, _ = run(capsys, "status", "--watch", "1", "--count", "2", "--port", sim.pty)
    rig.close()
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4, out  # header, reading, the alarm, reading
    assert "ALARM  septum_needle (alarm) raised" in lines[2]
    assert lines[3].rstrip().endswith("septum_needle")


def test_stop_without_confirm_sends_nothing(
    sim: SimProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    set_up(capsys, sim)
    run(capsys, "set-dose", "400", "--port", sim.pty)
    code, out, err = run(capsys, "stop", "--port", sim.pty)
    assert code == cli.EXIT_USAGE and "needs --confirm" in err
    _, status = run_json(capsys, "status", "--port", sim.pty)
    assert status["mode"] == "continuous"


def test_pump_refusal_exit_4(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "set-dose", "0.5", "--port", sim.pty)
    assert code == 4
    assert data["error"]["type"] == "OutOfRange" and data["error"]["rule"] is None
    assert "daily_dose_ng=500 outside" in data["error"]["message"]
    code, _, err = run(capsys, "set-dose", "0.5", "--port", sim.pty)
    assert code == 4 and "pump refused (OUT_OF_RANGE)" in err


def test_dose_finer_than_resolution_is_refused_on_host(
    sim: SimProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "set-dose", "400.0001", "--port", sim.pty)
    assert code == cli.EXIT_USAGE and "resolution" in err
    code, _, err = run(capsys, "set-dose", "lots", "--port", sim.pty)
    assert code == cli.EXIT_USAGE and "not a number" in err
    code, _, err = run(capsys, "refill", "--fill-ml", "20.0000001", "-c", "500", "-C", "500",
                       "--drained-ml", "0", "--port", sim.pty)
    assert code == cli.EXIT_USAGE and "resolution" in err
    code, _, err = run(capsys, "set-dose", "5000000", "--port", sim.pty)
    assert code == cli.EXIT_USAGE and "does not fit" in err
    code, _, err = run(capsys, "ack", "nonsense", "--port", sim.pty)
    assert code == cli.EXIT_USAGE and "low_reservoir" in err
    _, log = run(capsys, "log", "--json", "--port", sim.pty)[:2]
    assert [json.loads(line)["event"] for line in log.splitlines()] == ["boot"]  # none sent


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
    code, _, err = run(capsys, "status", "--port", sim.pty)
    assert code == 2 and "no clinician key" in err
    code, data = run_json(capsys, "info", "--port", sim.pty)  # identity needs no role
    assert code == 0 and data["step_nl"] == 250


def test_patient_reads_but_cannot_program(
    sim: SimProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code, status = run_json(capsys, "status", "--role", "patient", "--port", sim.pty)
    assert code == 0 and status["mode"] == "stopped"
    code, data = run_json(capsys, "set-dose", "400", "--role", "patient", "--port", sim.pty)
    assert code == 4 and data["error"]["type"] == "WrongRole"
    _, status = run_json(capsys, "status", "--port", sim.pty)
    assert status["mode"] == "stopped"


def test_wrong_key_is_refused(
    sim: SimProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forged = tmp_path / "forged.json"
    keys.write(forged, keys.generate())
    code, data = run_json(capsys, "set-dose", "400", "--keys", str(forged), "--port", sim.pty)
    assert code == 4 and data["error"]["type"] == "BadTag"


@pytest.mark.parametrize("content", ["not json", '{"clinician": "abcd"}', '{"root": "00"}'])
def test_bad_key_file(
    sim: SimProcess, tmp_path: Path, content: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "keys.json"
    bad.write_text(content)
    code, _, err = run(capsys, "status", "--keys", str(bad), "--port", sim.pty)
    assert code == 2 and str(bad) in err


def test_log_counters_and_time_sync(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    set_up(capsys, sim)
    run(capsys, "set-dose", "400", "--port", sim.pty)
    code, clock = run_json(capsys, "time-sync", "--port", sim.pty)
    assert code == 0 and clock["clock"].startswith("20")
    code, out, _ = run(capsys, "log", "--json", "--port", sim.pty)
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in events] == [
        "boot", "profile", "refill_begin", "refill_commit", "program", "clock_set"]
    assert set(events[4]) == {"number", "time", "event", "role", "rule", "type", "a", "b", "c"}
    assert events[4]["role"] == "clinician" and events[4]["a"] == 400_000
    code, out, _ = run(capsys, "log", "--port", sim.pty)
    assert "continuous 400 mcg/day" in out and "filled 20 mL at 500 mcg/mL" in out
    code, counts = run_json(capsys, "counters", "--port", sim.pty)
    assert code == 0 and counts["REPLAY"] == 0 and len(counts) == len(m.ERRORS)
    assert counts["LIMIT"] == counts["TOO_SOON"] == 0


# --- set-up, therapy and the pump's refusals -----------------------------------------------------


def test_profile_show_and_set(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "profile", "--port", sim.pty)
    assert code == 0 and "no patient profile" in out
    code, data = run_json(capsys, "profile", "set", "--origin", "cerebral", "--age", "12",
                          "--phase", "titration", "--ceiling", "800", "--catheter-ml", "0.25",
                          "--infusion-start", "2026-12-24T10:00", "--port", sim.pty)
    assert (code, data) == (0, {
        "origin": "cerebral", "age_years": 12, "phase": "titration", "ceiling_mcg_day": "800",
        "catheter_ml": "0.25", "infusion_start": "2026-12-24T10:00:00+00:00",
        "brain_injury": None,
    })
    code, shown = run_json(capsys, "profile", "show", "--port", sim.pty)
    assert (code, shown) == (0, data)
    code, out, _ = run(capsys, "profile", "--port", sim.pty)
    assert "cerebral" in out and "800 mcg/day" in out and "0.25 mL" in out
    code, data = run_json(capsys, "profile", "set", "--origin", "spinal", "--age", "3",
                          "--phase", "titration", "--ceiling", "800", "--port", sim.pty)
    assert code == 4 and data["error"]["type"] == "Limit"
    assert (data["error"]["rule"], data["error"]["requested"], data["error"]["allowed"],
            data["error"]["unit"]) == ("patient_age", 3, 4, "years")
    assert "asked 3 years, at least 4 years" in data["error"]["message"]


def test_profile_brain_injury_a_year_before_therapy(
    sim: SimProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    # Label 1: after a traumatic brain injury, therapy a year after it at the earliest, by the
    # pump's clock (the simulator's starts at 2027-01-01 00:00 UTC).
    def profile(*more: str) -> tuple[int, Any]:
        return run_json(capsys, "profile", "set", "--origin", "cerebral", "--age", "30",
                        "--phase", "titration", "--ceiling", "1500", *more, "--port", sim.pty)

    def day(text: str) -> int:
        return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())

    code, data = profile("--brain-injury", "2026-06-01")
    assert code == 4 and data["error"]["type"] == "TooSoon", data
    e = data["error"]
    assert (e["rule"], e["unit"], e["requested"], e["allowed"], e["wait_s"]) == (
        "brain_injury_wait", "date", day("2026-06-01"), day("2027-06-01"), 151 * 86_400)
    code, _, err = run(capsys, "profile", "set", "--origin", "cerebral", "--age", "30",
                       "--phase", "titration", "--ceiling", "1500", "--brain-injury",
                       "2026-06-01", "--port", sim.pty)
    assert code == 4 and "TOO_SOON brain_injury_wait" in err
    assert "brain injury 2026-06-01: therapy may start on 2027-06-01 (label 1)" in err, err
    code, data = profile("--brain-injury", "2027-02-01")  # after the pump's clock
    assert code == 4 and data["error"]["type"] == "OutOfRange", data
    assert "2027-02-01 is after the pump's clock (2027-01-01)" in data["error"]["message"]
    code, data = run_json(capsys, "profile", "--port", sim.pty)
    assert data["phase"] == "unset", "nothing taken"
    # A year to the day: taken, shown in the table and in --json.
    code, data = profile("--brain-injury", "2026-01-01")
    assert code == 0 and data["brain_injury"] == "2026-01-01T00:00:00+00:00", data
    code, out, _ = run(capsys, "profile", "--port", sim.pty)
    assert "brain injury" in out and "2026-01-01 (therapy from 2027-01-01)" in out, out
    # Set again without --brain-injury: the date the pump holds stays.
    code, data = profile("--ceiling", "1200")
    assert code == 0 and data["brain_injury"] == "2026-01-01T00:00:00+00:00", data
    # The clock set back a day before the first program: the first therapy waits.
    with PumpClient(sim.pty, keys=sim.keys()) as pump:
        pump.set_clock(datetime(2026, 12, 31, tzinfo=UTC))
        pump.refill("20", 500)
    code, _, err = run(capsys, "set-dose", "100", "--port", sim.pty)
    assert code == 4 and "TOO_SOON brain_injury_wait" in err, err
    assert "therapy may start on 2027-01-01" in err and "allowed in 1 d" in err, err
    rig = sim.rig()
    rig.advance(86_400_000)
    rig.close()
    code, data = run_json(capsys, "set-dose", "100", "--port", sim.pty)
    assert code == 0 and data["daily_dose_mcg"] == "100", data
    # none: no brain injury; a date that is not one is refused before anything is sent.
    code, data = profile("--brain-injury", "none")
    assert code == 0 and data["brain_injury"] is None, data
    code, _, err = run(capsys, "profile", "set", "--origin", "cerebral", "--age", "30",
                       "--phase", "titration", "--ceiling", "1500", "--brain-injury",
                       "last spring", "--port", sim.pty)
    assert code == 2 and "--brain-injury" in err, err


def test_nothing_programs_before_profile_and_refill(
    sim: SimProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code, data = run_json(capsys, "set-dose", "400", "--port", sim.pty)
    assert code == 4 and data["error"]["type"] == "InvalidState"
    assert data["error"]["rule"] == "profile_required"
    code, _, err = run(capsys, "set-dose", "400", "--port", sim.pty)
    assert code == 4 and "INVALID_STATE profile_required" in err and "set one first" in err


def test_refill(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "profile", "set", "--origin", "spinal", "--age", "40", "--phase", "titration",
        "--ceiling", "1500", "--port", sim.pty)
    code, data = run_json(capsys, "refill", "--fill-ml", "20", "-c", "300", "-C", "300",
                          "--drained-ml", "0",
                          "--port", sim.pty)
    assert code == 4 and data["error"]["type"] == "NotConfirmed"
    assert (data["error"]["rule"], data["error"]["requested"]) == ("custom_concentration", 300)
    _, status = run_json(capsys, "status", "--port", sim.pty)
    assert (status["sessions"], status["concentration_mcg_ml"]) == ([], 0)  # aborted, unchanged
    code, data = run_json(capsys, "refill", "--fill-ml", "20", "-c", "300", "-C", "300",
                          "--drained-ml", "0",
                          "--confirm", "custom_concentration", "--port", sim.pty)
    assert code == 0 and (data["reservoir_ml"], data["concentration_mcg_ml"]) == ("20", 300)
    assert set(data) == {"reservoir_ml", "concentration_mcg_ml", "expected_ml", "low_at",
                         "refill_at"}
    code, _, err = run(capsys, "refill", "--fill-ml", "20", "-c", "500", "-C", "500",
                       "--drained-ml", "4",
                       "--port", sim.pty)
    assert code == 4 and "drain_mismatch" in err and "drained 4 mL, expected 20 mL" in err
    code, out, _ = run(capsys, "refill", "--fill-ml", "20", "-c", "500", "-C", "500",
                       "--drained-ml", "4",
                       "--confirm", "drain_mismatch", "--port", sim.pty)
    assert code == 0 and "20 mL at 500 mcg/mL" in out
    code, _, err = run(capsys, "refill", "--fill-ml", "20", "-c", "500",
                       "--concentration-again", "50", "--drained-ml", "20", "--port", sim.pty)
    assert code == 4 and "entered 500 mcg/mL, then 50 mcg/mL" in err


def test_a_limit_shows_rule_requested_and_allowed(
    sim: SimProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    set_up(capsys, sim, ceiling="1500")
    code, data = run_json(capsys, "set-dose", "2000", "--confirm", "high_dose",
                          "--port", sim.pty)
    assert code == 4
    assert data["error"]["type"] == "Limit" and data["error"]["code"] == "LIMIT"
    assert (data["error"]["rule"], data["error"]["requested"], data["error"]["allowed"],
            data["error"]["unit"], data["error"]["request"]) == (
        "hard_ceiling", 2_000_000, 1_500_000, "ng/day", "SET_CONTINUOUS")
    code, _, err = run(capsys, "set-dose", "2000", "--confirm", "high_dose", "--port", sim.pty)
    assert code == 4
    assert "LIMIT hard_ceiling): asked 2000 mcg/day, at most 1500 mcg/day" in err
    _, status = run_json(capsys, "status", "--port", sim.pty)
    assert status["mode"] == "stopped"  # refused: nothing programmed
    code, out, _ = run(capsys, "log", "--port", sim.pty)
    assert "hard_ceiling" in out and "asked 2000 mcg/day" in out


def test_too_soon_shows_the_wait(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    set_up(capsys, sim)
    run(capsys, "set-dose", "400", "--port", sim.pty)
    code, data = run_json(capsys, "set-dose", "450", "--port", sim.pty)
    assert code == 4 and data["error"]["type"] == "TooSoon"
    assert (data["error"]["rule"], data["error"]["wait_s"]) == ("first_24h", 86_400)
    code, _, err = run(capsys, "set-dose", "450", "--port", sim.pty)
    assert "TOO_SOON first_24h" in err and "allowed in 1 d" in err
    rig = sim.rig()
    rig.advance(86_400_000)
    rig.close()
    code, data = run_json(capsys, "set-dose", "450", "--port", sim.pty)
    assert code == 0 and data["daily_dose_mcg"] == "450"


def test_confirmations_for_set_dose(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    set_up(capsys, sim, ceiling="2000")
    code, data = run_json(capsys, "set-dose", "1200", "--port", sim.pty)
    assert code == 4 and data["error"]["type"] == "NotConfirmed"
    assert (data["error"]["rule"], data["error"]["allowed"]) == ("high_dose", 1_000_000)
    code, _, err = run(capsys, "set-dose", "1200", "--port", sim.pty)
    assert "NOT_CONFIRMED high_dose" in err and "without confirmation" in err
    code, data = run_json(capsys, "set-dose", "1200", "--confirm", "high_dose",
                          "--port", sim.pty)
    assert code == 0 and set(data) == PROGRAM_KEYS
    code, data = run_json(capsys, "set-dose", "500", "--port", sim.pty)
    assert code == 4 and data["error"]["rule"] == "large_decrease"
    code, data = run_json(capsys, "set-dose", "500", "--confirm", "large_decrease",
                          "--port", sim.pty)
    assert code == 0 and data["daily_dose_mcg"] == "500"


def test_suspend_resume_bolus(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    set_up(capsys, sim)
    run(capsys, "set-dose", "400", "--port", sim.pty)
    code, data = run_json(capsys, "bolus", "50", "--minutes", "10", "--port", sim.pty)
    assert (code, data["kind"], data["dose_mcg"], data["volume_ul"], data["duration_s"]) == (
        0, "clinician", "50", "100", 600)
    code, _, err = run(capsys, "bolus", "50", "--port", sim.pty)
    assert code == 4 and "a bolus is running" in err
    code, _, err = run(capsys, "suspend", "--port", sim.pty)
    assert code == cli.EXIT_USAGE and "needs --confirm" in err
    code, data = run_json(capsys, "suspend", "--confirm", "--port", sim.pty)
    assert (code, data) == (0, {"reason": "clinician_decision", "rate_ul_day": "48"})
    _, status = run_json(capsys, "status", "--port", sim.pty)
    assert status["mode"] == "minimum_rate" and status["bolus"] == "none"
    code, out, _ = run(capsys, "resume", "--port", sim.pty)
    assert code == 0 and "resumed continuous infusion: 400 mcg/day" in out
    code, data = run_json(capsys, "resume", "--port", sim.pty)
    assert code == 4 and data["error"]["type"] == "InvalidState"  # already running


def test_alarms_and_ack(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "alarms", "--port", sim.pty)
    assert (code, data) == (0, {"alarms": [], "unacknowledged": [], "silenced_until": None})
    code, _, err = run(capsys, "ack", "--port", sim.pty)
    assert code == cli.EXIT_USAGE and "--all" in err
    set_up(capsys, sim, fill_ml="2")  # at the low-reservoir level
    rig = sim.rig()
    rig.advance(1000)
    rig.close()
    code, data = run_json(capsys, "alarms", "--port", sim.pty)
    assert (code, data) == (0, {"alarms": ["low_reservoir"], "unacknowledged": ["low_reservoir"],
                                "silenced_until": None})
    code, out, _ = run(capsys, "alarms", "--port", sim.pty)
    assert "low_reservoir" in out and "acknowledged" in out
    code, data = run_json(capsys, "ack", "--all", "--port", sim.pty)
    assert (code, data) == (0, {"acknowledged": ["low_reservoir"], "alarms": ["low_reservoir"],
                                "unacknowledged": [], "silenced_until": None})
    code, data = run_json(capsys, "alarms", "--port", sim.pty)
    assert data["alarms"] == ["low_reservoir"] and data["unacknowledged"] == []
    code, out, _ = run(capsys, "log", "--port", sim.pty)
    assert "low_reservoir raised" in out


def test_python_dash_m_runs_pumpctl_once() -> None:
    # host/cli/__main__.py is not a command module: importing it would run pumpctl again.
    assert all(not mod.__name__.endswith("__main__") for mod in cli.command_modules())
    proc = subprocess.run([sys.executable, "-m", "host.cli", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.count("usage: pumpctl") == 1


def test_a_reader_that_leaves_early_is_no_error(sim: SimProcess) -> None:
    # `pumpctl log | head -1`: stdout closes under pumpctl; no traceback, exit 0.
    env = {**os.environ, "PUMPCTL_KEYS": sim.keyfile}
    script = ("import sys; from host.cli import main; "
              "sys.exit(main(['log', '--format', 'csv', '--port', sys.argv[1]]))")
    proc = subprocess.Popen([sys.executable, "-c", script, sim.pty], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # gone before pumpctl has read the log: its first write fails
    code = proc.wait(60)
    err = proc.stderr.read()
    assert code == 0 and b"Traceback" not in err and b"Broken pipe" not in err, err
