"""The HIL pytest plugin (hil/pytest_plugin.py): capability skips with reasons, the report
folder, the time scale, and a clear failure when a test needs a rig that is not there."""

from __future__ import annotations

import json

import pytest

pytest_plugins = ["pytester"]

SUITE = '''
import pytest

@pytest.mark.hil
@pytest.mark.rig("time_control", "steps")
def test_time(rig, hil_report):
    t = rig.now_ms()
    assert rig.advance(2000) >= t + 2000
    hil_report.add("A figure", "- one line", {"x": 1})

@pytest.mark.hil
@pytest.mark.rig("gravity")
def test_needs_what_no_rig_has(rig):
    raise AssertionError("not reached")
'''


def test_report_lists_outcomes_sections_and_skip_reasons(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    report = pytester.path / "rep"
    result = pytester.runpytest("-p", "no:cacheprovider", "--report", str(report),
                                "--time-scale", "1000")
    result.assert_outcomes(passed=1, skipped=1)
    summary = (report / "SUMMARY.md").read_text()
    assert "- tests: 1 passed, 1 skipped" in summary
    assert "## A figure" in summary and "rig lacks gravity" in summary
    data = json.loads((report / "summary.json").read_text())
    assert data["sections"]["A figure"] == {"x": 1}
    assert data["skipped"][0]["reason"] == "rig lacks gravity"


def test_a_bad_time_scale_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--time-scale", "fast")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--time-scale is 'paused' or a number > 0, not 'fast'*"])


def test_a_pump_without_a_rig_fails_the_tests_that_need_one(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", "--pump", "socket://127.0.0.1:9",
                                "-k", "test_time")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*this test needs a rig: with --pump, give --rig*"])


def test_a_rig_that_is_not_there_stops_the_run_with_one_line(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", "--rig", "/dev/ttyACM-no-rig")
    assert result.ret == 3
    out = (result.stdout.str() + result.stderr.str())
    assert "no rig: /dev/ttyACM-no-rig" in out and "passed" not in out
