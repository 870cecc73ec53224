"""The physical model behind the firmware's pins: a syringe on a lead screw driven by a
step/dir stepper, a downstream pressure sensor, the two valves and the needle detectors of
the refill septum and the catheter access port. Wired through the same pin map the firmware
uses (firmware/config.py). The syringe starts full; a refill the pump accepts sets it to the
volume filled (simulator.py)."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType


@dataclass
class PlantState:
    delivered_nl: int
    steps: int
    lost_steps: int
    reservoir_nl: int
    capacity_nl: int
    refill_valve: int
    cap_valve: int
    pressure: int
    occluded: bool
    needle_septum: bool
    needle_cap: bool
    buzzer_hz: int
    buzzer_tones: list[int]


PRESSURE_REST = 6_000  # raw ADC reading of the downstream pressure with the catheter open
PRESSURE_PER_STEP = 12_000  # what one step against a blocked catheter adds


class Plant:
    def __init__(self, config: ModuleType, volume_nl: int | None = None):
        self.cfg = config
        self.step_nl: int = config.STEP_NL
        self.capacity_nl: int = config.RESERVOIR_NL
        self.volume_nl: int = self.capacity_nl if volume_nl is None else volume_nl
        self.delivered_nl = 0
        self.steps = 0
        self.lost_steps = 0  # pulses that moved nothing (syringe empty, wrong direction)
        self.levels: dict[int | str, int] = {}  # output pin levels as last driven
        # Raw 16-bit ADC readings: downstream pressure at rest, a healthy battery.
        self.adc_values: dict[int | str, int] = {
            config.PIN_PRESSURE_ADC: PRESSURE_REST,
            config.PIN_BATTERY_ADC: 38_724,  # 3.9 V through the divider
        }
        self.occluded = False  # the catheter blocked: the plunger cannot push
        self.tones: dict[int | str, int] = {}  # PWM outputs: the frequency sounding, 0 quiet
        self.heard: dict[int | str, set[int]] = {}  # the tones of each since it last fell quiet

    def pwm(self, pin: int | str, hz: int) -> None:
        self.tones[pin] = hz
        if hz:
            self.heard.setdefault(pin, set()).add(hz)
        else:
            self.heard[pin] = set()

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
        return self.adc_values.get(pin, 0)

    def set_inputs(self, needle_septum: bool | None = None, needle_cap: bool | None = None,
                   occluded: bool | None = None, battery_mv: int | None = None) -> None:
        """What the rig does to the plant: a needle in a port, a blocked catheter, the
        battery's voltage."""
        cfg = self.cfg
        if battery_mv is not None:  # through the divider to a 3.3 V, 16-bit ADC
            raw = battery_mv * 65535 // (3300 * cfg.BATTERY_DIVIDER)
            self.adc_values[cfg.PIN_BATTERY_ADC] = min(65535, raw + 1)
        if needle_septum is not None:
            self.levels[cfg.PIN_NEEDLE_SEPTUM] = 0 if needle_septum else 1  # active low
        if needle_cap is not None:
            self.levels[cfg.PIN_NEEDLE_CAP] = 0 if needle_cap else 1
        if occluded is not None:
            self.occluded = occluded
            if not occluded:
                self.adc_values[cfg.PIN_PRESSURE_ADC] = PRESSURE_REST

    def _step(self) -> None:
        enabled = self.levels.get(self.cfg.PIN_ENABLE, 1) == 0
        forward = self.levels.get(self.cfg.PIN_DIR, 0) == self.cfg.DIR_DELIVER
        p = self.cfg.PIN_PRESSURE_ADC
        if enabled and not forward:  # drawn back: the pressure built up is relieved
            self.adc_values[p] = max(PRESSURE_REST, self.adc_values[p] - PRESSURE_PER_STEP * 2)
            if self.volume_nl + self.step_nl <= self.capacity_nl:
                self.volume_nl += self.step_nl
            return
        if not enabled or self.volume_nl < self.step_nl:
            self.lost_steps += 1
            return
        if self.occluded:  # the plunger pushes against the blockage: pressure, no flow
            self.lost_steps += 1
            self.adc_values[p] = min(65_535, self.adc_values[p] + PRESSURE_PER_STEP)
            return
        self.steps += 1
        self.volume_nl -= self.step_nl
        self.delivered_nl += self.step_nl

    def state(self) -> PlantState:
        return PlantState(
            delivered_nl=self.delivered_nl,
            steps=self.steps,
            lost_steps=self.lost_steps,
            reservoir_nl=self.volume_nl,
            capacity_nl=self.capacity_nl,
            refill_valve=self.levels.get(self.cfg.PIN_REFILL_VALVE, 0),
            cap_valve=self.levels.get(self.cfg.PIN_CAP_VALVE, 0),
            pressure=self.adc_values[self.cfg.PIN_PRESSURE_ADC],
            occluded=self.occluded,
            needle_septum=self.levels.get(self.cfg.PIN_NEEDLE_SEPTUM, 1) == 0,
            needle_cap=self.levels.get(self.cfg.PIN_NEEDLE_CAP, 1) == 0,
            buzzer_hz=self.tones.get(self.cfg.PIN_BUZZER, 0),
            buzzer_tones=sorted(self.heard.get(self.cfg.PIN_BUZZER, set())),
        )
