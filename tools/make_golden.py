#!/usr/bin/env python3
"""Write protocol/vectors/golden.json, the golden test vectors of the wire format.

    .venv/bin/python tools/make_golden.py           # (re)write the file
    .venv/bin/python tools/make_golden.py --check   # exit 1 if the file is not up to date

The frames are built here by a minimal implementation of its own (struct, binascii.crc32 and
the `cobs` package), from the message table (protocol/messages.py) only: not with
protocol/codec.py, protocol/framing.py or protocol/host_codec.py, so that the vectors are an
independent check of both codecs (tests/board/test_golden.py, tests/host/test_golden_host.py).
Every CRC is also cross-checked against a bit-by-bit CRC-32 written out below.

The packer below lays out every field kind of the table from the table alone: integers
(struct codes), fixed-size bytes, "str" (u8 length + UTF-8), flag sets (an integer field whose
enum slot names messages.FLAGS: the bits set; a bit the table does not name is refused) and
"list" (a u8 count, then that many items, each laid out by the item fields in the enum slot).

The file holds:
  "valid": at least one vector per message type of the table (frames the codec accepts; what
      the pump's dispatcher then answers, e.g. NOT_CONFIRMED, is not in this file):
      name, type, message (its name), kind ("req"/"resp"/"event"), seq,
      fields: {field: value} in table order; ints as ints (enum fields too, and flag sets as
              the int of their bits), strings as strings, fixed-size bytes as hex strings,
              lists as lists of {field: value} objects (one per item, the item's fields in
              table order, valued as above),
      frame: header + payload + CRC-32 (hex, before COBS),
      wire:  COBS(frame) + 0x00 (hex).
    Among them: lists with several items, at their largest count, and empty where the table
    allows it; flag sets with several bits.
  "bad": frames the firmware's codec must refuse (before any authentication check), among
      them a list's count over its maximum or under its minimum (OUT_OF_RANGE), a count that
      disagrees with the payload's length (BAD_LENGTH; the length is checked first), a list
      item's field out of range (OUT_OF_RANGE), a flag set with a bit the table does not name
      (OUT_OF_RANGE):
      name, wire (hex, delimiter included), frame (hex of the COBS-decoded frame, or null if
      the wire is not valid COBS or not decoded by the firmware),
      error: the error code name of messages.ERRORS the firmware answers with,
      seq, request_type: the sequence number and request type of its ERROR response (0 when
      the header cannot be trusted).
  "auth": the pump's side of the authenticated vectors below:
      keys: {role name: key hex} as provisioned (fixed test keys, never real ones),
      sessions: [{session, nonce hex}] opened in this order on a fresh pump (CHALLENGE takes
      a free slot first, so the slots are 0, 1, 2, ...); other slots are not open.
  "signed": authenticated requests (header flag AUTH, trailer before the CRC):
      as "valid", plus auth: {session, role (int), counter, key hex, nonce hex, tag hex}; the
      tag is HMAC-SHA256(key, nonce || header || payload || session || role || counter)[:16].
  "refused": frames the codec accepts but the authentication refuses, against the "auth"
      state (counters all 0): name, wire, frame, error, seq, request_type as in "bad", and
      auth (as in "signed": the trailer as on the wire, the key and nonce that signed it; null
      for an unsigned frame) with tampered: what was changed after signing (null if the frame
      is exactly as the key, nonce and trailer sign it).

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

Hand-checked layout of an authenticated frame (the "get_status_clinician" vector):
    header   01 02 01 22 00   version 1, GET_STATUS, flags 0x01 (AUTH), seq 0x0022
    payload  (none)
    trailer  02 02 02 00 00 00   session 2, role 2 (clinician), counter 2 (u32 LE)
    tag      HMAC-SHA256(clinician key, nonce of session 2 || the 11 bytes above)[:16]
    CRC-32   of all 27 bytes before it, LE
HMAC-SHA256 is the standard library's (hmac, hashlib), itself checked against RFC 4231 test
case 2 in hand_checked().
"""

import argparse
import binascii
import hashlib
import hmac
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

# The authentication trailer, written out here too (messages.py's layout, asserted below).
FLAG_AUTH = 0x01
TRAILER = "<BBI"  # session, role, counter
TAG_SIZE = 16
ROLES = {"patient": 1, "clinician": 2, "service": 3}
# Fixed test keys (32 bytes) and nonces (16 bytes): derived from their names so that they are
# easy to regenerate, and obviously not real keys.
KEYS = {role: hashlib.sha256(b"intrapump golden test key: " + name.encode()).digest()
        for name, role in ROLES.items()}
SESSIONS = [  # opened in this order on a fresh pump: slots 0, 1, 2
    (0, hashlib.sha256(b"intrapump golden nonce 0").digest()[:16]),
    (1, hashlib.sha256(b"intrapump golden nonce 1").digest()[:16]),
    (2, bytes.fromhex("a1b2c3d4e5f60718293a4b5c6d7e8f90")),
]
SESSION = 2  # the session of most authenticated vectors
NONCE = dict(SESSIONS)[SESSION]
MAX_FRAME = 256  # frames longer than this are OVERSIZE (messages.MAX_FRAME, asserted below)


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


def known_bits(f):
    """The bits a flag-set field may carry (0 for a field that is not a flag set)."""
    out = 0
    if isinstance(f[4], str) and f[4] in m.FLAGS:
        for bit, _label in m.FLAGS[f[4]]:
            out |= bit
    return out


def pack(where, spec, fields, check=True):
    """Pack {field: value} laid out by the field tuples `spec` (a message's, or a list item's).
    Lists are lists of such dicts, one per item; fixed-size bytes are bytes. check=False packs
    values outside their ranges too (for the bad vectors)."""
    names = [f[0] for f in spec]
    assert list(fields) == names, f"{where}: fields {list(fields)} != table {names}"
    out = b""
    for i, f in enumerate(spec):
        v = fields[f[0]]
        kind, lo, hi = f[1], f[2], f[3]
        what = f"{where}.{f[0]}"
        if kind in ("str", "list"):
            assert i == len(spec) - 1, f"{what}: a {kind} field must be last"
        if kind == "str":
            raw = v.encode("utf-8")
            assert not check or len(raw) <= hi, f"{what} longer than {hi} bytes"
            out += bytes([len(raw)]) + raw
        elif kind == "list":
            assert isinstance(v, list), f"{what}: a list of items"
            assert not check or lo <= len(v) <= hi, f"{what}: {len(v)} items, not {lo}..{hi}"
            out += bytes([len(v)])
            for k, item in enumerate(v):
                out += pack(f"{what}[{k}]", f[4], item, check)
        elif kind.endswith("s"):
            assert isinstance(v, bytes) and len(v) == int(kind[:-1]), what
            out += v
        else:
            if check and lo is not None:
                assert lo <= v <= hi, f"{what}={v} out of range"
            if check and f[4] in m.FLAGS:
                assert v & ~known_bits(f) == 0, f"{what}=0x{v:x}: an unknown bit"
            out += struct.pack("<" + kind, v)
    return out


def payload(name, fields):
    """Pack a message's payload from {field: value}, every value in its range."""
    return pack(name, row(name)[3], fields)


def raw_payload(name, fields):
    """Pack a message's payload from {field: value} without range checks (bad vectors)."""
    return pack(name, row(name)[3], fields, check=False)


def frame(mtype, seq, body=b"", version=m.VERSION, flags=0, crc_xor=0):
    """Header + body + CRC-32 (LE); crc_xor corrupts the CRC."""
    head = struct.pack(HEADER, version, mtype, flags, seq) + body
    return head + struct.pack("<I", crc32(head) ^ crc_xor)


def wire(fr):
    return cobs.encode(fr) + b"\x00"


def recrc(fr):
    """The frame with its body kept and its CRC-32 recomputed (for edits after signing)."""
    body = fr[:-4]
    return body + struct.pack("<I", crc32(body))


def tag(key, nonce, signed):
    return hmac.new(key, nonce + signed, hashlib.sha256).digest()[:TAG_SIZE]


def signed_frame(mtype, seq, body, session, role, counter, key, nonce, flags=FLAG_AUTH,
                 version=m.VERSION):
    """Header + body + trailer (session, role, counter, tag) + CRC-32."""
    head = struct.pack(HEADER, version, mtype, flags, seq) + body
    head += struct.pack(TRAILER, session, role, counter)
    head += tag(key, nonce, head)
    return head + struct.pack("<I", crc32(head))


def auth_json(session, role, counter, key, nonce, fr):
    return {"session": session, "role": role, "counter": counter, "key": key.hex(),
            "nonce": nonce.hex(), "tag": fr[-4 - TAG_SIZE: -4].hex()}


def jsonable(spec, fields):
    """Fields for JSON: bytes as hex strings, list items as objects, everything else as is."""
    out = {}
    for f in spec:
        v = fields[f[0]]
        if f[1] == "list":
            v = [jsonable(f[4], item) for item in v]
        elif isinstance(v, bytes):
            v = binascii.hexlify(v).decode()
        out[f[0]] = v
    return out


# -- valid vectors: (vector name, message name, seq, fields) -----------------------------------
# Valid is what the codec accepts: a request such as STOP with a wrong confirmation word is a
# valid frame here; what the pump then answers is the dispatcher's, and not in this file.

BOARD_ID = bytes.fromhex("e66138528347a52f")
T0 = 1_767_225_600  # 2026-01-01 00:00 UTC
DAY = 86_400


def step(start_min, daily_dose_ng):
    """A flex step (messages.STEP_FIELDS)."""
    return {"start_min": start_min, "daily_dose_ng": daily_dose_ng}


def given(time_s, dose_ng, duration_s):
    """A screening bolus given (messages.SCREEN_FIELDS)."""
    return {"time_s": time_s, "dose_ng": dose_ng, "duration_s": duration_s}


def event(number, time_s, ev, role=0, rule=0, kind=0, a=0, b=0, c=0):
    """A log event (messages.LOG_FIELDS); kind is the field `type`."""
    return {"number": number, "time_s": time_s, "event": ev, "role": role, "rule": rule,
            "type": kind, "a": a, "b": b, "c": c}


def status(**values):
    """STATUS fields: a stopped pump with no profile, and `values` over it."""
    base = {"mode": 0, "phase": 0, "daily_dose_ng": 0, "concentration": 0, "rate_nl_day": 0,
            "bolus": 0, "bolus_left_ng": 0, "last_24h_ng": 0, "delivered_nl": 0,
            "delivered_ng": 0, "reservoir_nl": 20_000_000, "uptime_s": 0, "clock_s": 0,
            "low_at_s": 0, "refill_at_s": 0, "dry_at_s": 0, "alarms": 0, "sessions": 0,
            "battery_mv": 3900, "frame_errors": 0}
    assert set(values) <= set(base), set(values) - set(base)
    return {**base, **values}


def program(mode, daily_dose_ng, rate_nl_day, utc_offset_min, steps):
    """PROGRAM_FIELDS: the program in force."""
    return {"mode": mode, "daily_dose_ng": daily_dose_ng, "rate_nl_day": rate_nl_day,
            "utc_offset_min": utc_offset_min, "steps": steps}


def bolus_ok(bolus, dose_ng, volume_nl, duration_s, ends_at_s):
    return {"bolus": bolus, "dose_ng": dose_ng, "volume_nl": volume_nl,
            "duration_s": duration_s, "ends_at_s": ends_at_s}


def error(code, request_type, reason, rule=0, requested=0, allowed=0, wait_s=0):
    return {"code": code, "request_type": request_type, "rule": rule, "requested": requested,
            "allowed": allowed, "wait_s": wait_s, "reason": reason}


def profile(origin, age_years, phase, ceiling_ng, catheter_nl, infusion_start_s,
            brain_injury_s=0):
    return {"origin": origin, "age_years": age_years, "phase": phase, "ceiling_ng": ceiling_ng,
            "catheter_nl": catheter_nl, "infusion_start_s": infusion_start_s,
            "brain_injury_s": brain_injury_s}


def patient_bolus(dose_ng, duration_s, lockout_s, max_per_day, *used):
    """PATIENT_BOLUS_FIELDS, and (used_24h, next_at_s) for the responses."""
    out = {"dose_ng": dose_ng, "duration_s": duration_s, "lockout_s": lockout_s,
           "max_per_day": max_per_day}
    if used:
        out["used_24h"], out["next_at_s"] = used
    return out


def alarm_state(alarms, unacknowledged, silenced_until_s):
    return {"alarms": alarms, "unacknowledged": unacknowledged,
            "silenced_until_s": silenced_until_s}


def refill_commit(drained_nl, fill_nl, concentration, again, confirm, drug=m.DRUG_BACLOFEN):
    return {"drained_nl": drained_nl, "fill_nl": fill_nl, "drug": drug,
            "concentration": concentration, "concentration_again": again, "confirm": confirm}


FLEX_DAY = [step(0, 300_000), step(420, 500_000), step(1320, 350_000)]
FLEX_MAX = [step(60 * k, 100_000 + 10_000 * k) for k in range(m.FLEX_STEPS_MAX)]
HIGH, DECREASE = m.CONFIRM_HIGH_DOSE, m.CONFIRM_LARGE_DECREASE
CUSTOM, DRAIN = m.CONFIRM_CUSTOM_CONCENTRATION, m.CONFIRM_DRAIN_MISMATCH
EVENTS_8 = [
    event(0xFFFFFFF7, T0, m.EV_BOOT, a=1),
    event(0xFFFFFFF8, T0 + 1, m.EV_CLOCK_SET, role=2, a=-0x80000000),
    event(0xFFFFFFF9, T0 + 2, m.EV_PROFILE, role=2, a=42, b=1_000_000, c=1 << 8 | 2),
    event(0xFFFFFFFA, T0 + 3, m.EV_REFUSED, role=2, rule=len(m.RULES), kind=0x03,
          a=m.ERR_LIMIT, b=0x7FFFFFFF, c=0x7FFFFFFF),
    event(0xFFFFFFFB, T0 + 4, m.EV_BOLUS, role=2, kind=m.BOLUS_CLINICIAN, a=50_000, b=600,
          c=100_000),
    event(0xFFFFFFFC, T0 + 5, m.EV_ALARM, a=m.ALARM_OCCLUSION, b=1),
    event(0xFFFFFFFD, 0xFFFFFFFF, m.EV_FAULT, role=3, rule=0, kind=255, a=-1, b=-1, c=-1),
    event(0xFFFFFFFE, 0xFFFFFFFF, m.EV_ESCALATION, a=1_200_000, b=400_000, c=3),
]

VALID = [
    ("get_info", "GET_INFO", 1, {}),
    ("get_info_seq_ffff", "GET_INFO", 0xFFFF, {}),
    ("get_status", "GET_STATUS", 1, {}),  # hand-checked: see the module docstring
    ("get_status_seq_0100", "GET_STATUS", 0x0100, {}),
    ("set_continuous_400mcg", "SET_CONTINUOUS", 0x0102, {"daily_dose_ng": 400_000, "confirm": 0}),
    ("set_continuous_412_5mcg", "SET_CONTINUOUS", 5, {"daily_dose_ng": 412_500, "confirm": 0}),
    ("set_continuous_low_bounds", "SET_CONTINUOUS", 6, {"daily_dose_ng": 1000, "confirm": 0}),
    ("set_continuous_high_bounds", "SET_CONTINUOUS", 7,
     {"daily_dose_ng": 20_000_000, "confirm": HIGH | DECREASE | CUSTOM | DRAIN}),
    ("set_continuous_high_dose_confirmed", "SET_CONTINUOUS", 0x0108,
     {"daily_dose_ng": 1_200_000, "confirm": HIGH}),
    ("set_continuous_two_confirmations", "SET_CONTINUOUS", 0x0109,
     {"daily_dose_ng": 1_100_000, "confirm": HIGH | DECREASE}),
    ("stop_clinician", "STOP", 8, {"reason": 1, "confirm": m.STOP_CONFIRM}),
    ("stop_overdose", "STOP", 9, {"reason": 2, "confirm": m.STOP_CONFIRM}),
    ("stop_end_of_therapy", "STOP", 10, {"reason": 3, "confirm": m.STOP_CONFIRM}),
    ("stop_surgery", "STOP", 11, {"reason": 4, "confirm": m.STOP_CONFIRM}),
    # Valid frames: the codec does not read the confirmation word (the dispatcher does).
    ("stop_unconfirmed", "STOP", 12, {"reason": 1, "confirm": 0}),
    ("enter_repl", "ENTER_REPL", 13, {"confirm": m.REPL_CONFIRM}),
    ("enter_repl_unconfirmed", "ENTER_REPL", 14, {"confirm": m.STOP_CONFIRM}),
    ("enter_repl_confirm_0", "ENTER_REPL", 0x0100, {"confirm": 0}),
    ("info", "INFO", 1, {"protocol_version": 1, "board_id": BOARD_ID,
                         "reservoir_nl": 20_000_000, "step_nl": 250, "fw_version": "0.1.0"}),
    ("info_long_version", "INFO", 2, {"protocol_version": 1, "board_id": bytes(8),
                                      "reservoir_nl": 40_000_000, "step_nl": 0xFFFF,
                                      "fw_version": "0.1.0-rc.1+g0123456789ab"}),
    ("info_empty_version", "INFO", 3, {"protocol_version": 0, "board_id": b"\xff" * 8,
                                       "reservoir_nl": 0, "step_nl": 1, "fw_version": ""}),
    ("status_unset", "STATUS", 1, status()),
    ("status_running", "STATUS", 0x0102, status(
        mode=m.MODE_CONTINUOUS, phase=m.PHASE_MAINTENANCE, daily_dose_ng=412_500,
        concentration=500, rate_nl_day=825_000, bolus=m.BOLUS_CLINICIAN, bolus_left_ng=20_000,
        last_24h_ng=430_000, delivered_nl=7_000_000, delivered_ng=3_500_000,
        reservoir_nl=13_000_000, uptime_s=733_000, clock_s=T0, low_at_s=T0 + 12 * DAY,
        refill_at_s=T0 + 5 * DAY, dry_at_s=T0 + 15 * DAY, battery_mv=3650, frame_errors=3)),
    ("status_alarms_and_sessions", "STATUS", 0x0103, status(
        mode=m.MODE_FLEX, phase=m.PHASE_TITRATION, daily_dose_ng=300_000, concentration=2000,
        rate_nl_day=150_000, reservoir_nl=1_000_000, clock_s=T0, low_at_s=T0,
        refill_at_s=T0 - DAY, dry_at_s=T0 + 6 * DAY,
        alarms=1 << (m.ALARM_LOW_RESERVOIR - 1) | 1 << (m.ALARM_REFILL_DUE - 1),
        sessions=m.SESSION_REFILL | m.SESSION_CAP)),
    ("status_max", "STATUS", 0xFFFF, {
        f[0]: f[3] for f in m.STATUS_FIELDS}),  # every field at its maximum
    ("continuous_ok", "CONTINUOUS_OK", 0x0102,
     program(m.MODE_CONTINUOUS, 400_000, 800_000, 0, [step(0, 400_000)])),
    ("stopped_clinician", "STOPPED", 8, {"reason": 1}),
    ("stopped_surgery", "STOPPED", 11, {"reason": 4}),
    ("repl_ok", "REPL_OK", 13, {}),
    ("repl_ok_seq_ffff", "REPL_OK", 0xFFFF, {}),
    ("challenge", "CHALLENGE", 15, {}),
    ("challenge_seq_ffff", "CHALLENGE", 0xFFFF, {}),
    ("challenge_ok", "CHALLENGE_OK", 15,
     {"session": 2, "nonce": bytes.fromhex("a1b2c3d4e5f60718293a4b5c6d7e8f90")}),
    ("challenge_ok_slot_0_zero_nonce", "CHALLENGE_OK", 16, {"session": 0, "nonce": bytes(16)}),
    ("challenge_ok_last_slot", "CHALLENGE_OK", 0x0100, {"session": 3, "nonce": b"\xff" * 16}),
    ("get_counters", "GET_COUNTERS", 17, {}),
    ("counters_zero", "COUNTERS", 17, {e[1].lower(): 0 for e in m.ERRORS}),
    ("counters_each", "COUNTERS", 18, {e[1].lower(): 0x0101 * e[0] for e in m.ERRORS}),
    ("counters_max", "COUNTERS", 19, {e[1].lower(): 0xFFFF for e in m.ERRORS}),
    ("read_log_0", "READ_LOG", 20, {"number": 0, "count": m.LOG_PAGE_EVENTS}),
    ("read_log_one", "READ_LOG", 21, {"number": 300, "count": 1}),
    ("read_log_max", "READ_LOG", 22, {"number": 0xFFFFFFFF, "count": m.LOG_PAGE_EVENTS}),
    ("log_page_empty_log", "LOG_PAGE", 20, {"oldest": 0, "total": 0, "events": []}),
    ("log_page_past_newest", "LOG_PAGE", 0x0100, {"oldest": 44, "total": 301, "events": []}),
    ("log_page_one_boot", "LOG_PAGE", 21,
     {"oldest": 0, "total": 1, "events": [event(0, T0, m.EV_BOOT, a=1)]}),
    ("log_page_three", "LOG_PAGE", 22, {"oldest": 44, "total": 303, "events": [
        event(300, T0 + 3600, m.EV_REFUSED, role=2, rule=m.RULE_HARD_CEILING,
              kind=m.SET_CONTINUOUS, a=m.ERR_LIMIT, b=1_200_000, c=1_000_000),
        event(301, T0 + 3601, m.EV_PROGRAM, role=2, a=900_000, b=400_000, c=m.MODE_CONTINUOUS),
        event(302, T0 + 7200, m.EV_BOLUS_DONE, kind=m.BOLUS_PATIENT, a=25_000, b=0),
    ]}),
    # Lockouts (one event each): the clinician's role after bad tags (the second in a row:
    # 120 s), then CHALLENGE throttled (a 0: no role; 10 s to the next one).
    ("log_page_lockouts", "LOG_PAGE", 23, {"oldest": 0, "total": 512, "events": [
        event(510, T0 + 60, m.EV_LOCKOUT, kind=m.SET_CONTINUOUS, a=m.ROLE_CLINICIAN, b=120,
              c=2),
        event(511, T0 + 61, m.EV_LOCKOUT, kind=m.CHALLENGE, a=0, b=10, c=0),
    ]}),
    ("log_page_full_extremes", "LOG_PAGE", 0xFFFF,
     {"oldest": 0xFFFFFF00, "total": 0xFFFFFFFF, "events": EVENTS_8}),
    ("set_clock", "SET_CLOCK", 23, {"time_s": T0}),
    ("set_clock_min", "SET_CLOCK", 24, {"time_s": m.CLOCK_MIN}),
    ("set_clock_max", "SET_CLOCK", 25, {"time_s": m.CLOCK_MAX}),
    ("clock_ok", "CLOCK_OK", 23, {"time_s": T0}),
    ("set_telemetry_off", "SET_TELEMETRY", 26, {"period_s": 0}),
    ("set_telemetry_hour", "SET_TELEMETRY", 27, {"period_s": 3600}),
    ("telemetry_ok", "TELEMETRY_OK", 27, {"period_s": 3600}),
    ("set_profile_adult_spinal", "SET_PROFILE", 28,
     profile(m.ORIGIN_SPINAL, 42, m.PHASE_SCREENING, 1_000_000, 50_000, 0)),
    ("set_profile_child_cerebral", "SET_PROFILE", 29,
     profile(m.ORIGIN_CEREBRAL, 4, m.PHASE_TITRATION, 500_000, 20_000, T0)),
    ("set_profile_low_bounds", "SET_PROFILE", 30, profile(1, 0, 1, 1000, 0, 0)),
    ("set_profile_high_bounds", "SET_PROFILE", 31,
     profile(2, 120, 3, m.DOSE_MAX_NG_DAY, 1_000_000, m.CLOCK_MAX, m.CLOCK_MAX)),
    ("set_profile_brain_injury", "SET_PROFILE", 36,
     profile(m.ORIGIN_CEREBRAL, 30, m.PHASE_SCREENING, 800_000, 200_000, 0, T0 - 400 * DAY)),
    ("profile_ok", "PROFILE_OK", 28,
     profile(m.ORIGIN_SPINAL, 42, m.PHASE_SCREENING, 1_000_000, 50_000, 0)),
    ("get_profile", "GET_PROFILE", 32, {}),
    ("profile_none_set", "PROFILE", 0x0120, profile(1, 0, m.PHASE_UNSET, 1000, 0, 0)),
    ("profile", "PROFILE", 32,
     profile(m.ORIGIN_CEREBRAL, 17, m.PHASE_MAINTENANCE, 2_000_000, 150_000, T0 - 400 * DAY,
             T0 - 800 * DAY)),
    ("set_flex_two_steps", "SET_FLEX", 33,
     {"confirm": 0, "utc_offset_min": 60, "steps": [step(0, 400_000), step(480, 600_000)]}),
    ("set_flex_three_steps_west", "SET_FLEX", 34,
     {"confirm": HIGH | DECREASE, "utc_offset_min": -300, "steps": FLEX_DAY}),
    ("set_flex_max_steps", "SET_FLEX", 35,
     {"confirm": HIGH, "utc_offset_min": 840, "steps": FLEX_MAX}),
    ("set_flex_bounds", "SET_FLEX", 36, {"confirm": 0, "utc_offset_min": -720,
                                         "steps": [step(0, 1000), step(1439, 20_000_000)]}),
    ("flex_ok", "FLEX_OK", 34, program(m.MODE_FLEX, 429_166, 1_000_000, -300, FLEX_DAY)),
    ("get_program", "GET_PROGRAM", 37, {}),
    ("program_stopped", "PROGRAM", 37, program(m.MODE_STOPPED, 0, 0, 0, [])),
    ("program_flex_max", "PROGRAM", 38, program(m.MODE_FLEX, 215_000, 107_500, 840,
                                                FLEX_MAX)),
    ("program_minimum_rate", "PROGRAM", 39, program(m.MODE_MINIMUM, 0, 48_000, 0, [])),
    ("program_taper", "PROGRAM", 0x0127,
     program(m.MODE_TAPER, 378_572, 757_144, 60, [step(0, 378_572)])),
    ("bolus_50mcg", "BOLUS", 40, {"dose_ng": 50_000, "duration_s": 600}),
    ("bolus_low_bounds", "BOLUS", 41, {"dose_ng": 1, "duration_s": 60}),
    ("bolus_high_bounds", "BOLUS", 42, {"dose_ng": m.BOLUS_MAX_NG, "duration_s": 86_400}),
    ("bolus_ok", "BOLUS_OK", 40, bolus_ok(m.BOLUS_CLINICIAN, 50_000, 100_000, 600, T0 + 600)),
    ("prime", "PRIME", 43, {"duration_s": 600}),
    ("prime_low_bound", "PRIME", 44, {"duration_s": 60}),
    ("prime_high_bound", "PRIME", 45, {"duration_s": 86_400}),
    ("prime_ok", "PRIME_OK", 43, bolus_ok(m.BOLUS_PRIMING, 25_000, 50_000, 600, T0 + 600)),
    ("screen_50mcg", "SCREEN", 46, {"dose_ng": 50_000, "duration_s": 60}),
    ("screen_child_25mcg", "SCREEN", 47, {"dose_ng": 25_000, "duration_s": 3600}),
    # 1 s is the codec's bound; at least 60 s is a rule (screening_duration) of the pump's.
    ("screen_low_bounds", "SCREEN", 48, {"dose_ng": 1, "duration_s": 1}),
    ("screen_ok", "SCREEN_OK", 46,
     bolus_ok(m.BOLUS_SCREENING, 50_000, 100_000, 60, T0 + 60)),
    ("patient_bolus", "PATIENT_BOLUS", 49, {}),
    ("patient_bolus_ok", "PATIENT_BOLUS_OK", 49,
     bolus_ok(m.BOLUS_PATIENT, 25_000, 50_000, 600, 0xFFFFFFFF)),
    ("set_patient_bolus_on", "SET_PATIENT_BOLUS", 50, patient_bolus(25_000, 600, 14_400, 4)),
    ("set_patient_bolus_off", "SET_PATIENT_BOLUS", 51, patient_bolus(0, 60, 0, 0)),
    ("set_patient_bolus_max", "SET_PATIENT_BOLUS", 52,
     patient_bolus(m.BOLUS_MAX_NG, 86_400, 86_400, 24)),
    ("patient_bolus_set", "PATIENT_BOLUS_SET", 50,
     patient_bolus(25_000, 600, 14_400, 4, 0, 0)),
    ("get_patient_bolus", "GET_PATIENT_BOLUS", 53, {}),
    ("patient_bolus_state", "PATIENT_BOLUS_STATE", 53,
     patient_bolus(25_000, 600, 14_400, 4, 2, T0 + 3 * 3600)),
    ("patient_bolus_state_max", "PATIENT_BOLUS_STATE", 0xFFFF,
     patient_bolus(m.BOLUS_MAX_NG, 86_400, 86_400, 24, 255, 0xFFFFFFFF)),
    ("get_screening", "GET_SCREENING", 54, {}),
    ("screening_none", "SCREENING", 54, {"next_dose_ng": 50_000, "next_at_s": 0, "given": []}),
    ("screening_two_given", "SCREENING", 55, {
        "next_dose_ng": 100_000, "next_at_s": T0 + 2 * DAY,
        "given": [given(T0, 50_000, 60), given(T0 + DAY, 75_000, 60)]}),
    ("screening_four_given", "SCREENING", 56, {
        "next_dose_ng": 0, "next_at_s": 0,
        "given": [given(T0 + k * DAY, 25_000 * (k + 1), 60 + k) for k in range(4)]}),
    ("suspend", "SUSPEND", 57, {"reason": 4, "confirm": m.STOP_CONFIRM}),
    ("suspend_unconfirmed", "SUSPEND", 58, {"reason": 1, "confirm": 0}),
    ("suspended", "SUSPENDED", 57, {"reason": 4, "rate_nl_day": 48_000}),
    ("resume", "RESUME", 59, {}),
    ("resumed", "RESUMED", 59, program(m.MODE_FLEX, 429_166, 1_000_000, -300, FLEX_DAY)),
    ("refill_begin", "REFILL_BEGIN", 60, {}),
    ("refill_open", "REFILL_OPEN", 60,
     {"expected_nl": 1_800_000, "capacity_nl": 20_000_000, "concentration": 500}),
    ("refill_commit", "REFILL_COMMIT", 61,
     refill_commit(1_800_000, 20_000_000, 500, 500, 0)),
    ("refill_commit_custom_and_mismatch", "REFILL_COMMIT", 62,
     refill_commit(900_000, 18_000_000, 750, 750, CUSTOM | DRAIN)),
    # The two entries disagree: a valid frame (whether they must agree is the pump's rule).
    ("refill_commit_entries_differ", "REFILL_COMMIT", 63,
     refill_commit(0, 0, 1, 0xFFFF, HIGH | DECREASE | CUSTOM | DRAIN)),
    ("refill_done", "REFILL_DONE", 61,
     {"reservoir_nl": 20_000_000, "concentration": 500, "expected_nl": 1_800_000,
      "low_at_s": T0 + 40 * DAY, "refill_at_s": T0 + 33 * DAY}),
    ("refill_abort", "REFILL_ABORT", 64, {}),
    ("refill_aborted", "REFILL_ABORTED", 64, {}),
    ("cap_begin", "CAP_BEGIN", 65, {"duration_s": 600}),
    ("cap_begin_min", "CAP_BEGIN", 66, {"duration_s": 60}),
    ("cap_begin_max", "CAP_BEGIN", 67, {"duration_s": 1800}),
    ("cap_open", "CAP_OPEN", 65, {"until_s": T0 + 600}),
    ("cap_end", "CAP_END", 68, {}),
    ("cap_closed", "CAP_CLOSED", 68, {}),
    ("alarm_ack_low_reservoir", "ALARM_ACK", 69, {"alarm": m.ALARM_LOW_RESERVOIR}),
    ("alarm_ack_last", "ALARM_ACK", 70, {"alarm": len(m.ALARMS)}),
    ("alarm_acked", "ALARM_ACKED", 69, alarm_state(0x0003, 0x0002, 0)),
    ("alarm_silence_min", "ALARM_SILENCE", 71, {"minutes": 1}),
    ("alarm_silence_day", "ALARM_SILENCE", 72, {"minutes": 1440}),
    ("alarm_silenced", "ALARM_SILENCED", 72, alarm_state(0x0022, 0x0020, T0 + DAY)),
    ("alarm_silenced_max", "ALARM_SILENCED", 0xFFFF,
     alarm_state(m.ALARM_BITS, m.ALARM_BITS, 0xFFFFFFFF)),
    ("get_alarms", "GET_ALARMS", 73, {}),
    ("alarm_state_none", "ALARM_STATE", 73, alarm_state(0, 0, 0)),
    ("alarm_state_critical", "ALARM_STATE", 74,
     alarm_state(1 << (m.ALARM_CAP_VIOLATION - 1), 1 << (m.ALARM_CAP_VIOLATION - 1), 0)),
    ("set_taper_two_weeks", "SET_TAPER", 73, {"target_ng": 100_000, "days": 14, "confirm": 0}),
    ("set_taper_bounds_low", "SET_TAPER", 74, {"target_ng": 1000, "days": 14, "confirm": 0}),
    ("set_taper_bounds_high", "SET_TAPER", 75,
     {"target_ng": m.DOSE_MAX_NG_DAY, "days": 28, "confirm": DECREASE | HIGH}),
    ("taper_ok", "TAPER_OK", 73, {"start_ng": 400_000, "target_ng": 100_000, "days": 14,
                                  "step_ng": 21_428, "ends_at_s": T0 + 14 * DAY}),
    ("taper_ok_max", "TAPER_OK", 0xFFFF, {"start_ng": 0xFFFFFFFF, "target_ng": 0xFFFFFFFF,
                                          "days": 255, "step_ng": 0xFFFFFFFF,
                                          "ends_at_s": 0xFFFFFFFF}),
    ("telemetry_running", "TELEMETRY", 0,
     {"mode": 1, "rate_nl_day": 825_000, "bolus_left_ng": 20_000, "delivered_nl": 7_000_000,
      "delivered_ng": 3_500_000, "reservoir_nl": 13_000_000, "clock_s": T0, "alarms": 0x0004,
      "battery_mv": 3650}),
    ("telemetry_stopped", "TELEMETRY", 0,
     {"mode": 0, "rate_nl_day": 0, "bolus_left_ng": 0, "delivered_nl": 0, "delivered_ng": 0,
      "reservoir_nl": 20_000_000, "clock_s": 0, "alarms": 0, "battery_mv": 0}),
    ("alarm_raised", "ALARM", 0, {"alarm": m.ALARM_OCCLUSION, "active": 1, "time_s": T0,
                                  "alarms": 1 << (m.ALARM_OCCLUSION - 1)}),
    ("alarm_cleared", "ALARM", 0,
     {"alarm": len(m.ALARMS), "active": 0, "time_s": 0xFFFFFFFF, "alarms": 0}),
    ("error_not_confirmed", "ERROR", 12,
     error(10, 4, "stop needs the confirmation word 0x53544F50")),
    ("error_bad_crc", "ERROR", 0, error(3, 0, "CRC mismatch")),
    ("error_empty_reason", "ERROR", 0x0100, error(12, 3, "")),
    ("error_limit_hard_ceiling", "ERROR", 0x0101,
     error(19, 3, "above the ceiling", rule=m.RULE_HARD_CEILING, requested=1_200_000,
           allowed=1_000_000)),
    ("error_too_soon", "ERROR", 0x0102,
     error(20, 0x11, "next screening bolus in 5 h", rule=m.RULE_SCREENING_INTERVAL,
           requested=75_000, allowed=0, wait_s=5 * 3600)),
    # The guard's rate limits (firmware/core/guard.py): a role locked out after bad tags, and
    # CHALLENGE throttled; each with the seconds to wait.
    ("error_locked", "ERROR", 0x0103,
     error(21, 0x03, "clinician locked out after 5 bad tags", wait_s=900)),
    ("error_busy", "ERROR", 0x0104,
     error(22, 0x06, "too many sessions opened and not used", wait_s=10)),
    ("error_fields_max", "ERROR", 0xFFFE,
     error(255, 255, "x", rule=len(m.RULES), requested=0xFFFFFFFF, allowed=0xFFFFFFFF,
           wait_s=0xFFFFFFFF)),
    # 80 bytes of UTF-8 (the maximum), two-byte characters included.
    ("error_utf8_max", "ERROR", 0x7FFF,
     error(255, 255, "dosis \u00fcberschritten: " + "\u00e9" * 29)),
]


def vector(name, msg, seq, fields, fr, **extra):
    """One vector's record: what it is, its frame and its wire bytes."""
    r = row(msg)
    w = wire(fr)
    assert cobs.decode(w[:-1]) == fr, name
    return {
        "name": name,
        "type": r[0],
        "message": msg,
        "kind": r[2],
        "seq": seq,
        "fields": jsonable(r[3], fields),
        **extra,
        "frame": fr.hex(),
        "wire": w.hex(),
    }


def valid_vectors():
    out = []
    for name, msg, seq, fields in VALID:
        out.append(vector(name, msg, seq, fields, frame(row(msg)[0], seq, payload(msg, fields))))
    covered = {v["type"] for v in out}
    missing = [r[1] for r in m.MESSAGES if r[0] not in covered]
    assert not missing, f"no golden vector for {missing}"
    check_kinds_covered(VALID)
    return out


def check_kinds_covered(vectors):
    """Every list layout of the table has vectors with several items, with its largest count
    and (where its count may be 0) with none; every flag set one with several bits."""
    counts, lows, highs, bits = {}, {}, {}, {}
    for r in m.MESSAGES:
        for f in r[3]:
            if f[1] == "list":
                key = (f[0], f[4])
                lows[key] = min(lows.get(key, f[2]), f[2])
                highs[key] = max(highs.get(key, f[3]), f[3])
                counts.setdefault(key, set())
            elif known_bits(f):
                bits.setdefault(f[4], set())
    for _name, msg, _seq, fields in vectors:
        for f in row(msg)[3]:
            if f[1] == "list":
                counts[(f[0], f[4])].add(len(fields[f[0]]))
            elif known_bits(f):
                bits[f[4]].add(bin(fields[f[0]]).count("1"))
    for key, seen in counts.items():
        want = {highs[key]} | ({0} if lows[key] == 0 else set())
        assert want <= seen and max(seen) >= 2, f"list {key[0]}: counts {sorted(seen)}"
    for name, seen in bits.items():
        assert max(seen) >= 2, f"flag set {name}: no vector with several bits"


# -- authenticated vectors ---------------------------------------------------------------------

# (vector name, message name, seq, fields, role, counter[, session]): signed with the role's
# test key and the session's nonce (SESSION unless given).
SIGNED = [
    ("get_status_patient", "GET_STATUS", 0x21, {}, "patient", 1),
    ("get_status_clinician", "GET_STATUS", 0x22, {}, "clinician", 2),  # the docstring's
    ("get_status_service_max_counter", "GET_STATUS", 0xFFFF, {}, "service", 0xFFFFFFFF),
    ("get_status_session_0", "GET_STATUS", 0x23, {}, "clinician", 1, 0),
    ("get_info_signed", "GET_INFO", 0x24, {}, "patient", 8),
    ("challenge_signed", "CHALLENGE", 0x25, {}, "service", 9),
    ("set_continuous_clinician", "SET_CONTINUOUS", 0x0102,
     {"daily_dose_ng": 400_000, "confirm": 0}, "clinician", 3),
    ("set_continuous_clinician_high", "SET_CONTINUOUS", 0x0200,
     {"daily_dose_ng": 20_000_000, "confirm": HIGH | DECREASE}, "clinician", 0x01000000),
    ("stop_clinician_signed", "STOP", 0x0103, {"reason": 2, "confirm": m.STOP_CONFIRM},
     "clinician", 4),
    # Valid and signed: the guard admits it (the confirmation word is the dispatcher's).
    ("stop_unconfirmed_signed", "STOP", 0x0104, {"reason": 1, "confirm": 0}, "clinician", 5),
    ("enter_repl_clinician", "ENTER_REPL", 0x0105, {"confirm": m.REPL_CONFIRM}, "clinician", 6),
    ("enter_repl_service", "ENTER_REPL", 0x0106, {"confirm": m.REPL_CONFIRM}, "service", 7),
    ("get_counters_patient", "GET_COUNTERS", 0x0107, {}, "patient", 10),
    ("read_log_clinician", "READ_LOG", 0x0108, {"number": 5, "count": 3}, "clinician", 11),
    ("read_log_service", "READ_LOG", 0x0109, {"number": 0, "count": m.LOG_PAGE_EVENTS},
     "service", 12),
    ("set_clock_clinician", "SET_CLOCK", 0x010A, {"time_s": T0}, "clinician", 13),
    ("set_clock_service", "SET_CLOCK", 0x010B, {"time_s": m.CLOCK_MAX}, "service", 14),
    ("set_telemetry_patient", "SET_TELEMETRY", 0x010C, {"period_s": 60}, "patient", 15),
    ("set_profile_clinician", "SET_PROFILE", 0x010D,
     profile(m.ORIGIN_SPINAL, 42, m.PHASE_SCREENING, 1_000_000, 50_000, 0), "clinician", 16),
    ("get_profile_patient", "GET_PROFILE", 0x010E, {}, "patient", 17),
    ("set_flex_clinician", "SET_FLEX", 0x010F,
     {"confirm": DECREASE, "utc_offset_min": 60, "steps": FLEX_DAY}, "clinician", 18),
    ("set_flex_clinician_max_steps", "SET_FLEX", 0x0110,
     {"confirm": 0, "utc_offset_min": -720, "steps": FLEX_MAX}, "clinician", 19),
    ("get_program_service", "GET_PROGRAM", 0x0111, {}, "service", 20),
    ("bolus_clinician", "BOLUS", 0x0112, {"dose_ng": 50_000, "duration_s": 600},
     "clinician", 21),
    ("prime_clinician", "PRIME", 0x0113, {"duration_s": 600}, "clinician", 22),
    ("screen_clinician", "SCREEN", 0x0114, {"dose_ng": 50_000, "duration_s": 60},
     "clinician", 23),
    ("patient_bolus_patient", "PATIENT_BOLUS", 0x0115, {}, "patient", 24),
    ("set_patient_bolus_clinician", "SET_PATIENT_BOLUS", 0x0116,
     patient_bolus(25_000, 600, 14_400, 4), "clinician", 25),
    ("get_patient_bolus_patient", "GET_PATIENT_BOLUS", 0x0117, {}, "patient", 26),
    ("get_screening_clinician", "GET_SCREENING", 0x0118, {}, "clinician", 27),
    ("suspend_clinician", "SUSPEND", 0x0119, {"reason": 4, "confirm": m.STOP_CONFIRM},
     "clinician", 28),
    ("resume_clinician", "RESUME", 0x011A, {}, "clinician", 29),
    ("refill_begin_clinician", "REFILL_BEGIN", 0x011B, {}, "clinician", 30),
    ("refill_commit_clinician", "REFILL_COMMIT", 0x011C,
     refill_commit(1_800_000, 20_000_000, 500, 500, DRAIN), "clinician", 31),
    ("refill_abort_clinician", "REFILL_ABORT", 0x011D, {}, "clinician", 32),
    ("cap_begin_clinician", "CAP_BEGIN", 0x011E, {"duration_s": 600}, "clinician", 33),
    ("cap_end_clinician", "CAP_END", 0x011F, {}, "clinician", 34),
    ("alarm_ack_patient", "ALARM_ACK", 0x0120, {"alarm": m.ALARM_LOW_RESERVOIR}, "patient", 35),
    ("alarm_silence_service", "ALARM_SILENCE", 0x0121, {"minutes": 30}, "service", 36),
    ("get_alarms_patient", "GET_ALARMS", 0x0122, {}, "patient", 37),
    ("set_taper_clinician", "SET_TAPER", 0x0122,
     {"target_ng": 100_000, "days": 21, "confirm": DECREASE}, "clinician", 37),
]


def signed_vectors():
    out = []
    nonces = dict(SESSIONS)
    for name, msg, seq, fields, role_name, counter, *rest in SIGNED:
        session = rest[0] if rest else SESSION
        r = row(msg)
        assert r[2] == "req", name
        role = ROLES[role_name]
        need = m.ACCESS.get(r[0], m.ANY_ROLE)
        assert need == m.OPEN or need & (1 << role), f"{name}: {role_name} may not send {msg}"
        key, nonce = KEYS[role], nonces[session]
        fr = signed_frame(r[0], seq, payload(msg, fields), session, role, counter, key, nonce)
        out.append(vector(name, msg, seq, fields, fr,
                          auth=auth_json(session, role, counter, key, nonce, fr)))
    covered = {v["type"] for v in out}
    missing = [r[1] for r in m.MESSAGES if r[2] == "req" and r[0] not in covered]
    assert not missing, f"no signed vector for {missing}"
    return out


def refused_vectors():
    """Frames the codec accepts and the authentication refuses (error in admission order:
    AUTH_REQUIRED, NO_SESSION, NO_KEY, BAD_TAG, WRONG_ROLE; then REPLAY for the counter)."""
    t = {r[1]: r[0] for r in m.MESSAGES}
    set_cont = payload("SET_CONTINUOUS", {"daily_dose_ng": 400_000, "confirm": 0})
    stop = payload("STOP", {"reason": 2, "confirm": m.STOP_CONFIRM})
    repl = payload("ENTER_REPL", {"confirm": m.REPL_CONFIRM})
    read_log = payload("READ_LOG", {"number": 0, "count": m.LOG_PAGE_EVENTS})
    flex = payload("SET_FLEX", {"confirm": 0, "utc_offset_min": 0, "steps": FLEX_DAY})
    bolus = payload("BOLUS", {"dose_ng": 50_000, "duration_s": 600})
    ack = payload("ALARM_ACK", {"alarm": m.ALARM_LOW_RESERVOIR})
    commit = payload("REFILL_COMMIT", refill_commit(1_800_000, 20_000_000, 500, 500, 0))
    nonces = dict(SESSIONS)
    clin, pat, serv = ROLES["clinician"], ROLES["patient"], ROLES["service"]
    other_nonce = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
    vectors = []

    def add(name, error, fr, session=None, role=None, counter=None, key=None, nonce=None,
            tampered=None):
        auth = None
        if session is not None:
            # The trailer as on the wire (after any edit), and the key and nonce that signed.
            session, role, counter = struct.unpack_from(TRAILER, fr, len(fr) - 4 - TAG_SIZE - 6)
            auth = auth_json(session, role, counter, key, nonce, fr)
            auth["tampered"] = tampered
        assert error in {e[1] for e in m.ERRORS}, error
        vectors.append({
            "name": name,
            "wire": wire(fr).hex(),
            "frame": fr.hex(),
            "error": error,
            "seq": struct.unpack_from("<H", fr, 3)[0],
            "request_type": fr[1],
            "auth": auth,
        })

    def sign(name, error, mtype, body, session=SESSION, role=clin, counter=1, key=None,
             nonce=None, edit=None, tampered=None):
        key = KEYS.get(role, KEYS[clin]) if key is None else key
        nonce = nonces.get(session, NONCE) if nonce is None else nonce
        fr = signed_frame(mtype, 0x0300 + len(vectors), body, session, role, counter, key,
                          nonce)
        if edit is not None:
            fr = recrc(edit(bytearray(fr)))
        add(name, error, fr, session, role, counter, key, nonce, tampered)

    # Unsigned, but only open requests may be: AUTH_REQUIRED.
    add("unsigned_get_status", "AUTH_REQUIRED", frame(t["GET_STATUS"], SEQ))
    add("unsigned_set_continuous", "AUTH_REQUIRED", frame(t["SET_CONTINUOUS"], SEQ, set_cont))
    add("unsigned_stop", "AUTH_REQUIRED", frame(t["STOP"], SEQ, stop))
    add("unsigned_enter_repl", "AUTH_REQUIRED", frame(t["ENTER_REPL"], SEQ, repl))
    # No such session.
    sign("session_not_open", "NO_SESSION", t["SET_CONTINUOUS"], set_cont, session=3)
    sign("session_out_of_range", "NO_SESSION", t["STOP"], stop, session=4)
    sign("session_255", "NO_SESSION", t["GET_STATUS"], b"", session=255)
    sign("session_before_key", "NO_SESSION", t["GET_STATUS"], b"", session=3, role=0)
    # No key for the role.
    sign("role_none", "NO_KEY", t["GET_STATUS"], b"", role=0, key=KEYS[clin])
    sign("role_4", "NO_KEY", t["SET_CONTINUOUS"], set_cont, role=4, key=KEYS[clin])
    sign("role_255", "NO_KEY", t["STOP"], stop, role=255, key=KEYS[clin])
    sign("key_before_tag", "NO_KEY", t["STOP"], stop, role=0, key=KEYS[clin],
         edit=lambda f: f[:-5] + bytes([f[-5] ^ 1]) + f[-4:], tampered="tag: last byte ^ 01")
    # The tag does not match.
    sign("wrong_key", "BAD_TAG", t["SET_CONTINUOUS"], set_cont, key=KEYS[pat])
    sign("other_nonce", "BAD_TAG", t["SET_CONTINUOUS"], set_cont, nonce=other_nonce)
    sign("signed_in_another_session", "BAD_TAG", t["STOP"], stop, session=0, nonce=NONCE)
    sign("nonce_of_session_1_for_2", "BAD_TAG", t["GET_STATUS"], b"", nonce=nonces[1])

    def at(i, x):
        def edit(f):
            f[i] ^= x
            return f
        return edit

    n = 5 + len(set_cont)  # header + payload: the trailer starts here
    sign("tag_first_bit", "BAD_TAG", t["SET_CONTINUOUS"], set_cont,
         edit=at(n + 6, 0x01), tampered="tag: first byte ^ 01")
    sign("tag_last_bit", "BAD_TAG", t["SET_CONTINUOUS"], set_cont,
         edit=at(n + 6 + TAG_SIZE - 1, 0x80), tampered="tag: last byte ^ 80")
    sign("tag_zero", "BAD_TAG", t["SET_CONTINUOUS"], set_cont,
         edit=lambda f: f[: n + 6] + bytes(TAG_SIZE) + f[-4:], tampered="tag: all zero")
    sign("payload_dose_edited", "BAD_TAG", t["SET_CONTINUOUS"], set_cont,
         edit=at(5, 0x01), tampered="daily_dose_ng: low byte ^ 01")
    sign("payload_confirm_edited", "BAD_TAG", t["SET_CONTINUOUS"], set_cont,
         edit=at(9, 0x02), tampered="confirm: ^ 02 (large_decrease)")
    sign("payload_flex_step_edited", "BAD_TAG", t["SET_FLEX"], flex,
         edit=at(5 + 4 + 6 + 2, 0x01), tampered="steps[1].daily_dose_ng: low byte ^ 01")
    sign("seq_edited", "BAD_TAG", t["SET_CONTINUOUS"], set_cont,
         edit=at(3, 0x01), tampered="seq: low byte ^ 01")
    sign("type_edited", "BAD_TAG", t["GET_STATUS"], b"", role=pat,
         edit=at(1, 0x02 ^ 0x01), tampered="type: GET_STATUS -> GET_INFO")
    sign("counter_edited", "BAD_TAG", t["SET_CONTINUOUS"], set_cont, counter=5,
         edit=at(n + 2, 0x08), tampered="counter: 5 -> 13")
    sign("role_edited", "BAD_TAG", t["GET_STATUS"], b"", role=pat,
         edit=at(6, 0x03),
         tampered="role: patient -> clinician")
    sign("session_edited", "BAD_TAG", t["GET_STATUS"], b"", session=2,
         edit=at(5, 0x02), tampered="session: 2 -> 0")
    sign("tag_before_role", "BAD_TAG", t["STOP"], stop, role=pat,
         edit=lambda f: f[:-5] + bytes([f[-5] ^ 1]) + f[-4:], tampered="tag: last byte ^ 01")
    # The role may not send this.
    sign("patient_set_continuous", "WRONG_ROLE", t["SET_CONTINUOUS"], set_cont, role=pat)
    sign("patient_stop", "WRONG_ROLE", t["STOP"], stop, role=pat)
    sign("patient_enter_repl", "WRONG_ROLE", t["ENTER_REPL"], repl, role=pat)
    sign("service_set_continuous", "WRONG_ROLE", t["SET_CONTINUOUS"], set_cont, role=serv)
    sign("service_stop", "WRONG_ROLE", t["STOP"], stop, role=serv)
    clock = struct.pack("<I", 1_767_225_600)
    add("unsigned_set_clock", "AUTH_REQUIRED", frame(t["SET_CLOCK"], SEQ, clock))
    add("unsigned_read_log", "AUTH_REQUIRED", frame(t["READ_LOG"], SEQ, read_log))
    add("unsigned_get_counters", "AUTH_REQUIRED", frame(t["GET_COUNTERS"], SEQ))
    add("unsigned_set_telemetry", "AUTH_REQUIRED",
        frame(t["SET_TELEMETRY"], SEQ, struct.pack("<H", 1)))
    sign("patient_set_clock", "WRONG_ROLE", t["SET_CLOCK"], clock, role=pat)
    sign("patient_read_log", "WRONG_ROLE", t["READ_LOG"], read_log, role=pat)
    # The therapy catalog: unsigned, by a role the access table does not name.
    add("unsigned_set_flex", "AUTH_REQUIRED", frame(t["SET_FLEX"], SEQ, flex))
    add("unsigned_patient_bolus", "AUTH_REQUIRED", frame(t["PATIENT_BOLUS"], SEQ))
    add("unsigned_alarm_ack", "AUTH_REQUIRED", frame(t["ALARM_ACK"], SEQ, ack))
    add("unsigned_refill_begin", "AUTH_REQUIRED", frame(t["REFILL_BEGIN"], SEQ))
    sign("patient_set_flex", "WRONG_ROLE", t["SET_FLEX"], flex, role=pat)
    sign("service_bolus", "WRONG_ROLE", t["BOLUS"], bolus, role=serv)
    sign("clinician_patient_bolus", "WRONG_ROLE", t["PATIENT_BOLUS"], b"")
    sign("service_patient_bolus", "WRONG_ROLE", t["PATIENT_BOLUS"], b"", role=serv)
    sign("patient_get_screening", "WRONG_ROLE", t["GET_SCREENING"], b"", role=pat)
    sign("patient_refill_commit", "WRONG_ROLE", t["REFILL_COMMIT"], commit, role=pat)
    sign("service_cap_begin", "WRONG_ROLE", t["CAP_BEGIN"], struct.pack("<H", 600), role=serv)
    sign("patient_suspend", "WRONG_ROLE", t["SUSPEND"], stop, role=pat)
    # Counter 0 never rises above a fresh session's.
    sign("counter_zero", "REPLAY", t["SET_CONTINUOUS"], set_cont, counter=0)
    sign("counter_zero_get_status", "REPLAY", t["GET_STATUS"], b"", role=pat, counter=0)

    for v in vectors:
        fr = bytes.fromhex(v["frame"])
        assert fr[2] & ~FLAG_AUTH == 0, v["name"]  # the codec accepts the flags
        if v["auth"] is not None:
            assert fr[2] & FLAG_AUTH, v["name"]
    return vectors


# -- bad vectors ---------------------------------------------------------------------------------

def bad_vectors():
    t = {r[1]: r[0] for r in m.MESSAGES}
    set_cont = payload("SET_CONTINUOUS", {"daily_dose_ng": 400_000, "confirm": 0})
    stop = payload("STOP", {"reason": 1, "confirm": m.STOP_CONFIRM})

    def sc(dose, confirm=0):
        return raw_payload("SET_CONTINUOUS", {"daily_dose_ng": dose, "confirm": confirm})

    def st(reason, confirm=m.STOP_CONFIRM):
        return raw_payload("STOP", {"reason": reason, "confirm": confirm})

    def fx(steps=FLEX_DAY, confirm=0, utc_offset_min=0, count=None, cut=0):
        """A SET_FLEX payload; count overrides its count byte, cut drops bytes off its end."""
        fields = {"confirm": confirm, "utc_offset_min": utc_offset_min, "steps": steps}
        body = bytearray(raw_payload("SET_FLEX", fields))
        if count is not None:
            at = len(raw_payload("SET_FLEX", {**fields, "steps": []})) - 1  # the count byte
            assert body[at] == len(steps)
            body[at] = count
        return bytes(body[: len(body) - cut])

    def like(vector_name, **values):
        """The fields of a valid vector, with `values` over them."""
        fields = next(f for name, _msg, _seq, f in VALID if name == vector_name)
        assert set(values) <= set(fields), values
        return {**fields, **values}

    def req(msg, vector_name, **values):
        """A request frame with a valid vector's payload, `values` over it (unchecked)."""
        return frame(t[msg], SEQ, raw_payload(msg, like(vector_name, **values)))

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
        frame(t["SET_CONTINUOUS"], SEQ, sc(999), crc_xor=1), trusted=False)
    add("crc_before_list_count", "BAD_CRC",
        frame(t["SET_FLEX"], SEQ, fx(count=3, cut=6), crc_xor=1), trusted=False)

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
    fill = bytes(1 + i % 255 for i in range(2 * MAX_FRAME))  # no zeros
    n = MAX_FRAME - 5 - 4  # payload of a MAX_FRAME frame
    add("max_frame_is_read", "BAD_LENGTH", frame(gs, SEQ, fill[:n]))
    add("max_frame_with_zeros_is_read", "BAD_LENGTH", frame(gs, SEQ, bytes(n)))
    add("oversize_by_one", "OVERSIZE", frame(gs, SEQ, fill[: n + 1]), trusted=False)
    add("oversize_by_one_zeros", "OVERSIZE", frame(gs, SEQ, bytes(n + 1)), trusted=False)
    add("oversize_long", "OVERSIZE", frame(gs, SEQ, fill[:300]), trusted=False)
    # The worst case of COBS: MAX_FRAME + 2 bytes before the delimiter can still be a
    # MAX_FRAME frame (above), but the same number of 01 codes decodes to MAX_FRAME + 1 zeros.
    add("oversize_cobs_zeros", "OVERSIZE", bytes(MAX_FRAME + 1), trusted=False)

    add("version_2", "BAD_VERSION", frame(gs, SEQ, version=2))
    add("version_0", "BAD_VERSION", frame(gs, SEQ, version=0))
    add("version_before_flags", "BAD_VERSION", frame(gs, SEQ, version=0xFF, flags=0x80))
    add("version_before_length", "BAD_VERSION", frame(t["STOP"], SEQ, stop[:-1], version=2))

    add("flags_02", "BAD_FLAGS", frame(gs, SEQ, flags=0x02))
    add("flags_80", "BAD_FLAGS", frame(t["SET_CONTINUOUS"], SEQ, set_cont, flags=0x80))
    add("flags_ff", "BAD_FLAGS", frame(gs, SEQ, flags=0xFF))
    add("flags_before_type", "BAD_FLAGS", frame(0x7E, SEQ, flags=0x02))

    add("type_00", "UNKNOWN_TYPE", frame(0x00, SEQ))
    add("type_7e", "UNKNOWN_TYPE", frame(0x7E, SEQ))
    first_free = max(r[0] for r in m.MESSAGES if r[2] == "req") + 1
    add("type_after_last_request", "UNKNOWN_TYPE", frame(first_free, SEQ))
    add("type_before_length", "UNKNOWN_TYPE", frame(0x7E, SEQ, b"\x01\x02\x03"))
    # A response type sent to the pump is not a request.
    add("response_status_as_request", "UNKNOWN_TYPE",
        frame(t["STATUS"], SEQ, payload("STATUS", status())))
    add("response_log_page_as_request", "UNKNOWN_TYPE",
        frame(t["LOG_PAGE"], SEQ, payload("LOG_PAGE", like("log_page_three"))))
    add("response_program_as_request", "UNKNOWN_TYPE",
        frame(t["PROGRAM"], SEQ, payload("PROGRAM", like("program_stopped"))))
    add("response_stopped_as_request", "UNKNOWN_TYPE", frame(t["STOPPED"], SEQ, b"\x01"))
    add("response_error_as_request", "UNKNOWN_TYPE",
        frame(t["ERROR"], SEQ, payload("ERROR", error(3, 0, "hi"))))

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

    # The authentication trailer, as far as the codec sees it: its presence (flag AUTH) and
    # its length; the tag itself is the guard's ("refused" vectors).
    clin = ROLES["clinician"]

    def signed(mtype, body, flags=FLAG_AUTH, counter=1, version=m.VERSION):
        return signed_frame(mtype, SEQ, body, SESSION, clin, counter, KEYS[clin], NONCE,
                            flags=flags, version=version)

    ok_status = signed(gs, b"")
    ok_sc = signed(t["SET_CONTINUOUS"], set_cont)
    add("auth_trailer_missing", "BAD_LENGTH", frame(gs, SEQ, flags=FLAG_AUTH))
    add("auth_trailer_one_byte", "BAD_LENGTH", frame(gs, SEQ, b"\x02", flags=FLAG_AUTH))
    add("auth_trailer_without_tag", "BAD_LENGTH",
        frame(gs, SEQ, struct.pack(TRAILER, SESSION, clin, 1), flags=FLAG_AUTH))
    add("auth_trailer_cut_short", "BAD_LENGTH", recrc(ok_status[:-5] + ok_status[-4:]))
    add("auth_set_continuous_cut_short", "BAD_LENGTH", recrc(ok_sc[:-5] + ok_sc[-4:]))
    add("auth_set_continuous_payload_short", "BAD_LENGTH",
        signed(t["SET_CONTINUOUS"], set_cont[:-1]))
    add("auth_trailer_extra_byte", "BAD_LENGTH", recrc(ok_status[:-4] + b"\x00" + bytes(4)))
    add("auth_set_continuous_extra_byte", "BAD_LENGTH",
        signed(t["SET_CONTINUOUS"], set_cont + b"\x01"))
    add("auth_max_frame_is_read", "BAD_LENGTH", frame(gs, SEQ, fill[:n], flags=FLAG_AUTH))
    add("auth_flags_81", "BAD_FLAGS", signed(t["SET_CONTINUOUS"], set_cont, flags=0x81))
    add("auth_flags_80_with_trailer", "BAD_FLAGS",
        signed(t["SET_CONTINUOUS"], set_cont, flags=0x80))
    add("auth_flags_02_with_trailer", "BAD_FLAGS", signed(gs, b"", flags=0x02))
    add("auth_flags_03", "BAD_FLAGS", signed(t["STOP"], stop, flags=0x03))
    add("auth_crc_flipped", "BAD_CRC", ok_sc[:-1] + bytes([ok_sc[-1] ^ 0x01]), trusted=False)
    add("auth_tag_bit_flipped_crc_kept", "BAD_CRC",
        ok_sc[:-5] + bytes([ok_sc[-5] ^ 0x01]) + ok_sc[-4:], trusted=False)
    add("auth_version_2", "BAD_VERSION", signed(t["SET_CONTINUOUS"], set_cont, version=2))
    add("auth_response_as_request", "UNKNOWN_TYPE",
        signed(t["CHALLENGE_OK"], struct.pack("<B", 2) + NONCE))
    add("auth_type_7e", "UNKNOWN_TYPE", signed(0x7E, b""))
    add("auth_dose_below_min", "OUT_OF_RANGE", signed(t["SET_CONTINUOUS"], sc(999)))
    add("auth_flex_steps_over_max", "OUT_OF_RANGE",
        signed(t["SET_FLEX"], fx(FLEX_MAX + FLEX_DAY[:1])))
    add("auth_flex_count_above_items", "BAD_LENGTH", signed(t["SET_FLEX"], fx(count=4)))
    add("auth_confirm_unknown_bit", "OUT_OF_RANGE",
        signed(t["SET_CONTINUOUS"], sc(400_000, 0x10)))
    add("auth_stop_reason_0", "OUT_OF_RANGE", signed(t["STOP"], st(0)))

    # CHALLENGE, GET_COUNTERS, READ_LOG, SET_CLOCK, SET_TELEMETRY as requests.
    add("challenge_long", "BAD_LENGTH", frame(t["CHALLENGE"], SEQ, b"\x00"))
    add("response_challenge_ok_as_request", "UNKNOWN_TYPE",
        frame(t["CHALLENGE_OK"], SEQ, struct.pack("<B", 0) + NONCE))
    add("get_counters_long", "BAD_LENGTH", frame(t["GET_COUNTERS"], SEQ, b"\x00"))
    add("read_log_short", "BAD_LENGTH", frame(t["READ_LOG"], SEQ, b"\x00\x00\x00"))
    add("read_log_without_count", "BAD_LENGTH", frame(t["READ_LOG"], SEQ, bytes(4)))
    add("read_log_count_0", "OUT_OF_RANGE", req("READ_LOG", "read_log_0", count=0))
    add("read_log_count_over_page", "OUT_OF_RANGE",
        req("READ_LOG", "read_log_0", count=m.LOG_PAGE_EVENTS + 1))
    add("set_clock_long", "BAD_LENGTH", frame(t["SET_CLOCK"], SEQ, bytes(5)))
    add("set_telemetry_short", "BAD_LENGTH", frame(t["SET_TELEMETRY"], SEQ, b"\x3c"))
    add("set_clock_before_2020", "OUT_OF_RANGE",
        frame(t["SET_CLOCK"], SEQ, struct.pack("<I", 1_577_836_799)))
    add("set_clock_after_2100", "OUT_OF_RANGE",
        frame(t["SET_CLOCK"], SEQ, struct.pack("<I", 4_102_444_801)))
    add("set_clock_zero", "OUT_OF_RANGE", frame(t["SET_CLOCK"], SEQ, bytes(4)))
    add("set_telemetry_over_an_hour", "OUT_OF_RANGE",
        frame(t["SET_TELEMETRY"], SEQ, struct.pack("<H", 3601)))
    add("event_telemetry_as_request", "UNKNOWN_TYPE",
        frame(t["TELEMETRY"], SEQ, payload("TELEMETRY", like("telemetry_running"))))
    add("event_alarm_as_request", "UNKNOWN_TYPE",
        frame(t["ALARM"], SEQ, payload("ALARM", like("alarm_raised"))))

    add("dose_below_min", "OUT_OF_RANGE", frame(t["SET_CONTINUOUS"], SEQ, sc(999)))
    add("dose_above_max", "OUT_OF_RANGE", frame(t["SET_CONTINUOUS"], SEQ, sc(20_000_001)))
    add("dose_zero", "OUT_OF_RANGE", frame(t["SET_CONTINUOUS"], SEQ, sc(0)))
    # The old SET_CONTINUOUS (dose u32, concentration u16) is a byte too long now.
    add("set_continuous_old_layout", "BAD_LENGTH",
        frame(t["SET_CONTINUOUS"], SEQ, struct.pack("<IH", 400_000, 500)))
    add("stop_reason_0", "OUT_OF_RANGE", frame(t["STOP"], SEQ, st(0)))
    add("stop_reason_5", "OUT_OF_RANGE", frame(t["STOP"], SEQ, st(5)))

    # Flag sets: a bit the table does not name is out of range.
    add("confirm_unknown_bit", "OUT_OF_RANGE", frame(t["SET_CONTINUOUS"], SEQ, sc(400_000, 0x10)))
    add("confirm_known_and_unknown_bits", "OUT_OF_RANGE",
        frame(t["SET_CONTINUOUS"], SEQ, sc(400_000, 0x21)))
    add("confirm_all_bits", "OUT_OF_RANGE", frame(t["SET_CONTINUOUS"], SEQ, sc(400_000, 0xFF)))
    add("flex_confirm_unknown_bit", "OUT_OF_RANGE", frame(t["SET_FLEX"], SEQ, fx(confirm=0x40)))
    add("refill_commit_confirm_unknown_bit", "OUT_OF_RANGE",
        req("REFILL_COMMIT", "refill_commit", confirm=0x80))

    # Lists: the count byte's bounds, its agreement with the payload's length, each item's
    # fields. The length is checked before the count's range, the count before the items.
    add("flex_steps_over_max", "OUT_OF_RANGE",
        frame(t["SET_FLEX"], SEQ, fx(FLEX_MAX + [step(1439, 1000)])))
    add("flex_one_step", "OUT_OF_RANGE", frame(t["SET_FLEX"], SEQ, fx(FLEX_DAY[:1])))
    add("flex_no_steps", "OUT_OF_RANGE", frame(t["SET_FLEX"], SEQ, fx([])))
    add("flex_count_above_items", "BAD_LENGTH", frame(t["SET_FLEX"], SEQ, fx(count=4)))
    add("flex_count_below_items", "BAD_LENGTH", frame(t["SET_FLEX"], SEQ, fx(count=2)))
    add("flex_count_255", "BAD_LENGTH", frame(t["SET_FLEX"], SEQ, fx(count=255)))
    add("flex_count_25_with_24_items", "BAD_LENGTH",
        frame(t["SET_FLEX"], SEQ, fx(FLEX_MAX, count=m.FLEX_STEPS_MAX + 1)))
    add("flex_last_item_cut_short", "BAD_LENGTH", frame(t["SET_FLEX"], SEQ, fx(cut=1)))
    add("flex_extra_byte", "BAD_LENGTH", frame(t["SET_FLEX"], SEQ, fx() + b"\x00"))
    add("flex_without_count", "BAD_LENGTH", frame(t["SET_FLEX"], SEQ, fx([], cut=1)))
    add("flex_step_start_1440", "OUT_OF_RANGE",
        frame(t["SET_FLEX"], SEQ, fx([step(0, 400_000), step(1440, 500_000)])))
    add("flex_first_step_dose_below_min", "OUT_OF_RANGE",
        frame(t["SET_FLEX"], SEQ, fx([step(0, 999), step(600, 500_000)])))
    add("flex_last_step_dose_above_max", "OUT_OF_RANGE",
        frame(t["SET_FLEX"], SEQ, fx(FLEX_MAX[:-1] + [step(1439, m.DOSE_MAX_NG_DAY + 1)])))
    add("flex_utc_offset_841", "OUT_OF_RANGE", frame(t["SET_FLEX"], SEQ, fx(utc_offset_min=841)))
    add("flex_utc_offset_minus_721", "OUT_OF_RANGE",
        frame(t["SET_FLEX"], SEQ, fx(utc_offset_min=-721)))

    # The rest of the therapy catalog's requests: lengths and ranges.
    add("get_program_long", "BAD_LENGTH", frame(t["GET_PROGRAM"], SEQ, b"\x00"))
    add("patient_bolus_long", "BAD_LENGTH", frame(t["PATIENT_BOLUS"], SEQ, b"\x01"))
    add("set_profile_short", "BAD_LENGTH",
        frame(t["SET_PROFILE"], SEQ, payload("SET_PROFILE", like("set_profile_adult_spinal"))[:-1]))
    add("refill_commit_long", "BAD_LENGTH",
        frame(t["REFILL_COMMIT"], SEQ,
              payload("REFILL_COMMIT", like("refill_commit")) + b"\x00"))
    add("alarm_silence_short", "BAD_LENGTH", frame(t["ALARM_SILENCE"], SEQ, b"\x1e"))
    add("set_profile_origin_0", "OUT_OF_RANGE",
        req("SET_PROFILE", "set_profile_adult_spinal", origin=0))
    add("set_profile_age_121", "OUT_OF_RANGE",
        req("SET_PROFILE", "set_profile_adult_spinal", age_years=121))
    add("set_profile_phase_0", "OUT_OF_RANGE",
        req("SET_PROFILE", "set_profile_adult_spinal", phase=0))
    add("set_profile_ceiling_999", "OUT_OF_RANGE",
        req("SET_PROFILE", "set_profile_adult_spinal", ceiling_ng=999))
    add("set_profile_start_after_2100", "OUT_OF_RANGE",
        req("SET_PROFILE", "set_profile_adult_spinal", infusion_start_s=m.CLOCK_MAX + 1))
    add("set_profile_brain_injury_after_2100", "OUT_OF_RANGE",
        req("SET_PROFILE", "set_profile_brain_injury", brain_injury_s=m.CLOCK_MAX + 1))
    add("bolus_dose_0", "OUT_OF_RANGE", req("BOLUS", "bolus_50mcg", dose_ng=0))
    add("bolus_dose_above_max", "OUT_OF_RANGE",
        req("BOLUS", "bolus_50mcg", dose_ng=m.BOLUS_MAX_NG + 1))
    add("bolus_duration_59", "OUT_OF_RANGE", req("BOLUS", "bolus_50mcg", duration_s=59))
    add("prime_duration_over_a_day", "OUT_OF_RANGE", req("PRIME", "prime", duration_s=86_401))
    add("screen_duration_0", "OUT_OF_RANGE", req("SCREEN", "screen_50mcg", duration_s=0))
    add("set_patient_bolus_duration_59", "OUT_OF_RANGE",
        req("SET_PATIENT_BOLUS", "set_patient_bolus_off", duration_s=59))
    add("set_patient_bolus_max_25", "OUT_OF_RANGE",
        req("SET_PATIENT_BOLUS", "set_patient_bolus_on", max_per_day=25))
    add("suspend_reason_0", "OUT_OF_RANGE", req("SUSPEND", "suspend", reason=0))
    add("refill_commit_drug_2", "OUT_OF_RANGE", req("REFILL_COMMIT", "refill_commit", drug=2))
    add("refill_commit_concentration_0", "OUT_OF_RANGE",
        req("REFILL_COMMIT", "refill_commit", concentration=0))
    add("cap_begin_59", "OUT_OF_RANGE", req("CAP_BEGIN", "cap_begin", duration_s=59))
    add("cap_begin_1801", "OUT_OF_RANGE", req("CAP_BEGIN", "cap_begin", duration_s=1801))
    add("alarm_ack_0", "OUT_OF_RANGE", req("ALARM_ACK", "alarm_ack_low_reservoir", alarm=0))
    add("alarm_ack_past_last", "OUT_OF_RANGE",
        req("ALARM_ACK", "alarm_ack_low_reservoir", alarm=len(m.ALARMS) + 1))
    add("alarm_silence_0", "OUT_OF_RANGE", req("ALARM_SILENCE", "alarm_silence_min", minutes=0))
    add("alarm_silence_over_a_day", "OUT_OF_RANGE",
        req("ALARM_SILENCE", "alarm_silence_min", minutes=1441))
    add("set_taper_days_13", "OUT_OF_RANGE", req("SET_TAPER", "set_taper_two_weeks", days=13))
    add("set_taper_days_29", "OUT_OF_RANGE", req("SET_TAPER", "set_taper_two_weeks", days=29))
    add("set_taper_target_999", "OUT_OF_RANGE",
        req("SET_TAPER", "set_taper_two_weeks", target_ng=999))
    add("set_taper_confirm_unknown_bit", "OUT_OF_RANGE",
        req("SET_TAPER", "set_taper_two_weeks", confirm=0x10))
    add("set_taper_short", "BAD_LENGTH",
        frame(t["SET_TAPER"], SEQ, payload("SET_TAPER", like("set_taper_two_weeks"))[:-1]))

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


def hand_checked(valid, signed):
    v = next(x for x in valid if x["name"] == "get_status")
    assert crc32_bitwise(b"123456789") == 0xCBF43926
    assert crc32(bytes.fromhex("0102000100")) == 0x48502767
    assert v["frame"] == "010200010067275048", v["frame"]
    assert v["wire"] == "0301020201056727504800", v["wire"]
    # RFC 4231 test case 2: the standard library's HMAC-SHA256 is the real one.
    rfc = hmac.new(b"Jefe", b"what do ya want for nothing?", hashlib.sha256).hexdigest()
    assert rfc == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", rfc
    # The docstring's authenticated frame.
    s = next(x for x in signed if x["name"] == "get_status_clinician")
    fr = bytes.fromhex(s["frame"])
    assert fr[:11].hex() == "0102012200" + "020202000000", fr.hex()
    want = hmac.new(KEYS[2], NONCE + fr[:11], hashlib.sha256).digest()[:16]
    assert fr[11:27] == want and len(fr) == 31
    assert fr[27:] == struct.pack("<I", binascii.crc32(fr[:27]))


def check_table():
    """The layouts written out here are the table's (a change there must be made here too)."""
    assert HEADER == m.HEADER_FORMAT and MAX_FRAME == m.MAX_FRAME
    assert FLAG_AUTH == m.FLAG_AUTH and TRAILER == m.AUTH_FORMAT and TAG_SIZE == m.TAG_SIZE
    assert struct.calcsize(TRAILER) + TAG_SIZE == m.AUTH_SIZE
    assert {label: value for value, label in m.ENUMS["role"]} == ROLES
    assert all(len(k) == m.KEY_SIZE for k in KEYS.values())
    assert all(len(nonce) == m.NONCE_SIZE for _, nonce in SESSIONS)
    assert [slot for slot, _ in SESSIONS] == list(range(len(SESSIONS))) and len(
        SESSIONS) < m.SESSIONS  # a fresh pump gives these slots in turn; one stays closed
    # The packer knows every field kind the table uses (a new kind must be taught to it).
    ints = set("BHIbhi")
    for r in m.MESSAGES:
        for f in r[3]:
            kind, enum = f[1], f[4]
            if kind == "list":
                assert all(g[1] in ints and g[4] in (None, *m.ENUMS, *m.FLAGS) for g in enum), f
            elif kind in ints:
                assert enum in (None, *m.ENUMS, *m.FLAGS), f
            else:
                assert kind == "str" or (kind[:-1].isdigit() and kind.endswith("s")), f


def build():
    check_table()
    valid = valid_vectors()
    signed = signed_vectors()
    hand_checked(valid, signed)
    doc = {
        "about": "Golden vectors of the intrapump wire format. Generated by "
                 "tools/make_golden.py (independently of protocol/*codec.py): do not edit.",
        "protocol_version": m.VERSION,
        "max_frame": m.MAX_FRAME,
        "valid": valid,
        "bad": bad_vectors(),
        "auth": {
            "keys": {name: KEYS[role].hex() for name, role in ROLES.items()},
            "sessions": [{"session": slot, "nonce": nonce.hex()} for slot, nonce in SESSIONS],
        },
        "signed": signed,
        "refused": refused_vectors(),
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
