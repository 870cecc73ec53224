"""The set-up every therapy test goes through, as a clinician would: a patient profile, a
refill (the reservoir filled, its concentration entered twice), then a program of the test's
own. A pump boots with no profile and an empty reservoir, and programs nothing before both."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hil.rig import Rig
from host import errors
from host.client import PumpClient, RefillDone
from host.units import Number

LABEL_CONCENTRATIONS = (50, 500, 1000, 2000)


def prepare(
    pump: PumpClient,
    *,
    concentration: int = 500,
    fill_ml: Number = "20",
    ceiling_mcg_day: Number = "1500",
    phase: str = "titration",
    origin: str = "spinal",
    age_years: int = 40,
    catheter_ml: Number = "0.2",
) -> RefillDone:
    """Set the profile and fill the reservoir. What was in it is drained as the pump expects
    (a pump under test may have been filled by an earlier run)."""
    pump.set_profile(origin, age_years, phase, ceiling_mcg_day, catheter_ml)
    opened = pump.refill_begin()
    confirm = () if concentration in LABEL_CONCENTRATIONS else ("custom_concentration",)
    try:
        return pump.refill_commit(fill_ml, concentration, drained_ml=opened.expected_ml,
                                  confirm=confirm)
    except errors.ProtocolError:
        pump.refill_abort()
        raise


# A flex day with the label's example (2.4): the night's rate 20 % over the day's.
FLEX_NIGHT_PLUS_20 = [("06:00", 400), ("22:00", 480)]  # (local start, mcg/day)


def flex_day_nl(flex: list[tuple[str, int]], concentration: int) -> Fraction:
    """A flex day's volume: each step's daily dose for its share of the day."""
    starts = [int(h) * 60 + int(m) for h, m in (s.split(":") for s, _ in flex)]
    spans = [(starts[(i + 1) % len(starts)] - starts[i]) % 1440 for i in range(len(starts))]
    mcg = sum((Fraction(dose * span, 1440) for (_, dose), span in zip(flex, spans, strict=True)),
              Fraction(0))
    return mcg / concentration * 1_000_000


def occlusion_trial(pump: PumpClient, rig: Rig, dose: str, limit_ms: int = 600_000,
                    poll_ms: int = 5_000) -> dict[str, int]:
    """Block the catheter of a pump delivering `dose` (mcg/day, 500 mcg/mL), wait for the
    occlusion alarm (watched on the rig's buzzer, so no request wakes the pump early), then
    clear the blockage. Returns, in pump time: blockage to alarm, pressure limit to alarm,
    volume pushed after the limit, and what flowed out when the blockage cleared (negative:
    drawn back). Needs rig capabilities occlusion, tones and plant_model."""
    prepare(pump)
    pump.set_continuous(dose, confirm=["high_dose"] if Decimal(dose) > 1000 else [])
    rig.advance(3_600_000)
    t0 = rig.now_ms()
    rig.occlude(True)
    while (m := rig.measure())["buzzer_since_ms"] is None:
        if m["now_ms"] - t0 > limit_ms:
            raise AssertionError(f"no alarm {limit_ms / 1000:.0f} s after the blockage")
        rig.advance(poll_ms)
    alarms = pump.alarm_state().alarms
    rig.occlude(False)
    return {
        "blockage_to_alarm_ms": m["buzzer_since_ms"] - t0,
        "limit_to_alarm_ms": m["buzzer_since_ms"] - m["pressure_over_ms"],
        "pushed_over_nl": m["pushed_over_nl"],
        "pressure_after": m["pressure"],
        "released_nl": rig.measure()["released_nl"],
        "occlusion_alarm": int("occlusion" in alarms),
        "tones": len(m["buzzer_tones"]),
    }
