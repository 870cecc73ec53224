"""The simulator: the unchanged firmware files running under CPython on fake MicroPython
modules, wired to a plant, a virtual link and a virtual clock."""

from __future__ import annotations

import importlib
import os
import runpy
import sys
import threading
import traceback
from pathlib import Path
from types import ModuleType

from hil.sim import fakes_state
from hil.sim.clock import MANUAL, SimCondition, VirtualClock
from hil.sim.link import VirtualLink
from hil.sim.plant import Plant
from protocol.messages import REFILL_DONE

REPO = Path(__file__).resolve().parents[2]
FIRMWARE_MAIN = REPO / "firmware" / "main.py"
# Every board-side module the firmware may import; they are imported with the fakes bound.
BOARD_PACKAGES = ("firmware", "protocol")
SWAPPED = ("time", "select")  # CPython has these too: the firmware gets ours
FAKES = ("machine", "rp2", "micropython", "time", "select")
DEFAULT_BOARD_ID = bytes.fromhex("e66118604b3c2a21")
DEFAULT_EPOCH_S = 1_798_761_600  # 2027-01-01T00:00:00Z: the pump clock until set


class Simulator:
    def __init__(
        self,
        flash: Path,
        speed: float = MANUAL,
        board_id: bytes = DEFAULT_BOARD_ID,
        epoch_s: int = DEFAULT_EPOCH_S,
    ):
        """flash: the folder that stands for the board's flash filesystem (keys.json, later
        the stored state); the firmware runs with it as its working directory."""
        self.flash = flash
        self.cond = SimCondition()
        self.clock = VirtualClock(self.cond, speed)
        self.link = VirtualLink(self.cond)
        self.board_id = board_id
        self.epoch_s = epoch_s
        self.bootsel_held = False
        self.kbd_intr = 3
        self.reset_cause = 1  # PWRON_RESET
        self.boots = 0
        self.reset_requested = False
        self.hung = False  # the rig stopped the firmware's loop (a hang): the watchdog's test
        self.wdt_timeout_ms = 0  # 0: the firmware started no watchdog
        self.wdt_fed_ms = 0
        self.rig_power = True  # the rig's switch on the board's supply
        self.power_cycles = 0
        self.flash_cut_after: int | None = None  # bytes the flash takes before power fails
        self.crashed: BaseException | None = None
        self.crash_text = ""
        self.stopped = threading.Event()
        fakes_state.bind(self)
        self._fake_modules = {name: importlib.import_module(f"hil.sim.fakes.{name}")
                              for name in FAKES}
        self.config = self._import_firmware()
        self.plant = Plant(self.config, now_ms=self.clock.now_locked)
        self.link.on_frame = self._refilled

    def _import_firmware(self) -> ModuleType:
        """(Re)import the board-side modules with the fakes where MicroPython's modules go."""
        for name in list(sys.modules):
            if name.split(".")[0] in BOARD_PACKAGES and name != "protocol.host_codec":
                del sys.modules[name]
        saved = {name: sys.modules.get(name) for name in SWAPPED}
        sys.modules.update(self._fake_modules)
        try:
            for name in ("firmware.config", "firmware.board", "firmware.loop"):
                importlib.import_module(name)
        finally:
            for name, mod in saved.items():
                if mod is not None:
                    sys.modules[name] = mod
        # The flash filesystem: the store's open() is the simulated flash's, which a power
        # cut can stop in the middle of a write (FileFS itself is unchanged).
        sys.modules["firmware.core.store"].open = self._flash_open  # type: ignore[attr-defined]
        return sys.modules["firmware.config"]

    def _flash_open(self, name: str, mode: str = "r"):
        f = open(name, mode)  # the caller's `with` closes it
        return FlashFile(self, f) if "w" in mode or "a" in mode else f

    def _run_firmware(self) -> None:
        # The firmware's USB CDC is this process's stdin/stdout; our own output goes to stderr.
        os.chdir(self.flash)  # the firmware's open("keys.json") finds the board's flash
        sys.stdin = self.link.stdin  # type: ignore[assignment]
        sys.stdout = self.link.stdout  # type: ignore[assignment]
        machine = self._fake_modules["machine"]
        while not self.stopped.is_set():
            self.boots += 1
            try:
                runpy.run_path(str(FIRMWARE_MAIN), run_name="__main__")
                return  # main.py returned: the board sits at the REPL
            except fakes_state.PowerLoss:
                self._power_down()
                self.reset_cause = machine.PWRON_RESET
                self.config = self._import_firmware()
            except machine.Reset as e:
                with self.cond:
                    self.reset_requested = False
                    self.hung = False
                    self.wdt_timeout_ms = 0  # a reset stops the watchdog too
                    self.link.rx.clear()  # what was in flight dies with the reset
                self.reset_cause = e.cause
                self.config = self._import_firmware()
            except BaseException as e:  # a crash is a finding: keep it for the rig to report
                self.crashed = e
                self.crash_text = traceback.format_exc()
                print("firmware crashed:\n" + self.crash_text, file=sys.stderr, flush=True)
                self.stopped.set()
                return

    def _refilled(self, frame: bytes) -> None:
        """The pump accepted a refill (REFILL_DONE): the clinician's syringe put exactly that
        volume into the reservoir, so the plant's syringe holds it too. (A rig with a real
        syringe does this by hand; the simulator has no hands.) `frame`: a frame the
        firmware sent, decoded (link.py)."""
        if len(frame) >= 9 and frame[1] == REFILL_DONE:
            self.plant.volume_nl = int.from_bytes(frame[5:9], "little")

    @property
    def powered(self) -> bool:
        return self.plant.powered

    def check_supply(self) -> None:
        """The board loses power when the rig cuts it or the battery browns out (cond held);
        the firmware stops at its next touch of the hardware (fakes_state.PowerLoss)."""
        if self.plant.powered and (not self.rig_power or self.plant.brownout()):
            self.plant.power_lost()
            self.cond.notify_all()

    def power(self, on: bool) -> None:
        with self.cond:
            self.rig_power = on
            self.check_supply()
            self.cond.notify_all()

    def _power_down(self) -> None:
        """The board is off: RAM, the watchdog and what was in flight are gone. Wait (time
        runs on) until the supply is back, then the board boots."""
        with self.cond:
            self.plant.power_lost()
            self.wdt_timeout_ms = 0
            self.hung = False
            self.reset_requested = False
            self.flash_cut_after = None
            self.clock.wait(None, lambda: self.rig_power and not self.plant.brownout())
            self.plant.powered = True
            self.power_cycles += 1
            self.link.rx.clear()

    def wdt_deadline(self) -> int | None:
        """When the watchdog resets the firmware if it is not fed (cond held)."""
        return self.wdt_fed_ms + self.wdt_timeout_ms if self.wdt_timeout_ms else None

    def hang(self) -> None:
        """Stop the firmware's loop at its next wait, as a hung loop would: time goes on and
        nothing feeds the watchdog."""
        with self.cond:
            self.hung = True
            self.cond.notify_all()

    def reset(self) -> None:
        """Press the reset button: the firmware reboots from main.py (the plant stays)."""
        with self.cond:
            self.reset_requested = True
            self.cond.notify_all()

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self._run_firmware, name="firmware", daemon=True)
        t.start()
        return t

    def advance(self, ms: int) -> int:
        with self.cond:
            return self.clock.advance(ms)

    def now_ms(self) -> int:
        return self.clock.now_ms()


class FlashFile:
    """A file on the simulated flash being written: a cut armed by the rig
    (Simulator.flash_cut_after) keeps the first bytes of the write in progress, then the
    power fails. (The worst case: LittleFS would keep the old file; a FAT or a raw flash
    sector would not. The store survives both.)"""

    def __init__(self, sim: Simulator, f) -> None:
        self.sim = sim
        self.f = f

    def write(self, data) -> int:
        sim = self.sim
        left = sim.flash_cut_after
        if left is None or left > len(data):
            if left is not None:
                sim.flash_cut_after = left - len(data)
            return self.f.write(data)
        self.f.write(bytes(data[:left]))
        self.f.close()
        with sim.cond:
            sim.flash_cut_after = None
            sim.rig_power = False
            sim.check_supply()
        raise fakes_state.PowerLoss()

    def close(self) -> None:
        self.f.close()

    def __enter__(self) -> FlashFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()
