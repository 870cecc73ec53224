"""What every pumpctl command shares: the consoles, output for people or --json, the
confirmations, and how quantities read."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from rich.console import Console

from host import errors
from host.units import fmt, ng_to_mcg, nl_to_ml
from protocol import messages as m

STOP_REASONS = [label for _, label in m.ENUMS["stop_reason"]]
EXIT_USAGE = 2
LEVELS = {2: "critical", 1: "alarm", 0: "notice"}

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

# The subparsers action argparse returns from add_subparsers (its class is private).
Commands = Any


class UsageError(errors.PumpError):
    """Refused on the host before anything was sent."""

    exit_code = EXIT_USAGE


def num(value: Decimal, places: int = 3) -> str:
    return fmt(value, places)


def when(t: datetime | None) -> str:
    return f"{t:%Y-%m-%d %H:%M} UTC" if t else "-"


def emit(args: argparse.Namespace, data: dict[str, Any], human: Callable[[], None]) -> None:
    if args.json:
        print(json.dumps(data))
    else:
        human()


def confirmed(args: argparse.Namespace, warning: str, word: str, what: str) -> None:
    """A confirmation by --confirm, or typed at a terminal; else nothing is sent."""
    ok = args.confirm
    if not ok and sys.stdin.isatty() and not args.json:
        err.print(warning)
        ok = input(f"Type {word} to {what}: ").strip() == word
    if not ok:
        raise UsageError(f"not done: {what} needs --confirm")


def confirm_option(p: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    # One name per --confirm (repeat it for two): a list option would swallow a file
    # argument that follows it.
    p.add_argument("--confirm", action="append", default=[], choices=names,
                   metavar="NAME", help=f"confirm what the pump asks to confirm (repeat for "
                   f"each): {', '.join(names)}")


def hms(seconds: int) -> str:
    d, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    mnt, sec = divmod(rest, 60)
    return (f"{d} d " if d else "") + f"{h:02d}:{mnt:02d}:{sec:02d}"


def mcg_day(ng: int) -> str:
    return f"{num(ng_to_mcg(ng))} mcg/day"


def mcg(ng: int) -> str:
    return f"{num(ng_to_mcg(ng))} mcg"


def ml(nl: int) -> str:
    return f"{num(nl_to_ml(nl), 6)} mL"


def label(enum: str, value: int) -> str:
    return dict(m.ENUMS[enum]).get(value, str(value))
