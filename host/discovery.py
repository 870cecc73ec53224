"""Find a pump on USB when no port is given: the Picos by their USB vendor id, and among
several (a rig controller is a Pico too) the ones that answer as an intrapump pump."""

from __future__ import annotations

from serial.tools import list_ports

from host import errors

RASPBERRY_PI_VID = 0x2E8A  # Raspberry Pi (RP2040/RP2350 boards running MicroPython)


def find_picos() -> list[str]:
    return sorted(p.device for p in list_ports.comports() if p.vid == RASPBERRY_PI_VID)


def pick_port() -> str:
    """The one Pico on USB, whatever it runs (make flash: it may not run intrapump yet)."""
    ports = find_picos()
    if not ports:
        raise errors.PortNotFound(
            "no --port given and no Pico found on USB (vendor id 2E8A); "
            "give --port, e.g. /dev/ttyACM0 or socket://127.0.0.1:PORT for pumpsim"
        )
    if len(ports) > 1:
        raise errors.PortNotFound(f"several Picos found ({', '.join(ports)}): pick one with --port")
    return ports[0]


def probe(port: str, timeout: float = 0.5) -> str | None:
    """The board id of the intrapump pump answering on port, or None."""
    from host.client import PumpClient  # (the client imports nothing from here)

    try:
        with PumpClient(port, timeout=timeout, retries=0, reconnect_s=0) as pump:
            return pump.info().board_id
    except errors.PumpError:
        return None


def pick_pump() -> tuple[str, str]:
    """(port, what was picked and why) for pumpctl with no --port: the one Pico on USB, or
    the one of several that answers as a pump; several pumps are listed, not guessed."""
    ports = find_picos()
    if len(ports) <= 1:
        port = pick_port()
        return port, f"using {port}, the only Pico on USB"
    found = {port: probe(port) for port in ports}
    pumps = [port for port, board in found.items() if board]
    listing = ", ".join(f"{port} ({'pump ' + board if board else 'not an intrapump pump'})"
                        for port, board in found.items())
    if len(pumps) != 1:
        raise errors.PortNotFound(f"several Picos found: {listing}; pick one with --port")
    return pumps[0], f"using {pumps[0]}; Picos on USB: {listing}"
