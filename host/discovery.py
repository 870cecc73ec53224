"""Find a Pico on USB when no port is given."""

from __future__ import annotations

from serial.tools import list_ports

from host import errors

RASPBERRY_PI_VID = 0x2E8A  # Raspberry Pi (RP2040/RP2350 boards running MicroPython)


def find_picos() -> list[str]:
    return sorted(p.device for p in list_ports.comports() if p.vid == RASPBERRY_PI_VID)


def pick_port() -> str:
    ports = find_picos()
    if not ports:
        raise errors.PortNotFound(
            "no --port given and no Pico found on USB (vendor id 2E8A); "
            "give --port, e.g. /dev/ttyACM0 or socket://127.0.0.1:PORT for pumpsim"
        )
    if len(ports) > 1:
        raise errors.PortNotFound(f"several Picos found ({', '.join(ports)}): pick one with --port")
    return ports[0]
