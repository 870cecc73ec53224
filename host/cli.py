"""pumpctl: talk to an intrapump pump (a board or the simulator) from the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from host import errors, keys
from host.client import (
    ALARM_LEVELS,
    ALARMS,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    ORIGINS,
    PHASES,
    Event,
    Program,
    PumpClient,
    Status,
)
from host.discovery import pick_port
from host.units import duration, fmt, ng_to_mcg, nl_to_ml
from protocol import messages as m
from protocol.host_codec import MESSAGE_NAMES

STOP_REASONS = [label for _, label in m.ENUMS["stop_reason"]]
EXIT_USAGE = 2
LEVELS = {2: "critical", 1: "alarm", 0: "notice"}

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class UsageError(errors.PumpError):
    """Refused on the host before anything was sent."""

    exit_code = EXIT_USAGE


def _fmt(value: Decimal, places: int = 3) -> str:
    return fmt(value, places)


def _when(t: datetime | None) -> str:
    return f"{t:%Y-%m-%d %H:%M} UTC" if t else "-"


def _emit(args: argparse.Namespace, data: dict[str, Any], human: Callable[[], None]) -> None:
    if args.json:
        print(json.dumps(data))
    else:
        human()


def _confirmed(args: argparse.Namespace, warning: str, word: str, what: str) -> None:
    """A confirmation by --confirm, or typed at a terminal; else nothing is sent."""
    confirmed = args.confirm
    if not confirmed and sys.stdin.isatty() and not args.json:
        err.print(warning)
        confirmed = input(f"Type {word} to {what}: ").strip() == word
    if not confirmed:
        raise UsageError(f"not done: {what} needs --confirm")


# --- commands --------------------------------------------------------------------------------


def cmd_info(pump: PumpClient, args: argparse.Namespace) -> None:
    info = pump.info()

    def human() -> None:
        t = Table(title="intrapump", show_header=False, title_justify="left")
        t.add_row("port", pump.url)
        t.add_row("firmware", info.fw_version)
        t.add_row("protocol", str(info.protocol_version))
        t.add_row("board id", info.board_id)
        t.add_row("reservoir", f"{_fmt(info.reservoir_ml)} mL")
        t.add_row("step volume", f"{info.step_nl} nL")
        out.print(t)

    _emit(args, info.to_dict(), human)


def _status_table(s: Status, title: str) -> Table:
    t = Table(title=title, show_header=False, title_justify="left")
    running = s.mode in ("continuous", "flex", "taper")
    t.add_row("mode", f"[bold green]{s.mode}[/]" if running else f"[yellow]{s.mode}[/]")
    t.add_row("phase", s.phase if s.phase != "unset" else "[yellow]no patient profile[/]")
    drug = f"at {s.concentration_mcg_ml} mcg/mL" if s.concentration_mcg_ml else "(no drug)"
    t.add_row("daily dose", f"{_fmt(s.daily_dose_mcg)} mcg/day {drug}")
    t.add_row("rate", f"{_fmt(s.rate_ul_day)} uL/day")
    if s.bolus != "none":
        t.add_row("bolus", f"{s.bolus}: {_fmt(s.bolus_left_mcg)} mcg still to deliver")
    t.add_row("last 24 h", f"{_fmt(s.last_24h_mcg)} mcg")
    t.add_row("delivered", f"{_fmt(s.delivered_ul)} uL = {_fmt(s.delivered_mcg)} mcg")
    dry = f", runs dry {s.dry_at:%Y-%m-%d %H:%M} UTC" if s.dry_at else ""
    t.add_row("reservoir", f"{_fmt(s.reservoir_ul / 1000)} mL left{dry}")
    if s.refill_at:
        t.add_row("refill due", f"{_when(s.refill_at)} (low reservoir {_when(s.low_at)})")
    t.add_row("alarms", "[bold red]" + ", ".join(s.alarms) + "[/]" if s.alarms else "none")
    if s.sessions:
        t.add_row("open sessions", ", ".join(s.sessions))
    t.add_row("pump clock", s.clock.strftime("%Y-%m-%d %H:%M:%S UTC"))
    t.add_row("pump uptime", _duration(s.uptime_s))
    t.add_row("battery", f"{_fmt(s.battery_v, 2)} V")
    if s.frame_errors:
        t.add_row("link errors", f"[red]{s.frame_errors}[/] bad frames received")
    return t


def _duration(seconds: int) -> str:
    d, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    mnt, sec = divmod(rest, 60)
    return (f"{d} d " if d else "") + f"{h:02d}:{mnt:02d}:{sec:02d}"


def cmd_status(pump: PumpClient, args: argparse.Namespace) -> None:
    if args.watch is None:
        s = pump.status()
        _emit(args, s.to_dict(), lambda: out.print(_status_table(s, "intrapump status")))
        return
    # --watch: one line per reading (readable in a terminal and in a log file alike)
    if not args.json:
        out.print(
            f"[bold]{'pump time':>14}  {'mode':<12} {'delivered':>12} {'dose':>12} "
            f"{'reservoir':>11}  alarms[/]"
        )
    n = 0
    while args.count is None or n < args.count:
        if n:
            time.sleep(args.watch)
        s = pump.status()
        n += 1
        if args.json:
            print(json.dumps(s.to_dict()), flush=True)
        else:
            out.print(
                f"{_duration(s.uptime_s):>14}  {s.mode:<12} {_fmt(s.delivered_ul, 2):>9} uL "
                f"{_fmt(s.delivered_mcg, 2):>8} mcg {_fmt(s.reservoir_ul / 1000, 3):>8} mL  "
                f"{', '.join(s.alarms) or '-'}"
            )


def _program_line(verb: str, p: Program) -> str:
    if p.mode == "flex":
        steps = ", ".join(f"{s.start} {_fmt(s.daily_dose_mcg)}" for s in p.steps)
        return (f"[green]{verb}[/] flex day: {steps} mcg/day "
                f"({_fmt(p.daily_dose_mcg)} mcg over 24 h)")
    return (f"[green]{verb}[/] {p.mode} infusion: {_fmt(p.daily_dose_mcg)} mcg/day = "
            f"{_fmt(p.rate_ul_day)} uL/day")


def cmd_set_dose(pump: PumpClient, args: argparse.Namespace) -> None:
    p = pump.set_continuous(args.dose, args.confirm)
    _emit(args, p.to_dict(), lambda: out.print(_program_line("programmed", p)))


def cmd_stop(pump: PumpClient, args: argparse.Namespace) -> None:
    _confirmed(args, "[bold red]Stopping intrathecal baclofen abruptly can cause withdrawal[/] "
               "(high fever, altered mental status, rebound spasticity).", "STOP",
               "stop delivery")
    reason = pump.stop(args.reason, confirm=True)
    _emit(
        args,
        {"mode": "stopped", "reason": reason},
        lambda: out.print(f"[yellow]delivery stopped[/] (reason: {reason})"),
    )


def cmd_suspend(pump: PumpClient, args: argparse.Namespace) -> None:
    _confirmed(args, "[bold red]Suspending holds baclofen at a catheter-patency trickle[/]: "
               "watch for withdrawal.", "SUSPEND", "suspend therapy")
    s = pump.suspend(args.reason, confirm=True)
    _emit(args, s.to_dict(), lambda: out.print(
        f"[yellow]therapy suspended[/]: minimum rate {_fmt(s.rate_ul_day)} uL/day "
        f"(reason: {s.reason})"))


def cmd_resume(pump: PumpClient, args: argparse.Namespace) -> None:
    p = pump.resume()
    _emit(args, p.to_dict(), lambda: out.print(_program_line("resumed", p)))


def cmd_bolus(pump: PumpClient, args: argparse.Namespace) -> None:
    b = pump.bolus(args.dose, round(args.minutes * 60))
    _emit(args, b.to_dict(), lambda: out.print(
        f"[green]{b.kind} bolus[/]: {_fmt(b.dose_mcg)} mcg ({_fmt(b.volume_ul)} uL) over "
        f"{duration(b.duration_s)}, done {_when(b.ends_at)}"))


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
        p = pump.set_profile(args.origin, args.age, args.phase, args.ceiling,
                             args.catheter_ml, start)
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
        t.add_row("hard ceiling", f"{_fmt(p.ceiling_mcg_day)} mcg/day")
        t.add_row("catheter volume", f"{_fmt(p.catheter_ml, 6)} mL")
        t.add_row("infusion started", _when(p.infusion_start) if p.infusion_start
                  else "not yet")
        out.print(t)

    _emit(args, p.to_dict(), human)


def cmd_refill(pump: PumpClient, args: argparse.Namespace) -> None:
    r = pump.refill(args.fill_ml, args.concentration, drained_ml=args.drained_ml,
                    concentration_again=args.concentration_again, confirm=args.confirm)

    def human() -> None:
        out.print(f"[green]refilled[/]: {_fmt(r.reservoir_ml, 6)} mL at "
                  f"{r.concentration_mcg_ml} mcg/mL (drained {args.drained_ml} mL, the pump "
                  f"expected {_fmt(r.expected_ml, 6)} mL)")
        if r.refill_at:
            out.print(f"  next refill due {_when(r.refill_at)}, low reservoir "
                      f"{_when(r.low_at)} at the program in force")

    _emit(args, r.to_dict(), human)


def cmd_alarms(pump: PumpClient, args: argparse.Namespace) -> None:
    state = pump.alarm_state()
    data = state.to_dict()

    def human() -> None:
        if not state.alarms:
            out.print("no active alarms")
            return
        t = Table(title="active alarms", title_justify="left")
        t.add_column("alarm")
        t.add_column("level")
        t.add_column("acknowledged")
        for name in state.alarms:
            level = LEVELS[ALARM_LEVELS[name]]
            t.add_row(name, f"[bold red]{level}[/]" if level == "critical" else level,
                      "no" if name in state.unacknowledged else "yes")
        out.print(t)
        if state.silenced_until:
            out.print(f"tones silenced until {state.silenced_until:%Y-%m-%d %H:%M} UTC")

    _emit(args, data, human)


def cmd_ack(pump: PumpClient, args: argparse.Namespace) -> None:
    names = list(dict.fromkeys(args.alarm))
    if args.all:
        names = list(dict.fromkeys(names + list(pump.status().alarms)))
    elif not names:
        raise UsageError("name the alarms to acknowledge, or give --all")
    data: dict[str, Any] = {"acknowledged": [], "alarms": [], "unacknowledged": [],
                            "silenced_until": None}
    for name in names:
        data.update(pump.alarm_ack(name).to_dict())
        data["acknowledged"].append(name)

    def human() -> None:
        if not names:
            out.print("no active alarm to acknowledge")
            return
        out.print(f"acknowledged: {', '.join(names)}; still active: "
                  f"{', '.join(data['alarms']) or 'none'}")

    _emit(args, data, human)


def cmd_log(pump: PumpClient, args: argparse.Namespace) -> None:
    events = pump.events(args.start)
    if args.json:
        for e in events:
            print(json.dumps(e.to_dict()))
        return
    t = Table(title=f"event log ({len(events)} events)", title_justify="left")
    for col in ("#", "time (UTC)", "event", "by"):
        t.add_column(col, no_wrap=True)
    t.add_column("rule: details")
    for e in events:
        rule = f"[bold]{e.rule}[/]: " if e.rule else ""
        t.add_row(str(e.number), e.time.strftime("%Y-%m-%d %H:%M:%S"), e.event,
                  e.role if e.role != "none" else "pump", rule + event_details(e))
    out.print(t)


def _mcg_day(ng: int) -> str:
    return f"{_fmt(ng_to_mcg(ng))} mcg/day"


def _mcg(ng: int) -> str:
    return f"{_fmt(ng_to_mcg(ng))} mcg"


def _ml(nl: int) -> str:
    return f"{_fmt(nl_to_ml(nl), 6)} mL"


def _label(enum: str, value: int) -> str:
    return dict(m.ENUMS[enum]).get(value, str(value))


def event_details(e: Event) -> str:
    """The three details of a log entry (protocol/messages.py ENUMS["event"]), for people."""
    a, b, c = e.a, e.b, e.c
    ev = e.event
    if ev == "boot":
        return f"reset cause {a}"
    if ev == "program":
        was = f", was {_mcg_day(b)}" if b else ""
        return f"{_label('mode', c)} {_mcg_day(a)}{was}"
    if ev == "refused":
        exc = errors.from_code(a, "", e.type, e.rule, b & 0xFFFFFFFF, c & 0xFFFFFFFF)
        detail = exc.detail()
        return (f"{exc.name} {MESSAGE_NAMES.get(e.type, hex(e.type))}"
                + (f": {detail}" if detail else ""))
    if ev in ("stop", "suspend"):
        return _label("stop_reason", a)
    if ev == "clock_set":
        return f"clock moved by {a:+d} s"
    if ev == "delivery_gap":
        return f"{a} steps skipped"
    if ev == "fault":
        return f"{a} faults since boot"
    if ev == "profile":
        return (f"{_label('origin', c >> 8)}, {_label('phase', c & 0xFF)}, {a} years, "
                f"ceiling {_mcg_day(b)}")
    if ev == "bolus":
        return f"{_label('bolus', e.type)} {_mcg(a)} over {duration(b)} ({_ml(c)})"
    if ev == "bolus_done":
        return f"{_label('bolus', e.type)}: {_mcg(a)} delivered, {_mcg(b)} not"
    if ev == "patient_bolus_set":
        return f"{_mcg(a)}, lockout {duration(b)}, {c} a day" if a else "off"
    if ev == "resume":
        return _label("mode", a)
    if ev == "refill_begin":
        return f"{_ml(a)} expected"
    if ev == "refill_commit":
        return f"filled {_ml(a)} at {b} mcg/mL, drained {_ml(c)}"
    if ev in ("refill_abort", "cap_end"):
        return "timed out" if a else ""
    if ev == "cap_begin":
        return f"until {datetime.fromtimestamp(a & 0xFFFFFFFF, tz=UTC):%Y-%m-%d %H:%M} UTC"
    if ev == "alarm":
        return f"{_label('alarm', a)} {'raised' if b else 'cleared'}"
    if ev == "alarm_ack":
        return _label("alarm", a)
    if ev == "alarm_silence":
        return f"tones off for {a} min"
    if ev == "escalation":
        return f"{_mcg_day(a)} from {_mcg_day(b)}, {c} recent increases"
    return ""


def cmd_counters(pump: PumpClient, args: argparse.Namespace) -> None:
    counts = pump.counters()

    def human() -> None:
        t = Table(title="refusals since boot", show_header=False, title_justify="left")
        for name, n in counts.items():
            t.add_row(name, f"[red]{n}[/]" if n else "0")
        out.print(t)

    _emit(args, counts, human)


def cmd_time_sync(pump: PumpClient, args: argparse.Namespace) -> None:
    clock = pump.set_clock()
    _emit(args, {"clock": clock.isoformat()},
          lambda: out.print(f"pump clock set to {clock:%Y-%m-%d %H:%M:%S} UTC"))


# --- the parser --------------------------------------------------------------------------------


def _confirm_option(p: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    p.add_argument("--confirm", nargs="+", action="extend", default=[], choices=names,
                   metavar="NAME", help=f"confirm what the pump asks to confirm: "
                   f"{', '.join(names)}")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: an option given before the command is not reset by the command's defaults.
    common.add_argument(
        "--port", "-p", default=argparse.SUPPRESS,
        help="pyserial URL or device (/dev/ttyACM0, COM3, socket://host:port); "
        "default: $PUMPCTL_PORT, else the one Pico found on USB",
    )
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print JSON for scripts")
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS,
                        help=f"seconds to wait for each answer (default {DEFAULT_TIMEOUT:g})")
    common.add_argument("--keys", default=argparse.SUPPRESS, metavar="FILE",
                        help="role keys (default: $PUMPCTL_KEYS, else "
                        "~/.config/intrapump/keys/BOARD_ID.json)")
    common.add_argument("--role", choices=keys.ROLES, default=argparse.SUPPRESS,
                        help="the role to sign requests as (default: clinician)")

    ap = argparse.ArgumentParser(
        prog="pumpctl", parents=[common],
        description="Program and inspect an intrapump pump (a board or pumpsim). Set up a "
        "pump with `profile set`, then `refill`, then `set-dose`.",
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", parents=[common], help="identity and capabilities")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("status", parents=[common], help="delivery state and totals")
    p.add_argument("--watch", type=float, nargs="?", const=1.0, metavar="SECONDS",
                   help="keep reading every SECONDS (default 1)")
    p.add_argument("--count", type=int, help="with --watch: stop after COUNT readings")
    p.set_defaults(func=cmd_status)

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

    p = sub.add_parser("refill", parents=[common], help="refill the reservoir (a refill "
                       "session opened and committed)")
    p.add_argument("--fill-ml", required=True, metavar="ML", help="volume now in the "
                   "reservoir, mL")
    p.add_argument("--concentration", "-c", type=int, required=True, metavar="MCG_ML",
                   help="drug concentration, mcg/mL (50, 500, 1000, 2000; others confirmed)")
    p.add_argument("-C", "--concentration-again", type=int, metavar="MCG_ML", required=True,
                   help="the concentration entered a second time, from the label (a second"
                        " person reads it): the pump refuses a mismatch")
    p.add_argument("--drained-ml", required=True, metavar="ML",
                   help="volume drained from the reservoir, mL (0 on a first fill)")
    _confirm_option(p, ("custom_concentration", "drain_mismatch"))
    p.set_defaults(func=cmd_refill)

    p = sub.add_parser("set-dose", parents=[common], help="program continuous infusion at "
                       "the reservoir's concentration")
    p.add_argument("dose", help="daily dose in mcg/day, e.g. 400 or 412.5")
    _confirm_option(p, ("high_dose", "large_decrease"))
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

    p = sub.add_parser("alarms", parents=[common], help="the active alarms")
    p.set_defaults(func=cmd_alarms)

    p = sub.add_parser("ack", parents=[common], help="acknowledge alarms (their tone stops)")
    p.add_argument("alarm", nargs="*", default=[], metavar="ALARM",
                   help=f"alarm names: {', '.join(ALARMS)}")
    p.add_argument("--all", action="store_true", help="every active alarm")
    p.set_defaults(func=cmd_ack)

    sub.add_parser("deploy", help="put the firmware on a board (as make flash; deploy --help)",
                   add_help=False)

    p = sub.add_parser("log", parents=[common], help="the pump's event log")
    p.add_argument("--start", type=int, default=0, help="first event number (default 0)")
    p.set_defaults(func=cmd_log)

    p = sub.add_parser("counters", parents=[common], help="refusals since boot, by error")
    p.set_defaults(func=cmd_counters)

    p = sub.add_parser("time-sync", parents=[common], help="set the pump clock to this "
                       "computer's")
    p.set_defaults(func=cmd_time_sync)

    p = sub.add_parser("stop", parents=[common], help="stop delivery (needs confirmation)")
    p.add_argument("--reason", choices=STOP_REASONS, default="clinician_decision")
    p.add_argument("--confirm", action="store_true", help="confirm without a prompt")
    p.set_defaults(func=cmd_stop)
    return ap


def _error_json(e: errors.PumpError) -> dict[str, Any]:
    data: dict[str, Any] = {"type": type(e).__name__, "message": str(e)}
    if isinstance(e, errors.ProtocolError):
        data.update(e.to_dict())
    return {"error": data}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["deploy"]:  # flashing talks to the board itself (host/deploy.py)
        from host import deploy

        return deploy.main(argv[1:])
    args = build_parser().parse_args(argv)
    args.json = getattr(args, "json", False)
    timeout = getattr(args, "timeout", DEFAULT_TIMEOUT)
    try:
        url = getattr(args, "port", None) or os.environ.get("PUMPCTL_PORT") or pick_port()
        keyfile = keys.find(getattr(args, "keys", None), None)
        with PumpClient(
            url,
            timeout=timeout,
            retries=DEFAULT_RETRIES,
            keys=keys.load(keyfile) if keyfile else None,
            role=getattr(args, "role", "clinician"),
        ) as pump:
            if keyfile is None and keys.CONFIG_DIR.is_dir():
                keyfile = keys.find(None, pump.info().board_id)  # keys kept per board
                pump.keys = keys.load(keyfile) if keyfile else {}
            try:
                args.func(pump, args)
            except ValueError as e:  # a value refused on the host: nothing was sent
                raise UsageError(str(e)) from e
    except errors.PumpError as e:
        if args.json:
            print(json.dumps(_error_json(e)))
        err.print(f"pumpctl: {e}", style="red", markup=False, soft_wrap=True)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
