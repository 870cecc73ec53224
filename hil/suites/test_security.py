"""Authentication and replay over the link (DESIGN invariant 5; protocol/README.md,
Authentication): an unsigned command, a role sending what it may not, a forged or altered
frame, a captured frame sent again (in its session, in a new session, after a reboot), a
counter that does not rise. Each is refused with its typed error, counted and logged; the
therapy is as it was. Then brute force and session churn (firmware/core/guard.py): bad tags
lock their role out (LOCKED), sessions opened and not used are rate-limited (BUSY), and a
flood of CHALLENGEs ends no session in use. Frames are captured from what PumpClient sent,
or built and signed by hand (hil/suites/rawlink.py)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from firmware.core import guard
from hil.rig import Rig
from hil.suites import rawlink
from hil.suites.kit import prepare
from hil.suites.rawlink import RawClient, as_role, log_total, seq_of, state
from host import errors
from host.client import PumpClient
from protocol import host_codec
from protocol import messages as m
from protocol.host_codec import Signer


@pytest.fixture
def raw(pump_url: str, pump_keys: dict[str, bytes]) -> Iterator[RawClient]:
    """A clinician's client that keeps what it sent and can send raw frames."""
    with RawClient(pump_url, keys=pump_keys) as client:
        yield client


def running(raw: RawClient) -> None:
    """A pump delivering 400 mcg/day, patient boluses on: a forged command would show."""
    prepare(raw)
    raw.set_continuous("400")
    raw.set_patient_bolus("25", duration_s=300, lockout_s=3600, max_per_day=2)


def unproven_logged_lately(raw: RawClient) -> bool:
    """Whether a refusal anyone could have sent (no role) was logged in the last minute of
    this boot: the pump logs those at most once a minute (a flood must not push real events
    out of the log). On a board earlier tests may have sent some."""
    now = raw.status().clock
    events = raw.events()
    boot = max((i for i, e in enumerate(events) if e.event == "boot"), default=-1)
    times = [e.time for e in events[boot + 1 :] if e.event == "refused" and e.role == "none"]
    return bool(times) and 0 <= (now - times[-1]).total_seconds() < 60


def refused(raw: RawClient, send: Callable[[], Any], cls: type[errors.ProtocolError],
            mtype: int, role: str = "none") -> errors.ProtocolError:
    """send() is refused with cls for request mtype; nothing changed; the refusal is counted
    and logged, under `role` (none unless the tag proved who sent it: then at most once a
    minute)."""
    before = state(raw)
    quiet = role == "none" and unproven_logged_lately(raw)
    since = log_total(raw)
    counted = raw.counters()[host_codec.ERROR_NAMES[cls.code]]
    with pytest.raises(cls) as caught:
        send()
    e = caught.value
    assert (e.request_type, e.rule) == (mtype, None), str(e)
    assert state(raw) == before, "a refused frame changed the therapy"
    assert raw.counters()[host_codec.ERROR_NAMES[cls.code]] == counted + 1
    logged = [(ev.event, ev.type, ev.a, ev.role) for ev in raw.events(since)]
    assert logged == ([] if quiet else [("refused", mtype, cls.code, role)])
    return e


# -- no signature, wrong role ----------------------------------------------------------------

UNSIGNED = [
    pytest.param("SET_CONTINUOUS", {"daily_dose_ng": 350_000, "confirm": []}, id="program"),
    pytest.param("STOP", {"reason": "clinician_decision", "confirm": m.STOP_CONFIRM},
                 id="stop"),
    pytest.param("BOLUS", {"dose_ng": 50_000, "duration_s": 600}, id="bolus"),
    pytest.param("REFILL_BEGIN", {}, id="refill"),
    pytest.param("CAP_BEGIN", {"duration_s": 600}, id="cap"),
    pytest.param("GET_STATUS", {}, id="status-read"),
]


@pytest.mark.hil
@pytest.mark.parametrize(("name", "fields"), UNSIGNED)
def test_an_unsigned_request_is_refused(raw: RawClient, name: str,
                                        fields: dict[str, Any]) -> None:
    running(raw)
    seq = raw.seq()
    refused(raw, lambda: raw.call(rawlink.unsigned(name, seq, fields), seq),
            errors.AuthRequired, host_codec.MESSAGE_TYPES[name])
    seq = raw.seq()  # what is open to all still is
    assert raw.call(rawlink.unsigned("GET_INFO", seq), seq).name == "INFO"


ROLE_REFUSALS = [
    pytest.param("patient", m.SET_CONTINUOUS, lambda c: c.set_continuous("350"),
                 id="patient-programs"),
    pytest.param("patient", m.STOP, lambda c: c.stop(confirm=True), id="patient-stops"),
    pytest.param("patient", m.BOLUS, lambda c: c.bolus("50", 600), id="patient-bolus"),
    pytest.param("patient", m.REFILL_BEGIN, lambda c: c.refill_begin(), id="patient-refills"),
    pytest.param("patient", m.READ_LOG, lambda c: c.events(), id="patient-reads-log"),
    pytest.param("clinician", m.PATIENT_BOLUS, lambda c: c.patient_bolus(),
                 id="clinician-patient-bolus"),
    pytest.param("service", m.SET_CONTINUOUS, lambda c: c.set_continuous("350"),
                 id="service-programs"),
    pytest.param("service", m.PATIENT_BOLUS, lambda c: c.patient_bolus(),
                 id="service-patient-bolus"),
]


@pytest.mark.hil
@pytest.mark.parametrize(("role", "mtype", "send"), ROLE_REFUSALS)
def test_a_role_may_send_only_its_own_requests(
    raw: RawClient, pump_keys: dict[str, bytes], role: str, mtype: int,
    send: Callable[[PumpClient], Any]
) -> None:
    if role not in pump_keys:
        pytest.skip(f"the key file has no {role} key")
    running(raw)

    def as_other() -> None:
        if role == raw.role:
            send(raw)
            return
        with as_role(raw, role) as other:
            send(other)

    e = refused(raw, as_other, errors.WrongRole, mtype, role)  # the tag proved who it was
    assert role in e.reason


@pytest.mark.hil
def test_a_session_belongs_to_the_role_that_first_used_it(raw: RawClient) -> None:
    running(raw)
    s = raw.session("clinician")
    seq = raw.seq()
    status = rawlink.signed("GET_STATUS", seq, None, s, 1)
    assert raw.call(status, seq).name == "STATUS"
    patient = Signer(s.session, s.nonce, "patient", raw.keys["patient"])
    seq = raw.seq()
    e = refused(raw, lambda: raw.call(rawlink.signed("PATIENT_BOLUS", seq, None, patient, 2),
                                      seq), errors.WrongRole, m.PATIENT_BOLUS, "patient")
    assert "belongs to clinician" in e.reason


# -- forged and altered frames ---------------------------------------------------------------

# Offsets in a signed frame without its CRC, from its end: the trailer is session, role,
# counter (4 bytes), tag (16 bytes).
TAG_END, COUNTER, ROLE = -1, -20, -21


def program(signer: Signer, seq: int, dose: str, counter: int) -> bytes:
    """SET_CONTINUOUS of dose mcg/day, signed."""
    return rawlink.signed("SET_CONTINUOUS", seq, {"daily_dose_ng": int(dose) * 1000,
                                                  "confirm": []}, signer, counter)


def program_350(signer: Signer, seq: int) -> bytes:
    return program(signer, seq, "350", 1)


def forge(raw: RawClient, how: str) -> bytes:
    """A SET_CONTINUOUS of 350 mcg/day (a 12.5 % cut: it would run) forged `how`."""
    s = raw.session("clinician")
    seq = raw.seq()
    payload = host_codec.build_payload(m.SET_CONTINUOUS, {"daily_dose_ng": 350_000,
                                                          "confirm": []})
    key = raw.keys["clinician"]
    if how == "tag-bit-flipped":
        return rawlink.tamper(program_350(s, seq), TAG_END)
    if how == "dose-changed-after-signing":
        return rawlink.tamper(program_350(s, seq), m.HEADER_SIZE + 2, 0x02)  # more
    if how == "sequence-number-changed":
        return rawlink.tamper(program_350(s, seq), 3)
    if how == "counter-changed":
        return rawlink.tamper(program_350(s, seq), COUNTER, 0x10)
    if how == "patient-frame-relabelled-clinician":
        patient = Signer(s.session, s.nonce, "patient", raw.keys["patient"])
        return rawlink.tamper(program_350(patient, seq), ROLE,
                              m.ROLE_PATIENT ^ m.ROLE_CLINICIAN)
    if how == "unknown-key":
        return program_350(Signer(s.session, s.nonce, "clinician",
                                       secrets.token_bytes(m.KEY_SIZE)), seq)
    if how == "patient-key-as-clinician":
        return program_350(Signer(s.session, s.nonce, "clinician", raw.keys["patient"]),
                           seq)
    if how == "another-sessions-nonce":
        other = raw.session("clinician")
        return program_350(Signer(s.session, other.nonce, "clinician", key), seq)
    if how == "no-such-session":
        return rawlink.sign_raw(m.SET_CONTINUOUS, seq, payload, session=m.SESSIONS + 3,
                                role=m.ROLE_CLINICIAN, counter=1, key=key, nonce=s.nonce)
    if how == "role-without-a-key":
        return rawlink.sign_raw(m.SET_CONTINUOUS, seq, payload, session=s.session, role=0,
                                counter=1, key=key, nonce=s.nonce)
    raise ValueError(how)


@pytest.mark.hil
@pytest.mark.parametrize(("how", "cls"), [
    ("tag-bit-flipped", errors.BadTag),
    ("dose-changed-after-signing", errors.BadTag),
    ("sequence-number-changed", errors.BadTag),
    ("counter-changed", errors.BadTag),
    ("patient-frame-relabelled-clinician", errors.BadTag),
    ("unknown-key", errors.BadTag),
    ("patient-key-as-clinician", errors.BadTag),
    ("another-sessions-nonce", errors.BadTag),
    ("no-such-session", errors.NoSession),
    ("role-without-a-key", errors.NoKey),
])
def test_a_forged_or_altered_frame_is_refused(raw: RawClient, how: str,
                                              cls: type[errors.ProtocolError]) -> None:
    running(raw)
    forged = forge(raw, how)
    refused(raw, lambda: raw.call(forged, seq_of(forged)), cls, m.SET_CONTINUOUS)
    assert raw.program().daily_dose_mcg == 400


# -- replays ---------------------------------------------------------------------------------


def captured(raw: RawClient, dose: str) -> bytes:
    """Program dose (mcg/day) and return the frame PumpClient sent for it."""
    assert raw.set_continuous(dose).daily_dose_mcg == int(dose)
    return raw.sent[-1]


@pytest.mark.hil
def test_the_last_command_sent_again_is_answered_not_run_again(raw: RawClient) -> None:
    prepare(raw)
    frame = captured(raw, "400")
    before, since = state(raw), log_total(raw)
    again = raw.exchange(frame, seq_of(frame))  # a host's retry of a lost exchange
    assert (again.name, again["daily_dose_ng"]) == ("CONTINUOUS_OK", 400_000)
    assert state(raw) == before and log_total(raw) == since, "it ran twice"


@pytest.mark.hil
def test_an_earlier_frame_replayed_in_its_session_is_refused(raw: RawClient) -> None:
    prepare(raw)
    first = captured(raw, "400")
    captured(raw, "380")
    refused(raw, lambda: raw.call(first, seq_of(first)), errors.Replay, m.SET_CONTINUOUS,
            "clinician")
    assert raw.program().daily_dose_mcg == 380


@pytest.mark.hil
def test_a_frame_replayed_after_a_new_challenge_is_refused(raw: RawClient) -> None:
    prepare(raw)
    first = captured(raw, "400")
    last = captured(raw, "380")
    slot = rawlink.unwire(first)[-m.CRC_SIZE - m.AUTH_SIZE]
    raw.session("clinician")  # a new session: the old one is still open, its counter on
    refused(raw, lambda: raw.call(first, seq_of(first)), errors.Replay, m.SET_CONTINUOUS,
            "clinician")
    # Other clinician hosts open sessions and use them: the old one is stale (its role used
    # a later one), and a CHALLENGE takes its slot once no slot is free or unused.
    for counter in range(1, 2 * m.SESSIONS):
        other = raw.session("clinician")
        if other.session == slot:
            break
        seq = raw.seq()
        assert raw.call(rawlink.signed("GET_STATUS", seq, None, other, counter), seq)
    else:
        pytest.fail(f"{2 * m.SESSIONS} new sessions and none took slot {slot}")
    raw.new_session()  # this client's own session went with it
    refused(raw, lambda: raw.call(first, seq_of(first)), errors.BadTag, m.SET_CONTINUOUS)
    before, since = state(raw), log_total(raw)
    with pytest.raises(errors.BadTag):  # its cached answer went with the session
        raw.call(last, seq_of(last))
    assert state(raw) == before and log_total(raw) == since  # (logged at most once a minute)
    assert raw.program().daily_dose_mcg == 380


@pytest.mark.hil
@pytest.mark.rig("reset")
def test_a_frame_replayed_after_a_reboot_is_refused(raw: RawClient, rig: Rig) -> None:
    prepare(raw)
    first = captured(raw, "400")
    last = captured(raw, "380")
    before = state(raw)
    rig.reset()
    for frame in (last, first):  # no session survives a reboot; nor the retry cache
        with pytest.raises(errors.NoSession) as caught:
            raw.call(frame, seq_of(frame))
        assert caught.value.request_type == m.SET_CONTINUOUS
    raw.new_session()  # (it would open a new one by itself, once refused NO_SESSION)
    assert state(raw) == before, "the reboot resumed the program; the replays did nothing"
    # Anyone can send these: they are counted, and logged without a role once a minute.
    assert raw.counters()["NO_SESSION"] == 2
    events = raw.events()
    boot = max(i for i, e in enumerate(events) if e.event == "boot")
    assert [(e.event, e.type, e.a, e.role) for e in events[boot + 1 :]] == [
        ("refused", m.SET_CONTINUOUS, m.ERR_NO_SESSION, "none")]
    # Sessions opened after the reboot take the old slots with new nonces.
    with pytest.raises((errors.BadTag, errors.NoSession)):
        raw.call(first, seq_of(first))
    assert raw.program().daily_dose_mcg == 380


@pytest.mark.hil
def test_a_counter_that_does_not_rise_is_refused(raw: RawClient) -> None:
    prepare(raw)
    raw.set_continuous("400")
    s = raw.session("clinician")
    early_seq, late_seq = raw.seq(), raw.seq()
    early = program(s, early_seq, "390", 5)
    late = program(s, late_seq, "380", 6)
    assert raw.call(late, late_seq)["daily_dose_ng"] == 380_000
    refused(raw, lambda: raw.call(early, early_seq), errors.Replay, m.SET_CONTINUOUS,
            "clinician")  # sent before the later one, arriving after it: reordered
    seq = raw.seq()
    refused(raw, lambda: raw.call(program(s, seq, "370", 6), seq), errors.Replay,
            m.SET_CONTINUOUS, "clinician")  # the same counter, another command
    # The last command's sequence number on a new command (a new counter): it runs, the
    # retry cache (which answers a repeat of the same frame) does not answer it.
    reused = program(s, late_seq, "370", 7)
    assert raw.call(reused, late_seq)["daily_dose_ng"] == 370_000
    assert raw.program().daily_dose_mcg == 370


def challenges(raw: RawClient) -> int:
    """CHALLENGEs this client has sent (its own sessions and raw ones)."""
    return sum(rawlink.unwire(f)[1] == m.CHALLENGE for f in raw.sent)


@pytest.mark.hil
def test_a_client_whose_session_other_hosts_took_over_carries_on(raw: RawClient) -> None:
    prepare(raw)
    slot = rawlink.unwire(raw.sent[-1])[-m.CRC_SIZE - m.AUTH_SIZE]
    # Other clinician hosts (pumpctl runs, a second tester) open sessions and use them, and
    # new CHALLENGEs take the slot of this client's session, stale now.
    for counter in range(1, 2 * m.SESSIONS):
        other = raw.session("clinician")
        if other.session == slot:
            break
        seq = raw.seq()
        assert raw.call(rawlink.signed("GET_STATUS", seq, None, other, counter), seq)
    else:
        pytest.fail(f"{2 * m.SESSIONS} new sessions and none took slot {slot}")
    opened = challenges(raw)
    assert raw.status().mode == "stopped"  # refused BAD_TAG unrun, sent again in a new one
    assert challenges(raw) == opened + 1


# -- brute force and session churn -----------------------------------------------------------


@pytest.mark.hil
@pytest.mark.rig("time_control")
def test_forged_frames_lock_their_role_out_and_the_others_carry_on(
    raw: RawClient, rig: Rig, pump_keys: dict[str, bytes]
) -> None:
    for role in ("patient", "service"):
        if role not in pump_keys:
            pytest.skip(f"the key file has no {role} key")
    running(raw)
    since = log_total(raw)
    locked = raw.counters()["LOCKED"]
    s = raw.session("clinician")
    forger = Signer(s.session, s.nonce, "clinician", secrets.token_bytes(m.KEY_SIZE))
    for _ in range(guard.FAIL_LIMIT):  # a guesser claiming the clinician's role
        seq = raw.seq()
        with pytest.raises(errors.BadTag):
            raw.call(program_350(forger, seq), seq)
    seq = raw.seq()
    with pytest.raises(errors.Locked) as caught:
        raw.call(program_350(forger, seq), seq)
    wait = caught.value.wait_s
    assert 0 < wait <= guard.LOCK_MAX_S and caught.value.request_type == m.SET_CONTINUOUS
    # The clinician's own key too, in its own session: raised at once, never retried.
    sent = len(raw.sent)
    with pytest.raises(errors.Locked) as caught:
        raw.status()
    assert 0 < caught.value.wait_s <= wait and len(raw.sent) == sent + 1
    # The patient and service carry on; the lockout is logged once, its refusals counted.
    with as_role(raw, "patient") as patient:
        assert patient.status().daily_dose_mcg == 400
        assert patient.patient_bolus().kind == "patient"
    with as_role(raw, "service") as service:
        events = service.events(since)
        assert service.counters()["LOCKED"] == locked + 2
    lockouts = [(e.type, e.a, e.role) for e in events if e.event == "lockout"]
    assert lockouts == [(m.SET_CONTINUOUS, m.ROLE_CLINICIAN, "none")]
    lockout = next(e for e in events if e.event == "lockout")
    assert lockout.b >= wait and lockout.c >= 1
    assert not [e for e in events if e.event == "refused" and e.a == m.ERR_LOCKED]
    rig.advance(wait * 1000)  # pump time: the lockout is over
    assert raw.status().daily_dose_mcg == 400  # in the session it had all along
    assert raw.set_continuous("380").daily_dose_mcg == 380


@pytest.mark.hil
@pytest.mark.rig("time_control")
def test_unused_challenges_are_busy_past_the_limit_and_end_no_session(
    raw: RawClient, rig: Rig
) -> None:
    running(raw)  # the clinician's session: used, it holds no token
    since = log_total(raw)
    busy = raw.counters()["BUSY"]
    opened = challenges(raw)
    mine = rawlink.unwire(raw.sent[-1])[-m.CRC_SIZE - m.AUTH_SIZE]  # its session's slot
    slots = [raw.request("CHALLENGE")["session"] for _ in range(guard.CHALLENGE_BURST)]
    assert mine not in slots, f"the flood took its slot {mine}: {slots}"
    waits = []
    for _ in range(3):
        with pytest.raises(errors.Busy) as caught:
            raw.request("CHALLENGE")
        assert caught.value.request_type == m.CHALLENGE
        waits.append(caught.value.wait_s)
    assert 0 < waits[0] <= guard.CHALLENGE_S and waits == [waits[0]] * 3, waits
    # The clinician's session goes on through it all (no new CHALLENGE needed) ...
    assert raw.status().daily_dose_mcg == 400
    assert raw.counters()["BUSY"] == busy + 3
    events = raw.events(since)
    assert challenges(raw) == opened + guard.CHALLENGE_BURST + 3
    assert [(e.event, e.type, e.a, e.b, e.c) for e in events if e.event in (
        "lockout", "refused")] == [("lockout", m.CHALLENGE, guard.THROTTLED, waits[0], 0)]
    # ... and once the wait is over (pump time), a CHALLENGE is served again.
    rig.advance(waits[0] * 1000)
    assert raw.request("CHALLENGE")["session"] in range(m.SESSIONS)
    with pytest.raises(errors.Busy):  # one, each CHALLENGE_S
        raw.request("CHALLENGE")
