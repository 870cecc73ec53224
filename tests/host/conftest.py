"""Shared set-up of the pumpctl tests (tests/host/test_cli*.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from host import cli, keys


@pytest.fixture
def cli_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """pumpctl as a user who exported the simulator's keys and port would run it: no test
    sees the user's own key files or environment; tables unwrapped, as in a wide terminal.
    The port is the simulator's pty (closing a socket:// URL takes pyserial 0.3 s)."""
    monkeypatch.setattr(keys, "CONFIG_DIR", Path("/nonexistent/intrapump-keys"))
    monkeypatch.delenv("PUMPCTL_KEYS", raising=False)
    monkeypatch.delenv("PUMPCTL_PORT", raising=False)
    if "sim" in request.fixturenames:
        sim = request.getfixturevalue("sim")
        monkeypatch.setenv("PUMPCTL_KEYS", sim.keyfile)
        monkeypatch.setenv("PUMPCTL_PORT", sim.pty)
    monkeypatch.setattr(cli.out, "width", 200)
    monkeypatch.setattr(cli.err, "width", 200)
