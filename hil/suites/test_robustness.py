"""The protocol over a bad line (protocol/README.md, Frames and Errors): garbage, frames cut
short, bad CRC or COBS, frames too long, types the pump does not know, bursts of random
bytes, a request dribbled a byte at a time, a client gone mid-frame. An unreadable frame gets a
typed ERROR with sequence number 0, a readable one the pump cannot take a typed ERROR with its
own; empty frames get nothing. After each the pump answers the next request, and delivery goes
on as programmed."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest

from hil.rig import Rig
from hil.suites import rawlink
from hil.suites.kit import prepare
from hil.suites.rawlink import RawClient, Reply, frame, typed, wire
from host import errors
from host.client import PumpClient
from protocol import host_codec
from protocol import messages as m
from protocol.host_codec import DecodeError, Message

HOUR_MS = 3_600_000
STEP_UL = Decimal("0.25")  # the reference rig's motor step


@pytest.fixture
def raw(pump_url: str, pump_keys: dict[str, bytes]) -> Iterator[RawClient]:
    with RawClient(pump_url, keys=pump_keys) as client:
        yield client


def error_replies(replies: list[Reply]) -> list[Message]:
    """The ERROR frames among what the pump sent (events may come too); it never sends an
    unreadable frame."""
    assert not [r for r in replies if isinstance(r, DecodeError)], replies
    return [r for r in replies if isinstance(r, Message) and r.type == m.ERROR]


def status_request(raw: RawClient) -> bytes:
    """A signed GET_STATUS, as PumpClient sends it (and answered: the pump is not waiting
    for the rest of a frame)."""
    raw.status()
    return raw.sent[-1]


def random_bytes(seed: int, n: int) -> bytes:
    rnd = random.Random(seed)
    return bytes(rnd.randrange(256) for _ in range(n))


# -- what the pump cannot read: ERROR with sequence number 0 ---------------------------------

INFO = frame(m.GET_INFO, 0x1234)

UNREADABLE: list[tuple[str, Callable[[RawClient], bytes], type[errors.ProtocolError]]] = [
    ("text", lambda raw: b"hello, pump\r\n\x00", errors.BadCobs),
    ("cobs-block-cut-short", lambda raw: b"\x05\x01\x00", errors.BadCobs),
    ("shorter-than-a-header", lambda raw: wire(INFO[:6]), errors.Truncated),
    ("bad-crc", lambda raw: rawlink.tamper(wire(INFO), 1, fix_crc=False), errors.BadCrc),
    ("request-cut-short",
     lambda raw: wire(rawlink.unwire(status_request(raw))[:-3]), errors.BadCrc),
    ("too-long-on-the-line", lambda raw: b"\x55" * 20_000 + b"\x00", errors.Oversize),
    ("too-long-after-cobs", lambda raw: wire(frame(m.GET_INFO, 7, bytes(250))),
     errors.Oversize),
]


@pytest.mark.hil
@pytest.mark.shared_pump
@pytest.mark.parametrize(("noise", "cls"), [(make, cls) for _, make, cls in UNREADABLE],
                         ids=[name for name, _, _ in UNREADABLE])
def test_an_unreadable_frame_gets_a_typed_error_and_the_pump_reads_on(
    raw: RawClient, noise: Callable[[RawClient], bytes], cls: type[errors.ProtocolError]
) -> None:
    data = noise(raw)
    before = raw.status().frame_errors
    counted = raw.counters()[host_codec.ERROR_NAMES[cls.code]]
    raw.send(data)
    got = error_replies(raw.replies(1))
    assert [(r.seq, type(typed(r))) for r in got] == [(m.SEQ_UNSOLICITED, cls)], got
    assert raw.status().frame_errors == before + 1
    assert raw.counters()[host_codec.ERROR_NAMES[cls.code]] == counted + 1
    assert raw.info().protocol_version == m.VERSION


# -- what the pump reads but cannot take: ERROR with the frame's sequence number ----------------

REFUSED: list[tuple[str, Callable[[int], bytes], type[errors.ProtocolError], int]] = [
    ("unknown-type", lambda seq: wire(frame(0x7E, seq)), errors.UnknownType, 0x7E),
    ("a-response-type", lambda seq: wire(frame(m.STATUS, seq)), errors.UnknownType, m.STATUS),
    ("an-event-type", lambda seq: wire(frame(m.TELEMETRY, seq)), errors.UnknownType,
     m.TELEMETRY),
    ("version-2", lambda seq: wire(frame(m.GET_INFO, seq, version=2)), errors.BadVersion,
     m.GET_INFO),
    ("unknown-flag", lambda seq: wire(frame(m.GET_INFO, seq, flags=0x02)), errors.BadFlags,
     m.GET_INFO),
    ("payload-too-long", lambda seq: wire(frame(m.GET_INFO, seq, b"\x01")), errors.BadLength,
     m.GET_INFO),
    ("auth-trailer-cut-short",
     lambda seq: wire(frame(m.GET_STATUS, seq, flags=m.FLAG_AUTH, trailer=bytes(6))),
     errors.BadLength, m.GET_STATUS),
    ("field-out-of-range",
     lambda seq: rawlink.unsigned("SET_TELEMETRY", seq, {"period_s": 5000}),
     errors.OutOfRange, m.SET_TELEMETRY),
]


@pytest.mark.hil
@pytest.mark.shared_pump
@pytest.mark.parametrize(("build", "cls", "mtype"), [r[1:] for r in REFUSED],
                         ids=[r[0] for r in REFUSED])
def test_a_frame_the_pump_cannot_take_is_refused_by_its_sequence_number(
    raw: RawClient, build: Callable[[int], bytes], cls: type[errors.ProtocolError], mtype: int
) -> None:
    before = raw.status().frame_errors
    seq = raw.seq()
    with pytest.raises(cls) as caught:
        raw.call(build(seq), seq)
    assert caught.value.request_type == mtype, str(caught.value)
    assert raw.status().frame_errors == before + 1
    assert raw.info().protocol_version == m.VERSION


@pytest.mark.hil
@pytest.mark.shared_pump
def test_empty_frames_get_no_answer(raw: RawClient) -> None:
    before = raw.status().frame_errors
    raw.send(b"\x00" * 32)
    assert error_replies(raw.replies(quiet=0.5)) == []
    assert raw.status().frame_errors == before


# -- bursts, cuts, slow writes, a client gone mid-frame --------------------------------------


def expected_errors(data: bytes) -> list[str]:
    """The error the pump gives each block of data between delimiters (empty ones: none),
    as the host codec, which checks in the firmware's order, reads it."""
    codes = []
    for block in data.split(b"\x00")[:-1]:
        if not block:
            continue
        with pytest.raises(DecodeError) as caught:
            host_codec.decode(block)
        codes.append(caught.value.code)
    return codes


@pytest.mark.hil
@pytest.mark.shared_pump
@pytest.mark.parametrize("seed", [1, 2])
def test_a_burst_of_random_bytes_between_requests(raw: RawClient, seed: int) -> None:
    burst = random_bytes(seed, 3000) + b"\x00"
    want = expected_errors(burst)
    assert len(want) >= 3, "a burst that holds several blocks"
    before = raw.status().frame_errors
    raw.send(burst)
    got = error_replies(raw.replies(len(want)))
    assert [r.seq for r in got] == [m.SEQ_UNSOLICITED] * len(want)
    assert [typed(r).name for r in got] == want
    assert raw.status().frame_errors == before + len(want)
    # Garbage, a delimiter and a request in one write: the pump finds the request.
    seq = raw.seq()
    msg = raw.call(random_bytes(seed, 100).replace(b"\x00", b"") + b"\x00"
                   + rawlink.unsigned("GET_INFO", seq), seq)
    assert (msg.name, msg["protocol_version"]) == ("INFO", m.VERSION)


@pytest.mark.hil
@pytest.mark.shared_pump
def test_a_frame_cut_off_spoils_only_the_frame_it_runs_into(raw: RawClient) -> None:
    half = status_request(raw)[:20]  # no delimiter: the pump waits for the rest
    before = raw.status().frame_errors
    raw.send(half)
    seq = raw.seq()
    info = rawlink.unsigned("GET_INFO", seq)
    raw.send(info)  # read as the rest of the cut frame
    got = raw.replies(1)
    assert [(r.seq, typed(r).name) for r in error_replies(got)] == [
        (m.SEQ_UNSOLICITED, code) for code in expected_errors(half + info)]
    assert not [r for r in got if isinstance(r, Message) and r.seq == seq]
    seq = raw.seq()
    assert raw.call(rawlink.unsigned("GET_INFO", seq), seq).name == "INFO"
    # PumpClient gets over it by itself: it sends again what the pump could not read.
    raw.send(half)
    assert raw.status().frame_errors == before + 2


@pytest.mark.hil
@pytest.mark.shared_pump
def test_requests_written_a_byte_at_a_time_are_answered(raw: RawClient) -> None:
    before = raw.status().frame_errors
    raw.dribble = (1, 0.002)
    assert raw.info().protocol_version == m.VERSION  # open to all
    status = raw.status()  # signed, read-only
    assert raw.set_telemetry(0) is None  # signed command (it changes nothing here)
    raw.dribble = (0, 0.0)
    assert status.frame_errors == before and raw.status().frame_errors == before
    assert len(raw.sent[-2]) > 30  # (the command went out in 30-odd writes)


@pytest.mark.hil
@pytest.mark.shared_pump
def test_a_client_gone_mid_frame_leaves_a_working_link(pump_url: str,
                                                      pump_keys: dict[str, bytes]) -> None:
    with RawClient(pump_url, keys=pump_keys) as first:
        before = first.status().frame_errors
        first.send(first.sent[-1][:20])  # the status request again, cut: then gone
    with PumpClient(pump_url, keys=pump_keys) as second:
        # Its first frame runs into the cut one and is refused unread; it sends it again.
        status = second.status()
        assert status.frame_errors == before + 1
        assert second.info().protocol_version == m.VERSION


# -- delivery goes on through all of it ------------------------------------------------------

HOUR_UL = Decimal(800) / 24  # 400 mcg/day at 500 mcg/mL: 33.3 uL an hour, in 250 nL steps


@pytest.mark.hil
@pytest.mark.rig("time_control")
def test_delivery_goes_on_through_line_noise(raw: RawClient, rig: Rig) -> None:
    prepare(raw)
    program = raw.set_continuous("400")
    noises: list[tuple[str, bytes]] = [(name, make(raw)) for name, make, _ in UNREADABLE]
    noises += [(name, build(raw.seq())) for name, build, _, _ in REFUSED]
    burst = random_bytes(3, 5000) + b"\x00"
    noises += [("random-burst", burst), ("cut-frame", status_request(raw)[:20])]
    frame_errors = raw.status().frame_errors
    for name, data in noises:
        start = raw.status().delivered_ul
        raw.send(data)
        want = {"random-burst": len(expected_errors(burst)), "cut-frame": 0}.get(name, 1)
        got = error_replies(raw.replies(want, quiet=0.1 if want else 0.5))
        assert len(got) == want, (name, got)
        frame_errors += len(got)
        rig.advance(HOUR_MS)
        s = raw.status()  # (after a cut frame: once refused unread, then sent again)
        assert (s.mode, raw.program()) == ("continuous", program), name
        assert abs(s.delivered_ul - start - HOUR_UL) < STEP_UL, (name, s.delivered_ul - start)
    assert raw.status().frame_errors == frame_errors + 1  # the cut frame and what ran into it
    # A request trickling in over minutes of pump time, a byte at each 10 s: answered, and
    # delivery meanwhile on time.
    start = raw.status().delivered_ul
    session, seq = raw.session("clinician"), raw.seq()
    trickle = rawlink.signed("GET_STATUS", seq, None, session, 1)
    for b in trickle[:-1]:
        raw.send(bytes([b]))
        rig.advance(10_000)
    raw.send(trickle[-1:])
    status = raw.answer(seq)
    assert status.name == "STATUS"
    elapsed_s = (len(trickle) - 1) * 10
    delivered = Decimal(status["delivered_nl"]) / 1000 - start
    assert abs(delivered - HOUR_UL * elapsed_s / 3600) < STEP_UL, delivered
    assert [e for e in raw.events() if e.event in ("fault", "delivery_gap")] == []
