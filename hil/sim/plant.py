"""The physical model behind the firmware's pins, wired through the same pin map the firmware
uses (firmware/config.py):

- a syringe (the reservoir) on a lead screw, moved by a step/dir stepper: one step moves
  STEP_NL; pulses with the driver off, the plunger at its end, or against more pressure than
  the motor's torque are lost (they move nothing);
- the catheter with its compliance: pushed against a blockage, the volume goes into the
  catheter's stretch and the downstream pressure rises with it; drawn back, it comes out of
  it; when the blockage clears, what was stored flows out (the post-occlusion bolus);
- the delivered-volume meter at the catheter's end;
- the refill and CAP valves (outputs) and the needle detectors of both ports (inputs);
- the battery, discharged by time (the board's standing current) and by motor work (each
  pulse), read through the firmware's divider; the rig may hold it at a voltage instead;
  under BROWNOUT_MV the board stops (simulator.py powers it down until the voltage is back);
- the buzzer, heard as the set of tones since it last fell quiet.

The syringe starts full; a refill the pump accepts sets it to the volume filled
(simulator.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType


@dataclass
class PlantState:
    now_ms: int
    delivered_nl: int
    steps: int
    lost_steps: int
    back_steps: int
    reservoir_nl: int
    capacity_nl: int
    stored_nl: int
    refill_valve: int
    cap_valve: int
    pressure: int
    occluded: bool
    needle_septum: bool
    needle_cap: bool
    buzzer_hz: int
    buzzer_tones: list[int]
    buzzer_since_ms: int | None
    pressure_over_ms: int | None
    pushed_over_nl: int
    occluded_ms: int | None
    released_nl: int | None
    low_ms: int | None
    empty_ms: int | None
    battery_mv: int
    battery_used_uah: int
    powered: bool


PRESSURE_REST = 6_000  # raw ADC reading of the downstream pressure with the catheter open
PRESSURE_PER_NL = 48  # raw counts per nL stored in the catheter's compliance (12,000 a step)
PRESSURE_STALL = 58_000  # the motor's torque: above this a step pushes nothing
VACUUM_MIN_NL = -4_000  # drawn back against a blockage: the vacuum the catheter can hold

# The battery: a lithium primary cell, its voltage by charge used (uAh, mV), linear between.
BATTERY_UAH = 1_500_000
BATTERY_CURVE = ((0, 3_900), (150_000, 3_750), (1_200_000, 3_650), (1_380_000, 3_500),
                 (1_455_000, 3_300), (1_500_000, 2_800))
STANDING_UA = 20  # the board asleep between turns
STEP_UAH_X1000 = 42  # one pulse: about 100 mA for 1.5 ms = 0.042 uAh
BROWNOUT_MV = 3_000  # the regulator drops out: the board stops until the voltage is back
BROWNOUT_HYSTERESIS_MV = 100


class Plant:
    def __init__(self, config: ModuleType, now_ms: Callable[[], int] = lambda: 0,
                 volume_nl: int | None = None):
        self.cfg = config
        self.now_ms = now_ms
        self.step_nl: int = config.STEP_NL
        self.capacity_nl: int = config.RESERVOIR_NL
        self.volume_nl: int = self.capacity_nl if volume_nl is None else volume_nl
        self.delivered_nl = 0
        self.steps = 0  # pulses that moved the plunger towards the outlet
        self.lost_steps = 0  # pulses that moved nothing
        self.back_steps = 0  # pulses that drew the plunger back
        self.stored_nl = 0  # volume in the catheter's compliance (negative: a vacuum)
        self.levels: dict[int | str, int] = {}  # output pin levels as last driven
        self.pressure_adc: int = config.PIN_PRESSURE_ADC
        self.battery_adc: int = config.PIN_BATTERY_ADC
        self.occluded = False  # the catheter blocked
        self.occluded_ms: int | None = None  # when it was last blocked
        self.pressure_over = False  # the pressure is over the firmware's limit
        self.pressure_over_ms: int | None = None  # when it last rose over it
        self.pushed_over_nl = 0  # pushed into the blockage from then until it fell back
        self.released_nl: int | None = None  # what flowed out when the blockage last cleared
        self.low_nl: int = config.LOW_RESERVOIR_NL
        self.low_ms: int | None = None  # when the syringe last fell to the low level
        self.empty_ms: int | None = None  # when it last ran out (less than a step left)
        self.tones: dict[int | str, int] = {}  # PWM outputs: the frequency sounding, 0 quiet
        self.heard: dict[int | str, set[int]] = {}  # the tones of each since it last fell quiet
        self.sounding_since: dict[int | str, int] = {}
        self.battery_held_mv: int | None = None  # the rig holds the battery at this voltage
        self.battery_used_uah = 0  # charge used up to battery_t_ms
        self._battery_t_ms = 0
        self._battery_pulses = 0  # motor pulses counted into battery_used_uah
        self.powered = True
        self._supply_next_ms = 0

    # -- what the firmware drives and reads ---------------------------------------------------

    def pwm(self, pin: int | str, hz: int) -> None:
        if hz and not self.tones.get(pin):
            self.sounding_since[pin] = self.now_ms()
        self.tones[pin] = hz
        if hz:
            self.heard.setdefault(pin, set()).add(hz)
        else:
            self.heard[pin] = set()
            self.sounding_since.pop(pin, None)

    def pin_written(self, pin: int | str, level: int) -> None:
        before = self.levels.get(pin, 0)
        self.levels[pin] = level
        if pin == self.cfg.PIN_STEP and level and not before:
            self._step()

    def pin_read(self, pin: int | str) -> int:
        """Levels of the plant's inputs to the firmware (switches and sensors are active low,
        pulled up: 1 is idle)."""
        if pin == self.cfg.PIN_END_EMPTY:
            return 0 if self.volume_nl < self.step_nl else 1
        return self.levels.get(pin, 1)

    def adc(self, pin: int | str) -> int:
        if pin == self.pressure_adc:
            return self.pressure()
        if pin == self.battery_adc:  # through the divider to a 3.3 V, 16-bit ADC
            raw = self.battery_mv() * 65535 // (3300 * self.cfg.BATTERY_DIVIDER)
            return min(65535, raw + 1)
        return 0

    def pressure(self) -> int:
        if self.stored_nl <= 0:
            return PRESSURE_REST if self.stored_nl == 0 else max(
                0, PRESSURE_REST + self.stored_nl * PRESSURE_PER_NL)
        return min(65_535, PRESSURE_REST + self.stored_nl * PRESSURE_PER_NL)

    # -- the battery ----------------------------------------------------------------------------

    def battery_mv(self) -> int:
        if self.battery_held_mv is not None:
            return self.battery_held_mv
        used = self._battery_used()
        for (u0, v0), (u1, v1) in zip(BATTERY_CURVE, BATTERY_CURVE[1:], strict=False):
            if used <= u1:
                return v0 + (v1 - v0) * (used - u0) // (u1 - u0)
        return BATTERY_CURVE[-1][1]

    def _battery_used(self) -> int:
        """Charge used so far (uAh): the standing current over time, and each motor pulse."""
        now = self.now_ms()
        if now > self._battery_t_ms:
            self.battery_used_uah += STANDING_UA * (now - self._battery_t_ms) // 3_600_000
            self._battery_t_ms = now
        pulses = self.steps + self.lost_steps + self.back_steps
        if pulses > self._battery_pulses:
            self.battery_used_uah += (pulses - self._battery_pulses) * STEP_UAH_X1000 // 1000
            self._battery_pulses = pulses
        return self.battery_used_uah

    def brownout(self) -> bool:
        """The supply is under what the board runs on (with hysteresis when it is off). The
        model's voltage moves over days: it is worked out at most once a virtual minute (this
        runs at every wait of the firmware)."""
        now = self.now_ms()
        if self.battery_held_mv is None and self.powered and now < self._supply_next_ms:
            return False
        self._supply_next_ms = now + 60_000
        limit = BROWNOUT_MV + (0 if self.powered else BROWNOUT_HYSTERESIS_MV)
        return self.battery_mv() < limit

    # -- what the rig does ------------------------------------------------------------------

    def set_inputs(self, **inputs: bool | int | None) -> None:
        """A needle in a port, a blocked catheter, the battery held at a voltage (None: the
        battery model again), the charge used so far."""
        cfg = self.cfg
        for name, value in inputs.items():
            if name == "battery_mv":
                self.battery_held_mv = None if value is None else int(value)
            elif name == "battery_used_uah":
                self._battery_used()
                self.battery_used_uah = int(value or 0)
            elif name in ("needle_septum", "needle_cap"):
                pin = cfg.PIN_NEEDLE_SEPTUM if name == "needle_septum" else cfg.PIN_NEEDLE_CAP
                self.levels[pin] = 0 if value else 1  # active low
            elif name == "occluded":
                self._occlude(bool(value))
            else:
                raise ValueError(f"unknown input {name!r}")

    def _occlude(self, blocked: bool) -> None:
        if blocked and not self.occluded:
            self.occluded_ms = self.now_ms()
        if not blocked and self.occluded:
            # What the catheter stored flows out; a vacuum draws back from the far end.
            self.delivered_nl += self.stored_nl
            self.released_nl = self.stored_nl
            self.stored_nl = 0
        self.occluded = blocked
        self._pressure_changed()

    def power_lost(self) -> None:
        """The board lost power: its outputs fall (valves close, the driver is off, the buzzer
        stops)."""
        self.powered = False
        for pin in (self.cfg.PIN_REFILL_VALVE, self.cfg.PIN_CAP_VALVE, self.cfg.PIN_STEP):
            self.levels[pin] = 0
        self.levels[self.cfg.PIN_ENABLE] = 1
        for pin in list(self.tones):
            self.pwm(pin, 0)

    # -- the mechanism ------------------------------------------------------------------------

    def _step(self) -> None:
        enabled = self.levels.get(self.cfg.PIN_ENABLE, 1) == 0
        forward = self.levels.get(self.cfg.PIN_DIR, 0) == self.cfg.DIR_DELIVER
        if not enabled:
            self.lost_steps += 1
        elif not forward:
            self._back()
        elif self.volume_nl < self.step_nl or self.pressure() >= PRESSURE_STALL:
            self.lost_steps += 1  # at the end stop, or the motor cannot push any harder
        else:
            self.steps += 1
            self.volume_nl -= self.step_nl
            if self.volume_nl <= self.low_nl < self.volume_nl + self.step_nl:
                self.low_ms = self.now_ms()
            if self.volume_nl < self.step_nl:
                self.empty_ms = self.now_ms()
            if self.occluded:
                self.stored_nl += self.step_nl
                if self.pressure_over:
                    self.pushed_over_nl += self.step_nl
                self._pressure_changed()
            else:
                self.delivered_nl += self.step_nl

    def _back(self) -> None:
        if self.volume_nl + self.step_nl > self.capacity_nl:
            self.lost_steps += 1  # the plunger at its full end
            return
        if self.occluded:
            if self.stored_nl - self.step_nl < VACUUM_MIN_NL:
                self.lost_steps += 1
                return
            self.stored_nl -= self.step_nl
            self._pressure_changed()
        else:
            self.delivered_nl -= self.step_nl  # drawn back out of the catheter
        self.back_steps += 1
        self.volume_nl += self.step_nl

    def _pressure_changed(self) -> None:
        over = self.pressure() > self.cfg.PRESSURE_LIMIT_RAW
        if over and not self.pressure_over:
            self.pressure_over_ms = self.now_ms()
            self.pushed_over_nl = 0
        self.pressure_over = over

    def state(self) -> PlantState:
        buzzer = self.cfg.PIN_BUZZER
        cfg = self.cfg
        return PlantState(
            now_ms=self.now_ms(),
            delivered_nl=self.delivered_nl,
            steps=self.steps,
            lost_steps=self.lost_steps,
            back_steps=self.back_steps,
            reservoir_nl=self.volume_nl,
            capacity_nl=self.capacity_nl,
            stored_nl=self.stored_nl,
            refill_valve=self.levels.get(cfg.PIN_REFILL_VALVE, 0),
            cap_valve=self.levels.get(cfg.PIN_CAP_VALVE, 0),
            pressure=self.pressure(),
            occluded=self.occluded,
            needle_septum=self.levels.get(cfg.PIN_NEEDLE_SEPTUM, 1) == 0,
            needle_cap=self.levels.get(cfg.PIN_NEEDLE_CAP, 1) == 0,
            buzzer_hz=self.tones.get(buzzer, 0),
            buzzer_tones=sorted(self.heard.get(buzzer, set())),
            buzzer_since_ms=self.sounding_since.get(buzzer),
            pressure_over_ms=self.pressure_over_ms,
            pushed_over_nl=self.pushed_over_nl,
            occluded_ms=self.occluded_ms,
            released_nl=self.released_nl,
            low_ms=self.low_ms,
            empty_ms=self.empty_ms,
            battery_mv=self.battery_mv(),
            battery_used_uah=self._battery_used(),
            powered=self.powered,
        )
