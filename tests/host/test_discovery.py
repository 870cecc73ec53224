"""pumpctl with no --port: the Pico on USB, or among several the one that answers as a pump
(a rig controller is a Pico too), said on stderr; several pumps are listed, never guessed."""

from __future__ import annotations

import os
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.launcher import SimProcess
from host import cli, discovery, keys


@pytest.fixture(scope="module")
def sims() -> Iterator[tuple[SimProcess, SimProcess]]:
    with SimProcess("0") as a, SimProcess("0") as b:
        yield a, b


@pytest.fixture
def silent_pty() -> Iterator[str]:
    """A serial device that never answers (another Pico's firmware, busy with its own)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    yield os.ttyname(slave)
    os.close(master)
    os.close(slave)


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PUMPCTL_PORT", raising=False)
    monkeypatch.setattr(keys, "CONFIG_DIR", Path("/nonexistent/intrapump-keys"))


def test_the_one_pump_among_several_picos_is_picked_and_named(
    sims: tuple[SimProcess, SimProcess], silent_pty: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    pump = sims[0]
    monkeypatch.setattr(discovery, "find_picos", lambda: sorted([pump.pty, silent_pty]))
    assert cli.main(["info", "--json"]) == 0
    captured = capsys.readouterr()
    assert f"pumpctl: using {pump.pty}" in captured.err
    assert f"{silent_pty} (not an intrapump pump)" in captured.err
    assert '"board_id"' in captured.out


def test_two_pumps_are_listed_not_guessed(
    sims: tuple[SimProcess, SimProcess], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ports = sorted(s.pty for s in sims)
    monkeypatch.setattr(discovery, "find_picos", lambda: ports)
    assert cli.main(["info"]) == 3
    err = capsys.readouterr().err
    assert "several Picos found" in err and all(f"{p} (pump " in err for p in ports)
    assert err.count("\n") == 1, "one line"


def test_a_single_pico_is_used_and_said(
    sims: tuple[SimProcess, SimProcess], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(discovery, "find_picos", lambda: [sims[1].pty])
    assert cli.main(["info"]) == 0
    assert f"using {sims[1].pty}, the only Pico on USB" in capsys.readouterr().err
