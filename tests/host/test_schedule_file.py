"""Schedule files (host/schedule.py): the format, the locator, every problem with its line,
the checks against the pump's state, and property tests (valid schedules round-trip; any
input gives a Schedule or a ScheduleError, never a traceback)."""

from __future__ import annotations

import textwrap
import tomllib
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tomltext import document, key_paths

from host import schedule as sched
from host.client import Profile, Program, Status, Step
from host.schedule import PatientBolusLimits, Schedule, ScheduleError, Taper
from protocol import messages as m

WINTER = datetime(2027, 1, 1, tzinfo=UTC)
SUMMER = datetime(2027, 7, 1, tzinfo=UTC)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "schedules"
HEAD = 'drug = "baclofen"\nconcentration = 500\n'


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def problems(text: str, now: datetime = WINTER) -> list[str]:
    with pytest.raises(ScheduleError) as e:
        sched.loads(src(text), "schedule.toml", now)
    return [str(p) for p in e.value.problems]


# -- good files --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_the_examples_read(path: Path) -> None:
    s = sched.load(path, WINTER)
    assert s.drug == "baclofen" and s.concentration == 500
    assert sched.loads(sched.dumps(s), "again.toml", WINTER) == s


def test_continuous() -> None:
    s = sched.loads(HEAD + "[continuous]\ndose = 412.5\n", now=WINTER)
    assert (s.mode, s.steps, s.daily_ng, s.patient_bolus) == (
        "continuous", (sched.Step(0, 412_500),), 412_500, None)


def test_flex_as_tables_inline_and_times_is_one_schedule() -> None:
    tables = sched.loads(src("""
        drug = "baclofen"
        concentration = 500
        [flex]
        utc_offset = "+01:00"
        [[flex.steps]]
        start = "05:00"
        dose = 400
        [[flex.steps]]
        start = "20:00"
        dose = "480 mcg/day"
        """), now=WINTER)
    inline = sched.loads(HEAD + '[flex]\nutc_offset = "+01:00"\nsteps = [\n'
                         '  {start = "05:00", dose = 400},\n  {start = 20:00:00, dose = 480.0},\n'
                         "]\n", now=WINTER)
    dotted = sched.loads(HEAD + 'flex.utc_offset = "+01:00"\nflex.steps = [{start = "5:00", '
                         'dose = 400}, {start = "20:00", dose = 480}]\n', now=WINTER)
    assert tables == inline == dotted
    assert tables.steps == (sched.Step(300, 400_000), sched.Step(1200, 480_000))
    assert tables.utc_offset_min == 60 and tables.timezone is None
    assert tables.daily_ng == 430_000  # (15 h x 400 + 9 h x 480) / 24 h


def test_flex_daily_dose_rounds_up_as_the_pump_does() -> None:
    s = sched.loads(HEAD + '[flex]\nutc_offset = "+00:00"\nsteps = [{start = "00:00", '
                    'dose = 1}, {start = "00:01", dose = 2}]\n', now=WINTER)
    assert s.daily_ng == (1000 * 1 + 2000 * 1439 + 1439) // 1440  # 1999.3 ng -> 2000


def test_time_zone_is_resolved_to_the_offset_now_and_says_which() -> None:
    text = HEAD + '[flex]\ntimezone = "Europe/Berlin"\nsteps = [{start = "06:00", dose = 400}, ' \
        '{start = "20:00", dose = 480}]\n'
    winter = sched.loads(text, now=WINTER)
    summer = sched.loads(text, now=SUMMER)
    assert (winter.utc_offset_min, summer.utc_offset_min) == (60, 120)
    assert winter.timezone == "Europe/Berlin"
    assert "UTC+01:00 (CET) now" in winter.zone_note
    assert "changes to UTC+02:00 on 2027-03-28 03:00 CEST" in winter.zone_note
    assert "changes to UTC+01:00 on 2027-10-31 02:00 CET" in summer.zone_note
    assert winter == sched.loads(text, now=WINTER)  # the same schedule at the same time
    utc = sched.loads(text.replace("Europe/Berlin", "UTC"), now=WINTER)
    assert utc.utc_offset_min == 0 and "changes" not in utc.zone_note
    kolkata = sched.loads(text.replace("Europe/Berlin", "Asia/Kolkata"), now=WINTER)
    assert kolkata.utc_offset_min == 330


def test_taper_patient_bolus_and_bolus_default() -> None:
    s = sched.loads(src("""
        drug = "baclofen"
        concentration = "500 mcg/mL"
        description = "holiday"
        [taper]
        target = 200
        days = 21
        [patient_bolus]
        dose = "25 mcg"
        duration = "10 min"
        lockout = "1.5 h"
        max_per_day = 3
        [bolus]
        duration = "90 s"
        """), now=WINTER)
    assert (s.mode, s.steps, s.taper, s.daily_ng) == ("taper", (), Taper(200_000, 21), None)
    assert s.patient_bolus == PatientBolusLimits(25_000, 600, 5400, 3)
    assert (s.bolus_duration_s, s.description) == (90, "holiday")
    off = sched.loads(HEAD + "[continuous]\ndose = 400\n[patient_bolus]\nenabled = false\n"
                      "dose = 25\n", now=WINTER)
    assert off.patient_bolus == sched.PATIENT_BOLUS_OFF
    assert not sched.PATIENT_BOLUS_OFF.enabled


# -- the locator --------------------------------------------------------------------------------


def test_locator_tables_and_arrays_of_tables() -> None:
    lines = sched.locate(src("""
        # a comment with [brackets] and "quotes"
        drug = "baclofen"   # [not a table]

        [flex]
        timezone = 'Europe/Berlin'

        [[flex.steps]]
        start = "06:00"
        dose = 400

        [[flex.steps]]
        dose = 480
        start = "20:00"

        [patient_bolus]
        "dose" = 20
        """))
    assert lines[("drug",)] == 2
    assert lines[("flex",)] == 4 and lines[("flex", "timezone")] == 5
    assert lines[("flex", "steps")] == 7 and lines[("flex", "steps", 0)] == 7
    assert lines[("flex", "steps", 0, "dose")] == 9
    assert lines[("flex", "steps", 1)] == 11
    assert lines[("flex", "steps", 1, "dose")] == 12
    assert lines[("flex", "steps", 1, "start")] == 13
    assert lines[("patient_bolus", "dose")] == 16


def test_locator_inline_arrays_and_tables_over_lines() -> None:
    lines = sched.locate(src('''
        title = """a multi-line
        string with
        [[flex.steps]] inside"""
        flex.utc_offset = "+01:00"
        flex.steps = [
          { start = "06:00", dose = 400 },   # first

          {start = "20:00",
           dose = 480},
        ]
        nested = [[1, 2], [
          3]]
        '''))
    assert lines[("title",)] == 1
    assert lines[("flex",)] == 4 and lines[("flex", "utc_offset")] == 4
    assert lines[("flex", "steps")] == 5
    assert lines[("flex", "steps", 0)] == 6 and lines[("flex", "steps", 0, "dose")] == 6
    assert lines[("flex", "steps", 1)] == 8 and lines[("flex", "steps", 1, "start")] == 8
    assert lines[("flex", "steps", 1, "dose")] == 9
    assert lines[("nested", 1)] == 11 and lines[("nested", 1, 0)] == 12
    assert ("flex", "steps", 2) not in lines


def test_locator_nested_arrays_of_tables_and_quoted_keys() -> None:
    lines = sched.locate(src("""
        [[a]]
        x = 1
        [[a.b]]
        y = 1
        [[a.b]]
        y = 2
        [[a]]
        [[a.b]]
        y = 3
        ["quoted.key".inner]
        'z' = "]]"
        """))
    assert lines[("a", 0, "b", 1, "y")] == 6
    assert lines[("a", 1)] == 7 and lines[("a", 1, "b", 0, "y")] == 9
    assert lines[("quoted.key", "inner", "z")] == 11


def test_line_of_falls_back_to_the_enclosing_table() -> None:
    lines = {("flex",): 3, ("flex", "steps", 1): 9}
    assert sched.line_of(lines, ("flex", "steps", 1, "dose")) == 9
    assert sched.line_of(lines, ("flex", "timezone")) == 3
    assert sched.line_of(lines, ("drug",)) is None


# -- every problem, with its line ----------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ('drug = "baclofen"\nconcentration = 500\n[continuous]\ndose = 400.0001\n',
     "schedule.toml:4: continuous.dose: 400.0001 mcg/day is finer than the pump's resolution, "
     "0.001 mcg/day"),
    ('drug = "baclofen"\nconcentration = 500\n[continuous]\ndose = 0\n',
     "schedule.toml:4: continuous.dose: 0 mcg/day: a dose must be more than 0"),
    ('drug = "baclofen"\nconcentration = 500\n[continuous]\ndose = 0.5\n',
     "schedule.toml:4: continuous.dose: 0.5 mcg/day is under the pump's least, 1 mcg/day"),
    ('drug = "baclofen"\nconcentration = 500\n[continuous]\ndose = 20001\n',
     "schedule.toml:4: continuous.dose: 20001 mcg/day is over the pump's greatest, "
     "20000 mcg/day"),
    ('drug = "baclofen"\nconcentration = 500\n[continuous]\ndose = "0.4 mg/day"\n',
     "schedule.toml:4: continuous.dose: unit mg/day: this field takes mcg/day (units are never "
     "converted)"),
    ('drug = "baclofen"\nconcentration = 500\n[continuous]\ndose = "lots"\n',
     "schedule.toml:4: continuous.dose: 'lots' is not a quantity: write e.g. 400 or "
     '"400 mcg/day"'),
    ('drug = "baclofen"\nconcentration = 500\n[continuous]\ndose = true\n',
     "schedule.toml:4: continuous.dose: a number of mcg/day is needed, not true/false"),
    ('drug = "baclofen"\nconcentration = 500\n[continuous]\ndose = inf\n',
     "schedule.toml:4: continuous.dose: Infinity is not a number of mcg/day"),
    ('drug = "baclofen"\nconcentration = 500\n[continuous]\ndoes = 400\n',
     ["schedule.toml:3: continuous.dose: missing (e.g. dose = 400)",
      "schedule.toml:4: continuous.does: unknown key (did you mean dose?)"]),
    ('drug = "baclofen"\nconcentration = 500\n[continuous]\n',
     "schedule.toml:3: continuous.dose: missing (e.g. dose = 400)"),
    ('drug = "baclofen"\nconcentration = 500\ncontinuous = 400\n',
     "schedule.toml:3: continuous: a table is needed here ([continuous]), not 400"),
    ('drug = "morphine"\nconcentration = 500\n[continuous]\ndose = 400\n',
     "schedule.toml:1: drug: 'morphine': baclofen only, never compounded (label 2.3)"),
    ('concentration = 500\n[continuous]\ndose = 400\n',
     'schedule.toml: drug: missing (e.g. drug = "baclofen")'),
    ('drug = "baclofen"\nconcentration = 2500\n[continuous]\ndose = 400\n',
     "schedule.toml:2: concentration: 2500 mcg/mL: a whole number from 1 to 2000 mcg/mL "
     "(label 2.3)"),
    ('drug = "baclofen"\nconcentration = 500\n',
     "schedule.toml: no program: give one of [continuous], [flex] or [taper]"),
    ('drug = "baclofen"\nconcentration = 500\n[continuous]\ndose = 400\n[taper]\ntarget = 200\n'
     "days = 21\n",
     "schedule.toml:5: taper: one program per file: [continuous] is given already"),
    ('drug = "baclofen"\nconcentration = 500\nconfirm = ["high_dose"]\n[continuous]\n'
     "dose = 1200\n",
     "schedule.toml:3: confirm: a schedule file cannot pre-confirm a change: the review asks "
     "(a script gives --yes with --confirm NAME)"),
    ('drug = "baclofen"\nconcentration = 500\n[flex]\nsteps = [{start = "06:00", dose = 400}, '
     '{start = "20:00", dose = 480}]\n',
     'schedule.toml:3: flex: say whose local time the steps are in: timezone = "Europe/Berlin" '
     'or utc_offset = "+01:00"'),
    ('drug = "baclofen"\nconcentration = 500\n[flex]\ntimezone = "Mars/Olympus"\n'
     'steps = [{start = "06:00", dose = 400}, {start = "20:00", dose = 480}]\n',
     "schedule.toml:4: flex.timezone: 'Mars/Olympus' is not a time zone this computer knows (an "
     'IANA name such as "Europe/Berlin"; or give utc_offset = "+01:00")'),
    ('drug = "baclofen"\nconcentration = 500\n[flex]\nutc_offset = "+15:00"\n'
     'steps = [{start = "06:00", dose = 400}, {start = "20:00", dose = 480}]\n',
     "schedule.toml:4: flex.utc_offset: +15:00 is outside -12:00 to +14:00"),
    ('drug = "baclofen"\nconcentration = 500\n[flex]\nutc_offset = "+01:00"\ntimezone = "UTC"\n'
     'steps = [{start = "06:00", dose = 400}, {start = "20:00", dose = 480}]\n',
     "schedule.toml:4: flex.utc_offset: give timezone or utc_offset, not both"),
    ('drug = "baclofen"\nconcentration = 500\n[flex]\nutc_offset = "+01:00"\n'
     'steps = [{start = "06:00", dose = 400}]\n',
     "schedule.toml:5: flex.steps: 1 steps: a flex day has 2 to 24: for one dose all day use "
     "[continuous]"),
    ('drug = "baclofen"\nconcentration = 500\n[flex]\nutc_offset = "+01:00"\n[[flex.steps]]\n'
     'start = "20:00"\ndose = 400\n[[flex.steps]]\nstart = "06:00"\ndose = 480\n',
     "schedule.toml:9: flex.steps[2].start: 06:00 is not after the step before (20:00): steps go "
     "in rising order"),
    ('drug = "baclofen"\nconcentration = 500\n[flex]\nutc_offset = "+01:00"\n[[flex.steps]]\n'
     'start = "06:00"\ndose = 400\n[[flex.steps]]\nstart = "24:00"\ndose = 480\n',
     "schedule.toml:9: flex.steps[2].start: '24:00' is not a time of day: write \"HH:MM\", "
     "00:00 to 23:59"),
    ('drug = "baclofen"\nconcentration = 500\n[flex]\nutc_offset = "+01:00"\n[[flex.steps]]\n'
     'start = "06:00"\ndose = 400\n[[flex.steps]]\nstart = 20:00:30\ndose = 480\n',
     "schedule.toml:9: flex.steps[2].start: 20:00:30: a step starts on a whole minute"),
    ('drug = "baclofen"\nconcentration = 500\n[flex]\nutc_offset = "+01:00"\n[[flex.steps]]\n'
     'start = "06:00"\ndose = 400\n[[flex.steps]]\nstart = "20:00"\n',
     "schedule.toml:8: flex.steps[2].dose: missing (e.g. dose = 400)"),
    ('drug = "baclofen"\nconcentration = 500\n[flex]\nutc_offset = "+01:00"\nsteps = "06:00"\n',
     "schedule.toml:5: flex.steps: a list of steps is needed ([[flex.steps]] tables), not the "
     "text '06:00'"),
    ('drug = "baclofen"\nconcentration = 500\n[taper]\ntarget = 200\ndays = 30\n',
     "schedule.toml:5: taper.days: 30 days: 14 to 28 (a drug holiday tapers over 2 to 4 weeks, "
     "label 2.6)"),
    ('drug = "baclofen"\nconcentration = 500\n[taper]\ntarget = 200\ndays = 21.5\n',
     "schedule.toml:5: taper.days: a whole number of days is needed, not 21.5"),
    ('drug = "baclofen"\nconcentration = 500\n[continuous]\ndose = 400\n[patient_bolus]\n'
     'dose = 25\nduration = 10\nlockout = "4 h"\nmax_per_day = 3\n',
     'schedule.toml:7: patient_bolus.duration: 10: give the unit, e.g. "10 min" or "10 h"'),
    ('drug = "baclofen"\nconcentration = 500\n[continuous]\ndose = 400\n[patient_bolus]\n'
     'dose = 25\nduration = "30 s"\nlockout = "4 h"\nmax_per_day = 3\n',
     "schedule.toml:7: patient_bolus.duration: 30 s is outside 1 min to 1 d"),
    ('drug = "baclofen"\nconcentration = 500\n[continuous]\ndose = 400\n[patient_bolus]\n'
     'dose = 25\nduration = "10 min"\nlockout = "4 hours"\nmax_per_day = 3\n',
     "schedule.toml:8: patient_bolus.lockout: '4 hours' is not a duration: write e.g. \"90 s\", "
     '"10 min" or "4 h"'),
    ('drug = "baclofen"\nconcentration = 500\n[continuous]\ndose = 400\n[patient_bolus]\n'
     'dose = 25\nduration = "10 min"\nlockout = "4 h"\nmax_per_day = 30\n',
     "schedule.toml:9: patient_bolus.max_per_day: 30 boluses a day: 1 to 24"),
    ('drug = "baclofen"\nconcentration = 500\n[continuous]\ndose = 400\n[patient_bolus]\n'
     "enabled = 0\n",
     "schedule.toml:6: patient_bolus.enabled: true or false, not 0"),
    ('drug = "baclofen"\nconcentration = 500\n[continuous]\ndose = 400\n[bolus]\n'
     'duration = "1.01 min"\n',
     "schedule.toml:6: bolus.duration: 1.01 min is not a whole number of seconds"),
])
def test_each_problem_names_file_line_and_field(text: str, expected: str | list[str]) -> None:
    assert problems(text) == ([expected] if isinstance(expected, str) else expected)


def test_a_toml_syntax_error_names_its_line() -> None:
    assert problems('drug = "baclofen"\nconcentration = 500\n[continuous]\ndose = = 4\n') == [
        "schedule.toml:4: not valid TOML: Invalid value"]


# -- what the fuzz found (tests/host/test_schedule_fuzz.py): each crashed loads() once ---------


def test_a_dose_with_a_huge_exponent_is_over_the_greatest() -> None:
    # Was decimal.Overflow: dose x 1000 past the default context's 1E+999999.
    assert problems(HEAD + "[continuous]\ndose = 1e999999999\n") == [
        "schedule.toml:4: continuous.dose: 1E+999999999 mcg/day is over the pump's greatest, "
        "20000 mcg/day"]


def test_a_time_zone_that_is_a_folder_or_too_long_is_not_a_time_zone() -> None:
    # Was OSError from ZoneInfo: IsADirectoryError, and ENAMETOOLONG (the name is cut short).
    steps = 'steps = [{start = "06:00", dose = 400}, {start = "20:00", dose = 480}]\n'
    assert problems(HEAD + '[flex]\ntimezone = "America"\n' + steps) == [
        "schedule.toml:4: flex.timezone: 'America' is not a time zone this computer knows (an "
        'IANA name such as "Europe/Berlin"; or give utc_offset = "+01:00")']
    assert problems(HEAD + '[flex]\ntimezone = "' + "a" * 300 + '"\n' + steps) == [
        "schedule.toml:4: flex.timezone: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'... (300 "
        "characters) is not a time zone this computer knows (an IANA name such as "
        '"Europe/Berlin"; or give utc_offset = "+01:00")']


def test_values_nested_too_deeply_name_their_line() -> None:
    # Was RecursionError from tomllib.
    for value in ("[" * 3000 + "]" * 3000, "{a = " * 2000 + "1" + "}" * 2000):
        assert problems(HEAD + f"description = {value}\n[continuous]\ndose = 400\n") == [
            "schedule.toml:3: not valid TOML: values nested too deeply"]


def test_an_integer_too_long_for_python_names_its_line() -> None:
    # Was ValueError from tomllib: int() reads at most 4300 digits (sys.get_int_max_str_digits).
    assert problems(HEAD + "[taper]\ntarget = 200\ndays = " + "9" * 5000 + "\n") == [
        "schedule.toml:5: not valid TOML: a whole number too long to read (more than 4300 "
        "digits)"]


def test_a_short_number_gives_a_short_message() -> None:
    # Was a 100,000-digit message (fmt wrote 1E+100000 out in full), and int(1E+990000) took
    # most of a minute.
    assert problems('drug = "baclofen"\nconcentration = 1e100000\n[continuous]\ndose = 400\n') == [
        "schedule.toml:2: concentration: 1E+100000 mcg/mL: a whole number from 1 to 2000 mcg/mL "
        "(label 2.3)"]
    assert problems(HEAD + "[continuous]\ndose = 1e990000\n") == [
        "schedule.toml:4: continuous.dose: 1E+990000 mcg/day is over the pump's greatest, "
        "20000 mcg/day"]
    # A long number is cut short in the middle.
    assert problems(HEAD + "[continuous]\ndose = " + "9" * 5000 + ".5\n") == [
        "schedule.toml:4: continuous.dose: 99999999999999999999...9999999999.5 (5001 digits) "
        "mcg/day is over the pump's greatest, 20000 mcg/day"]


def test_a_hex_integer_past_4300_digits_in_a_message() -> None:
    # Found beside the fuzz: a hex integer has no digit limit in tomllib, but str() of it
    # does: ValueError while writing the problem.
    big = "0x" + "f" * 4000
    assert problems(HEAD + f"[taper]\ntarget = 200\ndays = {big}\n") == [
        "schedule.toml:5: taper.days: 30194693372392275795...655882469375 (4817 digits) days: "
        "14 to 28 (a drug holiday tapers over 2 to 4 weeks, label 2.6)"]
    assert problems(HEAD + f'[flex]\nutc_offset = "+01:00"\nsteps = [{{start = {big}, '
                    'dose = 400}, {start = "20:00", dose = 480}]\n') == [
        "schedule.toml:5: flex.steps[1].start: 30194693372392275795...655882469375 (4817 "
        'digits) is not a time of day: write "HH:MM", 00:00 to 23:59']


def test_an_exponent_past_what_a_decimal_holds_names_its_line() -> None:
    # Found beside the fuzz: decimal.InvalidOperation from Decimal("1e1000000000000000000")
    # (tomllib's parse_float).
    assert problems(HEAD + "[continuous]\ndose = 1e1000000000000000000\n") == [
        "schedule.toml:4: not valid TOML: a number too large or too small to read"]


def test_numbers_are_read_exactly_past_28_digits() -> None:
    # Found beside the fuzz: arithmetic in the default context rounded to 28 digits, so these
    # passed as 400 mcg/day and 600 s.
    assert problems(HEAD + "[continuous]\ndose = 400.0000000000000000000000000000001\n") == [
        "schedule.toml:4: continuous.dose: 400.0000000000000000000000000000001 mcg/day is finer "
        "than the pump's resolution, 0.001 mcg/day"]
    assert problems(HEAD + '[continuous]\ndose = 400\n[bolus]\n'
                    'duration = "10.00000000000000000000000000001 min"\n') == [
        "schedule.toml:6: bolus.duration: 10.00000000000000000000000000001 min is not a whole "
        "number of seconds"]


def test_all_problems_are_collected_in_line_order() -> None:
    found = problems("""
        drug = "ibuprofen"
        concentration = "0.5 mg/mL"
        confirm = ["high_dose"]

        [flex]
        utc_offset = "+1"
        steps = [
          {start = "06:00", dose = 400},
          {start = "05:00", dose = 0},
          {start = "25:00", does = 3},
        ]

        [patient_bolus]
        dose = 20
        duration = 10
        """)
    assert found == [
        "schedule.toml:1: drug: 'ibuprofen': baclofen only, never compounded (label 2.3)",
        "schedule.toml:2: concentration: unit mg/mL: this field takes mcg/mL (units are never "
        "converted)",
        "schedule.toml:3: confirm: a schedule file cannot pre-confirm a change: the review asks "
        "(a script gives --yes with --confirm NAME)",
        "schedule.toml:6: flex.utc_offset: '+1' is not an offset: write \"+01:00\" or \"-05:30\"",
        "schedule.toml:9: flex.steps[2].dose: 0 mcg/day: a dose must be more than 0",
        "schedule.toml:9: flex.steps[2].start: 05:00 is not after the step before (06:00): steps "
        "go in rising order",
        "schedule.toml:10: flex.steps[3].does: unknown key (did you mean dose?)",
        "schedule.toml:10: flex.steps[3].start: '25:00' is not a time of day: write \"HH:MM\", "
        "00:00 to 23:59",
        "schedule.toml:10: flex.steps[3].dose: missing (e.g. dose = 400)",
        "schedule.toml:13: patient_bolus.lockout: missing (e.g. lockout = \"4 h\")",
        "schedule.toml:13: patient_bolus.max_per_day: missing (e.g. max_per_day = 3)",
        "schedule.toml:15: patient_bolus.duration: 10: give the unit, e.g. \"10 min\" or "
        "\"10 h\"",
    ]
    with pytest.raises(ScheduleError) as e:
        sched.loads(src('drug = "x"\nconcentration = 1\n'), "s.toml")
    assert str(e.value).splitlines() == [
        "s.toml: 2 problems, nothing sent:",
        "s.toml: no program: give one of [continuous], [flex] or [taper]",
        "s.toml:1: drug: 'x': baclofen only, never compounded (label 2.3)",
    ]


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ScheduleError, match=r"nope.toml: cannot read it: No such file"):
        sched.load(tmp_path / "nope.toml")
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'drug = "baclof\xe9n"\n')
    with pytest.raises(ScheduleError, match=r"latin.toml: not UTF-8 text"):
        sched.load(latin)
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + (HEAD + "[continuous]\ndose = 400\n").encode())
    assert sched.load(bom).steps == (sched.Step(0, 400_000),)


# -- against the pump's state ----------------------------------------------------------------------


def pump_state(conc: int = 500, phase: str = "titration", ceiling: str = "1000",
               daily: str = "400") -> tuple[Status, Profile, Program]:
    clock = WINTER
    status = Status(mode="continuous", phase=phase, daily_dose_mcg=Decimal(daily),
                    concentration_mcg_ml=conc, rate_ul_day=Decimal(0), bolus="none",
                    bolus_left_mcg=Decimal(0), last_24h_mcg=Decimal(0),
                    delivered_ul=Decimal(0), delivered_mcg=Decimal(0),
                    reservoir_ul=Decimal(20000), uptime_s=0, clock=clock, low_at=None,
                    refill_at=None, dry_at=None, alarms=(), sessions=(),
                    battery_v=Decimal("3.9"), frame_errors=0)
    profile = Profile(origin="spinal", age_years=40, phase=phase,
                      ceiling_mcg_day=Decimal(ceiling), catheter_ml=Decimal(0),
                      infusion_start=None)
    program = Program(mode="continuous", daily_dose_mcg=Decimal(daily),
                      rate_ul_day=Decimal(0), utc_offset_min=0,
                      steps=(Step(0, Decimal(daily)),))
    return status, profile, program


FLEX_1200 = """\
# flex: a night step over the ceiling
drug = "baclofen"
concentration = 500

[flex]
utc_offset = "+00:00"
[[flex.steps]]
start = "06:00"
dose = 400
[[flex.steps]]
start = "20:00"
dose = 1200

[patient_bolus]
dose = 50
duration = "10 min"
lockout = "2 h"
max_per_day = 8
"""


def test_with_the_pump_over_the_ceiling_names_the_step() -> None:
    s = sched.loads(FLEX_1200, "schedule.toml")
    found = [str(p) for p in sched.check_with_pump(s, *pump_state(ceiling="1000"))]
    assert found == [
        "schedule.toml:12: flex.steps[2].dose: 1200 mcg/day is over the profile's hard ceiling "
        "1000 mcg/day",
        "schedule.toml:15: patient_bolus.dose: 8 x 50 mcg a day on top of 733.334 mcg/day would "
        "pass the hard ceiling 1000 mcg/day: at most 33.333 mcg each",
    ]
    assert sched.check_with_pump(s, *pump_state(ceiling="1500")) == []


def test_with_the_pump_concentration_profile_and_phase() -> None:
    s = sched.loads(HEAD + "[continuous]\ndose = 400\n")
    assert [str(p) for p in sched.check_with_pump(s, *pump_state(conc=1000))] == [
        "schedule.toml:2: concentration: the file says 500 mcg/mL but the reservoir holds "
        "1000 mcg/mL: a concentration changes only through a refill (pumpctl refill)"]
    assert [str(p) for p in sched.check_with_pump(s, *pump_state(conc=0))] == [
        "schedule.toml:2: concentration: the reservoir holds no drug: refill first "
        "(pumpctl refill)"]
    assert [str(p) for p in sched.check_with_pump(s, *pump_state(phase="unset"))] == [
        "schedule.toml: the pump has no patient profile: set one first (pumpctl profile set)"]
    assert [str(p) for p in sched.check_with_pump(s, *pump_state(phase="screening"))] == [
        "schedule.toml:3: continuous: the pump is in the screening phase: test boluses only, "
        "no program (label 2.2)"]


def test_with_the_pump_a_taper_steps_down() -> None:
    s = sched.loads(HEAD + "\n[taper]\ntarget = 400\ndays = 14\n")
    assert [str(p) for p in sched.check_with_pump(s, *pump_state(daily="400"))] == [
        "schedule.toml:5: taper.target: 400 mcg/day is not under the dose in force "
        "400 mcg/day: a taper steps down"]
    assert [str(p) for p in sched.check_with_pump(s, *pump_state(daily="0"))] == [
        "schedule.toml:4: taper: no program in force to taper from"]
    assert sched.check_with_pump(s, *pump_state(daily="500")) == []


# -- properties ------------------------------------------------------------------------------------

doses = st.integers(1000, 20_000_000)
durations = st.sampled_from((60, 90, 600, 3600, 5400, 86_400))


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    mode = draw(st.sampled_from(("continuous", "flex", "taper")))
    steps: tuple[sched.Step, ...] = ()
    taper = None
    offset, zone = 0, None
    if mode == "continuous":
        steps = (sched.Step(0, draw(doses)),)
    elif mode == "flex":
        starts = draw(st.lists(st.integers(0, 1439), min_size=2, max_size=m.FLEX_STEPS_MAX,
                               unique=True).map(sorted))
        steps = tuple(sched.Step(x, draw(doses)) for x in starts)
        offset = draw(st.integers(-720, 840))
    else:
        taper = Taper(draw(doses), draw(st.integers(14, 28)))
    pb = draw(st.one_of(st.none(), st.just(sched.PATIENT_BOLUS_OFF), st.builds(
        PatientBolusLimits, st.integers(1, 2_000_000), durations,
        st.sampled_from((0, 60, 3600, 86_400)), st.integers(1, 24))))
    return Schedule(drug="baclofen", concentration=draw(st.integers(1, 2000)), mode=mode,
                    steps=steps, utc_offset_min=offset, timezone=zone, taper=taper,
                    patient_bolus=pb,
                    bolus_duration_s=draw(st.one_of(st.none(), durations)),
                    description=draw(st.text(max_size=20)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules())
def test_valid_schedules_round_trip(s: Schedule) -> None:
    assert sched.loads(sched.dumps(s), now=WINTER) == s


KEYS = ("drug", "concentration", "continuous", "flex", "taper", "dose", "steps", "start",
        "timezone", "utc_offset", "target", "days", "patient_bolus", "duration", "lockout",
        "max_per_day", "enabled", "bolus", "confirm", "x")
scalars = st.one_of(
    st.integers(-10**7, 10**7), st.booleans(),
    st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str).map(Decimal),
    st.sampled_from(("baclofen", "06:00", "24:00", "400 mcg/day", "10 min", "4 h", "+01:00",
                     "Europe/Berlin", "Nowhere/At_All", "", "x")),
    st.text(max_size=8))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
    max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=7), st.booleans())
def test_any_toml_document_gives_a_schedule_or_problems(doc: dict, as_tables: bool) -> None:
    text = document(doc, as_tables)
    located = sched.locate(text)
    for path in key_paths(tomllib.loads(text)):  # the locator finds every key and item
        assert path in located, (path, text)
    try:
        sched.loads(text, "fuzz.toml", WINTER)
    except ScheduleError as e:
        assert e.problems
        n = text.count("\n") + 1
        for p in e.problems:
            assert p.line is None or 1 <= p.line <= n
            assert str(p).startswith("fuzz.toml")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from('[]{}="\'#.,\n abc123:-+_'), max_size=80))
def test_garbage_gives_a_schedule_error_never_a_traceback(text: str) -> None:
    try:
        sched.loads(text, "junk.toml", WINTER)
    except ScheduleError as e:
        assert e.problems and all(str(p).startswith("junk.toml") for p in e.problems)
    sched.locate(text)  # the locator, even on text tomllib refuses, stops and raises nothing
