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

DOSE_MAX_NG_DAY = 20_000_000  # 20 mg/day: far above any labelled dose (max seen 2003 mcg/day)
BOLUS_MAX_NG = 2_000_000  # 2 mg: the largest single bolus the wire can carry
FLEX_STEPS_MAX = 24  # a flex day has up to 24 steps (the label's example needs 2; issue: 10+)
LOG_PAGE_EVENTS = 8  # events per READ_LOG answer at most

# Enums: name -> ((value, label), ...)
ENUMS = {
    "mode": (
        (0, "stopped"),
        (1, "continuous"),
        (2, "flex"),
        (3, "minimum_rate"),  # suspended: a catheter-patency trickle, not therapy
        (4, "taper"),  # a drug holiday: the daily dose stepping down once a day
    ),
    "phase": (
        (0, "unset"),  # no patient profile yet: nothing but reads and setup
        (1, "screening"),  # test boluses before an implant (label 2.2)
        (2, "titration"),  # after implant: increases once per 24 h (label 2.5)
        (3, "maintenance"),  # increases at refill visits (label 2.6)
    ),
    "origin": (
        (0, "unset"),  # only in PROFILE, before a profile is set
        (1, "spinal"),
        (2, "cerebral"),
    ),
    "drug": (
        (1, "baclofen"),
    ),
    "bolus": (
        (0, "none"),
        (1, "clinician"),
        (2, "priming"),  # the catheter's dead volume, before a new rate
        (3, "screening"),
        (4, "patient"),
    ),
    "role": (
        (1, "patient"),
        (2, "clinician"),
        (3, "service"),
    ),
    "event": (
        (1, "boot"),  # a: reset cause
        (2, "program"),  # a: new daily dose ng/day, b: previous, c: mode
        (3, "stop"),  # a: stop reason
        (4, "refused"),  # rule, type: the request; a: error code, b: requested, c: allowed
        (5, "clock_set"),  # a: how far the clock moved (s; clamped to i32)
        (6, "repl"),  # the link handed to the REPL
        (7, "delivery_gap"),  # a: steps skipped because the loop fell behind
        (8, "reservoir_empty"),  # the program took the last step the reservoir held
        (9, "fault"),  # a turn of the loop raised (a firmware bug); a: faults since boot
        (10, "profile"),  # a: age, b: ceiling ng/day, c: origin << 8 | phase
        (11, "bolus"),  # type: bolus kind; a: dose ng, b: duration s, c: volume nL
        (12, "bolus_done"),  # type: bolus kind; a: ng delivered, b: ng not delivered
        (13, "patient_bolus_set"),  # a: dose ng, b: lockout s, c: max per day (0: off)
        (14, "suspend"),  # a: reason
        (15, "resume"),  # a: mode resumed
        (16, "refill_begin"),  # a: volume expected in the reservoir, nL
        (17, "refill_commit"),  # a: fill nL, b: concentration, c: drained nL
        (18, "refill_abort"),  # a: 1 if the session timed out
        (19, "cap_begin"),  # a: pump clock when the session ends by itself
        (20, "cap_end"),  # a: 1 if it timed out
        (21, "alarm"),  # a: alarm, b: 1 raised, 0 cleared
        (22, "alarm_ack"),  # a: alarm
        (23, "alarm_silence"),  # a: minutes
        (24, "escalation"),  # a: new daily dose, b: previous, c: maintenance increases in 90 d
        (25, "restored"),  # state read back at boot; a: s the pump was off (-1: unknown, set
        # the clock), b: mode resumed, c: 1 if the newest copy was corrupt and an older one used
        (26, "lockout"),  # authentication refused for a while (firmware/core/guard.py), once
        # per lockout; type: the request that began it. a: the role locked out after bad tags,
        # b: s it lasts, c: lockouts of that role in a row (the back-off's step); or a: 0,
        # CHALLENGE throttled (too many sessions opened and not used), b: s to the next one
    ),
    "stop_reason": (
        (1, "clinician_decision"),
        (2, "overdose_emergency"),
        (3, "end_of_therapy"),
        (4, "surgery_or_maintenance"),
    ),
}

# Bit sets: name -> ((bit, label), ...); a field naming one refuses unknown bits.
FLAGS = {
    "confirm": (
        (0x01, "high_dose"),  # a daily dose above 1000 mcg/day (label 2.6)
        (0x02, "large_decrease"),  # a cut of more than 20 % within 24 h (label 2.6, 5.5)
        (0x04, "custom_concentration"),  # a dilution other than 50/500/1000/2000 (label 2.3)
        (0x08, "drain_mismatch"),  # drained volume 20 % off what was expected, explained
    ),
    "sessions": (
        (0x01, "refill"),
        (0x02, "cap"),
    ),
}
CONFIRM_HIGH_DOSE = 0x01
CONFIRM_LARGE_DECREASE = 0x02
CONFIRM_CUSTOM_CONCENTRATION = 0x04
CONFIRM_DRAIN_MISMATCH = 0x08
SESSION_REFILL = 0x01
SESSION_CAP = 0x02

# Alarms: (id, name, level). Level 2 critical (two-tone), 1 non-critical (one tone), 0 a
# notice (no tone: for the clinician, not the patient). Active alarms are a bit set in
# STATUS: bit (id - 1).
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
ENUMS["alarm"] = tuple((a, name) for a, name, _level in ALARMS)
FLAGS["alarms"] = tuple((1 << (a - 1), name) for a, name, _level in ALARMS)
ALARM_BITS = (1 << len(ALARMS)) - 1

# Clinical rules a refusal can name: (id, name, unit of requested/allowed, label section).
RULES = (
    (1, "patient_age", "years", "1, 8.4"),
    (2, "profile_required", "", "2.5"),
    (3, "drug", "", "2.3"),
    (4, "concentration", "mcg/mL", "2.3, 16"),
    (5, "custom_concentration", "mcg/mL", "2.3"),
    (6, "concentration_change", "mcg/mL", "2.3"),
    (7, "first_24h", "ng/day", "2.5"),
    (8, "titration_step", "ng/day", "2.5"),
    (9, "titration_interval", "ng/day", "2.5"),  # the dose asked, the dose in force; wait_s
    (10, "maintenance_step", "ng/day", "2.6"),
    (11, "maintenance_at_refill", "ng/day", "2.6"),
    (12, "high_dose", "ng/day", "2.6"),
    (13, "hard_ceiling", "ng/day", "profile"),
    (14, "large_decrease", "ng/day", "2.6, 5.5"),
    (15, "starting_dose", "ng/day", "2.5"),
    (16, "screening_dose", "ng", "2.2"),
    (17, "screening_interval", "ng", "2.2"),  # the dose asked, the next allowed; wait_s
    (18, "screening_duration", "s", "2.2"),
    (19, "patient_bolus_off", "", "therapy manager"),
    (20, "patient_bolus_lockout", "s", "therapy manager"),
    (21, "patient_bolus_max", "boluses", "therapy manager"),
    (22, "bolus_ceiling", "ng", "profile"),
    (23, "pump_rate", "nL/day", "pump"),
    (24, "overfill", "nL", "5.1"),
    (25, "drain_mismatch", "nL", "5.1"),
    (26, "flex_steps", "steps", "2.4"),
    (27, "phase", "phase", "2.2, 2.5"),
    (28, "reservoir", "nL", "5.5"),
    (29, "stop_reason", "", "boxed warning, 5.5"),
    (30, "taper", "ng/day", "2.6"),
    (31, "infusion_start", "", "2.5"),  # once infusion ran on this pump, its start stays
)
ENUMS["rule"] = ((0, "none"),) + tuple((r, name) for r, name, _unit, _sec in RULES)

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
    (19, "LIMIT", "a clinical limit refuses it: see rule, requested and allowed"),
    (20, "TOO_SOON", "not yet: see wait_s"),
    (21, "LOCKED", "the role is locked out after repeated bad tags: see wait_s"),
    (22, "BUSY", "too many sessions opened and not used: see wait_s"),
)

# Field: (name, kind, low, high, enum, unit)
#   kind: struct code (B H I b h i), "Ns" fixed bytes, "str" (u8 length + UTF-8, at most
#   `high` bytes) or "list" (u8 count, from `low` to `high`, then that many items, each laid
#   out by the fields in the enum slot). "str" and "list" only as the last field.
#   low/high bound integer values; enum names ENUMS or FLAGS.
# Message: (type, name, kind, fields, doc); kind: "req" (host -> pump), "resp" (pump -> host),
# "event" (pump -> host, unsolicited, sequence number 0, types 0xC0 and up).
# A request of type T is answered by type T | 0x80, or by ERROR.
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
PROFILE_FIELDS = (
    ("origin", "B", 1, 2, "origin", "origin of the spasticity"),
    ("age_years", "B", 0, 120, None, "years (the pump refuses under 4)"),
    ("phase", "B", 1, 3, "phase", ""),
    ("ceiling_ng", "I", 1000, DOSE_MAX_NG_DAY, None, "hard daily ceiling, ng/day"),
    ("catheter_nl", "I", 0, 1_000_000, None, "catheter dead volume, nL (priming bolus)"),
    ("infusion_start_s", "I", 0, CLOCK_MAX, None,
     "when infusion started; 0: at the first program"),
)
# PROFILE answers with phase 0 when no profile is set; SET_PROFILE cannot set it.
PROFILE_STATE_FIELDS = (
    ("origin", "B", 0, 2, "origin", "origin of the spasticity"),
    PROFILE_FIELDS[1],
    ("phase", "B", 0, 3, "phase", ""),
    ("ceiling_ng", "I", 0, DOSE_MAX_NG_DAY, None, "hard daily ceiling, ng/day"),
) + PROFILE_FIELDS[4:]
STEP_FIELDS = (
    ("start_min", "H", 0, 1439, None, "minute of the day (local time) the step starts"),
    ("daily_dose_ng", "I", 1000, DOSE_MAX_NG_DAY, None, "rate during the step, as ng/day"),
)
PROGRAM_FIELDS = (
    ("mode", "B", 0, 4, "mode", ""),
    ("daily_dose_ng", "I", 0, U32, None, "ng over 24 h"),
    ("rate_nl_day", "I", 0, U32, None, "basal rate now, nL/day"),
    ("utc_offset_min", "h", -720, 840, None, "local time - UTC, min"),
    ("steps", "list", 0, FLEX_STEPS_MAX, STEP_FIELDS, "flex steps (one for continuous)"),
)
BOLUS_OK_FIELDS = (
    ("bolus", "B", 1, 4, "bolus", ""),
    ("dose_ng", "I", 0, U32, None, "ng"),
    ("volume_nl", "I", 0, U32, None, "nL (whole motor steps)"),
    ("duration_s", "I", 0, U32, None, "s"),
    ("ends_at_s", "I", 0, U32, None, "pump clock when it is delivered"),
)
PATIENT_BOLUS_FIELDS = (
    ("dose_ng", "I", 0, BOLUS_MAX_NG, None, "ng per bolus; 0: patient boluses off"),
    ("duration_s", "I", 60, 86400, None, "s over which each is given"),
    ("lockout_s", "I", 0, 86400, None, "s from one to the next"),
    ("max_per_day", "B", 0, 24, None, "boluses in any 24 h"),
)
SCREEN_FIELDS = (
    ("time_s", "I", 0, U32, None, "pump clock when given"),
    ("dose_ng", "I", 0, U32, None, "ng"),
    ("duration_s", "I", 0, U32, None, "s"),
)
LOG_FIELDS = (
    ("number", "I", 0, U32, None, "the event's number"),
    ("time_s", "I", 0, U32, None, "pump clock, s since 1970"),
    ("event", "B", 1, ENUMS["event"][-1][0], "event", ""),
    ("role", "B", 0, 3, None, "who caused it (0: the pump itself)"),
    ("rule", "B", 0, len(RULES), "rule", "the rule that refused it"),
    ("type", "B", 0, 255, None, "request type, or bolus kind"),
    ("a", "i", -0x80000000, 0x7FFFFFFF, None, "first detail (see the event)"),
    ("b", "i", -0x80000000, 0x7FFFFFFF, None, "second detail"),
    ("c", "i", -0x80000000, 0x7FFFFFFF, None, "third detail"),
)
ALARM_STATE_FIELDS = (
    ("alarms", "H", 0, ALARM_BITS, "alarms", "active"),
    ("unacknowledged", "H", 0, ALARM_BITS, "alarms", "active and not yet acknowledged"),
    ("silenced_until_s", "I", 0, U32, None, "pump clock until which tones are off; 0: not"),
)
REASON_FIELD = ("reason", "B", 1, 4, "stop_reason", "")
CONFIRM_WORD = ("confirm", "I", 0, U32, None, "must equal STOP_CONFIRM")
CONFIRM_FLAGS = ("confirm", "B", 0, 0x0F, "confirm", "confirmations given")

MESSAGES = (
    (0x01, "GET_INFO", "req", (), "Identity and capabilities of the pump."),
    (0x81, "INFO", "resp", (
        ("protocol_version", "B", 0, 255, None, ""),
        ("board_id", "8s", None, None, None, "unique id of the microcontroller"),
        ("reservoir_nl", "I", 0, U32, None, "capacity, nL"),
        ("step_nl", "H", 1, 0xFFFF, None, "nL per motor step"),
        ("fw_version", "str", 0, 24, None, ""),
    ), "Identity: protocol and firmware version, board id, reservoir size, step volume."),
    (0x02, "GET_STATUS", "req", (), "Current state of delivery."),
    (0x82, "STATUS", "resp", STATUS_FIELDS,
     "Mode, program in force, bolus, delivered totals, reservoir and its dates, alarms,"
     " sessions, uptime, clock, battery, link errors."),
    (0x03, "SET_CONTINUOUS", "req", (
        ("daily_dose_ng", "I", 1000, DOSE_MAX_NG_DAY, None, "ng/day"),
        CONFIRM_FLAGS,
    ), "Program simple continuous infusion of a daily dose (the drug's concentration is the"
       " reservoir's)."),
    (0x83, "CONTINUOUS_OK", "resp", PROGRAM_FIELDS, "The program now in force."),
    (0x04, "STOP", "req", (REASON_FIELD, CONFIRM_WORD),
     "Stop delivery (a bolus too). Needs a reason and the confirmation word 0x53544F50."),
    (0x84, "STOPPED", "resp", (REASON_FIELD,), "Delivery is stopped."),
    (0x05, "ENTER_REPL", "req", (
        ("confirm", "I", 0, U32, None, "must equal REPL_CONFIRM"),
    ), "Leave the binary protocol for the MicroPython REPL (to re-flash). Only when stopped."),
    (0x85, "REPL_OK", "resp", (), "The firmware has handed the link to the REPL."),
    (0x06, "CHALLENGE", "req", (),
     "Open an authenticated session. Sessions opened and not yet used by a role are"
     " rate-limited: past the limit, BUSY with wait_s."),
    (0x86, "CHALLENGE_OK", "resp", (
        ("session", "B", 0, SESSIONS - 1, None, "session slot"),
        ("nonce", "16s", None, None, None, "random, drawn by the pump"),
    ), "A session: its slot and nonce."),
    (0x07, "GET_COUNTERS", "req", (), "Refusals since boot, one counter per error code."),
    (0x87, "COUNTERS", "resp", tuple(
        (name.lower(), "H", 0, 0xFFFF, None, "refusals") for _code, name, _text in ERRORS
    ), "How many requests and frames were refused, by error code (wrapping at 65535)."),
    (0x08, "READ_LOG", "req", (
        ("number", "I", 0, U32, None, "first event number to read (0 = the first ever)"),
        ("count", "B", 1, LOG_PAGE_EVENTS, None, "events wanted"),
    ), "A page of the event log: up to `count` events held at or after `number` (the log"
       " drops its oldest). Past the newest, an empty page."),
    (0x88, "LOG_PAGE", "resp", (
        ("oldest", "I", 0, U32, None, "number of the oldest event still held"),
        ("total", "I", 0, U32, None, "events logged so far (the next number)"),
        ("events", "list", 0, LOG_PAGE_EVENTS, LOG_FIELDS, ""),
    ), "Events: when, what, who, the rule, and three details."),
    (0x09, "SET_CLOCK", "req", (
        ("time_s", "I", CLOCK_MIN, CLOCK_MAX, None, "s since 1970 (UTC)"),
    ), "Set the pump clock."),
    (0x89, "CLOCK_OK", "resp", (
        ("time_s", "I", 0, U32, None, "the pump clock now"),
    ), "The pump clock after the change."),
    (0x0A, "SET_TELEMETRY", "req", (
        ("period_s", "H", 0, 3600, None, "s between TELEMETRY events; 0 turns them off"),
    ), "Ask for periodic TELEMETRY events (on this link, until changed or reboot)."),
    (0x8A, "TELEMETRY_OK", "resp", (
        ("period_s", "H", 0, 3600, None, "s"),
    ), "The telemetry period now in force."),
    (0x0B, "SET_PROFILE", "req", PROFILE_FIELDS,
     "The patient profile: origin and age decide the titration limits; the hard ceiling caps"
     " every 24 h; the phase moves screening -> titration -> maintenance."),
    (0x8B, "PROFILE_OK", "resp", PROFILE_STATE_FIELDS, "The profile now in force."),
    (0x0C, "GET_PROFILE", "req", (), "The patient profile."),
    (0x8C, "PROFILE", "resp", PROFILE_STATE_FIELDS, "The profile (phase 0: none set)."),
    (0x0D, "SET_FLEX", "req", (
        CONFIRM_FLAGS,
        ("utc_offset_min", "h", -720, 840, None, "local time - UTC, min"),
        ("steps", "list", 2, FLEX_STEPS_MAX, STEP_FIELDS, "in rising start_min order"),
    ), "Program a flex day: each step's rate from its start to the next step's (the last"
       " wraps past midnight). Each starts exactly when programmed."),
    (0x8D, "FLEX_OK", "resp", PROGRAM_FIELDS, "The program now in force."),
    (0x0E, "GET_PROGRAM", "req", (), "The program in force."),
    (0x8E, "PROGRAM", "resp", PROGRAM_FIELDS, "The program in force."),
    (0x0F, "BOLUS", "req", (
        ("dose_ng", "I", 1, BOLUS_MAX_NG, None, "ng"),
        ("duration_s", "I", 60, 86400, None, "s"),
    ), "A clinician bolus on top of the basal rate, counted in the 24 h dose."),
    (0x8F, "BOLUS_OK", "resp", BOLUS_OK_FIELDS, "The bolus now running."),
    (0x10, "PRIME", "req", (
        ("duration_s", "I", 60, 86400, None, "s"),
    ), "A priming (bridge) bolus: the catheter's dead volume (profile), before a new rate."),
    (0x90, "PRIME_OK", "resp", BOLUS_OK_FIELDS, "The priming bolus now running."),
    (0x11, "SCREEN", "req", (
        ("dose_ng", "I", 1, BOLUS_MAX_NG, None, "ng: 50, 75 or 100 mcg (25 first for a child)"),
        ("duration_s", "I", 1, 86400, None, "s (at least 60)"),
    ), "A screening bolus (screening phase): 50, then 75, then 100 mcg, 24 h apart."),
    (0x91, "SCREEN_OK", "resp", BOLUS_OK_FIELDS, "The screening bolus now running."),
    (0x12, "PATIENT_BOLUS", "req", (),
     "A patient bolus, within the limits the clinician set (SET_PATIENT_BOLUS)."),
    (0x92, "PATIENT_BOLUS_OK", "resp", BOLUS_OK_FIELDS, "The patient bolus now running."),
    (0x13, "SET_PATIENT_BOLUS", "req", PATIENT_BOLUS_FIELDS,
     "Enable (dose > 0) or disable patient boluses, with lockout and daily maximum."),
    (0x93, "PATIENT_BOLUS_SET", "resp", PATIENT_BOLUS_FIELDS + (
        ("used_24h", "B", 0, 255, None, "patient boluses in the last 24 h"),
        ("next_at_s", "I", 0, U32, None, "pump clock when the next is allowed"),
    ), "The patient-bolus settings and their use."),
    (0x14, "GET_PATIENT_BOLUS", "req", (), "The patient-bolus settings and their use."),
    (0x94, "PATIENT_BOLUS_STATE", "resp", PATIENT_BOLUS_FIELDS + (
        ("used_24h", "B", 0, 255, None, "patient boluses in the last 24 h"),
        ("next_at_s", "I", 0, U32, None, "pump clock when the next is allowed"),
    ), "The patient-bolus settings and their use."),
    (0x15, "GET_SCREENING", "req", (), "The screening history."),
    (0x95, "SCREENING", "resp", (
        ("next_dose_ng", "I", 0, U32, None, "the largest dose allowed next; 0: none"),
        ("next_at_s", "I", 0, U32, None, "pump clock from when"),
        ("given", "list", 0, 4, SCREEN_FIELDS, "screening boluses, oldest first"),
    ), "Screening boluses given, and what may come next."),
    (0x16, "SUSPEND", "req", (REASON_FIELD, CONFIRM_WORD),
     "Hold therapy at the minimum (catheter-patency) rate. Needs the confirmation word."),
    (0x96, "SUSPENDED", "resp", (
        REASON_FIELD,
        ("rate_nl_day", "I", 0, U32, None, "the minimum rate, nL/day"),
    ), "Therapy is held at the minimum rate."),
    (0x17, "RESUME", "req", (), "Resume the program held by SUSPEND or STOP."),
    (0x97, "RESUMED", "resp", PROGRAM_FIELDS, "The program now in force."),
    (0x18, "REFILL_BEGIN", "req", (),
     "Open a refill session: the refill path opens, the outlet and CAP stay closed."),
    (0x98, "REFILL_OPEN", "resp", (
        ("expected_nl", "I", 0, U32, None, "volume the pump expects to be drained"),
        ("capacity_nl", "I", 0, U32, None, "reservoir capacity"),
        ("concentration", "H", 0, 0xFFFF, None, "mcg/mL now"),
    ), "The refill session is open."),
    (0x19, "REFILL_COMMIT", "req", (
        ("drained_nl", "I", 0, U32, None, "volume the clinician drained"),
        ("fill_nl", "I", 0, U32, None, "volume filled"),
        ("drug", "B", 1, 1, "drug", ""),
        ("concentration", "H", 1, 0xFFFF, None, "mcg/mL"),
        ("concentration_again", "H", 1, 0xFFFF, None, "mcg/mL, entered a second time"),
        CONFIRM_FLAGS,
    ), "Close the refill session: the new volume and drug."),
    (0x99, "REFILL_DONE", "resp", (
        ("reservoir_nl", "I", 0, U32, None, "nL now"),
        ("concentration", "H", 0, 0xFFFF, None, "mcg/mL now"),
        ("expected_nl", "I", 0, U32, None, "what the pump expected to be drained"),
        ("low_at_s", "I", 0, U32, None, "low-reservoir date at the program in force"),
        ("refill_at_s", "I", 0, U32, None, "refill due"),
    ), "The reservoir after the refill, and its dates."),
    (0x1A, "REFILL_ABORT", "req", (), "Close the refill session without a change."),
    (0x9A, "REFILL_ABORTED", "resp", (), "The refill session is closed; nothing changed."),
    (0x1B, "CAP_BEGIN", "req", (
        ("duration_s", "H", 60, 1800, None, "s until it closes by itself (default 600)"),
    ), "Open a catheter access port session (clinician procedures only)."),
    (0x9B, "CAP_OPEN", "resp", (
        ("until_s", "I", 0, U32, None, "pump clock when it closes by itself"),
    ), "The CAP session is open."),
    (0x1C, "CAP_END", "req", (), "Close the CAP session."),
    (0x9C, "CAP_CLOSED", "resp", (), "The CAP session is closed."),
    (0x1D, "ALARM_ACK", "req", (
        ("alarm", "B", 1, len(ALARMS), "alarm", ""),
    ), "Acknowledge an alarm: its tone stops; it stays active while its cause does."),
    (0x9D, "ALARM_ACKED", "resp", ALARM_STATE_FIELDS, "The alarms after it."),
    (0x1E, "ALARM_SILENCE", "req", (
        ("minutes", "H", 1, 1440, None, "min"),
    ), "Silence every alarm tone for a while (alarms stay active and logged)."),
    (0x9E, "ALARM_SILENCED", "resp", ALARM_STATE_FIELDS, "The alarms after it."),
    (0x1F, "SET_TAPER", "req", (
        ("target_ng", "I", 1000, DOSE_MAX_NG_DAY, None, "ng/day at the end"),
        ("days", "B", 14, 28, None, "days (2 to 4 weeks, label 2.6)"),
        CONFIRM_FLAGS,
    ), "A drug holiday: from the dose in force down to the target, one step a day, then the"
       " target as continuous infusion."),
    (0x9F, "TAPER_OK", "resp", (
        ("start_ng", "I", 0, U32, None, "ng/day on day 0"),
        ("target_ng", "I", 0, U32, None, "ng/day from the last day on"),
        ("days", "B", 0, 255, None, ""),
        ("step_ng", "I", 0, U32, None, "the daily cut, ng/day"),
        ("ends_at_s", "I", 0, U32, None, "pump clock when the target is reached"),
    ), "The taper now in force."),
    (0x20, "GET_ALARMS", "req", (), "The alarms: active, unacknowledged, silenced until."),
    (0xA0, "ALARM_STATE", "resp", ALARM_STATE_FIELDS, "The alarms."),
    (0xC0, "TELEMETRY", "event", TELEMETRY_FIELDS,
     "Unsolicited, every SET_TELEMETRY period: delivery as it goes."),
    (0xC1, "ALARM", "event", (
        ("alarm", "B", 1, len(ALARMS), "alarm", ""),
        ("active", "B", 0, 1, None, "1 raised, 0 cleared"),
        ("time_s", "I", 0, U32, None, "pump clock"),
        ("alarms", "H", 0, ALARM_BITS, "alarms", "all active now"),
    ), "Unsolicited, to every link: an alarm raised or cleared."),
    (0xFF, "ERROR", "resp", (
        ("code", "B", 1, 255, None, "one of ERRORS"),
        ("request_type", "B", 0, 255, None, "type of the refused request, 0 if unknown"),
        ("rule", "B", 0, len(RULES), "rule", "the clinical rule that refused it; 0: none"),
        ("requested", "I", 0, U32, None, "the value asked for (in the rule's unit)"),
        ("allowed", "I", 0, U32, None,
         "the rule's limit now: the most allowed (the least, for a minimum)"),
        ("wait_s", "I", 0, U32, None, "s until it may be allowed (TOO_SOON, LOCKED, BUSY)"),
        ("reason", "str", 0, 80, None, "text for a person"),
    ), "A request was refused or a frame could not be read."),
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


def find(type_id):
    """The table row for a message type, or None."""
    for row in MESSAGES:
        if row[0] == type_id:
            return row
    return None
