"""hil/accuracy.py: the IEC 60601-2-24 style figures (start-up, A, trumpet), exactly."""

from __future__ import annotations

import csv
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil import accuracy
from hil.accuracy import AccuracyError, analyse

S = accuracy.INTERVAL_MS
N = accuracy.PERIOD_MS // S  # 240 sample intervals, 241 samples
A0 = accuracy.ANALYSIS_START_MS // S  # 120: the analysis period is intervals 120..239
T_START = 5_000_000  # the rig's clock when the program started: any origin will do


def series(volumes: list[int], t0: int = T_START) -> list[tuple[int, int]]:
    return [(t0 + k * S, v) for k, v in enumerate(volumes)]


def steady(per_interval: int) -> list[tuple[int, int]]:
    return series([per_interval * k for k in range(N + 1)])


# 2.88 mL/day is exactly 1000 nL in each 30 s interval.
R_1000 = 2_880_000


def test_steady_delivery_has_no_error() -> None:
    acc = analyse(steady(1000), R_1000)
    assert acc.mean_error_pct == 0
    assert [w.minutes for w in acc.windows] == [2, 5, 11, 19, 31]
    for w in acc.windows:
        assert (w.max_pct, w.min_pct, w.max_deviation_pct) == (0, 0, 0)
        assert w.samples == 2 * w.minutes and w.count == 120 - w.samples + 1
    assert set(acc.flows_nl_day) == {R_1000}
    assert all(acc.ideal_nl(k) == acc.delivered_nl[k] for k in range(N + 1))


def test_two_percent_too_much_is_plus_two_everywhere() -> None:
    acc = analyse(steady(1020), R_1000)
    assert acc.mean_error_pct == 2
    assert all(w.max_pct == w.min_pct == 2 for w in acc.windows)
    assert set(acc.interval_errors_pct) == {2}


def test_a_step_every_three_intervals_gives_the_hand_computed_trumpet() -> None:
    # r S = 250/3 nL (0.24 mL/day = 10 uL/h); one 250 nL step at every third sample. A window
    # of m = 3q + s intervals holds q or q + 1 steps: E = 100 (3q/m - 1) or 100 (3(q+1)/m - 1).
    acc = analyse(series([250 * (k // 3) for k in range(N + 1)]), 240_000)
    assert acc.mean_error_pct == 0  # 40 steps in the second hour, as set
    expected = {
        2: (Fraction(50), Fraction(-25)),  # m = 4: 2 steps (500 nL) or 1 in 333.3 nL
        5: (Fraction(20), Fraction(-10)),  # m = 10: 4 or 3 steps in 833.3 nL
        11: (Fraction(100, 11), Fraction(-50, 11)),  # m = 22: 8 or 7 steps
        19: (Fraction(50, 19), Fraction(-100, 19)),  # m = 38: 13 or 12 steps
        31: (Fraction(50, 31), Fraction(-100, 31)),  # m = 62: 21 or 20 steps
    }
    assert {w.minutes: (w.max_pct, w.min_pct) for w in acc.windows} == expected
    # The first window of E_2(max) holds the steps at 123 and 126: it starts at interval 122.
    assert acc.window(2).max_at_ms == 122 * S and acc.window(2).min_at_ms == 120 * S
    assert acc.interval_errors_pct[:3] == (-100, -100, 200)


def test_the_first_hour_is_outside_the_analysis_period() -> None:
    # A slow start (nothing in the first 10 min, then steady) shows on the start-up graph
    # only: A and the trumpet come from the second hour.
    acc = analyse(series([1000 * max(0, k - 20) for k in range(N + 1)]), R_1000)
    assert acc.flows_nl_day[:20] == (0,) * 20 and acc.flows_nl_day[20] == R_1000
    assert acc.mean_error_pct == 0 and all(w.max_deviation_pct == 0 for w in acc.windows)


def test_volumes_count_from_the_first_sample() -> None:
    acc = analyse(series([7_000_000 + 1000 * k for k in range(N + 1)]), R_1000)
    assert acc.delivered_nl[0] == 0 and acc.mean_error_pct == 0


def test_a_missing_sample_is_refused() -> None:
    samples = steady(1000)
    del samples[100]
    with pytest.raises(AccuracyError, match=r"sample 100 is at 3030000 ms, not 3000000 ms"):
        analyse(samples, R_1000)


def test_a_short_series_is_refused() -> None:
    with pytest.raises(AccuracyError, match=r"121 samples cover 60 min; the test period is "
                                            r"120 min: 241 samples.*\(too few\)"):
        analyse(steady(1000)[:121], R_1000)
    with pytest.raises(AccuracyError, match="too many"):
        analyse(series([1000 * k for k in range(N + 2)]), R_1000)
    with pytest.raises(AccuracyError, match="no samples"):
        analyse([], R_1000)


def test_a_late_sample_is_refused_unless_within_the_jitter() -> None:
    samples = steady(1000)
    samples[7] = (samples[7][0] + 400, samples[7][1])
    with pytest.raises(AccuracyError, match="sample 7 is at 210400 ms"):
        analyse(samples, R_1000)
    assert analyse(samples, R_1000, jitter_ms=500).mean_error_pct == 0


def test_nonsense_is_refused() -> None:
    with pytest.raises(AccuracyError, match="above 0"):
        analyse(steady(1000), 0)
    with pytest.raises(AccuracyError, match="whole numbers of sample intervals"):
        analyse(steady(1000), R_1000, interval_ms=70_000)
    every_40_s = [(k * 40_000, 1000 * k) for k in range(181)]
    with pytest.raises(AccuracyError, match="a 5-min window is not a whole number"):
        analyse(every_40_s, R_1000, interval_ms=40_000)
    with pytest.raises(AccuracyError, match="longer than the analysis period"):
        analyse(steady(1000), R_1000, windows_min=(61,))
    with pytest.raises(KeyError):
        analyse(steady(1000), R_1000).window(3)


def test_units() -> None:
    assert accuracy.rate_nl_day("800", 500) == 1_600_000
    assert accuracy.rate_nl_day("0.5", 2000) == 250
    assert accuracy.rate_text(1_600_000) == "1.6 mL/day (66.67 uL/h)"
    assert accuracy.rate_text(48_000) == "0.048 mL/day (2.00 uL/h)"
    assert accuracy.rate_text(4_000_000) == "4 mL/day (166.67 uL/h)"
    assert accuracy.fmt(Fraction(-100, 31), 2, sign=True) == "-3.23"
    assert accuracy.fmt(Fraction(1, 200), 2) == "0.00"  # half-even: 0.005 -> 0.00
    assert accuracy.fmt(Fraction(3, 200), 2, sign=True) == "+0.02"
    assert accuracy.fmt(0, 0, sign=True) == "+0"


def test_files_and_table(tmp_path: Path) -> None:
    acc = analyse(series([250 * (k // 3) for k in range(N + 1)]), 240_000)
    files = accuracy.write_files(acc, lambda name: tmp_path / name, "acc-test", "a subtitle")
    assert sorted(p.name for p in files.values()) == [
        "acc-test-samples.csv", "acc-test-startup.png", "acc-test-trumpet.csv",
        "acc-test-trumpet.png"]
    for key in ("startup_png", "trumpet_png"):
        assert files[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(files["samples_csv"].open()))
    assert len(rows) == N + 1
    assert rows[0] == {"time_min": "0.0", "delivered_ul": "0.000", "ideal_ul": "0.000",
                       "flow_ul_per_h": "", "set_rate_ul_per_h": "10.0000"}
    assert rows[3]["flow_ul_per_h"] == "30.0000" and rows[3]["delivered_ul"] == "0.250"
    trumpet = list(csv.DictReader(files["trumpet_csv"].open()))
    assert [(t["window_min"], t["ep_max_pct"], t["ep_min_pct"]) for t in trumpet][0] == (
        "2", "50.0000", "-25.0000")
    table = accuracy.markdown_table([("low", acc)])
    assert "| low | 0.24 mL/day (10.00 uL/h) | +0.00 | +50.00 / -25.00 |" in table


# -- properties -------------------------------------------------------------------------------

rates = st.integers(min_value=48_000, max_value=24_000_000)  # the pump's range, nL/day
increments = st.lists(st.integers(min_value=0, max_value=3_000), min_size=N, max_size=N)


def cumulative(steps: list[int]) -> list[int]:
    out = [0]
    for d in steps:
        out.append(out[-1] + d)
    return out


@settings(max_examples=60, deadline=None)
@given(rate=rates, steps=increments)
def test_a_window_error_is_the_mean_of_its_interval_errors(rate: int, steps: list[int]) -> None:
    acc = analyse(series(cumulative(steps)), rate)
    e = acc.interval_errors_pct
    for w in acc.windows:
        means = [sum(e[j:j + w.samples]) / w.samples for j in range(A0, N - w.samples + 1)]
        assert (w.max_pct, w.min_pct, w.count) == (max(means), min(means), len(means))
        assert min(e[A0:]) <= w.min_pct <= w.max_pct <= max(e[A0:])


@settings(max_examples=60, deadline=None)
@given(rate=rates, steps=increments)
def test_a_lies_within_the_trumpet_of_windows_that_tile_the_period(
    rate: int, steps: list[int]
) -> None:
    # A is the mean of the non-overlapping windows that tile the analysis period, which are
    # among the windows E_p is taken over: so E_p(min) <= A <= E_p(max) when P / S divides
    # the period (here 2 and 5 min; 11, 19 and 31 min do not tile 60 min, and A may fall
    # outside their E_p band).
    acc = analyse(series(cumulative(steps)), rate, windows_min=(1, 2, 3, 4, 5, 6, 10, 12, 15))
    for w in acc.windows:
        assert (N - A0) % w.samples == 0
        assert w.min_pct <= acc.mean_error_pct <= w.max_pct


@settings(max_examples=60, deadline=None)
@given(rate=rates, lags=st.lists(st.integers(min_value=0, max_value=249), min_size=N + 1,
                                 max_size=N + 1))
def test_a_delivery_that_tracks_the_ideal_bounds_every_window_error(
    rate: int, lags: list[int]
) -> None:
    # Behind the ideal by lag_k in [0, 250) nL at each sample (never ahead, less than one
    # step behind): no window's volume is off by 250 nL or more, so |E_p| < 100 * 250 / (r P).
    r = Fraction(rate)
    volumes = [int(r * k * S / accuracy.DAY_MS) - lag for k, lag in enumerate(lags)]
    volumes = [v - volumes[0] for v in volumes]
    acc = analyse(series(volumes), rate)
    for w in acc.windows:
        ideal = r * w.minutes * accuracy.MIN_MS / accuracy.DAY_MS
        assert w.max_deviation_pct < 100 * 250 / ideal


@settings(max_examples=40, deadline=None)
@given(rate=rates, steps=increments, offset=st.integers(min_value=0, max_value=10**9),
       t0=st.integers(min_value=0, max_value=10**12))
def test_only_differences_count(rate: int, steps: list[int], offset: int, t0: int) -> None:
    base = analyse(series(cumulative(steps)), rate)
    moved = analyse(series([offset + v for v in cumulative(steps)], t0), rate)
    assert moved == base
