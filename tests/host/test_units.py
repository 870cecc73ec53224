"""host.units: what people type becomes the pump's integers exactly, or a short ValueError."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from host.units import mcg_to_ng, ml_to_nl, ul_to_nl


@given(st.integers(0, 10**12))
def test_every_thousandth_of_a_mcg_is_exact(ng: int) -> None:
    whole, frac = divmod(ng, 1000)
    assert mcg_to_ng(f"{whole}.{frac:03d}") == ng
    assert mcg_to_ng(Decimal(ng) / 1000) == ng


def test_units() -> None:
    assert mcg_to_ng(400) == 400_000
    assert ml_to_nl("0.048") == 48_000
    assert ul_to_nl(" 250 ") == 250_000


def test_digits_past_the_default_precision_are_not_rounded_away() -> None:
    with pytest.raises(ValueError, match="finer than the pump's 0.001 mcg resolution"):
        mcg_to_ng("400.0000000000000000000000000000001")
    assert mcg_to_ng("400.000000000000000000000000000000000") == 400_000


@pytest.mark.parametrize("text", ["1e999999999", "1E+30", "9" * 5000])
def test_a_huge_number_is_too_large_in_a_short_message(text: str) -> None:
    with pytest.raises(ValueError, match="too large") as e:
        mcg_to_ng(text)
    assert len(str(e.value)) < 100


@pytest.mark.parametrize("text", ["1e-999999999", "0.0005"])
def test_a_tiny_number_is_finer_than_the_resolution(text: str) -> None:
    with pytest.raises(ValueError, match="finer than"):
        mcg_to_ng(text)


def test_zero_with_any_exponent_is_zero() -> None:
    assert mcg_to_ng("0e-999999999") == 0
    assert mcg_to_ng("0E+999999") == 0


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity", "four", ""])
def test_not_a_number(value: str) -> None:
    with pytest.raises(ValueError, match="not a number"):
        mcg_to_ng(value)


def test_a_float_is_refused() -> None:
    with pytest.raises(ValueError, match="not a float"):
        mcg_to_ng(0.1)  # type: ignore[arg-type]
