"""pumpctl screen and cap against the simulator: the screening ladder with its refusals, the
starting dose the label suggests, and the catheter access port session with its valve."""

from __future__ import annotations

from typing import Any

import pytest
from clikit import run, run_json

from hil.launcher import SimProcess
from host import cli

DAY_MS = 86_400_000
SCREENING_KEYS = {"next_dose_mcg", "next_at", "given", "phase", "suggestion", "ladder_done"}
SUGGESTION_KEYS = {"screening_dose_mcg", "daily_dose_mcg", "doubled_mcg_day",
                   "if_effect_over_8h_mcg_day", "text"}
GIVE_KEYS = {"kind", "dose_mcg", "volume_ul", "duration_s", "ends_at", "next_dose_mcg",
             "next_at"}
CAP_KEYS = {"cap_valve", "until", "sessions"}



pytestmark = pytest.mark.usefixtures("cli_env")




def set_up(capsys: pytest.CaptureFixture[str], sim: SimProcess, phase: str = "screening",
           age: str = "40", concentration: str = "50") -> None:
    """Over the simulator's pty (a socket:// port takes 0.3 s to close)."""
    code, _ = run_json(capsys, "profile", "set", "--origin", "spinal", "--age", age,
                       "--phase", phase, "--ceiling", "1500", "--port", sim.pty)
    assert code == 0
    code, _ = run_json(capsys, "refill", "--fill-ml", "20", "-c", concentration,
                       "-C", concentration, "--drained-ml", "0", "--port", sim.pty)
    assert code == 0


def advance(sim: SimProcess, ms: int) -> dict[str, Any]:
    """Let virtual time pass; the plant after it."""
    rig = sim.rig()
    try:
        rig.advance(ms)
        return rig.measure()
    finally:
        rig.close()


# --- screening ----------------------------------------------------------------------------------


def test_screening_outside_the_screening_phase_is_refused(
    sim: SimProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    set_up(capsys, sim, phase="titration", concentration="500")
    code, data = run_json(capsys, "screen", "give", "50", "--port", sim.pty)
    assert code == 4 and data["error"]["type"] == "InvalidState"
    assert (data["error"]["rule"], data["error"]["unit"], data["error"]["request"]) == (
        "phase", "phase", "SCREEN")
    code, _, err = run(capsys, "screen", "give", "50", "--port", sim.pty)
    assert code == 4
    assert "the pump is in the titration phase: screening boluses only" in err
    assert "INVALID_STATE phase): phase titration, needs screening" in err
    code, data = run_json(capsys, "screen", "--port", sim.pty)
    assert code == 0 and set(data) == SCREENING_KEYS
    assert (data["phase"], data["given"], data["suggestion"]) == ("titration", [], None)
    code, out, _ = run(capsys, "screen", "status", "--port", sim.pty)
    assert "the pump is in the titration phase" in out and "no screening bolus given" in out


def test_screening_ladder(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    set_up(capsys, sim)
    code, data = run_json(capsys, "screen", "--port", sim.pty)
    assert (code, data) == (0, {"next_dose_mcg": "50", "next_at": None, "given": [],
                                "phase": "screening", "suggestion": None,
                                "ladder_done": False})
    code, out, _ = run(capsys, "screen", "--port", sim.pty)
    assert "next allowed: at most 50 mcg, from now" in out

    # the first bolus, then the pump's refusals with their rule, the asked and the limit
    code, data = run_json(capsys, "screen", "give", "50", "--port", sim.pty)
    assert code == 0 and set(data) == GIVE_KEYS
    assert (data["kind"], data["dose_mcg"], data["volume_ul"], data["duration_s"]) == (
        "screening", "50", "1000", 60)
    assert (data["next_dose_mcg"], data["next_at"]) == ("75", "2027-01-02T00:00:00+00:00")
    code, data = run_json(capsys, "screen", "give", "75", "--port", sim.pty)
    assert code == 4 and data["error"]["type"] == "TooSoon"
    assert (data["error"]["rule"], data["error"]["wait_s"]) == ("screening_interval", 86_400)
    code, _, err = run(capsys, "screen", "give", "75", "--port", sim.pty)
    assert "screening so far: 50 mcg; next: at most 75 mcg from 2027-01-02 00:00 UTC" in err
    assert "TOO_SOON screening_interval" in err and "allowed in 1 d" in err

    code, out, _ = run(capsys, "screen", "--port", sim.pty)
    assert "2027-01-01 00:00 UTC" in out and "50 mcg" in out and "1 min" in out
    assert "next allowed: at most 75 mcg, from 2027-01-02 00:00 UTC" in out
    assert "suggested starting dose (label 2.5), if the 50 mcg bolus gave a positive" in out
    assert "  100 mcg/day: the screening dose doubled, over 24 h" in out
    assert "  50 mcg/day: the screening dose over 24 h, if its effect lasted more than 8" in out
    assert "not a prescription" in out and "4 to 8 hours" in out

    advance(sim, DAY_MS)
    code, data = run_json(capsys, "screen", "give", "100", "--port", sim.pty)
    assert code == 4 and (data["error"]["rule"], data["error"]["requested"],
                          data["error"]["allowed"], data["error"]["unit"]) == (
        "screening_dose", 100_000, 75_000, "ng")
    code, _, err = run(capsys, "screen", "give", "100", "--port", sim.pty)
    assert "LIMIT screening_dose): asked 100 mcg, at most 75 mcg" in err
    code, data = run_json(capsys, "screen", "give", "75", "--minutes", "0.5", "--port", sim.pty)
    assert code == 4 and (data["error"]["rule"], data["error"]["requested"],
                          data["error"]["allowed"]) == ("screening_duration", 30, 60)
    code, out, _ = run(capsys, "screen", "give", "75", "--minutes", "2", "--port", sim.pty)
    assert code == 0 and "screening bolus: 75 mcg (1500 uL) over 2 min" in out
    assert "at most 100 mcg, no sooner than 2027-01-03 00:00 UTC" in out

    # the dose that worked, and how long its effect lasted, as the clinician says
    code, data = run_json(capsys, "screen", "status", "--port", sim.pty)
    assert len(data["given"]) == 2 and set(data["suggestion"]) == SUGGESTION_KEYS
    assert (data["suggestion"]["screening_dose_mcg"], data["suggestion"]["daily_dose_mcg"],
            data["suggestion"]["doubled_mcg_day"],
            data["suggestion"]["if_effect_over_8h_mcg_day"]) == ("75", None, "150", "75")
    assert data["given"][1] == {"time": "2027-01-02T00:00:00+00:00", "dose_mcg": "75",
                                "duration_s": 120}
    code, data = run_json(capsys, "screen", "status", "--effective", "50", "--lasted-over-8h",
                          "--port", sim.pty)
    assert code == 0 and data["suggestion"]["daily_dose_mcg"] == "50"
    code, out, _ = run(capsys, "screen", "status", "--effective", "50", "--lasted-over-8h",
                       "--port", sim.pty)
    assert "if the 50 mcg bolus" in out and "100 mcg/day" not in out
    code, _, err = run(capsys, "screen", "status", "--effective", "60", "--port", sim.pty)
    assert code == cli.EXIT_USAGE and "not a screening dose the pump gave (50 mcg, 75 mcg)" in err

    # the last step of the ladder
    advance(sim, DAY_MS)
    code, out, err = run(capsys, "screen", "give", "100", "--port", sim.pty)
    assert code == 0, err
    assert "screening bolus: 100 mcg (2000 uL) over 2 min" in out  # the pump's 1 mL/min
    assert "that was the last screening dose" in out
    assert "should not be considered candidates" in out
    code, data = run_json(capsys, "screen", "--port", sim.pty)
    assert (data["next_dose_mcg"], data["next_at"], data["ladder_done"]) == ("0", None, True)
    code, out, _ = run(capsys, "screen", "--port", sim.pty)
    assert "no further screening dose: 100 mcg is the maximum" in out


def test_screening_child_may_start_at_25(sim: SimProcess,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    set_up(capsys, sim, age="6")
    code, data = run_json(capsys, "screen", "give", "25", "--port", sim.pty)
    assert code == 0 and data["dose_mcg"] == "25" and data["next_dose_mcg"] == "50"
    code, data = run_json(capsys, "screen", "--port", sim.pty)
    assert data["suggestion"]["doubled_mcg_day"] == "50"


def test_screen_give_bad_minutes(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    for minutes in ("soon", "-1", "0.001"):
        with pytest.raises(SystemExit) as e:
            cli.main(["screen", "give", "50", "--minutes", minutes, "--port", sim.pty])
        assert e.value.code == cli.EXIT_USAGE
    assert "minutes" in capsys.readouterr().err


# --- the catheter access port -------------------------------------------------------------------


def test_cap_open_status_close(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    set_up(capsys, sim)
    code, data = run_json(capsys, "cap", "--port", sim.pty)
    assert (code, data) == (0, {"cap_valve": "closed", "until": None, "sessions": []})
    code, data = run_json(capsys, "cap", "open", "--minutes", "5", "--port", sim.pty)
    assert code == 0 and set(data) == CAP_KEYS | {"duration_s", "warning"}
    assert (data["cap_valve"], data["until"], data["duration_s"], data["sessions"]) == (
        "open", "2027-01-01T00:05:00+00:00", 300, ["cap"])
    assert "never fill the reservoir through it" in data["warning"]
    assert "life-threatening overdose (label 5.1)" in data["warning"]
    plant = advance(sim, 100)
    assert (plant["cap_valve"], plant["refill_valve"]) == (1, 0)
    code, data = run_json(capsys, "cap", "status", "--port", sim.pty)
    assert (code, data) == (0, {"cap_valve": "open", "until": "2027-01-01T00:05:00+00:00",
                                "sessions": ["cap"]})
    code, out, _ = run(capsys, "cap", "--port", sim.pty)
    assert "CAP valve open, closes by itself at 2027-01-01 00:05 UTC" in out
    _, status = run_json(capsys, "status", "--port", sim.pty)
    assert status["sessions"] == ["cap"]

    # one session at a time: no second CAP session, no refill while the CAP is open
    code, data = run_json(capsys, "cap", "open", "--port", sim.pty)
    assert code == 4 and data["error"]["type"] == "InvalidState"
    code, _, err = run(capsys, "refill", "--drained-ml", "0", "--fill-ml", "20", "-c", "500",
                       "-C", "500", "--port", sim.pty)
    assert code == 4 and "a refill or CAP session is open" in err

    code, data = run_json(capsys, "cap", "close", "--port", sim.pty)
    assert (code, data) == (0, {"cap_valve": "closed", "until": None, "sessions": []})
    assert advance(sim, 100)["cap_valve"] == 0
    code, data = run_json(capsys, "cap", "close", "--port", sim.pty)
    assert code == 4 and data["error"]["type"] == "InvalidState"
    code, _, err = run(capsys, "cap", "close", "--port", sim.pty)
    assert "no CAP session is open" in err


def test_cap_open_human_warns_and_times_out(
    sim: SimProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "cap", "open", "--minutes", "1", "--port", sim.pty)
    assert code == 0
    assert out.index("never fill the reservoir through it") < out.index("CAP session open")
    assert "CAP session open for 1 min: CAP valve open, closes by itself at " \
           "2027-01-01 00:01 UTC" in out
    assert "pumpctl cap close" in out
    assert advance(sim, 61_000)["cap_valve"] == 0
    code, data = run_json(capsys, "cap", "--port", sim.pty)
    assert data == {"cap_valve": "closed", "until": None, "sessions": []}
    code, out, _ = run(capsys, "log", "--port", sim.pty)
    assert "cap_end" in out and "timed out" in out


def test_cap_minutes_bounds(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    for minutes in ("0.5", "31", "ten"):
        with pytest.raises(SystemExit) as e:
            cli.main(["cap", "open", "--minutes", minutes, "--port", sim.pty])
        assert e.value.code == cli.EXIT_USAGE
    assert "1 to 30 minutes" in capsys.readouterr().err
    _, data = run_json(capsys, "cap", "--port", sim.pty)
    assert data["cap_valve"] == "closed"


def test_cap_needs_the_clinician(sim: SimProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "cap", "open", "--role", "patient", "--port", sim.pty)
    assert code == 4 and data["error"]["type"] == "WrongRole"
    _, data = run_json(capsys, "cap", "--port", sim.pty)
    assert data["cap_valve"] == "closed"


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "screen" in out and "cap" in out and "refill" in out
