"""pumpctl refill: a guided refill session for a person at a terminal, or the same in one go
with flags for scripts; refill calc: how long a fill lasts at a program (no pump needed)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import TypeVar

from rich.markup import escape
from rich.table import Table

from firmware import config
from firmware.core import rules
from host import errors, refill_calc
from host.cli import program as program_cmd
from host.cli.ui import Commands, UsageError, confirm_option, emit, err, num, out, when
from host.client import Program, PumpClient, RefillDone
from host.units import duration, mcg_to_ng, ml_to_nl, nl_to_ml

T = TypeVar("T")

CONFIRM_WORD = "CONFIRM"
LOW_ML = nl_to_ml(config.LOW_RESERVOIR_NL)
LABEL_STRENGTHS = ", ".join(str(c) for c in rules.LABEL_CONCENTRATIONS)


# --- values, as typed -----------------------------------------------------------------------


def volume(text: str) -> Decimal:
    """A volume in mL as typed: a number, 0 or more, to the pump's 1 nL."""
    ml_to_nl(text)  # not a number, finer than 1 nL: ValueError
    value = Decimal(text)
    if value < 0:
        raise ValueError(f"{text} mL: a volume is 0 or more")
    return value


def concentration(text: str | int) -> int:
    """A concentration in mcg/mL: a whole number, 1 to the label's maximum."""
    try:
        value = int(str(text).strip())
    except ValueError as e:
        raise ValueError(f"{text!r}: a concentration is a whole number of mcg/mL") from e
    if not 1 <= value <= rules.MAX_CONCENTRATION:
        raise ValueError(f"{value} mcg/mL: a concentration is 1 to {rules.MAX_CONCENTRATION} "
                         "mcg/mL (label 2.3)")
    return value


def whole(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError as e:
        raise ValueError(f"{text!r}: a whole number of mcg/mL") from e


def drain_mismatch(drained_nl: int, expected_nl: int) -> bool:
    """As the pump decides it (firmware/core/therapy.py refill_commit): more than 20 % off
    the expected volume, and more than the tolerance (a small volume always passes)."""
    diff = abs(drained_nl - expected_nl)
    return diff * 5 > expected_nl and diff > config.DRAIN_TOLERANCE_NL


def program_text(p: Program) -> str:
    if p.mode == "stopped":
        return "none: delivery is stopped"
    if p.mode == "flex":
        steps = ", ".join(f"{s.start} {num(s.daily_dose_mcg)}" for s in p.steps)
        return f"flex day {steps} mcg/day ({num(p.daily_dose_mcg)} mcg over 24 h)"
    if p.mode == "minimum_rate":
        return f"suspended at the minimum rate, {num(p.rate_ul_day)} uL/day"
    return f"{p.mode} {num(p.daily_dose_mcg)} mcg/day = {num(p.rate_ul_day)} uL/day"


# --- the guided session ---------------------------------------------------------------------


def ask(prompt: str, parse: Callable[[str], T]) -> T:
    """Ask until the answer parses (a typing slip is asked again, not refused)."""
    while True:
        text = input(prompt).strip()
        if not text:
            continue
        try:
            return parse(text)
        except ValueError as e:
            err.print(f"  {e}; again", style="yellow", markup=False)


def confirm(what: str, refusal: str) -> None:
    """A confirmation typed at the terminal; anything else refuses (and aborts the refill)."""
    answer = input(f"Type {CONFIRM_WORD} to {what} (anything else aborts the refill): ")
    if answer.strip() != CONFIRM_WORD:
        raise UsageError(refusal)


def abort(pump: PumpClient, why: str) -> None:
    """Close the session without a change: the refill valve shuts, delivery goes on."""
    try:
        pump.refill_abort()
    except errors.InvalidState:
        err.print("[yellow]the refill session is already closed[/] (the pump aborts it by "
                  f"itself after {duration(config.REFILL_TIMEOUT_S)}): nothing changed",
                  soft_wrap=True)
        return
    except errors.PumpError as e:
        err.print(f"[red]could not abort the refill session[/] ({escape(str(e))}): the pump "
                  f"aborts it by itself {duration(config.REFILL_TIMEOUT_S)} after it opened",
                  soft_wrap=True)
        return
    err.print(f"[yellow]refill aborted[/] ({escape(why)}): the session is closed and the refill "
              "valve shut; reservoir, concentration and program are as they were, and delivery "
              "goes on as programmed.", soft_wrap=True)


def _given(args: argparse.Namespace) -> dict[str, object]:
    """The values given as flags, checked before any session opens."""
    try:
        return {
            "drained": None if args.drained_ml is None else volume(args.drained_ml),
            "fill": None if args.fill_ml is None else volume(args.fill_ml),
            "conc": None if args.concentration is None else concentration(args.concentration),
            "again": args.concentration_again,
        }
    except ValueError as e:
        raise UsageError(str(e)) from e


def guided(pump: PumpClient, args: argparse.Namespace) -> None:
    given = _given(args)
    info = pump.info()
    program = pump.program()
    opened = pump.refill_begin()
    try:
        done, drained = _session(pump, args, given, info.reservoir_ml, program,
                                 opened.expected_ml, opened.concentration_mcg_ml)
    except KeyboardInterrupt:
        err.print()
        abort(pump, "interrupted: Ctrl-C")
        raise
    except EOFError as e:
        abort(pump, "no more input")
        raise UsageError("the input ended before the refill was done") from e
    except UsageError:
        abort(pump, "refused")
        raise
    except errors.ProtocolError as e:
        abort(pump, f"the pump refused: {e.rule or e.name}")
        raise
    except (errors.PumpError, ValueError) as e:
        abort(pump, str(e))
        raise
    show_done(pump, done, drained)


def _session(
    pump: PumpClient,
    args: argparse.Namespace,
    given: dict[str, object],
    capacity_ml: Decimal,
    program: Program,
    expected_ml: Decimal,
    conc_now: int,
) -> tuple[RefillDone, Decimal]:
    confirms = list(args.confirm)
    out.print("[bold]refill session open[/]: the refill valve is open and delivery is paused "
              "until the refill is committed or aborted. Ctrl-C aborts; the pump aborts by "
              f"itself after {duration(config.REFILL_TIMEOUT_S)}.")
    t = Table(show_header=False, box=None, padding=(0, 2))
    t.add_row("reservoir size", f"{num(capacity_ml, 6)} mL")
    t.add_row("program in force", program_text(program))
    now = f"{num(expected_ml, 6)} mL at {conc_now} mcg/mL" if conc_now else "no drug"
    t.add_row("in the reservoir", now)
    t.add_row("[bold]expected to drain[/]", f"[bold]{num(expected_ml, 6)} mL[/]")
    out.print(t)

    # 1. what came out, against what the pump expects
    drained = given["drained"]
    if not isinstance(drained, Decimal):
        drained = ask("Volume drained from the reservoir, mL: ", volume)
    drained_nl, expected_nl = ml_to_nl(drained), ml_to_nl(expected_ml)
    off = ""
    if expected_nl:
        pct = (Decimal(drained_nl - expected_nl) * 100 / expected_nl).quantize(Decimal("0.1"))
        off = f" ({'+' if pct > 0 else ''}{num(pct, 1)} %)"
    line = f"  drained {num(drained, 6)} mL, the pump expected {num(expected_ml, 6)} mL{off}"
    if not drain_mismatch(drained_nl, expected_nl):
        out.print(f"{line}: [green]agrees[/]")
    else:
        out.print(f"{line}: [bold red]more than 20 % off[/]")
        if drained_nl < expected_nl:
            why = ("less came out than the pump expected: the reservoir may not be fully "
                   "drained, or the pump may have delivered more than programmed")
        else:
            why = ("more came out than the pump expected: the drug may not have reached the "
                   "patient (check pump function and the catheter; watch for withdrawal "
                   "signs, label 5.5)")
        out.print(f"  {why}. The pump refuses the refill unless the mismatch is confirmed; "
                  "explain it in the patient record.")
        if "drain_mismatch" not in confirms:
            confirm("confirm the drained volume", "the drained volume was not confirmed: the "
                    "pump refuses a drain more than 20 % off the expected unless confirmed")
            confirms.append("drain_mismatch")

    # 2. the concentration, entered twice: a second person reads the label
    conc = given["conc"]
    if not isinstance(conc, int):
        conc = ask(f"Concentration of the new drug, mcg/mL ({LABEL_STRENGTHS}): ",
                   concentration)
    if conc not in rules.LABEL_CONCENTRATIONS:
        out.print(f"  [bold yellow]{conc} mcg/mL is not a strength on the label[/] "
                  f"({LABEL_STRENGTHS} mcg/mL): only a dilution with preservative-free sodium "
                  "chloride for injection (label 2.3).")
        if "custom_concentration" not in confirms:
            confirm(f"use the custom concentration {conc} mcg/mL",
                    f"the custom concentration {conc} mcg/mL was not confirmed")
            confirms.append("custom_concentration")
    again = given["again"]
    if not isinstance(again, int):
        again = ask("Second person, reading the label: concentration, mcg/mL: ", whole)
    if again != conc:
        raise UsageError(f"the two concentration entries differ ({conc} then {again} "
                         "mcg/mL): refused; read the label again")
    out.print(f"  both entries {conc} mcg/mL")
    if conc_now and conc != conc_now and program.mode != "stopped":
        out.print(f"  [bold yellow]the concentration changes[/] from {conc_now} to {conc} "
                  f"mcg/mL: the pump keeps the dose ({num(program.daily_dose_mcg)} mcg/day) "
                  "at a new rate; monitor the patient closely (label 5.3).")

    # 3. what the reservoir holds now
    def fill_volume(text: str) -> Decimal:
        value = volume(text)
        if value > capacity_ml:
            raise ValueError(f"{num(value, 6)} mL is more than the reservoir holds "
                             f"({num(capacity_ml, 6)} mL)")
        return value

    fill = given["fill"]
    if not isinstance(fill, Decimal):
        fill = ask(f"Volume in the reservoir after filling, mL (at most {num(capacity_ml, 6)}): ",
                   fill_volume)
    if ml_to_nl(fill) <= config.LOW_RESERVOIR_NL:
        out.print(f"  [yellow]{num(fill, 6)} mL is at or under the low-reservoir alarm level "
                  f"({num(LOW_ML)} mL)[/]")

    if getattr(args, "schedule", None) is not None:  # the dose change of this visit
        args.program_refused = program_cmd.at_refill(pump, args)
    done = pump.refill_commit(fill, conc, drained_ml=drained, concentration_again=again,
                              confirm=[c for c in confirms if c in REFILL_CONFIRMATIONS])
    return done, drained


def show_done(pump: PumpClient, r: RefillDone, drained: Decimal) -> None:
    """The refill as committed, with the dates at the program in force and the pump's state."""
    s = pump.status()
    p = pump.program()
    out.print(f"[green]refilled[/]: {num(r.reservoir_ml, 6)} mL at {r.concentration_mcg_ml} "
              f"mcg/mL (drained {num(drained, 6)} mL, the pump expected "
              f"{num(r.expected_ml, 6)} mL)")
    t = Table(show_header=False, box=None, padding=(0, 2))
    t.add_row("program in force", program_text(p))
    if r.refill_at:
        t.add_row("[bold]next refill due[/]", f"[bold]{when(r.refill_at)}[/]")
        t.add_row("low reservoir", f"{when(r.low_at)} (at {num(LOW_ML)} mL left)")
        t.add_row("runs dry", when(s.dry_at))
    else:
        t.add_row("refill dates", "none while no program runs")
    t.add_row("reservoir", f"{num(s.reservoir_ul / 1000, 6)} mL")
    t.add_row("alarms", "[bold red]" + ", ".join(s.alarms) + "[/]" if s.alarms else "none")
    if s.sessions:
        t.add_row("open sessions", ", ".join(s.sessions))
    out.print(t)
    out.print("Observe the patient after the refill (label 5.1).")


# --- flags only: for scripts ----------------------------------------------------------------


def scripted(pump: PumpClient, args: argparse.Namespace) -> None:
    try:
        during: Callable[[], None] | None = None
        if getattr(args, "schedule", None) is not None:  # the dose change of this visit
            def change() -> None:
                args.program_refused = program_cmd.at_refill(pump, args)

            during = change
        r = pump.refill(args.fill_ml, args.concentration, drained_ml=args.drained_ml,
                        concentration_again=args.concentration_again,
                        confirm=[c for c in args.confirm if c in REFILL_CONFIRMATIONS],
                        during=during)
    except KeyboardInterrupt:
        if "refill" in _sessions(pump):
            abort(pump, "interrupted: Ctrl-C")
        raise
    except errors.ProtocolError as e:
        if e.request == "REFILL_COMMIT" and not args.json:
            err.print("the refill session was aborted: nothing changed, the refill valve is "
                      "closed and delivery goes on as programmed", soft_wrap=True)
        raise
    if args.json:
        emit(args, r.to_dict(), lambda: None)
    else:
        show_done(pump, r, Decimal(args.drained_ml))


def _sessions(pump: PumpClient) -> tuple[str, ...]:
    try:
        return pump.status().sessions
    except errors.PumpError:
        return ()


def cmd_refill(pump: PumpClient, args: argparse.Namespace) -> None:
    values = (args.drained_ml, args.fill_ml, args.concentration, args.concentration_again)
    args.program_refused = None
    if all(v is not None for v in values):
        scripted(pump, args)
    elif args.json or not sys.stdin.isatty():
        raise UsageError("give --drained-ml, --concentration, --concentration-again and "
                         "--fill-ml, or run pumpctl refill at a terminal to be guided")
    else:
        guided(pump, args)
    if args.program_refused is not None:  # refilled, but the program change was refused
        raise args.program_refused


# --- refill calc ------------------------------------------------------------------------------


def cmd_calc(args: argparse.Namespace) -> None:
    try:
        plan = _plan(args)
    except ValueError as e:
        raise UsageError(str(e)) from e

    def human() -> None:
        if plan.mode == "flex":
            prog = "flex day " + ", ".join(
                f"{m // 60:02d}:{m % 60:02d} {num(Decimal(d) / 1000)}" for m, d in plan.steps)
            prog += f" mcg/day (local time UTC{plan.utc_offset_min:+d} min)"
        else:
            prog = f"continuous {num(Decimal(plan.steps[0][1]) / 1000)} mcg/day"
        data = plan.to_dict()
        out.print(f"[bold]{num(nl_to_ml(plan.fill_nl), 6)} mL[/] at "
                  f"[bold]{plan.concentration} mcg/mL[/] ({num(_dec(plan.drug_mcg))}"
                  f" mcg), {prog} = {data['rate_ul_day']} uL/day on average, in a "
                  f"{num(nl_to_ml(plan.reservoir_nl))} mL reservoir")
        if plan.usable_nl != plan.fill_nl:
            out.print(f"  the pump delivers whole steps of {config.STEP_NL} nL: "
                      f"{num(nl_to_ml(plan.usable_nl), 6)} mL of it")
        t = Table(title=f"from {when(plan.start)}", title_justify="left")
        t.add_column("")
        t.add_column("days", justify="right")
        t.add_column("date")
        t.add_row(f"low reservoir ({num(LOW_ML)} mL left)", data["days_to_low"],
                  when(plan.low_at))
        t.add_row("runs dry", data["days_to_empty"], when(plan.dry_at))
        margin = duration(plan.margin_s)
        t.add_row(f"[bold]refill due[/] ({margin} before low)",
                  f"[bold]{data['days_to_refill']}[/]", f"[bold]{when(plan.refill_at)}[/]")
        out.print(t)
        if plan.refill_s == 0:
            out.print("[bold red]refill due at once[/]: this fill does not last past the "
                      "refill margin")
        else:
            out.print(f"recommended refill date: [bold]{plan.refill_at:%Y-%m-%d}[/] (by "
                      f"{when(plan.refill_at)}); refill intervals must keep the reservoir "
                      "from running dry (label 5.1)")

    emit(args, plan.to_dict(), human)


def _dec(f: Fraction) -> Decimal:
    return Decimal(f.numerator) / Decimal(f.denominator)


def _plan(args: argparse.Namespace) -> refill_calc.RefillPlan:
    if args.dose is not None and args.step:
        raise ValueError("give --dose (continuous) or --step (a flex day), not both")
    if args.dose is not None:
        steps = [(0, mcg_to_ng(args.dose))]
    elif args.step:
        steps = [refill_calc.parse_step(s) for s in args.step]
    else:
        raise ValueError("give the program: --dose MCG_DAY, or --step HH:MM=DOSE for each "
                         "step of a flex day")
    if args.start:
        try:
            start = datetime.fromisoformat(args.start)
        except ValueError as e:
            raise ValueError(f"--start: not an ISO date/time: {args.start!r}") from e
    else:
        start = datetime.now(tz=UTC)
    fill = args.fill_ml if args.fill_ml is not None else args.reservoir_ml
    return refill_calc.plan(fill, args.concentration, steps, start,
                            utc_offset_min=args.utc_offset, reservoir_ml=args.reservoir_ml)


ORDER = 30


REFILL_CONFIRMATIONS = ("custom_concentration", "drain_mismatch")


def register(sub: Commands, common: argparse.ArgumentParser) -> None:
    """The commands of this module, on pumpctl's parser."""
    p = sub.add_parser(
        "refill", parents=[common],
        help="refill the reservoir: guided at a terminal, or in one go with all four values",
        description="Refill the reservoir through its septum. At a terminal, pumpctl refill "
        "guides you: it opens the refill session, shows what the pump expects to be drained, "
        "then asks the drained volume, the concentration (twice: a second person reads the "
        "label) and the volume filled. With --drained-ml, --concentration, "
        "--concentration-again and --fill-ml it asks nothing (for scripts, and --json). "
        "Ctrl-C or a refusal aborts the session: nothing changes. `refill calc` works out "
        "the refill interval without a pump.",
    )
    p.add_argument("--drained-ml", metavar="ML",
                   help="volume drained from the reservoir, mL (0 on a first fill)")
    p.add_argument("--concentration", "-c", type=int, metavar="MCG_ML",
                   help=f"drug concentration, mcg/mL ({LABEL_STRENGTHS}; others confirmed)")
    p.add_argument("-C", "--concentration-again", type=int, metavar="MCG_ML",
                   help="the concentration entered a second time, from the label (a second"
                        " person reads it): the pump refuses a mismatch")
    p.add_argument("--fill-ml", metavar="ML", help="volume now in the reservoir, mL")
    p.add_argument("--program", metavar="FILE", dest="program_file",
                   action=program_cmd.LoadSchedule,
                   help="a schedule file (as pumpctl program) to review and send during the "
                   "visit, before the commit: in maintenance a dose increase is allowed only "
                   "at a refill (label 2.6)")
    p.add_argument("--yes", action="store_true",
                   help="with --program: send it without asking (scripts)")
    confirm_option(p, REFILL_CONFIRMATIONS + program_cmd.CONFIRMATIONS)
    p.set_defaults(func=cmd_refill, schedule=None)

    actions = p.add_subparsers(dest="action", metavar="ACTION")
    q = actions.add_parser(
        "calc", parents=[common], help="the refill interval for a fill and a program "
        "(no pump needed)",
        description="How long a fill lasts: days until the low-reservoir alarm "
        f"({num(LOW_ML)} mL left), until the reservoir runs dry, and the recommended refill "
        f"date ({duration(config.REFILL_MARGIN_S)} before the low level), worked out as the "
        "pump works them out.",
    )
    q.add_argument("--concentration", "-c", type=int, required=True, metavar="MCG_ML",
                   help="drug concentration, mcg/mL")
    q.add_argument("--dose", metavar="MCG_DAY", help="continuous infusion, mcg/day")
    q.add_argument("--step", action="append", default=[], metavar="HH:MM=DOSE",
                   help="a step of a flex day: from HH:MM (local), DOSE mcg/day; repeat for "
                   "each step, in the order of the day")
    q.add_argument("--reservoir-ml", type=int, choices=refill_calc.RESERVOIR_SIZES_ML,
                   default=config.RESERVOIR_ML,
                   help=f"the pump's reservoir, mL (default {config.RESERVOIR_ML})")
    q.add_argument("--fill-ml", metavar="ML",
                   help="volume in the reservoir after the refill, mL (default: full)")
    q.add_argument("--start", metavar="ISO",
                   help="when the refill is done (ISO date or date/time, UTC unless given; "
                   "default now)")
    q.add_argument("--utc-offset", type=int, default=0, metavar="MIN",
                   help="the flex day's local time: UTC + MIN minutes, as in the pump's "
                   "program (default 0)")
    q.set_defaults(run=cmd_calc)
