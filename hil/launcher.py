"""Start and stop pumpsim as a child process (for the demo, the pytest plugin and scripts)."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hil.rig import SimRig
from host import keys
from host.client import PumpClient


class SimProcess:
    def __init__(self, speed: str = "0", *extra: str):
        self.args = [sys.executable, "-m", "hil.sim.cli", "--json", "--speed", speed, *extra]
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix="pumpsim-", suffix=".log")[1])
        self.url = self.pty = self.control = self.keyfile = ""

    def start(self, timeout: float = 30.0) -> SimProcess:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=log)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise RuntimeError(f"pumpsim did not start: {self.log.read_text()[-2000:]}")
        endpoints = json.loads(line)
        self.url, self.pty, self.control, self.keyfile = (
            endpoints["url"], endpoints["pty"], endpoints["control"], endpoints["keys"])
        return self

    def keys(self) -> dict[str, bytes]:
        """The simulator's development keys, for PumpClient(keys=...)."""
        return keys.load(Path(self.keyfile))

    def client(self, role: str = "clinician", **kw: Any) -> PumpClient:
        """A PumpClient for this simulator, holding its keys (not yet open)."""
        return PumpClient(self.url, keys=self.keys(), role=role, **kw)

    def flash_dir(self) -> Path:
        """The folder standing for the board's flash (its keys and stored records)."""
        return Path(self.keyfile).parent

    def rig(self) -> SimRig:
        return SimRig(self.control)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Ask the simulator to quit; terminate it if it does not."""
        if self.proc is None:
            return None
        if self.proc.poll() is None and self.control:
            try:
                rig = self.rig()
                rig.quit()
                rig.close()
            except Exception:
                pass
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        return self.proc.returncode

    def stderr_text(self) -> str:
        return self.log.read_text()

    def __enter__(self) -> SimProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.log.unlink(missing_ok=True)
