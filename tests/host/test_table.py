"""The message table is consistent, and everything named after it matches it."""

from __future__ import annotations

from host import errors
from protocol import codec
from protocol import messages as m


def test_named_constants_match_the_table() -> None:
    for type_id, name, *_ in m.MESSAGES:
        assert getattr(m, name) == type_id, name
    for code, name, _ in m.ERRORS:
        assert getattr(m, "ERR_" + name) == code, name
    for value, label in m.ENUMS["mode"]:
        assert getattr(m, "MODE_" + label.upper()) == value


def test_every_request_has_its_response() -> None:
    types = {row[0]: row for row in m.MESSAGES}
    for type_id, name, kind, *_ in m.MESSAGES:
        if kind == "req":
            assert type_id < 0x80, name
            assert types[type_id | 0x80][2] == "resp", name


def test_ids_and_codes_unique() -> None:
    assert len({row[0] for row in m.MESSAGES}) == len(m.MESSAGES)
    assert len({row[1] for row in m.MESSAGES}) == len(m.MESSAGES)
    assert len({e[0] for e in m.ERRORS}) == len(m.ERRORS)


def test_fields_well_formed() -> None:
    for _type, name, _kind, fields, doc in m.MESSAGES:
        assert doc, name
        for i, (fname, kind, lo, hi, enum, _unit) in enumerate(fields):
            if kind == "str":
                assert i == len(fields) - 1, f"{name}.{fname}: a string must be last"
            if enum:
                values = [v for v, _ in m.ENUMS[enum]]
                assert lo <= min(values) and max(values) <= hi, f"{name}.{fname}"


def test_frames_fit() -> None:
    assert m.MAX_PAYLOAD == m.MAX_FRAME - m.HEADER_SIZE - m.CRC_SIZE
    for layout in codec.LAYOUTS.values():
        longest = layout.fixed_size + (1 + layout.fields[-1][3] if layout.has_str else 0)
        assert longest <= m.MAX_PAYLOAD, layout.name


def test_one_exception_class_per_error_code() -> None:
    assert set(errors.BY_CODE) == {code for code, _, _ in m.ERRORS}
    for code, name, _ in m.ERRORS:
        exc = errors.from_code(code, "why")
        assert exc.name == name and exc.code == code and isinstance(exc, errors.ProtocolError)
    unknown = errors.from_code(200, "from a newer pump")
    assert unknown.code == 200 and "CODE_200" in str(unknown)
