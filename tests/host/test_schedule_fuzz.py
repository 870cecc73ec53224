"""Fuzzing the schedule-file parser (host/schedule.py: loads -> Schedule or ScheduleError).

Inputs: the example files (examples/schedules/) and files written by schedule.dumps(), mutated
line by line, key by key and byte by byte with values from a pool that holds the awkward ones
(numbers past any range, huge exponents, TOML dates and times, quoted keys, multi-line
strings, deep nesting, time zone names that are not zones); and whole TOML documents built by
hypothesis from the format's keys. For every input:

- loads() returns a Schedule or raises ScheduleError, nothing else;
- a ScheduleError holds problems, each "fuzz.toml:LINE: field: message" (or "fuzz.toml: ..."
  when the problem has no line), with LINE within the file, and its text is not out of all
  proportion to the input (a 15-character number must not become a 100 MB message);
- a Schedule written out by dumps() reads back to the same Schedule;
- on valid TOML the locator (which gives the lines) raises nothing and finds every key path.

INTRAPUMP_FUZZ_CASES sets how many mutated files (default 2,000, about 2 s);
INTRAPUMP_SCHEDULE_FUZZ_CASES, if set, overrides it for this file alone; hypothesis draws a
fiftieth as many documents (at least 100). Measured on a 2-CPU machine under load: about 0.9 ms
a mutated file (1,000,000 in 15.5 min) and 8 ms a hypothesis document.

KNOWN_BUGS: crashes this fuzz found in host/schedule.py, each with its regression test below
(xfail, strict: the day the parser is fixed they pass, pytest says XPASS(strict), and the
entry and its xfail go). The fuzz counts inputs that hit a known bug and fails on any other.
"""

from __future__ import annotations

import os
import random
import time
import tomllib
import traceback
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tomltext import document, key_paths

from host import schedule as sched
from host.schedule import PatientBolusLimits, Schedule, ScheduleError, Step, Taper

FUZZ_CASES = int(os.environ.get("INTRAPUMP_SCHEDULE_FUZZ_CASES")
                 or os.environ.get("INTRAPUMP_FUZZ_CASES") or "2000")
HYPOTHESIS_CASES = max(100, FUZZ_CASES // 50)
NOW = datetime(2027, 1, 1, tzinfo=UTC)
FILE = "fuzz.toml"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "schedules"
HEAD = 'drug = "baclofen"\nconcentration = 500\n'
STEPS = 'steps = [{start = "06:00", dose = 400}, {start = "20:00", dose = 480}]\n'


# -- what a good answer is ---------------------------------------------------------------------


def check(text: str) -> str:
    """Feed `text` to the parser and check the answer: "ok" (a Schedule that round-trips),
    "problems" (a good ScheduleError), or the name of a known bug it hit. Anything else fails
    the test with the input."""
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError):
        data = None
    if data is not None:  # the locator on valid TOML: no exception, every key path found
        located = sched._Scanner(text).document()
        missing = [p for p in key_paths(data) if p not in located]
        assert not missing, f"the locator misses {missing[:3]} in:\n{text}"
    try:
        s = sched.loads(text, FILE, NOW)
    except ScheduleError as e:
        n = text.count("\n") + 1
        assert e.problems, f"a ScheduleError without problems:\n{text}"
        for p in e.problems:
            shown = str(p)
            assert p.file == FILE and p.message, shown
            assert p.line is None or 1 <= p.line <= n, f"line {p.line} of {n}: {shown}"
            where = f"{FILE}:{p.line}: " if p.line else f"{FILE}: "
            assert shown.startswith(where), f"{shown!r} does not start with {where!r}"
        if len(str(e)) > 20 * len(text) + 2000:
            return known("number-amplification", text, None)
        return "problems"
    except Exception as e:  # noqa: BLE001 - what the fuzz is for
        return known(None, text, e)
    back = sched.loads(sched.dumps(s), "again.toml", NOW)
    assert back == s, f"dumps/loads changed the schedule:\n{text}\n->\n{sched.dumps(s)}"
    return "ok"


def known(bug: str | None, text: str, e: BaseException | None) -> str:
    """The known bug an input hit (by its exception, or as named), or fail with the input."""
    if bug is None and e is not None:
        for name, (kind, where) in KNOWN_BUGS.items():
            if kind is not None and isinstance(e, kind) and raised_in(e, where):
                bug = name
                break
    if bug is None or bug not in KNOWN_BUGS:
        if e is not None:
            detail = "".join(traceback.format_exception(e))
            pytest.fail(f"the parser crashed on this input:\n{text!r}\n{detail}")
        pytest.fail(f"the parser's problems are out of all proportion ({bug}) to this "
                    f"input:\n{text[:2000]!r}")
    return bug


def raised_in(e: BaseException, where: str) -> bool:
    """Whether a frame of e's traceback is in a "file:function" that holds `where` (read
    from the frames themselves: a RecursionError's thousand frames are cheap that way)."""
    tb = e.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if where in f"{code.co_filename}:{code.co_name}":
            return True
        tb = tb.tb_next
    return False


# What this fuzz found wrong in host/schedule.py (not this file's to fix): name ->
# (the exception that escapes loads(), and part of the "file:function" it is raised in; or
# None, "": no exception, a message out of all proportion, named "number-amplification").
# See the regression tests. Empty: the five crashes found so far (a huge exponent, a zone
# name that is a folder, deep nesting, an integer past 4300 digits, a short number making a
# long message) are fixed; their regression tests below pass as ordinary tests.
KNOWN_BUGS: dict[str, tuple[type[BaseException] | None, str]] = {}


# -- mutated files -----------------------------------------------------------------------------

VALUES = [
    # numbers: in and out of every range, TOML's forms, exponents past any context
    "400", "0", "-1", "412.5", "0.001", "0.0001", "1_000", "0x10", "0o17", "0b101", "+inf",
    "-inf", "nan", "1e3", "1.5e-3", "1e400", "1E-400", "99999999999999999999", "-0", "-0.0",
    "1e999999999", "1e-999999999", "1e30000", "9" * 5000,
    # quantities as text
    '"400 mcg/day"', '"400 mg/day"', '"400mcg/day"', '" 400 mcg/day "', '"-5 mcg/day"',
    '"1e3 mcg/day"', '"NaN mcg/day"', '"0x10 mcg"', '"\uff11\uff10 min"', '"\u0663 h"',
    '"10 min"', '"0 s"', '"90 s"', '"1.5 h"', '"1.25 min"', '"4 h"', '"25 h"', '"10"',
    '"' + "9" * 400 + ' s"', '"0.' + "0" * 400 + '1 mcg"',
    # times and dates
    '"06:00"', '"24:00"', '"6:0"', '"23:59"', '"\u0660\u0666:\u0660\u0660"', "06:00:00",
    "06:00:30", "06:00:00.5", "1979-05-27", "1979-05-27T07:32:00Z", "1979-05-27 07:32:00",
    # zones and offsets
    '"Europe/Berlin"', '"UTC"', '"Etc/GMT+12"', '"Pacific/Kiritimati"', '"Nowhere/At_All"',
    '"Europe"', '"America"', '"' + "a" * 300 + '"', '"../../etc/passwd"', '"/etc/localtime"',
    '"Europe/\\u0000"', '"+01:00"', '"-05:30"', '"+14:00"', '"-12:00"', '"+99:99"', '"Z"',
    # other kinds
    "true", "false", '""', '"baclofen"', '"morphine"', '"x"', '"\\u00e9\\u2028"', "'a\\b'",
    '"a # b"', "'''a\n]b'''", '"""a\nb"""', "[]", "[1, 2]", "[1,\n2,\n]", "{}",
    '{dose = 1, start = "06:00"}', '{a.b = 1, "c.d" = [1, {e = 2}]}', "[ [1], [ {x=1} ] ]",
    "[" * 3000 + "]" * 3000, "{a = " * 2000 + "1" + "}" * 2000,
]
KEYS = ["drug", "concentration", "description", "continuous", "flex", "taper", "dose", "steps",
        "start", "timezone", "utc_offset", "target", "days", "patient_bolus", "duration",
        "lockout", "max_per_day", "enabled", "bolus", "confirm", "dosE", "doses", '"dose"',
        '"a.b"', "flex.steps", "x", "continuous.dose", "patient_bolus.dose"]
HEADERS = ["[continuous]", "[flex]", "[taper]", "[[flex.steps]]", "[patient_bolus]", "[bolus]",
           "[flex.steps]", "[[taper]]", "[x.y.z]", "[ flex ]", '["flex"]', "[[continuous]]",
           "[flex.steps.x]"]


def seed_files(rnd: random.Random) -> list[str]:
    """The examples, and files dumps() writes for varied schedules."""
    files = [p.read_text(encoding="utf-8") for p in sorted(EXAMPLES.glob("*.toml"))]
    assert len(files) >= 4, f"the examples are missing from {EXAMPLES}"
    for _ in range(40):
        mode = rnd.choice(("continuous", "flex", "taper"))
        steps: tuple[Step, ...] = ()
        taper = None
        if mode == "continuous":
            steps = (Step(0, rnd.randint(1000, 2_000_000)),)
        elif mode == "flex":
            starts = sorted(rnd.sample(range(1440), rnd.randint(2, 24)))
            steps = tuple(Step(x, rnd.randint(1000, 2_000_000)) for x in starts)
        else:
            taper = Taper(rnd.randint(1000, 500_000), rnd.randint(14, 28))
        pb = rnd.choice([None, sched.PATIENT_BOLUS_OFF, PatientBolusLimits(
            rnd.randint(1, 100_000), rnd.choice((60, 600, 3600)), rnd.choice((0, 3600)),
            rnd.randint(1, 24))])
        files.append(sched.dumps(Schedule(
            drug="baclofen", concentration=rnd.choice((50, 500, 2000, 1234)), mode=mode,
            steps=steps, utc_offset_min=rnd.randint(-720, 840), timezone=None, taper=taper,
            patient_bolus=pb, bolus_duration_s=rnd.choice((None, 600)),
            description=rnd.choice(("", "night +20 %", 'quote " and \\ slash')))))
    return files


def mutate(rnd: random.Random, files: list[str]) -> str:
    lines = rnd.choice(files).split("\n")
    for _ in range(rnd.randint(1, 4)):
        if not lines:
            lines = [""]
        i = rnd.randrange(len(lines))
        op = rnd.randrange(13)
        if op == 0:  # a line goes
            del lines[i]
        elif op == 1:  # a line twice
            lines.insert(i, lines[rnd.randrange(len(lines))])
        elif op == 2 and "=" in lines[i]:  # another value
            lines[i] = lines[i].split("=")[0] + "= " + rnd.choice(VALUES)
        elif op == 3:  # another key, or a new one
            lines.insert(i, f"{rnd.choice(KEYS)} = {rnd.choice(VALUES)}")
        elif op == 4 and "=" in lines[i]:
            lines[i] = rnd.choice(KEYS) + " =" + lines[i].split("=", 1)[1]
        elif op == 5:  # a table header
            lines.insert(i, rnd.choice(HEADERS))
        elif op == 6:  # a character in, out or changed
            s = lines[i]
            j = rnd.randrange(len(s) + 1)
            c = rnd.choice('[]{}="\'#.,\n abc019:-+_\\\t\r\x00\x7f\u00e9\u2028\ufeff')
            lines[i] = s[:j] + c + s[j + rnd.randint(0, 1):]
        elif op == 7:  # two lines swap
            j = rnd.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 8:  # a comment goes
            lines[i] = lines[i].split("#")[0]
        elif op == 9:  # an inline list of steps, of any length
            items = ", ".join(f"{{start = {rnd.choice(VALUES)}, dose = {rnd.choice(VALUES)}}}"
                              for _ in range(rnd.randint(0, 30)))
            lines.insert(i, f"steps = [{items}]")
        elif op == 10:  # lines from another file
            other = rnd.choice(files).split("\n")
            k = rnd.randrange(len(other))
            lines[i:i] = other[k : k + rnd.randint(1, 4)]
        elif op == 11:  # cut short
            lines = lines[: i + 1]
            lines[-1] = lines[-1][: rnd.randrange(len(lines[-1]) + 1)]
        else:  # something at the end of a line
            lines[i] += rnd.choice([" # c", "\\", " = 1", ",", "]", "}", '"', " ", "\r"])
    return "\n".join(lines)


def test_fuzz_schedule_files() -> None:
    rnd = random.Random(20270101)
    files = seed_files(rnd)
    outcomes: Counter[str] = Counter()
    t0 = time.perf_counter()
    for case in range(FUZZ_CASES):
        text = mutate(rnd, files)
        try:
            outcomes[check(text)] += 1
        except AssertionError as e:
            raise AssertionError(f"case {case}: {e}") from e
    took = time.perf_counter() - t0
    print(f"\nschedule fuzz: {FUZZ_CASES} files in {took:.1f} s "
          f"({1e6 * took / max(FUZZ_CASES, 1):.0f} us each): {dict(outcomes)}")
    # The fuzz reached both answers, often.
    assert outcomes["ok"] >= FUZZ_CASES // 20, f"too few good files: {dict(outcomes)}"
    assert outcomes["problems"] >= FUZZ_CASES // 4, f"too few problems: {dict(outcomes)}"


# -- whole documents from hypothesis -----------------------------------------------------------

DOC_KEYS = ("drug", "concentration", "description", "continuous", "flex", "taper", "dose",
            "steps", "start", "timezone", "utc_offset", "target", "days", "patient_bolus",
            "duration", "lockout", "max_per_day", "enabled", "bolus", "confirm", "x")
numbers = st.one_of(
    st.integers(-10**6, 10**8),
    st.integers(),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.decimals(min_value=Decimal("-1e30"), max_value=Decimal("1e30"), places=3),
)
texts = st.one_of(
    st.sampled_from(("baclofen", "06:00", "23:59", "24:00", "400 mcg/day", "0.5 mcg",
                     "10 min", "4 h", "90 s", "+01:00", "-05:30", "Europe/Berlin", "UTC",
                     "Nowhere/At_All", "", "x")),
    st.builds(lambda n, u: f"{n} {u}", numbers, st.sampled_from(
        ("mcg/day", "mcg", "mcg/mL", "s", "min", "h", "mg", "ml"))),
    st.text(max_size=12),
)
scalars = st.one_of(numbers, st.booleans(), texts, st.times(), st.dates())
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.sampled_from(DOC_KEYS), inner, max_size=5)),
    max_leaves=16)


@settings(max_examples=HYPOTHESIS_CASES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.dictionaries(st.sampled_from(DOC_KEYS), values, max_size=8), st.booleans())
def test_fuzz_schedule_documents(doc: dict, as_tables: bool) -> None:
    check(document(doc, as_tables))


# -- regressions: what the fuzz found ----------------------------------------------------------


def problem_at(text: str, line: int, field: str) -> str:
    """loads() refuses `text` with a problem at line `line`, field `field`; its text."""
    with pytest.raises(ScheduleError) as e:
        sched.loads(text, FILE, NOW)
    shown = [str(p) for p in e.value.problems]
    want = f"{FILE}:{line}: {field}: "
    assert any(s.startswith(want) for s in shown), f"no {want!r} in {shown}"
    return next(s for s in shown if s.startswith(want))


def bug(name: str, reason: str) -> pytest.MarkDecorator:
    """xfail, strict, for a known bug: its exception, or the test's assertion."""
    kind = KNOWN_BUGS[name][0]
    raises = (AssertionError,) if kind is None else (kind, AssertionError)
    return pytest.mark.xfail(raises=raises, strict=True, reason=f"host/schedule.py: {reason}")


@pytest.mark.parametrize(("text", "line", "field"), [
    (HEAD + "[continuous]\ndose = 1e999999999\n", 4, "continuous.dose"),
    (HEAD + "[taper]\ntarget = 1e999999\ndays = 21\n", 4, "taper.target"),
    (HEAD + '[flex]\nutc_offset = "+01:00"\nsteps = [{start = "06:00", dose = 1e9999999}, '
     '{start = "20:00", dose = 480}]\n', 5, "flex.steps[1].dose"),
    (HEAD + '[continuous]\ndose = 400\n[patient_bolus]\ndose = 1e999999\n'
     'duration = "10 min"\nlockout = "4 h"\nmax_per_day = 3\n', 6, "patient_bolus.dose"),
], ids=["continuous", "taper", "flex-step", "patient-bolus"])
def test_regression_a_dose_with_a_huge_exponent(text: str, line: int, field: str) -> None:
    assert "over the pump's greatest" in problem_at(text, line, field)


@pytest.mark.parametrize("zone", ["Europe", "America", "a" * 300],
                         ids=["folder", "folder-2", "name-too-long"])
def test_regression_a_time_zone_that_is_a_folder_or_too_long(zone: str) -> None:
    text = HEAD + f'[flex]\ntimezone = "{zone}"\n' + STEPS
    assert "is not a time zone" in problem_at(text, 4, "flex.timezone")


@pytest.mark.parametrize("value", ["[" * 3000 + "]" * 3000, "{a = " * 2000 + "1" + "}" * 2000],
                         ids=["arrays", "inline-tables"])
def test_regression_deeply_nested_values(value: str) -> None:
    with pytest.raises(ScheduleError) as e:
        sched.loads(HEAD + f"description = {value}\n[continuous]\ndose = 400\n", FILE, NOW)
    assert str(e.value).startswith(f"{FILE}:"), str(e.value)


@pytest.mark.parametrize("number", ["9" * 5000, "0x" + "f" * 4000], ids=["decimal", "hex"])
def test_regression_an_integer_too_long_for_python(number: str) -> None:
    with pytest.raises(ScheduleError) as e:
        sched.loads(HEAD + f"[taper]\ntarget = 200\ndays = {number}\n", FILE, NOW)
    assert str(e.value).startswith(f"{FILE}:5"), str(e.value)[:200]


@pytest.mark.parametrize(("text", "line", "field"), [
    ('drug = "baclofen"\nconcentration = 1e100000\n[continuous]\ndose = 400\n', 2,
     "concentration"),
    (HEAD + "[continuous]\ndose = 1e100000\n", 4, "continuous.dose"),
], ids=["concentration", "dose"])
def test_regression_a_short_number_gives_a_short_message(text: str, line: int,
                                                         field: str) -> None:
    assert len(problem_at(text, line, field)) < 300


def test_known_bugs_each_have_a_regression_test() -> None:
    tests = {name for name, obj in globals().items()
             if name.startswith("test_regression_") and callable(obj)}
    marks = set()
    for name in tests:
        for mark in getattr(globals()[name], "pytestmark", []):
            if mark.name == "xfail":
                marks.add(mark.kwargs["reason"])
    assert len(marks) == len(KNOWN_BUGS), (marks, list(KNOWN_BUGS))


# -- the fuzz itself can fail ------------------------------------------------------------------


def test_check_catches_a_crash_a_bad_line_and_a_bad_round_trip(monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    good = (EXAMPLES / "continuous.toml").read_text(encoding="utf-8")
    assert check(good) == "ok" and check("x = [") == "problems"

    def patched(fn: Callable[..., object]) -> Callable[..., object]:
        monkeypatch.setattr(sched, "loads", fn)
        return fn

    real = sched.loads

    @patched
    def crashes(text: str, file: str = FILE, now: datetime | None = None) -> Schedule:
        raise KeyError("a new bug")

    with pytest.raises(pytest.fail.Exception, match="crashed"):
        check(good)

    @patched
    def bad_line(text: str, file: str = FILE, now: datetime | None = None) -> Schedule:
        raise ScheduleError([sched.Problem(file, 999, ("drug",), "wrong")])

    with pytest.raises(AssertionError, match="line 999"):
        check(good)

    @patched
    def rambles(text: str, file: str = FILE, now: datetime | None = None) -> Schedule:
        raise ScheduleError([sched.Problem(file, 1, ("drug",), "x" * (30 * len(text) + 3000))])

    with pytest.raises(pytest.fail.Exception, match="out of all proportion"):
        check(good)

    @patched
    def drifts(text: str, file: str = FILE, now: datetime | None = None) -> Schedule:
        s = real(text, file, now)
        if file == "again.toml":
            return Schedule(**{**s.__dict__, "concentration": s.concentration + 1})
        return s

    with pytest.raises(AssertionError, match="changed the schedule"):
        check(good)
