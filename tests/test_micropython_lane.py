"""The MicroPython lane: tests/board runs on the real MicroPython VM (the WebAssembly port from
npm, driven by tests/mp/run_lane.mjs) as well as on CPython (pytest collects the same files
directly). This checks that every board test passed on MicroPython and that the same set of
tests ran on both VMs."""

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOARD_TESTS = ROOT / "tests" / "board"
HARNESS = ROOT / "tests" / "mp" / "run_lane.mjs"
VM_PACKAGE = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
LANE_TIMEOUT_S = 60  # the lane takes about a second; this bounds a hung test

def board_test_files():
    return sorted(BOARD_TESTS.glob("test_*.py"))


def rel(path):
    return path.relative_to(ROOT).as_posix()


def defined_tests(path):
    """Test ids pytest collects from a board test file: its top-level test_* functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        f"{rel(path)}::{node.name}"
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    ]


@pytest.fixture(scope="module")
def lane(tmp_path_factory):
    """Run the whole lane once: (report dict, harness output)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the MicroPython lane needs Node.js (>= 18)")
    if not VM_PACKAGE.is_dir():
        pytest.fail(f"{VM_PACKAGE.relative_to(ROOT)} is missing: run `make setup` (npm ci) first")
    report_path = tmp_path_factory.mktemp("mplane") / "report.json"
    try:
        proc = subprocess.run(
            [node, str(HARNESS), "--json", str(report_path), "--timeout", str(LANE_TIMEOUT_S)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=LANE_TIMEOUT_S + 30,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the MicroPython lane did not finish in {e.timeout} s:\n{e.stdout}")
    output = proc.stdout + proc.stderr
    if not report_path.exists():
        pytest.fail(f"the lane wrote no report (exit {proc.returncode}):\n{output}")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    if "error" in report:
        pytest.fail(f"the MicroPython lane did not complete: {report['error']}\n{output}")
    summary = re.search(r"^MPLANE passed=(\d+) failed=(\d+)$", proc.stdout, re.M)
    assert summary, f"no MPLANE summary line in the lane's output:\n{output}"
    assert (int(summary[1]), int(summary[2])) == (len(report["passed"]), len(report["failed"]))
    ran = len(report["passed"]) + len(report["failed"])
    print(f"\nMicroPython lane: {ran} tests ran on {report['micropython']}")
    return report, output, proc.returncode


def test_board_tests_exist():
    assert board_test_files(), "no tests/board/test_*.py: the MicroPython lane has nothing to run"


def test_board_tests_pass_on_micropython(lane):
    report, output, returncode = lane
    failures = "\n".join(f"{f['id']}\n{f['traceback']}" for f in report["failed"])
    assert not report["failed"], f"failed on MicroPython:\n{failures}"
    assert returncode == 0, output


def test_same_tests_ran_on_micropython_and_cpython(lane):
    report, _, _ = lane
    expected = sorted(t for f in board_test_files() for t in defined_tests(f))
    ran = sorted(report["passed"] + [f["id"] for f in report["failed"]])
    print(f"\nMicroPython lane: {len(ran)} ran on MicroPython; tests/board defines {len(expected)}")
    assert ran == expected
    assert len(ran) > 0


@pytest.mark.parametrize("path", board_test_files(), ids=rel)
def test_board_test_is_plain(path):
    """What would make the lanes differ: pytest features the VM's runner does not have
    (fixtures/arguments, test classes). Imports are checked in test_mpy_cross.py."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    problems = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            problems.append(f"line {node.lineno}: test class {node.name} (use test_ functions)")
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            "test_"
        ):
            if isinstance(node, ast.AsyncFunctionDef):
                problems.append(f"line {node.lineno}: {node.name} is async")
            a = node.args
            if a.posonlyargs or a.args or a.kwonlyargs or a.vararg or a.kwarg:
                problems.append(f"line {node.lineno}: {node.name} takes arguments (fixtures)")
            if node.decorator_list:
                problems.append(f"line {node.lineno}: {node.name} is decorated")
    assert not problems, f"{rel(path)} would not run the same on MicroPython:\n" + "\n".join(
        problems
    )
