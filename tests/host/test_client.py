"""PumpClient's retry rules, with the link replaced by a script of what comes back."""

from __future__ import annotations

from typing import Any

import pytest

from host import errors
from host.client import PumpClient
from protocol import host_codec as hc
from protocol import messages as m

KEY = bytes(range(32))


class ScriptedClient(PumpClient):
    """Answers come from a list: a Message (as if read), or None (nothing in time)."""

    def __init__(self, script: list[Any]):
        super().__init__("scripted://", keys={"clinician": KEY}, retries=2)
        self.script = script
        self.sent: list[bytes] = []
        self._port = object()  # type: ignore[assignment]

    def _write(self, wire: bytes) -> None:
        self.sent.append(wire)

    def _await(self, seq: int) -> hc.Message | hc.DecodeError | None:
        answer = self.script.pop(0)
        if isinstance(answer, hc.Message):
            return hc.Message(answer.type, seq, answer.fields)  # answering this seq
        return answer


CHALLENGE_OK = hc.Message(m.CHALLENGE_OK, 0, {"session": 1, "nonce": bytes(16)})
STOPPED = hc.Message(m.STOPPED, 0, {"reason": "clinician_decision"})


def error(code: int) -> hc.Message:
    return hc.Message(m.ERROR, 0, {"code": code, "request_type": m.STOP, "reason": "x"})


def test_a_lost_answer_is_retried_byte_for_byte() -> None:
    c = ScriptedClient([CHALLENGE_OK, None, STOPPED])
    c.stop(confirm=True)
    assert c.sent[1] == c.sent[2]  # the retry is the same frame: the pump's cache answers it


def test_a_reboot_before_the_command_reopens_the_session() -> None:
    c = ScriptedClient([CHALLENGE_OK, error(m.ERR_NO_SESSION), CHALLENGE_OK, STOPPED])
    c.stop(confirm=True)  # the first attempt was refused unrun: safe to send again
    assert len(c.sent) == 4


def test_a_reboot_after_a_lost_answer_is_not_resent() -> None:
    c = ScriptedClient([CHALLENGE_OK, None, error(m.ERR_NO_SESSION)])
    with pytest.raises(errors.OutcomeUnknown, match="unknown"):
        c.stop(confirm=True)
    assert len(c.sent) == 3  # challenge, the command, its retry: no fresh session, no resend
