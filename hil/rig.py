"""The rig interface: what a test does to the rig and what it measures from it.

`Rig` is the interface the HIL suites use. Two implementations:
- `SimRig` (here): the simulator's control channel (virtual time, the plant's exact values);
- `PicoRig` (hil/pico_rig.py): the real rig controller, a second Pico wired to the pump's
  board (hil/RIG.md).

Each rig says what it can do in `capabilities`; a test names what it needs with
`@pytest.mark.rig(...)` and is skipped, with the reason, on a rig that lacks it.

| capability | what it gives |
|---|---|
| time_control | `advance(ms)` runs virtual time: days in seconds (without it, advance sleeps) |
| delivered_volume | `measure()["delivered_nl"]`: volume out of the catheter (meter or load cell) |
| steps | `measure()["steps"]`: step pulses that moved the plunger |
| valves | `measure()["refill_valve"]`, `["cap_valve"]`: 1 open, 0 closed |
| tones | `measure()["buzzer_hz"]` (sounding now) and `["buzzer_tones"]` (heard since quiet) |
| needles | `needle(port, inserted)`: a needle in the refill septum or the CAP |
| occlusion | `occlude(blocked)`: block or unblock the catheter |
| battery | `battery(mv)`: the battery's voltage (None: back to the battery model) |
| power | `power(on)`: cut and restore the pump's supply |
| reset | `reset()`: the board's reset button |
| hang | `hang()`: the firmware's loop stops (only the watchdog brings it back) |
| flash_cut | `cut_power_at_flash_byte(n)`: power fails after n more bytes written to flash |
| plant_model | `measure()` also has the model's insides: reservoir_nl, pressure, lost_steps, ... |
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any, Protocol

SIM_CAPABILITIES = frozenset({
    "time_control", "delivered_volume", "steps", "valves", "tones", "needles", "occlusion",
    "battery", "power", "reset", "hang", "flash_cut", "plant_model",
})
PORTS = ("septum", "cap")


class RigError(Exception):
    """The rig is missing, does not answer, or refused a request."""


class Rig(Protocol):
    capabilities: frozenset[str]
    #: how far measure()["delivered_nl"] may be from the truth (the meter's resolution)
    delivered_tolerance_nl: int

    def now_ms(self) -> int: ...

    def advance(self, ms: int) -> int:
        """Let ms of pump time pass; returns the rig's time after it."""
        ...

    def measure(self) -> dict[str, Any]:
        """now_ms plus the readings of the rig's capabilities (table above)."""
        ...

    def needle(self, port: str, inserted: bool) -> None: ...

    def occlude(self, blocked: bool) -> None: ...

    def battery(self, mv: int | None) -> None: ...

    def power(self, on: bool) -> None: ...

    def reset(self) -> None: ...

    def hang(self) -> None: ...

    def cut_power_at_flash_byte(self, n: int) -> None: ...

    def boot(self) -> dict[str, Any]:
        """{"boots": n, "reset_cause": c} as the rig saw them (capability reset)."""
        ...

    def close(self) -> None: ...


class SimRig:
    """The simulator's rig: virtual time and the plant's exact values."""

    capabilities = SIM_CAPABILITIES
    delivered_tolerance_nl = 0

    def __init__(self, address: str, timeout: float = 600.0):
        host, port = address.rsplit(":", 1)
        try:
            self._sock = socket.create_connection((host, int(port)), timeout=timeout)
        except OSError as e:
            raise RigError(f"no simulator rig at {address}: {e}") from e
        self._file = self._sock.makefile("rwb")
        self.speed = self.call("ping").get("speed", 0)

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        try:
            self._file.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
            self._file.flush()
            line = self._file.readline()
        except OSError as e:
            raise RigError(f"the simulator's control channel failed: {e}") from e
        if not line:
            raise RigError("the simulator closed its control channel")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RigError(reply.get("error", "unknown error") + reply.get("traceback", ""))
        return reply

    def now_ms(self) -> int:
        return self.call("now")["now_ms"]

    def advance(self, ms: int) -> int:
        """Paused simulator: run virtual time forward by ms, return once the firmware is
        idle. Running simulator (x N): wait in real time until ms have passed."""
        if not self.speed:
            return self.call("advance", ms=int(ms))["now_ms"]
        target = self.now_ms() + ms
        while (now := self.now_ms()) < target:
            time.sleep(min(0.5, (target - now) / 1000 / float(self.speed)))
        return now

    def measure(self) -> dict[str, Any]:
        reply = self.call("plant")
        reply.pop("ok")
        return reply

    def plant(self) -> dict[str, Any]:
        return self.measure()

    def needle(self, port: str, inserted: bool) -> None:
        if port not in PORTS:
            raise ValueError(f"port is one of {PORTS}, not {port!r}")
        self.call("inputs", **{f"needle_{port}": bool(inserted)})

    def occlude(self, blocked: bool) -> None:
        self.call("inputs", occluded=bool(blocked))

    def battery(self, mv: int | None) -> None:
        self.call("inputs", battery_mv=mv)

    def power(self, on: bool) -> None:
        self.call("power", on=bool(on))

    def reset(self) -> None:
        """Press the board's reset button: the firmware reboots."""
        self.call("reset")

    def hang(self) -> None:
        """Stop the firmware's loop (as a bug would): only the watchdog brings it back."""
        self.call("hang")

    def cut_power_at_flash_byte(self, n: int) -> None:
        """Power fails once n more bytes have been written to the board's flash: the write
        in progress keeps its first bytes only. Restore with power(True)."""
        self.call("flash_cut", after=int(n))

    def boot(self) -> dict[str, Any]:
        """How many times the firmware booted, and the last reset cause."""
        return self.call("boot")

    def quit(self) -> None:
        try:
            self.call("quit")
        except (RigError, OSError):
            pass

    def close(self) -> None:
        self._file.close()
        self._sock.close()
