# Board-side authentication primitives: HMAC-SHA256 on hashlib.sha256 (MicroPython has no
# hmac module) and the tag of an authenticated frame (layout in messages.py).

import hashlib

from protocol import messages as m

_BLOCK = 64
_IPAD = bytes(0x36 for _ in range(_BLOCK))
_OPAD = bytes(0x5C for _ in range(_BLOCK))


def _xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def pads(key):
    """The key xor-ed with the inner and outer pads: worked out once per key, not per frame."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + bytes(_BLOCK - len(key))
    return (_xor(key, _IPAD), _xor(key, _OPAD))


def hmac_pads(key_pads, *parts):
    """RFC 2104 HMAC with SHA-256 of the parts joined, from pads(key)."""
    inner = hashlib.sha256(key_pads[0])
    for part in parts:
        inner.update(part)
    outer = hashlib.sha256(key_pads[1])
    outer.update(inner.digest())
    return outer.digest()


def hmac_sha256(key, msg):
    """RFC 2104 HMAC with SHA-256."""
    return hmac_pads(pads(key), msg)


def frame_tag(key, nonce, signed):
    """The tag of an authenticated frame: `signed` is header + payload + the trailer's
    session, role and counter (everything before the tag)."""
    return hmac_pads(pads(key), nonce, signed)[: m.TAG_SIZE]


def frame_tag_pads(key_pads, nonce, signed):
    """frame_tag() from pads(key): what the guard uses for every frame."""
    return hmac_pads(key_pads, nonce, signed)[: m.TAG_SIZE]


def equal(a, b):
    """Compare tags in time independent of where they differ."""
    if len(a) != len(b):
        return False
    diff = 0
    for x, y in zip(a, b):
        diff |= x ^ y
    return diff == 0
