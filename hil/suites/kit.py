"""The set-up every therapy test goes through, as a clinician would: a patient profile, a
refill (the reservoir filled, its concentration entered twice), then a program of the test's
own. A pump boots with no profile and an empty reservoir, and programs nothing before both."""

from __future__ import annotations

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
