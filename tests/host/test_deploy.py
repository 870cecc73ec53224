"""make flash: what goes onto the board, and the refusals before anything is copied."""

from __future__ import annotations

import json

import pytest

from hil.launcher import SimProcess
from host import deploy, discovery, errors
from host.client import PumpClient


def test_dry_run_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert deploy.main(["--dry-run", "--json"]) == 0
    files = {f["path"]: f["bytes"] for f in json.loads(capsys.readouterr().out)["files"]}
    assert "main.py" in files  # MicroPython runs /main.py at boot
    assert "firmware/core/infusion.mpy" in files and "protocol/codec.mpy" in files
    assert not any("host_codec" in p for p in files)  # construct never goes to the board
    assert all(p == "main.py" or p.endswith(".mpy") for p in files)
    assert all(size > 0 for size in files.values())


def test_no_board_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(discovery, "find_picos", lambda: [])
    assert deploy.main([]) == 3
    err = capsys.readouterr().err
    assert "no Pico found on USB" in err and "Traceback" not in err


def test_refuses_to_take_over_a_delivering_pump(sim: SimProcess) -> None:
    with PumpClient(sim.url) as pump:
        pump.set_continuous("400", 500)
    with pytest.raises(errors.InvalidState):
        deploy.release_link(sim.url)
    with PumpClient(sim.url) as pump:
        assert pump.status().mode == "continuous"  # still delivering
        pump.stop("surgery_or_maintenance", confirm=True)
    assert deploy.release_link(sim.url) == "pump firmware handed over the REPL"
