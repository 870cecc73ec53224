"""Schedule files: a pump's therapy written down as TOML, checked before anything is sent.

`pumpctl program FILE` reads one (host/cli/program.py), shows it beside the program in force
and sends it once the user confirms. The format (examples/schedules/ has commented files):

    drug = "baclofen"              # required; baclofen only (label 2.3)
    concentration = 500            # required, mcg/mL: what the reservoir holds now
    description = "night +20 %"    # optional, shown in the review

    # exactly one program: [continuous], [flex] or [taper]
    [continuous]
    dose = 400                     # mcg/day

    [flex]                         # a day of steps, each from its start to the next one's
    timezone = "Europe/Berlin"     # IANA name, resolved to its UTC offset now; or
    # utc_offset = "+01:00"        # a fixed offset (exactly one of the two)
    [[flex.steps]]                 # 2 to 24 steps, in rising order of start
    start = "06:00"                # local time, HH:MM (a TOML time 06:00:00 works too)
    dose = 400                     # mcg/day while the step runs
    [[flex.steps]]
    start = "20:00"
    dose = 480
    # or on one line: steps = [{start = "06:00", dose = 400}, {start = "20:00", dose = 480}]

    [taper]                        # a drug holiday from the dose in force (label 2.6)
    target = 200                   # mcg/day at the end
    days = 21                      # 14 to 28

    [patient_bolus]                # optional; absent: the pump's settings stay as they are
    dose = 20                      # mcg per bolus
    duration = "10 min"            # over how long each is given
    lockout = "4 h"                # from one to the next
    max_per_day = 3                # in any 24 h
    # enabled = false              # patient boluses off (other keys may stay; not sent)

    [bolus]                        # optional host defaults
    duration = "10 min"            # a clinician bolus's default duration (not sent)

Units: a dose is a number in mcg/day (programs) or mcg (boluses), or a string naming that
unit ("400 mcg/day"); any other unit is refused, never converted. A duration is a string with
its unit: "90 s", "10 min", "4 h" (a bare number could be minutes or hours: refused).
Numbers are read as decimals, exactly (0.001 mcg is the pump's resolution).

Confirmations are not part of the file: a file that pre-confirmed a high dose or a large cut
would confirm it silently every time it is sent. A `confirm` key is refused; the review
asks at the terminal, and a script pairs --yes with an explicit --confirm NAME.

Every problem names the file, the line and the field, e.g.
`schedule.toml:12: flex.steps[2].dose: 1200 mcg/day is over the profile's hard ceiling
1000 mcg/day`; steps count from 1 (flex.steps[1] is the first). All problems are collected
(ScheduleError.problems), not just the first. load()/loads() check everything that needs no
pump; check_with_pump() what needs its state (reservoir concentration, profile, program in
force). The pump stays the guard: these checks are a convenience.
"""

from __future__ import annotations

import difflib
import re
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import MAX_EMAX, MIN_EMIN, Decimal, localcontext
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from firmware.core import schedule as day
from host.client import Profile, Program, Status
from host.units import duration, fmt
from protocol import messages as m

KeyPath = tuple[str | int, ...]

DRUGS = tuple(label for _value, label in m.ENUMS["drug"])
PROGRAMS = ("continuous", "flex", "taper")
MAX_CONCENTRATION = 2000  # mcg/mL (label 2.3; firmware/core/rules.py)


def _range(message: str, name: str) -> tuple[int, int]:
    """A field's (low, high) in the message table (protocol/messages.py)."""
    for _type, msg, _kind, fields, _doc in m.MESSAGES:
        if msg == message:
            for f in fields:
                if f[0] == name:
                    return int(f[2] or 0), int(f[3] or 0)
    raise KeyError(f"{message}.{name}")


DOSE_MIN_NG, DOSE_MAX_NG = _range("SET_CONTINUOUS", "daily_dose_ng")
STEPS_MIN, STEPS_MAX = _range("SET_FLEX", "steps")
OFFSET_MIN, OFFSET_MAX = _range("SET_FLEX", "utc_offset_min")
TAPER_DAYS_MIN, TAPER_DAYS_MAX = _range("SET_TAPER", "days")
PB_DOSE_MAX_NG = _range("SET_PATIENT_BOLUS", "dose_ng")[1]
PB_DURATION_MIN_S, PB_DURATION_MAX_S = _range("SET_PATIENT_BOLUS", "duration_s")
PB_LOCKOUT_MIN_S, PB_LOCKOUT_MAX_S = _range("SET_PATIENT_BOLUS", "lockout_s")
PB_MAX_PER_DAY = _range("SET_PATIENT_BOLUS", "max_per_day")[1]
BOLUS_MIN_S, BOLUS_MAX_S = _range("BOLUS", "duration_s")


# -- problems ----------------------------------------------------------------------------------


def show_path(path: KeyPath) -> str:
    """A key path as people read it: flex.steps[2].dose (array items counted from 1)."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part + 1}]"
        else:
            key = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else f'"{part}"'
            text += f".{key}" if text else key
    return text


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a schedule file: where (line: None when it is not in the file)
    and what."""

    file: str
    line: int | None
    path: KeyPath
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field_ = show_path(self.path)
        return f"{where}: {field_}: {self.message}" if field_ else f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "field": show_path(self.path),
                "message": self.message}


class ScheduleError(Exception):
    """A schedule file that cannot be sent: every problem found, in line order."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = sorted(problems, key=lambda p: p.line or 0)
        super().__init__(self.text())

    def text(self) -> str:
        if len(self.problems) == 1:
            return f"{self.problems[0]} (nothing sent)"
        file = self.problems[0].file if self.problems else "schedule"
        return "\n".join([f"{file}: {len(self.problems)} problems, nothing sent:"]
                         + [str(p) for p in self.problems])


# -- the locator: where a key path is in the source --------------------------------------------


class _Scanner:
    """Walks TOML source (already known to be valid: tomllib read it) and notes the line of
    every key, table header and array item by its key path. Array items and array-of-tables
    entries are numbered from 0, as in the parsed data."""

    BARE = re.compile(r"[A-Za-z0-9_-]+")

    def __init__(self, text: str):
        self.s = text
        self.i = 0
        self.line = 1
        self.lines: dict[KeyPath, int] = {}
        self.aot: dict[KeyPath, int] = {}  # array of tables -> its index now

    def peek(self, n: int = 1) -> str:
        return self.s[self.i:self.i + n]

    def skip(self, n: int) -> None:
        self.line += self.s.count("\n", self.i, self.i + n)
        self.i += n

    def blank(self, newlines: bool) -> None:
        """Skip spaces and comments (and newlines, if they may come here)."""
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in " \t\r" or (c == "\n" and newlines):
                self.skip(1)
            elif c == "#":
                end = self.s.find("\n", self.i)
                self.i = len(self.s) if end < 0 else end
            else:
                return

    def note(self, path: KeyPath, line: int) -> None:
        self.lines.setdefault(path, line)

    def string(self) -> str:
        """A string at i (basic, literal, or either multi-line); its text, roughly decoded."""
        quote = self.peek(3) if self.peek(3) in ('"""', "'''") else self.peek()
        start = self.i + len(quote)
        j = start
        while j < len(self.s):
            if quote[0] == '"' and self.s[j] == "\\":
                j += 2
                continue
            if self.s.startswith(quote, j):
                while len(quote) == 3 and self.s.startswith(quote[0], j + 3):
                    j += 1  # a multi-line string may end in up to two more quotes
                break
            j += 1
        text = self.s[start:j]
        self.skip(j + len(quote) - self.i)
        return text

    def key(self) -> tuple[str, ...]:
        parts: list[str] = []
        while True:
            self.blank(False)
            if self.peek() in ('"', "'"):
                parts.append(self.string())
            else:
                match = self.BARE.match(self.s, self.i)
                if not match:
                    break
                parts.append(match.group())
                self.skip(match.end() - self.i)
            self.blank(False)
            if self.peek() != ".":
                break
            self.skip(1)
        return tuple(parts)

    def resolve(self, keys: tuple[str, ...]) -> KeyPath:
        """A header's keys as a path, with the index now of each array of tables on it."""
        path: KeyPath = ()
        for k in keys:
            path += (k,)
            if path in self.aot:
                path += (self.aot[path],)
        return path

    def value(self, path: KeyPath) -> None:
        c = self.peek()
        if c == "[":
            self.skip(1)
            n = 0
            while self.i < len(self.s):
                self.blank(True)
                if self.peek() in ("]", ""):
                    self.skip(1)
                    return
                if self.peek() == ",":
                    self.skip(1)
                    continue
                self.note(path + (n,), self.line)
                self.value(path + (n,))
                n += 1
        elif c == "{":
            self.skip(1)
            while self.i < len(self.s):
                self.blank(True)
                if self.peek() in ("}", ""):
                    self.skip(1)
                    return
                if self.peek() == ",":
                    self.skip(1)
                    continue
                self.pair(path)
        elif c in ('"', "'"):
            self.string()
        else:  # a number, a boolean, a date or a time
            start = self.i
            while self.i < len(self.s) and self.s[self.i] not in ",]}\n#":
                self.i += 1
            if self.i == start:
                self.skip(1)  # never stuck

    def pair(self, table: KeyPath) -> None:
        line = self.line
        start = self.i
        keys = self.key()
        for n in range(1, len(keys) + 1):
            self.note(table + keys[:n], line)
        self.blank(False)
        if self.peek() == "=":
            self.skip(1)
            self.blank(False)
            self.value(table + keys)
        elif self.i == start:
            self.skip(1)  # never stuck

    def document(self) -> dict[KeyPath, int]:
        table: KeyPath = ()
        while True:
            self.blank(True)
            if self.i >= len(self.s):
                return self.lines
            line = self.line
            if self.peek(2) == "[[":
                self.skip(2)
                keys = self.key()
                whole = self.resolve(keys[:-1]) + keys[-1:]
                self.aot[whole] = self.aot.get(whole, -1) + 1
                table = whole + (self.aot[whole],)
                for n in range(1, len(table) + 1):
                    self.note(table[:n], line)
                self.blank(False)
                self.skip(len(self.peek(2)) if self.peek(2) == "]]" else 0)
            elif self.peek() == "[":
                self.skip(1)
                table = self.resolve(self.key())
                for n in range(1, len(table) + 1):
                    self.note(table[:n], line)
                self.blank(False)
                self.skip(1 if self.peek() == "]" else 0)
            else:
                self.pair(table)


def locate(text: str) -> dict[KeyPath, int]:
    """The line (from 1) of every key path in TOML source: keys, tables, array items.
    ("flex", "steps", 1, "dose") is the dose of the second step, written as [[flex.steps]]
    tables or as an inline array alike. Meant for source tomllib has read."""
    try:
        return _Scanner(text).document()
    except (IndexError, ValueError, RecursionError):  # pragma: no cover - valid TOML only
        return {}


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """The line of a key path, or of the nearest enclosing one that is in the file."""
    for n in range(len(path), 0, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return None


# -- what a schedule file holds ----------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    start_min: int  # minute of the local day
    dose_ng: int  # ng/day while the step runs

    @property
    def start(self) -> str:
        return f"{self.start_min // 60:02d}:{self.start_min % 60:02d}"


@dataclass(frozen=True)
class Taper:
    target_ng: int  # ng/day at the end
    days: int


@dataclass(frozen=True)
class PatientBolusLimits:
    dose_ng: int  # per bolus; 0: patient boluses off
    duration_s: int = 600
    lockout_s: int = 0
    max_per_day: int = 0

    @property
    def enabled(self) -> bool:
        return self.dose_ng > 0


PATIENT_BOLUS_OFF = PatientBolusLimits(0)


@dataclass(frozen=True)
class Schedule:
    drug: str
    concentration: int  # mcg/mL
    mode: str  # continuous, flex or taper
    steps: tuple[Step, ...] = ()  # continuous: one step at 00:00; taper: none
    utc_offset_min: int = 0
    timezone: str | None = None  # the IANA name the offset came from, if any
    taper: Taper | None = None
    patient_bolus: PatientBolusLimits | None = None  # None: left as the pump has them
    bolus_duration_s: int | None = None  # a clinician bolus's default (host-side)
    description: str = ""
    # Where it came from; not part of what the schedule is.
    file: str = field(default="schedule.toml", compare=False)
    lines: dict[KeyPath, int] = field(default_factory=dict, compare=False, repr=False)
    zone_note: str = field(default="", compare=False)

    @property
    def daily_ng(self) -> int | None:
        """The day's dose in ng (a flex day's integral, rounded up as the pump does); None
        for a taper (it starts from the dose in force)."""
        if not self.steps:
            return None
        return day.daily_dose([(s.start_min, s.dose_ng) for s in self.steps])

    def line(self, path: KeyPath) -> int | None:
        return line_of(self.lines, path)

    def problem(self, path: KeyPath, message: str) -> Problem:
        return Problem(self.file, self.line(path), path, message)


# -- reading -----------------------------------------------------------------------------------


def mcg(ng: int, unit: str = "mcg") -> str:
    return f"{fmt(Decimal(ng) / 1000)} {unit}"


def mcg_day(ng: int) -> str:
    return mcg(ng, "mcg/day")


def _whole(number: Decimal, places: int = 0) -> bool:
    """Whether number x 10**places is a whole number, read from its digits: exact however
    many digits it has and whatever its exponent (arithmetic in the default context rounds
    past 28 digits and overflows past 1E+999999)."""
    _sign, digits, exp = number.as_tuple()
    if not isinstance(exp, int):  # infinity, NaN
        return False
    shift = exp + places
    return shift >= 0 or not any(digits[shift:])


def _show(value: Decimal | int) -> str:
    """A number from the file, for a message: as fmt() writes it when that is exact and short
    (400, 412.5), else as Decimal writes it (0.0001, 1E+100000), its middle cut out past 40
    characters (99999999999999999999...999999999999 (5000 digits)): a short number in a file
    must never make a long message (fmt(1E+100000) is 100,000 digits)."""
    number = Decimal(value)
    if _whole(number, 3) and number.adjusted() < 15:
        return fmt(number)
    text = str(number)  # never str(int): past 4300 digits it raises
    if len(text) <= 40:
        return text
    return f"{text[:20]}...{text[-12:]} ({len(number.as_tuple().digits)} digits)"


def _said(value: object) -> str:
    """A value from the file, for a message: text quoted (cut short past 40 characters),
    anything else as _kind() names it."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else f"{value[:40]!r}... ({len(value)} characters)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return _kind(value)


_QUANTITY = re.compile(r"\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(\S+)\s*")
_DURATION_UNITS = {"s": 1, "min": 60, "h": 3600}
_TOML_ERROR_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


class _Reader:
    def __init__(self, file: str, lines: dict[KeyPath, int]):
        self.file = file
        self.lines = lines
        self.problems: list[Problem] = []

    def bad(self, path: KeyPath, message: str) -> None:
        self.problems.append(Problem(self.file, line_of(self.lines, path), path, message))

    def table(self, value: object, path: KeyPath) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.bad(path, f"a table is needed here ([{show_path(path)}]), not {_kind(value)}")
        return None

    def keys(self, table: dict[str, Any], path: KeyPath, allowed: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(allowed)}"
                self.bad(path + (key,), f"unknown key ({hint})")

    def require(self, table: dict[str, Any], path: KeyPath, key: str, example: str) -> bool:
        if key in table:
            return True
        self.bad(path + (key,), f"missing (e.g. {key} = {example})")
        return False

    def number(self, value: object, path: KeyPath, unit: str) -> Decimal | None:
        """A quantity in `unit`: a TOML number, or a string "N unit"."""
        if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
            self.bad(path, f"a number of {unit} is needed, not {_kind(value)}")
            return None
        if isinstance(value, str):
            match = _QUANTITY.fullmatch(value)
            if not match:
                self.bad(path, f"{_said(value)} is not a quantity: write e.g. 400 or "
                               f"\"400 {unit}\"")
                return None
            if match.group(2) != unit:
                self.bad(path, f"unit {match.group(2)}: this field takes {unit} "
                               "(units are never converted)")
                return None
            value = Decimal(match.group(1))
        number = Decimal(value)
        if not number.is_finite():
            self.bad(path, f"{value} is not a number of {unit}")
            return None
        return number

    def dose_ng(self, value: object, path: KeyPath, unit: str, low_ng: int,
                high_ng: int) -> int | None:
        number = self.number(value, path, unit)
        if number is None:
            return None
        # Checked on the number as written, before any arithmetic: 1E+999999999 x 1000
        # overflows, and int(1E+990000) takes most of a minute.
        if not _whole(number, 3):
            self.bad(path, f"{_show(number)} {unit} is finer than the pump's resolution, "
                           f"0.001 {unit}")
        elif number <= 0:
            self.bad(path, f"{_show(number)} {unit}: a dose must be more than 0")
        elif number < Decimal(low_ng) / 1000:
            self.bad(path, f"{_show(number)} {unit} is under the pump's least, "
                           f"{mcg(low_ng, unit)}")
        elif number > Decimal(high_ng) / 1000:
            self.bad(path, f"{_show(number)} {unit} is over the pump's greatest, "
                           f"{mcg(high_ng, unit)}")
        else:
            return int(number * 1000)  # exact: a whole number of ng, within the pump's range
        return None

    def seconds(self, value: object, path: KeyPath, low: int, high: int) -> int | None:
        """A duration: "90 s", "10 min", "4 h"."""
        if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
            self.bad(path, f"a duration is needed (e.g. \"10 min\"), not {_kind(value)}")
            return None
        if not isinstance(value, str):
            shown = _show(value)
            self.bad(path, f"{shown}: give the unit, e.g. \"{shown} min\" or \"{shown} h\"")
            return None
        match = _QUANTITY.fullmatch(value)
        if not match or match.group(2) not in _DURATION_UNITS:
            self.bad(path, f"{_said(value)} is not a duration: write e.g. \"90 s\", \"10 min\" or "
                           "\"4 h\"")
            return None
        number = Decimal(match.group(1))  # digits and a point: no exponent
        # Exactly, however many digits (the default context rounds past 28: "1.000...01 h"
        # would pass as 3600 s).
        with localcontext(prec=len(number.as_tuple().digits) + 5, Emax=MAX_EMAX,
                          Emin=MIN_EMIN):
            s = number * _DURATION_UNITS[match.group(2)]
        given = f"{_show(number)} {match.group(2)}"
        if not _whole(s):
            self.bad(path, f"{given} is not a whole number of seconds")
            return None
        if not low <= s <= high:
            self.bad(path, f"{given} is outside {duration(low)} to {duration(high)}")
            return None
        return int(s)

    def integer(self, value: object, path: KeyPath, low: int, high: int, unit: str,
                why: str = "") -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.bad(path, f"a whole number of {unit} is needed, not {_kind(value)}")
            return None
        if not low <= value <= high:
            self.bad(path, f"{_show(value)} {unit}: {low} to {high}{why}")
            return None
        return value

    def minute(self, value: object, path: KeyPath) -> int | None:
        """A local time of day: "HH:MM", or a TOML time (06:00:00)."""
        if isinstance(value, time):
            if value.second or value.microsecond:
                self.bad(path, f"{value}: a step starts on a whole minute")
                return None
            return value.hour * 60 + value.minute
        match = re.fullmatch(r"(\d{1,2}):(\d{2})", value) if isinstance(value, str) else None
        if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
            self.bad(path, f"{_said(value)} is not a time of day: write \"HH:MM\", 00:00 to 23:59")
            return None
        return int(match.group(1)) * 60 + int(match.group(2))


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {_said(value)}"
    if isinstance(value, datetime | time):
        return f"the date/time {value}"
    if isinstance(value, int | Decimal):
        return _show(value)
    return f"{value}"


def zone_offset(name: str, now: datetime) -> tuple[int, str]:
    """An IANA time zone's UTC offset (minutes) at `now`, and a note saying which offset that
    is and when it next changes (the pump keeps one offset)."""
    zone = ZoneInfo(name)
    here = now.astimezone(zone)
    minutes = _minutes(here)
    note = f"{name} is UTC{_offset_text(minutes)} ({here.tzname()}) now"
    change = _next_change(zone, now, minutes)
    if change is not None:
        after = change.astimezone(zone)
        note += (f"; it changes to UTC{_offset_text(_minutes(after))} on "
                 f"{after:%Y-%m-%d %H:%M} {after.tzname()}: program the pump again then")
    return minutes, note


def _minutes(t: datetime) -> int:
    offset = t.utcoffset() or timedelta(0)
    return int(offset.total_seconds()) // 60


def _next_change(zone: ZoneInfo, now: datetime, minutes: int) -> datetime | None:
    """When the zone's offset next differs from `minutes`, within a year (to the minute)."""
    def moved(t: datetime) -> bool:
        return _minutes(t.astimezone(zone)) != minutes

    lo = now
    for days in range(1, 367):
        hi = now + timedelta(days=days)
        if moved(hi):
            while hi - lo > timedelta(minutes=1):
                mid = lo + (hi - lo) / 2
                if moved(mid):
                    hi = mid
                else:
                    lo = mid
            return hi.replace(second=0, microsecond=0)
        lo = hi
    return None


def _offset_text(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def parse_offset(text: str) -> int | None:
    """"+01:00", "-05:30", "+00:00" -> minutes; None if it is not one."""
    match = re.fullmatch(r"([+-])(\d{2}):(\d{2})", text)
    if not match or int(match.group(3)) > 59:
        return None
    minutes = int(match.group(2)) * 60 + int(match.group(3))
    return -minutes if match.group(1) == "-" else minutes


TOP_KEYS = ("drug", "concentration", "description", *PROGRAMS, "patient_bolus", "bolus",
            "confirm")


def loads(text: str, file: str = "schedule.toml", now: datetime | None = None) -> Schedule:
    """A schedule from TOML source; ScheduleError with every problem found. `now` (UTC, by
    default the host's clock) resolves a time zone to its offset."""
    try:
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        at = _TOML_ERROR_AT.search(message)
        line = int(at.group(1)) if at else None
        raise ScheduleError([Problem(file, line, (), f"not valid TOML: "
                                     f"{_TOML_ERROR_AT.sub('', message)}")]) from None
    except (RecursionError, ValueError, ArithmeticError) as e:  # what tomllib lets through
        raise ScheduleError([Problem(file, _toml_line(e), (), f"not valid TOML: "
                                     f"{_toml_failure(e)}")]) from None
    lines = locate(text)
    r = _Reader(file, lines)
    schedule = _read(r, data, now or datetime.now(UTC))
    if r.problems or schedule is None:
        raise ScheduleError(r.problems or [Problem(file, None, (), "not a schedule")])
    return Schedule(**{**schedule, "file": file, "lines": lines})


def _toml_failure(e: BaseException) -> str:
    """What an exception that escaped tomllib (not a TOMLDecodeError) says about the file."""
    if isinstance(e, RecursionError):
        return "values nested too deeply"
    if isinstance(e, ArithmeticError):  # Decimal: an exponent past 999999999999999999
        return "a number too large or too small to read"
    if "digits" in str(e):  # int(): more digits than sys.get_int_max_str_digits()
        return (f"a whole number too long to read (more than {sys.get_int_max_str_digits()} "
                "digits)")
    return "a value that cannot be read"


def _toml_line(e: BaseException) -> int | None:
    """The line tomllib was reading when `e` escaped it: the position in its innermost frame
    that has one (its parse functions take the source and a position, src and pos)."""
    src = pos = None
    tb = e.__traceback__
    while tb is not None:  # from the outermost frame in
        frame = tb.tb_frame
        if "tomllib" in frame.f_code.co_filename:
            here_src, here_pos = frame.f_locals.get("src"), frame.f_locals.get("pos")
            if isinstance(here_src, str) and isinstance(here_pos, int):
                src, pos = here_src, here_pos
        tb = tb.tb_next
    return None if src is None or pos is None else src.count("\n", 0, pos) + 1


def load(path: str | Path, now: datetime | None = None) -> Schedule:
    """A schedule file (see loads)."""
    name = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as e:
        reason = e.strerror or str(e)
        raise ScheduleError([Problem(name, None, (), f"cannot read it: {reason}")]) from None
    except UnicodeDecodeError as e:
        raise ScheduleError([Problem(name, None, (), f"not UTF-8 text ({e.reason} at byte "
                                     f"{e.start})")]) from None
    return loads(text, name, now)


def _read(r: _Reader, data: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    r.keys(data, (), TOP_KEYS)
    if "confirm" in data:
        r.bad(("confirm",), "a schedule file cannot pre-confirm a change: the review asks "
                            "(a script gives --yes with --confirm NAME)")
    if r.require(data, (), "drug", '"baclofen"'):
        drug = data["drug"]
        if drug not in DRUGS:
            r.bad(("drug",), f"{_said(drug)}: baclofen only, never compounded (label 2.3)")
        out["drug"] = drug
    if r.require(data, (), "concentration", "500"):
        number = r.number(data["concentration"], ("concentration",), "mcg/mL")
        if number is not None:
            if not _whole(number) or not 1 <= number <= MAX_CONCENTRATION:
                r.bad(("concentration",), f"{_show(number)} mcg/mL: a whole number from 1 to "
                                          f"{MAX_CONCENTRATION} mcg/mL (label 2.3)")
            else:
                out["concentration"] = int(number)
    if "description" in data:
        if isinstance(data["description"], str):
            out["description"] = data["description"]
        else:
            r.bad(("description",), f"text is needed, not {_kind(data['description'])}")

    programs = [k for k in PROGRAMS if k in data]
    if not programs:
        r.bad((), "no program: give one of [continuous], [flex] or [taper]")
    for extra in programs[1:]:
        r.bad((extra,), f"one program per file: [{programs[0]}] is given already")
    if programs:
        out["mode"] = programs[0]
        reader = {"continuous": _continuous, "flex": _flex, "taper": _taper}[programs[0]]
        table = r.table(data[programs[0]], (programs[0],))
        if table is not None:
            out.update(reader(r, table, now))
    if "patient_bolus" in data:
        table = r.table(data["patient_bolus"], ("patient_bolus",))
        if table is not None:
            out["patient_bolus"] = _patient_bolus(r, table)
    if "bolus" in data:
        table = r.table(data["bolus"], ("bolus",))
        if table is not None:
            r.keys(table, ("bolus",), ("duration",))
            if "duration" in table:
                out["bolus_duration_s"] = r.seconds(table["duration"], ("bolus", "duration"),
                                                    BOLUS_MIN_S, BOLUS_MAX_S)
    return None if r.problems else out


def _continuous(r: _Reader, t: dict[str, Any], _now: datetime) -> dict[str, Any]:
    r.keys(t, ("continuous",), ("dose",))
    if not r.require(t, ("continuous",), "dose", "400"):
        return {}
    dose = r.dose_ng(t["dose"], ("continuous", "dose"), "mcg/day", DOSE_MIN_NG, DOSE_MAX_NG)
    return {"steps": (Step(0, dose),)} if dose is not None else {}


def _flex(r: _Reader, t: dict[str, Any], now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {}
    r.keys(t, ("flex",), ("timezone", "utc_offset", "steps"))
    if "timezone" in t and "utc_offset" in t:
        r.bad(("flex", "utc_offset"), "give timezone or utc_offset, not both")
    elif "timezone" in t:
        name = t["timezone"]
        try:
            if not isinstance(name, str) or not name:
                raise ValueError(name)
            out["utc_offset_min"], out["zone_note"] = zone_offset(name, now)
            out["timezone"] = name
        # OSError: a folder of the zone database ("America"), a name too long for a file.
        except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
            r.bad(("flex", "timezone"), f"{_said(name)} is not a time zone this computer knows "
                                        "(an IANA name such as \"Europe/Berlin\"; or give "
                                        "utc_offset = \"+01:00\")")
    elif "utc_offset" in t:
        text = t["utc_offset"]
        minutes = parse_offset(text) if isinstance(text, str) else None
        if minutes is None:
            r.bad(("flex", "utc_offset"), f"{_said(text)} is not an offset: write \"+01:00\" or "
                                          "\"-05:30\"")
        elif not OFFSET_MIN <= minutes <= OFFSET_MAX:
            r.bad(("flex", "utc_offset"), f"{text} is outside {_offset_text(OFFSET_MIN)} to "
                                          f"{_offset_text(OFFSET_MAX)}")
        else:
            out["utc_offset_min"] = minutes
            out["zone_note"] = f"fixed offset UTC{text}"
    else:
        r.bad(("flex",), "say whose local time the steps are in: timezone = \"Europe/Berlin\" "
                         "or utc_offset = \"+01:00\"")
    if not r.require(t, ("flex",), "steps", '[{start = "06:00", dose = 400}, ...]'):
        return out
    raw = t["steps"]
    if not isinstance(raw, list):
        r.bad(("flex", "steps"), f"a list of steps is needed ([[flex.steps]] tables), not "
                                 f"{_kind(raw)}")
        return out
    if not STEPS_MIN <= len(raw) <= STEPS_MAX:
        hint = ": for one dose all day use [continuous]" if len(raw) == 1 else ""
        r.bad(("flex", "steps"), f"{len(raw)} steps: a flex day has {STEPS_MIN} to "
                                 f"{STEPS_MAX}{hint}")
    steps: list[Step | None] = []
    starts: list[int | None] = []
    for i, item in enumerate(raw):
        path: KeyPath = ("flex", "steps", i)
        st = r.table(item, path)
        start = dose = None
        if st is not None:
            r.keys(st, path, ("start", "dose"))
            if r.require(st, path, "start", '"06:00"'):
                start = r.minute(st["start"], path + ("start",))
            if r.require(st, path, "dose", "400"):
                dose = r.dose_ng(st["dose"], path + ("dose",), "mcg/day", DOSE_MIN_NG,
                                 DOSE_MAX_NG)
        starts.append(start)
        steps.append(Step(start, dose) if start is not None and dose is not None else None)
    last: int | None = None
    for i, start in enumerate(starts):
        if start is None:
            continue
        if last is not None and start <= last:
            r.bad(("flex", "steps", i, "start"), (
                f"{Step(start, 0).start} is not after the step before ({Step(last, 0).start})"
                ": steps go in rising order"))
        last = start
    if all(s is not None for s in steps):
        out["steps"] = tuple(s for s in steps if s is not None)
    return out


def _taper(r: _Reader, t: dict[str, Any], _now: datetime) -> dict[str, Any]:
    r.keys(t, ("taper",), ("target", "days"))
    target = days = None
    if r.require(t, ("taper",), "target", "200"):
        target = r.dose_ng(t["target"], ("taper", "target"), "mcg/day", DOSE_MIN_NG,
                           DOSE_MAX_NG)
    if r.require(t, ("taper",), "days", "21"):
        days = r.integer(t["days"], ("taper", "days"), TAPER_DAYS_MIN, TAPER_DAYS_MAX,
                         "days",
                         " (a drug holiday tapers over 2 to 4 weeks, label 2.6)")
    if target is None or days is None:
        return {}
    return {"taper": Taper(target, days)}


def _patient_bolus(r: _Reader, t: dict[str, Any]) -> PatientBolusLimits | None:
    path: KeyPath = ("patient_bolus",)
    r.keys(t, path, ("enabled", "dose", "duration", "lockout", "max_per_day"))
    enabled = t.get("enabled", True)
    if not isinstance(enabled, bool):
        r.bad(path + ("enabled",), f"true or false, not {_kind(enabled)}")
        return None
    if not enabled:
        return PATIENT_BOLUS_OFF
    need = (("dose", "20"), ("duration", '"10 min"'), ("lockout", '"4 h"'),
            ("max_per_day", "3"))
    given = {k: r.require(t, path, k, example) for k, example in need}
    dose = dur = lockout = most = None
    if given["dose"]:
        dose = r.dose_ng(t["dose"], path + ("dose",), "mcg", 1, PB_DOSE_MAX_NG)
    if given["duration"]:
        dur = r.seconds(t["duration"], path + ("duration",), PB_DURATION_MIN_S,
                        PB_DURATION_MAX_S)
    if given["lockout"]:
        lockout = r.seconds(t["lockout"], path + ("lockout",), PB_LOCKOUT_MIN_S,
                            PB_LOCKOUT_MAX_S)
    if given["max_per_day"]:
        most = r.integer(t["max_per_day"], path + ("max_per_day",), 1, PB_MAX_PER_DAY,
                         "boluses a day")
    if dose is None or dur is None or lockout is None or most is None:
        return None
    return PatientBolusLimits(dose, dur, lockout, most)


# -- against the pump's state ------------------------------------------------------------------


def check_with_pump(s: Schedule, status: Status, profile: Profile,
                    program: Program) -> list[Problem]:
    """What the pump's state makes wrong with a schedule (read before anything is sent)."""
    problems: list[Problem] = []
    conc = status.concentration_mcg_ml
    if conc == 0:
        problems.append(s.problem(("concentration",), "the reservoir holds no drug: refill "
                                  "first (pumpctl refill)"))
    elif conc != s.concentration:
        problems.append(s.problem(("concentration",), (
            f"the file says {s.concentration} mcg/mL but the reservoir holds {conc} mcg/mL: "
            "a concentration changes only through a refill (pumpctl refill)")))
    if profile.phase == "unset":
        problems.append(s.problem((), "the pump has no patient profile: set one first "
                                  "(pumpctl profile set)"))
        return problems
    if profile.phase == "screening":
        problems.append(s.problem((s.mode,), "the pump is in the screening phase: test "
                                  "boluses only, no program (label 2.2)"))
    ceiling = int(profile.ceiling_mcg_day * 1000)
    for i, step in enumerate(s.steps):
        if step.dose_ng > ceiling:
            path: KeyPath = ("continuous", "dose") if s.mode == "continuous" else (
                "flex", "steps", i, "dose")
            problems.append(s.problem(path, f"{mcg_day(step.dose_ng)} is over the profile's "
                                      f"hard ceiling {mcg_day(ceiling)}"))
    old = int(program.daily_dose_mcg * 1000)
    new = s.daily_ng
    if s.taper is not None:
        if old == 0:
            problems.append(s.problem(("taper",), "no program in force to taper from"))
        elif s.taper.target_ng >= old:
            problems.append(s.problem(("taper", "target"), (
                f"{mcg_day(s.taper.target_ng)} is not under the dose in force "
                f"{mcg_day(old)}: a taper steps down")))
        new = old
    pb = s.patient_bolus
    if pb is not None and pb.enabled and new is not None and new <= ceiling:
        room = ceiling - new
        if pb.dose_ng * pb.max_per_day > room:
            problems.append(s.problem(("patient_bolus", "dose"), (
                f"{pb.max_per_day} x {mcg(pb.dose_ng)} a day on top of {mcg_day(new)} would "
                f"pass the hard ceiling {mcg_day(ceiling)}: at most "
                f"{mcg(room // pb.max_per_day)} each")))
    return problems


# -- writing -----------------------------------------------------------------------------------


def _number(ng: int) -> str:
    return fmt(Decimal(ng) / 1000)


def _span(seconds: int) -> str:
    if seconds % 3600 == 0 and seconds:
        return f'"{seconds // 3600} h"'
    if seconds % 60 == 0 and seconds:
        return f'"{seconds // 60} min"'
    return f'"{seconds} s"'


def dumps(s: Schedule) -> str:
    """A schedule as a file loads() reads back to the same schedule."""
    out = ["# intrapump schedule (host/schedule.py)", f'drug = "{s.drug}"',
           f"concentration = {s.concentration}  # mcg/mL"]
    if s.description:
        out.append("description = " + _toml_string(s.description))
    if s.mode == "continuous":
        out += ["", "[continuous]", f"dose = {_number(s.steps[0].dose_ng)}  # mcg/day"]
    elif s.mode == "flex":
        out += ["", "[flex]"]
        out.append(f'timezone = "{s.timezone}"' if s.timezone
                   else f'utc_offset = "{_offset_text(s.utc_offset_min)}"')
        for step in s.steps:
            out += ["", "[[flex.steps]]", f'start = "{step.start}"',
                    f"dose = {_number(step.dose_ng)}  # mcg/day"]
    elif s.taper is not None:
        out += ["", "[taper]", f"target = {_number(s.taper.target_ng)}  # mcg/day",
                f"days = {s.taper.days}"]
    pb = s.patient_bolus
    if pb is not None:
        out += ["", "[patient_bolus]"]
        if pb.enabled:
            out += [f"dose = {_number(pb.dose_ng)}  # mcg", f"duration = {_span(pb.duration_s)}",
                    f"lockout = {_span(pb.lockout_s)}", f"max_per_day = {pb.max_per_day}"]
        else:
            out.append("enabled = false")
    if s.bolus_duration_s is not None:
        out += ["", "[bolus]", f"duration = {_span(s.bolus_duration_s)}"]
    return "\n".join(out) + "\n"


def _toml_string(text: str) -> str:
    escaped = "".join(
        {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(c, c)
        if " " <= c != "\x7f" or c in "\n\t\r" else f"\\u{ord(c):04x}" for c in text
    )
    return f'"{escaped}"'
