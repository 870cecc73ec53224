"""Typed exceptions: one per way the link can fail, one per protocol error code."""

from __future__ import annotations

from datetime import UTC, datetime

from host.units import duration, fmt, ng_to_mcg, nl_to_ml
from protocol import messages as m


class PumpError(Exception):
    """Anything that stops a command from completing. `exit_code` is what pumpctl returns."""

    exit_code = 1


# --- the link ------------------------------------------------------------------------------


class LinkError(PumpError):
    exit_code = 3


class PortNotFound(LinkError):
    """The port does not exist (no board attached, wrong name, nothing listening)."""


class PortBusy(LinkError):
    """Another program holds the port."""


class NoResponse(LinkError):
    """The port opened but nothing answered in time."""


class PortLost(LinkError):
    """The port went away while a command was in flight."""


class GarbledResponse(LinkError):
    """Bytes came back that are not valid intrapump frames."""


class OutcomeUnknown(LinkError):
    """A command was sent, its answer lost, and the pump rebooted or gave the session to
    another host: it may or may not have run. Nothing is resent; check status and the log."""


class UnexpectedResponse(LinkError):
    """A valid frame of the wrong type answered the request."""


class MissingKey(PumpError):
    """The host has no key for the role a request needs: nothing was sent."""

    exit_code = 2


# --- the pump said no ----------------------------------------------------------------------

# Each clinical rule (protocol/messages.py RULES): its id, unit and where it comes from.
RULE_NAMES: dict[int, str] = {rid: name for rid, name, _unit, _src in m.RULES}
RULE_UNITS: dict[str, str] = {name: unit for _rid, name, unit, _src in m.RULES}
RULE_SOURCES: dict[str, str] = {name: src for _rid, name, _unit, src in m.RULES}
_PHASES = dict(m.ENUMS["phase"])


def rule_name(rule: str | int | None) -> str | None:
    """A rule as the error and the log carry it (id, name or "none") -> its name, or None."""
    if rule is None or rule == 0 or rule == "none":
        return None
    if isinstance(rule, int):
        return RULE_NAMES.get(rule, f"rule_{rule}")
    return rule


def rule_source(rule: str) -> str:
    """Where a rule comes from, for people: 'label 2.5', 'patient profile', 'pump'."""
    src = RULE_SOURCES.get(rule, "")
    if src[:1].isdigit() or src.startswith("boxed"):
        return f"label {src}"
    return {"profile": "patient profile"}.get(src, src)


def show_value(value: int, unit: str) -> str:
    """A requested or allowed value, given in the rule's wire unit, as a clinician reads it:
    ng/day as mcg/day, ng as mcg, nL as mL, seconds as a duration."""
    if unit == "ng/day":
        return f"{fmt(ng_to_mcg(value))} mcg/day"
    if unit == "ng":
        return f"{fmt(ng_to_mcg(value))} mcg"
    if unit == "nL":
        return f"{fmt(nl_to_ml(value), 6)} mL"
    if unit == "nL/day":
        return f"{fmt(nl_to_ml(value), 6)} mL/day"
    if unit == "s":
        return duration(value)
    if unit == "years":
        return f"{value} years"
    if unit == "date":  # s since 1970 (UTC), as the pump clock
        return show_date(value)
    return f"{value} {unit}".rstrip()


def show_date(seconds: int) -> str:
    """A date on the pump's clock: '2027-06-01' at midnight UTC, else with its time."""
    t = datetime.fromtimestamp(seconds, UTC)
    return f"{t:%Y-%m-%d}" if not seconds % 86400 else f"{t:%Y-%m-%d %H:%M} UTC"


class ProtocolError(PumpError):
    """The pump refused a request or could not read it. `code` is the protocol error code;
    a refusal by a clinical rule names it (`rule`, else None) with the value asked for and
    the limit (`requested`, `allowed`, in the rule's unit: RULE_UNITS), and `wait_s` says
    how long until it may be allowed (TOO_SOON)."""

    exit_code = 4
    code = 0

    def __init__(
        self,
        reason: str,
        request_type: int = 0,
        rule: str | int | None = None,
        requested: int = 0,
        allowed: int = 0,
        wait_s: int = 0,
    ):
        super().__init__(reason)
        self.reason = reason
        self.request_type = request_type
        self.rule = rule_name(rule)
        self.requested = requested
        self.allowed = allowed
        self.wait_s = wait_s

    @property
    def name(self) -> str:
        return ERROR_NAME.get(self.code, f"CODE_{self.code}")

    @property
    def unit(self) -> str:
        """The unit of requested and allowed ('' when they carry no quantity)."""
        return RULE_UNITS.get(self.rule, "") if self.rule else ""

    @property
    def request(self) -> str | None:
        """The refused request's message name, if the pump said which."""
        row = m.find(self.request_type) if self.request_type else None
        return row[1] if row else None

    def detail(self) -> str:
        """The values, as a clinician reads them: 'asked 140 mcg/day, at most 130 mcg/day'
        ('' when the rule carries none)."""
        rule = self.rule
        if rule is None:
            return ""
        if rule == "phase":
            asked = _PHASES.get(self.requested, str(self.requested))
            need = _PHASES.get(self.allowed, str(self.allowed))
            return f"phase {asked}, needs {need}"
        unit = self.unit
        if not unit or self.requested == self.allowed == 0:
            return ""
        asked, limit = show_value(self.requested, unit), show_value(self.allowed, unit)
        if rule == "drain_mismatch":
            return f"drained {asked}, expected {limit}"
        if rule == "concentration" and self.code == m.ERR_NOT_CONFIRMED:
            return f"entered {asked}, then {limit}"
        if rule == "custom_concentration":
            return f"asked {asked}"
        if rule == "patient_bolus_lockout":
            return f"lockout {limit}"
        if rule == "brain_injury_wait":
            if self.code == m.ERR_TOO_SOON:
                return f"brain injury {asked}: therapy may start on {limit}"
            return f"brain injury {asked} is after the pump's clock ({limit})"
        if self.code == m.ERR_TOO_SOON and self.requested <= self.allowed:
            return f"asked {asked}"
        bound = "at least" if self.requested < self.allowed else "at most"
        text = f"asked {asked}, {bound} {limit}"
        if self.code == m.ERR_NOT_CONFIRMED:
            text += " without confirmation"
        elif self.code == m.ERR_TOO_SOON:
            text += " now"
        return text

    def __str__(self) -> str:
        wait = f"; allowed in {duration(self.wait_s)}" if self.wait_s else ""
        if self.rule is None:
            return f"pump refused ({self.name}): {self.reason}{wait}"
        source = rule_source(self.rule)
        detail = self.detail()
        reason = self.reason.removesuffix(f" ({source})")  # said once is enough
        if detail:
            return (f"pump refused ({self.name} {self.rule}): {detail} ({source}): "
                    f"{reason}{wait}")
        return f"pump refused ({self.name} {self.rule}, {source}): {reason}{wait}"

    def to_dict(self) -> dict[str, object]:
        """For --json: the code, the request, the rule with its raw values and unit."""
        return {
            "code": self.name,
            "request": self.request,
            "rule": self.rule,
            "requested": self.requested,
            "allowed": self.allowed,
            "unit": self.unit,
            "wait_s": self.wait_s,
            "reason": self.reason,
        }


class Oversize(ProtocolError):
    code = m.ERR_OVERSIZE


class Truncated(ProtocolError):
    code = m.ERR_TRUNCATED


class BadCrc(ProtocolError):
    code = m.ERR_BAD_CRC


class BadCobs(ProtocolError):
    code = m.ERR_BAD_COBS


class BadVersion(ProtocolError):
    code = m.ERR_BAD_VERSION


class UnknownType(ProtocolError):
    code = m.ERR_UNKNOWN_TYPE


class BadLength(ProtocolError):
    code = m.ERR_BAD_LENGTH


class OutOfRange(ProtocolError):
    code = m.ERR_OUT_OF_RANGE


class BadFlags(ProtocolError):
    code = m.ERR_BAD_FLAGS


class NotConfirmed(ProtocolError):
    code = m.ERR_NOT_CONFIRMED


class InvalidState(ProtocolError):
    code = m.ERR_INVALID_STATE


class Internal(ProtocolError):
    code = m.ERR_INTERNAL


class AuthRequired(ProtocolError):
    code = m.ERR_AUTH_REQUIRED


class NoSession(ProtocolError):
    code = m.ERR_NO_SESSION


class NoKey(ProtocolError):
    """The pump has no key for the role."""

    code = m.ERR_NO_KEY


class BadTag(ProtocolError):
    code = m.ERR_BAD_TAG


class Replay(ProtocolError):
    code = m.ERR_REPLAY


class WrongRole(ProtocolError):
    code = m.ERR_WRONG_ROLE


class Limit(ProtocolError):
    """A clinical limit refuses it: see rule, requested and allowed."""

    code = m.ERR_LIMIT


class TooSoon(ProtocolError):
    """Not yet: see wait_s (and rule, requested, allowed)."""

    code = m.ERR_TOO_SOON


class Locked(ProtocolError):
    """The role is locked out after repeated bad tags (someone on the link signing with a
    wrong key, or this host's key out of date): nothing signed in that role is looked at for
    wait_s seconds. Therapy goes on; the pump logs the lockout."""

    code = m.ERR_LOCKED


class Busy(ProtocolError):
    """CHALLENGE refused for wait_s seconds: too many sessions were opened and not used, or
    every session slot holds a role's latest session in use (firmware/core/guard.py)."""

    code = m.ERR_BUSY


ERROR_NAME: dict[int, str] = {code: name for code, name, _ in m.ERRORS}
BY_CODE: dict[int, type[ProtocolError]] = {
    cls.code: cls for cls in ProtocolError.__subclasses__()
}


def from_code(
    code: int,
    reason: str,
    request_type: int = 0,
    rule: str | int | None = None,
    requested: int = 0,
    allowed: int = 0,
    wait_s: int = 0,
) -> ProtocolError:
    """The exception for an ERROR answer's fields."""
    cls = BY_CODE.get(code)
    if cls is None:
        err = ProtocolError(reason, request_type, rule, requested, allowed, wait_s)
        err.code = code
        return err
    return cls(reason, request_type, rule, requested, allowed, wait_s)
