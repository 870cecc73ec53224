"""pumpctl program FILE against the simulator: the review (human and --json), sending with
--yes or at a prompt, --dry-run, bad files and pump refusals sending nothing more; and the
review's rules on their own (no pump)."""

from __future__ import annotations

import builtins
import io
import json
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from clikit import run

from hil.launcher import SimProcess
from host import cli
from host import schedule as sched
from host.cli import program as prog
from host.client import PatientBolus, Profile, Program, Screening, ScreeningDose, Status, Step

REVIEW_KEYS = {"file", "description", "pump", "old", "new", "changes", "rules", "confirm",
               "sends"}
SIDE_KEYS = {"mode", "daily_dose_mcg", "rate_ul_day", "utc_offset_min", "timezone", "steps",
             "taper", "patient_bolus", "refill_at", "dry_at", "dates_from"}
RULE_KEYS = {"rule", "text", "status", "detail", "confirm"}
RESULT_KEYS = {"status", "applied", "not_applied"}

FLEX = """\
drug = "baclofen"
concentration = 500
description = "night +20 %"

[flex]
utc_offset = "+01:00"

[[flex.steps]]
start = "05:00"
dose = 400

[[flex.steps]]
start = "20:00"
dose = 480

[patient_bolus]
dose = 25
duration = "10 min"
lockout = "4 h"
max_per_day = 3
"""



pytestmark = pytest.mark.usefixtures("cli_env")



def run_lines(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict]]:
    code, out, _ = run(capsys, *argv, "--json")
    return code, [json.loads(line) for line in out.splitlines()]


def ready(sim: SimProcess, daily: str = "400", ceiling: str = "1500",
          started: bool = True) -> None:
    """Profile, 20 mL at 500 mcg/mL, a program in force; infusion started two days ago (so
    an increase is allowed now) unless started is False (it starts with this program)."""
    with sim.client() as pump:
        clock = pump.status().clock
        pump.set_profile("spinal", 40, "titration", ceiling,
                         infusion_start=clock - timedelta(days=2) if started else None)
        pump.refill("20", 500)
        pump.set_continuous(daily)


def snapshot(sim: SimProcess) -> tuple[int, dict, dict]:
    """The event log's length, the program, the patient-bolus settings."""
    with sim.client() as pump:
        return (pump.read_log(0, 1).total, pump.program().to_dict(),
                pump.patient_bolus_state().to_dict())


def write(tmp_path: Path, text: str, name: str = "schedule.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# -- sent --------------------------------------------------------------------------------------


def test_review_and_send_with_yes_json(sim: SimProcess, capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    ready(sim)
    code, lines = run_lines(capsys, "program", write(tmp_path, FLEX), "--yes", "--port",
                            sim.url)
    assert code == 0 and len(lines) == 2
    review, result = lines[0]["review"], lines[1]["result"]
    assert set(review) == REVIEW_KEYS
    assert set(review["old"]) == SIDE_KEYS and set(review["new"]) == SIDE_KEYS | {
        "bolus_duration_s"}
    assert all(set(rule) == RULE_KEYS for rule in review["rules"])
    assert review["old"]["mode"] == "continuous" and review["old"]["daily_dose_mcg"] == "400"
    assert review["old"]["patient_bolus"] == {"enabled": False}
    new = review["new"]
    assert (new["mode"], new["daily_dose_mcg"], new["rate_ul_day"], new["utc_offset_min"]) == (
        "flex", "430", "860", 60)
    assert new["steps"] == [
        {"start": "05:00", "daily_dose_mcg": "400", "rate_ul_day": "800"},
        {"start": "20:00", "daily_dose_mcg": "480", "rate_ul_day": "960"}]
    assert new["patient_bolus"] == {"enabled": True, "dose_mcg": "25", "duration_s": 600,
                                    "lockout_s": 14400, "max_per_day": 3}
    assert review["changes"] == {"program": True, "patient_bolus": True,
                                 "daily_dose_pct": "+7.5"}
    assert review["sends"] == ["SET_FLEX", "SET_PATIENT_BOLUS"]
    assert review["confirm"] == {"needed": [], "given": []}
    titration = next(r for r in review["rules"] if r["rule"] == "titration_step")
    assert titration["status"] == "ok"
    assert titration["text"] == "titration: at most +30 % per 24 h (label 2.5)"
    assert review["pump"]["concentration_mcg_ml"] == 500
    assert set(result) == RESULT_KEYS | {"refill_at", "dry_at"}
    assert result["status"] == "applied" and result["not_applied"] == []
    assert result["applied"]["program"]["steps"] == [
        {"start_min": 300, "daily_dose_mcg": "400"}, {"start_min": 1200, "daily_dose_mcg": "480"}]
    assert result["applied"]["patient_bolus"]["dose_mcg"] == "25"
    # The review's estimate is the pump's own date (the simulator's clock stands still).
    assert (new["refill_at"], new["dry_at"]) == (result["refill_at"], result["dry_at"])
    _, program, pb = snapshot(sim)
    assert program["mode"] == "flex" and program["utc_offset_min"] == 60
    assert (pb["dose_mcg"], pb["lockout_s"], pb["max_per_day"]) == ("25", 14400, 3)


def test_human_review_side_by_side(sim: SimProcess, capsys: pytest.CaptureFixture[str],
                                   tmp_path: Path) -> None:
    ready(sim)
    code, out, _ = run(capsys, "program", write(tmp_path, FLEX), "--yes", "--port", sim.url)
    assert code == 0
    for text in ("now on the pump", "continuous", "flex", "400 mcg/day", "+7.5 %",
                 "800 uL/day = 0.8 mL/day", "mean 860 uL/day = 0.86 mL/day", "UTC+01:00",
                 "05:00  400 mcg/day  800 uL/day", "20:00  480 mcg/day  960 uL/day  (+20.0 %)",
                 "25 mcg over 10 min, lockout 4 h, at most 3 a day", "refill due",
                 "titration: at most +30 % per 24 h (label 2.5)",
                 "start a step 2 h before the effect is wanted (label 2.4)",
                 "Sends: SET_FLEX, then SET_PATIENT_BOLUS",
                 "programmed flex day: 05:00 400, 20:00 480 mcg/day",
                 "patient boluses: 25 mcg over 10 min"):
        assert text in out, text


def test_a_taper(sim: SimProcess, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ready(sim, daily="400")
    path = write(tmp_path, 'drug = "baclofen"\nconcentration = 500\n[taper]\ntarget = 200\n'
                 "days = 14\n")
    code, lines = run_lines(capsys, "program", path, "--yes", "--port", sim.url)
    assert code == 0
    review, result = lines[0]["review"], lines[1]["result"]
    assert review["new"]["taper"]["step_mcg_day"] == "14.286"
    assert review["changes"]["daily_dose_pct"] == "-50.0" and review["sends"] == ["SET_TAPER"]
    assert result["applied"]["taper"]["step_mcg_day"] == "14.286"
    assert (review["new"]["refill_at"], review["new"]["dry_at"]) == (
        result["refill_at"], result["dry_at"])
    assert snapshot(sim)[1]["mode"] == "taper"


# -- nothing sent ----------------------------------------------------------------------------------


def test_dry_run_and_an_unchanged_schedule_send_nothing(
    sim: SimProcess, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ready(sim)
    before = snapshot(sim)
    code, lines = run_lines(capsys, "program", write(tmp_path, FLEX), "--dry-run", "--yes",
                            "--port", sim.url)
    assert code == 0 and lines[0]["review"]["sends"] == ["SET_FLEX", "SET_PATIENT_BOLUS"]
    assert lines[1]["result"] == {"status": "dry_run", "applied": {},
                                  "not_applied": ["SET_FLEX", "SET_PATIENT_BOLUS"]}
    code, out, _ = run(capsys, "program", write(tmp_path, FLEX), "--dry-run", "--port", sim.url)
    assert code == 0 and "dry run: nothing sent" in out
    same = write(tmp_path, 'drug = "baclofen"\nconcentration = 500\n[continuous]\ndose = 400\n')
    code, out, _ = run(capsys, "program", same, "--yes", "--port", sim.url)
    assert code == 0 and "Sends: nothing (the pump already runs this schedule)" in out
    assert snapshot(sim) == before


def test_a_bad_file_sends_nothing(sim: SimProcess, capsys: pytest.CaptureFixture[str],
                                  tmp_path: Path) -> None:
    ready(sim)
    before = snapshot(sim)
    bad = write(tmp_path, FLEX.replace("dose = 480", "dose = 0").replace('"4 h"', "4"))
    code, lines = run_lines(capsys, "program", bad, "--yes", "--port", sim.url)
    assert code == cli.EXIT_USAGE
    assert lines[0] == {"problems": [
        {"file": bad, "line": 14, "field": "flex.steps[2].dose",
         "message": "0 mcg/day: a dose must be more than 0"},
        {"file": bad, "line": 19, "field": "patient_bolus.lockout",
         "message": '4: give the unit, e.g. "4 min" or "4 h"'}]}
    assert lines[1]["error"]["type"] == "UsageError"
    code, _, err = run(capsys, "program", bad, "--port", sim.url)
    assert code == cli.EXIT_USAGE
    assert err.splitlines() == [
        f"pumpctl: {bad}: 2 problems, nothing sent:",
        f"{bad}:14: flex.steps[2].dose: 0 mcg/day: a dose must be more than 0",
        f'{bad}:19: patient_bolus.lockout: 4: give the unit, e.g. "4 min" or "4 h"']
    # Checked before the port is opened: no pump needed to hear what is wrong with it.
    code, _, err = run(capsys, "program", bad, "--port", "socket://127.0.0.1:1")
    assert code == cli.EXIT_USAGE and "flex.steps[2].dose" in err
    # Wrong for this pump: its reservoir holds 500 mcg/mL, its ceiling is 1500 mcg/day.
    other = write(tmp_path, FLEX.replace("concentration = 500", "concentration = 1000")
                  .replace("dose = 480", "dose = 1600"))
    code, _, err = run(capsys, "program", other, "--yes", "--port", sim.url)
    assert code == cli.EXIT_USAGE
    assert err.splitlines()[1:] == [
        f"{other}:2: concentration: the file says 1000 mcg/mL but the reservoir holds "
        "500 mcg/mL: a concentration changes only through a refill (pumpctl refill)",
        f"{other}:14: flex.steps[2].dose: 1600 mcg/day is over the profile's hard ceiling "
        "1500 mcg/day"]
    assert snapshot(sim) == before  # no event logged, program and limits as they were


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_confirmation_at_the_prompt_or_by_flags(
    sim: SimProcess, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    ready(sim, daily="900", ceiling="2000")
    before = snapshot(sim)
    high = write(tmp_path, 'drug = "baclofen"\nconcentration = 500\n[continuous]\n'
                 "dose = 1100\n")
    code, _, err = run(capsys, "program", high, "--port", sim.url)  # no terminal, no --yes
    assert code == cli.EXIT_USAGE
    assert "not sent: confirm with --yes and --confirm high_dose" in err
    code, lines = run_lines(capsys, "program", high, "--yes", "--port", sim.url)
    assert code == cli.EXIT_USAGE and lines[1]["result"]["status"] == "not_sent"
    assert lines[0]["review"]["confirm"] == {"needed": ["high_dose"], "given": []}
    assert "not sent: this change needs --confirm high_dose" in lines[2]["error"]["message"]
    assert snapshot(sim) == before

    prompts: list[str] = []
    answers = ["high_dose", "no"]

    def fake_input(prompt: str = "") -> str:
        prompts.append(prompt)
        return answers.pop(0)

    monkeypatch.setattr(sys, "stdin", Tty())
    monkeypatch.setattr(builtins, "input", fake_input)
    code, out, err = run(capsys, "program", high, "--port", sim.url)
    assert code == cli.EXIT_USAGE and "not sent: you did not type yes" in err
    assert "above 1000 mcg/day needs confirmation (label 2.6)" in out
    assert prompts == ["Type high_dose to confirm it: ", "Send this to the pump? Type yes to "
                       "send: "]
    assert snapshot(sim) == before
    answers[:] = ["high_dose", "yes"]
    code, out, _ = run(capsys, "program", high, "--port", sim.url)
    assert code == 0 and "programmed continuous infusion: 1100 mcg/day" in out
    # A script: --yes with the confirmation named.
    answers[:] = []
    monkeypatch.setattr(sys, "stdin", io.StringIO())
    back = write(tmp_path, 'drug = "baclofen"\nconcentration = 500\n[continuous]\n'
                 "dose = 800\n", "back.toml")
    code, lines = run_lines(capsys, "program", back, "--yes", "--confirm", "large_decrease",
                            "--port", sim.url)
    assert code == 0 and lines[1]["result"]["status"] == "applied"
    assert lines[0]["review"]["confirm"] == {"needed": ["large_decrease"],
                                             "given": ["large_decrease"]}


# -- the pump refuses ----------------------------------------------------------------------------


def test_a_pump_refusal_shows_rule_requested_allowed(
    sim: SimProcess, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ready(sim, started=False)  # infusion starts with this program: no increase for 24 h
    before = snapshot(sim)
    more = write(tmp_path, FLEX)
    code, lines = run_lines(capsys, "program", more, "--yes", "--port", sim.url)
    assert code == 4
    rule = next(r for r in lines[0]["review"]["rules"] if r["rule"] == "first_24h")
    assert rule["status"] == "refusal_expected"
    assert lines[1]["result"] == {"status": "refused", "applied": {},
                                  "not_applied": ["SET_FLEX", "SET_PATIENT_BOLUS"]}
    error = lines[2]["error"]
    assert (error["type"], error["rule"], error["requested"], error["allowed"],
            error["unit"], error["request"]) == (
        "TooSoon", "first_24h", 430_000, 400_000, "ng/day", "SET_FLEX")
    assert error["wait_s"] == 86_400
    code, out, err = run(capsys, "program", more, "--yes", "--port", sim.url)
    assert code == 4
    assert "nothing applied: the pump refused the program; not sent: the patient-bolus " \
        "limits" in out
    assert "rule first_24h (label 2.5): requested 430 mcg/day, allowed 400 mcg/day; allowed " \
        "in 1 d" in out
    assert "pumpctl: pump refused (TOO_SOON first_24h)" in err
    total, program, pb = snapshot(sim)
    assert (program, pb) == before[1:] and total == before[0] + 2  # two refusals logged
    with sim.client() as pump:
        assert [e.event for e in pump.events(before[0])] == ["refused", "refused"]


def test_limits_refused_after_the_program_was_applied(
    sim: SimProcess, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    ready(sim, ceiling="500")
    # The host would catch it; without its check the pump is the guard.
    monkeypatch.setattr(sched, "check_with_pump", lambda *_: [])
    path = write(tmp_path, FLEX.replace("max_per_day = 3", "max_per_day = 4"))
    code, lines = run_lines(capsys, "program", path, "--yes", "--port", sim.url)
    assert code == 4
    result = lines[1]["result"]
    assert result["status"] == "partly_applied" and result["not_applied"] == [
        "SET_PATIENT_BOLUS"]
    assert result["applied"]["program"]["mode"] == "flex"
    assert lines[2]["error"]["rule"] == "bolus_ceiling"
    _, program, pb = snapshot(sim)
    assert program["mode"] == "flex" and pb["dose_mcg"] == "0"
    path = write(tmp_path, FLEX.replace("dose = 480", "dose = 460")
                 .replace("max_per_day = 3", "max_per_day = 4"), "b.toml")
    code, out, _ = run(capsys, "program", path, "--yes", "--port", sim.url)
    assert code == 4
    assert ("applied only in part: the program applied; the pump refused the patient-bolus "
            "limits") in out
    assert "rule bolus_ceiling (patient profile): requested 25 mcg, allowed 19.375 mcg" in out


# -- the rules, without a pump -------------------------------------------------------------------

CLOCK = datetime(2027, 1, 10, tzinfo=UTC)
State = tuple[Status, Profile, Program, PatientBolus]


def state(daily: str = "400", phase: str = "titration", origin: str = "spinal", age: int = 40,
          sessions: tuple[str, ...] = (), started: datetime | None = CLOCK - timedelta(days=9),
          ) -> State:
    status = Status(mode="continuous", phase=phase, daily_dose_mcg=Decimal(daily),
                    concentration_mcg_ml=500, rate_ul_day=Decimal(0), bolus="none",
                    bolus_left_mcg=Decimal(0), last_24h_mcg=Decimal(0),
                    delivered_ul=Decimal(0), delivered_mcg=Decimal(0),
                    reservoir_ul=Decimal(20000), uptime_s=0, clock=CLOCK, low_at=None,
                    refill_at=None, dry_at=None, alarms=(), sessions=sessions,
                    battery_v=Decimal("3.9"), frame_errors=0)
    profile = Profile(origin=origin, age_years=age, phase=phase, ceiling_mcg_day=Decimal(2000),
                      catheter_ml=Decimal(0), infusion_start=started)
    program = Program(mode="continuous" if Decimal(daily) else "stopped",
                      daily_dose_mcg=Decimal(daily), rate_ul_day=Decimal(0), utc_offset_min=0,
                      steps=(Step(0, Decimal(daily)),) if Decimal(daily) else ())
    pb = PatientBolus(Decimal(0), 600, 0, 0, 0, None)
    return status, profile, program, pb


def rules_of(text: str, st: State | None = None,
             screening: Screening | None = None) -> dict[str, dict]:
    s = sched.loads('drug = "baclofen"\nconcentration = 500\n' + text, now=CLOCK)
    status, profile, program, pb = st or state()
    r = prog.build_review(s, status, profile, program, pb, 250, screening)
    return {rule["rule"]: rule for rule in r["rules"]}


def test_rules_for_increases_by_phase_and_patient() -> None:
    up = "[continuous]\ndose = 600\n"
    assert rules_of(up)["titration_step"]["status"] == "refusal_expected"  # +50 % > +30 %
    assert "at most 520 mcg/day" in rules_of(up)["titration_step"]["detail"]
    child = rules_of("[continuous]\ndose = 450\n", state(age=12))
    assert child["titration_step"]["text"] == "titration: at most +15 % per 24 h (label 2.5)"
    assert child["titration_step"]["status"] == "ok"
    cerebral = rules_of("[continuous]\ndose = 470\n", state(origin="cerebral"))
    assert cerebral["titration_step"]["status"] == "refusal_expected"
    visit = rules_of("[continuous]\ndose = 520\n", state(phase="maintenance"))
    assert visit["maintenance_step"]["text"] == ("maintenance: increases only at a refill "
                                                 "visit, at most +40 % (label 2.6)")
    assert visit["maintenance_step"]["status"] == "refusal_expected"
    assert "no refill session is open" in visit["maintenance_step"]["detail"]
    at_refill = rules_of("[continuous]\ndose = 520\n",
                         state(phase="maintenance", sessions=("refill",)))
    assert at_refill["maintenance_step"]["status"] == "ok"
    early = rules_of("[continuous]\ndose = 450\n", state(started=CLOCK - timedelta(hours=3)))
    assert early["first_24h"]["status"] == "refusal_expected"
    assert "increases from 2027-01-10 21:00 UTC" in early["first_24h"]["detail"]


def test_rules_that_need_a_confirmation() -> None:
    cut = rules_of("[continuous]\ndose = 300\n")
    assert cut["large_decrease"]["status"] == "confirm"
    assert cut["large_decrease"]["text"] == ("a cut of more than 20 % needs confirmation "
                                             "(label 2.6, 5.5)")
    assert rules_of("[continuous]\ndose = 320\n")["large_decrease"]["status"] == "ok"
    # Exactly as the pump compares: 9.493 of 11.867 mcg/day is a 20.0004 % cut
    just_over = rules_of("[continuous]\ndose = 9.493\n", state(daily="11.867"))
    assert just_over["large_decrease"]["status"] == "confirm"
    assert rules_of("[continuous]\ndose = 9.494\n",
                    state(daily="11.867"))["large_decrease"]["status"] == "ok"
    high = rules_of("[continuous]\ndose = 1100\n", state(daily="1000"))
    assert high["high_dose"]["confirm"] == "high_dose"
    assert high["high_dose"]["text"] == "above 1000 mcg/day needs confirmation (label 2.6)"
    steep = rules_of("[taper]\ntarget = 20\ndays = 14\n")
    assert steep["large_decrease"]["confirm"] == "large_decrease"  # the last day cuts 57.6 %
    assert steep["large_decrease"]["detail"] == "the last day cuts 57.6 %"
    assert "large_decrease" not in rules_of("[taper]\ntarget = 200\ndays = 21\n")


def test_rules_for_a_first_program_and_patient_boluses() -> None:
    given = (ScreeningDose(CLOCK, Decimal(75), 60),)
    first = rules_of("[continuous]\ndose = 200\n", state(daily="0", started=None),
                     screening=Screening(Decimal(100), None, given))
    assert first["starting_dose"]["status"] == "refusal_expected"
    assert first["starting_dose"]["detail"] == "at most 150 mcg/day"
    assert first["first_24h"]["status"] == "note"
    pb = rules_of('[continuous]\ndose = 400\n[patient_bolus]\ndose = 20\nduration = "10 min"\n'
                  'lockout = "8 h"\nmax_per_day = 6\n')
    assert pb["bolus_ceiling"]["detail"] == (
        "6 x 20 mcg = 120 mcg a day; room under the ceiling 1600 mcg; with a 8 h lockout at "
        "most 3 fit in 24 h")


def test_estimated_dates_of_a_taper_are_at_its_starting_dose() -> None:
    status, _profile, _program, _pb = state()
    s = sched.loads('drug = "baclofen"\nconcentration = 500\n[taper]\ntarget = 200\n'
                    "days = 14\n", now=CLOCK)
    refill, dry = prog.estimate_dates(s, status, 400_000, 250)
    # 20 mL at 800 uL/day: dry in 25 days; the low level (2 mL) 2.5 days before, the refill
    # due 7 days before that.
    assert dry == CLOCK + timedelta(days=25)
    assert refill == CLOCK + timedelta(days=25 - 2.5 - 7)
