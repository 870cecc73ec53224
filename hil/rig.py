"""The rig interface: what a test does to the rig and measures from it.

`Rig` is the interface; `SimRig` drives the simulator's control channel. A real rig
controller implements the same methods (hil/RIG.md)."""

from __future__ import annotations

import json
import socket
from typing import Any, Protocol


class RigError(Exception):
    pass


class Rig(Protocol):
    #: what this rig can do, e.g. {"time_control", "delivered_volume"}
    capabilities: frozenset[str]

    def now_ms(self) -> int: ...

    def advance(self, ms: int) -> int: ...

    def plant(self) -> dict[str, Any]: ...

    def reset(self) -> None:
        """Reset the pump's board (capability "reset")."""
        ...

    def hang(self) -> None:
        """Stop the firmware's loop as a bug would (capability "hang")."""
        ...

    def boot(self) -> dict[str, Any]:
        """Boots of the pump's board and the last reset cause (capability "hang")."""
        ...

    def inputs(self, **state: bool | int) -> None:
        """A needle in a port, a blocked catheter, the battery (capability "ports")."""
        ...

    def close(self) -> None: ...


class SimRig:
    """The simulator's rig: virtual time and the plant's exact delivered volume."""

    capabilities = frozenset({"time_control", "delivered_volume", "reset", "hang", "ports"})

    def __init__(self, address: str, timeout: float = 600.0):
        host, port = address.rsplit(":", 1)
        try:
            self._sock = socket.create_connection((host, int(port)), timeout=timeout)
        except OSError as e:
            raise RigError(f"no simulator rig at {address}: {e}") from e
        self._file = self._sock.makefile("rwb")

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        self._file.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        self._file.flush()
        line = self._file.readline()
        if not line:
            raise RigError("the simulator closed its control channel")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RigError(reply.get("error", "unknown error") + reply.get("traceback", ""))
        return reply

    def now_ms(self) -> int:
        return self.call("now")["now_ms"]

    def advance(self, ms: int) -> int:
        """Run virtual time forward by ms; returns the new time once the firmware is idle."""
        return self.call("advance", ms=int(ms))["now_ms"]

    def plant(self) -> dict[str, Any]:
        return self.call("plant")

    def reset(self) -> None:
        """Press the board's reset button: the firmware reboots."""
        self.call("reset")

    def hang(self) -> None:
        """Stop the firmware's loop (as a bug would): only the watchdog brings it back."""
        self.call("hang")

    def inputs(self, **state: bool | int) -> None:
        """needle_septum, needle_cap, occluded: a needle in a port, a blocked catheter;
        battery_mv: the battery's voltage."""
        self.call("inputs", **state)

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
