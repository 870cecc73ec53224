"""A TOML document written from Python values, for the schedule-file tests: what a person (or
the fuzz) might write, including values tomllib reads back as Decimal (nan, inf, exponents)."""

from __future__ import annotations

from decimal import Decimal

from host import schedule as sched


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return sched._toml_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{sched._toml_string(k)} = {toml_value(x)}"
                               for k, x in v.items()) + "}"
    if isinstance(v, Decimal):
        if v.is_nan():
            return "nan"
        if v.is_infinite():
            return "-inf" if v < 0 else "inf"
        text = str(v)
        return text if any(c in text for c in ".eE") else text + ".0"
    return str(v)


def document(doc: dict, as_tables: bool) -> str:
    lines, tables = [], []
    for key, value in doc.items():
        if as_tables and isinstance(value, dict):
            tables.append(f"\n[{key}]\n" + "".join(
                f"{sched._toml_string(k)} = {toml_value(x)}\n" for k, x in value.items()))
        else:
            lines.append(f"{key} = {toml_value(value)}\n")
    return "".join(lines + tables)


def key_paths(value: object, path: tuple = ()) -> list[tuple]:
    """Every key and list item of a parsed document, as its path from the top."""
    out = [path] if path else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += key_paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += key_paths(v, path + (i,))
    return out
