"""Property tests of the two codecs built from the one message table, and a fuzz test of the
firmware's whole receive path.

- Hypothesis: for random valid field values of every message in protocol/messages.py, the host
  codec (construct) and the board Encoder (struct) produce the same bytes, and each side
  decodes the other's bytes to the same values. Arbitrary frames: whatever the board accepts
  the host accepts with the same values.
- Fuzz: 100,000+ random and mutated byte strings (from valid wire frames: bit flips,
  truncation, inserted zeros, splices, re-CRC'd header/payload edits) go through
  FrameReader -> codec.decode -> Dispatcher.handle (and the response through the Encoder)
  against a fresh Pump, as firmware/loop.py does. No exception may escape, every response
  must be a valid frame, and the pump's state may change only when a valid SET_CONTINUOUS or
  STOP was decoded and carried out.
"""

from __future__ import annotations

import binascii
import random
import struct
from collections import Counter
from typing import Any

import pytest
from cobs import cobs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware import config
from firmware.core.dispatch import Dispatcher
from firmware.core.pump import Pump
from protocol import codec, framing
from protocol import host_codec as hc
from protocol import messages as m

LABELS = {name: dict(pairs) for name, pairs in m.ENUMS.items()}
KIND_RANGE = {
    "B": (0, 0xFF), "H": (0, 0xFFFF), "I": (0, 0xFFFFFFFF),
    "b": (-0x80, 0x7F), "h": (-0x8000, 0x7FFF), "i": (-0x80000000, 0x7FFFFFFF),
}
ROWS: list[Any] = list(m.MESSAGES)
REQUESTS = [r for r in ROWS if r[2] == "req"]


def find(mtype: int) -> Any:
    row = m.find(mtype)
    assert row is not None, f"type 0x{mtype:02x} is not in the table"
    return row


# -- helpers -----------------------------------------------------------------------------------

def field_strategy(f: tuple) -> st.SearchStrategy[Any]:
    name, kind, lo, hi, _enum, _unit = f
    if kind == "str":
        return st.text(max_size=hi).filter(lambda s: len(s.encode("utf-8")) <= hi)
    if kind.endswith("s"):
        n = int(kind[:-1])
        return st.binary(min_size=n, max_size=n)
    return st.integers(lo, hi)


def to_host(row: tuple, values: tuple) -> dict[str, Any]:
    out = {}
    for f, v in zip(row[3], values, strict=True):
        out[f[0]] = LABELS[f[4]][v] if f[4] else v
    return out


def board_wire(mtype: int, seq: int, values: tuple) -> bytes:
    return bytes(codec.Encoder().encode(mtype, seq, values))


def board_decode_wire(wire: bytes, expect: str) -> codec.Decoded:
    reader = framing.FrameReader()
    results = [reader.push(b) for b in wire]
    assert results[-1] == framing.FRAME and all(r == framing.NOTHING for r in results[:-1])
    d = codec.Decoded()
    err = codec.decode(reader.frame, reader.length, d, expect)
    assert err == 0, f"board refuses {wire.hex()}: {d.reason}"
    return d


def raw_frame(mtype: int, seq: int, payload: bytes, version: int = m.VERSION,
              flags: int = 0) -> bytes:
    head = struct.pack("<BBBH", version, mtype, flags, seq) + payload
    return head + struct.pack("<I", binascii.crc32(head))


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

    # Host decodes the board's bytes ...
    msg = hc.decode(board)
    assert (msg.type, msg.seq, msg.flags, msg.version) == (row[0], seq, 0, m.VERSION)
    assert msg.fields == fields
    # ... and the board decodes the host's.
    d = board_decode_wire(host, row[2])
    assert (d.type, d.seq) == (row[0], seq)
    assert tuple(d.values) == values


@settings(max_examples=2000, deadline=None)
@given(
    mtype=st.one_of(st.sampled_from([r[0] for r in ROWS]), st.integers(0, 255)),
    seq=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=m.MAX_PAYLOAD),
    version=st.sampled_from([m.VERSION, m.VERSION, m.VERSION, 0, 2]),
    flags=st.sampled_from([0, 0, 0, 1, 0x80]),
)
def test_what_the_board_accepts_the_host_reads_alike(
    mtype: int, seq: int, payload: bytes, version: int, flags: int
) -> None:
    frame = raw_frame(mtype, seq, payload, version, flags)
    wire = cobs.encode(frame) + b"\x00"
    try:
        msg: hc.Message | None = hc.decode(wire)
    except hc.DecodeError as e:
        assert e.code in hc.ERROR_CODES
        msg = None
    buf = bytearray(m.MAX_FRAME)
    buf[: len(frame)] = frame
    for expect in ("req", "resp"):
        d = codec.Decoded()
        if codec.decode(buf, len(frame), d, expect) == 0:
            row = find(mtype)
            assert msg is not None, f"board accepts {frame.hex()} as {expect}, host refuses"
            assert msg.seq == seq and msg.type == mtype
            assert msg.fields == to_host(row, tuple(d.values))


# -- fuzz: the receive path never breaks, and never changes the pump by accident ----------------

STEP_NL = 250
FULL_NL = 20_000_000
IDENTITY = (b"\x01\x02\x03\x04\x05\x06\x07\x08", "0.1.0-fuzz")
FUZZ_CASES = 100_000


def pump_state(p: Pump, d: Dispatcher) -> tuple:
    i = p.infusion
    return (p.mode, p.daily_dose_ng, p.concentration, p.stop_reason, p.volume_nl,
            p.reservoir_nl, p.delivered_steps, p.delivered_ng, p._pg, p._pg_per_step,
            p.uptime_s, p._ms, i.whole, i.rem, i.divisor, i.acc, i.wait, d.repl_requested)


def seed_frames(rnd: random.Random) -> list[bytes]:
    """Valid and near-valid frames (before COBS) to mutate: every message type, requests with
    valid, boundary and out-of-range values, wrong confirmation words."""
    frames = []
    for row in ROWS:
        for _ in range(8):
            values = []
            for f in row[3]:
                kind, lo, hi = f[1], f[2], f[3]
                if kind == "str":
                    values.append("".join(rnd.choice("ab\u00e9\u2713 ") for _ in
                                          range(rnd.randint(0, hi // 3))))
                elif kind.endswith("s"):
                    values.append(rnd.randbytes(int(kind[:-1])))
                else:
                    kmin, kmax = KIND_RANGE[kind]
                    pick = rnd.choice([lo, hi, rnd.randint(lo, hi), lo - 1, hi + 1])
                    values.append(min(max(pick, kmin), kmax))
            payload = b""
            for f, v in zip(row[3], values, strict=True):
                if f[1] == "str":
                    raw = v.encode()
                    payload += bytes([len(raw)]) + raw
                else:
                    payload += struct.pack("<" + f[1], v)
            frames.append(raw_frame(row[0], rnd.randint(1, 0xFFFF), payload))
    for confirm in (m.STOP_CONFIRM, m.REPL_CONFIRM, 0):
        for reason in (1, 2, 3, 4):
            frames.append(raw_frame(m.STOP, rnd.randint(1, 0xFFFF),
                                    struct.pack("<BI", reason, confirm)))
        frames.append(raw_frame(m.ENTER_REPL, rnd.randint(1, 0xFFFF),
                                struct.pack("<I", confirm)))
    return frames


def mutate(rnd: random.Random, frames: list[bytes], wires: list[bytes]) -> bytes:
    op = rnd.randrange(12)
    w = bytearray(rnd.choice(wires))
    if op == 0:  # random bytes, with a few zeros
        n = rnd.randint(0, 200)
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
    if op == 6:  # edit header or payload, then fix the CRC: reaches the deeper checks
        f = bytearray(rnd.choice(frames)[: -m.CRC_SIZE])
        for _ in range(rnd.randint(1, 2)):
            i = rnd.randrange(len(f))
            f[i] = rnd.choice([0, 1, 2, 0x80, 0xFF, rnd.randrange(256), f[i] ^ 1])
        if rnd.random() < 0.3:
            f = f[: rnd.randrange(m.HEADER_SIZE, len(f) + 1)] + rnd.randbytes(rnd.randint(0, 3))
        f += struct.pack("<I", binascii.crc32(f))
        return cobs.encode(bytes(f)) + b"\x00"
    if op == 7:  # delete bytes
        for _ in range(rnd.randint(1, 3)):
            if w:
                del w[rnd.randrange(len(w))]
        return bytes(w)
    if op == 8:  # several frames in a row
        return b"".join(rnd.choice(wires) for _ in range(rnd.randint(2, 4)))
    if op == 9:  # overlong
        return bytes(w[:-1]) * rnd.randint(2, 4) + b"\x00"
    if op == 10:  # replace a byte
        w[rnd.randrange(len(w))] = rnd.randrange(256)
        return bytes(w)
    return bytes(w)  # unchanged


def run_link(data: bytes, pump: Pump, disp: Dispatcher, stats: Counter) -> bool:
    """Feed bytes as firmware/loop.py does; return whether a command that may change the pump
    was decoded and carried out."""
    reader = framing.FrameReader()
    decoded = codec.Decoded()
    enc = codec.Encoder()
    resp = codec.Decoded()
    allowed = False
    for b in data:
        r = reader.push(b)
        if r == framing.NOTHING:
            continue
        if r == framing.FRAME:
            err = codec.decode(reader.frame, reader.length, decoded)
            dvalues: Any = decoded.values
            if err:
                seq, (rtype, values) = decoded.seq, disp.error(err, decoded.type, decoded.reason)
                stats[hc.ERROR_NAMES[err]] += 1
            else:
                seq = decoded.seq
                rtype, values = disp.handle(decoded.type, dvalues)
                stats["ok " + find(decoded.type)[1]] += 1
                if rtype in (m.SET_CONTINUOUS_OK, m.STOPPED):
                    assert decoded.type in (m.SET_CONTINUOUS, m.STOP)
                    if rtype == m.STOPPED:  # only a confirmed stop stops
                        assert dvalues[1] == m.STOP_CONFIRM
                        assert pump.mode == m.MODE_STOPPED
                        assert pump.stop_reason == dvalues[0]
                    else:  # the program asked for is the one in force
                        assert values[:2] == tuple(dvalues)
                        assert (pump.daily_dose_ng, pump.concentration) == values[:2]
                        assert pump.mode == m.MODE_CONTINUOUS
                    allowed = True
                    stats["changed by " + find(decoded.type)[1]] += 1
                if rtype == m.REPL_OK:
                    assert decoded.type == m.ENTER_REPL
                    assert tuple(dvalues) == (m.REPL_CONFIRM,)
                    allowed = True
        else:
            code = m.ERR_BAD_COBS if r == framing.BAD_COBS else m.ERR_OVERSIZE
            seq, (rtype, values) = m.SEQ_UNSOLICITED, disp.error(code, 0, "x")
            stats[hc.ERROR_NAMES[code]] += 1
        if rtype == m.ERROR:
            assert values[0] != m.ERR_INTERNAL, f"internal error: {values}"
        # The reply must be a frame the host can read.
        n = enc.frame_bytes(rtype, seq, values)
        assert codec.decode(enc.frame, n, resp, "resp") == 0, f"bad reply {values}: {resp.reason}"
    return allowed


def test_fuzz_receive_path() -> None:
    rnd = random.Random(20240601)
    frames = seed_frames(rnd)
    wires = [cobs.encode(f) + b"\x00" for f in frames]
    stats: Counter = Counter()
    changes = 0
    for case in range(FUZZ_CASES):
        data = mutate(rnd, frames, wires)
        pump = Pump(STEP_NL, FULL_NL, FULL_NL, config.MAX_RATE_NL_DAY)
        if case % 2:
            pump.set_continuous(rnd.choice([400_000, 412_500, 1000]), rnd.choice([500, 50, 2000]))
            pump.advance(rnd.randrange(100_000))
        disp = Dispatcher(pump, IDENTITY)
        before = pump_state(pump, disp)
        try:
            allowed = run_link(data, pump, disp, stats)
        except Exception as e:  # report the input that broke it
            raise AssertionError(f"case {case}: input {data.hex()}: {e!r}") from e
        after = pump_state(pump, disp)
        if after != before:
            assert allowed, f"case {case}: pump changed without a valid command: {data.hex()}"
            changes += 1
    # The fuzz reached every check and every request.
    for name in ("OVERSIZE", "TRUNCATED", "BAD_CRC", "BAD_COBS", "BAD_VERSION",
                 "UNKNOWN_TYPE", "BAD_LENGTH", "OUT_OF_RANGE", "BAD_FLAGS"):
        assert stats[name] > 0, f"fuzz never produced {name}: {dict(stats)}"
    for row in REQUESTS:
        assert stats["ok " + row[1]] > 0, f"fuzz never decoded a valid {row[1]}"
    assert stats["changed by SET_CONTINUOUS"] > 0 and stats["changed by STOP"] > 0
    assert changes > 100, f"only {changes} state changes"
