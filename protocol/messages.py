# The wire format's single source of truth: every message, field, range, enum and error code.
# Board-side: plain tuples and ints only, so it runs on MicroPython. The firmware's struct
# codec (codec.py) and the host's construct codec (host_codec.py) are both built from it.

VERSION = 1

# Decoded frame: header + payload + CRC-32. Larger frames are refused (ERR_OVERSIZE).
HEADER_FORMAT = "<BBBH"  # version, type, flags, sequence number
HEADER_SIZE = 5
CRC_SIZE = 4
MAX_FRAME = 256
MAX_PAYLOAD = MAX_FRAME - HEADER_SIZE - CRC_SIZE
# Sequence number 0 is never used by a host; the pump sends it on errors about frames whose
# header cannot be trusted (bad COBS, bad CRC, truncated, oversize) and on unsolicited frames.
SEQ_UNSOLICITED = 0

# Header flag bits; a frame with any other bit set is refused (BAD_FLAGS).
FLAG_AUTH = 0x01  # an authentication trailer follows the payload
FLAGS_KNOWN = FLAG_AUTH

# Authentication. A host asks for a session (CHALLENGE, open to all) and gets a session slot
# and a 16-byte nonce the pump drew at random. Each authenticated request then carries, after
# its payload and before the CRC, the trailer
#     session u8 | role u8 | counter u32 LE | tag (16 bytes)
# where counter rises with every request of the session and
#     tag = HMAC-SHA256(key of role, nonce || header || payload || session || role || counter)
# truncated to 16 bytes. A frame replayed in the same session repeats a counter (REPLAY), in
# another session or after a reboot it meets another nonce (BAD_TAG or NO_SESSION).
AUTH_FORMAT = "<BBI"  # session, role, counter
AUTH_FIXED = 6
TAG_SIZE = 16
AUTH_SIZE = AUTH_FIXED + TAG_SIZE
NONCE_SIZE = 16
KEY_SIZE = 32
SESSIONS = 4  # concurrent sessions; a new CHALLENGE takes the least recently used slot

ROLE_NONE = 0
ROLE_PATIENT = 1
ROLE_CLINICIAN = 2
ROLE_SERVICE = 3
ROLE_NAMES = ("none", "patient", "clinician", "service")

# Confirmation words ("STOP", "REPL" in ASCII): neither command can happen by accident.
STOP_CONFIRM = 0x53544F50
REPL_CONFIRM = 0x5245504C

# The pump clock's range: 2020-01-01 to 2100-01-01, s since 1970 (UTC).
CLOCK_MIN = 1577836800
CLOCK_MAX = 4102444800

# Enums: name -> ((value, label), ...)
ENUMS = {
    "mode": (
        (0, "stopped"),
        (1, "continuous"),
    ),
    "role": (
        (1, "patient"),
        (2, "clinician"),
        (3, "service"),
    ),
    "event": (
        (1, "boot"),  # a: reset cause
        (2, "program"),  # a: daily dose ng/day, b: concentration mcg/mL
        (3, "stop"),  # a: stop reason
        (4, "refused"),  # a: error code, b: request type
        (5, "clock_set"),  # a: how far the clock moved (s; clamped to i32)
        (6, "repl"),  # the link handed to the REPL
        (7, "delivery_gap"),  # a: steps skipped because the loop fell behind
        (8, "reservoir_empty"),  # the program took the last step the reservoir held
        (9, "fault"),  # a turn of the loop raised (a firmware bug); a: faults since boot
    ),
    "stop_reason": (
        (1, "clinician_decision"),
        (2, "overdose_emergency"),
        (3, "end_of_therapy"),
        (4, "surgery_or_maintenance"),
    ),
}

# Error codes: (code, name, what it means). The host raises one exception class per code.
ERRORS = (
    (1, "OVERSIZE", "frame longer than the maximum frame size"),
    (2, "TRUNCATED", "frame shorter than header and CRC"),
    (3, "BAD_CRC", "CRC-32 does not match"),
    (4, "BAD_COBS", "COBS encoding is invalid"),
    (5, "BAD_VERSION", "protocol version not supported"),
    (6, "UNKNOWN_TYPE", "message type not known or not a request"),
    (7, "BAD_LENGTH", "payload length wrong for the message type"),
    (8, "OUT_OF_RANGE", "a field is outside its allowed range"),
    (9, "BAD_FLAGS", "header flags not supported"),
    (10, "NOT_CONFIRMED", "the command needs an explicit confirmation"),
    (11, "INVALID_STATE", "the command is not allowed in the pump's present state"),
    (12, "INTERNAL", "the firmware failed handling the request; delivery goes on"),
    (13, "AUTH_REQUIRED", "the request needs an authenticated frame"),
    (14, "NO_SESSION", "no such session: ask for a new CHALLENGE"),
    (15, "NO_KEY", "no key is provisioned for that role"),
    (16, "BAD_TAG", "the authentication tag does not match"),
    (17, "REPLAY", "the counter did not rise: a replayed or reordered frame"),
    (18, "WRONG_ROLE", "the role may not send this request"),
)

# Field: (name, kind, low, high, enum, unit)
#   kind: struct code (B H I b h i), "Ns" fixed bytes, or "str" (u8 length + UTF-8, at most
#   `high` bytes; only as the last field). low/high bound integer values; enum names ENUMS.
# Message: (type, name, kind, fields, doc); kind: "req" (host -> pump), "resp" (pump -> host),
# "event" (pump -> host, unsolicited, sequence number 0, types 0xC0 and up).
# A request of type T is answered by type T | 0x80, or by ERROR.
STATUS_FIELDS = (
    ("mode", "B", 0, 1, "mode", ""),
    ("daily_dose_ng", "I", 0, 0xFFFFFFFF, None, "ng/day"),
    ("concentration", "H", 0, 0xFFFF, None, "mcg/mL"),
    ("rate_nl_day", "I", 0, 0xFFFFFFFF, None, "nL/day (rounded, for display)"),
    ("delivered_nl", "I", 0, 0xFFFFFFFF, None, "nL since boot"),
    ("delivered_ng", "I", 0, 0xFFFFFFFF, None, "ng since boot"),
    ("reservoir_nl", "I", 0, 0xFFFFFFFF, None, "nL left"),
    ("uptime_s", "I", 0, 0xFFFFFFFF, None, "s"),
    ("clock_s", "I", 0, 0xFFFFFFFF, None, "pump clock, s since 1970 (UTC)"),
    ("dry_at_s", "I", 0, 0xFFFFFFFF, None,
     "pump clock when the reservoir runs dry at the program in force; 0: not running"),
    ("battery_mv", "H", 0, 0xFFFF, None, "battery voltage, mV (read each minute)"),
    ("frame_errors", "H", 0, 0xFFFF, None, "unreadable frames since boot (line noise)"),
)
# A TELEMETRY event carries these STATUS fields, in this order.
TELEMETRY_FIELDS = tuple(
    f for f in STATUS_FIELDS
    if f[0] in ("mode", "rate_nl_day", "delivered_nl", "delivered_ng", "reservoir_nl",
                "clock_s", "battery_mv")
)

MESSAGES = (
    (0x01, "GET_INFO", "req", (), "Identity and capabilities of the pump."),
    (0x81, "INFO", "resp", (
        ("protocol_version", "B", 0, 255, None, ""),
        ("board_id", "8s", None, None, None, "unique id of the microcontroller"),
        ("reservoir_nl", "I", 0, 0xFFFFFFFF, None, "nL"),
        ("step_nl", "H", 1, 0xFFFF, None, "nL per motor step"),
        ("fw_version", "str", 0, 24, None, ""),
    ), "Identity: protocol and firmware version, board id, reservoir size, step volume."),
    (0x02, "GET_STATUS", "req", (), "Current state of delivery."),
    (0x82, "STATUS", "resp", STATUS_FIELDS,
     "Mode, program in force, delivered totals, reservoir and when it runs dry, uptime,"
     " clock, battery, link errors."),
    (0x03, "SET_CONTINUOUS", "req", (
        ("daily_dose_ng", "I", 1000, 20000000, None, "ng/day (1 to 20000 mcg/day)"),
        ("concentration", "H", 1, 2000, None, "mcg/mL"),
    ), "Program simple continuous infusion: a daily dose at a drug concentration."),
    (0x83, "SET_CONTINUOUS_OK", "resp", (
        ("daily_dose_ng", "I", 0, 0xFFFFFFFF, None, "ng/day"),
        ("concentration", "H", 0, 0xFFFF, None, "mcg/mL"),
        ("rate_nl_day", "I", 0, 0xFFFFFFFF, None, "nL/day (rounded, for display)"),
    ), "The program now in force."),
    (0x04, "STOP", "req", (
        ("reason", "B", 1, 4, "stop_reason", ""),
        ("confirm", "I", 0, 0xFFFFFFFF, None, "must equal STOP_CONFIRM"),
    ), "Stop delivery. Needs a reason and the confirmation word 0x53544F50."),
    (0x84, "STOPPED", "resp", (
        ("reason", "B", 1, 4, "stop_reason", ""),
    ), "Delivery is stopped."),
    (0x06, "CHALLENGE", "req", (), "Open an authenticated session."),
    (0x86, "CHALLENGE_OK", "resp", (
        ("session", "B", 0, SESSIONS - 1, None, "session slot"),
        ("nonce", "16s", None, None, None, "random, drawn by the pump"),
    ), "A session: its slot and nonce."),
    (0x07, "GET_COUNTERS", "req", (), "Refusals since boot, one counter per error code."),
    (0x87, "COUNTERS", "resp", tuple(
        (name.lower(), "H", 0, 0xFFFF, None, "refusals") for _code, name, _text in ERRORS
    ), "How many requests and frames were refused, by error code (wrapping at 65535)."),
    (0x08, "READ_LOG", "req", (
        ("number", "I", 0, 0xFFFFFFFF, None, "event number to read (0 = the first ever)"),
    ), "One event of the log: the first held at or after `number` (the log drops its oldest)."
       " Page through it by number; past the newest, OUT_OF_RANGE."),
    (0x88, "LOG_ENTRY", "resp", (
        ("number", "I", 0, 0xFFFFFFFF, None, "this event's number"),
        ("oldest", "I", 0, 0xFFFFFFFF, None, "number of the oldest event still held"),
        ("total", "I", 0, 0xFFFFFFFF, None, "events logged so far (next number)"),
        ("time_s", "I", 0, 0xFFFFFFFF, None, "pump clock, s since 1970"),
        ("event", "B", 1, 9, "event", ""),
        ("role", "B", 0, 3, None, "who caused it (0: the pump itself)"),
        ("a", "i", -0x80000000, 0x7FFFFFFF, None, "first detail (see the event)"),
        ("b", "i", -0x80000000, 0x7FFFFFFF, None, "second detail"),
    ), "An event: when, what, who, and two details."),
    (0x09, "SET_CLOCK", "req", (
        ("time_s", "I", CLOCK_MIN, CLOCK_MAX, None, "s since 1970 (UTC)"),
    ), "Set the pump clock."),
    (0x89, "CLOCK_OK", "resp", (
        ("time_s", "I", 0, 0xFFFFFFFF, None, "the pump clock now"),
    ), "The pump clock after the change."),
    (0x0A, "SET_TELEMETRY", "req", (
        ("period_s", "H", 0, 3600, None, "s between TELEMETRY events; 0 turns them off"),
    ), "Ask for periodic TELEMETRY events (on this link, until changed or reboot)."),
    (0x8A, "TELEMETRY_OK", "resp", (
        ("period_s", "H", 0, 3600, None, "s"),
    ), "The telemetry period now in force."),
    (0xC0, "TELEMETRY", "event", TELEMETRY_FIELDS,
     "Unsolicited, every SET_TELEMETRY period: delivery as it goes."),
    (0x05, "ENTER_REPL", "req", (
        ("confirm", "I", 0, 0xFFFFFFFF, None, "must equal REPL_CONFIRM"),
    ), "Leave the binary protocol for the MicroPython REPL (to re-flash). Only when stopped."),
    (0x85, "REPL_OK", "resp", (), "The firmware has handed the link to the REPL."),
    (0xFF, "ERROR", "resp", (
        ("code", "B", 1, 255, None, "one of ERRORS"),
        ("request_type", "B", 0, 255, None, "type of the refused request, 0 if unknown"),
        ("reason", "str", 0, 80, None, "text for a person"),
    ), "A request was refused or a frame could not be read."),
)

# Message type ids, for code that names them.
GET_INFO = 0x01
INFO = 0x81
GET_STATUS = 0x02
STATUS = 0x82
SET_CONTINUOUS = 0x03
SET_CONTINUOUS_OK = 0x83
STOP = 0x04
STOPPED = 0x84
ENTER_REPL = 0x05
REPL_OK = 0x85
CHALLENGE = 0x06
CHALLENGE_OK = 0x86
GET_COUNTERS = 0x07
COUNTERS = 0x87
READ_LOG = 0x08
LOG_ENTRY = 0x88
SET_CLOCK = 0x09
CLOCK_OK = 0x89
SET_TELEMETRY = 0x0A
TELEMETRY_OK = 0x8A
TELEMETRY = 0xC0

EV_BOOT = 1
EV_PROGRAM = 2
EV_STOP = 3
EV_REFUSED = 4
EV_CLOCK_SET = 5
EV_REPL = 6
EV_DELIVERY_GAP = 7
EV_RESERVOIR_EMPTY = 8
EV_FAULT = 9
ERROR = 0xFF

# Who may send each request: a bit per role (1 << role); OPEN needs no authentication.
OPEN = 0
PATIENT = 1 << ROLE_PATIENT
CLINICIAN = 1 << ROLE_CLINICIAN
SERVICE = 1 << ROLE_SERVICE
ANY_ROLE = PATIENT | CLINICIAN | SERVICE
ACCESS = {
    GET_INFO: OPEN,
    CHALLENGE: OPEN,
    GET_STATUS: ANY_ROLE,
    SET_CONTINUOUS: CLINICIAN,
    STOP: CLINICIAN,
    ENTER_REPL: CLINICIAN | SERVICE,
    GET_COUNTERS: ANY_ROLE,
    READ_LOG: CLINICIAN | SERVICE,
    SET_CLOCK: CLINICIAN | SERVICE,
    SET_TELEMETRY: ANY_ROLE,
}

# Requests that only read: always answered afresh. Every other request changes the pump, and
# a repeat of it (same sequence number and CRC as the last one) is answered from the cache.
READ_ONLY = (GET_INFO, GET_STATUS, GET_COUNTERS, READ_LOG)
# Never answered from the cache: the reads, and CHALLENGE (each opens its own session; a
# cached one would hand two hosts that drew the same sequence number the same session).
ANSWERED_AFRESH = READ_ONLY + (CHALLENGE,)

ERR_OVERSIZE = 1
ERR_TRUNCATED = 2
ERR_BAD_CRC = 3
ERR_BAD_COBS = 4
ERR_BAD_VERSION = 5
ERR_UNKNOWN_TYPE = 6
ERR_BAD_LENGTH = 7
ERR_OUT_OF_RANGE = 8
ERR_BAD_FLAGS = 9
ERR_NOT_CONFIRMED = 10
ERR_INVALID_STATE = 11
ERR_INTERNAL = 12
ERR_AUTH_REQUIRED = 13
ERR_NO_SESSION = 14
ERR_NO_KEY = 15
ERR_BAD_TAG = 16
ERR_REPLAY = 17
ERR_WRONG_ROLE = 18

MODE_STOPPED = 0
MODE_CONTINUOUS = 1


def find(type_id):
    """The table row for a message type, or None."""
    for row in MESSAGES:
        if row[0] == type_id:
            return row
    return None
