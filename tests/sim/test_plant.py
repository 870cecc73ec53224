"""The simulator's plant on its own: the mechanism, the catheter's compliance, the battery and
the supply (hil/sim/plant.py), driven through the pins as the firmware drives them."""

from __future__ import annotations

import pytest

from firmware import config
from hil.sim import plant as pl
from hil.sim.plant import Plant


class Clock:
    def __init__(self) -> None:
        self.ms = 0

    def __call__(self) -> int:
        return self.ms


def make(volume_nl: int | None = None) -> tuple[Plant, Clock]:
    clock = Clock()
    return Plant(config, now_ms=clock, volume_nl=volume_nl), clock


def pulse(p: Plant, n: int = 1, back: bool = False) -> None:
    p.pin_written(config.PIN_DIR, 1 - config.DIR_DELIVER if back else config.DIR_DELIVER)
    p.pin_written(config.PIN_ENABLE, 0)
    for _ in range(n):
        p.pin_written(config.PIN_STEP, 1)
        p.pin_written(config.PIN_STEP, 0)
    p.pin_written(config.PIN_ENABLE, 1)


def test_a_step_moves_one_step_of_volume_out_of_the_catheter() -> None:
    p, _ = make()
    pulse(p, 4)
    s = p.state()
    assert (s.steps, s.delivered_nl, s.reservoir_nl) == (4, 1000, config.RESERVOIR_NL - 1000)


def test_pulses_with_the_driver_off_or_at_the_end_stop_move_nothing() -> None:
    p, _ = make(volume_nl=300)
    p.pin_written(config.PIN_STEP, 1)  # driver off (ENABLE high)
    p.pin_written(config.PIN_STEP, 0)
    pulse(p, 3)  # 300 nL: one step, then the end stop
    s = p.state()
    assert (s.steps, s.lost_steps, s.delivered_nl) == (1, 3, 250)
    assert p.pin_read(config.PIN_END_EMPTY) == 0, "the plunger on its end stop"


def test_a_blocked_catheter_stores_volume_raises_pressure_and_stalls_the_motor() -> None:
    p, clock = make()
    p.set_inputs(occluded=True)
    clock.ms = 1000
    pulse(p, 2)
    assert p.state().pressure == pl.PRESSURE_REST + 500 * pl.PRESSURE_PER_NL
    assert p.state().pressure_over_ms is None, "still under the firmware's limit"
    clock.ms = 2000
    pulse(p)
    s = p.state()
    assert s.pressure > config.PRESSURE_LIMIT_RAW and s.pressure_over_ms == 2000
    assert (s.delivered_nl, s.stored_nl) == (0, 750)
    pulse(p, 10)  # on against the blockage: the motor's torque runs out
    s = p.state()
    assert s.pressure >= pl.PRESSURE_STALL - pl.PRESSURE_PER_NL * 250
    assert s.lost_steps > 0 and s.stored_nl < 750 + 10 * 250


def test_drawing_back_relieves_the_pressure_and_no_bolus_follows() -> None:
    p, _ = make(volume_nl=10_000_000)
    p.set_inputs(occluded=True)
    pulse(p, 3)
    pulse(p, config.OCCLUSION_BACKOFF_STEPS, back=True)
    assert p.state().pressure < pl.PRESSURE_REST
    p.set_inputs(occluded=False)
    s = p.state()
    assert s.released_nl == 750 - config.OCCLUSION_BACKOFF_STEPS * 250 < 0
    assert s.delivered_nl == s.released_nl, "the vacuum drew back from the far end"


def test_without_back_off_the_stored_volume_is_a_bolus_when_it_clears() -> None:
    p, _ = make()
    p.set_inputs(occluded=True)
    pulse(p, 3)
    p.set_inputs(occluded=False)
    assert p.state().released_nl == 750 and p.state().delivered_nl == 750


def test_the_battery_runs_down_with_time_and_with_motor_work() -> None:
    idle, clock = make()
    busy, busy_clock = make()
    assert idle.battery_mv() == pl.BATTERY_CURVE[0][1]
    clock.ms = busy_clock.ms = 365 * 86_400_000
    pulse(busy, 200_000)
    assert idle.battery_mv() < pl.BATTERY_CURVE[0][1], "the standing current over a year"
    assert busy.battery_mv() < idle.battery_mv(), "motor work drains it further"
    used = idle.state().battery_used_uah
    assert used == pl.STANDING_UA * 365 * 24
    assert busy.state().battery_used_uah - used == 200_000 * pl.STEP_UAH_X1000 // 1000


@pytest.mark.parametrize(("used", "mv"), [(0, 3900), (150_000, 3750), (1_380_000, 3500),
                                          (1_455_000, 3300), (2_000_000, 2800)])
def test_the_battery_curve(used: int, mv: int) -> None:
    p, _ = make()
    p.set_inputs(battery_used_uah=used)
    assert p.battery_mv() == mv


def test_the_battery_adc_reads_the_voltage_through_the_divider() -> None:
    p, _ = make()
    p.set_inputs(battery_mv=3300)
    raw = p.adc(config.PIN_BATTERY_ADC)
    mv = raw * 3300 * config.BATTERY_DIVIDER // 65535
    assert abs(mv - 3300) <= 1


def test_brown_out_has_hysteresis() -> None:
    p, _ = make()
    p.set_inputs(battery_mv=pl.BROWNOUT_MV - 1)
    assert p.brownout()
    p.power_lost()
    p.set_inputs(battery_mv=pl.BROWNOUT_MV + pl.BROWNOUT_HYSTERESIS_MV - 1)
    assert p.brownout(), "just over the drop-out is not enough to start again"
    p.set_inputs(battery_mv=pl.BROWNOUT_MV + pl.BROWNOUT_HYSTERESIS_MV)
    assert not p.brownout()


def test_power_lost_closes_the_valves_and_silences_the_buzzer() -> None:
    p, _ = make()
    p.pin_written(config.PIN_REFILL_VALVE, 1)
    p.pwm(config.PIN_BUZZER, 2000)
    p.power_lost()
    s = p.state()
    assert (s.refill_valve, s.buzzer_hz, s.buzzer_tones, s.powered) == (0, 0, [], False)


def test_the_buzzer_remembers_when_it_began_and_the_tones_heard() -> None:
    p, clock = make()
    clock.ms = 500
    p.pwm(config.PIN_BUZZER, 2000)
    clock.ms = 750
    p.pwm(config.PIN_BUZZER, 2800)
    s = p.state()
    assert (s.buzzer_since_ms, s.buzzer_tones) == (500, [2000, 2800])
    p.pwm(config.PIN_BUZZER, 0)
    assert p.state().buzzer_since_ms is None and p.state().buzzer_tones == []


def test_drawing_back_stops_at_the_full_end() -> None:
    p, _ = make()
    pulse(p, 2, back=True)
    assert (p.state().back_steps, p.state().lost_steps) == (0, 2)


def test_the_low_and_empty_levels_are_timed() -> None:
    p, clock = make(volume_nl=config.LOW_RESERVOIR_NL + 500)
    clock.ms = 10
    pulse(p, 2)
    assert p.state().low_ms == 10 and p.state().empty_ms is None


def test_unknown_inputs_are_refused() -> None:
    p, _ = make()
    with pytest.raises(ValueError, match="unknown input"):
        p.set_inputs(flood=True)
