"""protocol/README.md is generated from the message table and must not go stale; it documents
every message, list field (its count and an item table with offsets within the item), flag set
(each bit), clinical rule and alarm of the table."""

import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from firmware.core import guard
from protocol import messages as m

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "protocol" / "README.md").read_text()
MESSAGES: list[Any] = list(m.MESSAGES)  # (rows of mixed shapes: typed loosely here)
LEVELS = {2: "critical (two-tone)", 1: "non-critical (one tone)", 0: "notice (no tone)"}


def section(heading: str) -> str:
    """The text under a heading line, up to the next heading of the same or a higher level."""
    level = heading.split(" ")[0]
    lines = TEXT.splitlines()
    start = lines.index(heading)
    out = []
    for line in lines[start + 1:]:
        mark = line.split(" ")[0]
        if mark.startswith("#") and set(mark) == {"#"} and len(mark) <= len(level):
            break
        out.append(line)
    return "\n".join(out)


def message_section(mtype: int, name: str, kind: str) -> str:
    label = {"req": "request", "resp": "response", "event": "event"}[kind]
    return section(f"### 0x{mtype:02X} {name} ({label})")


def table_rows(text: str) -> list[list[str]]:
    """The cells of each table row (not the header's separator) in text."""
    rows = []
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def size(fields: tuple) -> int:
    return struct.calcsize("<" + "".join(f[1] for f in fields))


def test_protocol_readme_is_up_to_date() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "protocol_docs.py"), "--check"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_message_is_documented() -> None:
    for mtype, name, *_ in MESSAGES:
        assert f"### 0x{mtype:02X} {name} " in TEXT


def test_fields_in_order_with_offsets() -> None:
    for mtype, name, kind, fields, _doc in MESSAGES:
        rows = table_rows(message_section(mtype, name, kind))
        if not fields:
            assert not rows, name
            continue
        payload = rows[1 : 1 + len(fields)]  # after the header row
        assert [r[1] for r in payload] == [f[0] for f in fields], name
        offset = 0
        for r, f in zip(payload, fields, strict=True):
            assert int(r[0]) == offset, f"{name}.{f[0]}: offset {r[0]}, want {offset}"
            if f[1] not in ("str", "list"):
                offset += size((f,))


def test_list_fields_have_an_item_table() -> None:
    lists = 0
    for mtype, name, kind, fields, _doc in MESSAGES:
        if not fields or fields[-1][1] != "list":
            continue
        lists += 1
        f = fields[-1]
        text = message_section(mtype, name, kind)
        fixed = size(tuple(g for g in fields if g[1] != "list"))
        item = size(f[4])
        row = next(r for r in table_rows(text) if r[1] == f[0])
        assert row[0] == str(fixed) and row[2] == "list", f"{name}.{f[0]}: {row}"
        assert f"{f[2]} to {f[3]} items" in row[4], f"{name}.{f[0]}: count bounds in {row}"
        assert f"Each item of `{f[0]}` ({item} bytes; item k at offset {fixed + 1} + {item}·k, " \
               f"after the count byte at offset {fixed})" in text, name
        after = text.split(f"Each item of `{f[0]}`")[1]
        items = [r for r in table_rows(after) if r[0] != "offset"]
        assert [r[1] for r in items] == [g[0] for g in f[4]], f"{name}.{f[0]} item fields"
        offset = 0
        for r, g in zip(items, f[4], strict=True):  # offsets within the item, from 0
            assert int(r[0]) == offset, f"{name}.{f[0]}[].{g[0]}: offset {r[0]}"
            offset += size((g,))
        assert f"Payload: {fixed + 1 + f[2] * item} to {fixed + 1 + f[3] * item} bytes" in text
    assert lists >= 4


def test_flag_fields_show_each_bit() -> None:
    flag_fields = 0
    for mtype, name, kind, fields, _doc in MESSAGES:
        for f in fields:
            if not isinstance(f[4], str) or f[4] not in m.FLAGS:
                continue
            flag_fields += 1
            row = next(r for r in table_rows(message_section(mtype, name, kind)) if r[1] == f[0])
            assert "bit set" in row[2], f"{name}.{f[0]}: {row}"
            for bit, label in m.FLAGS[f[4]]:
                assert f"0x{bit:02x} {label}" in row[4], f"{name}.{f[0]}: bit {label}"
    assert flag_fields >= 2
    bit_sets = section("## Bit sets")
    for name, pairs in m.FLAGS.items():
        rows = table_rows(section(f"### {name}"))
        assert rows[1:] == [[f"0x{bit:02x}", label] for bit, label in pairs], name
        assert f"### {name}" in bit_sets


def test_enumerations_listed() -> None:
    text = section("## Enumerations")
    for name, pairs in m.ENUMS.items():
        if name in ("rule", "alarm"):  # sections of their own
            continue
        rows = table_rows(section(f"### {name}"))
        assert rows[1:] == [[str(value), label] for value, label in pairs], name
        assert f"### {name}" in text


def test_rules_documented() -> None:
    rows = table_rows(section("## Clinical rules"))
    assert rows[0] == ["id", "rule", "unit", "label section"]
    assert rows[1:] == [[str(r), name, unit, sec] for r, name, unit, sec in m.RULES]


def test_alarms_documented() -> None:
    rows = table_rows(section("## Alarms"))
    assert rows[0][:3] == ["id", "alarm", "level"]
    assert len(rows) == 1 + len(m.ALARMS)
    for row, (alarm, name, level) in zip(rows[1:], m.ALARMS, strict=True):
        assert row[:2] == [str(alarm), name]
        assert row[2] == f"{level} {LEVELS[level]}", row
        assert int(row[3], 16) == 1 << (alarm - 1), row


def test_authentication_limits_documented() -> None:
    # The lockout after bad tags and the CHALLENGE bucket, with firmware/core/guard.py's
    # numbers (the document renders them from there).
    text = " ".join(section("## Authentication").split())
    assert f"{guard.FAIL_LIMIT} bad tags within {guard.FAIL_WINDOW_S} s" in text
    assert f"for {guard.LOCK_S} s, doubling" in text
    assert f"up to {guard.LOCK_MAX_S // 60} min" in text
    assert f"LOCKED ({m.ERR_LOCKED}) with wait_s" in text
    assert f"BUSY ({m.ERR_BUSY}) with wait_s" in text
    assert f"bucket of {guard.CHALLENGE_BURST} sessions" in text
    assert f"refilled one per {guard.CHALLENGE_S} s" in text
    assert "logged once" in text and "`lockout` event" in text
