"""pumpctl: talk to an intrapump pump (a board or the simulator) from the command line.

Each command lives in a module of this package with a register(sub, common) that adds its
parser (found here by that function; ORDER places it in the help); a command that needs no
pump sets `run` instead of `func`."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
from types import ModuleType
from typing import Any

from host import errors, keys
from host.cli.ui import EXIT_USAGE, UsageError, err, out
from host.client import DEFAULT_RETRIES, DEFAULT_TIMEOUT, PumpClient
from host.discovery import pick_pump

__all__ = ["EXIT_USAGE", "build_parser", "main", "out", "err"]


def command_modules() -> list[ModuleType]:
    """The modules of this package that add commands, in their ORDER (then by name)."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):  # __main__ runs pumpctl: not a command module
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if callable(getattr(module, "register", None)):
            found.append(module)
    return sorted(found, key=lambda mod: (getattr(mod, "ORDER", 50), mod.__name__))


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
    for module in command_modules():
        module.register(sub, common)
    sub.add_parser("deploy", help="put the firmware on a board (as make flash; deploy --help)",
                   add_help=False)

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
        if getattr(args, "run", None) is not None:  # needs no pump
            args.run(args)
            return 0
        url = getattr(args, "port", None) or os.environ.get("PUMPCTL_PORT")
        if not url:
            url, picked = pick_pump()
            err.print(f"pumpctl: {picked}", markup=False, soft_wrap=True)
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
    except BrokenPipeError:  # `pumpctl log | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
