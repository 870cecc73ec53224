"""The README's scripting example runs as written (its port, key file and schedule file
replaced by a simulator's), so the documentation cannot drift from the API."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from hil.launcher import SimProcess
from hil.suites.kit import prepare

ROOT = Path(__file__).resolve().parents[2]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### For scripts: the Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_the_readme_scripting_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = readme_example()
    with SimProcess("0") as sim:
        with sim.client() as pump:
            prepare(pump)
            pump.set_continuous("400")
        sim.rig().advance(25 * 3_600_000)  # past the first 24 h: the change is allowed
        shutil.copy(ROOT / "examples" / "schedules" / "flex-night.toml", tmp_path / "night.toml")
        shutil.copy(sim.keyfile, tmp_path / "keys.json")
        monkeypatch.chdir(tmp_path)
        exec(compile(code.replace('"/dev/ttyACM0"', repr(sim.pty)), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "400 -> 430 mcg/day" in out, out
    assert "program" in out
