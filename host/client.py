"""PumpClient: typed requests to a pump over any pyserial URL.

    with PumpClient("socket://127.0.0.1:7000") as pump:
        print(pump.status().delivered_ul)
        pump.set_continuous(Decimal("400"), 500)
"""

from __future__ import annotations

import collections
import errno
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import serial

from host import errors
from host.units import mcg_to_ng, ng_to_mcg, nl_to_ul
from protocol import host_codec
from protocol import messages as m
from protocol.host_codec import DecodeError, Message

DEFAULT_TIMEOUT = 2.0
DEFAULT_RETRIES = 2
_STOP_REASONS = {label: value for value, label in m.ENUMS["stop_reason"]}


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
    mode: str
    daily_dose_mcg: Decimal
    concentration_mcg_ml: int
    rate_ul_day: Decimal
    delivered_ul: Decimal
    delivered_mcg: Decimal
    reservoir_ul: Decimal
    uptime_s: int
    clock: datetime
    dry_at: datetime | None  # when the reservoir runs dry at this program; None: not running
    battery_v: Decimal
    frame_errors: int


@dataclass(frozen=True)
class Event(_Record):
    """One entry of the pump's event log."""

    number: int
    time: datetime
    event: str
    role: str
    a: int
    b: int


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    def one(v: Any) -> Any:
        if isinstance(v, Decimal):
            return str(v)
        if isinstance(v, datetime):
            return v.isoformat()
        return v  # None stays null

    return {k: one(v) for k, v in d.items()}


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


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
    ):
        """keys: {role: key} (host/keys.py); requests that need a role are signed with
        `role`'s key in a session the client opens on first need."""
        self.url = url
        self.keys = keys or {}
        self.role = role
        self._signer: host_codec.Signer | None = None
        self._counter = 0
        self.timeout = timeout
        self.retries = retries
        self.baudrate = baudrate
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
        with self._lock:
            if m.ACCESS.get(mtype, m.ANY_ROLE) == m.OPEN:
                return self._exchange(mtype, fields, signed=False)
            try:
                return self._exchange(mtype, fields, signed=True)
            except errors.NoSession:
                # The pump lost the session (a reboot) before the request: it did not run.
                self._signer = None
                return self._exchange(mtype, fields, signed=True)

    def _session(self) -> host_codec.Signer:
        if self._signer is None:
            key = self.keys.get(self.role)
            if key is None:
                raise errors.MissingKey(
                    f"no {self.role} key: give --keys FILE or set PUMPCTL_KEYS (host/keys.py)"
                )
            r = self._exchange(m.CHALLENGE, None, signed=False)
            self._signer = host_codec.Signer(r["session"], r["nonce"], self.role, key)
            self._counter = 0
        return self._signer

    def _exchange(self, mtype: int, fields: dict[str, Any] | None, signed: bool) -> Message:
        signer = self._session() if signed else None
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
                if attempt and got.type == m.ERROR and got["code"] == m.ERR_NO_SESSION and (
                    mtype not in m.READ_ONLY
                ):
                    # An earlier attempt may have run before the pump rebooted and forgot
                    # the session: sending it again could run the command twice.
                    raise errors.OutcomeUnknown(
                        f"{self.url}: the pump rebooted during {host_codec.MESSAGE_NAMES[mtype]}"
                        "; whether it took effect is unknown: check status and the log"
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
        assert self._port is not None
        try:
            self._port.write(wire)
        except (serial.SerialException, OSError) as e:
            raise errors.PortLost(f"{self.url}: write failed: {e}") from e

    def _read(self) -> None:
        """Read what has arrived (waiting at most the port's short timeout for a byte)."""
        assert self._port is not None
        try:
            self._buffer += self._port.read(self._port.in_waiting or 1)
        except (serial.SerialException, OSError) as e:
            raise errors.PortLost(f"{self.url}: connection lost: {e}") from e

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
                    self._events.append(msg)  # telemetry: kept for next_event()
                # else a late answer to an earlier attempt: not ours
            if time.monotonic() >= deadline:
                return garbled
            self._read()

    def next_event(self, timeout: float) -> Message | None:
        """The next unsolicited frame from the pump (TELEMETRY...), waiting up to timeout s."""
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
            raise errors.from_code(msg["code"], msg["reason"], msg["request_type"])
        if msg.type != mtype | 0x80:
            raise errors.UnexpectedResponse(f"{msg.name} in answer to 0x{mtype:02x}")
        return msg

    # -- typed commands --------------------------------------------------------------------

    def info(self) -> Info:
        r = self.request("GET_INFO")
        return Info(
            protocol_version=r["protocol_version"],
            fw_version=r["fw_version"],
            board_id=r["board_id"].hex(),
            reservoir_ml=nl_to_ul(r["reservoir_nl"]) / 1000,
            step_nl=r["step_nl"],
        )

    def status(self) -> Status:
        r = self.request("GET_STATUS")
        return Status(
            mode=r["mode"],
            daily_dose_mcg=ng_to_mcg(r["daily_dose_ng"]),
            concentration_mcg_ml=r["concentration"],
            rate_ul_day=nl_to_ul(r["rate_nl_day"]),
            delivered_ul=nl_to_ul(r["delivered_nl"]),
            delivered_mcg=ng_to_mcg(r["delivered_ng"]),
            reservoir_ul=nl_to_ul(r["reservoir_nl"]),
            uptime_s=r["uptime_s"],
            clock=_utc(r["clock_s"]),
            dry_at=_utc(r["dry_at_s"]) if r["dry_at_s"] else None,
            battery_v=Decimal(r["battery_mv"]) / 1000,
            frame_errors=r["frame_errors"],
        )

    def counters(self) -> dict[str, int]:
        """Refusals since boot, by error name."""
        return {k.upper(): v for k, v in self.request("GET_COUNTERS").fields.items()}

    def events(self, start: int = 0) -> list[Event]:
        """The event log from event number `start` (or the oldest held) to the newest."""
        out: list[Event] = []
        n = start
        while True:
            try:
                r = self.request("READ_LOG", {"number": n})
            except errors.OutOfRange:
                return out  # nothing at or after n yet
            out.append(Event(
                number=r["number"], time=_utc(r["time_s"]), event=r["event"],
                role=m.ROLE_NAMES[r["role"]] if r["role"] < len(m.ROLE_NAMES) else "?",
                a=r["a"], b=r["b"],
            ))
            n = r["number"] + 1
            if n >= r["total"]:
                return out

    def set_telemetry(self, period_s: int) -> None:
        """Have the pump send TELEMETRY every period_s seconds (0: stop); see next_event()."""
        self.request("SET_TELEMETRY", {"period_s": period_s})

    def set_clock(self, when: datetime | None = None) -> datetime:
        """Set the pump clock (to now, by default); returns the pump's clock after."""
        t = int((when or datetime.now(tz=UTC)).timestamp())
        return _utc(self.request("SET_CLOCK", {"time_s": t})["time_s"])

    def set_continuous(self, daily_dose_mcg: Decimal | int | str, concentration: int) -> Message:
        """Program simple continuous infusion (daily dose in mcg/day, concentration in mcg/mL)."""
        return self.request(
            "SET_CONTINUOUS",
            {"daily_dose_ng": mcg_to_ng(daily_dose_mcg), "concentration": int(concentration)},
        )

    def enter_repl(self) -> Message:
        """Hand the board's link to the MicroPython REPL (to re-flash). Refused unless stopped."""
        return self.request("ENTER_REPL", {"confirm": m.REPL_CONFIRM})

    def stop(self, reason: str = "clinician_decision", *, confirm: bool = False) -> Message:
        """Stop delivery. The pump refuses unless confirm=True (it sends the confirmation)."""
        if reason not in _STOP_REASONS:
            raise ValueError(f"reason must be one of {', '.join(_STOP_REASONS)}")
        return self.request(
            "STOP", {"reason": reason, "confirm": m.STOP_CONFIRM if confirm else 0}
        )
