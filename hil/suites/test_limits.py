"""The clinical limits end to end (clinical-rules.md; DESIGN invariant 2), as a tester drives
them on a board: each rule the pump enforces, through PumpClient over the link. A refusal
raises its typed error naming the rule, what was asked and the limit (read here in clinician
units: mcg/day, mcg, mcg/mL, mL, durations); the therapy is as it was (program, profile,
status); the log holds the refusal; then the value the rule allows is accepted."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from hil.rig import Rig
from hil.suites.kit import prepare
from hil.suites.rawlink import as_role, log_total, state
from host import errors
from host.client import PumpClient
from protocol import messages as m
from protocol.host_codec import MESSAGE_NAMES

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def shown(e: errors.ProtocolError) -> tuple[str, str]:
    """What was asked and the limit, as a clinician reads them (the rule's unit)."""
    return errors.show_value(e.requested, e.unit), errors.show_value(e.allowed, e.unit)


def assert_logged(pump: PumpClient, since: int,
                  refusals: list[tuple[errors.ProtocolError, int, str]]) -> None:
    """The log since event `since` holds these refusals (error, request type, role), in
    order, each with its rule and values."""
    logged = [e for e in pump.events(since) if e.event == "refused"]
    assert [(e.rule, e.type, e.a, e.b, e.c, e.role) for e in logged] == [
        (r.rule, mtype, r.code, r.requested, r.allowed, role) for r, mtype, role in refusals]


def refused(
    pump: PumpClient,
    call: Callable[[], Any],
    cls: type[errors.ProtocolError],
    mtype: int,
    rule: str,
    values: tuple[str, str] | None = None,
    *,
    log: bool = True,
) -> errors.ProtocolError:
    """call() is refused with cls by `rule` (asked and allowed reading as `values`), and
    leaves the therapy as it was; the refusal is logged (log: pump may read the log)."""
    before = state(pump)
    since = log_total(pump) if log else 0
    with pytest.raises(cls) as caught:
        call()
    e = caught.value
    assert (e.request, e.rule) == (MESSAGE_NAMES[mtype], rule), str(e)
    if values is not None:
        assert shown(e) == values, str(e)
    assert state(pump) == before, "a refused command changed the therapy"
    if log:
        assert_logged(pump, since, [(e, mtype, pump.role)])
    return e


# -- who the patient is (label 1, 8.4) ------------------------------------------------------


@pytest.mark.hil
def test_a_patient_under_4_years_is_refused(pump: PumpClient) -> None:
    refused(pump, lambda: pump.set_profile("spinal", 3, "titration", "1500"), errors.Limit,
            m.SET_PROFILE, "patient_age", ("3 years", "4 years"))
    assert pump.profile().phase == "unset"
    assert pump.set_profile("spinal", 4, "titration", "1500").age_years == 4


def _s(t: datetime) -> int:
    return int(t.timestamp())


@pytest.mark.hil
def test_therapy_waits_a_year_after_a_brain_injury(pump: PumpClient) -> None:
    # Label 1: "wait at least one year after injury"; a year is 365 days (rules.py), by the
    # pump's clock: when the profile is set, and again at the first therapy.
    now = pump.status().clock.replace(microsecond=0)
    year = timedelta(days=365)
    recent = now - timedelta(days=200)
    e = refused(pump, lambda: pump.set_profile("cerebral", 30, "titration", "1500",
                                               brain_injury=recent),
                errors.TooSoon, m.SET_PROFILE, "brain_injury_wait",
                (errors.show_date(_s(recent)), errors.show_date(_s(recent + year))))
    assert 165 * 86_400 - 60 <= e.wait_s <= 165 * 86_400, e.wait_s
    assert "therapy may start on" in str(e)
    later = now + timedelta(days=30)  # not yet: a wrong date (or a clock not set)
    refused(pump, lambda: pump.set_profile("cerebral", 30, "titration", "1500",
                                           brain_injury=later),
            errors.OutOfRange, m.SET_PROFILE, "brain_injury_wait")
    assert pump.profile().phase == "unset"
    injury = now - year
    p = pump.set_profile("cerebral", 30, "titration", "1500", "0.2", brain_injury=injury)
    assert p.brain_injury == injury
    pump.refill("20", 500)
    # The clock was an hour ahead when the profile was taken: set right, the first therapy
    # (a program, a bolus, a priming bolus) waits for the year by it.
    pump.set_clock(now - timedelta(hours=1))
    for mtype, ask in ((m.SET_CONTINUOUS, lambda: pump.set_continuous("100")),
                       (m.BOLUS, lambda: pump.bolus("10", 600)),
                       (m.PRIME, lambda: pump.prime(600))):
        e = refused(pump, ask, errors.TooSoon, mtype, "brain_injury_wait",
                    (errors.show_date(_s(injury)), errors.show_date(_s(now))))
        assert 3600 - 60 <= e.wait_s <= 3600, e.wait_s
    pump.set_clock(now)
    assert pump.set_continuous("100").daily_dose_mcg == 100
    # Therapy began: moving the clock back later holds nothing back.
    pump.set_clock(now - timedelta(days=30))
    assert pump.set_continuous("90").daily_dose_mcg == 90


# -- drug, concentration and refill (label 2.3, 5.1) ------------------------------------------


@pytest.mark.hil
@pytest.mark.parametrize(
    ("filled", "asked", "cls", "rule", "values", "allowed"),
    [
        pytest.param(False, {"concentration": 2500, "confirm": ["custom_concentration"]},
                     errors.Limit, "concentration", ("2500 mcg/mL", "2000 mcg/mL"),
                     {"concentration": 2000}, id="above-2000-mcg-per-ml"),
        pytest.param(False, {"concentration": 300}, errors.NotConfirmed,
                     "custom_concentration", ("300 mcg/mL", "0 mcg/mL"),
                     {"concentration": 300, "confirm": ["custom_concentration"]},
                     id="custom-dilution-unconfirmed"),
        pytest.param(False, {"concentration": 500, "concentration_again": 1000},
                     errors.NotConfirmed, "concentration", ("500 mcg/mL", "1000 mcg/mL"),
                     {"concentration": 500, "concentration_again": 500},
                     id="entered-twice-differently"),
        pytest.param(False, {"fill_ml": "25", "concentration": 500}, errors.Limit, "overfill",
                     ("25 mL", "20 mL"), {"fill_ml": "20", "concentration": 500},
                     id="overfill"),
        pytest.param(True, {"concentration": 500, "drained_ml": "5"}, errors.NotConfirmed,
                     "drain_mismatch", ("5 mL", "20 mL"),
                     {"concentration": 500, "drained_ml": "20"}, id="drained-volume-off"),
    ],
)
def test_a_refill_outside_the_rules_leaves_the_reservoir_as_it_was(
    pump: PumpClient, filled: bool, asked: dict[str, Any], cls: type[errors.ProtocolError],
    rule: str, values: tuple[str, str], allowed: dict[str, Any],
) -> None:
    if filled:
        prepare(pump)  # 20 mL at 500 mcg/mL: the pump expects 20 mL drained
    else:
        pump.set_profile("spinal", 40, "titration", "1500")
    before = pump.status()
    asked = {"fill_ml": "20", **asked}
    refused(pump, lambda: pump.refill(**asked), cls, m.REFILL_COMMIT, rule, values)
    after = pump.status()
    assert (after.reservoir_ul, after.concentration_mcg_ml, after.sessions) == (
        before.reservoir_ul, before.concentration_mcg_ml, ())
    allowed = {"fill_ml": "20", **allowed}
    done = pump.refill(**allowed)
    assert (done.reservoir_ml, done.concentration_mcg_ml) == (
        Decimal(allowed["fill_ml"]), allowed["concentration"])


# -- screening (label 2.2) ----------------------------------------------------------------


def start_screening(pump: PumpClient, age_years: int) -> None:
    pump.set_profile("spinal", age_years, "screening", "1500")
    pump.refill("20", 50)  # the screening strength


@pytest.mark.hil
@pytest.mark.parametrize(
    ("dose", "duration_s", "rule", "values"),
    [
        pytest.param("75", 120, "screening_dose", ("75 mcg", "50 mcg"), id="ladder-starts-at-50"),
        pytest.param("125", 150, "screening_dose", ("125 mcg", "100 mcg"), id="above-100-mcg"),
        pytest.param("25", 60, "screening_dose", ("25 mcg", "50 mcg"), id="25-first-adult"),
        pytest.param("50", 59, "screening_duration", ("59 s", "1 min"), id="under-1-min"),
    ],
)
def test_a_screening_bolus_off_the_label_is_refused(
    pump: PumpClient, dose: str, duration_s: int, rule: str, values: tuple[str, str]
) -> None:
    start_screening(pump, 40)
    refused(pump, lambda: pump.screen(dose, duration_s), errors.Limit, m.SCREEN, rule, values)
    assert pump.screening().given == ()
    first = pump.screen("50", 60)
    assert (first.kind, first.dose_mcg) == ("screening", 50)


@pytest.mark.hil
def test_a_child_may_start_screening_at_25_mcg(pump: PumpClient) -> None:
    start_screening(pump, 6)
    assert pump.screen("25", 60).dose_mcg == 25
    assert pump.screening().next_dose_mcg == 50


@pytest.mark.hil
@pytest.mark.rig("time_control")
def test_screening_doses_come_24_h_apart_and_stop_at_100_mcg(pump: PumpClient,
                                                            rig: Rig) -> None:
    start_screening(pump, 40)
    pump.screen("50", 60)
    rig.advance(HOUR_MS)
    e = refused(pump, lambda: pump.screen("75", 120), errors.TooSoon, m.SCREEN,
                "screening_interval")  # (its values: test_an_interval_refusal_reads_...)
    assert e.wait_s == 23 * 3600
    rig.advance(e.wait_s * 1000)
    refused(pump, lambda: pump.screen("100", 120), errors.Limit, m.SCREEN, "screening_dose",
            ("100 mcg", "75 mcg"))
    assert pump.screen("75", 120).dose_mcg == 75
    rig.advance(DAY_MS)
    assert pump.screen("100", 120).dose_mcg == 100
    rig.advance(DAY_MS)
    refused(pump, lambda: pump.screen("100", 120), errors.Limit, m.SCREEN, "screening_dose",
            ("100 mcg", "0 mcg"))  # 100 mcg is the maximum: no fourth dose
    history = pump.screening()
    assert (history.next_dose_mcg, [g.dose_mcg for g in history.given]) == (0, [50, 75, 100])


# -- after implant: starting dose, first 24 h, titration (label 2.5) --------------------------


@pytest.mark.hil
def test_the_starting_dose_is_at_most_twice_the_screening_dose(pump: PumpClient) -> None:
    start_screening(pump, 40)
    pump.screen("50", 60)
    e = refused(pump, lambda: pump.set_continuous("100"), errors.InvalidState,
                m.SET_CONTINUOUS, "phase")
    assert e.detail() == "phase screening, needs titration"
    pump.set_profile("spinal", 40, "titration", "1500")
    refused(pump, lambda: pump.set_continuous("101"), errors.Limit, m.SET_CONTINUOUS,
            "starting_dose", ("101 mcg/day", "100 mcg/day"))
    assert pump.set_continuous("100").daily_dose_mcg == 100
    refused(pump, lambda: pump.set_profile("spinal", 40, "screening", "1500"),
            errors.InvalidState, m.SET_PROFILE, "phase")  # infusion started: no going back


@pytest.mark.hil
@pytest.mark.rig("time_control")
def test_no_increase_in_the_first_24_h_of_infusion(pump: PumpClient, rig: Rig) -> None:
    prepare(pump)
    pump.set_continuous("400")
    rig.advance(HOUR_MS)
    pump.set_clock(pump.status().clock + timedelta(days=2))  # the wall clock opens no day
    e = refused(pump, lambda: pump.set_continuous("450"), errors.TooSoon, m.SET_CONTINUOUS,
                "first_24h", ("450 mcg/day", "400 mcg/day"))
    assert e.wait_s == 23 * 3600
    rig.advance(e.wait_s * 1000)
    assert pump.set_continuous("450").daily_dose_mcg == 450


@pytest.mark.hil
def test_the_first_24_h_cannot_be_skipped_by_backdating_the_infusion(pump: PumpClient) -> None:
    prepare(pump)
    pump.set_continuous("400")
    backdated = pump.status().clock - timedelta(days=3)
    try:
        pump.set_profile("spinal", 40, "titration", "1500", "0.2", infusion_start=backdated)
    except errors.ProtocolError:
        pass  # refusing the backdating is one way to keep the rule
    with pytest.raises(errors.TooSoon) as caught:
        pump.set_continuous("450")
    assert caught.value.rule == "first_24h"


@pytest.mark.hil
@pytest.mark.rig("time_control")
@pytest.mark.parametrize(
    ("origin", "age", "allowed"),
    [
        pytest.param("spinal", 40, 520, id="adult-spinal-30pct"),
        pytest.param("spinal", 18, 520, id="18y-spinal-30pct"),
        pytest.param("spinal", 17, 460, id="17y-spinal-15pct"),
        pytest.param("cerebral", 40, 460, id="adult-cerebral-15pct"),
    ],
)
def test_a_titration_step_is_limited_by_origin_and_age(
    pump: PumpClient, rig: Rig, origin: str, age: int, allowed: int
) -> None:
    prepare(pump, origin=origin, age_years=age)
    pump.set_continuous("400")
    rig.advance(DAY_MS)
    refused(pump, lambda: pump.set_continuous(allowed + 1), errors.Limit, m.SET_CONTINUOUS,
            "titration_step", (f"{allowed + 1} mcg/day", f"{allowed} mcg/day"))
    assert pump.set_continuous(allowed).daily_dose_mcg == allowed


@pytest.mark.hil
@pytest.mark.rig("time_control")
def test_titration_increases_come_at_most_once_per_24_h(pump: PumpClient, rig: Rig) -> None:
    prepare(pump)
    pump.set_continuous("400")
    rig.advance(DAY_MS)
    pump.set_continuous("500")
    rig.advance(23 * HOUR_MS)
    e = refused(pump, lambda: pump.set_continuous("520"), errors.TooSoon, m.SET_CONTINUOUS,
                "titration_interval")  # (its values: test_an_interval_refusal_reads_...)
    assert e.wait_s == 3600
    rig.advance(e.wait_s * 1000)
    assert pump.set_continuous("520").daily_dose_mcg == 520


@pytest.mark.hil
@pytest.mark.rig("time_control")
@pytest.mark.parametrize("rule", ["titration_interval", "screening_interval"])
def test_an_interval_refusal_reads_in_its_rules_unit(pump: PumpClient, rig: Rig,
                                                    rule: str) -> None:
    if rule == "titration_interval":
        prepare(pump)
        pump.set_continuous("400")
        rig.advance(DAY_MS)
        pump.set_continuous("500")
        dose = ("520 mcg/day", "500 mcg/day")
        ask: Callable[[], Any] = lambda: pump.set_continuous("520")  # noqa: E731
    else:
        start_screening(pump, 40)
        pump.screen("50", 60)
        dose = ("75 mcg", "75 mcg")
        ask = lambda: pump.screen("75", 120)  # noqa: E731
    rig.advance(23 * HOUR_MS)
    with pytest.raises(errors.TooSoon) as caught:
        ask()
    e = caught.value
    assert e.rule == rule
    if e.unit == "s":  # time since the last one, and the interval
        assert (e.requested, e.allowed) == (23 * 3600, 24 * 3600), str(e)
    else:  # the dose asked for, and the one in force
        assert shown(e) == dose, str(e)


# -- maintenance: at refill visits (label 2.6) ---------------------------------------------


@pytest.mark.hil
@pytest.mark.rig("time_control")
@pytest.mark.parametrize(("origin", "allowed"), [("spinal", 560), ("cerebral", 480)],
                         ids=["spinal-40pct", "cerebral-20pct"])
def test_maintenance_increases_only_at_a_refill_and_within_its_step(
    pump: PumpClient, rig: Rig, origin: str, allowed: int
) -> None:
    prepare(pump, phase="maintenance", origin=origin)
    pump.set_continuous("400")
    rig.advance(DAY_MS)
    refused(pump, lambda: pump.set_continuous("410"), errors.InvalidState, m.SET_CONTINUOUS,
            "maintenance_at_refill", ("410 mcg/day", "400 mcg/day"))
    visit = pump.refill_begin()
    values = (f"{allowed + 1} mcg/day", f"{allowed} mcg/day")
    refused(pump, lambda: pump.set_continuous(allowed + 1), errors.Limit, m.SET_CONTINUOUS,
            "maintenance_step", values)
    assert pump.set_continuous(allowed - 40).daily_dose_mcg == allowed - 40
    # The step is the visit's, from the dose when it began: not one per command.
    refused(pump, lambda: pump.set_continuous(allowed + 1), errors.Limit, m.SET_CONTINUOUS,
            "maintenance_step", values)
    assert pump.set_continuous(allowed).daily_dose_mcg == allowed
    pump.refill_commit("20", 500, drained_ml=visit.expected_ml)
    assert pump.program().daily_dose_mcg == allowed
    # The largest step allowed is flagged: a large escalation may be a catheter problem.
    assert "escalation" in pump.status().alarms
    assert [e.a for e in pump.events() if e.event == "escalation"] == [allowed * 1000]


# -- high doses, the ceiling, cuts (label 2.6, 5.5; the profile) ------------------------------


@pytest.mark.hil
def test_more_than_1000_mcg_per_day_needs_a_confirmation(pump: PumpClient) -> None:
    prepare(pump, ceiling_mcg_day="2000")
    refused(pump, lambda: pump.set_continuous("1200"), errors.NotConfirmed, m.SET_CONTINUOUS,
            "high_dose", ("1200 mcg/day", "1000 mcg/day"))
    assert pump.set_continuous("1200", confirm="high_dose").daily_dose_mcg == 1200
    # Every program above it, a cut as well.
    refused(pump, lambda: pump.set_continuous("1100"), errors.NotConfirmed, m.SET_CONTINUOUS,
            "high_dose", ("1100 mcg/day", "1000 mcg/day"))
    assert pump.set_continuous("1000").daily_dose_mcg == 1000


@pytest.mark.hil
def test_the_hard_ceiling_caps_the_program_and_the_profile(pump: PumpClient) -> None:
    prepare(pump, ceiling_mcg_day="800")
    refused(pump, lambda: pump.set_continuous("900"), errors.Limit, m.SET_CONTINUOUS,
            "hard_ceiling", ("900 mcg/day", "800 mcg/day"))
    assert pump.set_continuous("800").daily_dose_mcg == 800
    refused(pump, lambda: pump.set_profile("spinal", 40, "titration", "700", "0.2"),
            errors.Limit, m.SET_PROFILE, "hard_ceiling", ("700 mcg/day", "800 mcg/day"))
    assert pump.set_profile("spinal", 40, "titration", "800", "0.2").ceiling_mcg_day == 800


@pytest.mark.hil
def test_a_bolus_may_not_pass_the_hard_ceiling(pump: PumpClient) -> None:
    prepare(pump, ceiling_mcg_day="850")
    pump.set_continuous("800")
    refused(pump, lambda: pump.bolus("60", 600), errors.Limit, m.BOLUS, "bolus_ceiling",
            ("60 mcg", "50 mcg"))
    given = pump.bolus("50", 600)
    assert (given.kind, given.dose_mcg) == ("clinician", 50)


@pytest.mark.hil
def test_a_cut_of_more_than_20_percent_in_24_h_needs_a_confirmation(pump: PumpClient) -> None:
    prepare(pump)
    pump.set_continuous("400")
    refused(pump, lambda: pump.set_continuous("300"), errors.NotConfirmed, m.SET_CONTINUOUS,
            "large_decrease", ("300 mcg/day", "320 mcg/day"))
    assert pump.set_continuous("320").daily_dose_mcg == 320
    # Measured from the highest dose of the last 24 h, not from the last step: no staircase.
    refused(pump, lambda: pump.set_continuous("300"), errors.NotConfirmed, m.SET_CONTINUOUS,
            "large_decrease", ("300 mcg/day", "320 mcg/day"))
    assert pump.set_continuous("300", confirm="large_decrease").daily_dose_mcg == 300


# -- never stop abruptly (boxed warning, 5.5, 2.6) -----------------------------------------


@pytest.mark.hil
@pytest.mark.rig("time_control")
@pytest.mark.parametrize("command", ["stop", "suspend"])
def test_stop_and_suspend_need_the_confirmation_word(pump: PumpClient, rig: Rig,
                                                     command: str) -> None:
    prepare(pump)
    pump.set_continuous("400")  # 800 uL/day: 33.3 uL an hour
    mtype, held = (m.STOP, "stopped") if command == "stop" else (m.SUSPEND, "minimum_rate")
    e = refused(pump, lambda: getattr(pump, command)("clinician_decision"), errors.NotConfirmed,
                mtype, "stop_reason")
    assert "confirmation word" in e.reason
    delivered = pump.status().delivered_ul
    rig.advance(HOUR_MS)
    s = pump.status()
    assert s.mode == "continuous" and 33 <= s.delivered_ul - delivered <= 34, "it went on"
    getattr(pump, command)("clinician_decision", confirm=True)
    assert pump.status().mode == held


@pytest.mark.hil
def test_a_taper_takes_2_to_4_weeks_and_confirms_a_large_daily_cut(pump: PumpClient) -> None:
    prepare(pump)
    pump.set_continuous("400")
    for days in (13, 29):  # outside the wire's range: refused before any rule
        before, counted = state(pump), pump.counters()["OUT_OF_RANGE"]
        with pytest.raises(errors.OutOfRange) as caught:
            pump.set_taper("200", days)
        assert caught.value.request == "SET_TAPER" and f"days={days}" in caught.value.reason
        assert state(pump) == before and pump.counters()["OUT_OF_RANGE"] == counted + 1
    refused(pump, lambda: pump.set_taper("400", 14), errors.Limit, m.SET_TAPER, "taper",
            ("400 mcg/day", "400 mcg/day"))  # a taper goes down from the dose in force
    refused(pump, lambda: pump.set_taper("50", 14), errors.NotConfirmed, m.SET_TAPER,
            "large_decrease", ("50 mcg/day", "400 mcg/day"))  # 25 of the last 75: -33 %
    taper = pump.set_taper("50", 28)  # 12.5 of the last 62.5 mcg/day: -20 %
    assert (taper.start_mcg_day, taper.target_mcg_day, taper.days, taper.step_mcg_day) == (
        400, 50, 28, Decimal("12.5"))
    assert pump.status().mode == "taper"


# -- patient boluses (the clinician's limits) ------------------------------------------------


@pytest.mark.hil
@pytest.mark.rig("time_control")
def test_patient_boluses_keep_to_the_clinicians_limits(pump: PumpClient, rig: Rig) -> None:
    prepare(pump)  # ceiling 1500 mcg/day
    pump.set_continuous("400")
    since = log_total(pump)
    with as_role(pump, "patient") as patient:
        off = refused(patient, patient.patient_bolus, errors.InvalidState, m.PATIENT_BOLUS,
                      "patient_bolus_off", log=False)
    over = refused(pump, lambda: pump.set_patient_bolus("600", 600, 3600, 2), errors.Limit,
                   m.SET_PATIENT_BOLUS, "bolus_ceiling", ("600 mcg", "550 mcg"), log=False)
    pump.set_patient_bolus("25", duration_s=300, lockout_s=3600, max_per_day=2)
    with as_role(pump, "patient") as patient:
        assert patient.patient_bolus().dose_mcg == 25
        lockout = refused(patient, patient.patient_bolus, errors.TooSoon, m.PATIENT_BOLUS,
                          "patient_bolus_lockout", ("1 h", "1 h"), log=False)
        assert lockout.wait_s == 3600
        rig.advance(HOUR_MS)
        assert patient.patient_bolus().dose_mcg == 25
        rig.advance(HOUR_MS)
        most = refused(patient, patient.patient_bolus, errors.TooSoon, m.PATIENT_BOLUS,
                       "patient_bolus_max", ("3 boluses", "2 boluses"), log=False)
        assert most.wait_s == 22 * 3600  # until the first of the two is 24 h old
        rig.advance(most.wait_s * 1000)
        assert patient.patient_bolus().dose_mcg == 25
    assert_logged(pump, since, [
        (off, m.PATIENT_BOLUS, "patient"), (over, m.SET_PATIENT_BOLUS, "clinician"),
        (lockout, m.PATIENT_BOLUS, "patient"), (most, m.PATIENT_BOLUS, "patient")])
