"""Unit conversions between what people type (mcg, uL) and what the pump counts (ng, nL).
Decimal, never float: a dose a person typed must reach the pump exactly."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation


def mcg_to_ng(value: Decimal | int | str) -> int:
    try:
        ng = Decimal(str(value)) * 1000
    except InvalidOperation as e:
        raise ValueError(f"not a number: {value!r}") from e
    if ng != ng.to_integral_value():
        raise ValueError(f"{value} mcg is finer than the pump's 0.001 mcg resolution")
    return int(ng)


def ng_to_mcg(ng: int) -> Decimal:
    return Decimal(ng) / 1000


def nl_to_ul(nl: int) -> Decimal:
    return Decimal(nl) / 1000
