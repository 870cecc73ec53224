# Who may do what (firmware/core/guard.py): sessions with fresh nonces in a free slot, else the
# least recently used one never used, else the least recently used stale one; admit()
# refuses, in this order, an unsigned request that needs a role (AUTH_REQUIRED), a session
# not open (NO_SESSION), a role without a key (NO_KEY), a tag that does not match the key,
# the session's nonce and the frame (BAD_TAG), a role the access table does not allow
# (WRONG_ROLE); advance() takes each session's counter only if it rises
# (REPLAY). Signed frames are built here with struct + binascii.crc32 + auth.frame_tag.
# Board-safe: runs on CPython and on MicroPython.

import binascii
import struct

from therapy_kit import assert_code, code_name

from firmware.core.guard import Guard
from protocol import auth, codec
from protocol import messages as m

PATIENT, CLINICIAN, SERVICE = m.ROLE_PATIENT, m.ROLE_CLINICIAN, m.ROLE_SERVICE
KEYS = {
    PATIENT: bytes((0x10 + i) & 0xFF for i in range(32)),
    CLINICIAN: bytes((0x80 + 3 * i) & 0xFF for i in range(32)),
    SERVICE: bytes((0xF0 - 5 * i) & 0xFF for i in range(32)),
}
NONCES = (
    b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff",
    b"nonce of slot 1!",
    bytes(16),
    b"\xff" * 16,
    b"a fifth nonce..."
)

# Who may send what, spelled out here (not read from messages.ACCESS) for every request: None
# = anyone, unsigned too; otherwise the roles that may. A new request type must be added here.
ALL = (PATIENT, CLINICIAN, SERVICE)
CLINICIAN_ONLY = (
    m.SET_CONTINUOUS, m.SET_FLEX, m.SET_TAPER, m.STOP, m.SUSPEND, m.RESUME, m.SET_PROFILE,
    m.BOLUS, m.PRIME, m.SCREEN, m.SET_PATIENT_BOLUS, m.REFILL_BEGIN, m.REFILL_COMMIT,
    m.REFILL_ABORT, m.CAP_BEGIN, m.CAP_END,
)
MAY = {
    m.GET_INFO: None,
    m.CHALLENGE: None,
    m.GET_STATUS: ALL,
    m.GET_COUNTERS: ALL,
    m.SET_TELEMETRY: ALL,
    m.GET_PROFILE: ALL,
    m.GET_PROGRAM: ALL,
    m.GET_PATIENT_BOLUS: ALL,
    m.ALARM_ACK: ALL,
    m.ALARM_SILENCE: ALL,
    m.GET_ALARMS: ALL,
    m.GET_SCREENING: (CLINICIAN, SERVICE),
    m.READ_LOG: (CLINICIAN, SERVICE),
    m.SET_CLOCK: (CLINICIAN, SERVICE),
    m.ENTER_REPL: (CLINICIAN, SERVICE),
    m.PATIENT_BOLUS: (PATIENT,),
}
for _t in CLINICIAN_ONLY:
    MAY[_t] = (CLINICIAN,)


def _requests():
    return [r[0] for r in m.MESSAGES if r[2] == "req"]


def _may(mtype):
    """Roles that may send mtype (None: anyone)."""
    return MAY[mtype]


def _low_bytes(fields):
    """A payload the codec accepts for these fields: each at its low bound (a list with its
    fewest items, each at its low bounds; an empty string)."""
    out = b""
    for f in fields:
        if f[1] == "str":
            out += b"\x00"
        elif f[1] == "list":
            out += bytes((f[2],)) + _low_bytes(f[4]) * f[2]
        elif f[1].endswith("s"):
            out += bytes(int(f[1][:-1]))
        else:
            out += struct.pack("<" + f[1], f[2])
    return out


# A valid payload for each request type (the confirmation words where there are some).
PAYLOADS = {}
for _t in _requests():
    PAYLOADS[_t] = _low_bytes(m.find(_t)[3])
PAYLOADS[m.SET_CONTINUOUS] = struct.pack("<IB", 400_000, 0)
PAYLOADS[m.STOP] = struct.pack("<BI", 2, m.STOP_CONFIRM)
PAYLOADS[m.SUSPEND] = struct.pack("<BI", 2, m.STOP_CONFIRM)
PAYLOADS[m.ENTER_REPL] = struct.pack("<I", m.REPL_CONFIRM)


def _crc(body):
    return body + struct.pack("<I", binascii.crc32(body) & 0xFFFFFFFF)


def _sign(mtype, session, role, counter, key=None, nonce=None, seq=1, payload=None):
    """A signed request: header (flag AUTH) + payload + session, role, counter + tag + CRC.
    key defaults to the role's, nonce to NONCES[session]."""
    if payload is None:
        payload = PAYLOADS[mtype]
    if key is None:
        key = KEYS.get(role, KEYS[CLINICIAN])
    if nonce is None:
        nonce = NONCES[session % len(NONCES)]
    head = struct.pack("<BBBH", m.VERSION, mtype, m.FLAG_AUTH, seq) + payload
    head += struct.pack("<BBI", session, role, counter)
    return _crc(head + auth.frame_tag(key, nonce, head))


def _plain(mtype, seq=1):
    return _crc(struct.pack("<BBBH", m.VERSION, mtype, 0, seq) + PAYLOADS[mtype])


def _decode(frame):
    """(Decoded, the frame in a MAX_FRAME buffer as the loop has it), or (None, code)."""
    buf = bytearray(m.MAX_FRAME)
    buf[: len(frame)] = frame
    d = codec.Decoded()
    err = codec.decode(buf, len(frame), d)
    if err:
        return None, err
    return d, buf


def _admit(g, frame):
    d, buf = _decode(frame)
    assert d is not None, "the codec refuses the frame: %d" % buf
    return g.admit(d, buf)


def _use(g, frame):
    """admit, then advance, as the loop does: the first refusal, or 0."""
    d, buf = _decode(frame)
    assert d is not None, "the codec refuses the frame: %d" % buf
    return g.admit(d, buf) or g.advance(d)


def _guard(sessions=1, keys=None):
    g = Guard(dict(KEYS) if keys is None else keys)
    for i in range(sessions):
        assert g.open(NONCES[i]) == i, "a fresh guard opens slot %d" % i
    return g


_name, _is = code_name, assert_code


# -- open(): slots and nonces ------------------------------------------------------------


def test_fresh_guard_has_no_session():
    g = Guard(dict(KEYS))
    assert len(g.nonces) == m.SESSIONS == 4, "SESSIONS slots"
    for s in range(m.SESSIONS):
        assert not g.nonces[s] and g.counters[s] == 0, "slot %d closed" % s
        _is(_admit(g, _sign(m.GET_STATUS, s, PATIENT, 1)), m.ERR_NO_SESSION, "slot %d" % s)


def test_open_takes_free_slots_then_the_least_recently_used():
    # Free slots in turn; then the least recently used session never used (a CHALLENGE no
    # one signed in); then the least recently used stale one: its role used a later session
    # since. The latest session of a role in use is not taken (guard.py, slot reuse).
    g = Guard(dict(KEYS))
    for i in range(m.SESSIONS):
        assert g.open(NONCES[i]) == i, "slot %d in turn" % i
        assert g.nonces[i] == NONCES[i] and g.counters[i] == 0, "slot %d: nonce, counter" % i
    # All taken, none used: the least recently used goes, the one opened first.
    assert g.open(NONCES[4]) == 0, "LRU is slot 0"
    assert g.nonces[0] == NONCES[4], "slot 0 has the new nonce"
    for i in (1, 2, 3):
        assert g.nonces[i] == NONCES[i], "slot %d kept" % i
    # A used session (an admitted, counted request) is kept while an unused one is there:
    # slot 1 is used, so 2 goes, then 3, then 0, then round the unused ones again, never 1.
    _is(_use(g, _sign(m.GET_STATUS, 1, PATIENT, 1)), 0, "use slot 1")
    assert g.open(b"n" * 16) == 2, "slot 1 was used: slot 2 is the LRU unused"
    assert g.open(b"o" * 16) == 3, "then 3"
    assert g.open(b"p" * 16) == 0, "then 0 (reopened before 1 was used)"
    assert g.open(b"q" * 16) == 2, "and round the unused ones again, not 1"
    assert g.nonces[1] == NONCES[1] and g.counters[1] == 1, "slot 1's session goes on"
    # Every slot used: the least recently used session whose role used a later one goes.
    _is(_use(g, _sign(m.GET_STATUS, 2, CLINICIAN, 1, nonce=b"q" * 16)), 0, "clinician in 2")
    _is(_use(g, _sign(m.GET_STATUS, 3, PATIENT, 1, nonce=b"o" * 16)), 0, "patient in 3")
    _is(_use(g, _sign(m.GET_STATUS, 0, SERVICE, 1, nonce=b"p" * 16)), 0, "service in 0")
    assert g.open(b"r" * 16) == 1, "slot 1: the patient has used slot 3 since"
    for s, nonce in ((2, b"q" * 16), (3, b"o" * 16), (0, b"p" * 16)):
        assert g.nonces[s] == nonce, "slot %d, the latest of its role, kept" % s
    # Slot 1 is unused again: the next ones take it, and the used sessions stay.
    assert g.open(b"s" * 16) == 1, "the unused one again"
    assert g.open(b"t" * 16) == 1, "and again"
    # The clinician opens a new session (a new pumpctl run) and uses it: its old one in 2 is
    # the stale one now.
    _is(_use(g, _sign(m.GET_STATUS, 1, CLINICIAN, 1, nonce=b"t" * 16)), 0, "clinician in 1")
    assert g.open(b"u" * 16) == 2, "slot 2: superseded by slot 1"


def test_open_without_a_clock_takes_the_lru_when_no_session_is_stale():
    # Keys for four roles: every slot can hold the latest session of its role. The
    # firmware's guard refuses such a CHALLENGE BUSY (test_bruteforce); a Guard without a
    # clock (and open() called without admit()) takes the least recently used.
    keys = dict(KEYS)
    keys[4] = b"\x44" * 32
    g = _guard(m.SESSIONS, keys)
    for s, role in ((2, 4), (0, SERVICE), (3, CLINICIAN), (1, PATIENT)):  # (role 4 may
        # send open requests only)
        _is(_use(g, _sign(m.GET_INFO, s, role, 1, key=keys[role])), 0, "slot %d" % s)
    assert g.open(b"v" * 16) == 2, "the least recently used"
    assert g.open(b"w" * 16) == 2, "now unused: taken first"


def test_a_keyless_flood_of_challenges_does_not_end_a_used_session():
    # Each open() is a CHALLENGE from a host without a key: it can make sessions, never use
    # them. However many, the sessions the roles use go on.
    g = _guard(2)
    _is(_use(g, _sign(m.SET_CONTINUOUS, 0, CLINICIAN, 1)), 0, "the clinician's session")
    _is(_use(g, _sign(m.GET_STATUS, 1, PATIENT, 1)), 0, "the patient's session")
    taken = [0] * m.SESSIONS
    for i in range(50):
        taken[g.open(b"flood %10d" % i)] += 1
        if i % 10 == 9:  # the roles carry on in their sessions meanwhile
            _is(_use(g, _sign(m.GET_STATUS, 0, CLINICIAN, 2 + i)), 0, "clinician %d" % i)
            _is(_use(g, _sign(m.GET_STATUS, 1, PATIENT, 2 + i)), 0, "patient %d" % i)
    assert taken == [0, 0, 25, 25], "slots the flood took: %r" % (taken,)
    assert (g.nonces[0], g.nonces[1]) == (NONCES[0], NONCES[1]), "both sessions open"
    assert (g.roles[0], g.roles[1]) == (CLINICIAN, PATIENT), "bound as before"
    # Even left unused meanwhile (a clinician reading the screen): no clock, nothing idles.
    for i in range(50):
        assert g.open(b"more %11d" % i) in (2, 3), "flood %d took a used session" % i
    _is(_use(g, _sign(m.STOP, 0, CLINICIAN, 100)), 0, "the clinician's session goes on")


def test_admit_alone_does_not_make_a_session_recent():
    # Only advance() (a request carried out) counts as use; a request refused for its counter
    # or merely admitted does not keep a session alive.
    g = _guard(m.SESSIONS)
    for _ in range(3):
        _is(_admit(g, _sign(m.GET_STATUS, 0, PATIENT, 1)), 0, "admit slot 0")
    assert g.open(NONCES[4]) == 0, "slot 0 is still the LRU"


def test_open_keeps_its_own_copy_of_the_nonce():
    g = Guard(dict(KEYS))
    nonce = bytearray(NONCES[0])
    slot = g.open(nonce)
    nonce[0] ^= 0xFF  # the caller's buffer changes afterwards
    assert g.nonces[slot] == NONCES[0], "the guard's nonce is unchanged"
    _is(_use(g, _sign(m.GET_STATUS, slot, PATIENT, 1)), 0, "signed with the nonce as opened")


def test_reopened_slot_has_a_fresh_nonce_and_counter():
    g = _guard(m.SESSIONS)
    old = _sign(m.SET_CONTINUOUS, 0, CLINICIAN, 5)
    _is(_use(g, old), 0, "slot 0, counter 5")
    for s in (1, 2, 3):  # the clinician's later sessions: slot 0 is stale, and the LRU
        _is(_use(g, _sign(m.GET_STATUS, s, CLINICIAN, 1)), 0, "use slot %d" % s)
    fresh = b"\x5a" * 16
    assert g.open(fresh) == 0, "slot 0 reopened"
    assert g.nonces[0] == fresh and g.counters[0] == 0, "new nonce, counter reset"
    # The old session's frames are dead: its nonce is gone (whatever their counter).
    _is(_admit(g, old), m.ERR_BAD_TAG, "old frame in the new session")
    _is(_admit(g, _sign(m.SET_CONTINUOUS, 0, CLINICIAN, 6)), m.ERR_BAD_TAG, "old nonce, 6")
    # The new session starts from counter 1 again.
    _is(_use(g, _sign(m.SET_CONTINUOUS, 0, CLINICIAN, 1, nonce=fresh)), 0, "counter 1 again")
    assert g.counters[0] == 1, "counter %d" % g.counters[0]


# -- admit() -------------------------------------------------------------------------------


def test_open_requests_need_no_authentication():
    for keys in ({}, dict(KEYS)):
        g = Guard(keys)  # no session, maybe no keys at all
        for mtype in (m.GET_INFO, m.CHALLENGE):
            _is(_admit(g, _plain(mtype)), 0, "unsigned 0x%02x" % mtype)
            d, buf = _decode(_plain(mtype))
            _is(g.advance(d), 0, "advance of an unsigned frame")
        assert g.counters == [0] * m.SESSIONS, "nothing counted"


def test_role_requests_need_authentication():
    g = _guard(m.SESSIONS)
    for mtype in _requests():
        if _may(mtype) is None:
            continue
        _is(_admit(g, _plain(mtype)), m.ERR_AUTH_REQUIRED, "unsigned 0x%02x" % mtype)
        assert g.code == m.ERR_AUTH_REQUIRED and g.reason, "code and reason kept"
    for mtype in (m.GET_STATUS, m.SET_CONTINUOUS, m.STOP, m.ENTER_REPL):
        _is(_admit(g, _plain(mtype)), m.ERR_AUTH_REQUIRED, "unsigned 0x%02x" % mtype)


def test_access_table():
    for mtype in _requests():
        assert mtype in MAY, "0x%02x: not in this test's MAY table" % mtype
        assert mtype in m.ACCESS, "0x%02x has no ACCESS entry (would default)" % mtype
        need = m.ACCESS[mtype]
        assert need & ~m.ANY_ROLE == 0, "0x%02x: bits of no role 0x%x" % (mtype, need)
    for mtype in MAY:
        want = m.OPEN
        if MAY[mtype] is not None:
            for role in MAY[mtype]:
                want |= 1 << role
        assert m.ACCESS[mtype] == want, "0x%02x: ACCESS 0x%x, want 0x%x" % (
            mtype, m.ACCESS[mtype], want)
    # Only identity and the challenge are open: whatever else needs a role.
    opened = [t for t in _requests() if m.ACCESS[t] == m.OPEN]
    assert sorted(opened) == sorted([m.GET_INFO, m.CHALLENGE]), "open: %r" % (opened,)


def test_every_payload_here_decodes():
    for mtype in _requests():
        d, buf = _decode(_sign(mtype, 0, CLINICIAN, 1))
        assert d is not None, "0x%02x: the codec refuses the test's payload: %d" % (mtype, buf)
        d, buf = _decode(_plain(mtype))
        assert d is not None and not d.auth, "0x%02x unsigned" % mtype


def test_roles():
    # Every request type, signed by every role with its own key in an open session.
    for mtype in _requests():
        for role in (PATIENT, CLINICIAN, SERVICE):
            g = _guard(2)
            may = _may(mtype) is None or role in _may(mtype)
            code = _admit(g, _sign(mtype, 1, role, 1))
            what = "0x%02x signed by %s" % (mtype, m.ROLE_NAMES[role])
            _is(code, 0 if may else m.ERR_WRONG_ROLE, what)
            if not may:
                assert m.ROLE_NAMES[role] in g.reason, "%s: reason %s" % (what, g.reason)


def test_patient_cannot_program_or_stop():
    g = _guard(1)
    for mtype in CLINICIAN_ONLY + (m.ENTER_REPL, m.SET_CLOCK, m.READ_LOG, m.GET_SCREENING):
        _is(_admit(g, _sign(mtype, 0, PATIENT, 1)), m.ERR_WRONG_ROLE, "patient 0x%02x" % mtype)
    assert g.counters[0] == 0, "refusals take no counter"


def test_programming_is_the_clinicians_alone():
    # Everything that programs therapy or opens a way into the patient: not even service.
    for mtype in CLINICIAN_ONLY:
        g = _guard(1)
        _is(_use(g, _sign(mtype, 0, SERVICE, 1)), m.ERR_WRONG_ROLE, "service 0x%02x" % mtype)
        _is(_use(g, _sign(mtype, 0, PATIENT, 2)), m.ERR_WRONG_ROLE, "patient 0x%02x" % mtype)
        assert g.counters[0] == 0 and g.roles[0] == 0, "refused: no counter, no role bound"
        _is(_use(g, _sign(mtype, 0, CLINICIAN, 3)), 0, "clinician 0x%02x" % mtype)


def test_patient_bolus_is_the_patients_alone():
    # The clinician gives boluses with BOLUS; PATIENT_BOLUS is the patient's button.
    for role in (CLINICIAN, SERVICE):
        g = _guard(1)
        _is(_use(g, _sign(m.PATIENT_BOLUS, 0, role, 1)), m.ERR_WRONG_ROLE,
            "PATIENT_BOLUS by %s" % m.ROLE_NAMES[role])
    g = _guard(1)
    _is(_use(g, _sign(m.PATIENT_BOLUS, 0, PATIENT, 1)), 0, "PATIENT_BOLUS by the patient")
    _is(_use(g, _sign(m.BOLUS, 0, PATIENT, 2)), m.ERR_WRONG_ROLE, "BOLUS by the patient")
    _is(_admit(g, _plain(m.PATIENT_BOLUS)), m.ERR_AUTH_REQUIRED, "unsigned")


def test_patient_may_read_and_answer_alarms():
    g = _guard(1)
    counter = 0
    for mtype in (m.GET_STATUS, m.GET_PROGRAM, m.GET_PROFILE, m.GET_PATIENT_BOLUS,
                  m.GET_COUNTERS, m.SET_TELEMETRY, m.ALARM_ACK, m.ALARM_SILENCE, m.GET_ALARMS):
        counter += 1
        _is(_use(g, _sign(mtype, 0, PATIENT, counter)), 0, "patient 0x%02x" % mtype)


def test_no_session():
    g = _guard(1)  # slot 0 open only
    for session in (1, 2, 3, 4, 5, 0x80, 255):
        code = _admit(g, _sign(m.SET_CONTINUOUS, session, CLINICIAN, 1, nonce=NONCES[0]))
        _is(code, m.ERR_NO_SESSION, "session %d" % session)
        assert g.code == m.ERR_NO_SESSION and ("%d" % session) in g.reason, g.reason


def test_no_key():
    g = _guard(1)
    # Role 0 ("none") and roles past the table have no key, however they are signed.
    for role in (m.ROLE_NONE, 4, 7, 255):
        for key in (KEYS[CLINICIAN], bytes(32), b""):
            code = _admit(g, _sign(m.GET_STATUS, 0, role, 1, key=key))
            _is(code, m.ERR_NO_KEY, "role %d" % role)
        _is(_admit(g, _sign(m.GET_INFO, 0, role, 1)), m.ERR_NO_KEY, "role %d, open type" % role)
    # A role whose key is not provisioned cannot sign, even with the right key.
    g = _guard(1, {PATIENT: KEYS[PATIENT], CLINICIAN: KEYS[CLINICIAN]})
    _is(_admit(g, _sign(m.ENTER_REPL, 0, SERVICE, 1)), m.ERR_NO_KEY, "service unprovisioned")
    _is(_admit(g, _sign(m.ENTER_REPL, 0, CLINICIAN, 1)), 0, "clinician provisioned")
    g = _guard(1, {})
    for role in (PATIENT, CLINICIAN, SERVICE):
        _is(_admit(g, _sign(m.GET_STATUS, 0, role, 1)), m.ERR_NO_KEY, "no keys at all")
    _is(_admit(g, _plain(m.GET_INFO)), 0, "no keys: open requests still served")


def test_bad_tag_wrong_key_or_nonce():
    g = _guard(2)
    cases = (
        ("the patient's key", dict(key=KEYS[PATIENT])),
        ("the service key", dict(key=KEYS[SERVICE])),
        ("an unprovisioned key", dict(key=b"\x01" * 32)),
        ("the key cut short", dict(key=KEYS[CLINICIAN][:31])),
        ("the nonce of session 1", dict(nonce=NONCES[1])),
        ("a nonce never issued", dict(nonce=NONCES[3])),
        ("no nonce", dict(nonce=b"")),
    )
    for what, kw in cases:
        _is(_admit(g, _sign(m.SET_CONTINUOUS, 0, CLINICIAN, 1, **kw)), m.ERR_BAD_TAG, what)
    # A frame signed in session 0 and relabelled for session 1 (other nonce), or the reverse.
    _is(_admit(g, _sign(m.STOP, 1, CLINICIAN, 1, nonce=NONCES[0])), m.ERR_BAD_TAG,
        "session 0's nonce in session 1")
    _is(_admit(g, _sign(m.STOP, 0, CLINICIAN, 1, nonce=NONCES[1])), m.ERR_BAD_TAG,
        "session 1's nonce in session 0")
    _is(_admit(g, _sign(m.STOP, 1, CLINICIAN, 1)), 0, "and rightly signed: admitted")
    # Signed open requests are checked too.
    _is(_admit(g, _sign(m.GET_INFO, 0, PATIENT, 1, key=KEYS[SERVICE])), m.ERR_BAD_TAG,
        "signed GET_INFO, wrong key")
    assert g.counters == [0] * m.SESSIONS, "refusals take no counter"


def test_bad_tag_any_edit_after_signing():
    # Flip each bit of each byte before the CRC (header, payload, trailer, tag), fix the CRC:
    # whatever the codec still accepts, the guard must refuse.
    g = _guard(3)
    good = _sign(m.SET_CONTINUOUS, 2, CLINICIAN, 0x00010203, seq=0x0201)
    _is(_use(_guard(3), good), 0, "the frame as signed")
    body = good[: -m.CRC_SIZE]
    trailer = len(body) - m.AUTH_SIZE  # session byte
    decoded = 0
    for i in range(len(body)):
        for bit in range(8):
            edited = bytearray(body)
            edited[i] ^= 1 << bit
            d, buf = _decode(_crc(bytes(edited)))
            if d is None:
                continue  # the codec refused it (version, flags, type, length, range)
            decoded += 1
            code = g.admit(d, buf)
            what = "byte %d bit %d" % (i, bit)
            assert code != 0, what + ": admitted"
            if i == trailer:
                want = (m.ERR_NO_SESSION,) if d.session > 2 else (m.ERR_BAD_TAG,)
            elif i == trailer + 1:
                want = (m.ERR_NO_KEY, m.ERR_BAD_TAG)  # role 3 has a key; 0, 6, 10, ... none
            elif i == 1:
                want = (m.ERR_BAD_TAG, m.ERR_AUTH_REQUIRED)
            else:
                want = (m.ERR_BAD_TAG,)  # seq, payload, counter, tag
            assert code in want, "%s: %s" % (what, _name(code))
    # At least every edit of the seq and of the trailer reaches the guard (some of the
    # payload's are out of range for the codec).
    assert decoded >= 8 * (2 + m.AUTH_SIZE), "only %d edits reached the guard" % decoded
    assert g.counters == [0] * m.SESSIONS, "no counter taken"


def test_admit_checks_in_order():
    g = _guard(2)
    bad_key = bytes(32)
    # NO_SESSION before NO_KEY, before BAD_TAG, before WRONG_ROLE.
    _is(_admit(g, _sign(m.STOP, 3, m.ROLE_NONE, 1, key=bad_key)), m.ERR_NO_SESSION, "session")
    _is(_admit(g, _sign(m.STOP, 0, m.ROLE_NONE, 1, key=bad_key)), m.ERR_NO_KEY, "key")
    _is(_admit(g, _sign(m.STOP, 0, PATIENT, 1, key=bad_key)), m.ERR_BAD_TAG, "tag")
    _is(_admit(g, _sign(m.STOP, 0, PATIENT, 1)), m.ERR_WRONG_ROLE, "role")
    # The counter is not admit()'s: a spent counter is admitted, and refused by advance().
    _is(_use(g, _sign(m.STOP, 0, CLINICIAN, 9)), 0, "counter 9")
    _is(_admit(g, _sign(m.STOP, 0, CLINICIAN, 9)), 0, "counter 9 again: admitted")
    _is(_use(g, _sign(m.STOP, 0, CLINICIAN, 9)), m.ERR_REPLAY, "counter 9 again: replay")
    # Refused for the role before its counter is looked at.
    _is(_use(g, _sign(m.STOP, 0, PATIENT, 3)), m.ERR_WRONG_ROLE, "role before counter")


def test_admit_does_not_take_the_counter():
    g = _guard(1)
    fr = _sign(m.SET_CONTINUOUS, 0, CLINICIAN, 4)
    for _ in range(3):
        _is(_admit(g, fr), 0, "admit")
    assert g.counters[0] == 0, "admit() leaves the counter: %d" % g.counters[0]
    _is(_use(g, fr), 0, "advance takes it")
    assert g.counters[0] == 4, "counter %d" % g.counters[0]


# -- advance() -----------------------------------------------------------------------------


def test_counter_must_rise():
    g = _guard(1)
    for counter, want in ((0, m.ERR_REPLAY), (1, 0), (1, m.ERR_REPLAY), (0, m.ERR_REPLAY),
                          (5, 0), (3, m.ERR_REPLAY), (5, m.ERR_REPLAY), (6, 0),
                          (0x7FFFFFFF, 0), (0x80000000, 0), (0xFFFFFFFE, 0),
                          (0x80000001, m.ERR_REPLAY), (0xFFFFFFFF, 0), (0xFFFFFFFF, m.ERR_REPLAY),
                          (1, m.ERR_REPLAY)):
        last = g.counters[0]
        code = _use(g, _sign(m.GET_STATUS, 0, PATIENT, counter))
        _is(code, want, "counter %d after %d" % (counter, last))
        if want:
            assert g.code == m.ERR_REPLAY and g.reason, "code and reason"
            assert g.counters[0] == last, "a replay leaves the counter at %d" % last
        else:
            assert g.counters[0] == counter, "counter taken"


def test_a_session_belongs_to_the_role_that_first_used_it():
    g = _guard(1)
    _is(_use(g, _sign(m.GET_STATUS, 0, CLINICIAN, 10)), 0, "clinician 10: binds session 0")
    # Another role holding its own key cannot use (or burn the counter of) that session.
    _is(_use(g, _sign(m.GET_STATUS, 0, PATIENT, 0xFFFFFFF0)), m.ERR_WRONG_ROLE, "patient")
    assert g.counters[0] == 10, "counter untouched: %d" % g.counters[0]
    _is(_use(g, _sign(m.STOP, 0, CLINICIAN, 11)), 0, "clinician 11 goes on")
    _is(_use(g, _sign(m.GET_INFO, 0, CLINICIAN, 11)), m.ERR_REPLAY, "signed open request counts")
    slot = g.open(NONCES[1])  # a new session (another slot) is anyone's
    _is(_use(g, _sign(m.GET_STATUS, slot, PATIENT, 1)), 0, "patient in a fresh session")


def test_sessions_count_independently():
    g = _guard(m.SESSIONS)
    _is(_use(g, _sign(m.GET_STATUS, 0, PATIENT, 100)), 0, "session 0 at 100")
    for s in (1, 2, 3):
        _is(_use(g, _sign(m.GET_STATUS, s, PATIENT, 1)), 0, "session %d at 1" % s)
    _is(_use(g, _sign(m.GET_STATUS, 0, PATIENT, 2)), m.ERR_REPLAY, "session 0 still at 100")
    _is(_use(g, _sign(m.GET_STATUS, 1, PATIENT, 2)), 0, "session 1 to 2")
    assert g.counters == [100, 2, 1, 1], "counters %r" % (g.counters,)
    # The same counter in another session is another frame: a replay across sessions meets
    # another nonce instead.
    _is(_use(g, _sign(m.SET_CONTINUOUS, 2, CLINICIAN, 50)), m.ERR_WRONG_ROLE,
        "session 2 is the patient's")
    fr = _sign(m.GET_STATUS, 2, PATIENT, 50)
    _is(_use(g, fr), 0, "session 2 at 50")
    relabelled = bytearray(fr)
    relabelled[m.HEADER_SIZE + len(PAYLOADS[m.GET_STATUS])] = 3  # session byte -> 3
    _is(_use(g, _crc(bytes(relabelled[: -m.CRC_SIZE]))), m.ERR_BAD_TAG, "replayed in 3")


def test_unsigned_requests_take_no_counter():
    g = _guard(1)
    for mtype in (m.GET_INFO, m.CHALLENGE):
        d, buf = _decode(_plain(mtype))
        _is(g.advance(d), 0, "unsigned 0x%02x" % mtype)
    assert g.counters == [0] * m.SESSIONS and g.last_used[1:] == [0] * (m.SESSIONS - 1), (
        "no counter, no use")
