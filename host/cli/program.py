"""pumpctl program FILE: send a schedule file (host/schedule.py) after a review.

The file is read and checked before the pump is touched (a bad file: every problem with its
line, exit 2, nothing sent). Then the pump's state is read (status, profile, program,
patient-bolus settings) and checked against the file; the review shows the program in force
beside the new one, the change, the rules that apply and the refill date, and nothing is
sent until the user confirms: `yes` typed at a terminal (and the name of each confirmation
the change needs), or --yes for a script, which must name those confirmations with
--confirm NAME (a file cannot pre-confirm). --dry-run shows the review and sends nothing.

The program goes first, then the patient-bolus limits; after a refusal nothing more is sent,
and the output says what was applied. --json prints one object per line: {"review": ...},
then {"result": {"status": ...}} (applied, dry_run, unchanged, not_sent, refused,
partly_applied), then, on a non-zero exit, pumpctl's {"error": ...} (or {"problems": [...]}
first, for a file with problems).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from rich import box
from rich.table import Table

from firmware import config as board
from firmware.core import rules as label
from firmware.core import schedule as day
from host import errors
from host import schedule as sched
from host.cli.therapy import program_line
from host.cli.ui import Commands, UsageError, confirm_option, num, out, when
from host.client import (
    PatientBolus,
    Profile,
    Program,
    PumpClient,
    Screening,
    Status,
)
from host.units import duration, fmt, ng_to_mcg
from protocol import messages as m

CONFIRMATIONS = ("high_dose", "large_decrease")
DAY_S = 86400
MARK = {"ok": "[green]ok[/]", "confirm": "[bold yellow]confirm[/]",
        "refusal_expected": "[bold red]expect refusal[/]", "note": "[dim]note[/]"}


def _ng(mcg: Decimal) -> int:
    return int(mcg * 1000)


def _dec(ng: int) -> str:
    return fmt(ng_to_mcg(ng))


def _ul_day(dose_ng: int, conc: int) -> str | None:
    """The volume rate of a daily dose at a concentration: ng/day / (ng/uL) = uL/day."""
    if not conc:
        return None
    return num(Decimal(dose_ng) / conc, 3)


def _pct(new: int, old: int) -> str | None:
    if not old:
        return None
    pct = (Decimal(new - old) * 100 / old).quantize(Decimal("0.1"), ROUND_HALF_EVEN)
    return f"{pct:+}"


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


# -- the two sides -----------------------------------------------------------------------------


def _pb_side(dose_ng: int, duration_s: int, lockout_s: int, most: int) -> dict[str, Any]:
    if not dose_ng:
        return {"enabled": False}
    return {"enabled": True, "dose_mcg": _dec(dose_ng), "duration_s": duration_s,
            "lockout_s": lockout_s, "max_per_day": most}


def _steps(steps: Sequence[tuple[int, int]], conc: int) -> list[dict[str, Any]]:
    return [{"start": f"{start // 60:02d}:{start % 60:02d}", "daily_dose_mcg": _dec(dose),
             "rate_ul_day": _ul_day(dose, conc)} for start, dose in steps]


def old_side(status: Status, program: Program, pb: PatientBolus) -> dict[str, Any]:
    conc = status.concentration_mcg_ml
    daily = _ng(program.daily_dose_mcg)
    steps = [(s.start_min, _ng(s.daily_dose_mcg)) for s in program.steps]
    return {
        "mode": program.mode,
        "daily_dose_mcg": _dec(daily),
        "rate_ul_day": _ul_day(daily, conc),
        "utc_offset_min": program.utc_offset_min,
        "timezone": None,
        "steps": _steps(steps, conc),
        "taper": None,
        "patient_bolus": _pb_side(_ng(pb.dose_mcg), pb.duration_s, pb.lockout_s,
                                  pb.max_per_day),
        "refill_at": _iso(status.refill_at),
        "dry_at": _iso(status.dry_at),
        "dates_from": "pump",
    }


def taper_step_ng(start_ng: int, t: sched.Taper) -> int:
    """The daily cut, as the pump works it out (firmware/core/therapy.py set_taper)."""
    return (start_ng - t.target_ng + t.days - 1) // t.days


def new_side(s: sched.Schedule, status: Status, program: Program, pb: PatientBolus,
             step_nl: int) -> dict[str, Any]:
    conc = s.concentration
    old = _ng(program.daily_dose_mcg)
    taper = None
    if s.taper is not None:
        step = taper_step_ng(old, s.taper)
        taper = {"start_mcg_day": _dec(old), "target_mcg_day": _dec(s.taper.target_ng),
                 "days": s.taper.days, "step_mcg_day": _dec(step),
                 "ends_at": _iso(status.clock + timedelta(days=s.taper.days))}
        daily = old
    else:
        daily = s.daily_ng or 0
    pbl = s.patient_bolus
    refill_at, dry_at = estimate_dates(s, status, old, step_nl)
    return {
        "mode": s.mode,
        "daily_dose_mcg": _dec(daily),
        "rate_ul_day": _ul_day(daily, conc),
        "utc_offset_min": s.utc_offset_min if s.mode == "flex" else program.utc_offset_min,
        "timezone": s.timezone,
        "steps": _steps([(x.start_min, x.dose_ng) for x in s.steps], conc),
        "taper": taper,
        "patient_bolus": None if pbl is None else _pb_side(
            pbl.dose_ng, pbl.duration_s, pbl.lockout_s, pbl.max_per_day),
        "bolus_duration_s": s.bolus_duration_s,
        "refill_at": _iso(refill_at),
        "dry_at": _iso(dry_at),
        "dates_from": "estimate",
    }


def estimate_dates(s: sched.Schedule, status: Status, old_ng: int,
                   step_nl: int) -> tuple[datetime | None, datetime | None]:
    """(refill due, runs dry) at the new program, from the reservoir now: an estimate with
    the reference pump's low-reservoir level and refill margin (firmware/config.py); the
    pump works out its own once the program is in force. A taper is dated at its starting
    dose, as the pump dates it (each day again): early, never late."""
    conc = status.concentration_mcg_ml
    volume = int(status.reservoir_ul * 1000)
    usable = volume - volume % step_nl if step_nl else volume
    if not conc or usable <= 0:
        return None, None
    now = status.clock

    steps = [(x.start_min, x.dose_ng) for x in s.steps] if s.taper is None else [(0, old_ng)]
    sod = day.local_s(int(now.timestamp()), s.utc_offset_min)

    def takes(nl: int) -> int:
        return day.s_to_deliver(steps, sod, nl, conc)

    dry = takes(usable)
    low = takes(usable - board.LOW_RESERVOIR_NL) if usable > board.LOW_RESERVOIR_NL else 0
    due = max(low - board.REFILL_MARGIN_S, 0)
    return now + timedelta(seconds=due), now + timedelta(seconds=dry)


# -- the rules that apply ----------------------------------------------------------------------


def _rule(rule: str, text: str, status: str, detail: str = "",
          confirm: str | None = None) -> dict[str, Any]:
    return {"rule": rule, "text": text, "status": status, "detail": detail, "confirm": confirm}


def applicable_rules(s: sched.Schedule, status: Status, profile: Profile, program: Program,
                     screening: Screening | None, program_changed: bool) -> list[dict[str, Any]]:
    """The label's rules this change meets, each: ok, confirm (the pump asks for a named
    confirmation), refusal_expected (the pump will refuse, as far as the host can tell; the
    pump decides) or note."""
    out: list[dict[str, Any]] = []
    ceiling = _ng(profile.ceiling_mcg_day)
    old = _ng(program.daily_dose_mcg)
    first = old == 0
    origin = dict((v, k) for k, v in m.ENUMS["origin"]).get(profile.origin, 0)
    if program_changed and s.taper is None:
        new = s.daily_ng or 0
        out.append(_rule("hard_ceiling", f"hard ceiling {num(ng_to_mcg(ceiling))} mcg/day in "
                         "any 24 h (patient profile)", "ok",
                         f"the new day: {num(ng_to_mcg(new))} mcg/day; the pump also counts what "
                         "it delivered in the last 24 h and any bolus"))
    if program_changed and s.taper is not None:
        t = s.taper
        step = taper_step_ng(old, t)
        out.append(_rule("taper", "a drug holiday tapers over 2 to 4 weeks (label 2.6)", "ok",
                         f"-{num(ng_to_mcg(step))} mcg/day a day for {t.days} days, "
                         f"{num(ng_to_mcg(old))} to {num(ng_to_mcg(t.target_ng))} mcg/day"))
        if step * 100 > label.LARGE_DECREASE_PCT * (t.target_ng + step):
            last = Decimal(step * 100) / (t.target_ng + step)
            out.append(_rule("large_decrease", "a cut of more than 20 % in 24 h needs "
                             "confirmation (label 2.6, 5.5)", "confirm",
                             f"the last day cuts {num(last, 1)} %", "large_decrease"))
    elif program_changed:
        new = s.daily_ng or 0
        if first:
            out.append(_rule("first_24h", "no increase in the first 24 h of infusion "
                             "(label 2.5)", "note", "this first program starts the 24 h"))
            given = screening.given if screening else ()
            if given:
                allowed = 2 * _ng(given[-1].dose_mcg)
                out.append(_rule(
                    "starting_dose", "starting dose: at most twice the screening dose that "
                    "worked (label 2.5)", "refusal_expected" if new > allowed else "ok",
                    f"at most {num(ng_to_mcg(allowed))} mcg/day"))
        elif new > old:
            start = profile.infusion_start
            if start is not None and status.clock < start + timedelta(days=1):
                out.append(_rule("first_24h", "no increase in the first 24 h of infusion "
                                 "(label 2.5)", "refusal_expected",
                                 f"infusion started {when(start)}: increases from "
                                 f"{when(start + timedelta(days=1))}"))
            maintenance = profile.phase == "maintenance"
            pct = label.step_pct(origin, profile.age_years, maintenance)
            allowed = old * (100 + pct) // 100
            change = f"{_pct(new, old)} %: at most {num(ng_to_mcg(allowed))} mcg/day"
            if maintenance:
                in_refill = "refill" in status.sessions
                out.append(_rule(
                    "maintenance_step", f"maintenance: increases only at a refill visit, at "
                    f"most +{pct} % (label 2.6)",
                    "ok" if in_refill and new <= allowed else "refusal_expected",
                    change if in_refill else f"{change}; no refill session is open"))
            else:
                out.append(_rule(
                    "titration_step", f"titration: at most +{pct} % per 24 h (label 2.5)",
                    "refusal_expected" if new > allowed else "ok",
                    f"{change}; one increase per 24 h (the pump knows when the last was)"))
        elif new < old:
            # As the pump compares (rules.check_decrease): exactly, not against a rounded 80 %.
            large = new * 100 < old * (100 - label.LARGE_DECREASE_PCT)
            out.append(_rule(
                "large_decrease", "a cut of more than 20 % needs confirmation (label 2.6, 5.5)",
                "confirm" if large else "ok",
                f"{_pct(new, old)} %; the pump measures from the highest dose in force in the "
                "last 24 h", "large_decrease" if large else None))
        if new > label.HIGH_DOSE_NG:
            out.append(_rule("high_dose", "above 1000 mcg/day needs confirmation (label 2.6)",
                             "confirm", f"{num(ng_to_mcg(new))} mcg/day", "high_dose"))
    if program_changed and s.mode == "flex":
        out.append(_rule("flex_timing", "a rate change acts over hours: start a step 2 h "
                         "before the effect is wanted (label 2.4)", "note"))
        out.append(_rule("utc_offset", "the pump runs the day at one UTC offset", "note",
                         s.zone_note))
    pb = s.patient_bolus
    if pb is not None and pb.enabled:
        new = old if s.taper is not None else (s.daily_ng or 0)
        room = ceiling - new
        detail = (f"{pb.max_per_day} x {num(ng_to_mcg(pb.dose_ng))} mcg = "
                  f"{num(ng_to_mcg(pb.max_per_day * pb.dose_ng))} mcg a day; room under the "
                  f"ceiling {num(ng_to_mcg(room))} mcg")
        if pb.lockout_s and (pb.max_per_day - 1) * pb.lockout_s >= DAY_S:
            fit = (DAY_S - 1) // pb.lockout_s + 1
            detail += f"; with a {duration(pb.lockout_s)} lockout at most {fit} fit in 24 h"
        out.append(_rule("bolus_ceiling", "patient boluses: their daily maximum and the "
                         "program fit under the hard ceiling (patient profile)", "ok", detail))
    return out


def program_changed(s: sched.Schedule, program: Program) -> bool:
    if s.mode == "taper":
        return True
    if program.mode != s.mode:
        return True
    old = [(x.start_min, _ng(x.daily_dose_mcg)) for x in program.steps]
    new = [(x.start_min, x.dose_ng) for x in s.steps]
    return old != new or (s.mode == "flex" and program.utc_offset_min != s.utc_offset_min)


def patient_bolus_changed(s: sched.Schedule, pb: PatientBolus) -> bool:
    new = s.patient_bolus
    if new is None:
        return False
    if not new.enabled:
        return _ng(pb.dose_mcg) != 0
    return (new.dose_ng, new.duration_s, new.lockout_s, new.max_per_day) != (
        _ng(pb.dose_mcg), pb.duration_s, pb.lockout_s, pb.max_per_day)


REQUEST = {"continuous": "SET_CONTINUOUS", "flex": "SET_FLEX", "taper": "SET_TAPER"}


def build_review(s: sched.Schedule, status: Status, profile: Profile, program: Program,
                 pb: PatientBolus, step_nl: int, screening: Screening | None,
                 given: Sequence[str] = ()) -> dict[str, Any]:
    """The review as data: the JSON of --json, and what the screen shows."""
    changed = program_changed(s, program)
    pb_changed = patient_bolus_changed(s, pb)
    old = old_side(status, program, pb)
    new = new_side(s, status, program, pb, step_nl)
    rules = applicable_rules(s, status, profile, program, screening, changed)
    needed = list(dict.fromkeys(r["confirm"] for r in rules if r["confirm"]))
    target = s.taper.target_ng if s.taper is not None else (s.daily_ng or 0)
    sends = ([REQUEST[s.mode]] if changed else []) + (
        ["SET_PATIENT_BOLUS"] if pb_changed else [])
    return {
        "file": s.file,
        "description": s.description,
        "pump": {
            "phase": profile.phase, "origin": profile.origin, "age_years": profile.age_years,
            "ceiling_mcg_day": str(profile.ceiling_mcg_day),
            "concentration_mcg_ml": status.concentration_mcg_ml,
            "reservoir_ml": str(status.reservoir_ul / 1000), "mode": status.mode,
            "clock": status.clock.isoformat(),
        },
        "old": old,
        "new": new,
        "changes": {"program": changed, "patient_bolus": pb_changed,
                    "daily_dose_pct": _pct(target, _ng(program.daily_dose_mcg))},
        "rules": rules,
        "confirm": {"needed": needed, "given": list(dict.fromkeys(given))},
        "sends": sends,
    }


# -- the screen --------------------------------------------------------------------------------


def _dose(v: str | None, unit: str = "mcg/day") -> str:
    return f"{num(Decimal(v))} {unit}" if v is not None else "-"


def _rate(v: str | None) -> str:
    if v is None:
        return "- (no drug)"
    return f"{num(Decimal(v))} uL/day = {num(Decimal(v) / 1000, 6)} mL/day"


def _offset(minutes: int) -> str:
    return "UTC" + sched._offset_text(minutes)


def _pb_text(pb: dict[str, Any] | None) -> str:
    if pb is None:
        return "-"
    if not pb["enabled"]:
        return "off"
    return (f"{num(Decimal(pb['dose_mcg']))} mcg over {duration(pb['duration_s'])}, lockout "
            f"{duration(pb['lockout_s'])}, at most {pb['max_per_day']} a day")


def _steps_text(side: dict[str, Any]) -> str:
    lines = []
    prev = None
    for st in side["steps"]:
        rate = f"  {num(Decimal(st['rate_ul_day']))} uL/day" if st["rate_ul_day"] else ""
        dose = Decimal(st["daily_dose_mcg"])
        step = ""
        if prev is not None and prev:
            pct = ((dose - prev) * 100 / prev).quantize(Decimal("0.1"))
            step = f"  ({pct:+} %)" if pct else ""
        lines.append(f"{st['start']}  {num(dose)} mcg/day{rate}{step}")
        prev = dose
    return "\n".join(lines)


def _date(iso: str | None, estimate: bool) -> str:
    if iso is None:
        return "-"
    t = datetime.fromisoformat(iso)
    return f"about {t:%Y-%m-%d}" if estimate else when(t)


def review_table(r: dict[str, Any]) -> Table:
    old, new, pump = r["old"], r["new"], r["pump"]
    title = f"Review: {r['file']}" + (f" - {r['description']}" if r["description"] else "")
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAVY,
              caption=(f"pump: {pump['phase']}, {pump['origin']}, {pump['age_years']} years; "
                       f"hard ceiling {num(Decimal(pump['ceiling_mcg_day']))} mcg/day"),
              caption_justify="left")
    t.add_column("", style="bold", no_wrap=True)
    t.add_column("now on the pump", no_wrap=True)
    t.add_column("new", no_wrap=True)
    changed = r["changes"]["program"]
    mode_new = new["mode"] if changed else f"{new['mode']} (unchanged: not sent)"
    t.add_row("mode", old["mode"], f"[bold]{mode_new}[/]" if changed else mode_new)
    if new["taper"]:
        tp = new["taper"]
        new_dose = (f"{_dose(tp['start_mcg_day'])} down to {_dose(tp['target_mcg_day'])} "
                    f"over {tp['days']} days")
    else:
        new_dose = _dose(new["daily_dose_mcg"]) + (" over the day" if new["mode"] == "flex"
                                                   else "")
    old_dose = _dose(old["daily_dose_mcg"]) + (" over the day" if old["mode"] == "flex"
                                               else "")
    none = old["daily_dose_mcg"] == "0"  # never programmed
    t.add_row("daily dose", "none yet" if none else old_dose, new_dose)
    pct = r["changes"]["daily_dose_pct"]
    if changed:
        colour = "green" if pct is None or Decimal(pct) == 0 else (
            "yellow" if Decimal(pct) > 0 else "cyan")
        span = f" over {new['taper']['days']} days" if new["taper"] else ""
        t.add_row("change", "", f"[{colour}]{pct} %{span}[/]" if pct else "first program")
    new_rate = _rate(new["rate_ul_day"])
    if new["mode"] == "flex":
        new_rate = "mean " + new_rate
    elif new["taper"]:
        new_rate = "from " + new_rate
    old_rate = ("mean " if old["mode"] == "flex" else "") + _rate(old["rate_ul_day"])
    t.add_row("rate", "-" if none else old_rate, new_rate)
    if "flex" in (old["mode"], new["mode"]):
        zone = f" ({new['timezone']} now)" if new["timezone"] else ""
        t.add_row("local time",
                  _offset(old["utc_offset_min"]) if old["mode"] == "flex" else "-",
                  _offset(new["utc_offset_min"]) + zone if new["mode"] == "flex" else "-")
        t.add_row("steps", _steps_text(old) if old["mode"] == "flex" else "-",
                  _steps_text(new) if new["mode"] == "flex" else "-")
    if new["taper"]:
        tp = new["taper"]
        t.add_row("taper", "", f"-{num(Decimal(tp['step_mcg_day']))} mcg/day each day, the "
                  f"target from {when(datetime.fromisoformat(tp['ends_at']))}")
    pb_new = _pb_text(new["patient_bolus"]) if new["patient_bolus"] is not None else (
        "unchanged (not in the file)")
    if new["patient_bolus"] is not None and not r["changes"]["patient_bolus"]:
        pb_new += " (unchanged: not sent)"
    t.add_row("patient bolus", _pb_text(old["patient_bolus"]), pb_new)
    if new["bolus_duration_s"] is not None:
        t.add_row("clinician bolus", "", f"default over {duration(new['bolus_duration_s'])} "
                  "(host-side; not sent)")
    t.add_row("refill due", _date(old["refill_at"], False) + " (pump)",
              _date(new["refill_at"], True) + " (estimate)")
    t.add_row("runs dry", _date(old["dry_at"], False), _date(new["dry_at"], True))
    t.add_row("reservoir", f"{num(Decimal(pump['reservoir_ml']), 3)} mL at "
              f"{pump['concentration_mcg_ml']} mcg/mL", "")
    t.add_row("pump clock", when(datetime.fromisoformat(pump["clock"])), "")
    return t


def rules_table(r: dict[str, Any]) -> Table:
    t = Table(title="Rules that apply", title_justify="left", box=None, show_header=False,
              padding=(0, 1))
    t.add_column(no_wrap=True)
    t.add_column()
    for rule in r["rules"]:
        detail = f": {rule['detail']}" if rule["detail"] else ""
        confirm = f" [yellow](--confirm {rule['confirm']})[/]" if rule["confirm"] else ""
        t.add_row(MARK[rule["status"]], f"{rule['text']}{detail}{confirm}")
    return t


def show_review(r: dict[str, Any]) -> None:
    out.print(review_table(r))
    if r["rules"]:
        out.print(rules_table(r))
    if r["sends"]:
        out.print(f"[bold]Sends[/]: {', then '.join(r['sends'])}")
    else:
        out.print("[bold]Sends[/]: nothing (the pump already runs this schedule)")


# -- the command -------------------------------------------------------------------------------


def _problems(args: argparse.Namespace, e: sched.ScheduleError) -> UsageError:
    if getattr(args, "json", False):
        print(json.dumps({"problems": [p.to_dict() for p in e.problems]}))
    return UsageError(e.text())


class LoadSchedule(argparse.Action):
    """Reads and checks the file while the command line is parsed: a file with problems is
    refused before pumpctl opens the port (it runs as a command that needs no pump)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        try:
            namespace.schedule = sched.load(values)
        except sched.ScheduleError as e:
            error = e

            def refuse(args: argparse.Namespace) -> None:
                raise _problems(args, error)

            namespace.schedule = None
            namespace.run = refuse


def _result(args: argparse.Namespace, status: str, applied: dict[str, Any],
            not_applied: Sequence[str] = (), **extra: Any) -> None:
    if args.json:
        print(json.dumps({"result": {"status": status, "applied": applied,
                                     "not_applied": list(not_applied), **extra}}))


def _authorise(args: argparse.Namespace, r: dict[str, Any]) -> list[str]:
    """The confirmations to send, once the user has said yes; else UsageError (not sent)."""
    given = list(dict.fromkeys(args.confirm))
    why = {x["confirm"]: x for x in r["rules"] if x["confirm"]}
    missing = [n for n in r["confirm"]["needed"] if n not in given]
    flags = " ".join(f"--confirm {n}" for n in missing)
    if args.yes:
        if missing:
            reasons = "; ".join(f"{why[n]['text']}: {why[n]['detail']}" for n in missing)
            raise UsageError(f"not sent: this change needs {flags} ({reasons})")
        return given
    if args.json or not sys.stdin.isatty():
        raise UsageError("not sent: confirm with --yes" + (f" and {flags}" if missing else ""))
    for n in missing:
        out.print(f"[bold yellow]{n}[/]: {why[n]['text']}: {why[n]['detail']}")
        if input(f"Type {n} to confirm it: ").strip() != n:
            raise UsageError(f"not sent: {n} was not confirmed")
        given.append(n)
    if input("Send this to the pump? Type yes to send: ").strip().lower() != "yes":
        raise UsageError("not sent: you did not type yes")
    return given


def _send(pump: PumpClient, s: sched.Schedule, r: dict[str, Any], confirm: list[str],
          applied: dict[str, Any], pending: list[str]) -> None:
    """Send what changed, program first, noting each in `applied` as the pump takes it and
    taking it off `pending`; a refusal stops it (the rest stays pending)."""
    if r["changes"]["program"]:
        if s.taper is not None:
            applied["taper"] = pump.set_taper(ng_to_mcg(s.taper.target_ng), s.taper.days,
                                              confirm)
        elif s.mode == "flex":
            applied["program"] = pump.set_flex(
                [(x.start_min, ng_to_mcg(x.dose_ng)) for x in s.steps], s.utc_offset_min,
                confirm)
        else:
            applied["program"] = pump.set_continuous(ng_to_mcg(s.steps[0].dose_ng), confirm)
        pending.pop(0)
    pb = s.patient_bolus
    if r["changes"]["patient_bolus"] and pb is not None:
        applied["patient_bolus"] = pump.set_patient_bolus(
            ng_to_mcg(pb.dose_ng), pb.duration_s, pb.lockout_s, pb.max_per_day)
        pending.pop(0)


def _applied_lines(applied: dict[str, Any]) -> list[str]:
    lines = []
    if "program" in applied:
        lines.append(program_line("programmed", applied["program"]))
    if "taper" in applied:
        t = applied["taper"]
        lines.append(f"[green]tapering[/] from {num(t.start_mcg_day)} to "
                     f"{num(t.target_mcg_day)} mcg/day over {t.days} days "
                     f"(-{num(t.step_mcg_day)} mcg/day a day), the target from "
                     f"{when(t.ends_at)}")
    if "patient_bolus" in applied:
        p = applied["patient_bolus"]
        text = _pb_text(_pb_side(_ng(p.dose_mcg), p.duration_s, p.lockout_s, p.max_per_day))
        lines.append(f"[green]patient boluses[/]: {text}")
    return lines


APPLIED = {"program": "the program", "taper": "the taper",
           "patient_bolus": "the patient-bolus limits"}
WHAT = {"SET_CONTINUOUS": "the program", "SET_FLEX": "the program", "SET_TAPER": "the taper",
        "SET_PATIENT_BOLUS": "the patient-bolus limits"}


def cmd_program(pump: PumpClient, args: argparse.Namespace) -> None:
    s: sched.Schedule = args.schedule
    status = pump.status()
    profile = pump.profile()
    program = pump.program()
    pb = pump.patient_bolus_state()
    problems = sched.check_with_pump(s, status, profile, program)
    if problems:
        raise _problems(args, sched.ScheduleError(problems))
    step_nl = pump.info().step_nl
    screening = None
    if program.daily_dose_mcg == 0:  # a first program: the screening dose limits it
        screening = pump.screening()
    r = build_review(s, status, profile, program, pb, step_nl, screening, args.confirm)
    if args.json:
        print(json.dumps({"review": r}))
    else:
        show_review(r)
    if not r["sends"]:
        _result(args, "unchanged", {})
        return
    if args.dry_run:
        _result(args, "dry_run", {}, r["sends"])
        if not args.json:
            out.print("[yellow]dry run[/]: nothing sent")
        return
    try:
        confirm = _authorise(args, r)
    except UsageError:
        _result(args, "not_sent", {}, r["sends"])
        raise
    applied: dict[str, Any] = {}
    pending = list(r["sends"])
    try:
        _send(pump, s, r, confirm, applied, pending)
    except errors.PumpError as e:
        _refused(args, e, applied, pending)
        raise
    after = pump.status()
    _result(args, "applied", {k: v.to_dict() for k, v in applied.items()},
            refill_at=_iso(after.refill_at), dry_at=_iso(after.dry_at))
    if not args.json:
        for line in _applied_lines(applied):
            out.print(line)
        if after.refill_at:
            out.print(f"  refill due {when(after.refill_at)} (the pump's date; runs dry "
                      f"{when(after.dry_at)})")


def at_refill(pump: PumpClient, args: argparse.Namespace) -> errors.ProtocolError | None:
    """Review and send args.schedule while a refill session is open (pumpctl refill
    --program): a maintenance change belongs to the refill visit (label 2.6). A refusal by
    the pump is shown and returned, not raised: the refill goes on without the change."""
    visit = argparse.Namespace(**vars(args))
    visit.confirm = [c for c in args.confirm if c in CONFIRMATIONS]
    visit.dry_run = False
    try:
        cmd_program(pump, visit)
    except errors.ProtocolError as e:
        if not args.json:
            out.print(f"[bold yellow]the refill goes on without the program change[/]: {e}")
        return e
    return None


def _refused(args: argparse.Namespace, e: errors.PumpError, applied: dict[str, Any],
             pending: list[str]) -> None:
    """Say what was applied and what was not, and why (main() prints the error itself)."""
    status = "partly_applied" if applied else "refused"
    _result(args, status, {k: v.to_dict() for k, v in applied.items()}, pending)
    if args.json:
        return
    for line in _applied_lines(applied):
        out.print(line)
    if not pending:
        return
    failed, rest = WHAT[pending[0]], [WHAT[x] for x in pending[1:]]
    said = (f"the pump refused {failed}" if isinstance(e, errors.ProtocolError)
            else f"{failed} failed on the link (check pumpctl status and log)")
    unsent = f"; not sent: {', '.join(rest)}" if rest else ""
    if applied:
        names = ", ".join(APPLIED[k] for k in applied)
        out.print(f"[bold yellow]applied only in part[/]: {names} applied; {said}{unsent}")
    else:
        out.print(f"[bold red]nothing applied[/]: {said}{unsent}")
    if isinstance(e, errors.ProtocolError) and e.rule:
        unit = e.unit
        line = (f"  rule [bold]{e.rule}[/] ({errors.rule_source(e.rule)}): requested "
                f"{errors.show_value(e.requested, unit)}, allowed "
                f"{errors.show_value(e.allowed, unit)}") if unit else (
            f"  rule [bold]{e.rule}[/] ({errors.rule_source(e.rule)})")
        if e.wait_s:
            line += f"; allowed in {duration(e.wait_s)}"
        if isinstance(e, errors.NotConfirmed) and e.rule in CONFIRMATIONS:
            line += f"; to confirm it, run again with --confirm {e.rule}"
        out.print(line)


ORDER = 25


def register(sub: Commands, common: argparse.ArgumentParser) -> None:
    """The commands of this module, on pumpctl's parser."""
    p = sub.add_parser(
        "program", parents=[common],
        help="send a schedule file (TOML) after reviewing it beside the program in force",
        description="Read a schedule file (format: host/schedule.py, examples/schedules/), "
        "check it, show the program in force beside the new one with the rules that apply, "
        "and send it once confirmed.")
    p.add_argument("file", metavar="FILE", action=LoadSchedule,
                   help="the schedule file (TOML)")
    p.add_argument("--dry-run", action="store_true",
                   help="show the review, send nothing")
    p.add_argument("--yes", action="store_true",
                   help="send without asking (scripts); a change that needs a confirmation "
                   "also needs --confirm NAME")
    confirm_option(p, CONFIRMATIONS)
    p.set_defaults(func=cmd_program)
