"""Unit conversions between what people type (mcg, mL, uL) and what the pump counts (ng, nL).
Decimal, never float: a dose or a volume a person typed must reach the pump exactly."""

from __future__ import annotations

from decimal import Context, Decimal, InvalidOperation

Number = Decimal | int | str

# Exact for every number that passes the size check below: the default context would round
# past 28 digits (accepting 400.0000000000000000000000000000001 as 400) or overflow.
_EXACT = Context(prec=100)
_LARGEST_DIGITS = 30  # far above anything the pump holds (its counters are 32 bits)


def _scaled(value: Number, factor: int, unit: str, resolution: str) -> int:
    """value x factor as an int, refusing what is not a number, too large, or finer than 1 unit."""
    if isinstance(value, float):
        raise ValueError(f"{value!r}: give a Decimal, an int or a string, not a float")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation as e:
        raise ValueError(f"not a number: {_short(value)}") from e
    if not number.is_finite():
        raise ValueError(f"not a number: {_short(value)}")
    if number and number.adjusted() >= _LARGEST_DIGITS:
        raise ValueError(f"{_short(value)} {unit} is too large")
    if number and number.adjusted() < -_LARGEST_DIGITS:
        raise ValueError(f"{_short(value)} {unit} is finer than the pump's {resolution} resolution")
    scaled = _EXACT.multiply(number, Decimal(factor))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{_short(value)} {unit} is finer than the pump's {resolution} resolution")
    return int(scaled)


def _short(value: Number) -> str:
    """What the user typed, cut short: a number of 5,000 digits is not repeated back whole."""
    text = str(value)
    return text if len(text) <= 40 else f"{text[:20]}...{text[-10:]} ({len(text)} characters)"


def mcg_to_ng(value: Number) -> int:
    return _scaled(value, 1000, "mcg", "0.001 mcg")


def ml_to_nl(value: Number) -> int:
    return _scaled(value, 1_000_000, "mL", "0.000001 mL (1 nL)")


def ul_to_nl(value: Number) -> int:
    return _scaled(value, 1000, "uL", "0.001 uL (1 nL)")


def ng_to_mcg(ng: int) -> Decimal:
    return Decimal(ng) / 1000


def nl_to_ul(nl: int) -> Decimal:
    return Decimal(nl) / 1000


def nl_to_ml(nl: int) -> Decimal:
    return Decimal(nl) / 1_000_000


def fmt(value: Decimal | int, places: int = 3) -> str:
    """A number for people: at most `places` decimals, no trailing zeros."""
    text = f"{Decimal(value):.{places}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def duration(seconds: int) -> str:
    """A wait or a span for people: '23 h 59 min', '45 s', '3 d 2 h'."""
    if seconds < 60:
        return f"{seconds} s"
    d, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    mnt, sec = divmod(rest, 60)
    parts = []
    if d:
        parts.append(f"{d} d")
    if h:
        parts.append(f"{h} h")
    if mnt and not d:
        parts.append(f"{mnt} min")
    if sec and not d and not h:
        parts.append(f"{sec} s")
    return " ".join(parts) or "0 s"
