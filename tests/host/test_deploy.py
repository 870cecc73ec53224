"""make flash: what goes onto the board, and the refusals before anything is copied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hil.launcher import SimProcess
from hil.suites.kit import prepare
from host import deploy, discovery, errors, keys


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
    with sim.client() as pump:
        prepare(pump)
        pump.set_continuous("400")
    with pytest.raises(errors.InvalidState):
        deploy.release_link(sim.url, sim.keys())
    with sim.client() as pump:
        assert pump.status().mode == "continuous"  # still delivering
        pump.stop("surgery_or_maintenance", confirm=True)
    patient_only = {"patient": sim.keys()["patient"]}
    with pytest.raises(errors.MissingKey):
        deploy.release_link(sim.url, patient_only)  # a patient cannot take the board over
    assert deploy.release_link(sim.url, sim.keys()) == "pump firmware restarted into the REPL"
    # It restarted (its watchdog cannot be stopped) and the new boot left the link alone.
    rig = sim.rig()
    try:
        assert rig.boot()["boots"] == 2
    finally:
        rig.close()
    assert not (Path(sim.keyfile).parent / "repl.flag").exists(), "the flag is used once"


def test_keys_are_provisioned_with_the_firmware(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keyfile = tmp_path / "keys.json"
    keys.write(keyfile, keys.generate())
    assert deploy.main(["--dry-run", "--json", "--keys", str(keyfile)]) == 0
    files = {f["path"] for f in json.loads(capsys.readouterr().out)["files"]}
    assert "keys.json" in files


def test_the_flashed_firmware_names_its_commit(tmp_path: Path) -> None:
    plan = dict((dest, local) for local, dest in deploy.build(tmp_path))
    stamped = (tmp_path / "stamped" / "version.py").read_text()
    assert f"BUILD = {deploy.build_id()!r}" in stamped and 'BUILD = "dev"' not in stamped
    assert plan["firmware/version.mpy"].stat().st_size > 0


def test_pumpctl_deploy_is_the_flash_tool(capsys: pytest.CaptureFixture[str]) -> None:
    from host import cli

    assert cli.main(["deploy", "--dry-run", "--json"]) == 0
    files = {f["path"] for f in json.loads(capsys.readouterr().out)["files"]}
    assert {"main.py", "firmware/loop.mpy", "protocol/messages.mpy"} <= files, files
