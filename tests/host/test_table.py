"""The message table is consistent, and everything named after it matches it."""

from __future__ import annotations

import struct
from typing import Any

from host import errors
from protocol import codec
from protocol import messages as m

INT_KINDS = {
    "B": (0, 0xFF), "H": (0, 0xFFFF), "I": (0, 0xFFFFFFFF),
    "b": (-0x80, 0x7F), "h": (-0x8000, 0x7FFF), "i": (-0x80000000, 0x7FFFFFFF),
}
# The prefix of the named constants of each enum and flag set (ENUMS["mode"] -> MODE_STOPPED).
ENUM_PREFIXES = {"mode": "MODE_", "phase": "PHASE_", "origin": "ORIGIN_", "drug": "DRUG_",
                 "bolus": "BOLUS_", "event": "EV_", "alarm": "ALARM_", "rule": "RULE_",
                 "role": "ROLE_"}
FLAG_PREFIXES = {"confirm": "CONFIRM_", "sessions": "SESSION_"}
MESSAGES: list[Any] = list(m.MESSAGES)  # (rows of mixed shapes: typed loosely here)
# Labels whose constant is not PREFIX + LABEL, and labels with no constant (rule 0: none).
# (messages.py names mode 3 "minimum_rate" but its constant MODE_MINIMUM: reported.)
CONSTANT_ALIASES = {("mode", "minimum_rate"): "MODE_MINIMUM"}
NO_CONSTANT = {("rule", "none")}


def walk(fields: tuple, where: str = ""):
    """(where, field, is a list item) for every field, the items of lists too."""
    for f in fields:
        yield where + f[0], f, bool(where)
        if f[1] == "list":
            yield from walk(f[4], where + f[0] + "[].")


def flag_bits(flags: str) -> int:
    out = 0
    for bit, _label in m.FLAGS[flags]:
        out |= bit
    return out


def is_flags(f: tuple) -> bool:
    return isinstance(f[4], str) and f[4] in m.FLAGS


def test_request_and_event_constants_match_the_table() -> None:
    for type_id, name, kind, *_ in MESSAGES:
        if kind in ("req", "event"):
            assert getattr(m, name, None) == type_id, name


def test_message_constants_that_exist_match_the_table() -> None:
    for type_id, name, *_ in MESSAGES:
        if hasattr(m, name):
            assert getattr(m, name) == type_id, name
    for name in ("INFO", "STATUS", "ERROR"):  # named by the firmware and the host
        assert getattr(m, name) == next(r[0] for r in MESSAGES if r[1] == name)


def test_every_message_has_its_constant() -> None:
    wrong = [name for type_id, name, *_ in MESSAGES if getattr(m, name, None) != type_id]
    assert not wrong, wrong


def test_error_enum_and_flag_constants_match_the_table() -> None:
    for code, name, _ in m.ERRORS:
        assert getattr(m, "ERR_" + name) == code, name
    for enum, prefix in ENUM_PREFIXES.items():
        for value, label in m.ENUMS[enum]:
            if (enum, label) in NO_CONSTANT:
                continue
            const = CONSTANT_ALIASES.get((enum, label)) or prefix + label.upper()
            assert getattr(m, const, None) == value, f"{enum} {label}: {const}"
    for flags, prefix in FLAG_PREFIXES.items():
        for bit, label in m.FLAGS[flags]:
            assert getattr(m, prefix + label.upper(), None) == bit, f"{flags} {label}"
    assert m.ROLE_NAMES[1:] == tuple(label for _, label in m.ENUMS["role"])


def test_rules_and_alarms_well_formed() -> None:
    assert [r[0] for r in m.RULES] == list(range(1, len(m.RULES) + 1)), "rule ids 1, 2, ..."
    assert len({r[1] for r in m.RULES}) == len(m.RULES)
    for rule in m.RULES:
        assert len(rule) == 4 and isinstance(rule[2], str) and rule[3], rule
    assert m.ENUMS["rule"] == ((0, "none"),) + tuple((r[0], r[1]) for r in m.RULES)
    assert [a[0] for a in m.ALARMS] == list(range(1, len(m.ALARMS) + 1)), "alarm ids 1, 2, ..."
    assert len({a[1] for a in m.ALARMS}) == len(m.ALARMS)
    for alarm in m.ALARMS:
        assert alarm[2] in (0, 1, 2), alarm
    assert m.ENUMS["alarm"] == tuple((a[0], a[1]) for a in m.ALARMS)
    # Active alarms are bit (id - 1) of a u16 (STATUS, TELEMETRY, ALARM, ALARM_ACKED, ...).
    assert len(m.ALARMS) <= 16
    for row in MESSAGES:
        for where, f, _item in walk(row[3]):
            if f[0] in ("alarms", "unacknowledged"):
                assert f[1] == "H", f"{row[1]}.{where}"


def test_every_request_has_its_response() -> None:
    types = {row[0]: row for row in MESSAGES}
    for type_id, name, kind, *_ in MESSAGES:
        if kind == "req":
            assert type_id < 0x80, name
            assert types[type_id | 0x80][2] == "resp", name
        if kind == "event":
            assert type_id >= 0xC0, name


def test_every_request_has_its_access() -> None:
    requests = {row[0] for row in MESSAGES if row[2] == "req"}
    assert set(m.ACCESS) == requests, set(m.ACCESS) ^ requests
    for type_id, need in m.ACCESS.items():
        assert need == m.OPEN or need & ~m.ANY_ROLE == 0, hex(type_id)
    assert set(m.READ_ONLY) <= requests and set(m.ANSWERED_AFRESH) <= requests


def test_ids_and_codes_unique() -> None:
    assert len({row[0] for row in MESSAGES}) == len(m.MESSAGES)
    assert len({row[1] for row in MESSAGES}) == len(m.MESSAGES)
    assert len({e[0] for e in m.ERRORS}) == len(m.ERRORS)
    for name, pairs in m.ENUMS.items():
        assert len({v for v, _ in pairs}) == len({label for _, label in pairs}) == len(pairs), name


def test_fields_well_formed() -> None:
    for _type, name, _kind, fields, doc in MESSAGES:
        assert doc, name
        assert len({f[0] for f in fields}) == len(fields), f"{name}: field names unique"
        for i, f in enumerate(fields):
            fname, kind, lo, hi, enum, _unit = f
            what = f"{name}.{fname}"
            if kind in ("str", "list"):
                assert i == len(fields) - 1, f"{what}: a {kind} must be last"
                assert 0 <= lo <= hi <= 0xFF, f"{what}: a u8 count or length"
            if kind == "list":
                items = enum
                assert items and isinstance(items, tuple), f"{what}: item fields"
                assert len({g[0] for g in items}) == len(items), f"{what}: item names unique"
                for g in items:  # items are fixed size: integers only (codec.Layout)
                    assert g[1] in INT_KINDS, f"{what}.{g[0]}: kind {g[1]} in a list item"
        for where, (_n, kind, lo, hi, enum, unit), _item in walk(fields):
            what = f"{name}.{where}"
            assert isinstance(unit, str), what
            if kind in INT_KINDS:
                kmin, kmax = INT_KINDS[kind]
                assert kmin <= lo <= hi <= kmax, f"{what}: {lo}..{hi} for {kind}"
                assert enum is None or enum in m.ENUMS or enum in m.FLAGS, f"{what}: {enum}"
            elif kind.endswith("s") and kind != "str":
                assert int(kind[:-1]) > 0 and lo is None and hi is None, what
                assert enum is None, what
            else:
                assert kind in ("str", "list"), f"{what}: unknown kind {kind}"
    assert not set(m.ENUMS) & set(m.FLAGS), "an enum and a flag set of the same name"


def test_enum_fields_label_every_value_in_range() -> None:
    # The host gives an enum field as its label: every value the codec lets through has one.
    # And a field naming an enum reaches its last value (an event, rule or alarm added to the
    # table must be accepted by the fields that carry it).
    for row in MESSAGES:
        for where, f, _item in walk(row[3]):
            if not isinstance(f[4], str) or f[4] not in m.ENUMS:
                continue
            values = {v for v, _ in m.ENUMS[f[4]]}
            unlabelled = set(range(f[2], f[3] + 1)) - values
            assert not unlabelled, f"{row[1]}.{where}: {sorted(unlabelled)} have no label"
            assert f[3] == max(values), f"{row[1]}.{where}: up to {f[3]}, {f[4]} to {max(values)}"


def test_flag_fields_range_is_their_bits() -> None:
    # The codec checks a flag set by its range: that refuses exactly the unknown bits only if
    # the range is 0 to all the bits, and the bits are the lowest ones (no gap).
    for name, pairs in m.FLAGS.items():
        bits = [bit for bit, _ in pairs]
        assert all(b and b & (b - 1) == 0 for b in bits), f"{name}: single bits"
        assert len(set(bits)) == len(bits), f"{name}: distinct bits"
        assert flag_bits(name) == (1 << len(bits)) - 1, f"{name}: the lowest bits, no gap"
    seen = set()
    for row in MESSAGES:
        for where, f, _item in walk(row[3]):
            if is_flags(f):
                seen.add(f[4])
                assert f[1] in INT_KINDS and INT_KINDS[f[1]][0] == 0, f"{row[1]}.{where}"
                assert (f[2], f[3]) == (0, flag_bits(f[4])), f"{row[1]}.{where}: {f[2]}..{f[3]}"
    assert seen == set(m.FLAGS), f"flag sets no field uses: {set(m.FLAGS) - seen}"


def test_frames_fit() -> None:
    assert m.MAX_PAYLOAD == m.MAX_FRAME - m.HEADER_SIZE - m.CRC_SIZE
    for layout in codec.LAYOUTS.values():
        longest = layout.fixed_size
        if layout.has_str:
            longest += 1 + layout.fields[-1][3]
        if layout.has_list:
            longest += 1 + layout.fields[-1][3] * layout.item_size
        if layout.kind == "req":
            longest += m.AUTH_SIZE  # requests may be signed
        assert longest <= m.MAX_PAYLOAD, f"{layout.name}: {longest} bytes"


def test_codec_layouts_follow_the_table() -> None:
    for row in MESSAGES:
        layout = codec.LAYOUTS[row[0]]
        fixed = [f for f in row[3] if f[1] not in ("str", "list")]
        assert layout.fixed_size == struct.calcsize("<" + "".join(f[1] for f in fixed))
        if row[3] and row[3][-1][1] == "list":
            items = row[3][-1][4]
            assert layout.has_list and layout.item_fields == items, row[1]
            assert layout.item_size == struct.calcsize("<" + "".join(g[1] for g in items))


def test_one_exception_class_per_error_code() -> None:
    assert set(errors.BY_CODE) == {code for code, _, _ in m.ERRORS}
    for code, name, _ in m.ERRORS:
        exc = errors.from_code(code, "why")
        assert exc.name == name and exc.code == code and isinstance(exc, errors.ProtocolError)
    unknown = errors.from_code(200, "from a newer pump")
    assert unknown.code == 200 and "CODE_200" in str(unknown)
