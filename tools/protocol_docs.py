#!/usr/bin/env python3
"""Write protocol/README.md from the message table (protocol/spec.py, with the constants of
protocol/messages.py; m.MESSAGES and the like reach spec.py through messages.py).

    .venv/bin/python tools/protocol_docs.py           # (re)write it
    .venv/bin/python tools/protocol_docs.py --check   # exit 1 if it is stale

tests/host/test_protocol_docs.py runs the check, so the document cannot drift from the table.
Everything below is rendered from the table: frames, errors, field kinds, bit sets (FLAGS),
enumerations (ENUMS), the clinical rules (RULES), the alarms (ALARMS), and each message's
payload, with a sub-table for the items of a list field (offsets within the item). The
authentication section's limits (lockout after bad tags, the CHALLENGE bucket) are read from
firmware/core/guard.py, which enforces them.
"""

from __future__ import annotations

import struct
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from firmware.core import guard  # noqa: E402  (its limits, for the authentication section)
from protocol import messages as m  # noqa: E402

OUT = ROOT / "protocol" / "README.md"
KIND_NAMES = {"B": "u8", "H": "u16", "I": "u32", "b": "i8", "h": "i16", "i": "i32"}
ROLE_BITS = ((m.PATIENT, "patient"), (m.CLINICIAN, "clinician"), (m.SERVICE, "service"))
LEVELS = {2: "2 critical (two-tone)", 1: "1 non-critical (one tone)", 0: "0 notice (no tone)"}
# Enums with a section of their own (more than an id and a name), and the most values an
# enum field lists in its range column before it refers to the Enumerations section instead.
OWN_SECTION = {"rule": "Clinical rules", "alarm": "Alarms"}
INLINE_MAX = 6


def fixed_size(fields: tuple) -> int:
    """Bytes of the fields before a closing str or list (all of them when there is none)."""
    return struct.calcsize("<" + "".join(f[1] for f in fields if f[1] not in ("str", "list")))


def is_flags(f: tuple) -> bool:
    return isinstance(f[4], str) and f[4] in m.FLAGS


def kind_text(f: tuple) -> tuple[str, str]:
    """(type name, size) of a field."""
    kind = f[1]
    if kind == "str":
        return "text", "1 + n"
    if kind == "list":
        return "list", f"1 + n × {fixed_size(f[4])}"
    if kind.endswith("s"):
        return "bytes", kind[:-1]
    name = KIND_NAMES[kind]
    if is_flags(f):
        name += " bit set"
    return name, str(struct.calcsize("<" + kind))


def range_text(f: tuple) -> str:
    name, kind, lo, hi, enum, _unit = f
    if kind == "list":
        return f"n: {lo} to {hi} items (u8 count), then the items below"
    if kind == "str":
        return f"at most {hi} bytes, UTF-8"
    if is_flags(f):
        bits = ", ".join(f"0x{bit:02x} {label}" for bit, label in m.FLAGS[enum])
        return f"{enum}: {bits}; other bits refused"
    if enum:
        values = [(v, label) for v, label in m.ENUMS[enum] if lo <= v <= hi]
        if enum in OWN_SECTION:
            return f"{lo} to {hi}: {enum}, see {OWN_SECTION[enum]}"
        if len(values) > INLINE_MAX:
            return f"{lo} to {hi}: {enum}, see Enumerations"
        return ", ".join(f"{v} {label}" for v, label in values)
    if lo is None:
        return ""
    return f"{lo} to {hi}"


def field_rows(fields: tuple) -> list[str]:
    """A payload table (or a list item's): offset, field, type, size, range, unit."""
    out = ["| offset | field | type | size | range | unit |", "|---|---|---|---|---|---|"]
    offset = 0
    for f in fields:
        tname, size = kind_text(f)
        out.append(f"| {offset} | {f[0]} | {tname} | {size} | {range_text(f)} | {f[5]} |")
        if size.isdigit():
            offset += int(size)
    return out


def payload_text(fields: tuple) -> str:
    """The payload's size in bytes, or its range when it ends in a str or a list."""
    size = fixed_size(fields)
    last = fields[-1]
    if last[1] == "str":
        return f"Payload: {size + 1} to {size + 1 + last[3]} bytes."
    if last[1] == "list":
        item = fixed_size(last[4])
        return (f"Payload: {size + 1 + last[2] * item} to {size + 1 + last[3] * item} bytes "
                f"({last[2]} to {last[3]} items of {item} bytes).")
    return f"Payload: {size} bytes."


def list_rows(fields: tuple) -> list[str]:
    """The item table of a closing list field, if the payload has one."""
    f = fields[-1]
    if f[1] != "list":
        return []
    start = fixed_size(fields)
    item = fixed_size(f[4])
    return [
        "",
        f"Each item of `{f[0]}` ({item} bytes; item k at offset {start + 1} + {item}·k, "
        f"after the count byte at offset {start}); offsets within the item:",
        "",
        *field_rows(f[4]),
    ]


def kinds_section() -> list[str]:
    flags = ", ".join(m.FLAGS)
    return [
        "## Field kinds",
        "",
        "- Integers: u8, u16, u32 (unsigned), i8, i16, i32 (two's complement), little-endian;",
        "  a value outside the range listed is refused (OUT_OF_RANGE).",
        "- bytes: a fixed number of bytes.",
        "- text: a u8 length n, then n bytes of UTF-8 (the last field only).",
        "- list: a u8 count n, then n items, each laid out by the item table under the",
        "  message (the last field only). A count outside its bounds is refused",
        "  (OUT_OF_RANGE); a payload whose length is not that of n items is refused",
        "  (BAD_LENGTH, checked first); so is an item with a field out of its range",
        "  (OUT_OF_RANGE).",
        f"- bit set ({flags}): an integer whose bits are the flags named under Bit sets;",
        "  a bit not named there is refused (OUT_OF_RANGE).",
        "",
    ]


def flags_section() -> list[str]:
    out = ["## Bit sets", ""]
    for name, pairs in m.FLAGS.items():
        out += [f"### {name}", "", "| bit | flag |", "|---|---|"]
        out += [f"| 0x{bit:02x} | {label} |" for bit, label in pairs]
        out.append("")
    return out


def enums_section() -> list[str]:
    own = "; ".join(f"{name}: see {section}" for name, section in OWN_SECTION.items())
    out = ["## Enumerations", "", f"The values of the fields that name an enumeration ({own}).",
           ""]
    for name, pairs in m.ENUMS.items():
        if name in OWN_SECTION:
            continue
        out += [f"### {name}", "", "| value | name |", "|---|---|"]
        out += [f"| {value} | {label} |" for value, label in pairs]
        out.append("")
    return out


def rules_section() -> list[str]:
    out = [
        "## Clinical rules",
        "",
        "A refusal by a clinical limit (ERROR with LIMIT or TOO_SOON, and the log's refused",
        "events) names the rule (0: none), the value requested and the value allowed, in the",
        "rule's unit. The section is the drug label's, or where else the limit comes from.",
        "",
        "| id | rule | unit | label section |",
        "|---|---|---|---|",
    ]
    out += [f"| {rule} | {name} | {unit} | {section} |" for rule, name, unit, section in m.RULES]
    return out + [""]


def alarms_section() -> list[str]:
    out = [
        "## Alarms",
        "",
        "Active alarms are a bit set in STATUS, TELEMETRY and the ALARM event: bit (id - 1).",
        "Levels: 2 critical (two-tone), 1 non-critical (one tone), 0 notice (no tone: for the",
        "clinician, not the patient).",
        "",
        "| id | alarm | level | bit |",
        "|---|---|---|---|",
    ]
    out += [f"| {alarm} | {name} | {LEVELS[level]} | 0x{1 << (alarm - 1):04x} |"
            for alarm, name, level in m.ALARMS]
    return out + [""]


def duration(s: int) -> str:
    """Seconds as people say them: 60 s, 15 min, 1 day."""
    if s % 86_400 == 0:
        return f"{s // 86_400} day" + ("s" if s // 86_400 > 1 else "")
    if s % 60 == 0 and s >= 600:
        return f"{s // 60} min"
    return f"{s} s"


def limits_text() -> str:
    """The guard's limits on guessing and on session churn (firmware/core/guard.py), as a
    paragraph wrapped as the rest of the section."""
    g = guard
    text = (
        f"Limits (firmware/core/guard.py). A tag that does not match counts against the role "
        f"the frame claims: {g.FAIL_LIMIT} bad tags within {duration(g.FAIL_WINDOW_S)} lock "
        f"that role out for {duration(g.LOCK_S)}, doubling with each lockout in a row up to "
        f"{duration(g.LOCK_MAX_S)} (a role with no bad tag for {duration(g.FORGET_S)} starts "
        f"at {duration(g.LOCK_S)} again). While it lasts, every signed frame claiming that role "
        f"is refused LOCKED ({m.ERR_LOCKED}) with wait_s, the seconds left, before any HMAC is "
        "worked out; other roles, open requests and therapy carry on. Each lockout is logged "
        "once, as a `lockout` event (a: the role, b: its seconds, c: the lockouts of that role "
        "in a row), not each refused frame (COUNTERS counts those). CHALLENGE is rate-limited: "
        f"a bucket of {g.CHALLENGE_BURST} sessions opened and not yet used, refilled one per "
        f"{duration(g.CHALLENGE_S)} (a session gives its token back when its role first uses "
        f"it); past it CHALLENGE is refused BUSY ({m.ERR_BUSY}) with wait_s until the next, "
        f"and the throttle is logged once, as a `lockout` event with a = {g.THROTTLED}. BUSY "
        "also answers a CHALLENGE when every session slot holds the latest session of a role "
        f"used within {duration(g.IDLE_S)}, wait_s until the least recently used one is that "
        "idle."
    )
    return textwrap.fill(text, width=88)


def access_text(mtype: int) -> str:
    need = m.ACCESS.get(mtype, m.ANY_ROLE)
    if need == m.OPEN:
        return "open (no authentication)"
    return ", ".join(label for bit, label in ROLE_BITS if need & bit)


def render() -> str:
    reads = ", ".join(next(r[1] for r in m.MESSAGES if r[0] == t) for t in m.ANSWERED_AFRESH)
    head = f"""\
# The intrapump wire protocol, version {m.VERSION}

Generated by `tools/protocol_docs.py` from `protocol/spec.py`, the single source
of truth (with the constants in `protocol/messages.py`); `make test` fails when this
file is stale. Integers are little-endian.

## Frames

A byte stream (USB CDC, UART, a pty, TCP) carries frames, each COBS-encoded and
ended by a 0x00 byte. Garbage between frames is skipped: the reader resynchronises
on the next 0x00. A decoded frame is at most {m.MAX_FRAME} bytes:

| offset | size | field |
|---|---|---|
| 0 | 1 | version ({m.VERSION}) |
| 1 | 1 | message type |
| 2 | 1 | flags: 0x{m.FLAG_AUTH:02x} = authentication trailer present; other bits refused |
| 3 | 2 | sequence number (u16; hosts use 1 to 65535; the pump uses 0 for unsolicited \
frames and for frames it could not attribute) |
| 5 | n | payload (below) |
| 5+n | {m.AUTH_SIZE} | authentication trailer, if flagged: session u8, role u8, \
counter u32, tag ({m.TAG_SIZE} bytes) |
| end-4 | 4 | CRC-32 (binascii.crc32) of everything before it |

A request of type T is answered by type T | 0x80 with the same sequence number, or
by ERROR. A command (anything not read-only) repeated with the same sequence number
and CRC as the last one is answered from a cache, not run again: a host retries a
lost exchange safely, per session. These always run afresh: {reads}. Events (types 0xC0 and up)
come unasked, with sequence number 0.

## Authentication

CHALLENGE opens a session: the pump answers with a slot (0 to {m.SESSIONS - 1}: a free
one, else the least recently used session never used, else one gone stale, never the
latest session of a role in use) and a {m.NONCE_SIZE}-byte random nonce. Requests
that need a role carry the trailer; `tag` is the first {m.TAG_SIZE} bytes of
HMAC-SHA256(key of role, nonce || header || payload || session || role || counter).
The counter must rise with every request of a session. Role keys are {m.KEY_SIZE} bytes,
provisioned onto the board as keys.json (see the project README). Checks, in order: the
frame (codec), the session, the key, the tag, the role, then (after the retry cache) the
counter. Refusals by the guard are logged, with the role only when the tag proved it.

{limits_text()}

## Errors

| code | name | meaning |
|---|---|---|
"""
    out = head.splitlines()
    out += [f"| {code} | {name} | {text} |" for code, name, text in m.ERRORS]
    out.append("")
    out += kinds_section()
    out += flags_section()
    out += enums_section()
    out += rules_section()
    out += alarms_section()
    out += ["## Messages", ""]
    for mtype, name, kind, fields, doc in m.MESSAGES:
        label = {"req": "request", "resp": "response", "event": "event"}[kind]
        out.append(f"### 0x{mtype:02X} {name} ({label})")
        out.append("")
        out.append(doc)
        if kind == "req":
            out.append("")
            out.append(f"Who may send it: {access_text(mtype)}.")
        out.append("")
        if not fields:
            out.append("No payload.")
            out.append("")
            continue
        out.append(payload_text(fields))
        out.append("")
        out += field_rows(fields)
        out += list_rows(fields)
        out.append("")
    return "\n".join(out)


def main() -> int:
    from generated import write_or_check  # tools/ (this script's folder)

    return write_or_check(OUT, render(), "tools/protocol_docs.py")


if __name__ == "__main__":
    sys.exit(main())
