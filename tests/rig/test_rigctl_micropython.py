"""The rig controller's core tests on the real MicroPython VM: tests/mp/run_lane.mjs --lane
rig runs tests/rig/test_rigctl_core.py (and the core and fake board it imports) in the WebAssembly
MicroPython under Node, with the board lane's runner. Every test must pass there, and the same
tests must run there as pytest collects here."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE_TESTS = ROOT / "tests" / "rig" / "test_rigctl_core.py"
HARNESS = ROOT / "tests" / "mp" / "run_lane.mjs"
VM_PACKAGE = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
LANE_TIMEOUT_S = 60  # the lane takes about a second


def defined_tests() -> list[str]:
    tree = ast.parse(CORE_TESTS.read_text(encoding="utf-8"))
    rel = CORE_TESTS.relative_to(ROOT).as_posix()
    return sorted(f"{rel}::{node.name}" for node in tree.body
                  if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"))


@pytest.fixture(scope="module")
def lane(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, int]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the MicroPython lane needs Node.js (>= 18)")
    if not VM_PACKAGE.is_dir():
        pytest.fail(f"{VM_PACKAGE.relative_to(ROOT)} is missing: run `make setup` (npm ci) first")
    report_path = tmp_path_factory.mktemp("rigmplane") / "report.json"
    try:
        proc = subprocess.run(
            [node, str(HARNESS), "--lane", "rig", "--json", str(report_path),
             "--timeout", str(LANE_TIMEOUT_S)],
            cwd=ROOT, capture_output=True, text=True, timeout=LANE_TIMEOUT_S + 30,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the rig's MicroPython lane did not finish in {e.timeout} s")
    output = proc.stdout + proc.stderr
    if not report_path.exists():
        pytest.fail(f"the lane wrote no report (exit {proc.returncode}):\n{output}")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    if "error" in report:
        pytest.fail(f"the rig's MicroPython lane did not complete: {report['error']}\n{output}")
    summary = re.search(r"^MPLANE passed=(\d+) failed=(\d+)$", proc.stdout, re.M)
    assert summary, f"no MPLANE summary line in the lane's output:\n{output}"
    assert (int(summary[1]), int(summary[2])) == (len(report["passed"]), len(report["failed"]))
    return report, output, proc.returncode


def test_core_tests_pass_on_micropython(lane: tuple[dict[str, Any], str, int]) -> None:
    report, output, returncode = lane
    failures = "\n".join(f"{f['id']}\n{f['traceback']}" for f in report["failed"])
    assert not report["failed"], f"failed on MicroPython:\n{failures}"
    assert returncode == 0, output


def test_the_same_core_tests_ran_on_both_vms(lane: tuple[dict[str, Any], str, int]) -> None:
    report, _, _ = lane
    ran = sorted(report["passed"] + [f["id"] for f in report["failed"]])
    assert ran == defined_tests() and ran


def test_core_tests_are_plain() -> None:
    """What the VM's runner cannot do: fixtures, test classes, decorators, pytest itself."""
    tree = ast.parse(CORE_TESTS.read_text(encoding="utf-8"))
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            mod = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            if mod and mod.split(".")[0] in ("pytest", "hypothesis", "typing"):
                problems.append(f"line {node.lineno}: imports {mod}")
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            problems.append(f"line {node.lineno}: test class {node.name}")
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            a = node.args
            if a.args or a.kwonlyargs or a.vararg or a.kwarg or node.decorator_list:
                problems.append(f"line {node.lineno}: {node.name} takes fixtures or decorators")
    assert not problems, "\n".join(problems)
