"""The real rig: a second Pico running the rig controller (hil/rigctl/), wired to the pump's
board as hil/RIG.md draws it. `PicoRig` is its host side, the `Rig` interface (hil/rig.py)
over JSON lines on any pyserial URL.

    python -m hil.pico_rig ports                  Picos on USB, and which one is a rig
    python -m hil.pico_rig flash [--port P]       copy hil/rigctl to the rig Pico (mpremote)
    python -m hil.pico_rig hello|measure|scale [--port P]
    python -m hil.pico_rig tare [--port P]        the empty vessel is zero
    python -m hil.pico_rig calibrate MG [--port P]   a known mass (mg) is on the scale
    python -m hil.pico_rig config [--density MG_PER_UL] [--battery-mv MV] ... [--port P]

--port defaults to "auto": the one Pico on USB (vendor id 2E8A) that answers hello as a rig.
"""

from __future__ import annotations

import argparse
import errno
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import serial

from hil.rig import PORTS, SIM_CAPABILITIES, RigError
from host.discovery import find_picos

RIG_NAME = "intrapump-rig"
PROTOCOL_VERSION = 1
#: what only the simulator can do: stop time, stop the firmware, cut power inside a flash
#: write, see inside the plant
SIM_ONLY = frozenset({"time_control", "hang", "flash_cut", "plant_model"})
REAL_CAPABILITIES = SIM_CAPABILITIES - SIM_ONLY
SEE = "hil/RIG.md, 'The rig controller'"
REPO = Path(__file__).resolve().parents[1]
RIGCTL = REPO / "hil" / "rigctl"
PACKAGE_FILES = ("__init__.py", "core.py", "board.py")  # to :rigctl/ on the rig Pico
MAX_BUFFER = 65536  # bytes without a newline: whatever this is, it is not the rig

_auto_port: str | None = None  # the port "auto" found, kept for the rest of the process


class PicoRig:
    """The rig controller on a serial port or pyserial URL ("auto": find it on USB).

    timeout: how long a request may take to be answered (s); hello_timeout: how long the
    first answer may take (the rig answers at once; a silent port is not a rig)."""

    capabilities: frozenset[str]
    delivered_tolerance_nl: int

    def __init__(self, url: str = "auto", timeout: float = 3.0, hello_timeout: float = 2.0):
        if url == "auto":
            url = auto_port()
        self.url = url
        self.timeout = timeout
        self._buf = bytearray()
        self._next_id = 0
        self._ser = open_port(url)
        try:
            self.hello = self._handshake(hello_timeout)
        except BaseException:
            self._ser.close()
            raise
        self._take_hello(self.hello)

    # -- the link ------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        try:
            self._ser.write(data)
            self._ser.flush()
        except (serial.SerialException, OSError) as e:
            raise RigError(f"{self.url}: writing to the rig failed ({e}): check its USB "
                           f"cable ({SEE})") from e

    def _read_line(self, deadline: float) -> bytes | None:
        """The next line (without its newline), or None if none came by the deadline."""
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                self._ser.timeout = min(remaining, 0.5)
                chunk = self._ser.read(self._ser.in_waiting or 1)
            except (serial.SerialException, OSError) as e:
                raise RigError(f"{self.url}: the rig's link failed ({e}): check its USB "
                               f"cable ({SEE})") from e
            self._buf += chunk
            if len(self._buf) > MAX_BUFFER:
                self._buf.clear()
                raise RigError(f"{self.url}: a stream of bytes with no line in it: this is "
                               f"not the rig controller ({SEE})")
        line, _, rest = bytes(self._buf).partition(b"\n")
        self._buf[:] = rest
        return line.rstrip(b"\r")

    def _request(self, cmd: str, args: dict[str, Any]) -> int:
        self._next_id += 1
        self._write(json.dumps({"cmd": cmd, **args, "id": self._next_id}).encode() + b"\n")
        return self._next_id

    def call(self, cmd: str, timeout: float | None = None, **args: Any) -> dict[str, Any]:
        """One request; the rig's reply without "ok" and "id". A refusal is a RigError."""
        rid = self._request(cmd, args)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            line = self._read_line(deadline)
            if line is None:
                raise RigError(f"{self.url}: the rig did not answer {cmd!r} within "
                               f"{self.timeout if timeout is None else timeout:g} s: is it "
                               f"still connected and running? ({SEE})")
            reply = _json_object(line)
            if reply is None or reply.get("id") != rid:
                continue  # a late answer to an earlier request, or noise
            reply.pop("id")
            if not reply.pop("ok", False):
                raise RigError(f"{self.url}: the rig refused {cmd!r}: "
                               f"{reply.get('code', 'error')}: {reply.get('error', reply)}")
            return reply

    def _handshake(self, timeout: float) -> dict[str, Any]:
        """hello, and a clear error naming what answered if it is not a rig."""
        try:
            self._ser.reset_input_buffer()
        except (serial.SerialException, OSError):
            pass
        self._write(b"\n")  # ends whatever partial line an earlier session left
        rid = self._request("hello", {})
        deadline = time.monotonic() + timeout
        heard = bytearray()
        while True:
            line = self._read_line(deadline)
            if line is None:
                break
            heard += line + b"\n"
            reply = _json_object(line)
            if reply is not None and reply.get("id") == rid:
                if not reply.get("ok"):
                    raise RigError(f"{self.url}: refused hello ({reply.get('error')}): is it "
                                   f"the rig Pico? ({SEE})")
                return self._check_hello(reply)
        heard += self._buf
        # A zero byte ends our line as a (bad) frame on a device that speaks binary frames,
        # such as the pump, which then answers with an error frame: name it, and leave its
        # frame reader clean. The rig controller ignores it.
        if not heard:
            self._write(b"\x00")
            try:
                self._ser.timeout = 0.5
                heard += self._ser.read(4096)  # what comes back within the timeout
            except (serial.SerialException, OSError):
                pass
        raise RigError(_not_a_rig(self.url, bytes(heard), timeout))

    def _check_hello(self, reply: dict[str, Any]) -> dict[str, Any]:
        if reply.get("rig") != RIG_NAME:
            raise RigError(f"{self.url}: answers hello as {reply.get('rig')!r}, not "
                           f"{RIG_NAME!r}: is it the rig Pico? ({SEE})")
        if reply.get("version") != PROTOCOL_VERSION:
            raise RigError(f"{self.url}: rig controller version {reply.get('version')!r}; "
                           f"this host speaks version {PROTOCOL_VERSION}: flash it "
                           f"(python -m hil.pico_rig flash --port {self.url})")
        return reply

    def _take_hello(self, hello: dict[str, Any]) -> None:
        self.capabilities = frozenset(hello.get("capabilities", ())) & REAL_CAPABILITIES
        # How far delivered_nl may be from the truth: the scale's noise and resolution as
        # the rig measured them at its tare (0 when it has no delivered_volume).
        self.delivered_tolerance_nl = int(hello.get("delivered_tolerance_nl") or 0)

    def refresh(self) -> dict[str, Any]:
        """hello again: capabilities and tolerance after a calibration or configuration."""
        self.hello = self._check_hello(self.call("hello"))
        self._take_hello(self.hello)
        return self.hello

    # -- the Rig interface ----------------------------------------------------------------

    def now_ms(self) -> int:
        return int(self.call("now")["now_ms"])

    def advance(self, ms: int) -> int:
        """A real rig cannot run time faster: wait ms in real time (by the rig's clock) and
        return the rig's time after it."""
        target = self.now_ms() + int(ms)
        while True:
            now = self.now_ms()
            if now >= target:
                return now
            time.sleep(min(1.0, (target - now) / 1000))

    def measure(self) -> dict[str, Any]:
        return self.call("measure")

    def needle(self, port: str, inserted: bool) -> None:
        if port not in PORTS:
            raise ValueError(f"port is one of {PORTS}, not {port!r}")
        self.call("needle", port=port, inserted=bool(inserted))

    def occlude(self, blocked: bool) -> None:
        self.call("occlude", blocked=bool(blocked))

    def battery(self, mv: int | None) -> None:
        """The battery voltage the pump sees (None: the rig's nominal battery)."""
        self.call("battery", mv=None if mv is None else int(mv))

    def power(self, on: bool) -> None:
        self.call("power", on=bool(on))

    def reset(self, ms: int = 20) -> None:
        """Hold the pump's RUN pin low for ms: the board restarts."""
        self.call("reset", timeout=self.timeout + ms / 1000, ms=int(ms))

    def hang(self) -> None:
        raise RigError(f"{self.url}: a real rig cannot hang the pump's firmware (capability "
                       "hang is the simulator's); tests that need it are skipped here")

    def cut_power_at_flash_byte(self, n: int) -> None:
        raise RigError(f"{self.url}: a real rig cannot cut power at a given flash byte "
                       "(capability flash_cut is the simulator's); use power(False) for a "
                       "power cut at an arbitrary moment")

    def rest(self) -> None:
        """Put the rig back at rest: no needle, catheter open, the nominal battery, the pump
        powered. The rig outlives a test (unlike a fresh simulator): call it between tests."""
        self.call("rest")

    def boot(self) -> dict[str, Any]:
        """Boots the rig caused (RUN pulses, power restored): "boots", "resets",
        "power_cycles"; "reset_cause" is None (the rig cannot see inside the pump)."""
        return self.call("boot")

    def close(self) -> None:
        self._ser.close()

    def __enter__(self) -> PicoRig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calibration and configuration (hil/RIG.md) --------------------------------------

    def scale(self) -> dict[str, Any]:
        return self.call("scale")

    def tare(self) -> dict[str, Any]:
        """What is on the load cell now (the empty vessel) is zero delivered."""
        out = self._settled("tare")
        self.refresh()
        return out

    def calibrate(self, mg: int) -> dict[str, Any]:
        """A known mass (mg) stands on the tared scale: set counts per mg."""
        out = self._settled("calibrate", mg=int(mg))
        self.refresh()
        return out

    def _settled(self, cmd: str, **args: Any) -> dict[str, Any]:
        """cmd, waiting while the rig has not yet a full window of readings (just booted)."""
        deadline = time.monotonic() + 10
        while True:
            try:
                return self.call(cmd, **args)
            except RigError as e:
                if "not_ready" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def configure(self, *, density_mg_per_ul: float | None = None,
                  **settings: Any) -> dict[str, Any]:
        """Change rig.json: density_mg_per_ul (1.000 = water), battery_mv, dac_vref_mv,
        window, tolerance_nl, without (capabilities not fitted)."""
        if density_mg_per_ul is not None:
            settings["density_ug_per_ul"] = round(density_mg_per_ul * 1000)
        out = self.call("config", **settings)
        self.refresh()
        return out


def _json_object(line: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _not_a_rig(url: str, heard: bytes, timeout: float) -> str:
    """One line on what answered instead of the rig controller, and what to check."""
    if not heard.strip():
        return (f"{url}: no answer to hello within {timeout:g} s: is it the rig Pico, with "
                f"the rig controller flashed (python -m hil.pico_rig flash --port {url})? "
                f"({SEE})")
    if b"\x00" in heard:
        return (f"{url} is not the rig controller: it answers in binary frames, like the "
                f"pump's firmware; give the rig Pico's port (RIG=...), not the pump's ({SEE})")
    if b">>>" in heard or b"MicroPython" in heard or b"Traceback" in heard:
        return (f"{url}: a MicroPython REPL answers, not the rig controller: flash it "
                f"(python -m hil.pico_rig flash --port {url}), or reset it if main.py "
                f"stopped ({SEE})")
    sample = heard.strip()[:60]
    return (f"{url} is not the rig controller: it answered {sample!r}; give the rig Pico's "
            f"port ({SEE})")


def open_port(url: str) -> serial.Serial:
    """Open a pyserial URL for the rig; its failures as one-line RigErrors. Exclusive, as
    PumpClient opens its port: a port another program holds is refused, never shared."""
    try:
        return serial.serial_for_url(url, baudrate=115200, timeout=0.5, write_timeout=2,
                                     exclusive=True)
    except (serial.SerialException, OSError, ValueError) as e:
        no = getattr(e, "errno", None)
        text = str(e)
        if no in (errno.EBUSY, errno.EAGAIN) or "busy" in text.lower() or (
                "lock" in text.lower()):
            raise RigError(f"{url} is busy: another program has it open (another test run, "
                           f"a serial terminal, mpremote, ModemManager); close it") from e
        if no in (errno.ENOENT, errno.ENODEV, errno.ECONNREFUSED) or "No such file" in text \
                or "refused" in text:
            raise RigError(f"{url}: no such port or nothing listening: is the rig Pico "
                           f"plugged in? python -m hil.pico_rig ports lists the Picos "
                           f"({SEE})") from e
        if no == errno.EACCES:
            raise RigError(f"{url}: permission denied: add yourself to the group that owns "
                           f"it (dialout on most Linux systems)") from e
        raise RigError(f"{url}: cannot open the rig's port: {text} ({SEE})") from e


def probe(port: str, timeout: float = 1.0) -> str | None:
    """None if a rig controller answers on port; else why not (one line)."""
    try:
        PicoRig(port, hello_timeout=timeout).close()
    except RigError as e:
        return str(e)
    return None


def find_rig_ports(timeout: float = 1.0) -> list[str]:
    """The Picos on USB (vendor id 2E8A) that answer hello as a rig controller. A Pico that
    another program holds (the pump's port, open in PumpClient) is busy and left alone."""
    return [p for p in find_picos() if probe(p, timeout) is None]


def auto_port(timeout: float = 1.0) -> str:
    """The one rig controller on USB, found once per process: a test session opens the rig
    for every test, and probing each time would send a hello to the pump's port too."""
    global _auto_port
    if _auto_port is not None:
        return _auto_port
    picos = find_picos()
    if not picos:
        raise RigError("auto: no Pico on USB (vendor id 2E8A): plug in the rig Pico, or give "
                       f"its port, e.g. RIG=/dev/ttyACM1 ({SEE})")
    why = {p: probe(p, timeout) for p in picos}
    rigs = [p for p, reason in why.items() if reason is None]
    if not rigs:
        detail = "; ".join(f"{reason}" for reason in why.values())
        raise RigError(f"auto: no rig controller among the Picos on USB ({detail})")
    if len(rigs) > 1:
        raise RigError(f"auto: several rig controllers ({', '.join(rigs)}): give one, "
                       "e.g. RIG=" + rigs[0])
    _auto_port = rigs[0]
    return _auto_port


# -- flashing the rig controller -------------------------------------------------------------

# One line of Python the board runs: make /rigctl unless it is there.
MKDIR_RIGCTL = "import os; 'rigctl' in os.listdir() or os.mkdir('rigctl')"


def flash_command(port: str) -> list[str]:
    """The mpremote command line that copies the rig controller to the rig Pico and restarts
    it (hil/RIG.md gives the same line to type)."""
    package = [str((RIGCTL / name).relative_to(REPO)) for name in PACKAGE_FILES]
    return [sys.executable, "-m", "mpremote", "connect", port,
            "exec", MKDIR_RIGCTL,
            "+", "cp", *package, ":rigctl/",
            "+", "cp", str((RIGCTL / "main.py").relative_to(REPO)), ":main.py",
            "+", "reset"]


def flash_port(port: str | None) -> str:
    """The port to flash: the one given, or the only Pico on USB (or the only rig)."""
    if port:
        if port.startswith("/dev/") and not Path(port).exists():
            raise RigError(f"{port}: no such port: is the rig Pico plugged in? "
                           "python -m hil.pico_rig ports lists the Picos")
        return port
    picos = find_picos()
    if not picos:
        raise RigError("no Pico found on USB (vendor id 2E8A): plug in the rig Pico "
                       "(with MicroPython on it), or give --port")
    if len(picos) == 1:
        return picos[0]
    rigs = [p for p in picos if probe(p) is None]
    if len(rigs) == 1:
        return rigs[0]
    raise RigError(f"several Picos on USB ({', '.join(picos)}): give --port, the rig's "
                   "(flashing the pump's board with the rig controller would replace its "
                   "firmware)")


def flash(port: str | None, check: bool = True) -> dict[str, Any] | None:
    """Copy hil/rigctl to the rig Pico with mpremote and restart it; then (check) wait for
    the rig to answer hello and return it."""
    port = flash_port(port)
    proc = subprocess.run(flash_command(port), cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        text = (proc.stderr or proc.stdout).strip().splitlines()
        raise RigError(f"{port}: mpremote failed ({text[-1] if text else proc.returncode}): "
                       "is it a Pico running MicroPython, and is no other program using "
                       "the port?")
    if not check:
        return None
    deadline = time.monotonic() + 15  # the board re-enumerates on USB after its reset
    while True:
        time.sleep(1.0)
        try:
            with PicoRig(port) as rig:
                return rig.hello
        except RigError:
            if time.monotonic() > deadline:
                raise


# -- command line ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hil.pico_rig",
                                 description=(__doc__ or "").split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    for name, text in (("hello", "what the rig is and can do"),
                       ("measure", "every reading now"),
                       ("scale", "the load cell's raw state"),
                       ("tare", "the empty vessel on the load cell is zero from now on"),
                       ("ports", "the Picos on USB, and which is a rig"),
                       ("flash", "copy hil/rigctl to the rig Pico with mpremote")):
        p = sub.add_parser(name, help=text)
        if name != "ports":
            p.add_argument("--port", "-p", default=None if name == "flash" else "auto",
                           help="the rig Pico's port or a pyserial URL (default: auto)")
    p = sub.add_parser("calibrate", help="a known mass stands on the tared load cell")
    p.add_argument("mg", type=int, help="the mass, in mg (e.g. 20000 for 20 g)")
    p.add_argument("--port", "-p", default="auto")
    p = sub.add_parser("config", help="change rig.json on the rig")
    p.add_argument("--port", "-p", default="auto")
    p.add_argument("--density", type=float, metavar="MG_PER_UL",
                   help="the drug solution's density (1.000 = water)")
    p.add_argument("--battery-mv", type=int, help="the battery the pump sees by default")
    p.add_argument("--dac-vref-mv", type=int, help="the DAC's supply (trim)")
    p.add_argument("--window", type=int, help="load cell readings averaged")
    p.add_argument("--tolerance-nl", type=int, help="added to delivered_tolerance_nl")
    p.add_argument("--without", metavar="CAP,...",
                   help="capabilities this rig has not fitted (comma-separated; '' none)")
    args = ap.parse_args(argv)
    try:
        out = _run(args)
    except RigError as e:
        print(f"pico_rig: {e}", file=sys.stderr)
        return 3
    print(json.dumps(out, indent=1))
    return 0


def _run(args: argparse.Namespace) -> Any:
    if args.what == "ports":
        return {p: probe(p) or "rig controller" for p in find_picos()}
    if args.what == "flash":
        return flash(args.port)
    with PicoRig(args.port) as rig:
        if args.what == "hello":
            return rig.hello
        if args.what == "measure":
            return rig.measure()
        if args.what == "scale":
            return rig.scale()
        if args.what == "tare":
            return rig.tare()
        if args.what == "calibrate":
            return rig.calibrate(args.mg)
        settings = {k: v for k, v in (("battery_mv", args.battery_mv),
                                      ("dac_vref_mv", args.dac_vref_mv),
                                      ("window", args.window),
                                      ("tolerance_nl", args.tolerance_nl)) if v is not None}
        if args.without is not None:
            settings["without"] = [c for c in args.without.split(",") if c]
        return rig.configure(density_mg_per_ul=args.density, **settings)


if __name__ == "__main__":
    sys.exit(main())
