"""pumpctl profile, set-dose, bolus, suspend, resume, stop."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime

from rich.table import Table

from firmware.core.rules import BRAIN_INJURY_WAIT_S
from host.cli.ui import (
    STOP_REASONS,
    Commands,
    UsageError,
    confirm_option,
    confirmed,
    emit,
    num,
    out,
    when,
)
from host.client import ORIGINS, PHASES, Profile, Program, PumpClient
from host.errors import show_date
from host.units import duration


def program_line(verb: str, p: Program) -> str:
    if p.mode == "flex":
        steps = ", ".join(f"{s.start} {num(s.daily_dose_mcg)}" for s in p.steps)
        return (f"[green]{verb}[/] flex day: {steps} mcg/day "
                f"({num(p.daily_dose_mcg)} mcg over 24 h)")
    return (f"[green]{verb}[/] {p.mode} infusion: {num(p.daily_dose_mcg)} mcg/day = "
            f"{num(p.rate_ul_day)} uL/day")


def cmd_set_dose(pump: PumpClient, args: argparse.Namespace) -> None:
    p = pump.set_continuous(args.dose, args.confirm)
    emit(args, p.to_dict(), lambda: out.print(program_line("programmed", p)))


def cmd_stop(pump: PumpClient, args: argparse.Namespace) -> None:
    confirmed(args, "[bold red]Stopping intrathecal baclofen abruptly can cause withdrawal[/] "
               "(high fever, altered mental status, rebound spasticity).", "STOP",
               "stop delivery")
    reason = pump.stop(args.reason, confirm=True)
    emit(
        args,
        {"mode": "stopped", "reason": reason},
        lambda: out.print(f"[yellow]delivery stopped[/] (reason: {reason})"),
    )


def cmd_suspend(pump: PumpClient, args: argparse.Namespace) -> None:
    confirmed(args, "[bold red]Suspending holds baclofen at a catheter-patency trickle[/]: "
               "watch for withdrawal.", "SUSPEND", "suspend therapy")
    s = pump.suspend(args.reason, confirm=True)
    emit(args, s.to_dict(), lambda: out.print(
        f"[yellow]therapy suspended[/]: minimum rate {num(s.rate_ul_day)} uL/day "
        f"(reason: {s.reason})"))


def cmd_resume(pump: PumpClient, args: argparse.Namespace) -> None:
    p = pump.resume()
    emit(args, p.to_dict(), lambda: out.print(program_line("resumed", p)))


def cmd_bolus(pump: PumpClient, args: argparse.Namespace) -> None:
    b = pump.bolus(args.dose, round(args.minutes * 60))
    emit(args, b.to_dict(), lambda: out.print(
        f"[green]{b.kind} bolus[/]: {num(b.dose_mcg)} mcg ({num(b.volume_ul)} uL) over "
        f"{duration(b.duration_s)}, done {when(b.ends_at)}"))


def brain_injury_arg(text: str) -> date | datetime | None:
    """--brain-injury: a date (YYYY-MM-DD), an ISO date/time (UTC unless given), or none."""
    if text.strip().lower() in ("none", "no", "0"):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text)
    except ValueError as e:
        raise UsageError(f"--brain-injury: not a date (YYYY-MM-DD) nor none: {e}") from e
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def brain_injury_line(p: Profile) -> str:
    """The profile's brain injury, and the earliest therapy after it (label 1: a year)."""
    if p.brain_injury is None:
        return "none"
    since = int(p.brain_injury.timestamp())
    return f"{show_date(since)} (therapy from {show_date(since + BRAIN_INJURY_WAIT_S)})"


def cmd_profile(pump: PumpClient, args: argparse.Namespace) -> None:
    if getattr(args, "action", None) == "set":
        start = None
        if args.infusion_start:
            try:
                start = datetime.fromisoformat(args.infusion_start)
            except ValueError as e:
                raise UsageError(f"--infusion-start: not an ISO date/time: {e}") from e
            if start.tzinfo is None:
                start = start.replace(tzinfo=UTC)
        if args.brain_injury is None:  # not given: the date the pump holds stays
            injury: date | datetime | None = pump.profile().brain_injury
        else:
            injury = brain_injury_arg(args.brain_injury)
        p = pump.set_profile(args.origin, args.age, args.phase, args.ceiling,
                             args.catheter_ml, start, injury)
        title = "patient profile set"
    else:
        p = pump.profile()
        title = "patient profile"

    def human() -> None:
        if p.phase == "unset":
            out.print("[yellow]no patient profile set[/] (pumpctl profile set ...)")
            return
        t = Table(title=title, show_header=False, title_justify="left")
        t.add_row("origin", p.origin)
        t.add_row("age", f"{p.age_years} years")
        t.add_row("phase", p.phase)
        t.add_row("hard ceiling", f"{num(p.ceiling_mcg_day)} mcg/day")
        t.add_row("catheter volume", f"{num(p.catheter_ml, 6)} mL")
        t.add_row("infusion started", when(p.infusion_start) if p.infusion_start
                  else "not yet")
        t.add_row("brain injury", brain_injury_line(p))
        out.print(t)

    emit(args, p.to_dict(), human)


ORDER = 20


def register(sub: Commands, common: argparse.ArgumentParser) -> None:
    """The commands of this module, on pumpctl's parser."""
    p = sub.add_parser("profile", parents=[common], help="show or set the patient profile")
    p.set_defaults(func=cmd_profile, action="show")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("show", parents=[common], help="the profile (default)")
    q = actions.add_parser("set", parents=[common], help="set the profile")
    q.add_argument("--origin", choices=ORIGINS, required=True,
                   help="origin of the spasticity")
    q.add_argument("--age", type=int, required=True, help="age in years")
    q.add_argument("--phase", choices=PHASES, required=True)
    q.add_argument("--ceiling", required=True, metavar="MCG_DAY",
                   help="hard ceiling over any 24 h, mcg/day")
    q.add_argument("--catheter-ml", default="0", metavar="ML",
                   help="catheter dead volume in mL, for priming (default 0)")
    q.add_argument("--infusion-start", metavar="ISO",
                   help="when infusion started (ISO date/time, UTC unless given); "
                   "default: at the first program")
    q.add_argument("--brain-injury", metavar="DATE",
                   help="date of a traumatic brain injury behind the spasticity (YYYY-MM-DD, "
                   "or an ISO date/time, UTC unless given; 'none': none): no therapy before "
                   "a year after it (label 1); default: keep the date the pump holds")

    p = sub.add_parser("set-dose", parents=[common], help="program continuous infusion at "
                       "the reservoir's concentration")
    p.add_argument("dose", help="daily dose in mcg/day, e.g. 400 or 412.5")
    confirm_option(p, ("high_dose", "large_decrease"))
    p.set_defaults(func=cmd_set_dose)

    p = sub.add_parser("bolus", parents=[common], help="a clinician bolus on top of the "
                       "basal rate")
    p.add_argument("dose", help="dose in mcg")
    p.add_argument("--minutes", type=float, default=1.0,
                   help="over how many minutes (default 1, at least 1)")
    p.set_defaults(func=cmd_bolus)

    p = sub.add_parser("suspend", parents=[common], help="hold therapy at the minimum rate "
                       "(needs confirmation)")
    p.add_argument("--reason", choices=STOP_REASONS, default="clinician_decision")
    p.add_argument("--confirm", action="store_true", help="confirm without a prompt")
    p.set_defaults(func=cmd_suspend)

    p = sub.add_parser("resume", parents=[common], help="resume the program held by suspend "
                       "or stop")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("stop", parents=[common], help="stop delivery (needs confirmation)")
    p.add_argument("--reason", choices=STOP_REASONS, default="clinician_decision")
    p.add_argument("--confirm", action="store_true", help="confirm without a prompt")
    p.set_defaults(func=cmd_stop)
