"""The firmware's link, byte by byte, on the simulator: every bad frame gets its typed error,
the link resynchronises after garbage, and a retried request is answered, not re-run."""

from __future__ import annotations

import binascii
import socket
import struct
from collections.abc import Iterator

import pytest
from cobs import cobs

from hil.launcher import SimProcess
from hil.rig import SimRig
from host.client import Telemetry
from protocol import host_codec as hc
from protocol import messages as m
from protocol.host_codec import Message


class Wire:
    """A raw connection to the pump: send bytes, read whole frames. With keys, requests that
    need a role are signed (clinician) in a session opened on first need."""

    def __init__(self, url: str, role_keys: dict[str, bytes] | None = None):
        host, port = url.removeprefix("socket://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.buf = b""
        self.keys = role_keys or {}
        self.signer: hc.Signer | None = None
        self.counter = 0

    def open_session(self, role: str = "clinician") -> hc.Signer:
        r = self.ask("CHALLENGE", 60000)
        self.signer = hc.Signer(r["session"], r["nonce"], role, self.keys[role])
        self.counter = 0
        return self.signer

    def signed(self, name: str, seq: int, fields: dict | None = None) -> bytes:
        """Wire bytes of a request signed with the next counter of the session."""
        signer = self.signer or self.open_session()
        self.counter += 1
        return hc.encode(name, seq, fields, signer=signer, counter=self.counter)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def raw_reply(self) -> bytes:
        while b"\x00" not in self.buf:
            chunk = self.sock.recv(4096)
            assert chunk, "pump closed the link"
            self.buf += chunk
        block, self.buf = self.buf.split(b"\x00", 1)
        return block + b"\x00"

    def reply(self) -> Message:
        return hc.decode(self.raw_reply())

    def ask(self, name: str, seq: int, fields: dict | None = None) -> Message:
        needs_role = m.ACCESS[hc.type_of(name)] != m.OPEN
        self.send(self.signed(name, seq, fields) if needs_role else hc.encode(name, seq, fields))
        return self.reply()

    def set_up(self, seq: int = 50000) -> None:
        """A profile and a full reservoir at 500 mcg/mL: the pump may be programmed."""
        assert self.ask("SET_PROFILE", seq, PROFILE).type == m.PROFILE_OK
        assert self.ask("REFILL_BEGIN", seq + 1).type == m.REFILL_OPEN
        assert self.ask("REFILL_COMMIT", seq + 2, REFILL).type == m.REFILL_DONE


PROFILE = {"origin": "spinal", "age_years": 40, "phase": "titration", "ceiling_ng": 1_500_000,
           "catheter_nl": 200_000, "infusion_start_s": 0, "brain_injury_s": 0}
REFILL = {"drained_nl": 0, "fill_nl": 20_000_000, "drug": "baclofen", "concentration": 500,
          "concentration_again": 500, "confirm": []}
SET_400 = {"daily_dose_ng": 400_000, "confirm": []}
LOG_PAGE = m.LOG_PAGE


@pytest.fixture
def wire(sim: SimProcess) -> Iterator[Wire]:
    w = Wire(sim.url, sim.keys())
    yield w
    w.sock.close()


def framed(body: bytes) -> bytes:
    """COBS-wrap header+payload with a correct CRC."""
    return cobs.encode(body + struct.pack("<I", binascii.crc32(body))) + b"\x00"


def header(mtype: int, seq: int, version: int = m.VERSION, flags: int = 0) -> bytes:
    return struct.pack(m.HEADER_FORMAT, version, mtype, flags, seq)


def assert_error(msg: Message, code: int, seq: int) -> None:
    assert msg.type == m.ERROR, msg
    assert (msg["code"], msg.seq) == (code, seq), msg


BAD_FRAMES = [
    # (what, wire bytes, error code, seq the answer carries)
    ("too short", cobs.encode(b"\x01\x02\x03") + b"\x00", m.ERR_TRUNCATED, 0),
    ("bad CRC", cobs.encode(header(m.GET_STATUS, 7) + b"\0\0\0\0") + b"\x00", m.ERR_BAD_CRC, 0),
    ("bad COBS", b"\x05\x01\x00", m.ERR_BAD_COBS, 0),
    ("oversize", bytes([0xFF] + [0x11] * 254) * 2 + b"\x00", m.ERR_OVERSIZE, 0),
    ("version 2", framed(header(m.GET_STATUS, 8, version=2)), m.ERR_BAD_VERSION, 8),
    ("unknown flags", framed(header(m.GET_STATUS, 9, flags=0x80)), m.ERR_BAD_FLAGS, 9),
    ("unknown type", framed(header(0x42, 10)), m.ERR_UNKNOWN_TYPE, 10),
    ("a response type", framed(header(m.STATUS, 11)), m.ERR_UNKNOWN_TYPE, 11),
    ("short payload", framed(header(m.SET_CONTINUOUS, 12) + b"\x01"), m.ERR_BAD_LENGTH, 12),
    ("dose too high", framed(header(m.SET_CONTINUOUS, 13) + struct.pack("<IB", 10**9, 0)),
     m.ERR_OUT_OF_RANGE, 13),
    ("unknown confirmation", framed(header(m.SET_CONTINUOUS, 16)
                                    + struct.pack("<IB", 400_000, 0x10)), m.ERR_OUT_OF_RANGE, 16),
    ("log page too long", framed(header(m.READ_LOG, 17) + struct.pack("<IB", 0, 9)),
     m.ERR_OUT_OF_RANGE, 17),
    ("flex list too long", framed(header(m.SET_FLEX, 18) + struct.pack("<BhB", 0, 0, 25)
                                  + struct.pack("<HI", 0, 400_000) * 25), m.ERR_OUT_OF_RANGE,
     18),
    ("unsigned stop", framed(header(m.STOP, 14) + struct.pack("<BI", 1, m.STOP_CONFIRM)),
     m.ERR_AUTH_REQUIRED, 14),
    ("signed, no session", framed(header(m.GET_STATUS, 15, flags=m.FLAG_AUTH)
                                  + struct.pack(m.AUTH_FORMAT, 3, 2, 1) + bytes(m.TAG_SIZE)),
     m.ERR_NO_SESSION, 15),
]


@pytest.mark.parametrize(
    ("what", "data", "code", "seq"), BAD_FRAMES, ids=[b[0] for b in BAD_FRAMES]
)
def test_bad_frame_gets_typed_error_and_link_goes_on(
    wire: Wire, what: str, data: bytes, code: int, seq: int
) -> None:
    wire.send(data)
    assert_error(wire.reply(), code, seq)
    status = wire.ask("GET_STATUS", 20)
    assert status.type == m.STATUS and status.seq == 20
    # frame_errors counts what the codec could not read; the guard's refusals are counted
    # by GET_COUNTERS.
    assert status["frame_errors"] == (0 if code in (m.ERR_AUTH_REQUIRED, m.ERR_NO_SESSION) else 1)
    assert status["mode"] == "stopped"  # nothing bad changed the therapy


def test_version_error_names_the_supported_version(wire: Wire) -> None:
    wire.send(framed(header(m.GET_INFO, 3, version=9)))
    assert "supported: 1" in wire.reply()["reason"]


def test_garbage_between_frames_is_skipped(wire: Wire) -> None:
    wire.send(b"\x00\x00line noise \xff\xfe\x00" + hc.encode("GET_INFO", 5))
    first = wire.reply()
    assert first.type == m.ERROR and first.seq == 0
    info = wire.reply()
    assert info.type == m.INFO and info.seq == 5


def test_retry_with_same_seq_is_answered_not_rerun(sim: SimProcess, wire: Wire) -> None:
    rig = SimRig(sim.control)
    wire.set_up()
    request = wire.signed("SET_CONTINUOUS", 77, SET_400)
    wire.send(request)
    first = wire.raw_reply()
    assert hc.decode(first).type == m.CONTINUOUS_OK
    rig.advance(20_000)  # steps fall every 27 s: re-running would restart that interval
    wire.send(request)
    assert wire.raw_reply() == first
    rig.advance(10_000)
    assert rig.plant()["steps"] == 1  # 30 s after the first and only start
    # The same seq with different content is a new request, and runs.
    again = wire.ask("SET_CONTINUOUS", 77, {"daily_dose_ng": 350_000, "confirm": []})
    assert again.type == m.CONTINUOUS_OK and again["daily_dose_ng"] == 350_000
    rig.close()


def test_a_retried_refusal_is_answered_from_the_cache_too(wire: Wire) -> None:
    wire.set_up()
    assert wire.ask("SET_CONTINUOUS", 1, SET_400).type == m.CONTINUOUS_OK
    request = wire.signed("SET_CONTINUOUS", 2, {"daily_dose_ng": 450_000, "confirm": []})
    wire.send(request)
    first = wire.raw_reply()
    wire.send(request)
    assert wire.raw_reply() == first  # not run again: logged once
    counters = wire.ask("GET_COUNTERS", 3)
    assert counters["too_soon"] == 1


def test_repl_only_when_stopped(sim: SimProcess, wire: Wire) -> None:
    wire.set_up()
    assert wire.ask("SET_CONTINUOUS", 1, SET_400).type == m.CONTINUOUS_OK
    assert_error(wire.ask("ENTER_REPL", 2, {"confirm": m.REPL_CONFIRM}), m.ERR_INVALID_STATE, 2)
    assert_error(wire.ask("ENTER_REPL", 3, {"confirm": 0}), m.ERR_NOT_CONFIRMED, 3)
    wire.ask("STOP", 4, {"reason": "surgery_or_maintenance", "confirm": m.STOP_CONFIRM})
    assert wire.ask("ENTER_REPL", 5, {"confirm": m.REPL_CONFIRM}).type == m.REPL_OK
    # The binary protocol is off now: a request goes unanswered.
    wire.sock.settimeout(0.5)
    wire.send(hc.encode("GET_STATUS", 6))
    with pytest.raises(TimeoutError):
        wire.raw_reply()


def test_a_read_is_answered_afresh_even_with_the_same_seq(sim: SimProcess, wire: Wire) -> None:
    rig = SimRig(sim.control)
    first = wire.ask("GET_STATUS", 9)
    rig.advance(5_000)
    again = wire.ask("GET_STATUS", 9)  # e.g. a new pumpctl run that drew the same number
    assert again["uptime_s"] == first["uptime_s"] + 5
    rig.close()


# --- authentication: replay and roles -------------------------------------------------------


STOP = {"reason": "clinician_decision", "confirm": m.STOP_CONFIRM}


def test_replay_in_the_same_session_is_refused(wire: Wire) -> None:
    wire.set_up()
    old = wire.signed("SET_CONTINUOUS", 1, SET_400)
    wire.send(old)
    assert wire.reply().type == m.CONTINUOUS_OK
    assert wire.ask("STOP", 2, STOP).type == m.STOPPED
    wire.send(old)  # captured earlier, replayed after a later command
    assert_error(wire.reply(), m.ERR_REPLAY, 1)
    assert wire.ask("GET_STATUS", 3)["mode"] == "stopped"


def test_replay_in_a_later_session_is_refused(sim: SimProcess, wire: Wire) -> None:
    old = wire.signed("SET_CONTINUOUS", 1, SET_400)  # session opened, frame never sent
    for _ in range(m.SESSIONS):  # other hosts come and go: every slot gets a new nonce
        Wire(sim.url, sim.keys()).open_session()
    wire.send(old)
    assert_error(wire.reply(), m.ERR_BAD_TAG, 1)


def test_replay_after_a_reboot_is_refused(sim: SimProcess, wire: Wire) -> None:
    old = wire.signed("SET_CONTINUOUS", 1, SET_400)
    rig = SimRig(sim.control)
    rig.reset()
    rig.advance(100)
    rig.close()
    wire.send(old)
    assert_error(wire.reply(), m.ERR_NO_SESSION, 1)


def test_a_patient_cannot_program(sim: SimProcess) -> None:
    w = Wire(sim.url, sim.keys())
    w.open_session("patient")
    assert_error(w.ask("SET_CONTINUOUS", 1, SET_400), m.ERR_WRONG_ROLE, 1)
    assert w.ask("GET_STATUS", 2)["mode"] == "stopped"  # but may read


def test_a_forged_tag_is_refused(wire: Wire) -> None:
    frame = bytearray(cobs.decode(wire.signed("SET_CONTINUOUS", 1, SET_400)[:-1]))
    frame[-m.CRC_SIZE - 1] ^= 0x01  # last byte of the tag
    body = bytes(frame[: -m.CRC_SIZE])
    wire.send(framed(body))
    assert_error(wire.reply(), m.ERR_BAD_TAG, 1)


def test_refusals_are_counted_and_logged(sim: SimProcess, wire: Wire) -> None:
    patient = Wire(sim.url, sim.keys())
    patient.open_session("patient")
    assert_error(patient.ask("SET_CONTINUOUS", 1, SET_400), m.ERR_WRONG_ROLE, 1)
    assert wire.ask("STOP", 2, STOP).type == m.STOPPED
    wire.send(hc.encode("STOP", 3, STOP, signer=wire.signer, counter=1))  # an old counter
    assert_error(wire.reply(), m.ERR_REPLAY, 3)
    wire.send(b"line noise\x00")  # unreadable: counted, not logged
    assert_error(wire.reply(), m.ERR_BAD_COBS, 0)
    counters = wire.ask("GET_COUNTERS", 4)
    assert (counters["wrong_role"], counters["replay"], counters["bad_cobs"]) == (1, 1, 1)
    page = wire.ask("READ_LOG", 5, {"number": 0, "count": m.LOG_PAGE_EVENTS})
    assert page.type == LOG_PAGE and (page["oldest"], page["total"]) == (0, 4)
    events = [(e["event"], e["role"], e["rule"], e["type"], e["a"]) for e in page["events"]]
    assert events == [
        ("boot", 0, "none", 0, 1),
        ("refused", m.ROLE_PATIENT, "none", m.SET_CONTINUOUS, m.ERR_WRONG_ROLE),
        ("stop", m.ROLE_CLINICIAN, "none", 0, 1),
        ("refused", m.ROLE_CLINICIAN, "none", m.STOP, m.ERR_REPLAY),
    ]


def test_the_log_is_read_in_pages(wire: Wire) -> None:
    for n in range(10):
        assert wire.ask("SET_TELEMETRY", 100 + n, {"period_s": 0}).type == m.TELEMETRY_OK
        wire.ask("STOP", 200 + n, STOP)  # 10 stops: 11 events with the boot
    first = wire.ask("READ_LOG", 1, {"number": 0, "count": 8})
    assert [e["number"] for e in first["events"]] == list(range(8)) and first["total"] == 11
    rest = wire.ask("READ_LOG", 2, {"number": 8, "count": 8})
    assert [e["number"] for e in rest["events"]] == [8, 9, 10]
    past = wire.ask("READ_LOG", 3, {"number": 11, "count": 1})
    assert past.type == LOG_PAGE and past["events"] == [] and past["total"] == 11


def test_a_clinical_refusal_names_its_rule_on_the_wire(wire: Wire) -> None:
    refused = wire.ask("SET_CONTINUOUS", 1, SET_400)
    assert_error(refused, m.ERR_INVALID_STATE, 1)
    assert (refused["request_type"], refused["rule"], refused["wait_s"]) == (
        m.SET_CONTINUOUS, "profile_required", 0)
    wire.set_up()
    refused = wire.ask("SET_CONTINUOUS", 2, {"daily_dose_ng": 1_600_000,
                                             "confirm": ["high_dose"]})
    assert_error(refused, m.ERR_LIMIT, 2)
    assert (refused["rule"], refused["requested"], refused["allowed"]) == (
        "hard_ceiling", 1_600_000, 1_500_000)
    assert wire.ask("SET_CONTINUOUS", 3, SET_400).type == m.CONTINUOUS_OK
    refused = wire.ask("SET_CONTINUOUS", 4, {"daily_dose_ng": 500_000, "confirm": []})
    assert_error(refused, m.ERR_TOO_SOON, 4)
    assert (refused["rule"], refused["wait_s"]) == ("first_24h", 86_400)


def test_telemetry_events_arrive_on_their_period(sim: SimProcess) -> None:
    rig = SimRig(sim.control)
    with sim.client(role="patient") as pump:
        pump.set_telemetry(60)
        first = pump.next_event(2.0)
        assert isinstance(first, Telemetry) and first.mode == "stopped"
        rig.advance(600_000)  # ten minutes: ten more, one a minute
        clocks = [first.clock]
        while (event := pump.next_event(0.5)) is not None:
            assert isinstance(event, Telemetry)
            clocks.append(event.clock)
        assert [(b - a).total_seconds() for a, b in zip(clocks, clocks[1:], strict=False)] == (
            [60] * 10)
        pump.set_telemetry(0)
        rig.advance(600_000)
        assert pump.next_event(0.3) is None
    rig.close()

