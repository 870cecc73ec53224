"""Typed exceptions: one per way the link can fail, one per protocol error code."""

from __future__ import annotations

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
    """A command was sent, its answer lost, and the pump rebooted: it may or may not have
    run. Nothing is resent; check status and the event log."""


class UnexpectedResponse(LinkError):
    """A valid frame of the wrong type answered the request."""


class MissingKey(PumpError):
    """The host has no key for the role a request needs: nothing was sent."""

    exit_code = 2


# --- the pump said no ----------------------------------------------------------------------


class ProtocolError(PumpError):
    """The pump refused a request or could not read it. `code` is the protocol error code."""

    exit_code = 4
    code = 0

    def __init__(self, reason: str, request_type: int = 0):
        super().__init__(reason)
        self.reason = reason
        self.request_type = request_type

    @property
    def name(self) -> str:
        return ERROR_NAME.get(self.code, f"CODE_{self.code}")

    def __str__(self) -> str:
        return f"pump refused ({self.name}): {self.reason}"


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


ERROR_NAME: dict[int, str] = {code: name for code, name, _ in m.ERRORS}
BY_CODE: dict[int, type[ProtocolError]] = {
    cls.code: cls for cls in ProtocolError.__subclasses__()
}


def from_code(code: int, reason: str, request_type: int = 0) -> ProtocolError:
    cls = BY_CODE.get(code)
    if cls is None:
        err = ProtocolError(reason, request_type)
        err.code = code
        return err
    return cls(reason, request_type)
