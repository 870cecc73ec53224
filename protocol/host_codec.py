"""Host-side codec: construct structures built from the message table (protocol/spec.py, read
through protocol/messages.py).

Host only (imports construct); the board uses protocol/codec.py, which reads the same table in
its compact form (protocol/layouts.py).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass, field
from typing import Any

import construct as cs
from cobs import cobs

from protocol import messages as m
from protocol.framing import MAX_ENCODED

_INT_KINDS = {
    "B": cs.Int8ul,
    "H": cs.Int16ul,
    "I": cs.Int32ul,
    "b": cs.Int8sl,
    "h": cs.Int16sl,
    "i": cs.Int32sl,
}

ERROR_NAMES: dict[int, str] = {code: name for code, name, _ in m.ERRORS}
ERROR_CODES: dict[str, int] = {name: code for code, name, _ in m.ERRORS}
MESSAGE_NAMES: dict[int, str] = {row[0]: row[1] for row in m.MESSAGES}
MESSAGE_TYPES: dict[str, int] = {row[1]: row[0] for row in m.MESSAGES}


def _field(f: tuple) -> cs.Construct:
    name, kind, _lo, _hi, enum, _unit = f
    if kind == "str":
        sub: cs.Construct = cs.PascalString(cs.Int8ul, "utf8")
    elif kind == "list":
        sub = cs.PrefixedArray(cs.Int8ul, cs.Struct(*[_field(item) for item in enum]))
    elif kind.endswith("s"):
        sub = cs.Bytes(int(kind[:-1]))
    else:
        sub = _INT_KINDS[kind]
        if enum in m.FLAGS:
            sub = cs.FlagsEnum(sub, **{label: bit for bit, label in m.FLAGS[enum]})
        elif enum:
            sub = cs.Enum(sub, **{label: value for value, label in m.ENUMS[enum]})
    return name / sub


def _to_python(f: tuple, value: Any) -> Any:
    """A parsed field as plain Python: enum labels as str, flags as the list of names set,
    lists as lists of dicts."""
    kind, enum = f[1], f[4]
    if kind == "list":
        return [{g[0]: _to_python(g, item[g[0]]) for g in enum} for item in value]
    if enum in m.FLAGS:
        return [label for _bit, label in m.FLAGS[enum] if value[label]]
    if isinstance(value, cs.EnumIntegerString):
        return str(value)
    return value


def _to_construct(f: tuple, value: Any) -> Any:
    """A field as the caller gives it (flags also as a list of names) for construct."""
    kind, enum = f[1], f[4]
    if kind == "list":
        return [{g[0]: _to_construct(g, item[g[0]]) for g in enum} for item in value]
    if enum in m.FLAGS and isinstance(value, (list, tuple, set, frozenset)):
        bits = dict((label, bit) for bit, label in m.FLAGS[enum])
        return sum(bits[name] for name in set(value))
    return value


# Compiled: construct generates and caches Python code for each, several times faster.
PAYLOADS: dict[int, cs.Construct] = {
    row[0]: cs.Struct(*[_field(f) for f in row[3]], cs.Terminated).compile()
    for row in m.MESSAGES
}

# A decoded frame (after COBS) is a header, the payload (PAYLOADS[type]), the authentication
# trailer if the header's FLAG_AUTH says so, and a CRC-32 of all of it. The payload (the
# table's part: enums, bit sets, lists, text) is built and parsed by construct, compiled; the
# fixed bytes around it by struct and binascii: through construct, the header, trailer and CRC
# cost a round trip more than the payloads themselves (of a signed GET_STATUS and its STATUS
# answer, about 20 us of the 45 the host spent on them).
HEADER = struct.Struct("<BBBH")  # version, type, flags, sequence number
TRAILER = struct.Struct("<BBI")  # session, role, counter; then the tag (layout in messages.py)
CRC = struct.Struct("<I")
ROLE_VALUES: dict[str, int] = {label: value for value, label in m.ENUMS["role"]}
ROLE_LABELS: dict[int, str] = {value: label for value, label in m.ENUMS["role"]}


class DecodeError(Exception):
    """A frame the host cannot read; `code` is the protocol error name (e.g. BAD_CRC)."""

    def __init__(self, code: str, reason: str):
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Message:
    type: int
    seq: int
    fields: dict[str, Any] = field(default_factory=dict)
    version: int = m.VERSION
    flags: int = 0
    auth: dict[str, Any] | None = None  # session, role, counter, tag of a signed frame

    @property
    def name(self) -> str:
        return MESSAGE_NAMES.get(self.type, f"0x{self.type:02x}")

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]


def _plain(value: Any) -> Any:
    # Enum values parse as EnumIntegerString; give callers a plain label.
    if isinstance(value, cs.EnumIntegerString):
        return str(value)
    return value


FIELDS: dict[int, tuple] = {row[0]: row[3] for row in m.MESSAGES}


def _converter(f: tuple) -> Any:
    """What turns a parsed field into plain Python, or None if it already is."""
    kind, enum = f[1], f[4]
    if kind == "list" or enum in m.FLAGS:
        return lambda v: _to_python(f, v)
    if enum:
        return _plain  # a label, or the bare int of a value the enum does not name
    return None


# Per message type: (field name, converter or None), worked out once.
CONVERTERS: dict[int, list[tuple[str, Any]]] = {
    t: [(f[0], _converter(f)) for f in fields] for t, fields in FIELDS.items()
}


def type_of(name_or_type: str | int) -> int:
    if isinstance(name_or_type, int):
        return name_or_type
    return MESSAGE_TYPES[name_or_type]


def build_payload(mtype: int, fields: dict[str, Any]) -> bytes:
    if FIELDS.get(mtype) == ():  # no payload (GET_STATUS, CHALLENGE...): nothing to build
        return b""
    return PAYLOADS[mtype].build(_buildable(mtype, fields))


def _buildable(mtype: int, fields: dict[str, Any]) -> dict[str, Any]:
    return {f[0]: _to_construct(f, fields[f[0]]) for f in FIELDS.get(mtype, ()) if f[0] in fields}


@dataclass(frozen=True)
class Signer:
    """What signs a request: the session (slot and the pump's nonce), a role and its key."""

    session: int
    nonce: bytes
    role: str
    key: bytes


def build_frame(
    name_or_type: str | int,
    seq: int,
    fields: dict[str, Any] | None = None,
    *,
    version: int = m.VERSION,
    flags: int = 0,
    signer: Signer | None = None,
    counter: int = 0,
) -> bytes:
    """Header + payload (+ authentication trailer when signed) + CRC-32, before COBS."""
    mtype = type_of(name_or_type)
    payload = build_payload(mtype, fields or {})
    if signer is None:
        body = HEADER.pack(version, mtype, flags, seq) + payload
    else:
        # The trailer as far as the tag; the tag signs everything before it.
        role = signer.role if isinstance(signer.role, int) else ROLE_VALUES[signer.role]
        body = (HEADER.pack(version, mtype, flags | m.FLAG_AUTH, seq) + payload
                + TRAILER.pack(signer.session, role, counter))
        body += hmac.new(signer.key, signer.nonce + body, hashlib.sha256).digest()[: m.TAG_SIZE]
    return body + CRC.pack(binascii.crc32(body))


def encode(
    name_or_type: str | int, seq: int, fields: dict[str, Any] | None = None, **kw: Any
) -> bytes:
    # kw: version, flags, signer and counter, as build_frame takes them
    """Wire bytes: the COBS-encoded frame and its 0x00 delimiter."""
    return cobs.encode(build_frame(name_or_type, seq, fields, **kw)) + b"\x00"


def parse_frame(frame: bytes) -> Message:
    """Decode a frame (after COBS). Raises DecodeError with the protocol error the firmware
    would give, checked in the same order: size, CRC, version, flags, type, payload."""
    size = len(frame)
    if size > m.MAX_FRAME:
        raise DecodeError("OVERSIZE", f"frame of {size} bytes")
    if size < m.HEADER_SIZE + m.CRC_SIZE:
        raise DecodeError("TRUNCATED", f"frame of {size} bytes")
    end = size - m.CRC_SIZE
    if binascii.crc32(memoryview(frame)[:end]) != CRC.unpack_from(frame, end)[0]:
        raise DecodeError("BAD_CRC", "CRC mismatch")
    version, mtype, flags, seq = HEADER.unpack_from(frame)
    if version != m.VERSION:
        raise DecodeError("BAD_VERSION", f"version {version}")
    if flags & ~m.FLAGS_KNOWN:
        raise DecodeError("BAD_FLAGS", f"flags 0x{flags:02x}")
    if mtype not in PAYLOADS:
        raise DecodeError("UNKNOWN_TYPE", f"type 0x{mtype:02x}")
    auth = None
    if flags & m.FLAG_AUTH:
        if end - m.HEADER_SIZE < m.AUTH_SIZE:
            raise DecodeError("BAD_LENGTH", f"type 0x{mtype:02x}: trailer cut short")
        end -= m.AUTH_SIZE
        session, role, counter = TRAILER.unpack_from(frame, end)
        auth = {"session": session, "role": ROLE_LABELS.get(role, role), "counter": counter,
                "tag": bytes(frame[end + m.AUTH_FIXED : end + m.AUTH_SIZE])}
    try:
        payload = PAYLOADS[mtype].parse(frame[m.HEADER_SIZE : end])
    except (cs.ConstructError, struct.error, UnicodeDecodeError) as e:
        # Compiled payload parsers raise struct/Unicode errors where construct's own would
        # raise ConstructError: the same two outcomes either way.
        if isinstance(e, UnicodeDecodeError) or isinstance(e.__context__, UnicodeDecodeError):
            raise DecodeError("OUT_OF_RANGE", f"type 0x{mtype:02x}: text not UTF-8") from e
        raise DecodeError("BAD_LENGTH", f"type 0x{mtype:02x}: {e}") from e
    fields = {
        name: payload[name] if conv is None else conv(payload[name])
        for name, conv in CONVERTERS[mtype]
    }
    return Message(type=mtype, seq=seq, fields=fields, version=version, flags=flags, auth=auth)


def decode(wire: bytes) -> Message:
    """Decode one COBS block (with or without its trailing 0x00)."""
    if wire.endswith(b"\x00"):
        wire = wire[:-1]
    if len(wire) > MAX_ENCODED:
        raise DecodeError("OVERSIZE", f"{len(wire)} bytes before the delimiter")
    try:
        frame = cobs.decode(wire)
    except cobs.DecodeError as e:
        raise DecodeError("BAD_COBS", str(e)) from e
    return parse_frame(frame)
