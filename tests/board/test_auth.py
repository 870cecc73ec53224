# The board's authentication primitives (protocol/auth.py): HMAC-SHA256 against RFC 4231, the
# tag of an authenticated frame (nonce || everything before the tag, truncated to 16 bytes)
# against an HMAC built here by hand from hashlib.sha256, and equal().
# Board-safe: runs on CPython and on MicroPython.

import binascii
import hashlib
import struct

from protocol import auth, codec
from protocol import messages as m


def _h(text):
    return binascii.unhexlify(text.replace(" ", ""))


def _hmac(key, msg):
    """RFC 2104 written out here (not protocol/auth.py's): pad the key to SHA-256's 64-byte
    block (hashing it first if longer), H((K ^ opad) || H((K ^ ipad) || msg))."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = bytes(key) + b"\x00" * (64 - len(key))
    ipad = bytes([b ^ 0x36 for b in key])
    opad = bytes([b ^ 0x5C for b in key])
    inner = hashlib.sha256(ipad + bytes(msg)).digest()
    return hashlib.sha256(opad + inner).digest()


# RFC 4231, section 4: (test case, key, data, HMAC-SHA-256).
RFC4231 = (
    (1, b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (2, b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (3, b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (4, bytes(range(1, 26)), b"\xcd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    # 6 and 7: a key longer than the block (131 bytes) is hashed first.
    (6, b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (7, b"\xaa" * 131,
     b"This is a test using a larger than block-size key and a larger than block-size data."
     b" The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
)


def test_hmac_sha256_rfc4231():
    for case, key, data, want in RFC4231:
        got = auth.hmac_sha256(key, data)
        assert got == _h(want), "RFC 4231 case %d: %s" % (case, binascii.hexlify(got))
        assert _hmac(key, data) == _h(want), "the test's own HMAC, case %d" % case


def test_hmac_sha256_rfc4231_truncated():
    # RFC 4231 case 5: the output truncated to 128 bits, as a frame's tag is.
    got = auth.hmac_sha256(b"\x0c" * 20, b"Test With Truncation")[:16]
    assert got == _h("a3b6167473100ee06e0c796c2955552b"), binascii.hexlify(got)


def test_hmac_sha256_key_lengths():
    # Around the block size (64: padded, 65: hashed first), empty key and message, and the
    # protocol's own 32-byte keys; bytes, bytearray and memoryview alike.
    msg = b"intrapump" * 20
    for n in (0, 1, 31, 32, 33, 63, 64, 65, 128, 200):
        key = bytes((7 * i + 1) & 0xFF for i in range(n))
        want = _hmac(key, msg)
        assert auth.hmac_sha256(key, msg) == want, "key of %d bytes" % n
        assert auth.hmac_sha256(bytearray(key), memoryview(msg)) == want, "buffers, %d" % n
        assert auth.hmac_sha256(key, b"") == _hmac(key, b""), "empty message, key %d" % n
    # A key of 65 bytes is not its first 64 bytes, nor padded: it is hashed.
    k65 = b"\x01" * 65
    assert auth.hmac_sha256(k65, msg) != auth.hmac_sha256(k65[:64], msg), "65 != 64"
    assert auth.hmac_sha256(k65, msg) == auth.hmac_sha256(hashlib.sha256(k65).digest(), msg)
    # Trailing zero bytes of a short key are padding: the same key (as RFC 2104 has it).
    assert auth.hmac_sha256(b"k", msg) == auth.hmac_sha256(b"k\x00", msg), "zero padding"
    # Calling it again gives the same (no state kept between calls).
    assert auth.hmac_sha256(b"k", msg) == auth.hmac_sha256(b"k", msg)


KEY = bytes(range(32))
NONCE = bytes(range(16, 32))
# A signed SET_CONTINUOUS (400 mcg/day, no confirmation flags), everything before its tag:
# header 01 03 01 0500 (flags AUTH, seq 5), payload 801a0600 00, trailer 02 02 07000000
# (session 2, clinician, counter 7).
SIGNED = _h("0103010500 801a060000 0202 07000000")
# Its tag, computed with CPython's hmac module:
#   hmac.new(KEY, NONCE + SIGNED, hashlib.sha256).digest()[:16]
SIGNED_TAG = _h("cc61a1964150743837a1abc918479cdf")


def test_frame_tag_known_answer():
    assert struct.unpack_from("<BBBH", SIGNED, 0) == (1, m.SET_CONTINUOUS, m.FLAG_AUTH, 5)
    assert struct.unpack_from("<IB", SIGNED, 5) == (400_000, 0), "SET_CONTINUOUS's payload"
    assert struct.unpack_from("<BBI", SIGNED, 10) == (2, m.ROLE_CLINICIAN, 7)
    tag = auth.frame_tag(KEY, NONCE, SIGNED)
    assert tag == SIGNED_TAG, binascii.hexlify(tag)
    assert _hmac(KEY, NONCE + SIGNED)[:16] == SIGNED_TAG, "the test's own HMAC agrees"


def test_known_answer_is_a_valid_signed_request():
    # The vector above is a frame the board's codec takes as it stands (with its tag and CRC).
    body = SIGNED + SIGNED_TAG
    whole = body + struct.pack("<I", binascii.crc32(body) & 0xFFFFFFFF)
    frame = bytearray(m.MAX_FRAME)
    frame[: len(whole)] = whole
    d = codec.Decoded()
    assert codec.decode(frame, len(whole), d) == 0, d.reason
    assert d.type == m.SET_CONTINUOUS and tuple(d.values) == (400_000, 0), "%r" % (d.values,)
    assert d.auth and (d.session, d.role, d.counter) == (2, m.ROLE_CLINICIAN, 7), "trailer"
    assert d.tag_at == len(SIGNED), "the tag signs everything before it: %d" % d.tag_at


def test_frame_tag_layout():
    # tag = HMAC-SHA256(key, nonce || signed)[:TAG_SIZE], whatever the buffers.
    frame = bytearray(SIGNED + bytes(m.TAG_SIZE + m.CRC_SIZE))
    at = len(SIGNED)
    for signed in (SIGNED, bytearray(SIGNED), memoryview(frame)[:at]):
        for nonce in (NONCE, bytearray(NONCE), memoryview(bytearray(NONCE))):
            tag = auth.frame_tag(KEY, nonce, signed)
            assert len(tag) == m.TAG_SIZE == 16, "%d bytes" % len(tag)
            assert tag == _hmac(KEY, NONCE + SIGNED)[: m.TAG_SIZE], "nonce || signed"
            assert bytes(tag) == SIGNED_TAG
    # The nonce comes first, the key is the key (not part of the message).
    assert auth.frame_tag(KEY, NONCE, SIGNED) != _hmac(KEY, SIGNED + NONCE)[:16], "order"
    assert auth.frame_tag(KEY, b"", NONCE + SIGNED) == SIGNED_TAG, "a plain concatenation"
    assert auth.frame_tag(NONCE, KEY, SIGNED) != SIGNED_TAG, "key and nonce not swapped"
    # It is the HMAC's first 16 bytes, not its last.
    full = auth.hmac_sha256(KEY, NONCE + SIGNED)
    assert full[:16] == SIGNED_TAG and full[16:] != SIGNED_TAG, "truncated to the front"


def test_frame_tag_covers_every_byte():
    # Any change to the key, the nonce or any signed byte (header, payload, session, role,
    # counter) changes the tag.
    tags = {bytes(auth.frame_tag(KEY, NONCE, SIGNED))}
    n = 1
    for i in range(len(SIGNED)):
        edited = bytearray(SIGNED)
        edited[i] ^= 0x01
        tags.add(bytes(auth.frame_tag(KEY, NONCE, edited)))
        n += 1
    for i in (0, 15):
        nonce = bytearray(NONCE)
        nonce[i] ^= 0x80
        tags.add(bytes(auth.frame_tag(KEY, nonce, SIGNED)))
        key = bytearray(KEY)
        key[2 * i] ^= 0x80
        tags.add(bytes(auth.frame_tag(key, NONCE, SIGNED)))
        n += 2
    assert len(tags) == n, "%d distinct tags of %d" % (len(tags), n)


def test_equal():
    a = bytes(SIGNED_TAG)
    assert auth.equal(a, a) is True, "same"
    assert auth.equal(a, bytearray(a)) is True and auth.equal(memoryview(a), a) is True, "types"
    buf = bytearray(b"xx" + a + b"yy")
    assert auth.equal(a, memoryview(buf)[2:18]) is True, "a slice of a frame"
    for i in range(len(a)):  # a difference anywhere, of any bit
        for bit in (0x01, 0x80):
            b = bytearray(a)
            b[i] ^= bit
            assert auth.equal(a, b) is False, "byte %d ^ 0x%02x" % (i, bit)
            assert auth.equal(b, a) is False, "symmetric: byte %d" % i
    # Lengths must match: a prefix is not equal, nor an empty tag.
    assert auth.equal(a, a[:15]) is False, "prefix"
    assert auth.equal(a[:15], a) is False, "prefix, other side"
    assert auth.equal(a, a + b"\x00") is False, "longer"
    assert auth.equal(b"", a) is False and auth.equal(a, b"") is False, "empty"
    assert auth.equal(b"", b"") is True, "two empty strings are equal"
    assert auth.equal(bytes(16), bytes(16)) is True, "all zero"
    assert auth.equal(bytes(16), b"\xff" * 16) is False, "zero and ones"
