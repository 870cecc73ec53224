#!/usr/bin/env python3
"""Write protocol/vectors/golden.json, the golden test vectors of the wire format.

    .venv/bin/python tools/make_golden.py           # (re)write the file
    .venv/bin/python tools/make_golden.py --check   # exit 1 if the file is not up to date

The frames are built here by a minimal implementation of its own (struct, binascii.crc32 and
the `cobs` package), from the message table (protocol/messages.py) only: not with
protocol/codec.py, protocol/framing.py or protocol/host_codec.py, so that the vectors are an
independent check of both codecs (tests/board/test_golden.py, tests/host/test_golden_host.py).
Every CRC is also cross-checked against a bit-by-bit CRC-32 written out below.

The file holds:
  "valid": at least one vector per message type of the table:
      name, type, message (its name), kind ("req"/"resp"), seq,
      fields: {field: value} in table order; ints as ints (enum fields too), strings as
              strings, fixed-size bytes as hex strings,
      frame: header + payload + CRC-32 (hex, before COBS),
      wire:  COBS(frame) + 0x00 (hex).
  "bad": frames the firmware must refuse:
      name, wire (hex, delimiter included), frame (hex of the COBS-decoded frame, or null if
      the wire is not valid COBS or not decoded by the firmware),
      error: the error code name of messages.ERRORS the firmware answers with,
      seq, request_type: the sequence number and request type of its ERROR response (0 when
      the header cannot be trusted).

Hand-checked vector (the first GET_STATUS one, seq 1):
    header   01 02 00 01 00   version 1, type 0x02 GET_STATUS, flags 0, seq 1 (u16 LE)
    payload  (none)
    CRC-32 of the 5 header bytes = 0x48502767 (check value of the bit-by-bit CRC-32 below,
             which gives the standard 0xCBF43926 for b"123456789"), stored LE: 67 27 50 48
    frame    01 02 00 01 00 67 27 50 48
    COBS: split at each zero, each block prefixed by (its length + 1):
             [01 02] 00 -> 03 01 02
             [01]    00 -> 02 01
             [67 27 50 48] (end) -> 05 67 27 50 48
    wire     03 01 02 02 01 05 67 27 50 48 00
(asserted in hand_checked() below, and so re-checked on every run).
"""

import argparse
import binascii
import json
import struct
import sys
from pathlib import Path

from cobs import cobs

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "protocol" / "vectors" / "golden.json"
sys.path.insert(0, str(ROOT))

from protocol import messages as m  # noqa: E402  (the table only; no codec code)

HEADER = "<BBBH"  # version, type, flags, seq: written out here, not taken from the table
SEQ = 0x1234  # sequence number of the bad vectors whose header the firmware trusts


def crc32_bitwise(data):
    """CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), one bit at a time."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def crc32(data):
    c = binascii.crc32(data) & 0xFFFFFFFF
    assert c == crc32_bitwise(data), "binascii.crc32 disagrees with the bitwise CRC-32"
    return c


def row(name):
    for r in m.MESSAGES:
        if r[1] == name:
            return r
    raise KeyError(name)


def payload(name, fields):
    """Pack a message's payload from {field: value} (bytes fields as bytes)."""
    r = row(name)
    names = [f[0] for f in r[3]]
    assert list(fields) == names, f"{name}: fields {list(fields)} != table {names}"
    out = b""
    for f in r[3]:
        v = fields[f[0]]
        kind = f[1]
        if kind == "str":
            raw = v.encode("utf-8")
            assert len(raw) <= f[3], f"{name}.{f[0]} longer than {f[3]} bytes"
            out += bytes([len(raw)]) + raw
        elif kind.endswith("s"):
            assert isinstance(v, bytes) and len(v) == int(kind[:-1]), f"{name}.{f[0]}"
            out += v
        else:
            if f[2] is not None:
                assert f[2] <= v <= f[3], f"{name}.{f[0]}={v} out of range"
            out += struct.pack("<" + kind, v)
    return out


def frame(mtype, seq, body=b"", version=m.VERSION, flags=0, crc_xor=0):
    """Header + body + CRC-32 (LE); crc_xor corrupts the CRC."""
    head = struct.pack(HEADER, version, mtype, flags, seq) + body
    return head + struct.pack("<I", crc32(head) ^ crc_xor)


def wire(fr):
    return cobs.encode(fr) + b"\x00"


def jsonable(name, fields):
    """Fields for JSON: bytes as hex strings, everything else as is."""
    out = {}
    for f in row(name)[3]:
        v = fields[f[0]]
        out[f[0]] = binascii.hexlify(v).decode() if isinstance(v, bytes) else v
    return out


# -- valid vectors: (vector name, message name, seq, fields) -----------------------------------

BOARD_ID = bytes.fromhex("e66138528347a52f")
VALID = [
    ("get_info", "GET_INFO", 1, {}),
    ("get_info_seq_ffff", "GET_INFO", 0xFFFF, {}),
    ("get_status", "GET_STATUS", 1, {}),  # hand-checked: see the module docstring
    ("get_status_seq_0100", "GET_STATUS", 0x0100, {}),
    ("set_continuous_400mcg", "SET_CONTINUOUS", 0x0102,
     {"daily_dose_ng": 400_000, "concentration": 500}),
    ("set_continuous_412_5mcg", "SET_CONTINUOUS", 5,
     {"daily_dose_ng": 412_500, "concentration": 500}),
    ("set_continuous_low_bounds", "SET_CONTINUOUS", 6,
     {"daily_dose_ng": 1000, "concentration": 1}),
    ("set_continuous_high_bounds", "SET_CONTINUOUS", 7,
     {"daily_dose_ng": 20_000_000, "concentration": 2000}),
    ("stop_clinician", "STOP", 8, {"reason": 1, "confirm": m.STOP_CONFIRM}),
    ("stop_overdose", "STOP", 9, {"reason": 2, "confirm": m.STOP_CONFIRM}),
    ("stop_end_of_therapy", "STOP", 10, {"reason": 3, "confirm": m.STOP_CONFIRM}),
    ("stop_surgery", "STOP", 11, {"reason": 4, "confirm": m.STOP_CONFIRM}),
    # A valid frame that the dispatcher (not the codec) refuses with NOT_CONFIRMED.
    ("stop_unconfirmed", "STOP", 12, {"reason": 1, "confirm": 0}),
    ("enter_repl", "ENTER_REPL", 13, {"confirm": m.REPL_CONFIRM}),
    # Valid frames that the dispatcher refuses (NOT_CONFIRMED; INVALID_STATE when running).
    ("enter_repl_unconfirmed", "ENTER_REPL", 14, {"confirm": m.STOP_CONFIRM}),
    ("info", "INFO", 1, {"protocol_version": 1, "board_id": BOARD_ID,
                         "reservoir_nl": 20_000_000, "step_nl": 250, "fw_version": "0.1.0"}),
    ("info_long_version", "INFO", 2, {"protocol_version": 1, "board_id": bytes(8),
                                      "reservoir_nl": 40_000_000, "step_nl": 0xFFFF,
                                      "fw_version": "0.1.0-rc.1+g0123456789ab"}),
    ("info_empty_version", "INFO", 3, {"protocol_version": 0, "board_id": b"\xff" * 8,
                                       "reservoir_nl": 0, "step_nl": 1, "fw_version": ""}),
    ("status_stopped", "STATUS", 1, {"mode": 0, "daily_dose_ng": 0, "concentration": 0,
                                     "rate_nl_day": 0, "delivered_nl": 0, "delivered_ng": 0,
                                     "reservoir_nl": 20_000_000, "uptime_s": 0,
                                     "frame_errors": 0}),
    ("status_running", "STATUS", 0x0102, {"mode": 1, "daily_dose_ng": 412_500,
                                          "concentration": 500, "rate_nl_day": 825_000,
                                          "delivered_nl": 7_000_000, "delivered_ng": 3_500_000,
                                          "reservoir_nl": 13_000_000, "uptime_s": 733_000,
                                          "frame_errors": 3}),
    ("status_max", "STATUS", 0xFFFF, {"mode": 1, "daily_dose_ng": 0xFFFFFFFF,
                                      "concentration": 0xFFFF, "rate_nl_day": 0xFFFFFFFF,
                                      "delivered_nl": 0xFFFFFFFF, "delivered_ng": 0xFFFFFFFF,
                                      "reservoir_nl": 0xFFFFFFFF, "uptime_s": 0xFFFFFFFF,
                                      "frame_errors": 0xFFFF}),
    ("set_continuous_ok", "SET_CONTINUOUS_OK", 0x0102,
     {"daily_dose_ng": 400_000, "concentration": 500, "rate_nl_day": 800_000}),
    ("stopped_clinician", "STOPPED", 8, {"reason": 1}),
    ("stopped_surgery", "STOPPED", 11, {"reason": 4}),
    ("repl_ok", "REPL_OK", 13, {}),
    ("error_not_confirmed", "ERROR", 12,
     {"code": 10, "request_type": 4, "reason": "stop needs the confirmation word 0x53544F50"}),
    ("error_bad_crc", "ERROR", 0, {"code": 3, "request_type": 0, "reason": "CRC mismatch"}),
    ("error_empty_reason", "ERROR", 0x0100, {"code": 12, "request_type": 3, "reason": ""}),
    # 80 bytes of UTF-8 (the maximum), two-byte characters included.
    ("error_utf8_max", "ERROR", 0x7FFF,
     {"code": 255, "request_type": 255, "reason": "dosis \u00fcberschritten: " + "\u00e9" * 29}),
]


def valid_vectors():
    out = []
    for name, msg, seq, fields in VALID:
        r = row(msg)
        fr = frame(r[0], seq, payload(msg, fields))
        w = wire(fr)
        assert cobs.decode(w[:-1]) == fr, name
        out.append({
            "name": name,
            "type": r[0],
            "message": msg,
            "kind": r[2],
            "seq": seq,
            "fields": jsonable(msg, fields),
            "frame": fr.hex(),
            "wire": w.hex(),
        })
    covered = {v["type"] for v in out}
    missing = [r[1] for r in m.MESSAGES if r[0] not in covered]
    assert not missing, f"no golden vector for {missing}"
    return out


# -- bad vectors ---------------------------------------------------------------------------------

def bad_vectors():
    t = {r[1]: r[0] for r in m.MESSAGES}
    set_cont = payload("SET_CONTINUOUS", {"daily_dose_ng": 400_000, "concentration": 500})
    stop = payload("STOP", {"reason": 1, "confirm": m.STOP_CONFIRM})
    status = payload("STATUS", {"mode": 0, "daily_dose_ng": 0, "concentration": 0,
                                "rate_nl_day": 0, "delivered_nl": 0, "delivered_ng": 0,
                                "reservoir_nl": 20_000_000, "uptime_s": 0, "frame_errors": 0})

    def sc(dose, conc):
        return struct.pack("<IH", dose, conc)

    def st(reason, confirm=m.STOP_CONFIRM):
        return struct.pack("<BI", reason, confirm)

    vectors = []

    def add(name, error, fr=None, w=None, trusted=True):
        """trusted: the firmware trusts the header (answers with its seq and type)."""
        if w is None:
            w = wire(fr)
        seq = rtype = 0
        if trusted:
            seq = struct.unpack_from("<H", fr, 3)[0]
            rtype = fr[1]
        assert error in {e[1] for e in m.ERRORS}, error
        vectors.append({
            "name": name,
            "wire": w.hex(),
            "frame": None if fr is None else fr.hex(),
            "error": error,
            "seq": seq,
            "request_type": rtype,
        })

    gs = t["GET_STATUS"]
    # CRC: the header is not trusted, so the answer carries seq 0 and request type 0.
    add("crc_flipped_last_byte", "BAD_CRC", frame(gs, SEQ, crc_xor=0x80000000), trusted=False)
    good = frame(t["SET_CONTINUOUS"], SEQ, set_cont)
    add("crc_payload_bit_flipped", "BAD_CRC",
        good[:6] + bytes([good[6] ^ 0x01]) + good[7:], trusted=False)
    add("crc_zero", "BAD_CRC",
        struct.pack(HEADER, 1, gs, 0, SEQ) + b"\x00" * 4, trusted=False)
    # Order: CRC is checked before version, flags, type, length and range.
    add("crc_before_version", "BAD_CRC", frame(gs, SEQ, version=2, crc_xor=1), trusted=False)
    add("crc_before_length", "BAD_CRC",
        frame(t["SET_CONTINUOUS"], SEQ, set_cont[:-1], crc_xor=1), trusted=False)
    add("crc_before_type", "BAD_CRC", frame(0x7E, SEQ, crc_xor=1), trusted=False)
    add("crc_before_range", "BAD_CRC",
        frame(t["SET_CONTINUOUS"], SEQ, sc(999, 500), crc_xor=1), trusted=False)

    add("truncated_empty", "TRUNCATED", b"", trusted=False)  # wire 01 00
    add("truncated_header_only", "TRUNCATED", struct.pack(HEADER, 1, gs, 0, SEQ), trusted=False)
    add("truncated_8_bytes", "TRUNCATED",
        struct.pack(HEADER, 1, gs, 0, SEQ) + b"\x01\x02\x03", trusted=False)
    add("truncated_1_byte", "TRUNCATED", b"\x01", trusted=False)

    add("cobs_code_overruns", "BAD_COBS", w=bytes.fromhex("05010200"), trusted=False)
    add("cobs_code_ff_overruns", "BAD_COBS", w=bytes.fromhex("ff0102030400"), trusted=False)
    w = wire(frame(t["SET_CONTINUOUS"], SEQ, set_cont))
    cut = w[:-2] + b"\x00"  # last data byte lost: the last block's code now overruns
    add("cobs_last_byte_lost", "BAD_COBS", w=cut, trusted=False)

    # The largest frame (MAX_FRAME bytes) is read and refused for its length; one byte more
    # is OVERSIZE (the frame reader overflows before anything else is looked at).
    fill = bytes(range(1, 200))
    n = m.MAX_FRAME - m.HEADER_SIZE - m.CRC_SIZE
    add("max_frame_is_read", "BAD_LENGTH", frame(gs, SEQ, fill[:n]))
    add("oversize_by_one", "OVERSIZE", frame(gs, SEQ, fill[: n + 1]), trusted=False)
    add("oversize_long", "OVERSIZE", frame(gs, SEQ, fill[:180]), trusted=False)

    add("version_2", "BAD_VERSION", frame(gs, SEQ, version=2))
    add("version_0", "BAD_VERSION", frame(gs, SEQ, version=0))
    add("version_before_flags", "BAD_VERSION", frame(gs, SEQ, version=0xFF, flags=1))
    add("version_before_length", "BAD_VERSION", frame(t["STOP"], SEQ, stop[:-1], version=2))

    add("flags_01", "BAD_FLAGS", frame(gs, SEQ, flags=0x01))
    add("flags_80", "BAD_FLAGS", frame(t["SET_CONTINUOUS"], SEQ, set_cont, flags=0x80))
    add("flags_before_type", "BAD_FLAGS", frame(0x7E, SEQ, flags=0x02))

    add("type_00", "UNKNOWN_TYPE", frame(0x00, SEQ))
    add("type_7e", "UNKNOWN_TYPE", frame(0x7E, SEQ))
    first_free = max(r[0] for r in m.MESSAGES if r[2] == "req") + 1
    add("type_after_last_request", "UNKNOWN_TYPE", frame(first_free, SEQ))
    add("type_before_length", "UNKNOWN_TYPE", frame(0x7E, SEQ, b"\x01\x02\x03"))
    # A response type sent to the pump is not a request.
    add("response_status_as_request", "UNKNOWN_TYPE", frame(t["STATUS"], SEQ, status))
    add("response_stopped_as_request", "UNKNOWN_TYPE", frame(t["STOPPED"], SEQ, b"\x01"))
    add("response_error_as_request", "UNKNOWN_TYPE",
        frame(t["ERROR"], SEQ, b"\x03\x00\x02hi"))

    add("get_info_long", "BAD_LENGTH", frame(t["GET_INFO"], SEQ, b"\x00"))
    add("get_status_long", "BAD_LENGTH", frame(gs, SEQ, b"\x01\x02"))
    add("set_continuous_short", "BAD_LENGTH", frame(t["SET_CONTINUOUS"], SEQ, set_cont[:-1]))
    add("set_continuous_long", "BAD_LENGTH",
        frame(t["SET_CONTINUOUS"], SEQ, set_cont + b"\x00"))
    add("set_continuous_empty", "BAD_LENGTH", frame(t["SET_CONTINUOUS"], SEQ))
    add("stop_short", "BAD_LENGTH", frame(t["STOP"], SEQ, stop[:-1]))
    add("stop_long", "BAD_LENGTH", frame(t["STOP"], SEQ, stop + b"\x01"))
    repl = payload("ENTER_REPL", {"confirm": m.REPL_CONFIRM})
    add("enter_repl_short", "BAD_LENGTH", frame(t["ENTER_REPL"], SEQ, repl[:-1]))
    add("enter_repl_long", "BAD_LENGTH", frame(t["ENTER_REPL"], SEQ, repl + b"\x00"))
    add("response_repl_ok_as_request", "UNKNOWN_TYPE", frame(t["REPL_OK"], SEQ))
    add("length_before_range", "BAD_LENGTH", frame(t["STOP"], SEQ, b"\x09\x00"))

    add("dose_below_min", "OUT_OF_RANGE", frame(t["SET_CONTINUOUS"], SEQ, sc(999, 500)))
    add("dose_above_max", "OUT_OF_RANGE", frame(t["SET_CONTINUOUS"], SEQ, sc(20_000_001, 500)))
    add("dose_zero", "OUT_OF_RANGE", frame(t["SET_CONTINUOUS"], SEQ, sc(0, 500)))
    add("concentration_zero", "OUT_OF_RANGE", frame(t["SET_CONTINUOUS"], SEQ, sc(400_000, 0)))
    add("concentration_above_max", "OUT_OF_RANGE",
        frame(t["SET_CONTINUOUS"], SEQ, sc(400_000, 2001)))
    add("stop_reason_0", "OUT_OF_RANGE", frame(t["STOP"], SEQ, st(0)))
    add("stop_reason_5", "OUT_OF_RANGE", frame(t["STOP"], SEQ, st(5)))

    for v in vectors:
        w = bytes.fromhex(v["wire"])
        assert w.endswith(b"\x00") and b"\x00" not in w[:-1], v["name"]
        if v["error"] == "BAD_COBS":
            try:
                cobs.decode(w[:-1])
            except cobs.DecodeError:
                continue
            raise AssertionError(v["name"] + " is valid COBS")
        assert cobs.decode(w[:-1]).hex() == v["frame"], v["name"]
    return vectors


def hand_checked(valid):
    v = next(x for x in valid if x["name"] == "get_status")
    assert crc32_bitwise(b"123456789") == 0xCBF43926
    assert crc32(bytes.fromhex("0102000100")) == 0x48502767
    assert v["frame"] == "010200010067275048", v["frame"]
    assert v["wire"] == "0301020201056727504800", v["wire"]


def build():
    valid = valid_vectors()
    hand_checked(valid)
    doc = {
        "about": "Golden vectors of the intrapump wire format. Generated by "
                 "tools/make_golden.py (independently of protocol/*codec.py): do not edit.",
        "protocol_version": m.VERSION,
        "max_frame": m.MAX_FRAME,
        "valid": valid,
        "bad": bad_vectors(),
    }
    return json.dumps(doc, indent=1) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="fail if the file is not up to date")
    args = ap.parse_args(argv)
    text = build()
    if args.check:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run tools/make_golden.py")
            return 1
        print(f"{OUT.relative_to(ROOT)} is up to date")
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
