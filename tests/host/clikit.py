"""Running pumpctl in-process in the tests (with the cli_env fixture of conftest.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from host import cli


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """pumpctl argv: (exit code, stdout, stderr); a traceback is never an answer."""
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code, out, _ = run(capsys, *argv, "--json")
    return code, json.loads(out)
