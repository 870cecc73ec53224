"""pumpctl screen: the screening trial (label 2.2): its history, the next dose allowed, a
screening bolus, and the starting daily dose the label suggests after it (label 2.5)."""

from __future__ import annotations

import argparse
from decimal import Decimal
from typing import Any

from rich.markup import escape
from rich.table import Table

from firmware import config
from host import errors
from host.cli.ui import Commands, UsageError, emit, err, num, out, when
from host.client import PumpClient, Screening
from host.units import duration, mcg_to_ng

MAX_SCREENING_MCG = Decimal(100)  # label 2.2: who does not respond to 100 mcg is no candidate
OBSERVE = "observe the patient for 4 to 8 hours after each bolus (label 2.2)"
NOT_A_CANDIDATE = ("patients who do not respond to a 100 mcg intrathecal bolus should not be "
                   "considered candidates for an implanted pump for chronic infusion (label 2.2)")


def seconds(text: str) -> int:
    """--minutes N (a number, to the second) as seconds."""
    try:
        value = Decimal(text) * 60
    except ArithmeticError as e:
        raise argparse.ArgumentTypeError(f"not a number of minutes: {text!r}") from e
    if not value.is_finite() or value <= 0 or value != value.to_integral_value():
        raise argparse.ArgumentTypeError(f"{text} min: a positive number of minutes, to the "
                                         "second")
    return int(value)


def suggestion(dose_mcg: Decimal, lasted_over_8h: bool | None) -> dict[str, Any]:
    """The initial total daily dose label 2.5 gives for the screening dose that gave a
    positive effect: doubled over 24 h, unless its effect lasted more than 8 h, then the
    screening dose itself over 24 h. lasted_over_8h None: not said, both are given."""
    doubled, same = dose_mcg * 2, dose_mcg
    if lasted_over_8h is None:
        daily = None
        text = (f"if the {num(dose_mcg)} mcg bolus gave a positive response, the label "
                f"(2.5) suggests an initial daily dose of {num(doubled)} mcg/day (the "
                f"screening dose doubled, over 24 h), or {num(same)} mcg/day (the screening "
                "dose over 24 h) if its effect lasted more than 8 hours")
    else:
        daily = same if lasted_over_8h else doubled
        how = ("its effect lasted more than 8 hours: the screening dose over 24 h"
               if lasted_over_8h else "the screening dose doubled, over 24 h")
        text = (f"for the {num(dose_mcg)} mcg bolus that gave a positive response the label "
                f"(2.5) suggests an initial daily dose of {num(daily)} mcg/day ({how})")
    return {
        "screening_dose_mcg": str(dose_mcg),
        "daily_dose_mcg": None if daily is None else str(daily),
        "doubled_mcg_day": str(doubled),
        "if_effect_over_8h_mcg_day": str(same),
        "text": text + ". No dose increase in the first 24 hours. A suggestion from the label "
        "for the clinician to weigh, not a prescription.",
    }


def _suggest(dose: Decimal, lasted_over_8h: bool) -> None:
    """The suggestion, for people: one line each."""
    out.print(f"[bold]suggested starting dose[/] (label 2.5), if the {num(dose)} mcg bolus gave "
              "a positive response:")
    if not lasted_over_8h:
        out.print(f"  {num(dose * 2)} mcg/day: the screening dose doubled, over 24 h")
    out.print(f"  {num(dose)} mcg/day: the screening dose over 24 h, if its effect lasted more "
              "than 8 hours")
    out.print("  no dose increase in the first 24 hours; a suggestion from the label for the "
              "clinician to weigh, not a prescription")


def _screening_dict(s: Screening, phase: str) -> dict[str, Any]:
    data = s.to_dict()
    data["phase"] = phase
    return data


def cmd_status(pump: PumpClient, args: argparse.Namespace) -> None:
    s = pump.screening()
    phase = pump.profile().phase
    given = [g.dose_mcg for g in s.given]
    effective = None
    if args.effective is not None:
        try:
            mcg_to_ng(args.effective)
            effective = Decimal(args.effective)
        except ValueError as e:
            raise UsageError(f"--effective: {e}") from e
        if effective not in given:
            shown = ", ".join(f"{num(d)} mcg" for d in given) or "none yet"
            raise UsageError(f"--effective: {num(effective)} mcg is not a screening dose the "
                             f"pump gave ({shown})")
        effective = given[given.index(effective)]
    elif given:
        effective = given[-1]
    data = _screening_dict(s, phase)
    data["suggestion"] = (suggestion(effective, args.lasted_over_8h or None)
                          if effective is not None else None)
    done = bool(given) and not s.next_dose_mcg
    data["ladder_done"] = done

    def human() -> None:
        if phase != "screening":
            out.print(f"[yellow]the pump is in the {phase} phase[/]: screening boluses only in "
                      "the screening phase, before any infusion (profile set --phase screening)")
        if s.given:
            t = Table(title="screening boluses given", title_justify="left")
            t.add_column("#", justify="right")
            t.add_column("time")
            t.add_column("dose", justify="right")
            t.add_column("over")
            for i, g in enumerate(s.given, 1):
                t.add_row(str(i), when(g.time), f"{num(g.dose_mcg)} mcg", duration(g.duration_s))
            out.print(t)
        else:
            out.print("no screening bolus given yet")
        if s.next_dose_mcg:
            at = when(s.next_at) if s.next_at else "now"
            ladder = ("50, then 75, then 100 mcg, each at least 24 h after the last" + (
                "; 25 mcg may come first for a very small child" if not s.given else ""))
            out.print(f"next allowed: at most [bold]{num(s.next_dose_mcg)} mcg[/], from {at} "
                      f"({ladder})")
        else:
            out.print("[yellow]no further screening dose[/]: 100 mcg is the maximum")
        if done:
            out.print(NOT_A_CANDIDATE)
        if effective is not None:
            _suggest(effective, args.lasted_over_8h)
        if s.given:
            out.print(OBSERVE)

    emit(args, data, human)


def cmd_give(pump: PumpClient, args: argparse.Namespace) -> None:
    seconds_ = args.minutes if args.minutes is not None else _default_s(pump, args.dose)
    try:
        b = pump.screen(args.dose, seconds_)
    except errors.ProtocolError:
        if not args.json:
            _context(pump)
        raise
    s = pump.screening()
    data = b.to_dict()
    data.update(next_dose_mcg=str(s.next_dose_mcg),
                next_at=s.next_at.isoformat() if s.next_at else None)

    def human() -> None:
        out.print(f"[green]screening bolus[/]: {num(b.dose_mcg)} mcg ({num(b.volume_ul)} uL) "
                  f"over {duration(b.duration_s)}, done {when(b.ends_at)}")
        out.print(f"{OBSERVE[0].upper()}{OBSERVE[1:]}; resuscitative equipment and trained "
                  "staff at hand (label 5.3).")
        if s.next_dose_mcg:
            out.print(f"if the response is inadequate: at most {num(s.next_dose_mcg)} mcg, no "
                      f"sooner than {when(s.next_at)}")
        else:
            out.print(f"that was the last screening dose: {NOT_A_CANDIDATE}")

    emit(args, data, human)


def _default_s(pump: PumpClient, dose: str) -> int:
    """1 minute (label 2.2), or the whole minutes the pump's top bolus rate (1 mL/min) needs
    for the dose at the reservoir's concentration (100 mcg at 50 mcg/mL is 2 mL: 2 min)."""
    conc = pump.status().concentration_mcg_ml
    if not conc:
        return 60  # no drug: the pump says so
    volume_nl = -(-mcg_to_ng(dose) * 1000 // conc)
    minutes = -(-volume_nl // config.MAX_BOLUS_NL_MIN)
    return 60 * max(1, minutes)


def _context(pump: PumpClient) -> None:
    """What the pump allows, beside its refusal (printed after this by pumpctl)."""
    try:
        s = pump.screening()
        phase = pump.profile().phase
    except errors.PumpError:
        return
    if phase != "screening":
        err.print(f"the pump is in the {escape(phase)} phase: screening boluses only in the "
                  "screening phase, before any infusion")
        return
    given = ", ".join(f"{num(g.dose_mcg)} mcg" for g in s.given) or "none"
    nxt = (f"at most {num(s.next_dose_mcg)} mcg from {when(s.next_at) if s.next_at else 'now'}"
           if s.next_dose_mcg else "no further dose (100 mcg is the maximum)")
    err.print(f"screening so far: {given}; next: {nxt}")


ORDER = 25


def register(sub: Commands, common: argparse.ArgumentParser) -> None:
    """The commands of this module, on pumpctl's parser."""
    p = sub.add_parser(
        "screen", parents=[common], help="the screening trial: its boluses and what comes next",
        description="The screening trial of label 2.2, in the screening phase (before any "
        "infusion): a bolus of 50 mcg over at least 1 minute; if the response is inadequate, "
        "75 mcg 24 h later, then 100 mcg 24 h after that (25 mcg may come first for a very "
        "small child). 100 mcg is the maximum.",
    )
    p.set_defaults(func=cmd_status, action="status", effective=None, lasted_over_8h=False)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    q = actions.add_parser("status", parents=[common], help="the boluses given, the next "
                           "allowed, and the starting dose the label suggests (default)")
    q.add_argument("--effective", metavar="MCG", help="the screening dose that gave a positive "
                   "response (default: the last given)")
    q.add_argument("--lasted-over-8h", action="store_true",
                   help="its effect lasted more than 8 hours (label 2.5)")
    q = actions.add_parser("give", parents=[common], help="give a screening bolus")
    q.add_argument("dose", help="dose in mcg: 50, 75, 100 (25 first for a very small child)")
    q.add_argument("--minutes", type=seconds, metavar="N",
                   help="over how many minutes (at least 1: label 2.2; default 1, or as many "
                   "whole minutes as the pump's top bolus rate needs for the volume)")
    q.set_defaults(func=cmd_give)
