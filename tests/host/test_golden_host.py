"""The host's construct codec (protocol/host_codec.py) against the golden vectors
(protocol/vectors/golden.json, written by tools/make_golden.py independently of both codecs).

Valid vectors: encode gives the frame and wire bytes, decode gives the fields (enum fields as
their labels from messages.ENUMS). Bad vectors: the host raises DecodeError with the code the
firmware answers with, wherever the host can tell; it has no range checks and no notion of
request/response direction, so OUT_OF_RANGE vectors and response types sent as requests decode
fine on the host, and that is asserted too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from protocol import host_codec as hc
from protocol import messages as m

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = json.loads((ROOT / "protocol" / "vectors" / "golden.json").read_text("utf-8"))
VALID = GOLDEN["valid"]
BAD = GOLDEN["bad"]
LABELS = {name: dict(pairs) for name, pairs in m.ENUMS.items()}


def host_fields(mtype: int, fields: dict[str, Any], labels: bool) -> dict[str, Any]:
    """Vector fields as host_codec takes/gives them: bytes as bytes, enums as labels."""
    row = m.find(mtype)
    assert row is not None
    out: dict[str, Any] = {}
    for name, kind, _lo, _hi, enum, _unit in row[3]:
        v = fields[name]
        if kind.endswith("s"):
            v = bytes.fromhex(v)
        elif enum and labels:
            v = LABELS[enum][v]
        out[name] = v
    return out


def ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["name"] for v in vectors]


def test_vectors_file_is_up_to_date() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_golden.py"), "--check"],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("v", VALID, ids=ids(VALID))
def test_encode_valid(v: dict[str, Any]) -> None:
    for labels in (True, False):  # enum fields given as labels or as integers
        fields = host_fields(v["type"], v["fields"], labels)
        assert hc.build_frame(v["type"], v["seq"], fields).hex() == v["frame"]
        assert hc.encode(v["type"], v["seq"], fields).hex() == v["wire"]
        assert hc.encode(v["message"], v["seq"], fields).hex() == v["wire"]


@pytest.mark.parametrize("v", VALID, ids=ids(VALID))
def test_decode_valid(v: dict[str, Any]) -> None:
    for data in (bytes.fromhex(v["wire"]), bytes.fromhex(v["wire"])[:-1]):
        msg = hc.decode(data)
        assert msg.type == v["type"] and msg.seq == v["seq"]
        assert msg.name == v["message"]
        assert msg.version == m.VERSION and msg.flags == 0
        assert msg.fields == host_fields(v["type"], v["fields"], labels=True)
        row = m.find(v["type"])
        assert row is not None
        for name, _kind, _lo, _hi, enum, _unit in row[3]:
            if enum:
                assert type(msg[name]) is str, f"{name} parses to a plain label"
    assert hc.parse_frame(bytes.fromhex(v["frame"])).fields == msg.fields


def host_decodes(v: dict[str, Any]) -> bool:
    """Bad vectors the host cannot tell from good ones: no range checks, and a known response
    type is a fine thing for the host to receive."""
    if v["error"] == "OUT_OF_RANGE":
        return True
    if v["error"] == "UNKNOWN_TYPE":
        return m.find(bytes.fromhex(v["frame"])[1]) is not None
    return False


@pytest.mark.parametrize("v", BAD, ids=ids(BAD))
def test_bad_vector(v: dict[str, Any]) -> None:
    wire = bytes.fromhex(v["wire"])
    if host_decodes(v):
        frame = bytes.fromhex(v["frame"])
        msg = hc.decode(wire)  # no DecodeError: asserted explicitly
        assert msg.type == frame[1] and msg.seq == v["seq"]
        if v["error"] == "OUT_OF_RANGE":
            assert msg.type == v["request_type"]
            row = m.find(msg.type)
            assert row is not None and row[2] == "req"
        return
    with pytest.raises(hc.DecodeError) as info:
        hc.decode(wire)
    assert info.value.code == v["error"], f"host says {info.value.code}: {info.value.reason}"
    assert info.value.code in hc.ERROR_CODES


def test_out_of_range_vectors_decode_on_host() -> None:
    # Spelled out: the range checks are the firmware's, the host passes the values through.
    oor = [v for v in BAD if v["error"] == "OUT_OF_RANGE"]
    assert oor
    for v in oor:
        msg = hc.decode(bytes.fromhex(v["wire"]))
        row = m.find(msg.type)
        assert row is not None
        out = [f for f in row[3] if f[2] is not None and f[1] != "str"
               and not f[2] <= int(msg[f[0]]) <= f[3]]
        assert out, f"{v['name']}: no field out of range in {msg.fields}"
