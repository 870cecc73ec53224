"""pumpctl keys: make role keys, show them (fingerprints, never the keys), put them on a board,
rotate them.

Keys reach a board only through the flash procedure (host/deploy.py; README "Roles and keys"),
never over the pump's protocol: `keys provision` and `keys rotate` ask the running pump
firmware for the REPL (with the keys it holds now), copy keys.json with mpremote, reset the
board, and then check that the board answers a request signed with the new keys. `rotate`
touches the host's key file only after that check: the old file is kept as a backup, and until
the check passes the new keys wait beside it in FILE.new.

(This module is keycmd, not keys: a host.cli.keys would shadow host.keys in the package.)"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from host import deploy, discovery, errors, keys
from host.cli.ui import Commands, UsageError, emit, err, out
from host.client import Info, PumpClient

CONFIRM_S = 15.0  # how long the board may take to come back after its reset


class KeysError(errors.PumpError):
    """Keys not put on a board, with what to do about it; the exit code of its cause."""

    def __init__(self, message: str, exit_code: int = 3):
        super().__init__(message)
        self.exit_code = exit_code


class KeysNotConfirmed(errors.PumpError):
    """The keys were copied but the board does not answer with them."""

    exit_code = 3


# -- generate and show --------------------------------------------------------------------------


def describe(path: Path, role_keys: dict[str, bytes]) -> dict[str, Any]:
    """A key file for people and scripts: its roles and their fingerprints, never the keys."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        mode = None
    board = path.stem if path.parent.resolve() == keys.CONFIG_DIR.resolve() else None
    return {
        "path": str(path),
        "board_id": board,
        "roles": [r for r in keys.ROLES if r in role_keys],
        "fingerprints": {r: keys.fingerprint(role_keys[r]) for r in keys.ROLES
                         if r in role_keys},
        "private": mode is not None and not mode & 0o077,
    }


def print_keys(d: dict[str, Any], title: str) -> None:
    out.print(title, markup=False, soft_wrap=True)
    t = Table()
    t.add_column("role")
    t.add_column("fingerprint (SHA-256)", no_wrap=True)
    for role, fp in d["fingerprints"].items():
        t.add_row(role, fp)
    out.print(t)


def cmd_generate(args: argparse.Namespace) -> None:
    if args.out:
        target = Path(args.out)
    else:
        if not all(c in "0123456789abcdef" for c in args.board_id.lower()):
            raise UsageError(f"--board-id: hex digits, as `pumpctl info` shows (not "
                             f"{args.board_id!r})")
        target = keys.CONFIG_DIR / f"{args.board_id.lower()}.json"
    if target.exists() and not args.force:
        raise UsageError(f"{target} exists: --force to replace it (its keys would be lost)")
    new = keys.generate()
    try:
        keys.write(target, new)
    except OSError as e:
        raise UsageError(f"cannot write {target}: {e.strerror or e}") from e
    d = describe(target, new)

    def human() -> None:
        print_keys(d, f"new keys for {', '.join(d['roles'])} in {target} (mode 600):")
        out.print(f"Put them on a board with: pumpctl keys provision {target}", markup=False,
                  soft_wrap=True)

    emit(args, d, human)


def cmd_show(args: argparse.Namespace) -> None:
    explicit = args.file or getattr(args, "keys", None)
    found = keys.find(explicit, None)
    if found is not None:
        paths = [found]
    else:
        paths = sorted(keys.CONFIG_DIR.glob("*.json")) if keys.CONFIG_DIR.is_dir() else []
    if not paths:
        raise UsageError(f"no key file: give FILE, --keys FILE or $PUMPCTL_KEYS (none in "
                         f"{keys.CONFIG_DIR})")
    files = [describe(p, keys.load(p)) for p in paths]

    def human() -> None:
        for d in files:
            board = f" (board {d['board_id']})" if d["board_id"] else ""
            print_keys(d, f"{d['path']}{board}:")
            if not d["private"]:
                err.print(f"pumpctl: {d['path']} can be read by others: chmod 600 it",
                          style="yellow", markup=False, soft_wrap=True)

    emit(args, {"files": files}, human)


# -- provision and rotate -----------------------------------------------------------------------


def board_port(args: argparse.Namespace, dry_run: bool = False) -> str | None:
    """The board's port: --port, $PUMPCTL_PORT, else the one Pico on USB (a dry run: None if
    there is none). It must be a serial port: mpremote does not reach pumpsim's socket."""
    port = getattr(args, "port", None) or os.environ.get("PUMPCTL_PORT")
    if port is None:
        if dry_run:
            found = discovery.find_picos()
            return found[0] if len(found) == 1 else None
        port = discovery.pick_port()
    if "://" in port and not port.startswith("rfc2217://"):
        raise UsageError(f"{port}: keys reach a board on its serial port with mpremote (the "
                         "flash procedure); pumpsim takes its keys at start (pumpctl sim "
                         "--keys FILE)")
    return port


def probe(port: str) -> str | None:
    """The board id the pump firmware on port reports (no role needed), or None when no
    pump firmware answers (a board at the REPL)."""
    try:
        with PumpClient(port, timeout=1.0, retries=1) as pump:
            return pump.info().board_id
    except (errors.NoResponse, errors.GarbledResponse):
        return None


def release(port: str, held: dict[str, bytes]) -> str:
    """The pump firmware on port hands its link to the REPL (asked with the keys `held`; a
    board at the REPL already: nothing to ask). Returns what was found."""
    try:
        return deploy.release_link(port, held)
    except (errors.MissingKey, errors.BadTag, errors.NoKey, errors.WrongRole,
            errors.AuthRequired, errors.NoSession) as e:
        raise KeysError(f"{e} -- the pump firmware does not take these keys: give the key "
                        "file the board holds (--keys), or put the service jumper in (GP22 "
                        "to GND) and reset the board", e.exit_code) from e


def copy(port: str, new: dict[str, bytes]) -> None:
    """The flash procedure for keys.json alone: mpremote copies it, then resets the board."""
    with tempfile.TemporaryDirectory(prefix="intrapump-keys-") as tmp:
        local = Path(tmp) / "keys.json"
        keys.write(local, new)
        deploy.deploy(port, [(local, "keys.json")])


def confirm(port: str, new: dict[str, bytes], wait_s: float = CONFIRM_S) -> Info:
    """Reconnect after the reset and sign a request with the new keys: the board runs with
    them. Returns its identity."""
    deploy.wait_for_port(port)
    role = next(r for r in ("clinician", "service", "patient") if r in new)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with PumpClient(port, timeout=1.0, retries=1, keys=new, role=role) as pump:
                info = pump.info()
                pump.status()  # signed with the new key
                return info
        except errors.LinkError as e:
            if time.monotonic() > deadline:
                raise KeysNotConfirmed(
                    f"{port}: no pump firmware answered after the reset ({e}); keys.json "
                    "is on the board: flash the firmware with make flash KEYS=FILE") from e
            time.sleep(0.3)
        except errors.ProtocolError as e:
            raise KeysNotConfirmed(f"{port}: the board refused a request signed with the "
                                   f"new keys ({e.name}): it does not run with them") from e


def save(path: Path, new: dict[str, bytes]) -> Path | None:
    """Write new keys to the host's key file, the old file kept as a backup (returned)."""
    backup = None
    if path.exists():
        backup = path.with_name(f"{path.name}.{datetime.now():%Y%m%dT%H%M%S}.bak")
        shutil.copy2(path, backup)
        os.chmod(backup, 0o600)
    staging = path.with_name(path.name + ".new")
    keys.write(staging, new)
    os.replace(staging, path)
    return backup


def dry_run(args: argparse.Namespace, action: str, key_file: str, steps: list[str]) -> None:
    port = board_port(args, dry_run=True)
    where = port or "the board's port (none found: give --port)"
    plan = [s.replace("PORT", where) for s in steps]
    emit(args, {"dry_run": True, "action": action, "port": port, "key_file": key_file,
                "steps": plan},
         lambda: out.print(f"keys {action} would (nothing is done):\n"
                           + "\n".join(f"  {i}. {s}" for i, s in enumerate(plan, 1)),
                           markup=False, soft_wrap=True))


def cmd_provision(args: argparse.Namespace) -> None:
    source = Path(args.file)
    new = keys.load(source)
    held_file = keys.find(getattr(args, "keys", None), None)
    if args.dry_run:
        dry_run(args, "provision", str(source), [
            "ask the pump firmware on PORT for the REPL with the keys it holds ("
            + (str(held_file) if held_file else f"{keys.CONFIG_DIR}/BOARD_ID.json, else "
               f"{source}") + ")",
            f"copy {source} to the board as keys.json with mpremote "
            f"({', '.join(r for r in keys.ROLES if r in new)})",
            "reset the board",
            "reconnect and sign a request with the new keys",
            "no save" if args.no_save else
            f"save them as {keys.CONFIG_DIR}/BOARD_ID.json (the old file kept as a backup)",
        ])
        return
    port = board_port(args)
    assert port is not None
    board = probe(port)
    held_file = keys.find(getattr(args, "keys", None), board)
    held = keys.load(held_file) if held_file else new  # none held: the board may have these
    found = release(port, held)
    copy(port, new)
    info = confirm(port, new)
    saved = backup = None
    target = keys.CONFIG_DIR / f"{info.board_id}.json"
    if not args.no_save and target.resolve() != source.resolve():
        if not (target.exists() and keys.load(target) == new):
            backup = save(target, new)
        saved = target
    d = describe(source, new)
    result = {"port": port, "board_id": info.board_id, "found": found, "confirmed": True,
              "roles": d["roles"], "fingerprints": d["fingerprints"],
              "saved": str(saved) if saved else None, "backup": str(backup) if backup else None}

    def human() -> None:
        out.print(f"[green]board {info.board_id} on {port} runs with the keys of {source}[/]",
                  soft_wrap=True)
        if saved:
            out.print(f"  host key file: {saved}"
                      + (f" (old one kept as {backup})" if backup else ""), markup=False,
                      soft_wrap=True)

    emit(args, result, human)


def cmd_rotate(args: argparse.Namespace) -> None:
    explicit = getattr(args, "keys", None)
    if args.dry_run:
        held_file = keys.find(explicit, None)
        name = str(held_file) if held_file else f"{keys.CONFIG_DIR}/BOARD_ID.json"
        dry_run(args, "rotate", name, [
            "read the board id of the pump firmware on PORT",
            f"make new keys for {', '.join(keys.ROLES)}, kept in {name}.new until confirmed",
            f"ask the pump firmware for the REPL with the keys of {name}",
            "copy the new keys to the board as keys.json with mpremote, reset the board",
            "reconnect and sign a request with the new keys",
            f"keep {name} as a backup, put the new keys in its place",
        ])
        return
    port = board_port(args)
    assert port is not None
    board = probe(port)
    if board is None:
        raise errors.NoResponse(f"{port}: no pump firmware answering: rotating keys needs the "
                                "running firmware (to confirm the new keys); flash it first")
    key_file = keys.find(explicit, board)
    if key_file is None:
        raise UsageError(f"no key file for board {board}: give --keys FILE (or "
                         f"$PUMPCTL_KEYS)")
    old = keys.load(key_file)
    missing = [r for r in keys.ROLES if r not in old]
    if missing:
        raise UsageError(f"{key_file} lacks {', '.join(missing)}: rotating replaces every "
                         "role's key; use the full key file the board was provisioned with")
    new = keys.generate()
    staging = key_file.with_name(key_file.name + ".new")
    try:
        keys.write(staging, new)
    except OSError as e:
        raise UsageError(f"cannot write {staging}: {e.strerror or e}") from e
    try:
        found = release(port, old)
    except errors.PumpError:
        staging.unlink(missing_ok=True)  # nothing changed on the board
        raise
    try:
        copy(port, new)
        info = confirm(port, new)
    except errors.PumpError as e:
        raise KeysError(f"{e} -- {key_file} is unchanged; the new keys are in {staging} (the "
                        "board may hold either: try pumpctl --keys with each)",
                        e.exit_code) from e
    backup = save(key_file, new)
    staging.unlink(missing_ok=True)
    d = describe(key_file, new)
    result = {"port": port, "board_id": info.board_id, "found": found, "confirmed": True,
              "key_file": str(key_file), "backup": str(backup) if backup else None,
              "roles": d["roles"], "fingerprints": d["fingerprints"],
              "old_fingerprints": {r: keys.fingerprint(k) for r, k in old.items()}}

    def human() -> None:
        out.print(f"[green]board {info.board_id} on {port} runs with new keys[/] (confirmed "
                  "with a signed request)", soft_wrap=True)
        out.print(f"  {key_file}: the new keys; the old ones kept as {backup}", markup=False,
                  soft_wrap=True)
        out.print("  Give each person their roles' new keys: the old ones no longer work.")

    emit(args, result, human)


ORDER = 80


def register(sub: Commands, common: argparse.ArgumentParser) -> None:
    """The commands of this module, on pumpctl's parser."""
    p = sub.add_parser("keys", help="role keys: generate, show, provision, rotate",
                       description=(__doc__ or "").split("\n\n")[1])
    ks = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    q = ks.add_parser("generate", parents=[common], help="new random keys for every role")
    where = q.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", metavar="FILE", help="write them to FILE (mode 600)")
    where.add_argument("--board-id", metavar="ID", help=f"write them to "
                       f"{keys.CONFIG_DIR}/ID.json, where pumpctl finds them for that board")
    q.add_argument("--force", action="store_true", help="replace an existing file")
    q.set_defaults(run=cmd_generate)

    q = ks.add_parser("show", parents=[common],
                      help="the roles of a key file and their fingerprints (never the keys)")
    q.add_argument("file", nargs="?", help="the key file (default: --keys, $PUMPCTL_KEYS, "
                   f"else every file in {keys.CONFIG_DIR})")
    q.set_defaults(run=cmd_show)

    q = ks.add_parser("provision", parents=[common],
                      help="put a key file on a board (the flash procedure, with mpremote)")
    q.add_argument("file", help="the keys to put on the board")
    q.add_argument("--dry-run", action="store_true", help="say what would be done; touch "
                   "no board")
    q.add_argument("--no-save", action="store_true", help="do not copy them to the host's "
                   "key file for the board")
    q.set_defaults(run=cmd_provision)

    q = ks.add_parser("rotate", parents=[common],
                      help="new keys on a board; the host's file updated once it runs them")
    q.add_argument("--dry-run", action="store_true", help="say what would be done; touch "
                   "no board")
    q.set_defaults(run=cmd_rotate)
