"""Property tests of the two codecs built from the one message table, and a fuzz test of the
firmware's whole receive path with authentication.

- Hypothesis: for random valid field values of every message in protocol/messages.py (lists
  of random items within their counts, flag sets of random named bits), the host codec
  (construct; fields given with enum labels and flag names, or as plain integers) and the board
  Encoder (struct) produce the same bytes, and each side decodes the other's bytes to the same
  values. Frames shaped like a list (a count byte and that many items, or not) and flag sets
  with any bits: the board refuses the wrong ones, and what it accepts the host reads alike.
  Arbitrary frames (with and without the
  authentication flag and trailer): whatever the board accepts the host accepts with the same
  values and trailer. Signed requests: a frame the host signs (host_codec.Signer) decodes on
  the board with its trailer and passes the firmware's Guard.admit with the same key, nonce
  and session (or is refused WRONG_ROLE where the access table says so), and is refused
  BAD_TAG with any other key or nonce; the board's own signing (auth.frame_tag) gives the
  host's bytes.
- Fuzz: 100,000+ random and mutated byte strings (from valid unsigned and signed wire frames:
  bit flips, truncation, inserted zeros, splices, re-CRC'd header/payload/trailer edits,
  re-signing with the wrong key or nonce, replays, the trailer stripped) go through the
  firmware's own Loop (firmware/loop.py: read_input and answer, i.e. FrameReader ->
  codec.decode -> Guard.admit -> retry cache -> Guard.advance -> Dispatcher.handle -> Encoder;
  MicroPython's time faked, the keystore giving test keys), a fresh one per input, with 1 to
  4 sessions open. No exception may escape; every reply must be a frame the host can read;
  every answer must be what an independent model says (the access table, the tag by the
  standard library's HMAC, rising counters, the retry cache); and the pump's state may change
  only by a frame that the model says carries a valid tag, for an open session, from a role
  the access table allows. Unsigned commands must be refused AUTH_REQUIRED.
- The event log's record of refusals names only roles that were authenticated.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
import random
import struct
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from cobs import cobs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.core.guard import Guard
from firmware.core.store import MemoryFS
from protocol import auth, codec, framing
from protocol import host_codec as hc
from protocol import messages as m

if TYPE_CHECKING:  # (the fuzz test's annotations only: the codec tests need no dispatcher)
    from firmware.core.dispatch import Dispatcher
    from firmware.core.therapy import Therapy

LABELS = {name: dict(pairs) for name, pairs in m.ENUMS.items()}
KIND_RANGE = {
    "B": (0, 0xFF), "H": (0, 0xFFFF), "I": (0, 0xFFFFFFFF),
    "b": (-0x80, 0x7F), "h": (-0x8000, 0x7FFF), "i": (-0x80000000, 0x7FFFFFFF),
}
ROWS: list[Any] = list(m.MESSAGES)
REQUESTS = [r for r in ROWS if r[2] == "req"]
ROLES = (m.ROLE_PATIENT, m.ROLE_CLINICIAN, m.ROLE_SERVICE)


def find(mtype: int) -> Any:
    row = m.find(mtype)
    assert row is not None, f"type 0x{mtype:02x} is not in the table"
    return row


# -- helpers -----------------------------------------------------------------------------------

def is_flags(f: tuple) -> bool:
    return isinstance(f[4], str) and f[4] in m.FLAGS


def flag_bits(f: tuple) -> int:
    return sum(bit for bit, _label in m.FLAGS[f[4]]) if is_flags(f) else 0


def field_strategy(f: tuple) -> st.SearchStrategy[Any]:
    """Valid values of a field as the board codec takes them: a list as a tuple of item tuples
    (between its counts), a flag set as the int of some of its named bits."""
    name, kind, lo, hi, enum, _unit = f
    if kind == "str":
        return st.text(max_size=hi).filter(lambda s: len(s.encode("utf-8")) <= hi)
    if kind == "list":
        item = st.tuples(*[field_strategy(g) for g in enum])
        return st.lists(item, min_size=lo, max_size=hi).map(tuple)
    if kind.endswith("s"):
        n = int(kind[:-1])
        return st.binary(min_size=n, max_size=n)
    if is_flags(f):
        bits = [bit for bit, _label in m.FLAGS[enum]]
        return st.sets(st.sampled_from(bits)).map(sum).filter(lambda v: lo <= v <= hi)
    return st.integers(lo, hi)


def host_value(f: tuple, v: Any, labels: bool = True) -> Any:
    """A board value as the host gives it (labels=True: enum labels, flag names in FLAGS order,
    lists of dicts) or may take it (labels=False: plain integers)."""
    kind, enum = f[1], f[4]
    if kind == "list":
        return [{g[0]: host_value(g, x, labels) for g, x in zip(enum, item, strict=True)}
                for item in v]
    if is_flags(f):
        return [label for bit, label in m.FLAGS[enum] if v & bit] if labels else v
    if enum and labels:
        return LABELS[enum][v]
    return v


def to_host(row: tuple, values: tuple, labels: bool = True) -> dict[str, Any]:
    return {f[0]: host_value(f, v, labels) for f, v in zip(row[3], values, strict=True)}


def role_label(role: int) -> Any:
    return LABELS["role"].get(role, role)


def board_wire(mtype: int, seq: int, values: tuple) -> bytes:
    return bytes(codec.Encoder().encode(mtype, seq, values))


def board_decode_wire(wire: bytes, expect: str) -> tuple[codec.Decoded, bytearray]:
    reader = framing.FrameReader()
    results = [reader.push(b) for b in wire]
    assert results[-1] == framing.FRAME and all(r == framing.NOTHING for r in results[:-1])
    d = codec.Decoded()
    err = codec.decode(reader.frame, reader.length, d, expect)
    assert err == 0, f"board refuses {wire.hex()}: {d.reason}"
    return d, reader.frame


def raw_frame(mtype: int, seq: int, payload: bytes, version: int = m.VERSION,
              flags: int = 0) -> bytes:
    head = struct.pack("<BBBH", version, mtype, flags, seq) + payload
    return head + struct.pack("<I", binascii.crc32(head))


def recrc(body: bytes) -> bytes:
    return bytes(body) + struct.pack("<I", binascii.crc32(body))


def ref_tag(key: bytes, nonce: bytes, signed: bytes) -> bytes:
    """The tag as messages.py defines it, by the standard library (not protocol/auth.py)."""
    return hmac.new(key, nonce + signed, hashlib.sha256).digest()[: m.TAG_SIZE]


def board_sign(mtype: int, seq: int, payload: bytes, session: int, role: int, counter: int,
               key: bytes, nonce: bytes, flags: int = m.FLAG_AUTH) -> bytes:
    """A signed frame built board-side: struct + auth.frame_tag."""
    head = struct.pack("<BBBH", m.VERSION, mtype, flags, seq) + payload
    head += struct.pack("<BBI", session, role, counter)
    return recrc(head + auth.frame_tag(key, nonce, head))


def guard_with(keys: dict[int, bytes], session: int, nonce: bytes) -> Guard:
    """A fresh Guard with `nonce` open in slot `session` (the slots before it opened too)."""
    g = Guard(keys)
    for i in range(session):
        assert g.open(bytes([0xA0 + i]) * m.NONCE_SIZE) == i
    assert g.open(nonce) == session
    return g


def allowed(mtype: int, role: int) -> bool:
    need = m.ACCESS.get(mtype, m.ANY_ROLE)
    return need == m.OPEN or bool(need & (1 << role))


# -- hypothesis: the two codecs agree ----------------------------------------------------------

@pytest.mark.parametrize("row", ROWS, ids=[r[1] for r in ROWS])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_host_and_board_agree(row: tuple, data: st.DataObject) -> None:
    values = tuple(data.draw(field_strategy(f), label=f[0]) for f in row[3])
    seq = data.draw(st.integers(0, 0xFFFF), label="seq")
    fields = to_host(row, values)

    board = board_wire(row[0], seq, values)
    host = hc.encode(row[0], seq, fields)
    assert host == board, f"host {host.hex()} != board {board.hex()}"
    assert hc.encode(row[0], seq, to_host(row, values, labels=False)) == board, "as integers"

    # Host decodes the board's bytes ...
    msg = hc.decode(board)
    assert (msg.type, msg.seq, msg.flags, msg.version) == (row[0], seq, 0, m.VERSION)
    assert msg.fields == fields and msg.auth is None
    # ... and the board decodes the host's.
    d, _ = board_decode_wire(host, row[2])
    assert (d.type, d.seq) == (row[0], seq)
    assert tuple(d.values) == values and not d.auth


@settings(max_examples=2000, deadline=None)
@given(
    mtype=st.one_of(st.sampled_from([r[0] for r in ROWS]), st.integers(0, 255)),
    seq=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=m.MAX_PAYLOAD),
    version=st.sampled_from([m.VERSION, m.VERSION, m.VERSION, 0, 2]),
    flags=st.sampled_from([0, 0, 0, m.FLAG_AUTH, m.FLAG_AUTH, 0x80, 0x81, 0x02]),
    trailer=st.one_of(st.none(), st.binary(min_size=m.AUTH_SIZE, max_size=m.AUTH_SIZE),
                      st.binary(max_size=m.AUTH_SIZE + 2)),
)
def test_what_the_board_accepts_the_host_reads_alike(
    mtype: int, seq: int, payload: bytes, version: int, flags: int, trailer: bytes | None
) -> None:
    if trailer is not None:  # a trailer after a valid-length payload, often enough
        row = m.find(mtype)
        if row is not None and row[3] and all(f[1] not in ("str", "list") for f in row[3]):
            size = struct.calcsize("<" + "".join(f[1] for f in row[3]))
            payload = payload[:size].ljust(size, b"\x01")
        elif row is not None and not row[3]:
            payload = b""
        payload = (payload + trailer)[: m.MAX_PAYLOAD]
    frame = raw_frame(mtype, seq, payload, version, flags)
    wire = cobs.encode(frame) + b"\x00"
    try:
        msg: hc.Message | None = hc.decode(wire)
    except hc.DecodeError as e:
        assert e.code in hc.ERROR_CODES
        msg = None
    buf = bytearray(m.MAX_FRAME)
    buf[: len(frame)] = frame
    for expect in ("req", "resp", "event"):
        d = codec.Decoded()
        if codec.decode(buf, len(frame), d, expect) == 0:
            row = find(mtype)
            assert msg is not None, f"board accepts {frame.hex()} as {expect}, host refuses"
            assert msg.seq == seq and msg.type == mtype and msg.flags == flags
            assert msg.fields == to_host(row, tuple(d.values))
            if d.auth:
                assert msg.auth is not None
                assert (msg.auth["session"], msg.auth["role"], msg.auth["counter"]) == (
                    d.session, role_label(d.role), d.counter)
                assert msg.auth["tag"] == frame[d.tag_at : d.tag_at + m.TAG_SIZE]
            else:
                assert msg.auth is None


LIST_ROWS = [r for r in ROWS if r[3] and r[3][-1][1] == "list"]
FLAG_FIELDS = [(r, i) for r in ROWS for i, f in enumerate(r[3]) if is_flags(f)]


def fixed_size(fields: tuple) -> int:
    return struct.calcsize("<" + "".join(f[1] for f in fields if f[1] not in ("str", "list")))


def board_and_host(frame: bytes, expect: str) -> tuple[int, codec.Decoded, hc.Message | None]:
    """The board's error code and Decoded for a frame, and the host's Message (None if the
    host raises DecodeError)."""
    buf = bytearray(m.MAX_FRAME)
    buf[: len(frame)] = frame
    d = codec.Decoded()
    err = codec.decode(buf, len(frame), d, expect)
    try:
        msg: hc.Message | None = hc.decode(cobs.encode(frame) + b"\x00")
    except hc.DecodeError as e:
        assert e.code in hc.ERROR_CODES
        msg = None
    return err, d, msg


@pytest.mark.parametrize("row", LIST_ROWS, ids=[r[1] for r in LIST_ROWS])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), seq=st.integers(0, 0xFFFF))
def test_list_shaped_frames(row: tuple, data: st.DataObject, seq: int) -> None:
    # A list payload: valid fixed fields, a count byte (in its bounds or not) and a number of
    # items (that count, or another; each item's bytes random or valid). The board says
    # BAD_LENGTH if they disagree, else OUT_OF_RANGE if the count or an item is out of bounds,
    # else accepts; the host reads what the board accepts alike, and refuses the wrong length.
    f = row[3][-1]
    fixed = tuple(data.draw(field_strategy(g), label=g[0]) for g in row[3][:-1])
    item_size = fixed_size(f[4])
    room = (m.MAX_PAYLOAD - fixed_size(row[3]) - 1) // item_size
    count = data.draw(st.one_of(st.integers(f[2], f[3]), st.integers(0, 255)), label="count")
    n = data.draw(st.one_of(st.just(count), st.integers(0, room)), label="items")
    n = min(n, room)
    items = b""
    for k in range(n):
        if data.draw(st.booleans(), label=f"valid item {k}"):
            item = data.draw(st.tuples(*[field_strategy(g) for g in f[4]]), label=f"item {k}")
            items += struct.pack("<" + "".join(g[1] for g in f[4]), *item)
        else:
            items += data.draw(st.binary(min_size=item_size, max_size=item_size),
                               label=f"raw item {k}")
    payload = struct.pack("<" + "".join(g[1] for g in row[3][:-1]), *fixed) + bytes([count])
    payload += items
    err, d, msg = board_and_host(raw_frame(row[0], seq, payload), row[2])
    if count != n:
        assert err == m.ERR_BAD_LENGTH, (count, n, d.reason)
        assert msg is None, "the host reads a list whose count disagrees with its length"
        return
    assert msg is not None, "a list of the right length: the host reads it"
    host_items = msg[f[0]]
    assert len(host_items) == n
    in_range = f[2] <= n <= f[3]
    for k in range(n):
        raw = struct.unpack_from("<" + "".join(g[1] for g in f[4]), items, k * item_size)
        in_range = in_range and all(g[2] <= v <= g[3] for g, v in zip(f[4], raw, strict=True))
    if not in_range:
        assert err == m.ERR_OUT_OF_RANGE, d.reason
        return
    assert err == 0, d.reason
    assert msg.fields == to_host(row, tuple(d.values))
    assert board_wire(row[0], seq, tuple(d.values)) == cobs.encode(
        raw_frame(row[0], seq, payload)) + b"\x00", "the board encodes it back alike"


@pytest.mark.parametrize("where", FLAG_FIELDS, ids=[f"{r[1]}.{r[3][i][0]}" for r, i in
                                                    FLAG_FIELDS])
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_flag_sets_any_bits(where: tuple, data: st.DataObject) -> None:
    # A flag set with any bits its integer holds: the board accepts it iff every bit is named
    # (and then the host gives the same names); with an unknown bit the board refuses it
    # OUT_OF_RANGE while the host's parse gives the named bits only.
    row, i = where
    f = row[3][i]
    values = list(data.draw(st.tuples(*[field_strategy(g) for g in row[3]]), label="values"))
    width = 8 * struct.calcsize("<" + f[1])
    values[i] = data.draw(st.integers(0, (1 << width) - 1), label=f[0])
    payload = hc.build_payload(row[0], to_host(row, tuple(values), labels=False))
    err, d, msg = board_and_host(raw_frame(row[0], 1, payload), row[2])
    assert msg is not None
    named = [label for bit, label in m.FLAGS[f[4]] if values[i] & bit]
    assert msg[f[0]] == named
    if values[i] & ~flag_bits(f):
        assert err == m.ERR_OUT_OF_RANGE and f[0] in d.reason, d.reason
    else:
        assert err == 0, d.reason
        assert msg.fields == to_host(row, tuple(d.values))


@pytest.mark.parametrize("row", REQUESTS, ids=[r[1] for r in REQUESTS])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    seq=st.integers(0, 0xFFFF),
    session=st.integers(0, m.SESSIONS - 1),
    role=st.sampled_from(ROLES),
    counter=st.integers(1, 0xFFFFFFFF),
    key=st.binary(min_size=m.KEY_SIZE, max_size=m.KEY_SIZE),
    nonce=st.binary(min_size=m.NONCE_SIZE, max_size=m.NONCE_SIZE).filter(any),
)
def test_host_signed_frames_pass_the_guard(
    row: tuple, data: st.DataObject, seq: int, session: int, role: int, counter: int,
    key: bytes, nonce: bytes,
) -> None:
    values = tuple(data.draw(field_strategy(f), label=f[0]) for f in row[3])
    fields = to_host(row, values)
    signer = hc.Signer(session, nonce, role_label(role), key)
    wire = hc.encode(row[0], seq, fields, signer=signer, counter=counter)

    # The board reads the trailer ...
    d, frame = board_decode_wire(wire, "req")
    assert (d.type, d.seq, tuple(d.values)) == (row[0], seq, values)
    assert d.auth and (d.session, d.role, d.counter) == (session, role, counter)
    length = len(cobs.decode(wire[:-1]))
    assert d.tag_at == length - m.CRC_SIZE - m.TAG_SIZE
    # ... and the guard with the same key and nonce admits it (if the role may send it).
    g = guard_with({role: key}, session, nonce)
    code = g.admit(d, frame)
    assert code == (0 if allowed(row[0], role) else m.ERR_WRONG_ROLE), g.reason
    if code == 0:
        assert g.advance(d) == 0 and g.counters[session] == counter
        assert g.advance(d) == m.ERR_REPLAY
    # Any other key or nonce: BAD_TAG.
    other_key = bytes(b ^ 0x01 for b in key)
    assert guard_with({role: other_key}, session, nonce).admit(d, frame) == m.ERR_BAD_TAG
    other_nonce = bytes(b ^ 0x80 for b in nonce)
    assert guard_with({role: key}, session, other_nonce).admit(d, frame) == m.ERR_BAD_TAG
    # The host reads its own trailer back; the board signs the same bytes.
    msg = hc.decode(wire)
    assert msg.auth == {"session": session, "role": role_label(role), "counter": counter,
                        "tag": bytes(frame[d.tag_at : d.tag_at + m.TAG_SIZE])}
    payload = hc.build_payload(row[0], fields)
    assert board_sign(row[0], seq, payload, session, role, counter, key, nonce) == bytes(
        frame[:length])


# -- fuzz: the receive path never breaks, and never changes the pump without a valid tag --------

STEP_NL = 250
FULL_NL = 20_000_000
IDENTITY = (b"\x01\x02\x03\x04\x05\x06\x07\x08", "0.1.0-fuzz")
FUZZ_CASES = int(os.environ.get("INTRAPUMP_FUZZ_CASES", "100000"))  # make fuzz: 1,000,000
KEYS = {role: hashlib.sha256(b"fuzz key %d" % role).digest() for role in ROLES}
NONCES = [hashlib.sha256(b"fuzz nonce %d" % s).digest()[: m.NONCE_SIZE]
          for s in range(m.SESSIONS)]
OTHER_KEY = hashlib.sha256(b"not provisioned").digest()
OTHER_NONCE = hashlib.sha256(b"never issued").digest()[: m.NONCE_SIZE]
# Requests that change the pump (not read-only), and the ones a confirmation word guards.
COMMANDS = [r[0] for r in REQUESTS if r[0] not in m.READ_ONLY]


def _snapshot(obj: Any, skip: tuple = ()) -> Any:
    """An object's attributes as plain values, nested objects (infusions, window, alarms)
    included, so that two snapshots compare equal exactly when nothing changed."""
    if hasattr(obj, "__dict__"):
        return sorted((k, _snapshot(v)) for k, v in vars(obj).items() if k not in skip)
    if isinstance(obj, list | tuple):
        return [_snapshot(v) for v in obj]
    return obj


def pump_state(therapy: Therapy, d: Dispatcher) -> tuple:
    """Everything the therapy and its pump hold, and what the dispatcher holds that is not
    bookkeeping (counters of refusals, the log and when it last took an unproven refusal,
    the role of the request being handled)."""
    ours = {k: v for k, v in vars(d).items()
            if k not in ("therapy", "pump", "log", "guard", "random_bytes", "frame_errors",
                         "error_counts", "_handlers", "board_id", "fw_version",
                         "_last_unproven")}
    return (_snapshot(therapy, ("log", "role")), sorted(ours.items()))


def values_for(rnd: random.Random, row: tuple) -> list[Any]:
    return values_of(rnd, row[3])


def values_of(rnd: random.Random, fields: tuple) -> list[Any]:
    """Values for the fields, at and around their bounds: a list's count too (its items'
    fields likewise); flag sets as integers (one past the range is an unknown bit)."""
    values: list[Any] = []
    for f in fields:
        kind, lo, hi = f[1], f[2], f[3]
        if kind == "list":
            n = rnd.choice([lo, hi, rnd.randint(lo, hi), rnd.randint(lo, hi), lo - 1, hi + 1])
            values.append([values_of(rnd, f[4]) for _ in range(min(max(n, 0), 255))])
        elif kind == "str":
            values.append("".join(rnd.choice("ab\u00e9\u2713 ") for _ in
                                  range(rnd.randint(0, hi // 3))))
        elif kind.endswith("s"):
            values.append(rnd.randbytes(int(kind[:-1])))
        else:
            kmin, kmax = KIND_RANGE[kind]
            pick = rnd.choice([lo, hi, rnd.randint(lo, hi), rnd.randint(lo, hi), lo - 1, hi + 1])
            values.append(min(max(pick, kmin), kmax))
    return values


def pack(row: tuple, values: list[Any]) -> bytes:
    return pack_fields(row[3], values)


def pack_fields(fields: tuple, values: list[Any]) -> bytes:
    payload = b""
    for f, v in zip(fields, values, strict=True):
        if f[1] == "str":
            raw = v.encode()
            payload += bytes([len(raw)]) + raw
        elif f[1] == "list":
            payload += bytes([len(v)]) + b"".join(pack_fields(f[4], item) for item in v)
        else:
            payload += struct.pack("<" + f[1], v)
    return payload


def seed_frames(rnd: random.Random) -> list[bytes]:
    """Valid and near-valid frames (before COBS) to mutate: every message type unsigned; every
    request signed by every role (and role 0 and 4) in every session, mostly with the right
    key and nonce; boundary and out-of-range values; wrong confirmation words."""
    frames = []
    for row in ROWS:
        for _ in range(6):
            payload = pack(row, values_for(rnd, row))
            frames.append(raw_frame(row[0], rnd.randint(1, 0xFFFF), payload))
    for row in REQUESTS:
        for role in (*ROLES, *ROLES, *ROLES, 0, 4):
            for _ in range(2):
                session = rnd.choice([0, 1, 2, 3, 0, 1, 2, 3, 4, 255])
                key = KEYS.get(role, OTHER_KEY)
                nonce = NONCES[session] if session < m.SESSIONS else OTHER_NONCE
                if rnd.random() < 0.1:
                    key = rnd.choice([OTHER_KEY, *KEYS.values()])
                if rnd.random() < 0.1:
                    nonce = rnd.choice([OTHER_NONCE, *NONCES])
                counter = rnd.choice([0, 1, 2, 3, rnd.randint(1, 50), rnd.randint(1, 50),
                                      0xFFFFFFFF, rnd.randint(1, 0xFFFFFFFF)])
                frames.append(board_sign(row[0], rnd.randint(1, 0xFFFF),
                                         pack(row, values_for(rnd, row)), session, role,
                                         counter, key, nonce))
    # The commands, rightly signed by the clinician, with and without their words.
    for session in range(m.SESSIONS):
        for k, (mtype, payload) in enumerate((
            (m.STOP, struct.pack("<BI", 1, m.STOP_CONFIRM)),
            (m.STOP, struct.pack("<BI", 4, m.STOP_CONFIRM)),
            (m.STOP, struct.pack("<BI", 2, 0)),
            (m.SET_CONTINUOUS, struct.pack("<IB", 400_000, 0)),
            (m.SET_CONTINUOUS, struct.pack("<IB", 20_000_000, m.CONFIRM_HIGH_DOSE)),
            (m.ENTER_REPL, struct.pack("<I", m.REPL_CONFIRM)),
            (m.ENTER_REPL, struct.pack("<I", m.STOP_CONFIRM)),
            # The therapy set-up and its commands, valid as they stand.
            (m.SET_PROFILE, struct.pack("<BBBIIII", 1, 40, 2, 1_500_000, 200_000, 0, 0)),
            (m.REFILL_BEGIN, b""),
            (m.REFILL_COMMIT, struct.pack("<IIBHHB", 0, 20_000_000, 1, 500, 500, 0)),
            (m.SET_FLEX, struct.pack("<BhBHIHI", 0, 60, 2, 0, 400_000, 1320, 480_000)),
            (m.BOLUS, struct.pack("<II", 25_000, 600)),
            (m.SUSPEND, struct.pack("<BI", 1, m.STOP_CONFIRM)),
            (m.RESUME, b""),
            (m.SET_PATIENT_BOLUS, struct.pack("<IIIB", 20_000, 600, 3600, 4)),
            (m.SET_TAPER, struct.pack("<IBB", 100_000, 21, m.CONFIRM_LARGE_DECREASE)),
        )):
            frames.append(board_sign(mtype, rnd.randint(1, 0xFFFF), payload, session,
                                     m.ROLE_CLINICIAN, 1 + k + 10 * session,
                                     KEYS[m.ROLE_CLINICIAN], NONCES[session]))
    for confirm in (m.STOP_CONFIRM, m.REPL_CONFIRM, 0):  # unsigned: AUTH_REQUIRED
        for reason in (1, 2, 3, 4):
            frames.append(raw_frame(m.STOP, rnd.randint(1, 0xFFFF),
                                    struct.pack("<BI", reason, confirm)))
        frames.append(raw_frame(m.ENTER_REPL, rnd.randint(1, 0xFFFF),
                                struct.pack("<I", confirm)))
    return frames


def mutate(rnd: random.Random, frames: list[bytes], signed: list[bytes],
           wires: list[bytes]) -> bytes:
    op = rnd.randrange(17)
    w = bytearray(rnd.choice(wires))
    if op == 0:  # random bytes, with a few zeros
        n = rnd.randint(0, 300)
        return bytes(0 if rnd.random() < 0.05 else rnd.randint(1, 255) for _ in range(n))
    if op == 1:  # flip bits
        for _ in range(rnd.randint(1, 3)):
            i = rnd.randrange(len(w))
            w[i] ^= 1 << rnd.randrange(8)
        return bytes(w)
    if op == 2:  # truncate (maybe still delimited)
        cut = rnd.randrange(len(w))
        return bytes(w[:cut]) + (b"\x00" if rnd.random() < 0.7 else b"")
    if op == 3:  # insert zeros
        for _ in range(rnd.randint(1, 3)):
            w.insert(rnd.randrange(len(w) + 1), 0)
        return bytes(w)
    if op == 4:  # splice two frames
        other = rnd.choice(wires)
        return bytes(w[: rnd.randrange(len(w) + 1)]) + other[rnd.randrange(len(other)):]
    if op == 5:  # a valid frame, maybe after junk
        junk = bytes(rnd.randint(0, 255) for _ in range(rnd.choice([0, 0, 1, 5, 40])))
        return junk + bytes(w)
    if op in (6, 11):  # edit header, payload or trailer, then fix the CRC: the deeper checks
        f = bytearray(rnd.choice(signed if op == 11 else frames)[: -m.CRC_SIZE])
        for _ in range(rnd.randint(1, 2)):
            i = rnd.randrange(len(f)) if op == 6 else len(f) - rnd.randrange(1, m.AUTH_SIZE + 1)
            f[i] = rnd.choice([0, 1, 2, 3, 4, 0x80, 0xFF, rnd.randrange(256), f[i] ^ 1])
        if rnd.random() < 0.2:
            f = f[: rnd.randrange(m.HEADER_SIZE, len(f) + 1)] + rnd.randbytes(rnd.randint(0, 3))
        return cobs.encode(recrc(bytes(f))) + b"\x00"
    if op == 7:  # delete bytes
        for _ in range(rnd.randint(1, 3)):
            if w:
                del w[rnd.randrange(len(w))]
        return bytes(w)
    if op == 8:  # several frames in a row (replays among them)
        return b"".join(rnd.choice(wires) for _ in range(rnd.randint(2, 5)))
    if op == 9:  # overlong: around the largest block the reader holds, and past it
        block = bytes(w[:-1]) or b"\x01"
        size = rnd.choice([framing.MAX_ENCODED - 1, framing.MAX_ENCODED,
                           framing.MAX_ENCODED + 1, rnd.randint(2, 600)])
        return (block * (size // len(block) + 1))[:size] + b"\x00"
    if op == 10:  # replace a byte
        w[rnd.randrange(len(w))] = rnd.randrange(256)
        return bytes(w)
    if op == 12:  # the same signed frame again, maybe after another
        one = cobs.encode(rnd.choice(signed)) + b"\x00"
        mid = rnd.choice([b"", rnd.choice(wires)])
        return one + mid + one
    if op == 13:  # re-sign a signed frame's content with a wrong key or nonce
        f = rnd.choice(signed)
        at = len(f) - m.CRC_SIZE - m.TAG_SIZE
        key = rnd.choice([OTHER_KEY, *KEYS.values()])
        nonce = rnd.choice([OTHER_NONCE, *NONCES])
        body = f[:at] + ref_tag(key, nonce, f[:at])
        return cobs.encode(recrc(body)) + b"\x00"
    if op == 14:  # toggle the AUTH flag (drop or add a trailer's meaning), fix the CRC
        f = bytearray(rnd.choice(frames)[: -m.CRC_SIZE])
        f[2] ^= m.FLAG_AUTH
        return cobs.encode(recrc(bytes(f))) + b"\x00"
    if op == 15:  # strip the trailer of a signed frame (clear the flag): an unsigned command
        f = bytearray(rnd.choice(signed)[: -m.CRC_SIZE - m.AUTH_SIZE])
        f[2] &= ~m.FLAG_AUTH
        return cobs.encode(recrc(bytes(f))) + b"\x00"
    return bytes(w)  # unchanged


class Model:
    """What the pump should answer, from the protocol's documents alone: the access table,
    the tag by the standard library's HMAC, one role per session, counters that must rise,
    a retry cache per session (and one for unsigned requests)."""

    UNSIGNED = m.SESSIONS  # the cache slot of unsigned requests

    def __init__(self, n_open: int):
        self.nonces = {s: NONCES[s] for s in range(n_open)}
        self.counters = dict.fromkeys(range(m.SESSIONS), 0)
        self.roles = dict.fromkeys(range(m.SESSIONS), 0)  # bound by the first accepted
        # per cache slot: (seq, CRC) of its last command, and that command's answer
        self.answered: dict[int, tuple[int, bytes]] = {}
        self.cached: dict[int, bytes] = {}

    def slot(self, frame: bytes) -> int:
        if not frame[2] & m.FLAG_AUTH:
            return self.UNSIGNED
        return frame[len(frame) - 4 - m.AUTH_SIZE]

    def admit(self, frame: bytes, mtype: int) -> int:
        need = m.ACCESS.get(mtype, m.ANY_ROLE)
        if not frame[2] & m.FLAG_AUTH:
            return 0 if need == m.OPEN else m.ERR_AUTH_REQUIRED
        n = len(frame)
        session, role, _counter = struct.unpack_from("<BBI", frame, n - 4 - m.AUTH_SIZE)
        if session not in self.nonces:
            return m.ERR_NO_SESSION
        if role not in KEYS:
            return m.ERR_NO_KEY
        at = n - m.CRC_SIZE - m.TAG_SIZE
        if ref_tag(KEYS[role], self.nonces[session], frame[:at]) != frame[at : n - m.CRC_SIZE]:
            return m.ERR_BAD_TAG
        if self.roles[session] and self.roles[session] != role:
            return m.ERR_WRONG_ROLE
        if need != m.OPEN and not need & (1 << role):
            return m.ERR_WRONG_ROLE
        return 0

    def advance(self, frame: bytes) -> int:
        if not frame[2] & m.FLAG_AUTH:
            return 0
        session, role, counter = struct.unpack_from("<BBI", frame, len(frame) - 4 - m.AUTH_SIZE)
        if counter <= self.counters[session]:
            return m.ERR_REPLAY
        self.counters[session] = counter
        self.roles[session] = role
        return 0

    def predict(self, frame: bytes) -> tuple[str, Any]:
        """("codec", code), ("guard", code), ("cached", reply) or ("handled", Decoded)."""
        d = codec.Decoded()
        err = codec.decode(bytearray(frame), len(frame), d)
        if err:
            return "codec", err
        code = self.admit(frame, d.type)
        if code:
            return "guard", code
        slot = self.slot(frame)
        if d.type not in m.ANSWERED_AFRESH and self.answered.get(slot) == (
            d.seq, frame[-m.CRC_SIZE:]
        ):
            return "cached", self.cached[slot]
        code = self.advance(frame)
        if code:
            return "guard", code
        return "handled", d


class FakeLink:
    def __init__(self, data: bytes):
        self.data = data
        self.at = 0
        self.writes: list[bytes] = []

    def read_byte(self) -> int:
        if self.at >= len(self.data):
            return -1
        self.at += 1
        return self.data[self.at - 1]

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))


class FakePorts:
    """board.Ports at rest: no needle, no blockage."""

    def read(self, inp: Any) -> None:
        inp.pressure = 6000

    def valves(self, refill_open: bool, cap_open: bool) -> None:
        pass


class FakeBuzzer:
    def sound(self, level: int) -> None:
        pass


class FakeBoard:
    def __init__(self, link: FakeLink, random_bytes: Any):
        self.link = link
        self.random_bytes = random_bytes
        self.fs = MemoryFS()
        self.ports = FakePorts()
        self.buzzer = FakeBuzzer()
        self.fed = 0
        self.watchdog = False
        self.repl = False

    def start_watchdog(self) -> None:
        self.watchdog = True

    def feed(self) -> None:
        self.fed += 1

    def reboot_to_repl(self) -> None:
        self.repl = True

    def unique_id(self) -> bytes:
        return IDENTITY[0]

    def reset_cause(self) -> int:
        return 1

    def battery_mv(self) -> int:
        return 3900


class FakeTime:
    """MicroPython's time, as much of it as Loop.__init__ and Loop.answer use."""

    @staticmethod
    def ticks_ms() -> int:
        return 0

    @staticmethod
    def ticks_diff(a: int, b: int) -> int:
        return a - b

    @staticmethod
    def time() -> int:
        return CLOCK_AT_BOOT


CLOCK_AT_BOOT = 1_767_225_600  # 2026-01-01


@pytest.fixture
def firmware_loop(monkeypatch: pytest.MonkeyPatch) -> Any:
    """firmware/loop.py on CPython: MicroPython's time faked, the keystore giving KEYS."""
    from firmware import keystore
    from firmware import loop as loop_mod

    monkeypatch.setattr(loop_mod, "time", FakeTime)
    monkeypatch.setattr(keystore, "load", lambda path=None: dict(KEYS))
    return loop_mod


def read_reply(wire: bytes) -> tuple[int, int, tuple[Any, ...], str]:
    """(type, seq, values, "") of a reply, or (type, seq, (), reason) if it is not one the
    host can read as a response (the board's own codec, expect="resp")."""
    reader = framing.FrameReader()
    results = [reader.push(b) for b in wire]
    assert results[-1] == framing.FRAME and set(results[:-1]) <= {framing.NOTHING}, wire.hex()
    d = codec.Decoded()
    if codec.decode(reader.frame, reader.length, d, "resp"):
        return d.type, d.seq, (), d.reason
    return d.type, d.seq, tuple(d.values), ""


class Checker:
    """Wraps Loop.answer: the model predicts each answer, the real Loop.answer gives it."""

    def __init__(self, loop: Any, model: Model, stats: Counter):
        self.loop, self.model, self.stats = loop, model, stats
        self.real_answer = type(loop).answer

    def state(self) -> tuple:
        return pump_state(self.loop.therapy, self.loop.dispatcher)

    def answer(self) -> None:
        loop, model, stats = self.loop, self.model, self.stats
        frame = bytes(loop.reader.frame[: loop.reader.length])
        kind, what = model.predict(frame)
        before = self.state()
        writes = loop.board.link.writes
        n = len(writes)
        self.real_answer(loop)
        assert len(writes) == n + 1, "one reply per frame"
        reply = writes[-1]
        rtype, seq, values, bad = read_reply(reply)
        after = self.state()
        if kind == "codec":
            stats[hc.ERROR_NAMES[what]] += 1
            assert rtype == m.ERROR and values[0] == what, (frame.hex(), values)
            assert after == before, "a frame the codec refused changed the pump"
            return
        if kind == "guard":
            stats[hc.ERROR_NAMES[what]] += 1
            assert rtype == m.ERROR and values[0] == what, (
                f"guard: {values}, model says {hc.ERROR_NAMES[what]}: {frame.hex()}")
            assert after == before, f"a refused frame changed the pump: {frame.hex()}"
            if frame[1] in (m.SET_CONTINUOUS, m.STOP) and what == m.ERR_AUTH_REQUIRED:
                stats["unsigned command refused"] += 1
            return
        if kind == "cached":
            assert reply == what, "a retry gets the first answer again"
            assert after == before, "a retried command ran again"
            stats["retry answered from cache"] += 1
            return
        d = what
        signed = "ok signed " if d.auth else "ok "
        stats[signed + find(d.type)[1]] += 1
        assert not bad, f"unreadable reply: {bad}"
        assert seq == d.seq, "the reply carries the request's seq"
        if rtype == m.ERROR:
            # What the pump itself refuses (the codec's and guard's refusals came before).
            assert values[0] in (m.ERR_OUT_OF_RANGE, m.ERR_NOT_CONFIRMED, m.ERR_INVALID_STATE,
                                 m.ERR_LIMIT, m.ERR_TOO_SOON, m.ERR_INTERNAL), values
            assert values[0] != m.ERR_INTERNAL, f"firmware fault on {frame.hex()}: {values}"
            assert after == before, f"a refused command changed the pump: {frame.hex()}"
            stats["refused " + hc.ERROR_NAMES[values[0]]] += 1
        else:
            assert rtype == d.type | 0x80, (rtype, d.type)
        if rtype == m.CHALLENGE_OK:  # the model learns the new session
            model.nonces[values[0]] = bytes(values[1])
            model.counters[values[0]] = 0
            model.roles[values[0]] = 0
        if d.type not in m.ANSWERED_AFRESH:
            slot = model.slot(frame)
            model.answered[slot] = (d.seq, frame[-m.CRC_SIZE:])
            model.cached[slot] = reply
        if after != before:
            # Only an authenticated command (the model checked its tag) changes the pump.
            assert d.auth and d.type in COMMANDS, f"state changed by {frame.hex()}"
            assert allowed(d.type, d.role)
            stats["changed by " + find(d.type)[1]] += 1
        therapy, dvalues = loop.therapy, d.values
        if rtype == m.STOPPED:  # only a confirmed stop stops
            assert d.type == m.STOP and dvalues[1] == m.STOP_CONFIRM
            assert therapy.mode == m.MODE_STOPPED and therapy.stop_reason == dvalues[0]
            assert loop.pump.ms_until_next() < 0 or loop.pump.volume_nl < loop.pump.step_nl
        if rtype == m.CONTINUOUS_OK:  # the program asked for is the one in force
            assert values[1] == dvalues[0] == therapy.daily_ng
            assert therapy.mode == m.MODE_CONTINUOUS
        if rtype == m.REPL_OK:
            assert d.type == m.ENTER_REPL and tuple(dvalues) == (m.REPL_CONFIRM,)
            assert loop.dispatcher.repl_requested


def new_loop(loop_mod: Any, data: bytes, entropy: random.Random) -> Any:
    return loop_mod.Loop(FakeBoard(FakeLink(data), entropy.randbytes))


def run_case(loop_mod: Any, data: bytes, n_open: int, running: tuple | None, seed: int,
             stats: Counter) -> bool:
    """Feed one input to a fresh Loop; return whether the pump's state changed."""
    loop = new_loop(loop_mod, data, random.Random(seed))
    for s in range(n_open):
        loop.guard.open(NONCES[s])
    if running:  # a profile, a full reservoir, perhaps a program, some time gone by
        t = loop.therapy
        t.set_profile(m.ORIGIN_SPINAL, 40, m.PHASE_TITRATION, 1_500_000, 200_000, 0, 0)
        t.refill_begin()
        t.refill_commit(0, 20_000_000, m.DRUG_BACLOFEN, running[1], running[1], 0)
        if running[0]:
            t.set_continuous(running[0], 0)
        t.advance(running[2])
    checker = Checker(loop, Model(n_open), stats)
    loop.answer = checker.answer
    before = checker.state()
    link = loop.board.link
    while link.at < len(data):
        loop.read_input()
    for w in link.writes:  # every reply, the link errors' too, is a frame the host reads
        rtype, seq, values, bad = read_reply(w)
        assert not bad, w.hex()
        if rtype == m.ERROR and values[0] in (m.ERR_BAD_COBS, m.ERR_OVERSIZE):
            assert seq == m.SEQ_UNSOLICITED and values[1] == 0, values
            stats[hc.ERROR_NAMES[values[0]]] += 1
    return checker.state() != before


def test_fuzz_receive_path(firmware_loop: Any) -> None:
    rnd = random.Random(20240601)
    frames = seed_frames(rnd)
    signed = [f for f in frames if f[2] & m.FLAG_AUTH]
    wires = [cobs.encode(f) + b"\x00" for f in frames]
    stats: Counter = Counter()
    changes = 0
    for case in range(FUZZ_CASES):
        data = mutate(rnd, frames, signed, wires)
        running = None
        if case % 2:
            running = (rnd.choice([0, 400_000, 412_500, 1000]), rnd.choice([500, 50, 2000]),
                       rnd.randrange(100_000))
        n_open = rnd.choice([1, 2, 3, 4, 4, 4])
        try:
            changes += run_case(firmware_loop, data, n_open, running, case, stats)
        except Exception as e:  # report the input that broke it
            raise AssertionError(f"case {case}: {n_open} sessions open, running {running}, "
                                 f"input {data.hex()}: {e!r}") from e
    print(f"\nfuzz: {FUZZ_CASES} cases, {changes} changed the pump; {dict(stats)}")
    # The fuzz reached every check, every refusal of the guard and every request.
    for name in ("OVERSIZE", "TRUNCATED", "BAD_CRC", "BAD_COBS", "BAD_VERSION",
                 "UNKNOWN_TYPE", "BAD_LENGTH", "OUT_OF_RANGE", "BAD_FLAGS",
                 "AUTH_REQUIRED", "NO_SESSION", "NO_KEY", "BAD_TAG", "REPLAY", "WRONG_ROLE"):
        assert stats[name] > 0, f"fuzz never produced {name}: {dict(stats)}"
    for row in REQUESTS:
        assert stats["ok signed " + row[1]] > 0, f"fuzz never admitted a signed {row[1]}"
    for name in ("GET_INFO", "CHALLENGE"):
        assert stats["ok " + name] > 0, f"fuzz never answered an unsigned {name}"
    assert stats["changed by SET_CONTINUOUS"] > 0 and stats["changed by STOP"] > 0
    assert stats["unsigned command refused"] > 100
    assert stats["retry answered from cache"] > 0
    assert changes > 100, f"only {changes} state changes"


# -- refusals in the event log ---------------------------------------------------------------

def test_refusal_log_names_only_authenticated_roles(firmware_loop: Any) -> None:
    """A refused frame is logged with the role that sent it only if that role is proven
    (WRONG_ROLE, REPLAY: the tag matched); a frame whose tag was not checked or did not match
    (NO_SESSION, NO_KEY, BAD_TAG) proves nothing, and must not put a role in the log, nor
    one outside the LOG_PAGE range 0..3. Unproven refusals, which anyone can send, are
    logged at most once a minute (they are all counted): the first is, the next two not."""
    loop = new_loop(firmware_loop, b"", random.Random(1))
    slot = loop.guard.open(NONCES[0])
    clin = m.ROLE_CLINICIAN
    frames = [
        # (frame, the refusal, the role the log may name)
        (board_sign(m.STOP, 1, struct.pack("<BI", 1, m.STOP_CONFIRM), slot, clin, 1,
                    OTHER_KEY, NONCES[0]), m.ERR_BAD_TAG, 0),
        (board_sign(m.STOP, 2, struct.pack("<BI", 1, m.STOP_CONFIRM), 3, clin, 1,
                    KEYS[clin], NONCES[0]), m.ERR_NO_SESSION, 0),
        (board_sign(m.GET_STATUS, 3, b"", slot, 4, 1, OTHER_KEY, NONCES[0]), m.ERR_NO_KEY, 0),
        (board_sign(m.STOP, 4, struct.pack("<BI", 1, m.STOP_CONFIRM), slot, m.ROLE_PATIENT,
                    1, KEYS[m.ROLE_PATIENT], NONCES[0]), m.ERR_WRONG_ROLE, m.ROLE_PATIENT),
    ]
    link = loop.board.link
    for frame, code, _ in frames:
        link.data, link.at = cobs.encode(frame) + b"\x00", 0
        loop.read_input()
        rtype, _, values, _ = read_reply(link.writes[-1])
        assert rtype == m.ERROR and values[0] == code, values
    # Read the log back as the clinician would.
    got = []
    counter = 10
    names = [f[0] for f in m.LOG_FIELDS]
    for n in range(0, loop.dispatcher.log.total, m.LOG_PAGE_EVENTS):
        counter += 1
        req = board_sign(m.READ_LOG, 100 + n, struct.pack("<IB", n, m.LOG_PAGE_EVENTS), slot,
                         clin, counter, KEYS[clin], NONCES[0])
        link.data, link.at = cobs.encode(req) + b"\x00", 0
        loop.read_input()
        rtype, _, values, bad = read_reply(link.writes[-1])
        assert not bad and rtype == m.LOG_PAGE, f"unreadable LOG_PAGE: {bad}"
        for item in values[2]:
            entry = dict(zip(names, item, strict=True))
            if entry["event"] == m.EV_REFUSED:
                got.append((entry["a"], entry["role"], "ok"))
    want = [(m.ERR_BAD_TAG, 0, "ok"), (m.ERR_WRONG_ROLE, m.ROLE_PATIENT, "ok")]
    assert got == want, "refusals logged as (code, role):\n" + "\n".join(
        f"  {hc.ERROR_NAMES[w[0]]}: logged {g[1:]}, want {w[1:]}" for g, w in zip(
            got, want, strict=False) if g != w)


def test_fuzz_host_decoder() -> None:
    """The same mutated inputs into the host's construct decoder: each block either decodes
    or raises DecodeError naming a protocol error; nothing else escapes."""
    rnd = random.Random(20241125)
    frames = seed_frames(rnd)
    signed = [f for f in frames if f[2] & m.FLAG_AUTH]
    wires = [cobs.encode(f) + b"\x00" for f in frames]
    outcomes: Counter = Counter()
    for case in range(FUZZ_CASES):
        data = mutate(rnd, frames, signed, wires)
        for block in data.split(b"\x00"):
            if not block:
                continue
            try:
                msg = hc.decode(block)
            except hc.DecodeError as e:
                assert e.code in hc.ERROR_CODES, (case, e.code)
                outcomes[e.code] += 1
            except Exception as e:
                raise AssertionError(f"case {case}: {block.hex()}: {e!r}") from e
            else:
                assert msg.type in hc.PAYLOADS
                outcomes["decoded"] += 1
    print(f"\nhost decoder fuzz: {FUZZ_CASES} cases: {dict(outcomes)}")
    assert outcomes["decoded"] > 1000 and len(outcomes) >= 8


def test_no_input_stream_keeps_the_loop_from_delivery(firmware_loop: Any) -> None:
    """read_input hands control back to the loop after every delimiter and after MAX_FRAME
    bytes without one, so a flood of input cannot hold delivery back (and then bolus)."""
    frames = b"\x05\x01\x00" * 1000  # bad COBS, over and over
    loop = new_loop(firmware_loop, frames, random.Random(1))
    assert loop.read_input() and loop.board.link.at == 3
    loop = new_loop(firmware_loop, b"\x11" * 10_000, random.Random(1))  # no delimiter at all
    assert loop.read_input() and loop.board.link.at == m.MAX_FRAME


def test_a_fault_in_the_loop_is_logged_and_delivery_goes_on(firmware_loop: Any) -> None:
    loop = new_loop(firmware_loop, b"", random.Random(1))
    turns = []

    def once() -> None:
        turns.append(1)
        if len(turns) == 1:
            raise MemoryError("the heap ran out")
        loop.dispatcher.repl_requested = True  # end the test's run() after the next turn

    loop.once = once
    loop.board.link.close = lambda: None
    loop.run()
    assert len(turns) == 2, "the loop went on after the fault"
    board = loop.board
    assert board.watchdog and board.fed == 1, "fed after the turn that finished, not the fault"
    assert board.repl, "the REPL asked for: the board restarts into it"
    log = loop.dispatcher.log
    time_s, event, role, rule, type_, a, b, c = log.get(log.total - 1)
    assert (event, role, a) == (m.EV_FAULT, 0, 1)
