"""PumpClient: typed requests to a pump over any pyserial URL.

    with PumpClient("socket://127.0.0.1:7000", keys=role_keys) as pump:
        pump.set_profile("spinal", 40, "titration", ceiling_mcg_day="1500")
        pump.refill("20", 500)
        pump.set_continuous("400")
        print(pump.status().delivered_ul)

Doses are in mcg (mcg/day for programs), volumes in mL or uL, concentrations in mcg/mL, given
as Decimal, int or str (never float) and sent as the pump's ng and nL exactly. Results are
frozen dataclasses with to_dict() for JSON. A refusal raises the protocol error's exception
(host/errors.py), naming the clinical rule, the value asked for and the limit.
"""

from __future__ import annotations

import collections
import errno
import os
import secrets
import select
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import construct as cs
import serial

from host import errors
from host.units import Number, mcg_to_ng, ml_to_nl, ng_to_mcg, nl_to_ml, nl_to_ul
from protocol import host_codec
from protocol import messages as m
from protocol.host_codec import DecodeError, Message

DEFAULT_TIMEOUT = 2.0
DEFAULT_RETRIES = 2
DEFAULT_RECONNECT_S = 10.0  # a Pico that resets comes back on USB within a few seconds
# A CHALLENGE refused BUSY (the pump's limit on sessions opened and not used) with at most
# this long to wait is waited out and sent once more; a longer wait is the caller's to decide.
BUSY_RETRY_MAX_S = 10
BUSY_MARGIN_S = 0.25  # waited past wait_s (whole seconds on the pump's clock)
STOP_REASONS = tuple(label for _value, label in m.ENUMS["stop_reason"])
ORIGINS = tuple(label for value, label in m.ENUMS["origin"] if value)  # not "unset"
PHASES = tuple(label for value, label in m.ENUMS["phase"] if value)  # "unset" cannot be set
DRUGS = tuple(label for _value, label in m.ENUMS["drug"])
CONFIRMATIONS = tuple(label for _bit, label in m.FLAGS["confirm"])
ALARMS = tuple(name for _id, name, _level in m.ALARMS)
ALARM_LEVELS = {name: level for _id, name, level in m.ALARMS}


class _Record:
    """A typed result that also reads as JSON (Decimals and times as strings)."""

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))  # type: ignore[call-overload]


@dataclass(frozen=True)
class Info(_Record):
    protocol_version: int
    fw_version: str
    board_id: str
    reservoir_ml: Decimal
    step_nl: int


@dataclass(frozen=True)
class Status(_Record):
    mode: str  # stopped, continuous, flex, minimum_rate (suspended), taper
    phase: str  # unset (no profile), screening, titration, maintenance
    daily_dose_mcg: Decimal  # the program's dose over 24 h
    concentration_mcg_ml: int  # of what the reservoir holds; 0: no drug
    rate_ul_day: Decimal  # basal rate now
    bolus: str  # the bolus running: none, clinician, priming, screening, patient
    bolus_left_mcg: Decimal
    last_24h_mcg: Decimal  # delivered in the last 24 h
    delivered_ul: Decimal
    delivered_mcg: Decimal
    reservoir_ul: Decimal
    uptime_s: int
    clock: datetime
    low_at: datetime | None  # the low-reservoir alarm at this program; None: never
    refill_at: datetime | None  # refill due; None: none
    dry_at: datetime | None  # when the reservoir runs dry at this program; None: not running
    alarms: tuple[str, ...]  # active alarms, by name
    sessions: tuple[str, ...]  # open sessions: refill, cap
    battery_v: Decimal
    frame_errors: int


@dataclass(frozen=True)
class Profile(_Record):
    origin: str  # spinal or cerebral
    age_years: int
    phase: str  # unset when no profile is set
    ceiling_mcg_day: Decimal  # hard ceiling over any 24 h
    catheter_ml: Decimal  # dead volume (the priming bolus)
    infusion_start: datetime | None  # None: not started
    # A traumatic brain injury behind the spasticity (UTC; None: none): no therapy before a
    # year after it (label 1).
    brain_injury: datetime | None = None


@dataclass(frozen=True)
class Step(_Record):
    """One step of a day's program: from start_min (local minute of the day) to the next."""

    start_min: int
    daily_dose_mcg: Decimal

    @property
    def start(self) -> str:
        return f"{self.start_min // 60:02d}:{self.start_min % 60:02d}"


@dataclass(frozen=True)
class Program(_Record):
    mode: str
    daily_dose_mcg: Decimal
    rate_ul_day: Decimal
    utc_offset_min: int
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Taper(_Record):
    start_mcg_day: Decimal
    target_mcg_day: Decimal
    days: int
    step_mcg_day: Decimal  # the daily cut
    ends_at: datetime


@dataclass(frozen=True)
class Bolus(_Record):
    kind: str  # clinician, priming, screening, patient
    dose_mcg: Decimal  # whole motor steps: at most the dose asked for
    volume_ul: Decimal
    duration_s: int
    ends_at: datetime


@dataclass(frozen=True)
class ScreeningDose(_Record):
    time: datetime
    dose_mcg: Decimal
    duration_s: int


@dataclass(frozen=True)
class Screening(_Record):
    next_dose_mcg: Decimal  # the largest allowed next; 0: no more
    next_at: datetime | None
    given: tuple[ScreeningDose, ...]


@dataclass(frozen=True)
class PatientBolus(_Record):
    dose_mcg: Decimal  # 0: patient boluses off
    duration_s: int
    lockout_s: int
    max_per_day: int
    used_24h: int
    next_at: datetime | None  # when the next is allowed; None: off


@dataclass(frozen=True)
class Suspended(_Record):
    reason: str
    rate_ul_day: Decimal  # the minimum (catheter-patency) rate


@dataclass(frozen=True)
class RefillOpen(_Record):
    expected_ml: Decimal  # what the pump expects to be drained
    capacity_ml: Decimal
    concentration_mcg_ml: int  # now


@dataclass(frozen=True)
class RefillDone(_Record):
    reservoir_ml: Decimal
    concentration_mcg_ml: int
    expected_ml: Decimal  # what the pump expected to be drained
    low_at: datetime | None
    refill_at: datetime | None


@dataclass(frozen=True)
class AlarmState(_Record):
    alarms: tuple[str, ...]  # active
    unacknowledged: tuple[str, ...]
    silenced_until: datetime | None


@dataclass(frozen=True)
class Event(_Record):
    """One entry of the pump's event log (protocol/messages.py ENUMS["event"] says what a, b
    and c hold for each event)."""

    number: int
    time: datetime
    event: str
    role: str  # who caused it: none (the pump itself), patient, clinician, service
    rule: str | None  # the rule that refused it
    type: int  # the request type (refused), or the bolus kind (bolus, bolus_done)
    a: int
    b: int
    c: int


@dataclass(frozen=True)
class LogPage(_Record):
    oldest: int  # number of the oldest event still held
    total: int  # events logged so far (the next number)
    events: tuple[Event, ...]


@dataclass(frozen=True)
class Telemetry(_Record):
    """An unsolicited TELEMETRY event (SET_TELEMETRY's period)."""

    mode: str
    rate_ul_day: Decimal
    bolus_left_mcg: Decimal
    delivered_ul: Decimal
    delivered_mcg: Decimal
    reservoir_ul: Decimal
    clock: datetime
    alarms: tuple[str, ...]
    battery_v: Decimal


@dataclass(frozen=True)
class AlarmEvent(_Record):
    """An unsolicited ALARM event: an alarm raised (active) or cleared."""

    alarm: str
    active: bool
    time: datetime
    alarms: tuple[str, ...]  # all active now


@dataclass(frozen=True)
class OtherEvent(_Record):
    """An unsolicited frame of a type this host does not know (a newer pump)."""

    type: int
    fields: dict[str, Any]


PumpEvent = Telemetry | AlarmEvent | OtherEvent


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    def one(v: Any) -> Any:
        if isinstance(v, Decimal):
            return str(v)
        if isinstance(v, datetime):
            return v.isoformat()
        if isinstance(v, bytes):
            return v.hex()
        if isinstance(v, dict):
            return {k: one(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [one(x) for x in v]
        return v  # None stays null

    return {k: one(v) for k, v in d.items()}


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)  # (positional: twice as quick as tz=UTC)


def _when(seconds: int) -> datetime | None:
    """A pump clock field where 0 means none."""
    return _utc(seconds) if seconds else None


def alarm_names(bits: int | Iterable[str]) -> tuple[str, ...]:
    """An alarm set as names, in alarm order: from the bit set (bit alarm - 1) or from the
    names the codec parsed it to."""
    if isinstance(bits, int):
        return tuple(name for a, name, _level in m.ALARMS if bits & (1 << (a - 1)))
    names = set(bits)
    return tuple(name for name in ALARMS if name in names)


def _choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)} (not {value!r})")
    return value


def _confirmations(confirm: Iterable[str] | str) -> list[str]:
    names = [confirm] if isinstance(confirm, str) else list(confirm)
    for name in names:
        _choice(name, CONFIRMATIONS, "a confirmation")
    return names


def _minute(start: int | str) -> int:
    """A step's start: minutes since local midnight, or "HH:MM"."""
    if isinstance(start, str):
        h, _, mnt = start.partition(":")
        if not (h.isdigit() and mnt.isdigit() and int(mnt) < 60):
            raise ValueError(f"a step starts at HH:MM or a minute of the day, not {start!r}")
        return int(h) * 60 + int(mnt)
    return int(start)


def _refill_fields(
    fill_ml: Number,
    concentration: int,
    drained_ml: Number,
    concentration_again: int | None,
    confirm: Iterable[str] | str,
    drug: str,
) -> dict[str, Any]:
    again = concentration if concentration_again is None else concentration_again
    fields = {
        "drained_nl": ml_to_nl(drained_ml),
        "fill_nl": ml_to_nl(fill_ml),
        "drug": _choice(drug, DRUGS, "drug"),
        "concentration": int(concentration),
        "concentration_again": int(again),
        "confirm": _confirmations(confirm),
    }
    _encodable(m.REFILL_COMMIT, fields)
    return fields


def _encodable(mtype: int, fields: dict[str, Any]) -> None:
    """Refuse, before anything is sent, a value the wire cannot carry."""
    try:
        host_codec.build_payload(mtype, fields)
    except (cs.ConstructError, struct.error, KeyError, TypeError, ValueError,
            OverflowError) as e:
        raise ValueError(f"{host_codec.MESSAGE_NAMES.get(mtype, mtype)}: a value does not "
                         f"fit the protocol ({e})") from e


def _program(r: Message) -> Program:
    return Program(
        mode=r["mode"],
        daily_dose_mcg=ng_to_mcg(r["daily_dose_ng"]),
        rate_ul_day=nl_to_ul(r["rate_nl_day"]),
        utc_offset_min=r["utc_offset_min"],
        steps=tuple(Step(s["start_min"], ng_to_mcg(s["daily_dose_ng"])) for s in r["steps"]),
    )


def _bolus(r: Message) -> Bolus:
    return Bolus(
        kind=r["bolus"],
        dose_mcg=ng_to_mcg(r["dose_ng"]),
        volume_ul=nl_to_ul(r["volume_nl"]),
        duration_s=r["duration_s"],
        ends_at=_utc(r["ends_at_s"]),
    )


def _patient_bolus(r: Message) -> PatientBolus:
    return PatientBolus(
        dose_mcg=ng_to_mcg(r["dose_ng"]),
        duration_s=r["duration_s"],
        lockout_s=r["lockout_s"],
        max_per_day=r["max_per_day"],
        used_24h=r["used_24h"],
        next_at=_when(r["next_at_s"]),
    )


def _alarm_state(r: Message) -> AlarmState:
    return AlarmState(
        alarms=alarm_names(r["alarms"]),
        unacknowledged=alarm_names(r["unacknowledged"]),
        silenced_until=_when(r["silenced_until_s"]),
    )


def _profile(r: Message) -> Profile:
    return Profile(
        origin=r["origin"],
        age_years=r["age_years"],
        phase=r["phase"],
        ceiling_mcg_day=ng_to_mcg(r["ceiling_ng"]),
        catheter_ml=nl_to_ml(r["catheter_nl"]),
        infusion_start=_when(r["infusion_start_s"]),
        brain_injury=_when(r["brain_injury_s"]),
    )


def _event(e: dict[str, Any]) -> Event:
    role = e["role"]
    return Event(
        number=e["number"],
        time=_utc(e["time_s"]),
        event=e["event"],
        role=m.ROLE_NAMES[role] if role < len(m.ROLE_NAMES) else str(role),
        rule=errors.rule_name(e["rule"]),
        type=e["type"],
        a=e["a"],
        b=e["b"],
        c=e["c"],
    )


# STATUS fields (and TELEMETRY's, a subset of them) as people read them: name -> (the
# result's field name, the conversion).
_READINGS: dict[str, tuple[str, Any]] = {
    "mode": ("mode", str),
    "phase": ("phase", str),
    "daily_dose_ng": ("daily_dose_mcg", ng_to_mcg),
    "concentration": ("concentration_mcg_ml", int),
    "rate_nl_day": ("rate_ul_day", nl_to_ul),
    "bolus": ("bolus", str),
    "bolus_left_ng": ("bolus_left_mcg", ng_to_mcg),
    "last_24h_ng": ("last_24h_mcg", ng_to_mcg),
    "delivered_nl": ("delivered_ul", nl_to_ul),
    "delivered_ng": ("delivered_mcg", ng_to_mcg),
    "reservoir_nl": ("reservoir_ul", nl_to_ul),
    "uptime_s": ("uptime_s", int),
    "clock_s": ("clock", _utc),
    "low_at_s": ("low_at", _when),
    "refill_at_s": ("refill_at", _when),
    "dry_at_s": ("dry_at", _when),
    "alarms": ("alarms", alarm_names),
    "sessions": ("sessions", tuple),
    "battery_mv": ("battery_v", lambda mv: Decimal(mv) / 1000),
    "frame_errors": ("frame_errors", int),
}


def _readings(fields: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in fields.items():
        key, convert = _READINGS[name]
        out[key] = convert(value)
    return out


def unsolicited(msg: Message) -> PumpEvent:
    """An unsolicited frame as a typed event."""
    if msg.type == m.TELEMETRY:
        return Telemetry(**_readings(msg.fields))
    if msg.type == m.ALARM:
        return AlarmEvent(
            alarm=msg["alarm"],
            active=bool(msg["active"]),
            time=_utc(msg["time_s"]),
            alarms=alarm_names(msg["alarms"]),
        )
    return OtherEvent(msg.type, dict(msg.fields))


def open_port(url: str, baudrate: int = 115200) -> serial.Serial:
    """Open any pyserial URL, turning its failures into one-line typed errors."""
    try:
        return serial.serial_for_url(url, baudrate=baudrate, timeout=0.05, exclusive=True)
    except (serial.SerialException, OSError, ValueError) as e:
        no = getattr(e, "errno", None)
        text = str(e)
        if no == errno.EBUSY or "busy" in text.lower() or "lock" in text.lower():
            raise errors.PortBusy(f"{url}: port is busy (another program has it open)") from e
        if no in (errno.ENOENT, errno.ECONNREFUSED) or "No such file" in text or (
            "refused" in text
        ):
            raise errors.PortNotFound(f"{url}: no such port or nothing listening") from e
        raise errors.LinkError(f"{url}: cannot open: {text}") from e


class PumpClient:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        baudrate: int = 115200,
        keys: dict[str, bytes] | None = None,
        role: str = "clinician",
        reconnect_s: float = DEFAULT_RECONNECT_S,
    ):
        """keys: {role: key} (host/keys.py); requests that need a role are signed with
        `role`'s key in a session the client opens on first need. A port that goes away (a
        board that resets drops off USB and comes back) is opened again for up to
        reconnect_s seconds (0: never), and the request in flight carries on as a retry.
        The pump's own limits are not retried around: LOCKED (the role is locked out after
        bad tags) is raised at once (errors.Locked, with wait_s); only opening a session
        refused BUSY with at most BUSY_RETRY_MAX_S to wait is waited out, once."""
        self.url = url
        self.keys = keys or {}
        self.role = role
        self._signer: host_codec.Signer | None = None
        self._counter = 0
        self.timeout = timeout
        self.retries = retries
        self.baudrate = baudrate
        self.reconnect_s = reconnect_s
        self.reconnects = 0
        self._drops = 0  # reconnections during the exchange in progress
        self._port: serial.Serial | None = None
        self._buffer = bytearray()  # bytes read but not yet a whole frame
        self._events: collections.deque[Message] = collections.deque(maxlen=1000)
        # A random start: a new session is unlikely to repeat the last session's sequence
        # number, which the pump would take for a retry of the same command.
        self._seq = secrets.randbelow(0xFFFF)
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> PumpClient:
        self._port = open_port(self.url, self.baudrate)
        self._port.reset_input_buffer()  # whatever an earlier session left unread
        return self

    def close(self) -> None:
        if self._port is not None:
            self._port.close()
            self._port = None

    def __enter__(self) -> PumpClient:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq = self._seq % 0xFFFF + 1  # 1..65535; 0 is the pump's
        return self._seq

    def request(self, name: str, fields: dict[str, Any] | None = None) -> Message:
        """Send a request and return its response. A request that needs a role is signed in
        a session (opened on first need, and again if the pump has lost it, e.g. after a
        reboot). A lost or corrupted exchange is retried with the same sequence number: a
        command byte for byte (the pump answers the repeat from its cache), a read signed
        afresh (reads simply run again)."""
        if self._port is None:
            raise errors.LinkError("client is not open")
        mtype = host_codec.type_of(name)
        _encodable(mtype, fields or {})
        with self._lock:
            if m.ACCESS.get(mtype, m.ANY_ROLE) == m.OPEN:
                return self._exchange(mtype, fields, signed=False)
            try:
                return self._exchange(mtype, fields, signed=True)
            except (errors.NoSession, errors.BadTag):
                # The pump lost the session (a reboot), or gave its slot to other hosts'
                # sessions (the tag no longer verifies): refused before it ran, so it is
                # sent once more in a new session. A second refusal is raised.
                self._signer = None
                return self._exchange(mtype, fields, signed=True)

    def _session(self) -> host_codec.Signer:
        if self._signer is None:
            key = self.keys.get(self.role)
            if key is None:
                raise errors.MissingKey(
                    f"no {self.role} key: give --keys FILE or set PUMPCTL_KEYS (host/keys.py)"
                )
            r = self._challenge()
            self._signer = host_codec.Signer(r["session"], r["nonce"], self.role, key)
            self._counter = 0
        return self._signer

    def _challenge(self) -> Message:
        """A new session. Refused BUSY (too many sessions opened and not used: another
        host's, or someone flooding the link) with a short wait: waited out, then asked once
        more; a longer wait, or BUSY again, is raised (errors.Busy, with wait_s)."""
        try:
            return self._exchange(m.CHALLENGE, None, signed=False)
        except errors.Busy as e:
            if e.wait_s > BUSY_RETRY_MAX_S:
                raise
            self._pause(e.wait_s + BUSY_MARGIN_S)
        return self._exchange(m.CHALLENGE, None, signed=False)

    def _pause(self, seconds: float) -> None:
        """Wait for the pump's clock to move on (a subclass driving a paused simulator
        advances its time instead)."""
        time.sleep(seconds)

    def _exchange(self, mtype: int, fields: dict[str, Any] | None, signed: bool) -> Message:
        signer = self._session() if signed else None
        self._drops = 0
        seq = self._next_seq()
        wire = b""
        garbled: DecodeError | None = None
        for attempt in range(self.retries + 1):
            if attempt == 0 or (signer is not None and mtype in m.READ_ONLY):
                self._counter += 1
                wire = host_codec.encode(
                    mtype, seq, fields, signer=signer, counter=self._counter
                ) if signer else host_codec.encode(mtype, seq, fields)
            self._write(wire)
            got = self._await(seq)
            if isinstance(got, Message):
                lost = got["code"] if got.type == m.ERROR else 0
                if attempt and lost in (m.ERR_NO_SESSION, m.ERR_BAD_TAG) and (
                    mtype not in m.READ_ONLY
                ):
                    # An earlier attempt may have run before the pump rebooted and forgot
                    # the session (NO_SESSION), or gave its slot to another host's session
                    # (BAD_TAG: the pump's answer cache for it went too): sending it again
                    # in a new session could run the command twice.
                    what = "rebooted" if lost == m.ERR_NO_SESSION else (
                        "gave this session to another host")
                    raise errors.OutcomeUnknown(
                        f"{self.url}: the pump {what} during "
                        f"{host_codec.MESSAGE_NAMES[mtype]}; whether it took effect is "
                        "unknown: check status and the log"
                    )
                return self._check(mtype, got)
            garbled = got or garbled
        if garbled is not None:
            raise errors.GarbledResponse(
                f"{self.url}: unreadable response ({garbled}); is it running intrapump?"
            )
        raise errors.NoResponse(
            f"{self.url}: no response in {self.timeout:g} s "
            f"({self.retries + 1} attempts); is the pump running intrapump firmware?"
        )

    def _write(self, wire: bytes) -> None:
        try:
            self._send(wire)
        except (serial.SerialException, OSError) as e:
            self._reconnect(f"write failed: {e}")
            self._send(wire)

    def _send(self, wire: bytes) -> None:
        assert self._port is not None
        fd = getattr(self._port, "fd", None)
        if fd is not None:
            # A device file: written directly (pyserial's write adds a select() to each call).
            try:
                wire = wire[os.write(fd, wire):]
            except BlockingIOError:
                pass
        if wire:  # socket:// and other URLs, or the device is full: pyserial waits
            self._port.write(wire)

    def _read(self) -> None:
        """Read what has arrived (waiting at most the port's short timeout for a byte)."""
        assert self._port is not None
        try:
            fd = getattr(self._port, "fd", None)
            if fd is None:  # socket:// and other URLs
                self._buffer += self._port.read(self._port.in_waiting or 1)
            elif select.select([fd], [], [], self._port.timeout)[0]:
                # A device file: one select() and one read of all there is (pyserial's
                # read(1), then read(in_waiting), makes two of each per answer).
                data = os.read(fd, 4096)
                if not data:  # as pyserial: a device that went away reads as empty
                    raise serial.SerialException("device reports readiness to read but "
                                                 "returned no data")
                self._buffer += data
        except BlockingIOError:
            pass  # readable but nothing there after all: read again
        except (serial.SerialException, OSError) as e:
            # The answer (if any) was lost with the port: the caller's retry resends.
            self._reconnect(f"connection lost: {e}")

    def _reconnect(self, why: str) -> None:
        """Open the port again once it is back, within reconnect_s; else PortLost. A port
        that keeps dropping (more often than there are retries) is lost too."""
        self._drops += 1
        if self._drops > self.retries or self.reconnect_s <= 0:
            self.close()
            raise errors.PortLost(f"{self.url}: {why}")
        if self._port is not None:
            try:
                self._port.close()
            except (serial.SerialException, OSError):
                pass
        self._port = None
        self._buffer.clear()
        deadline = time.monotonic() + self.reconnect_s
        while True:
            try:
                self._port = open_port(self.url, self.baudrate)
                self.reconnects += 1
                return
            except errors.LinkError as e:
                if time.monotonic() >= deadline:
                    raise errors.PortLost(
                        f"{self.url}: {why}; not back within {self.reconnect_s:g} s ({e})"
                    ) from e
                time.sleep(0.2)

    def _frames(self) -> Iterator[Message | DecodeError]:
        """Whole frames read so far, decoded, each taken out of the buffer as it is given."""
        while (end := self._buffer.find(0)) >= 0:
            packet = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if packet:
                try:
                    yield host_codec.decode(packet)
                except DecodeError as e:
                    yield e

    def _await(self, seq: int) -> Message | DecodeError | None:
        """The response to seq; a DecodeError or None (timeout) means: try again.
        Reads in the caller's thread: no hand-off between threads on the way."""
        garbled: DecodeError | None = None
        deadline = time.monotonic() + self.timeout
        while True:
            for msg in self._frames():
                if isinstance(msg, DecodeError):
                    garbled = msg
                elif msg.seq == seq:
                    return msg
                elif msg.seq == m.SEQ_UNSOLICITED and msg.type == m.ERROR:
                    # The pump could not read a frame (ours, corrupted on the way): resend.
                    return None
                elif msg.seq == m.SEQ_UNSOLICITED:
                    self._events.append(msg)  # telemetry, alarms: kept for next_event()
                # else a late answer to an earlier attempt: not ours
            if time.monotonic() >= deadline:
                return garbled
            self._read()

    def next_event(self, timeout: float) -> PumpEvent | None:
        """The next unsolicited event from the pump (Telemetry, AlarmEvent), waiting up to
        timeout s; None if none came."""
        msg = self.next_message(timeout)
        return unsolicited(msg) if msg is not None else None

    def next_message(self, timeout: float) -> Message | None:
        """The next unsolicited frame from the pump, as decoded, waiting up to timeout s."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._events:
                if time.monotonic() >= deadline:
                    return None
                self._read()
                for msg in self._frames():
                    if isinstance(msg, Message) and msg.seq == m.SEQ_UNSOLICITED and (
                        msg.type != m.ERROR
                    ):
                        self._events.append(msg)
            return self._events.popleft()

    def _check(self, mtype: int, msg: Message) -> Message:
        if msg.type == m.ERROR:
            raise errors.from_code(msg["code"], msg["reason"], msg["request_type"],
                                   msg.fields.get("rule"), msg.fields.get("requested", 0),
                                   msg.fields.get("allowed", 0), msg.fields.get("wait_s", 0))
        if msg.type != mtype | 0x80:
            raise errors.UnexpectedResponse(f"{msg.name} in answer to 0x{mtype:02x}")
        return msg

    # -- reads -----------------------------------------------------------------------------

    def info(self) -> Info:
        r = self.request("GET_INFO")
        return Info(
            protocol_version=r["protocol_version"],
            fw_version=r["fw_version"],
            board_id=r["board_id"].hex(),
            reservoir_ml=nl_to_ml(r["reservoir_nl"]),
            step_nl=r["step_nl"],
        )

    def status(self) -> Status:
        return Status(**_readings(self.request("GET_STATUS").fields))

    def counters(self) -> dict[str, int]:
        """Refusals since boot, by error name."""
        return {k.upper(): v for k, v in self.request("GET_COUNTERS").fields.items()}

    def read_log(self, number: int = 0, count: int = m.LOG_PAGE_EVENTS) -> LogPage:
        """One page of the event log: up to `count` (at most 8) events from `number` on (or
        from the oldest still held)."""
        r = self.request("READ_LOG", {"number": number, "count": count})
        return LogPage(r["oldest"], r["total"], tuple(_event(e) for e in r["events"]))

    def events(self, start: int = 0) -> list[Event]:
        """The event log from event number `start` (or the oldest held) to the newest."""
        out: list[Event] = []
        n = start
        while True:
            page = self.read_log(n)
            out.extend(page.events)
            if not page.events:
                return out
            n = page.events[-1].number + 1
            if n >= page.total:
                return out

    def profile(self) -> Profile:
        """The patient profile (phase "unset": none set yet)."""
        return _profile(self.request("GET_PROFILE"))

    def program(self) -> Program:
        """The program in force."""
        return _program(self.request("GET_PROGRAM"))

    def screening(self) -> Screening:
        """The screening boluses given, and what may come next."""
        r = self.request("GET_SCREENING")
        return Screening(
            next_dose_mcg=ng_to_mcg(r["next_dose_ng"]),
            next_at=_when(r["next_at_s"]),
            given=tuple(ScreeningDose(_utc(g["time_s"]), ng_to_mcg(g["dose_ng"]),
                                      g["duration_s"]) for g in r["given"]),
        )

    def patient_bolus_state(self) -> PatientBolus:
        """The patient-bolus settings and their use in the last 24 h."""
        return _patient_bolus(self.request("GET_PATIENT_BOLUS"))

    # -- the pump itself ---------------------------------------------------------------------

    def set_telemetry(self, period_s: int) -> None:
        """Have the pump send TELEMETRY every period_s seconds (0: stop); see next_event()."""
        self.request("SET_TELEMETRY", {"period_s": period_s})

    def set_clock(self, when: datetime | None = None) -> datetime:
        """Set the pump clock (to now, by default); returns the pump's clock after."""
        t = int((when or datetime.now(tz=UTC)).timestamp())
        return _utc(self.request("SET_CLOCK", {"time_s": t})["time_s"])

    def enter_repl(self) -> Message:
        """Hand the board's link to the MicroPython REPL (to re-flash). Refused unless stopped."""
        return self.request("ENTER_REPL", {"confirm": m.REPL_CONFIRM})

    # -- the patient -----------------------------------------------------------------------

    def set_profile(
        self,
        origin: str,
        age_years: int,
        phase: str,
        ceiling_mcg_day: Number,
        catheter_ml: Number = 0,
        infusion_start: datetime | None = None,
        brain_injury: date | datetime | None = None,
    ) -> Profile:
        """The patient profile: origin (spinal, cerebral) and age decide the titration limits;
        the hard ceiling caps every 24 h; phase is screening, titration or maintenance;
        catheter_ml is the catheter's dead volume (the priming bolus); infusion_start, when
        infusion started (None: at the first program); brain_injury, the date of a traumatic
        brain injury behind the spasticity (a date: its midnight UTC; a datetime without a
        zone: UTC; None: none, or not the cause). The whole profile is replaced: leave
        brain_injury out and the pump holds none. The pump refuses a profile, and the first
        therapy, less than a year after the injury by its clock (TooSoon, rule
        brain_injury_wait: allowed is the date therapy may start), and an injury after its
        clock (OutOfRange)."""
        injury_s = 0
        if brain_injury is not None:
            if not isinstance(brain_injury, datetime):
                brain_injury = datetime(brain_injury.year, brain_injury.month, brain_injury.day)
            if brain_injury.tzinfo is None:
                brain_injury = brain_injury.replace(tzinfo=UTC)
            injury_s = int(brain_injury.timestamp())
            if injury_s <= 0:
                raise ValueError("brain_injury: the wire carries dates from 1970-01-01 on "
                                 f"(not {brain_injury:%Y-%m-%d}); one that old needs no wait")
        return _profile(self.request("SET_PROFILE", {
            "origin": _choice(origin, ORIGINS, "origin"),
            "age_years": int(age_years),
            "phase": _choice(phase, PHASES, "phase"),
            "ceiling_ng": mcg_to_ng(ceiling_mcg_day),
            "catheter_nl": ml_to_nl(catheter_ml),
            "infusion_start_s": int(infusion_start.timestamp()) if infusion_start else 0,
            "brain_injury_s": injury_s,
        }))

    # -- refill ------------------------------------------------------------------------------

    def refill_begin(self) -> RefillOpen:
        """Open a refill session: the outlet is held until commit or abort (or 30 min)."""
        r = self.request("REFILL_BEGIN")
        return RefillOpen(nl_to_ml(r["expected_nl"]), nl_to_ml(r["capacity_nl"]),
                          r["concentration"])

    def refill_commit(
        self,
        fill_ml: Number,
        concentration: int,
        *,
        drained_ml: Number = 0,
        concentration_again: int | None = None,
        confirm: Iterable[str] | str = (),
        drug: str = "baclofen",
    ) -> RefillDone:
        """Close the refill session: what was drained, what the reservoir now holds (mL) and
        at what concentration (mcg/mL), entered twice (concentration_again defaults to the
        first entry). confirm: custom_concentration, drain_mismatch."""
        return self._commit(_refill_fields(fill_ml, concentration, drained_ml,
                                           concentration_again, confirm, drug))

    def _commit(self, fields: dict[str, Any]) -> RefillDone:
        r = self.request("REFILL_COMMIT", fields)
        return RefillDone(
            reservoir_ml=nl_to_ml(r["reservoir_nl"]),
            concentration_mcg_ml=r["concentration"],
            expected_ml=nl_to_ml(r["expected_nl"]),
            low_at=_when(r["low_at_s"]),
            refill_at=_when(r["refill_at_s"]),
        )

    def refill_abort(self) -> None:
        """Close the refill session without a change."""
        self.request("REFILL_ABORT")

    def refill(
        self,
        fill_ml: Number,
        concentration: int,
        *,
        drained_ml: Number = 0,
        concentration_again: int | None = None,
        confirm: Iterable[str] | str = (),
        during: Callable[[], object] | None = None,
    ) -> RefillDone:
        """A whole refill: open the session, commit. If the pump refuses the commit, the
        session is aborted (the outlet reopens, nothing changed) and the refusal raised. A
        value the host refuses opens no session. `during` runs while the session is open,
        before the commit: a maintenance dose change belongs to the refill visit (label
        2.6), e.g. during=lambda: pump.set_continuous("560"); if it raises, the session is
        aborted and its exception raised."""
        fields = _refill_fields(fill_ml, concentration, drained_ml, concentration_again,
                                confirm, "baclofen")
        self.refill_begin()
        try:
            if during is not None:
                during()
            return self._commit(fields)
        except (errors.ProtocolError, ValueError):
            try:
                self.refill_abort()
            except errors.PumpError:
                pass  # the commit's refusal is the news
            raise

    # -- programs ----------------------------------------------------------------------------

    def set_continuous(
        self, daily_dose_mcg: Number, confirm: Iterable[str] | str = ()
    ) -> Program:
        """Program continuous infusion of a daily dose (mcg/day) at the reservoir's
        concentration. confirm: high_dose (above 1000 mcg/day), large_decrease (a cut of more
        than 20 % within 24 h)."""
        return _program(self.request("SET_CONTINUOUS", {
            "daily_dose_ng": mcg_to_ng(daily_dose_mcg),
            "confirm": _confirmations(confirm),
        }))

    def set_flex(
        self,
        steps: Iterable[tuple[int | str, Number] | Step],
        utc_offset_min: int = 0,
        confirm: Iterable[str] | str = (),
    ) -> Program:
        """Program a flex day: steps of (start, daily dose in mcg/day), start as the local
        minute of the day or "HH:MM", in rising order; each runs until the next starts."""
        wire = []
        for s in steps:
            start, dose = (s.start_min, s.daily_dose_mcg) if isinstance(s, Step) else s
            wire.append({"start_min": _minute(start), "daily_dose_ng": mcg_to_ng(dose)})
        return _program(self.request("SET_FLEX", {
            "confirm": _confirmations(confirm),
            "utc_offset_min": int(utc_offset_min),
            "steps": wire,
        }))

    def set_taper(
        self, target_mcg_day: Number, days: int, confirm: Iterable[str] | str = ()
    ) -> Taper:
        """A drug holiday: from the dose in force down to target_mcg_day over days (14 to 28),
        one step a day, then the target as continuous infusion."""
        r = self.request("SET_TAPER", {
            "target_ng": mcg_to_ng(target_mcg_day),
            "days": int(days),
            "confirm": _confirmations(confirm),
        })
        return Taper(
            start_mcg_day=ng_to_mcg(r["start_ng"]),
            target_mcg_day=ng_to_mcg(r["target_ng"]),
            days=r["days"],
            step_mcg_day=ng_to_mcg(r["step_ng"]),
            ends_at=_utc(r["ends_at_s"]),
        )

    # -- boluses -----------------------------------------------------------------------------

    def bolus(self, dose_mcg: Number, duration_s: int = 60) -> Bolus:
        """A clinician bolus on top of the basal rate, over duration_s (at least 60 s)."""
        return _bolus(self.request("BOLUS", {
            "dose_ng": mcg_to_ng(dose_mcg), "duration_s": int(duration_s),
        }))

    def prime(self, duration_s: int = 60) -> Bolus:
        """A priming bolus: the catheter's dead volume (the profile's), over duration_s."""
        return _bolus(self.request("PRIME", {"duration_s": int(duration_s)}))

    def screen(self, dose_mcg: Number, duration_s: int = 60) -> Bolus:
        """A screening bolus (screening phase): 50, 75, then 100 mcg, 24 h apart."""
        return _bolus(self.request("SCREEN", {
            "dose_ng": mcg_to_ng(dose_mcg), "duration_s": int(duration_s),
        }))

    def patient_bolus(self) -> Bolus:
        """A patient bolus (the patient role), within the limits the clinician set."""
        return _bolus(self.request("PATIENT_BOLUS"))

    def set_patient_bolus(
        self,
        dose_mcg: Number,
        duration_s: int = 600,
        lockout_s: int = 0,
        max_per_day: int = 1,
    ) -> PatientBolus:
        """Enable patient boluses (dose_mcg > 0; max_per_day at least 1) with their lockout
        and daily maximum, or disable them (dose_mcg 0)."""
        return _patient_bolus(self.request("SET_PATIENT_BOLUS", {
            "dose_ng": mcg_to_ng(dose_mcg),
            "duration_s": int(duration_s),
            "lockout_s": int(lockout_s),
            "max_per_day": int(max_per_day),
        }))

    # -- stopping and holding ------------------------------------------------------------------

    def stop(self, reason: str = "clinician_decision", *, confirm: bool = False) -> str:
        """Stop delivery (a bolus too). The pump refuses unless confirm=True (it sends the
        confirmation word). Returns the reason recorded."""
        _choice(reason, STOP_REASONS, "reason")
        r = self.request(
            "STOP", {"reason": reason, "confirm": m.STOP_CONFIRM if confirm else 0}
        )
        return r["reason"]

    def suspend(self, reason: str = "clinician_decision", *, confirm: bool = False) -> Suspended:
        """Hold therapy at the minimum (catheter-patency) rate; refused unless confirm=True."""
        _choice(reason, STOP_REASONS, "reason")
        r = self.request(
            "SUSPEND", {"reason": reason, "confirm": m.STOP_CONFIRM if confirm else 0}
        )
        return Suspended(r["reason"], nl_to_ul(r["rate_nl_day"]))

    def resume(self) -> Program:
        """Resume the program held by suspend or stop."""
        return _program(self.request("RESUME"))

    # -- catheter access port ------------------------------------------------------------------

    def cap_begin(self, duration_s: int = 600) -> datetime:
        """Open a catheter access port session; returns when it closes by itself."""
        return _utc(self.request("CAP_BEGIN", {"duration_s": int(duration_s)})["until_s"])

    def cap_end(self) -> None:
        self.request("CAP_END")

    # -- alarms --------------------------------------------------------------------------------

    def alarm_state(self) -> AlarmState:
        """Active alarms, those not yet acknowledged, and until when tones are silenced."""
        return _alarm_state(self.request("GET_ALARMS"))

    def alarm_ack(self, alarm: str) -> AlarmState:
        """Acknowledge an alarm: its tone stops; it stays active while its cause does."""
        return _alarm_state(self.request("ALARM_ACK", {
            "alarm": _choice(alarm, ALARMS, "alarm"),
        }))

    def alarm_silence(self, minutes: int) -> AlarmState:
        """Silence every alarm tone for minutes (1 to 1440); alarms stay active and logged."""
        return _alarm_state(self.request("ALARM_SILENCE", {"minutes": int(minutes)}))
