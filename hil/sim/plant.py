"""The physical model behind the firmware's pins: a syringe on a lead screw driven by a
step/dir stepper. Wired through the same pin map the firmware uses (firmware/config.py)."""

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
            config.PIN_PRESSURE_ADC: 6_000,
            config.PIN_BATTERY_ADC: 38_724,  # 3.9 V through the divider
        }

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

    def _step(self) -> None:
        enabled = self.levels.get(self.cfg.PIN_ENABLE, 1) == 0
        forward = self.levels.get(self.cfg.PIN_DIR, 0) == self.cfg.DIR_DELIVER
        if not (enabled and forward) or self.volume_nl < self.step_nl:
            self.lost_steps += 1
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
        )
