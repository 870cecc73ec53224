# The wire format's constants: ids, sizes, codes, and the few tables the firmware reads.
# Board-side: plain ints, strings and tuples, so it runs on MicroPython; it is what the board
# imports (its heap after boot holds every name here), so it keeps nothing only the host uses.
#
# The message table itself (every message, field, range, enum, unit and description) is in
# protocol/spec.py, the single source of truth, which never goes to the board (host/deploy.py):
# the firmware's codec (codec.py) reads its compact form, protocol/layouts.py, generated from
# it by tools/board_table.py; the host's construct codec (host_codec.py), the documentation
# (tools/protocol_docs.py) and the tests read it through this module: a name not found here
# (MESSAGES, ENUMS, FLAGS, RULES, find, the *_FIELDS tuples...) is looked up in protocol.spec
# on first use (__getattr__ at the end), on CPython and on the MicroPython VM alike.

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
SESSIONS = 4  # concurrent sessions; which slot a new CHALLENGE takes: firmware/core/guard.py

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

DOSE_MAX_NG_DAY = 20_000_000  # 20 mg/day: far above any labelled dose (max seen 2003 mcg/day)
BOLUS_MAX_NG = 2_000_000  # 2 mg: the largest single bolus the wire can carry
FLEX_STEPS_MAX = 24  # a flex day has up to 24 steps (the label's example needs 2; issue: 10+)
LOG_PAGE_EVENTS = 8  # events per READ_LOG answer at most

# Bits of the confirm and sessions bit sets (spec.py FLAGS names them all).
CONFIRM_HIGH_DOSE = 0x01
CONFIRM_LARGE_DECREASE = 0x02
CONFIRM_CUSTOM_CONCENTRATION = 0x04
CONFIRM_DRAIN_MISMATCH = 0x08
SESSION_REFILL = 0x01
SESSION_CAP = 0x02

# Alarms: (id, name, level). Level 2 critical (two-tone), 1 non-critical (one tone), 0 a
# notice (no tone: for the clinician, not the patient). Active alarms are a bit set in
# STATUS: bit (id - 1). Here, not in spec.py: the firmware reads the levels (core/alarms.py).
ALARMS = (
    (1, "low_reservoir", 1),
    (2, "reservoir_empty", 2),
    (3, "refill_due", 1),
    (4, "battery_replace", 1),  # elective replacement: about 90 days left
    (5, "battery_end", 2),  # end of service
    (6, "occlusion", 2),  # motor stall, end-stop or downstream pressure
    (7, "cap_violation", 2),  # a needle in the catheter access port outside a CAP session
    (8, "septum_needle", 1),  # a needle in the refill septum outside a refill session
    (9, "config_crc", 2),  # stored configuration corrupt: running the last good therapy
    (10, "watchdog_reset", 1),
    (11, "escalation", 0),  # large or repeated increases: check the catheter (label 2.6)
)
ALARM_BITS = (1 << len(ALARMS)) - 1

# Error codes: (code, name, what it means). The host raises one exception class per code.
# Here, not in spec.py: the firmware counts refusals per code (core/dispatch.py, COUNTERS).
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
    (19, "LIMIT", "a clinical limit refuses it: see rule, requested and allowed"),
    (20, "TOO_SOON", "not yet: see wait_s"),
    (21, "LOCKED", "the role is locked out after repeated bad tags: see wait_s"),
    (22, "BUSY", "too many sessions opened and not used: see wait_s"),
)

# A field: (name, kind, low, high, enum, unit), as protocol/spec.py describes. STATUS's are
# here, not there, because the firmware lays TELEMETRY out from them (firmware/core/dispatch).
U32 = 0xFFFFFFFF
STATUS_FIELDS = (
    ("mode", "B", 0, 4, "mode", ""),
    ("phase", "B", 0, 3, "phase", ""),
    ("daily_dose_ng", "I", 0, U32, None, "ng/day: the program's dose over 24 h"),
    ("concentration", "H", 0, 0xFFFF, None, "mcg/mL (0: no drug)"),
    ("rate_nl_day", "I", 0, U32, None, "basal rate now, nL/day (rounded, for display)"),
    ("bolus", "B", 0, 4, "bolus", "bolus running"),
    ("bolus_left_ng", "I", 0, U32, None, "ng of it still to deliver"),
    ("last_24h_ng", "I", 0, U32, None, "ng delivered in the last 24 h"),
    ("delivered_nl", "I", 0, U32, None, "nL in all (kept across resets)"),
    ("delivered_ng", "I", 0, U32, None, "ng in all (kept across resets)"),
    ("reservoir_nl", "I", 0, U32, None, "nL left"),
    ("uptime_s", "I", 0, U32, None, "s since this boot"),
    ("clock_s", "I", 0, U32, None, "pump clock, s since 1970 (UTC)"),
    ("low_at_s", "I", 0, U32, None,
     "pump clock when the reservoir reaches the low-reservoir level; 0: never at this program"),
    ("refill_at_s", "I", 0, U32, None,
     "refill due: the low-reservoir date less the scheduling margin; 0: none"),
    ("dry_at_s", "I", 0, U32, None, "pump clock when the reservoir runs dry; 0: never"),
    ("alarms", "H", 0, ALARM_BITS, "alarms", "active alarms: bit (alarm - 1)"),
    ("sessions", "B", 0, 3, "sessions", "refill or CAP session open"),
    ("battery_mv", "H", 0, 0xFFFF, None, "battery voltage, mV (read each minute)"),
    ("frame_errors", "H", 0, 0xFFFF, None, "unreadable frames since boot (line noise)"),
)
# A TELEMETRY event carries these STATUS fields, in this order.
TELEMETRY_FIELDS = tuple(
    f for f in STATUS_FIELDS
    if f[0] in ("mode", "rate_nl_day", "bolus_left_ng", "delivered_nl", "delivered_ng",
                "reservoir_nl", "clock_s", "alarms", "battery_mv")
)

# Message type ids, for code that names them.
GET_INFO = 0x01
INFO = 0x81
GET_STATUS = 0x02
STATUS = 0x82
SET_CONTINUOUS = 0x03
CONTINUOUS_OK = 0x83
STOP = 0x04
STOPPED = 0x84
ENTER_REPL = 0x05
REPL_OK = 0x85
CHALLENGE = 0x06
CHALLENGE_OK = 0x86
GET_COUNTERS = 0x07
COUNTERS = 0x87
READ_LOG = 0x08
LOG_PAGE = 0x88
CLOCK_OK = 0x89
TELEMETRY_OK = 0x8A
PROFILE_OK = 0x8B
PROFILE = 0x8C
FLEX_OK = 0x8D
PROGRAM = 0x8E
BOLUS_OK = 0x8F
PRIME_OK = 0x90
SCREEN_OK = 0x91
PATIENT_BOLUS_OK = 0x92
PATIENT_BOLUS_SET = 0x93
PATIENT_BOLUS_STATE = 0x94
SCREENING = 0x95
SUSPENDED = 0x96
RESUMED = 0x97
REFILL_OPEN = 0x98
REFILL_DONE = 0x99
REFILL_ABORTED = 0x9A
CAP_OPEN = 0x9B
CAP_CLOSED = 0x9C
ALARM_ACKED = 0x9D
ALARM_SILENCED = 0x9E
TAPER_OK = 0x9F
SET_CLOCK = 0x09
SET_TELEMETRY = 0x0A
SET_PROFILE = 0x0B
GET_PROFILE = 0x0C
SET_FLEX = 0x0D
GET_PROGRAM = 0x0E
BOLUS = 0x0F
PRIME = 0x10
SCREEN = 0x11
PATIENT_BOLUS = 0x12
SET_PATIENT_BOLUS = 0x13
GET_PATIENT_BOLUS = 0x14
GET_SCREENING = 0x15
SUSPEND = 0x16
RESUME = 0x17
REFILL_BEGIN = 0x18
REFILL_COMMIT = 0x19
REFILL_ABORT = 0x1A
CAP_BEGIN = 0x1B
CAP_END = 0x1C
ALARM_ACK = 0x1D
ALARM_SILENCE = 0x1E
SET_TAPER = 0x1F
GET_ALARMS = 0x20
ALARM_STATE = 0xA0
TELEMETRY = 0xC0
ALARM = 0xC1
ERROR = 0xFF

EV_BOOT = 1
EV_PROGRAM = 2
EV_STOP = 3
EV_REFUSED = 4
EV_CLOCK_SET = 5
EV_REPL = 6
EV_DELIVERY_GAP = 7
EV_RESERVOIR_EMPTY = 8
EV_FAULT = 9
EV_PROFILE = 10
EV_BOLUS = 11
EV_BOLUS_DONE = 12
EV_PATIENT_BOLUS_SET = 13
EV_SUSPEND = 14
EV_RESUME = 15
EV_REFILL_BEGIN = 16
EV_REFILL_COMMIT = 17
EV_REFILL_ABORT = 18
EV_CAP_BEGIN = 19
EV_CAP_END = 20
EV_ALARM = 21
EV_ALARM_ACK = 22
EV_ALARM_SILENCE = 23
EV_ESCALATION = 24
EV_RESTORED = 25
EV_LOCKOUT = 26

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
    GET_COUNTERS: ANY_ROLE,
    SET_TELEMETRY: ANY_ROLE,
    GET_PROFILE: ANY_ROLE,
    GET_PROGRAM: ANY_ROLE,
    GET_PATIENT_BOLUS: ANY_ROLE,
    GET_SCREENING: CLINICIAN | SERVICE,
    GET_ALARMS: ANY_ROLE,
    READ_LOG: CLINICIAN | SERVICE,
    SET_CLOCK: CLINICIAN | SERVICE,
    ENTER_REPL: CLINICIAN | SERVICE,
    PATIENT_BOLUS: PATIENT,
    ALARM_ACK: ANY_ROLE,
    ALARM_SILENCE: ANY_ROLE,
    # Everything that programs therapy or opens a way into the patient: clinician only.
    SET_CONTINUOUS: CLINICIAN,
    SET_FLEX: CLINICIAN,
    STOP: CLINICIAN,
    SUSPEND: CLINICIAN,
    RESUME: CLINICIAN,
    SET_PROFILE: CLINICIAN,
    BOLUS: CLINICIAN,
    PRIME: CLINICIAN,
    SCREEN: CLINICIAN,
    SET_PATIENT_BOLUS: CLINICIAN,
    REFILL_BEGIN: CLINICIAN,
    REFILL_COMMIT: CLINICIAN,
    REFILL_ABORT: CLINICIAN,
    CAP_BEGIN: CLINICIAN,
    CAP_END: CLINICIAN,
    SET_TAPER: CLINICIAN,
}

# Requests that only read: always answered afresh. Every other request changes the pump, and
# a repeat of it (same sequence number and CRC as the last one) is answered from the cache.
READ_ONLY = (GET_INFO, GET_STATUS, GET_COUNTERS, READ_LOG, GET_PROFILE, GET_PROGRAM,
             GET_PATIENT_BOLUS, GET_SCREENING, GET_ALARMS)
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
ERR_LIMIT = 19
ERR_TOO_SOON = 20
ERR_LOCKED = 21
ERR_BUSY = 22

MODE_STOPPED = 0
MODE_CONTINUOUS = 1
MODE_FLEX = 2
MODE_MINIMUM = 3
MODE_TAPER = 4

PHASE_UNSET = 0
PHASE_SCREENING = 1
PHASE_TITRATION = 2
PHASE_MAINTENANCE = 3

ORIGIN_UNSET = 0
ORIGIN_SPINAL = 1
ORIGIN_CEREBRAL = 2

DRUG_BACLOFEN = 1

BOLUS_NONE = 0
BOLUS_CLINICIAN = 1
BOLUS_PRIMING = 2
BOLUS_SCREENING = 3
BOLUS_PATIENT = 4

ALARM_LOW_RESERVOIR = 1
ALARM_RESERVOIR_EMPTY = 2
ALARM_REFILL_DUE = 3
ALARM_BATTERY_REPLACE = 4
ALARM_BATTERY_END = 5
ALARM_OCCLUSION = 6
ALARM_CAP_VIOLATION = 7
ALARM_SEPTUM_NEEDLE = 8
ALARM_CONFIG_CRC = 9
ALARM_WATCHDOG_RESET = 10
ALARM_ESCALATION = 11

RULE_PATIENT_AGE = 1
RULE_PROFILE_REQUIRED = 2
RULE_DRUG = 3
RULE_CONCENTRATION = 4
RULE_CUSTOM_CONCENTRATION = 5
RULE_CONCENTRATION_CHANGE = 6
RULE_FIRST_24H = 7
RULE_TITRATION_STEP = 8
RULE_TITRATION_INTERVAL = 9
RULE_MAINTENANCE_STEP = 10
RULE_MAINTENANCE_AT_REFILL = 11
RULE_HIGH_DOSE = 12
RULE_HARD_CEILING = 13
RULE_LARGE_DECREASE = 14
RULE_STARTING_DOSE = 15
RULE_SCREENING_DOSE = 16
RULE_SCREENING_INTERVAL = 17
RULE_SCREENING_DURATION = 18
RULE_PATIENT_BOLUS_OFF = 19
RULE_PATIENT_BOLUS_LOCKOUT = 20
RULE_PATIENT_BOLUS_MAX = 21
RULE_BOLUS_CEILING = 22
RULE_PUMP_RATE = 23
RULE_OVERFILL = 24
RULE_DRAIN_MISMATCH = 25
RULE_FLEX_STEPS = 26
RULE_PHASE = 27
RULE_RESERVOIR = 28
RULE_STOP_REASON = 29
RULE_TAPER = 30
RULE_INFUSION_START = 31
RULE_BRAIN_INJURY_WAIT = 32


def __getattr__(name):
    """The host-side table (protocol/spec.py) by its old names: m.MESSAGES, m.find, ...
    Loaded on first use, never by the firmware: the board has no protocol/spec.py."""
    try:
        from protocol import spec
    except ImportError:
        raise AttributeError(name) from None
    value = getattr(spec, name)
    globals()[name] = value  # the next look-up is a plain one
    return value
