"""pumpctl refill against the simulator: the guided session at a (pretend) terminal, the same
with flags for scripts, every refusal and interruption closing the session; refill calc."""

from __future__ import annotations

import builtins
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clikit import run, run_json

from hil.launcher import SimProcess
from host import cli
from host.client import PumpClient

DONE_KEYS = {"reservoir_ml", "concentration_mcg_ml", "expected_ml", "low_at", "refill_at"}
CALC_KEYS = {
    "start", "reservoir_ml", "fill_ml", "usable_ml", "concentration_mcg_ml", "mode", "steps",
    "utc_offset_min", "daily_dose_mcg", "rate_ul_day", "low_reservoir_ml", "refill_margin_days",
    "days_to_low", "days_to_empty", "days_to_refill", "low_at", "refill_at", "dry_at",
}
DAY_MS = 86_400_000



pytestmark = pytest.mark.usefixtures("cli_env")




Answer = str | BaseException | Callable[[], str]


class Terminal:
    """builtins.input at a pretend terminal: each answer in turn (an exception is raised, a
    callable is called); the prompts are kept."""

    def __init__(self, answers: tuple[Answer, ...]):
        self.answers = list(answers)
        self.prompts: list[str] = []

    def __call__(self, prompt: object = "") -> str:
        self.prompts.append(str(prompt))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer() if callable(answer) else answer


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Terminal]:
    def at(*answers: Answer) -> Terminal:
        t = Terminal(answers)
        monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
        monkeypatch.setattr(builtins, "input", t)
        return t

    return at


def set_up(capsys: pytest.CaptureFixture[str], sim: SimProcess, dose: str = "400",
           days: int = 0) -> None:
    """A pump in therapy: profile, 20 mL at 500 mcg/mL, a continuous dose, then `days` of it
    (400 mcg/day for 5 days: 16 mL left, which the next refill expects to drain). Over the
    simulator's pty: a socket:// port takes 0.3 s to close (pyserial)."""
    code, _ = run_json(capsys, "profile", "set", "--origin", "spinal", "--age", "40",
                       "--phase", "titration", "--ceiling", "1500", "--port", sim.pty)
    assert code == 0
    code, _ = run_json(capsys, "refill", "--fill-ml", "20", "-c", "500", "-C", "500",
                       "--drained-ml", "0", "--port", sim.pty)
    assert code == 0
    code, _ = run_json(capsys, "set-dose", dose, "--confirm", "high_dose", "--port", sim.pty)
    assert code == 0
    if days:
        rig = sim.rig()
        rig.advance(days * DAY_MS)
        rig.close()


def status(capsys: pytest.CaptureFixture[str], sim: SimProcess) -> dict[str, Any]:
    code, data = run_json(capsys, "status", "--port", sim.pty)
    assert code == 0
    return data


def events(capsys: pytest.CaptureFixture[str], sim: SimProcess) -> list[str]:
    _, out, _ = run(capsys, "log", "--json", "--port", sim.pty)
    return [json.loads(line)["event"] for line in out.splitlines()]


def valves(sim: SimProcess) -> tuple[int, int]:
    """(refill valve, CAP valve) as the plant sees the board's pins, after a loop turn."""
    rig = sim.rig()
    try:
        rig.advance(100)
        plant = rig.measure()
    finally:
        rig.close()
    return plant["refill_valve"], plant["cap_valve"]


# --- the guided session -------------------------------------------------------------------------


def test_guided_refill(sim: SimProcess, capsys: pytest.CaptureFixture[str],
                       terminal: Callable[..., Terminal]) -> None:
    set_up(capsys, sim, days=5)
    t = terminal("16", "500", "500", "20")
    code, out, err = run(capsys, "refill", "--port", sim.pty)
    assert code == 0, err
    assert t.answers == [] and len(t.prompts) == 4
    assert "drained" in t.prompts[0].lower()
    assert "Second person" in t.prompts[2] and "at most 20" in t.prompts[3]
    assert "refill session open" in out and "Ctrl-C aborts" in out
    assert "expected to drain    16 mL" in out and "reservoir size       20 mL" in out
    assert "drained 16 mL, the pump expected 16 mL (0 %): agrees" in out
    assert "both entries 500 mcg/mL" in out
    assert "refilled: 20 mL at 500 mcg/mL (drained 16 mL, the pump expected 16 mL)" in out
    s = status(capsys, sim)
    assert (s["sessions"], s["reservoir_ul"], s["concentration_mcg_ml"]) == ([], "20000", 500)
    # the dates shown are the pump's at the program in force
    assert f"next refill due     {s['refill_at'][:16].replace('T', ' ')} UTC" in out
    assert f"low reservoir       {s['low_at'][:16].replace('T', ' ')} UTC (at 2 mL left)" in out
    assert f"runs dry            {s['dry_at'][:16].replace('T', ' ')} UTC" in out
    assert "continuous 400 mcg/day = 800 uL/day" in out and "alarms              none" in out
    assert events(capsys, sim)[-2:] == ["refill_begin", "refill_commit"]


def test_guided_confirms_mismatch_and_custom_concentration(
    sim: SimProcess, capsys: pytest.CaptureFixture[str], terminal: Callable[..., Terminal]
) -> None:
    set_up(capsys, sim)
    t = terminal("12", "CONFIRM", "lots", "300", "CONFIRM", "300", "25", "20")
    code, out, err = run(capsys, "refill", "--port", sim.pty)
    assert code == 0, err
    assert t.answers == []
    assert "drained 12 mL, the pump expected 20 mL (-40 %): more than 20 % off" in out
    assert "less came out than the pump expected" in out
    assert "300 mcg/mL is not a strength on the label" in out and "label 2.3" in out
    assert "the concentration changes from 500 to 300 mcg/mL" in out
    assert "'lots': a concentration is a whole number" in err  # asked again, not refused
    assert "25 mL is more than the reservoir holds (20 mL); again" in err
    assert "refilled: 20 mL at 300 mcg/mL" in out
    s = status(capsys, sim)
    assert (s["concentration_mcg_ml"], s["daily_dose_mcg"], s["sessions"]) == (300, "400", [])


def test_guided_with_some_flags(
    sim: SimProcess, capsys: pytest.CaptureFixture[str], terminal: Callable[..., Terminal]
) -> None:
    """Flags answer their questions; the rest is asked; a confirmation given as a flag is not
    asked for again."""
    set_up(capsys, sim)
    t = terminal("500", "20")
    code, out, err = run(capsys, "refill", "--drained-ml", "30", "-c", "500",
                         "--confirm", "drain_mismatch", "--port", sim.pty)
    assert code == 0, err
    assert [p.split(",")[0] for p in t.prompts] == [
        "Second person", "Volume in the reservoir after filling"]
    assert "more came out than the pump expected" in out


def test_guided_mismatch_declined_aborts(
    sim: SimProcess, capsys: pytest.CaptureFixture[str], terminal: Callable[..., Terminal]
) -> None:
    set_up(capsys, sim)
    terminal("12", "no")
    code, _, err = run(capsys, "refill", "--port", sim.pty)
    assert code == cli.EXIT_USAGE
    assert "refill aborted (refused)" in err and "refill valve shut" in err
    assert "pumpctl: the drained volume was not confirmed" in err
    s = status(capsys, sim)
    assert (s["sessions"], s["concentration_mcg_ml"], s["reservoir_ul"]) == ([], 500, "20000")
    assert events(capsys, sim)[-2:] == ["refill_begin", "refill_abort"]
    assert valves(sim) == (0, 0)


def test_guided_second_concentration_mismatch(
    sim: SimProcess, capsys: pytest.CaptureFixture[str], terminal: Callable[..., Terminal]
) -> None:
    set_up(capsys, sim)
    t = terminal("16", "1000", "100")
    code, _, err = run(capsys, "refill", "--port", sim.pty)
    assert code == cli.EXIT_USAGE and t.answers == []
    assert "the two concentration entries differ (1000 then 100 mcg/mL): refused" in err
    assert "refill aborted (refused)" in err
    s = status(capsys, sim)
    assert (s["sessions"], s["concentration_mcg_ml"]) == ([], 500)
    assert events(capsys, sim)[-1] == "refill_abort"


def test_ctrl_c_mid_guided_refill_aborts(
    sim: SimProcess, capsys: pytest.CaptureFixture[str], terminal: Callable[..., Terminal]
) -> None:
    set_up(capsys, sim)
    seen: dict[str, Any] = {}

    def ctrl_c() -> str:
        # the session is open while the person answers: the refill valve open, delivery held
        seen["valves"] = valves(sim)
        with PumpClient(sim.url, keys=sim.keys()) as pump:  # the pty is in use
            seen["sessions"] = pump.status().sessions
        raise KeyboardInterrupt

    terminal("20", "500", "500", ctrl_c)
    code, _, err = run(capsys, "refill", "--port", sim.pty)
    assert code == 130
    assert seen == {"valves": (1, 0), "sessions": ("refill",)}
    assert "refill aborted (interrupted: Ctrl-C)" in err and "refill valve shut" in err
    s = status(capsys, sim)
    assert (s["sessions"], s["reservoir_ul"], s["mode"]) == ([], "20000", "continuous")
    assert valves(sim) == (0, 0)
    assert events(capsys, sim)[-2:] == ["refill_begin", "refill_abort"]


def test_end_of_input_aborts(
    sim: SimProcess, capsys: pytest.CaptureFixture[str], terminal: Callable[..., Terminal]
) -> None:
    set_up(capsys, sim)
    terminal("20", EOFError())
    code, _, err = run(capsys, "refill", "--port", sim.pty)
    assert code == cli.EXIT_USAGE and "the input ended" in err
    assert status(capsys, sim)["sessions"] == []


def test_guided_pump_refusal_aborts(
    sim: SimProcess, capsys: pytest.CaptureFixture[str], terminal: Callable[..., Terminal]
) -> None:
    """What the host cannot check, the pump refuses at the commit; the session is aborted."""
    set_up(capsys, sim, dose="1400")  # at 50 mcg/mL: 28 mL/day, over the pump's 24
    terminal("20", "50", "50", "20")
    code, _, err = run(capsys, "refill", "--port", sim.pty)
    assert code == 4
    assert "refill aborted (the pump refused: pump_rate)" in err
    assert "LIMIT pump_rate" in err
    s = status(capsys, sim)
    assert (s["sessions"], s["concentration_mcg_ml"]) == ([], 500)


def test_guided_needs_a_terminal(sim: SimProcess, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    set_up(capsys, sim)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    code, _, err = run(capsys, "refill", "--fill-ml", "20", "--port", sim.pty)
    assert code == cli.EXIT_USAGE and "give --drained-ml, --concentration" in err
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)  # --json is for scripts: no prompts
    code, data = run_json(capsys, "refill", "--port", sim.pty)
    assert code == cli.EXIT_USAGE and data["error"]["type"] == "UsageError"
    code, _, err = run(capsys, "refill", "--drained-ml", "x", "--port", sim.pty)
    assert code == cli.EXIT_USAGE and "not a number" in err
    assert status(capsys, sim)["sessions"] == []  # no session was opened
    assert events(capsys, sim)[-1] == "program"


# --- flags: for scripts -------------------------------------------------------------------------


def test_scripted_refill_json(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    set_up(capsys, sim)
    code, data = run_json(capsys, "refill", "--drained-ml", "16", "--fill-ml", "18.5",
                          "-c", "1000", "-C", "1000", "--port", sim.pty)
    assert code == 0 and set(data) == DONE_KEYS
    assert (data["reservoir_ml"], data["concentration_mcg_ml"], data["expected_ml"]) == (
        "18.5", 1000, "20")
    s = status(capsys, sim)
    assert (data["low_at"], data["refill_at"]) == (s["low_at"], s["refill_at"])
    code, out, _ = run(capsys, "refill", "--drained-ml", "18.5", "--fill-ml", "20", "-c", "1000",
                       "-C", "1000", "--port", sim.pty)
    assert code == 0 and "refilled: 20 mL at 1000 mcg/mL" in out and "next refill due" in out


def test_scripted_overfill_refused(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    set_up(capsys, sim)
    code, data = run_json(capsys, "refill", "--drained-ml", "16", "--fill-ml", "25",
                          "-c", "500", "-C", "500", "--port", sim.pty)
    assert code == 4 and data["error"]["type"] == "Limit"
    assert (data["error"]["rule"], data["error"]["requested"], data["error"]["allowed"],
            data["error"]["unit"]) == ("overfill", 25_000_000, 20_000_000, "nL")
    code, _, err = run(capsys, "refill", "--drained-ml", "16", "--fill-ml", "25",
                       "-c", "500", "-C", "500", "--port", sim.pty)
    assert code == 4 and "asked 25 mL, at most 20 mL" in err
    assert "the refill session was aborted: nothing changed" in err
    s = status(capsys, sim)
    assert (s["sessions"], s["reservoir_ul"]) == ([], "20000")


def test_scripted_ctrl_c_aborts(sim: SimProcess, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    set_up(capsys, sim)

    def interrupted(self: PumpClient, fields: dict[str, Any]) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(PumpClient, "_commit", interrupted)
    code, _, err = run(capsys, "refill", "--drained-ml", "20", "--fill-ml", "20",
                       "-c", "500", "-C", "500", "--port", sim.pty)
    assert code == 130 and "refill aborted (interrupted: Ctrl-C)" in err
    assert status(capsys, sim)["sessions"] == []


def test_refill_needs_a_profile(sim: SimProcess, capsys: pytest.CaptureFixture[str],
                                terminal: Callable[..., Terminal]) -> None:
    t = terminal()
    code, data = run_json(capsys, "refill", "--drained-ml", "0", "--fill-ml", "20",
                          "-c", "500", "-C", "500", "--port", sim.pty)
    assert code == 4 and data["error"]["rule"] == "profile_required"
    code, _, err = run(capsys, "refill", "--port", sim.pty)  # guided: refused before any prompt
    assert code == 4 and "profile_required" in err and t.prompts == []


# --- refill calc --------------------------------------------------------------------------------


def test_calc_continuous(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "refill", "calc", "-c", "500", "--dose", "400",
                          "--start", "2027-01-01")
    assert code == 0 and set(data) == CALC_KEYS
    assert {k: data[k] for k in ("days_to_low", "days_to_empty", "days_to_refill", "low_at",
                                 "refill_at", "dry_at", "rate_ul_day", "mode")} == {
        "days_to_low": "22.5", "days_to_empty": "25", "days_to_refill": "15.5",
        "low_at": "2027-01-23T12:00:00+00:00", "refill_at": "2027-01-16T12:00:00+00:00",
        "dry_at": "2027-01-26T00:00:00+00:00", "rate_ul_day": "800", "mode": "continuous"}
    code, out, _ = run(capsys, "refill", "calc", "-c", "500", "--dose", "400",
                       "--start", "2027-01-01")
    assert code == 0 and "recommended refill date: 2027-01-16" in out
    assert "low reservoir (2 mL left)" in out and "7 d before low" in out


def test_calc_flex_and_40_ml(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "refill", "calc", "-c", "2000", "--reservoir-ml", "40",
                          "--step", "07:00=400", "--step", "22:00=480",
                          "--start", "2027-01-01T06:00+00:00", "--utc-offset", "60")
    assert code == 0 and data["mode"] == "flex" and data["fill_ml"] == "40"
    assert data["steps"] == [{"start_min": 420, "daily_dose_mcg": "400"},
                             {"start_min": 1320, "daily_dose_mcg": "480"}]
    assert data["daily_dose_mcg"] == "430" and data["utc_offset_min"] == 60
    # 76 000 mcg to the low level at 430 mcg a day: 176 whole days and a bit
    assert data["days_to_low"].startswith("176.") and data["days_to_refill"].startswith("169.")


def test_calc_refuses_what_the_pump_would(capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["-c", "500"], "give the program"),
        (["-c", "500", "--dose", "400", "--step", "07:00=400"], "not both"),
        (["-c", "500", "--dose", "400", "--fill-ml", "21"], "more than the reservoir holds"),
        (["-c", "500", "--step", "7=400"], "HH:MM"),
        (["-c", "500", "--step", "22:00=400", "--step", "07:00=300"], "order of the day"),
        (["-c", "50", "--dose", "1500"], "maximum rate"),
        (["-c", "3000", "--dose", "400"], "1 to 2000 mcg/mL"),
        (["-c", "500", "--dose", "400", "--start", "soon"], "not an ISO date"),
        (["-c", "500", "--dose", "400.0001"], "resolution"),
    ]
    for argv, message in cases:
        code, _, err = run(capsys, "refill", "calc", *argv)
        assert code == cli.EXIT_USAGE and message in err, (argv, err)


def test_calc_low_fill_is_due_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "refill", "calc", "-c", "500", "--dose", "400", "--fill-ml", "5",
                       "--start", "2027-03-01T10:00")
    assert code == 0 and "refill due at once" in out


def test_a_maintenance_increase_goes_with_the_refill_visit(
    sim: SimProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Label 2.6: in maintenance the dose rises only at a refill, +40 % at most (spinal).
    with PumpClient(sim.pty, keys=sim.keys()) as pump:
        pump.set_profile("spinal", 40, "maintenance", "1500", "0.2")
        pump.refill("20", 500, drained_ml="0", concentration_again=500)
        pump.set_continuous("400")
    rig = sim.rig()
    rig.advance(25 * 3_600_000)
    rig.close()
    schedule = tmp_path / "visit.toml"
    schedule.write_text('drug = "baclofen"\nconcentration = 500\n\n[continuous]\ndose = 560\n')
    code, _, err = run(capsys, "program", str(schedule), "--yes", "--port", sim.pty)
    assert code == 4 and "maintenance_at_refill" in err, err  # not outside a visit
    with PumpClient(sim.pty, keys=sim.keys()) as pump:
        drained = pump.status().reservoir_ul / 1000
    code, out, err = run(capsys, "refill", "--drained-ml", str(drained), "--fill-ml", "20",
                         "-c", "500", "-C", "500", "--program", str(schedule), "--yes",
                         "--port", sim.pty)
    assert code == 0, err
    assert "programmed continuous infusion: 560 mcg/day" in out and "refilled" in out
    with PumpClient(sim.pty, keys=sim.keys()) as pump:
        assert pump.program().daily_dose_mcg == 560
        assert pump.status().sessions == ()
        assert "escalation" in pump.alarm_state().alarms  # +40 %: the catheter notice


def test_a_refused_visit_change_keeps_the_refill(
    sim: SimProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with PumpClient(sim.pty, keys=sim.keys()) as pump:
        pump.set_profile("spinal", 40, "maintenance", "1500", "0.2")
        pump.refill("20", 500, drained_ml="0", concentration_again=500)
        pump.set_continuous("400")
    schedule = tmp_path / "visit.toml"
    schedule.write_text('drug = "baclofen"\nconcentration = 500\n\n[continuous]\ndose = 450\n')
    with PumpClient(sim.pty, keys=sim.keys()) as pump:
        drained = pump.status().reservoir_ul / 1000
    code, out, err = run(capsys, "refill", "--drained-ml", str(drained), "--fill-ml", "20",
                         "-c", "500", "-C", "500", "--program", str(schedule), "--yes",
                         "--port", sim.pty)
    assert code == 4 and "first_24h" in err, err  # still the first 24 h of infusion
    assert "refill goes on without the program change" in out and "refilled" in out
    with PumpClient(sim.pty, keys=sim.keys()) as pump:
        assert pump.program().daily_dose_mcg == 400
        assert pump.status().reservoir_ul == 20_000
