"""The rig's control channel on the simulator: JSON lines over TCP.

Requests: {"cmd": "ping"}, {"cmd": "now"}, {"cmd": "advance", "ms": N}, {"cmd": "plant"},
{"cmd": "inputs", "needle_septum"|"needle_cap"|"occluded": bool, "battery_mv": int|null,
"battery_used_uah": int} (what the rig does to the plant), {"cmd": "power", "on": bool} (the
board's supply), {"cmd": "flash_cut", "after": N} (power fails once N more bytes are written
to flash), {"cmd": "reset"} (the reset button), {"cmd": "hang"} (the firmware's loop stops:
the watchdog must act), {"cmd": "boot"} (boots, power cycles, the last reset cause),
{"cmd": "quit"}; and hil/sim/lossy.py's {"cmd": "lossy"|"hang_at"|"trace_turns", ...}.
Each gets one line back: {"ok": true, ...} or {"ok": false, "error": "..."}.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import asdict
from typing import Any

from hil.sim import lossy
from hil.sim.simulator import Simulator


class ControlServer:
    def __init__(self, sim: Simulator, host: str = "127.0.0.1", port: int = 0):
        self.sim = sim
        self.server = socket.create_server((host, port))
        self.host, self.port = self.server.getsockname()[:2]
        threading.Thread(target=self._accept_loop, name="control", daemon=True).start()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as f:
            for line in f:
                try:
                    reply = self.handle(json.loads(line))
                except Exception as e:  # a bad request gets an answer, not a dead channel
                    reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                f.write(json.dumps(reply).encode() + b"\n")
                f.flush()

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        sim = self.sim
        cmd = req.get("cmd")
        if sim.crashed is not None and cmd not in ("quit", "ping"):
            return {"ok": False, "error": "firmware crashed", "traceback": sim.crash_text}
        if cmd == "ping":
            return {"ok": True, "crashed": sim.crashed is not None, "speed": sim.clock.speed
                    if sim.clock.speed != float("inf") else "max"}
        if cmd == "now":
            return {"ok": True, "now_ms": sim.now_ms()}
        if cmd == "advance":
            ms = int(req["ms"])
            if ms < 0:
                raise ValueError("ms must be >= 0")
            return {"ok": True, "now_ms": sim.advance(ms)}
        if cmd == "plant":
            with sim.cond:
                state = asdict(sim.plant.state())
            return {"ok": True, "now_ms": sim.now_ms(), **state}
        if cmd == "reset":
            sim.reset()
            return {"ok": True}
        if cmd == "inputs":
            with sim.cond:
                sim.plant.set_inputs(**{k: v for k, v in req.items() if k != "cmd"})
                sim.check_supply()
                sim.cond.notify_all()
            return {"ok": True}
        if cmd == "power":
            sim.power(bool(req["on"]))
            return {"ok": True}
        if cmd == "flash_cut":
            after = int(req["after"])
            if after < 0:
                raise ValueError("after must be >= 0")
            with sim.cond:
                sim.flash_cut_after = after
            return {"ok": True}
        if cmd == "hang":
            sim.hang()
            return {"ok": True}
        if cmd == "boot":
            return {"ok": True, "boots": sim.boots, "reset_cause": sim.reset_cause,
                    "power_cycles": sim.power_cycles, "powered": sim.powered}
        if cmd == "quit":
            sim.stopped.set()
            return {"ok": True}
        if cmd in lossy.COMMANDS:
            return lossy.control(sim, req)
        raise ValueError(f"unknown command {cmd!r}")

    def close(self) -> None:
        self.server.close()
