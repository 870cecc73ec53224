"""The host's construct codec (protocol/host_codec.py) against the golden vectors
(protocol/vectors/golden.json, written by tools/make_golden.py independently of both codecs).

Valid vectors: encode gives the frame and wire bytes (fields given with enum labels and flag
names, or as plain integers), decode gives the fields (enum fields as their labels from
messages.ENUMS, flag sets as the list of the names set, in messages.FLAGS order, lists as lists
of dicts). Bad vectors: the host raises DecodeError with the code the firmware answers with,
wherever the host can tell; it has no range checks and no notion of request/response direction,
so OUT_OF_RANGE vectors and response types sent as requests decode fine on the host, and that is
asserted too (a flag set's unknown bits are dropped by the host's parse: asserted as such).

Signed vectors: build_frame with a Signer (the vector's session, nonce, role and key) and the
vector's counter gives the frame and wire bytes exactly; decode gives Message.auth. Refused
vectors (the codec accepts them, the pump's guard does not) decode on the host with their
trailer, and those not edited after signing are what the host's Signer builds.
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
SIGNED = GOLDEN["signed"]
REFUSED = GOLDEN["refused"]
LABELS = {name: dict(pairs) for name, pairs in m.ENUMS.items()}
VALUES = {name: {label: value for value, label in pairs} for name, pairs in m.ENUMS.items()}
BITS = {name: {label: bit for bit, label in pairs} for name, pairs in m.FLAGS.items()}


def is_flags(f: tuple) -> bool:
    return isinstance(f[4], str) and f[4] in m.FLAGS


def fields_of(mtype: int) -> Any:
    row = m.find(mtype)
    assert row is not None, f"type 0x{mtype:02x} is not in the table"
    return row[3]


def host_fields(mtype: int, fields: dict[str, Any], labels: bool) -> dict[str, Any]:
    """Vector fields as host_codec takes/gives them: bytes as bytes, lists as lists of dicts;
    with labels, enums as labels and flag sets as lists of names (else both as ints)."""
    row = m.find(mtype)
    assert row is not None
    return convert(row[3], fields, labels)


def convert(spec: tuple, fields: dict[str, Any], labels: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in spec:
        name, kind, enum = f[0], f[1], f[4]
        v = fields[name]
        if kind == "list":
            v = [convert(enum, item, labels) for item in v]
        elif kind.endswith("s"):
            v = bytes.fromhex(v)
        elif is_flags(f) and labels:
            v = [label for bit, label in m.FLAGS[enum] if v & bit]
        elif enum and labels:
            v = LABELS[enum][v]
        out[name] = v
    return out


def as_int(f: tuple, value: Any) -> int:
    """A field as the host gives it, back as the integer on the wire (known flags only)."""
    if is_flags(f):
        return sum(BITS[f[4]][label] for label in value)
    if isinstance(value, str):
        return VALUES[f[4]][value]
    return int(value)


def out_of_range(spec: tuple, fields: dict[str, Any]) -> list[str]:
    """The fields (list counts and list items' fields too) that the host read outside their
    ranges."""
    out = []
    for f in spec:
        v = fields[f[0]]
        if f[1] == "list":
            if not f[2] <= len(v) <= f[3]:
                out.append(f"{f[0]} (count {len(v)})")
            for k, item in enumerate(v):
                out += [f"{f[0]}[{k}].{name}" for name in out_of_range(f[4], item)]
        elif f[1] != "str" and f[2] is not None and not f[2] <= as_int(f, v) <= f[3]:
            out.append(f[0])
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
        assert msg.version == m.VERSION and msg.flags == 0 and msg.auth is None
        assert msg.fields == host_fields(v["type"], v["fields"], labels=True)
        row = m.find(v["type"])
        assert row is not None
        for f in row[3]:
            if f[1] == "list":
                assert type(msg[f[0]]) is list
                assert all(type(item) is dict for item in msg[f[0]]), f"{f[0]}: dicts"
            elif is_flags(f):
                assert type(msg[f[0]]) is list, f"{f[0]} parses to a list of names"
                assert all(type(name) is str for name in msg[f[0]])
            elif f[4]:
                assert type(msg[f[0]]) is str, f"{f[0]} parses to a plain label"
    assert hc.parse_frame(bytes.fromhex(v["frame"])).fields == msg.fields


def test_flag_names_build_in_any_order() -> None:
    # A flag set built from names, in any order or as a set, gives the bits' bytes.
    vectors = [v for v in VALID
               if any(is_flags(f) and v["fields"][f[0]] for f in fields_of(v["type"]))]
    assert vectors
    for v in vectors:
        fields = host_fields(v["type"], v["fields"], labels=True)
        for f in fields_of(v["type"]):
            if is_flags(f):
                fields[f[0]] = set(reversed(fields[f[0]]))
        assert hc.build_frame(v["type"], v["seq"], fields).hex() == v["frame"], v["name"]


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
    # Spelled out: the range checks are the firmware's, the host passes the values through:
    # integers, list counts and list items as they are; a flag set's unknown bits the host's
    # parse drops (the names it gives are the known bits only).
    oor = [v for v in BAD if v["error"] == "OUT_OF_RANGE"]
    assert oor
    dropped = 0
    for v in oor:
        frame = bytes.fromhex(v["frame"])
        msg = hc.decode(bytes.fromhex(v["wire"]))
        row = m.find(msg.type)
        assert row is not None
        if out_of_range(row[3], msg.fields):
            continue
        # Nothing out of range as read: the unknown bits of a flag set were dropped.
        trailer = m.AUTH_SIZE if msg.flags & m.FLAG_AUTH else 0
        payload = frame[m.HEADER_SIZE : len(frame) - m.CRC_SIZE - trailer]
        assert any(is_flags(f) for f in row[3]), f"{v['name']}: nothing out of range"
        assert hc.build_payload(msg.type, msg.fields) != payload, v["name"]
        dropped += 1
    assert dropped, "no vector with an unknown flag bit"


# -- authenticated vectors -----------------------------------------------------------------

def role_label(role: int) -> Any:
    """A role as host_codec takes and gives it: its label, or the bare number if it has none."""
    return LABELS["role"].get(role, role)


def signer(a: dict[str, Any]) -> hc.Signer:
    return hc.Signer(a["session"], bytes.fromhex(a["nonce"]), role_label(a["role"]),
                     bytes.fromhex(a["key"]))


def host_auth(a: dict[str, Any]) -> dict[str, Any]:
    return {"session": a["session"], "role": role_label(a["role"]), "counter": a["counter"],
            "tag": bytes.fromhex(a["tag"])}


def test_signed_vectors_use_the_provisioned_keys_and_sessions() -> None:
    keys = GOLDEN["auth"]["keys"]
    nonces = {s["session"]: s["nonce"] for s in GOLDEN["auth"]["sessions"]}
    assert set(keys) == {label for _, label in m.ENUMS["role"]}
    for v in SIGNED:
        a = v["auth"]
        assert keys[m.ROLE_NAMES[a["role"]]] == a["key"], v["name"]
        assert nonces[a["session"]] == a["nonce"], v["name"]
        assert len(bytes.fromhex(a["key"])) == m.KEY_SIZE
        assert len(bytes.fromhex(a["nonce"])) == m.NONCE_SIZE


@pytest.mark.parametrize("v", SIGNED, ids=ids(SIGNED))
def test_encode_signed(v: dict[str, Any]) -> None:
    a = v["auth"]
    for labels in (True, False):
        fields = host_fields(v["type"], v["fields"], labels)
        frame = hc.build_frame(v["type"], v["seq"], fields, signer=signer(a), counter=a["counter"])
        assert frame.hex() == v["frame"]
        wire = hc.encode(v["message"], v["seq"], fields, signer=signer(a), counter=a["counter"])
        assert wire.hex() == v["wire"]


@pytest.mark.parametrize("v", SIGNED, ids=ids(SIGNED))
def test_decode_signed(v: dict[str, Any]) -> None:
    for data in (bytes.fromhex(v["wire"]), bytes.fromhex(v["wire"])[:-1]):
        msg = hc.decode(data)
        assert (msg.type, msg.seq, msg.name) == (v["type"], v["seq"], v["message"])
        assert msg.version == m.VERSION and msg.flags == m.FLAG_AUTH
        assert msg.fields == host_fields(v["type"], v["fields"], labels=True)
        assert msg.auth is not None and msg.auth == host_auth(v["auth"])
        assert type(msg.auth["role"]) is str, "the role parses to a plain label"
    assert hc.parse_frame(bytes.fromhex(v["frame"])) == msg


def test_signed_tag_is_not_the_wrong_ones() -> None:
    # The Signer's key, nonce, session, role and counter each change the frame's tag.
    v = next(x for x in SIGNED if x["message"] == "SET_CONTINUOUS")
    a = v["auth"]
    fields = host_fields(v["type"], v["fields"], labels=True)
    base = signer(a)
    tags = set()
    for s, counter in (
        (base, a["counter"]),
        (hc.Signer(base.session, base.nonce, base.role, bytes(m.KEY_SIZE)), a["counter"]),
        (hc.Signer(base.session, bytes(m.NONCE_SIZE), base.role, base.key), a["counter"]),
        (hc.Signer((base.session + 1) % m.SESSIONS, base.nonce, base.role, base.key),
         a["counter"]),
        (hc.Signer(base.session, base.nonce, "service", base.key), a["counter"]),
        (base, a["counter"] + 1),
    ):
        frame = hc.build_frame(v["type"], v["seq"], fields, signer=s, counter=counter)
        tags.add(frame[-m.CRC_SIZE - m.TAG_SIZE : -m.CRC_SIZE])
    assert len(tags) == 6


@pytest.mark.parametrize("v", REFUSED, ids=ids(REFUSED))
def test_refused_vector_decodes_on_host(v: dict[str, Any]) -> None:
    # The authentication is the pump's to check: the host reads these frames as any other.
    msg = hc.decode(bytes.fromhex(v["wire"]))
    assert msg.type == v["request_type"] and msg.seq == v["seq"]
    a = v["auth"]
    if a is None:
        assert msg.auth is None and msg.flags == 0
        return
    assert msg.flags == m.FLAG_AUTH
    assert msg.auth == host_auth(a)
    if a["tampered"] is None:
        frame = hc.build_frame(msg.type, msg.seq, msg.fields, signer=signer(a),
                               counter=a["counter"])
        assert frame.hex() == v["frame"]
