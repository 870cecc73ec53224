"""Raw frames on a pump's link, for the security and robustness suites: what a broken host, a
noisy line or an attacker would send, next to what PumpClient sends.

`RawClient` is a PumpClient (typed requests, sessions, retries as usual) that also keeps a
copy of every frame it wrote (`sent`: a captured frame can be replayed byte for byte) and
writes and reads raw bytes on the same link. It uses the one link the test opened, so the
suites run unchanged on a board, whose serial port only one program may hold.

Frames are built with protocol/host_codec.py (signed or not) or, for what no codec would
build (an unknown type, a bad version, a trailer that lies), by hand here.

Also for the suites: `as_role` (the same pump as another role, on the same link), `state` and
`log_total` (what a refused command must leave as it was).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cobs import cobs

from host import errors
from host.client import PumpClient
from protocol import host_codec
from protocol import messages as m
from protocol.host_codec import DecodeError, Message, Signer

Reply = Message | DecodeError


def crc(body: bytes) -> bytes:
    return struct.pack("<I", binascii.crc32(body))


def frame(mtype: int, seq: int, payload: bytes = b"", *, version: int = m.VERSION,
          flags: int = 0, trailer: bytes = b"") -> bytes:
    """A frame (before COBS) of any type, version and flags: header, payload, the trailer
    given (raw), CRC-32."""
    body = struct.pack(m.HEADER_FORMAT, version, mtype, flags, seq) + payload + trailer
    return body + crc(body)


def wire(frame_bytes: bytes) -> bytes:
    """A frame as it goes on the line: COBS and the 0x00 delimiter."""
    return cobs.encode(frame_bytes) + b"\x00"


def unwire(wire_bytes: bytes) -> bytes:
    """The frame inside one delimited COBS block."""
    return cobs.decode(wire_bytes.rstrip(b"\x00"))


def tamper(wire_bytes: bytes, at: int, xor: int = 0x01, *, fix_crc: bool = True) -> bytes:
    """A frame with one byte changed: `at` counts in the frame without its CRC (negative:
    from the end of it, so -1 is the tag's last byte of a signed frame). With fix_crc the
    CRC is made right again, as a forger would: only the tag can then tell."""
    f = bytearray(unwire(wire_bytes))
    body = f[: -m.CRC_SIZE]
    body[at] ^= xor
    return wire(bytes(body) + (crc(bytes(body)) if fix_crc else bytes(f[-m.CRC_SIZE:])))


def signed(name: str | int, seq: int, fields: dict[str, Any] | None, signer: Signer,
           counter: int) -> bytes:
    """A request signed in `signer`'s session with `counter`, ready for the line."""
    return host_codec.encode(name, seq, fields, signer=signer, counter=counter)


def unsigned(name: str | int, seq: int, fields: dict[str, Any] | None = None) -> bytes:
    return host_codec.encode(name, seq, fields)


def seq_of(wire_bytes: bytes) -> int:
    """The sequence number in a frame's header."""
    f = unwire(wire_bytes)
    return f[3] | f[4] << 8


def sign_raw(mtype: int, seq: int, payload: bytes, *, session: int, role: int, counter: int,
             key: bytes, nonce: bytes) -> bytes:
    """A signed frame with any session slot and role number (host_codec builds only the roles
    it knows), its tag made with `key` and `nonce` as the protocol says."""
    body = struct.pack(m.HEADER_FORMAT, m.VERSION, mtype, m.FLAG_AUTH, seq) + payload
    body += struct.pack(m.AUTH_FORMAT, session, role, counter)
    body += hmac.new(key, nonce + body, hashlib.sha256).digest()[: m.TAG_SIZE]
    return wire(body + crc(body))


def typed(msg: Message) -> errors.ProtocolError:
    """An ERROR answer as the exception PumpClient raises for it."""
    return errors.from_code(msg["code"], msg["reason"], msg["request_type"], msg["rule"],
                            msg["requested"], msg["allowed"], msg["wait_s"])


class RawClient(PumpClient):
    """PumpClient plus raw bytes on its link; `sent` holds every frame its requests wrote."""

    def __init__(self, url: str, **kw: Any):
        super().__init__(url, **kw)
        self.sent: list[bytes] = []
        self.stray: list[Reply] = []  # frames read while waiting for another's answer
        #: (bytes, s): write each request in pieces of that many bytes, that far apart
        self.dribble: tuple[int, float] = (0, 0.0)

    def __enter__(self) -> RawClient:
        self.open()
        return self

    def _write(self, wire: bytes) -> None:
        self.sent.append(bytes(wire))
        chunk, delay = self.dribble
        if chunk:
            self.send(wire, chunk=chunk, delay=delay)
        else:
            super()._write(wire)

    # -- raw bytes -------------------------------------------------------------------------

    def seq(self) -> int:
        """A sequence number this client has not used lately."""
        return self._next_seq()

    def send(self, data: bytes, *, chunk: int = 0, delay: float = 0.0) -> None:
        """Write bytes as they are (not recorded in `sent`); with chunk, that many at a time,
        `delay` s apart."""
        if self._port is None:
            raise errors.LinkError("client is not open")
        if not chunk:
            self._port.write(data)
            return
        for i in range(0, len(data), chunk):
            self._port.write(data[i : i + chunk])
            self._port.flush()
            if delay:
                time.sleep(delay)

    def replies(self, least: int = 0, quiet: float = 0.1, timeout: float = 5.0) -> list[Reply]:
        """Every frame the pump sent until it has sent at least `least` and then been quiet
        for `quiet` s (or `timeout` s have passed: a slow line may take a while to carry a
        long write to the pump)."""
        out: list[Reply] = self.stray
        self.stray = []
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline:
            before = len(self._buffer)
            self._read()
            got = list(self._frames())
            out += got
            if got or len(self._buffer) != before:
                last = time.monotonic()
            elif len(out) >= least and time.monotonic() - last >= quiet:
                break
        return out

    def answer(self, seq: int, timeout: float | None = None) -> Message:
        """The pump's answer with sequence number seq (other frames are kept in `stray`)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            for msg in self._frames():
                if isinstance(msg, Message) and msg.seq == seq:
                    return msg
                self.stray.append(msg)
            if time.monotonic() >= deadline:
                raise errors.NoResponse(f"{self.url}: no answer to seq {seq}")
            self._read()

    def exchange(self, data: bytes, seq: int, **kw: Any) -> Message:
        """Send raw bytes; the answer to seq, whatever its type."""
        self.send(data, **kw)
        return self.answer(seq)

    def call(self, data: bytes, seq: int, **kw: Any) -> Message:
        """Send raw bytes holding a request; its answer, or its refusal raised as the typed
        exception PumpClient would raise."""
        msg = self.exchange(data, seq, **kw)
        if msg.type == m.ERROR:
            raise typed(msg)
        return msg

    # -- sessions ----------------------------------------------------------------------------

    def new_session(self) -> None:
        """Forget this client's session: its next signed request opens a new one."""
        self._signer = None

    def session(self, role: str, key: bytes | None = None) -> Signer:
        """A new session (CHALLENGE) signing as `role` with `key` (default: the role's own)."""
        r = self.request("CHALLENGE")
        k = key if key is not None else self.keys[role]
        return Signer(r["session"], r["nonce"], role, k)


@contextmanager
def as_role(pump: PumpClient, role: str) -> Iterator[PumpClient]:
    """The same pump as another role, on the same link: `pump` closes its port while the
    other client holds it (a board's port is exclusive) and opens it again after."""
    pump.close()
    try:
        with PumpClient(pump.url, keys=pump.keys, role=role, timeout=pump.timeout,
                        retries=pump.retries, baudrate=pump.baudrate) as other:
            yield other
    finally:
        pump.open()


# -- what a refusal must leave as it was -------------------------------------------------------

#: Status fields that say what therapy runs (not the clock, totals or reservoir: they move as
#: delivery goes on, on a board between two reads).
THERAPY_FIELDS = ("mode", "phase", "daily_dose_mcg", "concentration_mcg_ml", "rate_ul_day",
                  "bolus", "alarms", "sessions")


def state(pump: PumpClient) -> dict[str, Any]:
    """The therapy as the pump reports it: program, profile, patient-bolus settings and the
    therapy fields of the status (reads any role may make)."""
    s = pump.status()
    pb = pump.patient_bolus_state()
    return {
        "program": pump.program(),
        "profile": pump.profile(),
        "patient_bolus": (pb.dose_mcg, pb.duration_s, pb.lockout_s, pb.max_per_day),
        "status": {name: getattr(s, name) for name in THERAPY_FIELDS},
    }


def log_total(pump: PumpClient) -> int:
    """Events logged so far: the number the next one gets."""
    return pump.read_log(0, 1).total
