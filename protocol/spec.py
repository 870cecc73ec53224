# The wire format's single source of truth: every message, field, range, enum, unit and
# description. Host-side: the board never imports it (host/deploy.py leaves it off the flash);
# it stays plain Python (tuples and ints) so the board tests can read it on the MicroPython VM
# too. The constants (ids, sizes, codes) and the few tables the firmware itself reads (ALARMS,
# ERRORS, STATUS_FIELDS) are in protocol/messages.py, which also hands out every name here
# (m.MESSAGES, m.find, ...). The firmware's codec reads protocol/layouts.py, the compact form
# of MESSAGES that board_table() below gives and tools/board_table.py writes; the host's
# construct codec (host_codec.py) and the documentation (tools/protocol_docs.py) read this.
#
# host-only: this line tells host/deploy.py to leave the module off the board.

import struct

from protocol.messages import (
    ALARM_BITS,
    ALARMS,
    BOLUS_MAX_NG,
    CLOCK_MAX,
    CLOCK_MIN,
    DOSE_MAX_NG_DAY,
    ERRORS,
    FLEX_STEPS_MAX,
    LOG_PAGE_EVENTS,
    SESSIONS,
    STATUS_FIELDS,
    TELEMETRY_FIELDS,
    U32,
)

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
ENUMS["alarm"] = tuple((a, name) for a, name, _level in ALARMS)
FLAGS["alarms"] = tuple((1 << (a - 1), name) for a, name, _level in ALARMS)

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
    # After a traumatic brain injury, therapy at least a year after it (firmware/core/rules.py
    # check_brain_injury): requested is the injury's date; allowed, for TOO_SOON the date
    # therapy may start (wait_s until then), for OUT_OF_RANGE (an injury after the pump's
    # clock) the pump's clock.
    (32, "brain_injury_wait", "date", "1"),
)
ENUMS["rule"] = ((0, "none"),) + tuple((r, name) for r, name, _unit, _sec in RULES)

# Field: (name, kind, low, high, enum, unit)
#   kind: struct code (B H I b h i), "Ns" fixed bytes, "str" (u8 length + UTF-8, at most
#   `high` bytes) or "list" (u8 count, from `low` to `high`, then that many items, each laid
#   out by the fields in the enum slot). "str" and "list" only as the last field.
#   low/high bound integer values; enum names ENUMS or FLAGS.
# Message: (type, name, kind, fields, doc); kind: "req" (host -> pump), "resp" (pump -> host),
# "event" (pump -> host, unsolicited, sequence number 0, types 0xC0 and up).
# A request of type T is answered by type T | 0x80, or by ERROR.
# STATUS_FIELDS and TELEMETRY_FIELDS (TELEMETRY's) are in protocol/messages.py.
PROFILE_FIELDS = (
    ("origin", "B", 1, 2, "origin", "origin of the spasticity"),
    ("age_years", "B", 0, 120, None, "years (the pump refuses under 4)"),
    ("phase", "B", 1, 3, "phase", ""),
    ("ceiling_ng", "I", 1000, DOSE_MAX_NG_DAY, None, "hard daily ceiling, ng/day"),
    ("catheter_nl", "I", 0, 1_000_000, None, "catheter dead volume, nL (priming bolus)"),
    ("infusion_start_s", "I", 0, CLOCK_MAX, None,
     "when infusion started; 0: at the first program"),
    ("brain_injury_s", "I", 0, CLOCK_MAX, None,
     "date of the traumatic brain injury behind the spasticity (therapy a year after it at"
     " the earliest, label 1); 0: none"),
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
     " every 24 h; the phase moves screening -> titration -> maintenance; after a brain"
     " injury, no therapy before a year has passed (by the pump's clock)."),
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


def find(type_id):
    """The table row for a message type, or None."""
    for row in MESSAGES:
        if row[0] == type_id:
            return row
    return None


class Layout:
    """A message's wire layout, worked out from its row: fixed fields in one struct format,
    then an optional tail: a string, or a list of items that each have a fixed struct format.
    For the host, the tests and the tools (codec.LAYOUTS); the board's codec reads the same
    facts from protocol/layouts.py."""

    def __init__(self, row):
        self.type = row[0]
        self.name = row[1]
        self.kind = row[2]
        self.fields = row[3]
        fmt = "<"
        self.has_str = False
        self.has_list = False
        for i, f in enumerate(self.fields):
            if f[1] in ("str", "list"):
                if i != len(self.fields) - 1:
                    raise ValueError("str or list field must be last: " + self.name)
                self.has_str = f[1] == "str"
                self.has_list = f[1] == "list"
            else:
                fmt += f[1]
        self.fmt = fmt
        self.fixed_size = struct.calcsize(fmt)
        self.has_tail = self.has_str or self.has_list
        self.n_fixed = len(self.fields) - (1 if self.has_tail else 0)
        if self.has_list:
            self.item_fields = self.fields[-1][4]
            self.item_fmt = "<" + "".join(f[1] for f in self.item_fields)
            self.item_size = struct.calcsize(self.item_fmt)


_LAYOUTS = {}


def layouts():
    """{type: Layout} of every message (built once)."""
    if not _LAYOUTS:
        for row in MESSAGES:
            _LAYOUTS[row[0]] = Layout(row)
    return _LAYOUTS


# -- the board's compact table (protocol/layouts.py) -------------------------------------------
#
# The board's codec (protocol/codec.py) reads each message's layout from one bytes object,
# ROWS, at the offset AT[type]; names and struct formats are indexes into STRINGS. A row:
ROW_NAME = 0  # STRINGS index: the message's name (for BAD_LENGTH's reason)
ROW_KIND = 1  # STRINGS index: "req", "resp" or "event"
ROW_FMT = 2  # STRINGS index: struct format of the fixed fields
ROW_SIZE = 3  # their size, bytes
ROW_N_FIXED = 4  # how many there are
ROW_TAIL = 5  # TAIL_NONE, TAIL_STR or TAIL_LIST
ROW_TAIL_FIELD = 6  # STRINGS index: the string's or the list's name
ROW_TAIL_LOW = 7  # the fewest bytes (a string) or items (a list)
ROW_TAIL_HIGH = 8  # the most
ROW_ITEM_FMT = 9  # STRINGS index: struct format of a list item
ROW_ITEM_SIZE = 10  # its size, bytes
ROW_N_CHECKS = 11  # range checks of the fixed fields
ROW_N_ITEM_CHECKS = 12  # range checks of a list item's fields
ROW_CHECKS = 13  # then the checks: the fixed fields', then an item's, CHECK_SIZE bytes each:
CHECK_FORMAT = "<BBiI"  # field index, STRINGS index of its name, low, high
CHECK_SIZE = 10
# (the fields whose range is narrower than their integer kind's: only those can fail)
TAIL_NONE = 0
TAIL_STR = 1
TAIL_LIST = 2

# Integer kinds and the values they can hold at all: a range that spans them checks nothing.
_SPAN = {"B": (0, 0xFF), "H": (0, 0xFFFF), "I": (0, U32), "b": (-0x80, 0x7F),
         "h": (-0x8000, 0x7FFF), "i": (-0x80000000, 0x7FFFFFFF)}


def checks(fields):
    """The range checks of fixed fields, in field order: (index, low, high, name) for each
    field whose range is narrower than its kind's (only those can fail)."""
    out = []
    for i, f in enumerate(fields):
        if f[1] in ("str", "list") or f[2] is None:
            continue
        span = _SPAN.get(f[1])
        if span is None or f[2] > span[0] or f[3] < span[1]:
            out.append((i, f[2], f[3], f[0]))
    return out


def board_table():
    """(AT, STRINGS, ROWS), what protocol/layouts.py holds: {type: offset of its row},
    the names and formats the rows refer to, and the rows (laid out as above), in MESSAGES'
    order."""
    strings = []

    def ref(text):
        if text not in strings:
            strings.append(text)
        return strings.index(text)

    at = {}
    rows = b""
    for row in MESSAGES:
        lay = Layout(row)
        fixed = checks(lay.fields[: lay.n_fixed])
        tail = TAIL_NONE
        tail_field = low = high = item_fmt = item_size = 0
        items = []
        if lay.has_tail:
            f = lay.fields[-1]
            tail = TAIL_LIST if lay.has_list else TAIL_STR
            tail_field, low, high = ref(f[0]), f[2], f[3]
            if lay.has_list:
                item_fmt, item_size = ref(lay.item_fmt), lay.item_size
                items = checks(lay.item_fields)
        head = (ref(lay.name), ref(lay.kind), ref(lay.fmt), lay.fixed_size, lay.n_fixed, tail,
                tail_field, low, high, item_fmt, item_size, len(fixed), len(items))
        at[lay.type] = len(rows)
        rows += bytes(head)  # (each under 256: bytes() refuses any that is not)
        for i, lo, hi, name in fixed + items:
            rows += struct.pack(CHECK_FORMAT, i, ref(name), lo, hi)
    if len(strings) > 256:
        raise ValueError("more than 256 names and formats: a row's byte cannot index them")
    return at, tuple(strings), rows
