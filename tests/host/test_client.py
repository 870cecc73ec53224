"""PumpClient: its retry rules, with the link replaced by a script of what comes back; its
typed results and refusals, against the simulator."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from firmware.core import guard
from hil.launcher import SimProcess
from hil.rig import Rig
from hil.suites.kit import prepare
from host import errors
from host.client import (
    BUSY_MARGIN_S,
    BUSY_RETRY_MAX_S,
    AlarmEvent,
    Event,
    PumpClient,
    Step,
    Telemetry,
)
from protocol import host_codec as hc
from protocol import messages as m

KEY = bytes(range(32))
DAY_MS = 86_400_000
HOUR_MS = 3_600_000


class ScriptedClient(PumpClient):
    """Answers come from a list: a Message (as if read), or None (nothing in time). Waits are
    noted, not slept."""

    def __init__(self, script: list[Any]):
        super().__init__("scripted://", keys={"clinician": KEY}, retries=2)
        self.script = script
        self.sent: list[bytes] = []
        self.paused: list[float] = []
        self._port = object()  # type: ignore[assignment]

    def _write(self, wire: bytes) -> None:
        self.sent.append(wire)

    def _pause(self, seconds: float) -> None:
        self.paused.append(seconds)

    def _await(self, seq: int) -> hc.Message | hc.DecodeError | None:
        answer = self.script.pop(0)
        if isinstance(answer, hc.Message):
            return hc.Message(answer.type, seq, answer.fields)  # answering this seq
        return answer


def resp(name: str, **fields: Any) -> hc.Message:
    return hc.Message(hc.MESSAGE_TYPES[name], 0, fields)


CHALLENGE_OK = resp("CHALLENGE_OK", session=1, nonce=bytes(16))
STOPPED = resp("STOPPED", reason="clinician_decision")


def error(code: int, rule: str = "none", requested: int = 0, allowed: int = 0,
          wait_s: int = 0, request_type: int = m.STOP) -> hc.Message:
    return resp("ERROR", code=code, request_type=request_type, rule=rule, requested=requested,
                allowed=allowed, wait_s=wait_s, reason="x")


def test_a_lost_answer_is_retried_byte_for_byte() -> None:
    c = ScriptedClient([CHALLENGE_OK, None, STOPPED])
    c.stop(confirm=True)
    assert c.sent[1] == c.sent[2]  # the retry is the same frame: the pump's cache answers it


def test_a_reboot_before_the_command_reopens_the_session() -> None:
    c = ScriptedClient([CHALLENGE_OK, error(m.ERR_NO_SESSION), CHALLENGE_OK, STOPPED])
    c.stop(confirm=True)  # the first attempt was refused unrun: safe to send again
    assert len(c.sent) == 4


def test_a_reboot_after_a_lost_answer_is_not_resent() -> None:
    c = ScriptedClient([CHALLENGE_OK, None, error(m.ERR_NO_SESSION)])
    with pytest.raises(errors.OutcomeUnknown, match="unknown"):
        c.stop(confirm=True)
    assert len(c.sent) == 3  # challenge, the command, its retry: no fresh session, no resend


def test_a_retry_refused_bad_tag_is_not_resent() -> None:
    # The session's slot went to another host between the attempts (the pump's answer cache
    # for it too): the first attempt may have run, so it is not sent again in a new session.
    c = ScriptedClient([CHALLENGE_OK, None, error(m.ERR_BAD_TAG)])
    with pytest.raises(errors.OutcomeUnknown, match="another host during STOP; whether"):
        c.stop(confirm=True)
    assert len(c.sent) == 3 and c.sent[1] == c.sent[2]


def test_a_command_refused_bad_tag_at_once_is_sent_in_a_new_session() -> None:
    c = ScriptedClient([CHALLENGE_OK, error(m.ERR_BAD_TAG), CHALLENGE_OK, STOPPED])
    c.stop(confirm=True)  # refused before it ran: safe to send again
    assert [hc.decode(w).name for w in c.sent] == ["CHALLENGE", "STOP", "CHALLENGE", "STOP"]


def busy(wait_s: int) -> hc.Message:
    return error(m.ERR_BUSY, wait_s=wait_s, request_type=m.CHALLENGE)


def test_a_busy_challenge_with_a_short_wait_is_waited_out_and_sent_once_more() -> None:
    c = ScriptedClient([busy(7), CHALLENGE_OK, STOPPED])
    assert c.stop(confirm=True) == "clinician_decision"
    assert [hc.decode(w).name for w in c.sent] == ["CHALLENGE", "CHALLENGE", "STOP"]
    assert c.paused == [7 + BUSY_MARGIN_S]
    c = ScriptedClient([busy(BUSY_RETRY_MAX_S), CHALLENGE_OK, STOPPED])
    c.stop(confirm=True)
    assert c.paused == [BUSY_RETRY_MAX_S + BUSY_MARGIN_S]


def test_a_busy_challenge_is_retried_once_only() -> None:
    c = ScriptedClient([busy(3), busy(10)])
    with pytest.raises(errors.Busy) as refused:
        c.stop(confirm=True)
    assert refused.value.wait_s == 10 and refused.value.request == "CHALLENGE"
    assert len(c.sent) == 2 and c.paused == [3 + BUSY_MARGIN_S]  # the STOP never went


def test_a_busy_challenge_with_a_long_wait_is_raised_at_once() -> None:
    c = ScriptedClient([busy(BUSY_RETRY_MAX_S + 1)])
    with pytest.raises(errors.Busy) as refused:
        c.stop(confirm=True)
    assert refused.value.wait_s == BUSY_RETRY_MAX_S + 1 and "allowed in 11 s" in str(
        refused.value)
    assert len(c.sent) == 1 and c.paused == []


def test_a_locked_role_is_raised_with_wait_s_and_never_retried() -> None:
    for script in (
        [CHALLENGE_OK, error(m.ERR_LOCKED, wait_s=120)],
        [CHALLENGE_OK, None, error(m.ERR_LOCKED, wait_s=120)],  # on a retry: the same
        [CHALLENGE_OK, error(m.ERR_BAD_TAG), CHALLENGE_OK, error(m.ERR_LOCKED, wait_s=120)],
    ):
        c = ScriptedClient(list(script))
        with pytest.raises(errors.Locked) as refused:
            c.stop(confirm=True)
        e = refused.value
        assert (e.code, e.wait_s, e.request) == (m.ERR_LOCKED, 120, "STOP")
        assert "allowed in 2 min" in str(e)
        assert len(c.sent) == len(script) and c.paused == []  # nothing more sent or waited


# --- refusals, as the client raises them ------------------------------------------------------


def test_a_limit_names_its_rule_and_values_in_the_rules_unit() -> None:
    c = ScriptedClient([CHALLENGE_OK, error(m.ERR_LIMIT, "titration_step", 140_000, 130_000,
                                            request_type=m.SET_CONTINUOUS)])
    with pytest.raises(errors.Limit) as refused:
        c.set_continuous("140")
    e = refused.value
    assert (e.code, e.rule, e.requested, e.allowed, e.unit) == (
        m.ERR_LIMIT, "titration_step", 140_000, 130_000, "ng/day")
    assert e.request == "SET_CONTINUOUS" and e.exit_code == 4
    assert "LIMIT titration_step): asked 140 mcg/day, at most 130 mcg/day (label 2.5)" in str(e)


def test_too_soon_says_how_long_to_wait() -> None:
    c = ScriptedClient([CHALLENGE_OK, error(m.ERR_TOO_SOON, "patient_bolus_lockout", 3600,
                                            3600, wait_s=2 * 3600 + 300,
                                            request_type=m.PATIENT_BOLUS)])
    with pytest.raises(errors.TooSoon) as refused:
        c.patient_bolus()
    assert refused.value.wait_s == 7500
    assert "allowed in 2 h 5 min" in str(refused.value)
    assert "lockout 1 h" in str(refused.value)


def test_every_rule_reads_in_its_unit() -> None:
    for rid, name, unit, _src in m.RULES:
        e = errors.from_code(m.ERR_LIMIT, "why", m.SET_CONTINUOUS, rid, 2_000_000, 1_000_000)
        assert e.rule == name and e.unit == unit
        text = str(e)
        assert name in text and "why" in text
        if unit in ("ng/day", "ng"):
            assert "asked 2000 mcg" in text and "at most 1000 mcg" in text
        if unit == "nL":
            assert "2 mL" in text and "1 mL" in text


def test_an_error_without_a_rule_reads_as_before() -> None:
    e = errors.from_code(m.ERR_OUT_OF_RANGE, "daily_dose_ng=500 outside 1000..20000000")
    assert e.rule is None and str(e) == (
        "pump refused (OUT_OF_RANGE): daily_dose_ng=500 outside 1000..20000000")


def test_values_the_wire_cannot_carry_are_refused_before_anything_is_sent() -> None:
    c = ScriptedClient([])
    with pytest.raises(ValueError, match="resolution"):
        c.set_continuous("400.0001")
    with pytest.raises(ValueError, match="does not fit"):
        c.set_continuous("5000000")  # 5e9 ng: more than a u32
    with pytest.raises(ValueError, match="confirmation"):
        c.set_continuous("400", ["please"])
    with pytest.raises(ValueError, match="float"):
        c.set_continuous(400.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="origin"):
        c.set_profile("lumbar", 40, "titration", "1500")
    with pytest.raises(ValueError, match="HH:MM"):
        c.set_flex([("25:99", "400"), ("8:00", "400")])
    assert c.sent == []


def test_events_page_through_the_log() -> None:
    def entry(n: int) -> dict[str, Any]:
        return dict(number=n, time_s=1_800_000_000 + n, event="refused", role=2,
                    rule="hard_ceiling", type=m.SET_CONTINUOUS, a=m.ERR_LIMIT, b=n, c=-n)

    c = ScriptedClient([
        CHALLENGE_OK,
        resp("LOG_PAGE", oldest=3, total=13, events=[entry(n) for n in range(3, 11)]),
        resp("LOG_PAGE", oldest=3, total=13, events=[entry(11), entry(12)]),
    ])
    events = c.events()
    assert [e.number for e in events] == list(range(3, 13))  # from the oldest still held
    assert events[0] == Event(3, datetime.fromtimestamp(1_800_000_003, UTC), "refused",
                              "clinician", "hard_ceiling", m.SET_CONTINUOUS, m.ERR_LIMIT, 3, -3)
    asked = [hc.decode(w) for w in c.sent[1:]]
    page = m.LOG_PAGE_EVENTS
    assert [(a["number"], a["count"]) for a in asked] == [(0, page), (11, page)]
    assert events[0].to_dict()["time"] == "2027-01-15T08:00:03+00:00"


def test_unsolicited_frames_come_out_typed() -> None:
    c = ScriptedClient([])
    c._events.append(resp("ALARM", alarm="low_reservoir", active=1, time_s=1_800_000_000,
                          alarms=["refill_due", "low_reservoir"]))
    c._events.append(resp("TELEMETRY", mode="continuous", rate_nl_day=800_000,
                          bolus_left_ng=0, delivered_nl=250, delivered_ng=125,
                          reservoir_nl=19_999_750, clock_s=1_800_000_000, alarms=[],
                          battery_mv=3900))
    alarm = c.next_event(0)
    assert alarm == AlarmEvent("low_reservoir", True, datetime.fromtimestamp(1_800_000_000, UTC),
                               ("low_reservoir", "refill_due"))
    tele = c.next_event(0)
    assert isinstance(tele, Telemetry) and tele.rate_ul_day == 800 and tele.alarms == ()
    assert tele.to_dict()["reservoir_ul"] == "19999.75"


# --- against the simulator ----------------------------------------------------------------------


def test_a_new_pump_has_no_profile_and_no_drug(pump: PumpClient) -> None:
    s = pump.status()
    assert (s.phase, s.concentration_mcg_ml, s.reservoir_ul, s.alarms, s.sessions) == (
        "unset", 0, 0, (), ())
    assert (pump.profile().phase, pump.profile().origin) == ("unset", "unset")
    with pytest.raises(errors.InvalidState) as refused:
        pump.set_continuous("400")
    assert refused.value.rule == "profile_required"
    pump.set_profile("spinal", 40, "titration", "1500")
    with pytest.raises(errors.InvalidState) as refused:
        pump.set_continuous("400")
    assert refused.value.rule == "reservoir" and "refill first" in str(refused.value)


def test_set_profile_brain_injury_as_a_date_or_a_time(pump: PumpClient) -> None:
    # A date is its midnight UTC; a time without a zone is UTC; None is no injury.
    def injured(when: date | datetime | None) -> datetime | None:
        return pump.set_profile("cerebral", 30, "titration", "1500",
                                brain_injury=when).brain_injury

    assert injured(date(2025, 3, 1)) == datetime(2025, 3, 1, tzinfo=UTC)
    assert injured(datetime(2025, 3, 1, 12, 30)) == datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
    east = timezone(timedelta(hours=2))
    assert injured(datetime(2025, 3, 1, 12, 30, tzinfo=east)) == datetime(
        2025, 3, 1, 10, 30, tzinfo=UTC)
    assert pump.profile().brain_injury == datetime(2025, 3, 1, 10, 30, tzinfo=UTC)
    assert injured(None) is None
    with pytest.raises(ValueError, match="1970"):  # 0 on the wire means none
        injured(date(1969, 7, 20))
    assert pump.profile().brain_injury is None, "nothing sent"


def test_set_up_profile_refill_program(pump: PumpClient) -> None:
    p = pump.set_profile("cerebral", 12, "titration", "800", "0.25")
    assert (p.origin, p.age_years, p.phase, p.ceiling_mcg_day, p.catheter_ml) == (
        "cerebral", 12, "titration", Decimal(800), Decimal("0.25"))
    assert p.infusion_start is None
    opened = pump.refill_begin()
    assert (opened.expected_ml, opened.capacity_ml, opened.concentration_mcg_ml) == (0, 20, 0)
    assert pump.status().sessions == ("refill",)
    done = pump.refill_commit("18.5", 1000)
    assert (done.reservoir_ml, done.concentration_mcg_ml) == (Decimal("18.5"), 1000)
    prog = pump.set_continuous("250")
    assert (prog.mode, prog.daily_dose_mcg, prog.rate_ul_day) == ("continuous", 250, 250)
    assert prog.steps == (Step(0, Decimal(250)),) and pump.program() == prog
    s = pump.status()
    assert (s.mode, s.phase, s.concentration_mcg_ml, s.sessions) == (
        "continuous", "titration", 1000, ())
    assert s.low_at and s.refill_at and s.dry_at and s.refill_at < s.low_at < s.dry_at
    assert pump.profile().infusion_start == s.clock  # infusion started at the first program
    assert [e.event for e in pump.events()] == [
        "boot", "profile", "refill_begin", "refill_commit", "program"]


def test_a_refused_program_changes_nothing(pump: PumpClient, rig: Rig) -> None:
    prepare(pump)
    pump.set_continuous("400")
    rig.advance(DAY_MS)
    program, status = pump.program(), pump.status()
    with pytest.raises(errors.Limit) as refused:
        pump.set_continuous("600")  # +50 %: titration allows +30 % (spinal adult)
    e = refused.value
    assert (e.rule, e.requested, e.allowed) == ("titration_step", 600_000, 520_000)
    assert "asked 600 mcg/day, at most 520 mcg/day" in str(e)
    assert pump.program() == program
    after = pump.status()
    assert (after.mode, after.daily_dose_mcg, after.rate_ul_day, after.dry_at) == (
        status.mode, status.daily_dose_mcg, status.rate_ul_day, status.dry_at)
    start = rig.measure()["delivered_nl"]
    rig.advance(DAY_MS)
    assert rig.measure()["delivered_nl"] - start == 800_000  # still 400 mcg/day at 500 mcg/mL
    last = pump.events()[-1]
    assert (last.event, last.rule, last.type, last.a, last.b, last.c) == (
        "refused", "titration_step", m.SET_CONTINUOUS, m.ERR_LIMIT, 600_000, 520_000)
    assert pump.set_continuous("520").daily_dose_mcg == 520  # the allowed value is allowed


def test_no_increase_in_the_first_24_hours(pump: PumpClient, rig: Rig) -> None:
    prepare(pump)
    pump.set_continuous("400")
    rig.advance(HOUR_MS)
    with pytest.raises(errors.TooSoon) as refused:
        pump.set_continuous("450")
    e = refused.value
    assert (e.rule, e.requested, e.allowed, e.wait_s) == ("first_24h", 450_000, 400_000, 82_800)
    assert "allowed in 23 h" in str(e)
    rig.advance(e.wait_s * 1000)
    assert pump.set_continuous("450").daily_dose_mcg == 450


def test_confirmations(pump: PumpClient) -> None:
    prepare(pump, ceiling_mcg_day="2000")
    with pytest.raises(errors.NotConfirmed) as refused:
        pump.set_continuous("1200")
    assert (refused.value.rule, refused.value.requested, refused.value.allowed) == (
        "high_dose", 1_200_000, 1_000_000)
    assert pump.status().mode == "stopped"
    assert pump.set_continuous("1200", confirm="high_dose").daily_dose_mcg == 1200
    with pytest.raises(errors.NotConfirmed) as refused:
        pump.set_continuous("600")  # -50 % at once
    assert refused.value.rule == "large_decrease" and refused.value.allowed == 960_000
    assert pump.set_continuous("600", ["large_decrease"]).daily_dose_mcg == 600


def test_refill_refusals_leave_the_reservoir_as_it_was(pump: PumpClient) -> None:
    pump.set_profile("spinal", 40, "titration", "1500")
    with pytest.raises(errors.NotConfirmed) as refused:
        pump.refill("20", 300)  # not a labelled concentration
    assert refused.value.rule == "custom_concentration"
    s = pump.status()
    assert (s.sessions, s.concentration_mcg_ml, s.reservoir_ul) == ((), 0, 0)  # aborted
    with pytest.raises(errors.NotConfirmed) as refused:
        pump.refill("20", 500, concentration_again=1000)
    assert (refused.value.rule, refused.value.requested, refused.value.allowed) == (
        "concentration", 500, 1000)
    with pytest.raises(errors.Limit) as refused:
        pump.refill("25", 500)
    assert (refused.value.rule, refused.value.requested, refused.value.allowed) == (
        "overfill", 25_000_000, 20_000_000)
    assert "asked 25 mL, at most 20 mL" in str(refused.value)
    assert pump.refill("20", 300, confirm=["custom_concentration"]).concentration_mcg_ml == 300
    with pytest.raises(errors.NotConfirmed) as refused:
        pump.refill("20", 300, drained_ml="5", confirm=["custom_concentration"])  # 20 mL in it
    assert "drained 5 mL, expected 20 mL" in str(refused.value)
    done = pump.refill("20", 300, drained_ml="5",
                       confirm=["custom_concentration", "drain_mismatch"])
    assert done.expected_ml == 20 and pump.status().sessions == ()


def test_flex_taper_suspend_resume(pump: PumpClient) -> None:
    prepare(pump)
    p = pump.set_flex([("00:00", "300"), (480, "450")], utc_offset_min=-300)
    assert p.mode == "flex" and [s.start for s in p.steps] == ["00:00", "08:00"]
    assert p.utc_offset_min == -300 and p.daily_dose_mcg == 400  # 300 x 8 h + 450 x 16 h
    held = pump.suspend("surgery_or_maintenance", confirm=True)
    assert held.reason == "surgery_or_maintenance" and held.rate_ul_day == 48
    with pytest.raises(errors.NotConfirmed):
        pump.suspend()
    assert pump.resume() == p
    taper = pump.set_taper("200", 14)
    assert (taper.start_mcg_day, taper.target_mcg_day, taper.days) == (400, 200, 14)
    assert taper.step_mcg_day == Decimal("14.286")
    assert pump.status().mode == "taper"


def test_boluses(sim: SimProcess, pump: PumpClient, rig: Rig) -> None:
    prepare(pump, ceiling_mcg_day="1000", catheter_ml="0.2")
    pump.set_continuous("400")
    primed = pump.prime(120)
    assert (primed.kind, primed.dose_mcg, primed.volume_ul) == ("priming", 100, 200)
    with pytest.raises(errors.InvalidState):
        pump.bolus("50")  # one at a time
    rig.advance(HOUR_MS)
    with pytest.raises(errors.Limit) as refused:
        pump.bolus("600", 600)  # 400 + 100 primed + 600 > 1000 mcg in 24 h
    assert (refused.value.rule, refused.value.requested) == ("bolus_ceiling", 600_000)
    # The pump reckons 24 h windows by the quarter hour, rounding outward: it may allow up to
    # 15 min of the program less than 500 mcg, never more.
    assert 500_000 - 400_000 * 900 // 86_400 <= refused.value.allowed <= 500_000
    pb = pump.set_patient_bolus("25", duration_s=300, lockout_s=3600, max_per_day=4)
    assert (pb.dose_mcg, pb.lockout_s, pb.max_per_day, pb.used_24h) == (25, 3600, 4, 0)
    with sim.client(role="patient") as patient:
        given = patient.patient_bolus()
        assert (given.kind, given.dose_mcg) == ("patient", 25)
        rig.advance(600_000)
        with pytest.raises(errors.TooSoon) as refused:
            patient.patient_bolus()
        assert refused.value.rule == "patient_bolus_lockout"
        assert refused.value.wait_s == 3000 and "allowed in 50 min" in str(refused.value)
        assert patient.patient_bolus_state().used_24h == 1
        with pytest.raises(errors.WrongRole):
            patient.bolus("50")


def test_screening(pump: PumpClient, rig: Rig) -> None:
    pump.set_profile("spinal", 40, "screening", "1500")
    pump.refill("20", 50)  # the screening strength
    with pytest.raises(errors.InvalidState) as refused:
        pump.set_continuous("100")
    assert refused.value.rule == "phase" and "phase screening, needs titration" in str(
        refused.value)
    first = pump.screen("50", 60)
    assert (first.kind, first.dose_mcg) == ("screening", 50)
    with pytest.raises(errors.TooSoon) as refused:
        pump.screen("75", 60)
    assert refused.value.rule == "screening_interval" and refused.value.wait_s == 86_400
    rig.advance(DAY_MS)
    with pytest.raises(errors.Limit) as refused:
        pump.screen("100", 60)  # the ladder: 75 comes next
    assert (refused.value.rule, refused.value.allowed) == ("screening_dose", 75_000)
    history = pump.screening()
    assert history.next_dose_mcg == 75 and [g.dose_mcg for g in history.given] == [50]


def test_alarms_arrive_as_events_and_are_acknowledged(pump: PumpClient, rig: Rig) -> None:
    prepare(pump, fill_ml="2")  # at the low-reservoir level
    rig.advance(1000)
    event = pump.next_event(2.0)
    assert isinstance(event, AlarmEvent)
    assert (event.alarm, event.active, event.alarms) == ("low_reservoir", True,
                                                         ("low_reservoir",))
    assert pump.status().alarms == ("low_reservoir",)
    state = pump.alarm_ack("low_reservoir")
    assert state.alarms == ("low_reservoir",) and state.unacknowledged == ()
    silenced = pump.alarm_silence(30)
    assert silenced.silenced_until is not None
    assert (silenced.silenced_until - pump.status().clock).total_seconds() == 30 * 60
    until = pump.cap_begin(300)
    assert pump.status().sessions == ("cap",)
    assert (until - pump.status().clock).total_seconds() == 300
    pump.cap_end()
    assert pump.status().sessions == ()
    assert [e.event for e in pump.events()][-5:] == [
        "alarm", "alarm_ack", "alarm_silence", "cap_begin", "cap_end"]


class RigPaced(PumpClient):
    """A client of a paused simulator: what it waits for is pump time, which the rig runs."""

    def __init__(self, url: str, rig: Rig, **kw: Any):
        super().__init__(url, **kw)
        self.rig = rig
        self.paused: list[float] = []

    def _pause(self, seconds: float) -> None:
        self.paused.append(seconds)
        self.rig.advance(int(seconds * 1000))


def test_a_host_opening_a_session_waits_out_a_short_busy(sim: SimProcess, pump: PumpClient,
                                                         rig: Rig) -> None:
    prepare(pump)
    for _ in range(guard.CHALLENGE_BURST):  # sessions opened and not used, to the limit
        pump.request("CHALLENGE")
    with pytest.raises(errors.Busy) as refused:
        pump.request("CHALLENGE")  # asked for as such: answered as it comes
    wait = refused.value.wait_s
    assert 0 < wait <= BUSY_RETRY_MAX_S
    patient = RigPaced(sim.url, rig, keys=sim.keys(), role="patient")
    with patient:
        assert patient.status().mode == "stopped"  # BUSY, waited out, served
        assert patient.paused == [wait + BUSY_MARGIN_S]
    assert pump.status().mode == "stopped"  # the clinician's session went on


def test_over_a_pty_that_goes_away_the_client_ends_in_port_lost() -> None:
    # The client reads and writes a device file itself (not through pyserial's read/write):
    # answers still come whole, and a pty that goes away (the board drops off USB and does
    # not come back) is still a PortLost, not a traceback.
    with SimProcess("0") as sim:
        pump = PumpClient(sim.pty, keys=sim.keys(), timeout=1.0, reconnect_s=0.3).open()
        for _ in range(20):
            assert pump.status().phase == "unset"
    with pytest.raises(errors.PortLost):
        pump.status()
    pump.close()
