"""pumpctl keys (generate, show, provision, rotate) and pumpctl sim.

provision and rotate run the flash procedure against the simulator's pty with a fake mpremote
(it copies keys.json into the simulator's flash folder and resets the virtual board), so the
check that the board runs with the new keys is real."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from clikit import run, run_json

from hil.launcher import SimProcess
from host import cli, deploy, discovery, errors, keys
from host.client import PumpClient

KEY_FILE_FIELDS = {"path", "board_id", "roles", "fingerprints", "private"}


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No test sees the user's key files, port or a Pico on this computer."""
    config = tmp_path / "config-keys"
    monkeypatch.setattr(keys, "CONFIG_DIR", config)
    monkeypatch.delenv("PUMPCTL_KEYS", raising=False)
    monkeypatch.delenv("PUMPCTL_PORT", raising=False)
    monkeypatch.setattr(discovery, "find_picos", lambda: [])
    monkeypatch.setattr(cli.out, "width", 200)
    return config




def secrets_of(path: Path) -> list[str]:
    return [k.hex() for k in keys.load(path).values()]


# --- generate and show -------------------------------------------------------------------------


def test_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "new" / "keys.json"
    code, data = run_json(capsys, "keys", "generate", "--out", str(target))
    assert code == 0 and set(data) == KEY_FILE_FIELDS
    made = keys.load(target)
    assert data["roles"] == list(keys.ROLES) == sorted(made, key=keys.ROLES.index)
    assert data["fingerprints"] == {r: keys.fingerprint(k) for r, k in made.items()}
    assert data["private"] and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert len({k for k in made.values()}) == 3  # a key per role
    code, out, err = run(capsys, "keys", "generate", "--out", str(target))
    assert code == 2 and "--force" in err and keys.load(target) == made  # kept
    code, out, _ = run(capsys, "keys", "generate", "--out", str(target), "--force")
    assert code == 0 and keys.load(target) != made and "keys provision" in out
    assert not any(s in out for s in secrets_of(target))


def test_generate_for_a_board_and_errors(
    isolated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, data = run_json(capsys, "keys", "generate", "--board-id", "E66118604B3C2A21")
    assert code == 0 and data["board_id"] == "e66118604b3c2a21"
    assert Path(data["path"]) == isolated / "e66118604b3c2a21.json"
    code, _, err = run(capsys, "keys", "generate", "--board-id", "not-hex")
    assert code == 2 and "hex digits" in err
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, data = run_json(capsys, "keys", "generate", "--out", str(locked / "k.json"))
    finally:
        locked.chmod(0o700)
    if os.geteuid() != 0:  # root writes anywhere
        assert code == 2 and "cannot write" in data["error"]["message"]


def test_show(isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "keys", "show")
    assert code == 2 and data["error"]["type"] == "UsageError"
    assert "no key file" in data["error"]["message"]
    one = tmp_path / "clinic.json"
    keys.write(one, {r: k for r, k in keys.generate().items() if r != "service"})
    code, data = run_json(capsys, "keys", "show", str(one))
    assert code == 0 and [set(f) for f in data["files"]] == [KEY_FILE_FIELDS]
    assert data["files"][0]["roles"] == ["patient", "clinician"]
    assert data["files"][0]["board_id"] is None
    code, out, err = run(capsys, "keys", "show", str(one))
    assert code == 0 and "clinician" in out and "service" not in out
    assert not any(s in out + err for s in secrets_of(one))
    monkeypatch.setenv("PUMPCTL_KEYS", str(one))  # as pumpctl would find it
    code, data = run_json(capsys, "keys", "show")
    assert code == 0 and data["files"][0]["path"] == str(one)
    monkeypatch.delenv("PUMPCTL_KEYS")
    for board in ("e66118604b3c2a21", "0123456789abcdef"):
        keys.write(isolated / f"{board}.json", keys.generate())
    code, data = run_json(capsys, "keys", "show")  # every board's file
    assert code == 0 and [f["board_id"] for f in data["files"]] == [
        "0123456789abcdef", "e66118604b3c2a21"]
    one.chmod(0o644)
    code, out, err = run(capsys, "keys", "show", str(one))
    assert code == 0 and "chmod 600" in err
    one.write_text("not json")
    code, _, err = run(capsys, "keys", "show", str(one))
    assert code == 2 and str(one) in err and err.count("\n") == 1


# --- provision and rotate ----------------------------------------------------------------------


class FakeBoard:
    """The flash procedure against the simulator: release_link checks the keys held by
    signing a request (the simulator's firmware cannot come back from the REPL, so it stays
    on the link); mpremote `fs cp` writes into the simulator's flash folder and `reset`
    presses its reset button, so the firmware boots with what was copied."""

    def __init__(self, sim: SimProcess, fail_on: str | None = None):
        self.sim = sim
        self.fail_on = fail_on
        self.calls: list[tuple[str, ...]] = []

    def release_link(self, port: str, held: dict[str, bytes]) -> str:
        self.calls.append(("release_link", port))
        role = "clinician" if "clinician" in held else "service"
        with PumpClient(port, keys=held, role=role, timeout=1.0) as pump:
            pump.status()  # BadTag with keys the board does not hold, as ENTER_REPL would
        return "pump firmware restarted into the REPL"

    def mpremote(self, port: str, *args: str) -> None:
        self.calls.append(args)
        if self.fail_on and self.fail_on in args:
            raise errors.LinkError(f"mpremote {' '.join(args[:2])}: could not enter raw repl")
        if args[:2] == ("fs", "cp"):
            shutil.copy(args[2], self.sim.flash_dir() / args[3].lstrip(":"))
        elif args == ("reset",):
            rig = self.sim.rig()
            try:
                rig.reset()
            finally:
                rig.close()


def fake_board(sim: SimProcess, monkeypatch: pytest.MonkeyPatch,
               fail_on: str | None = None) -> FakeBoard:
    fake = FakeBoard(sim, fail_on)
    monkeypatch.setattr(deploy, "release_link", fake.release_link)
    monkeypatch.setattr(deploy, "mpremote", fake.mpremote)
    return fake


@pytest.fixture
def board(sim: SimProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBoard]:
    yield fake_board(sim, monkeypatch)


def signs_with(sim: SimProcess, role_keys: dict[str, bytes]) -> bool:
    """Whether the simulator takes a request signed with these keys."""
    try:
        with PumpClient(sim.pty, keys=role_keys, timeout=1.0) as pump:
            pump.status()
        return True
    except errors.BadTag:
        return False


def test_provision(sim: SimProcess, board: FakeBoard, isolated: Path,
                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PUMPCTL_KEYS", sim.keyfile)  # the keys the board holds now
    old = sim.keys()
    new_file = tmp_path / "new.json"
    keys.write(new_file, keys.generate())
    code, data = run_json(capsys, "keys", "provision", str(new_file), "--port", sim.pty)
    assert code == 0, data
    assert set(data) == {"port", "board_id", "found", "confirmed", "roles", "fingerprints",
                         "saved", "backup"}
    assert data["confirmed"] and data["board_id"] == "e66118604b3c2a21"
    assert data["found"] == "pump firmware restarted into the REPL"
    assert data["saved"] == str(isolated / "e66118604b3c2a21.json") and data["backup"] is None
    assert keys.load(Path(data["saved"])) == keys.load(new_file)
    assert [c[:2] for c in board.calls] == [("release_link", sim.pty), ("exec", "import os\n"),
                                            ("fs", "cp"), ("reset",)]
    assert board.calls[2][3] == ":keys.json"
    assert signs_with(sim, keys.load(new_file)) and not signs_with(sim, old)


def test_rotate(sim: SimProcess, board: FakeBoard, isolated: Path,
                capsys: pytest.CaptureFixture[str]) -> None:
    held = isolated / "e66118604b3c2a21.json"  # found by the board's id
    keys.write(held, sim.keys())
    old = keys.load(held)
    code, data = run_json(capsys, "keys", "rotate", "--port", sim.pty)
    assert code == 0, data
    assert set(data) == {"port", "board_id", "found", "confirmed", "key_file", "backup",
                         "roles", "fingerprints", "old_fingerprints"}
    new = keys.load(held)
    assert new != old and set(new) == set(keys.ROLES)
    assert keys.load(Path(data["backup"])) == old and data["key_file"] == str(held)
    assert data["fingerprints"] == {r: keys.fingerprint(k) for r, k in new.items()}
    assert data["old_fingerprints"] == {r: keys.fingerprint(k) for r, k in old.items()}
    assert not held.with_name(held.name + ".new").exists()
    assert signs_with(sim, new) and not signs_with(sim, old)
    code, out, _ = run(capsys, "keys", "show")  # the backup is not taken for a key file
    assert code == 0 and out.count("fingerprint") == 1


def test_rotate_keeps_the_old_file_until_the_board_confirms(
    sim: SimProcess, isolated: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    fake_board(sim, monkeypatch, fail_on="cp")
    held = isolated / "e66118604b3c2a21.json"
    keys.write(held, sim.keys())
    code, out, err = run(capsys, "keys", "rotate", "--port", sim.pty)
    errors_said = [line for line in err.splitlines() if line.startswith("pumpctl:")]
    assert code == 3 and len(errors_said) == 1  # (above it: the copy's progress bar)
    assert "could not enter raw repl" in err and "is unchanged" in err
    assert keys.load(held) == sim.keys()  # untouched
    staging = held.with_name(held.name + ".new")
    assert set(keys.load(staging)) == set(keys.ROLES)  # the new keys are not lost
    assert list(isolated.glob("*.bak")) == []


def test_rotate_with_keys_the_board_does_not_hold(
    sim: SimProcess, board: FakeBoard, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    held = isolated / "e66118604b3c2a21.json"
    keys.write(held, keys.generate())  # not the board's
    before = held.read_text()
    code, data = run_json(capsys, "keys", "rotate", "--port", sim.pty)
    assert code == 4 and data["error"]["type"] == "KeysError"
    assert "BAD_TAG" in data["error"]["message"] and "service jumper" in data["error"]["message"]
    assert held.read_text() == before and not held.with_name(held.name + ".new").exists()
    assert [c[0] for c in board.calls] == ["release_link"]  # nothing copied
    assert signs_with(sim, sim.keys())


def test_provision_and_rotate_without_a_board(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_mpremote(port: str, *args: str) -> None:
        raise AssertionError("a dry run or a refusal must not reach mpremote")

    monkeypatch.setattr(deploy, "mpremote", no_mpremote)
    new_file = tmp_path / "new.json"
    keys.write(new_file, keys.generate())
    for argv in (("provision", str(new_file)), ("rotate",)):
        code, data = run_json(capsys, "keys", *argv)
        assert code == 3 and data["error"]["type"] == "PortNotFound"
        code, _, err = run(capsys, "keys", *argv)
        assert code == 3 and err.count("\n") == 1 and "no Pico found" in err
        code, data = run_json(capsys, "keys", *argv, "--dry-run")
        assert code == 0 and set(data) == {"dry_run", "action", "port", "key_file", "steps"}
        assert data["dry_run"] and data["port"] is None and len(data["steps"]) >= 5
        assert "none found: give --port" in data["steps"][0]
        code, out, _ = run(capsys, "keys", *argv, "--dry-run", "--port", "/dev/ttyACM7")
        assert code == 0 and "/dev/ttyACM7" in out and "nothing is done" in out
        code, _, err = run(capsys, "keys", *argv, "--port", "socket://127.0.0.1:1")
        assert code == 2 and "mpremote" in err
        code, _, err = run(capsys, "keys", *argv, "--port", "/dev/ttyNOPE")
        assert code == 3 and "no such port" in err
    code, _, err = run(capsys, "keys", "provision", str(tmp_path / "none.json"))
    assert code == 2 and "no such key file" in err


# --- sim ---------------------------------------------------------------------------------------

PUMPCTL = [sys.executable, "-c", "import sys; from host.cli import main; sys.exit(main())"]


def start_sim(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*PUMPCTL, "sim", "--speed", "0", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen[str]) -> None:
    """End a pumpctl sim the test started: as Ctrl-C would (it stops its simulator), then
    for sure."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_sim_json_and_ctrl_c() -> None:
    proc = start_sim("--json")
    try:
        assert proc.stdout is not None
        data = json.loads(proc.stdout.readline())
        assert set(data) == {"url", "pty", "control", "keys", "speed", "env", "export", "pid"}
        assert data["env"] == {"PUMPCTL_PORT": data["url"], "PUMPCTL_KEYS": data["keys"]}
        assert data["speed"] == 0.0
        assert data["export"] == (f"export PUMPCTL_PORT={data['url']} "
                                  f"PUMPCTL_KEYS={data['keys']}")
        with PumpClient(data["url"], keys=keys.load(Path(data["keys"]))) as pump:
            assert pump.info().board_id == "e66118604b3c2a21"
            assert pump.status().mode == "stopped"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
        assert gone(data["pid"])
    finally:
        stop(proc)


def test_sim_prints_what_to_paste(tmp_path: Path) -> None:
    mine = tmp_path / "mine.json"
    keys.write(mine, keys.generate())
    proc = start_sim("--keys", str(mine), "--board-id", "0123456789abcdef",
                     "--flash", str(tmp_path / "flash"))
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(8)]
        export = next(line for line in lines if line.startswith("export "))
        env = dict(word.split("=", 1) for word in export.split()[1:])
        assert env["PUMPCTL_PORT"].startswith("socket://127.0.0.1:")
        assert keys.load(Path(env["PUMPCTL_KEYS"])) == keys.load(mine)  # provisioned
        assert any("pty:" in line for line in lines)
        with PumpClient(env["PUMPCTL_PORT"], keys=keys.load(mine)) as pump:
            assert pump.info().board_id == "0123456789abcdef"
            pump.status()
        proc.send_signal(signal.SIGTERM)  # as Ctrl-C
        assert proc.wait(10) == 0
        assert proc.stderr is not None and "simulator stopped" in proc.stderr.read()
    finally:
        stop(proc)


def test_sim_errors(tmp_path: Path) -> None:
    bad = subprocess.run([*PUMPCTL, "sim", "--speed", "fast"], capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 2 and "speed is a number" in bad.stderr
    missing = subprocess.run([*PUMPCTL, "sim", "--json", "--keys", str(tmp_path / "no.json")],
                             capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2 and "no such key file" in missing.stderr
    assert json.loads(missing.stdout)["error"]["type"] == "UsageError"
    assert "Traceback" not in bad.stderr + missing.stderr
