# Brute force and session churn (firmware/core/guard.py, issue 8): bad tags lock out the role
# they claim (FAIL_LIMIT within FAIL_WINDOW_S; LOCK_S doubling to LOCK_MAX_S; forgotten after
# FORGET_S), per role; a locked role is refused LOCKED with wait_s before any HMAC; what is not
# a guess (no session, no key, wrong role, replay) does not count, nor does a good tag clear
# the count. CHALLENGE is a token bucket of sessions opened and not used (BUSY with wait_s);
# a session gives its token back when its role first uses it. A CHALLENGE takes a free slot,
# else an unused session, else a stale one (superseded by its role, or idle IDLE_S); never the
# latest session of a role in use (BUSY when that is all there is). Each lockout is logged
# once (EV_LOCKOUT), its refusals counted, never logged one by one; therapy runs on throughout.
# The guard runs on a fake clock (uptime_s), the dispatcher on the pump's, the loop on fake
# board objects. Board-safe: runs on CPython and on MicroPython.

import binascii
import struct

from therapy_kit import (
    CLINICIAN_KEY,
    PATIENT_KEY,
    FakeBoard,
    FakeClock,
    advance,
    assert_code,
    code_name,
    dispatcher,
    running,
)

from firmware.core import guard as guard_mod
from firmware.core.guard import (
    CHALLENGE_BURST,
    CHALLENGE_S,
    FAIL_LIMIT,
    FAIL_WINDOW_S,
    FORGET_S,
    IDLE_S,
    LOCK_MAX_S,
    LOCK_S,
    THROTTLED,
    Guard,
)
from protocol import auth, codec, framing
from protocol import messages as m

PATIENT, CLINICIAN, SERVICE = m.ROLE_PATIENT, m.ROLE_CLINICIAN, m.ROLE_SERVICE
SERVICE_KEY = bytes((0xF0 - 5 * i) & 0xFF for i in range(32))
KEYS = {PATIENT: PATIENT_KEY, CLINICIAN: CLINICIAN_KEY, SERVICE: SERVICE_KEY}
WRONG_KEY = b"\x42" * 32
NONCES = (b"brute force n. 0", b"brute force n. 1", b"brute force n. 2", b"brute force n. 3")
STATUS = b""
SET_CONT = struct.pack("<IB", 400_000, 0)


class Clock:
    """What the guard reads: the pump's monotonic seconds."""

    def __init__(self, uptime_s=1000):
        self.uptime_s = uptime_s


def _crc(body):
    return body + struct.pack("<I", binascii.crc32(body) & 0xFFFFFFFF)


def _sign(mtype, session, role, counter, key=None, payload=STATUS, seq=1, nonce=None):
    head = struct.pack("<BBBH", m.VERSION, mtype, m.FLAG_AUTH, seq) + payload
    head += struct.pack("<BBI", session, role, counter)
    if key is None:
        key = KEYS[role]
    if nonce is None:
        nonce = NONCES[session]
    return _crc(head + auth.frame_tag(key, nonce, head))


def _plain(mtype, seq=1):
    return _crc(struct.pack("<BBBH", m.VERSION, mtype, 0, seq))


def _decode(frame):
    buf = bytearray(m.MAX_FRAME)
    buf[: len(frame)] = frame
    d = codec.Decoded()
    err = codec.decode(buf, len(frame), d)
    assert err == 0, "the codec refuses the test's frame: %d %s" % (err, d.reason)
    return d, buf


def _use(g, frame):
    """admit, then advance, as the loop does: the first refusal, or 0."""
    d, buf = _decode(frame)
    return g.admit(d, buf) or g.advance(d)


_name, _is = code_name, assert_code


def _guard(clock=None, sessions=2):
    g = Guard(dict(KEYS), Clock() if clock is None else clock)
    for i in range(sessions):
        assert g.open(NONCES[i]) == i, "slot %d" % i
    return g


def _bad(g, role=CLINICIAN, session=0, mtype=m.GET_STATUS, payload=STATUS):
    """A frame claiming `role` signed with a wrong key: the guard's answer."""
    return _use(g, _sign(mtype, session, role, 1, key=WRONG_KEY, payload=payload))


def _lock_out(g, role=CLINICIAN):
    """FAIL_LIMIT bad tags: the role is locked out. Returns the lockout's length."""
    g.lockout_who = -1
    for i in range(FAIL_LIMIT):
        _is(_bad(g, role), m.ERR_BAD_TAG, "bad tag %d of %s" % (i + 1, m.ROLE_NAMES[role]))
    assert g.lockout_who == role, "the lockout noted for the log: %d" % g.lockout_who
    return g.lockout_s


class Counter:
    """The guard's `auth` module with its HMAC counted."""

    def __init__(self):
        self.tags = 0
        self.equal = auth.equal
        self.pads = auth.pads

    def frame_tag_pads(self, key_pads, nonce, signed):
        self.tags += 1
        return auth.frame_tag_pads(key_pads, nonce, signed)


# -- bad tags lock their role out ------------------------------------------------------------


def test_the_limit_of_bad_tags_locks_the_role_out():
    clock = Clock()
    g = _guard(clock)
    counter = 0
    for i in range(FAIL_LIMIT - 1):
        _is(_bad(g), m.ERR_BAD_TAG, "bad tag %d" % (i + 1))
        assert g.lockout_who == -1, "no lockout before the limit"
        counter += 1
        _is(_use(g, _sign(m.GET_STATUS, 0, CLINICIAN, counter)), 0, "the key still works")
    _is(_bad(g), m.ERR_BAD_TAG, "the last bad tag is checked and refused as such")
    assert (g.lockout_who, g.lockout_s, g.lockout_n) == (CLINICIAN, LOCK_S, 1), (
        "lockout noted: %r" % ((g.lockout_who, g.lockout_s, g.lockout_n),))
    # Now even the right key is refused, without a look at the tag, for LOCK_S.
    counter += 1
    good = _sign(m.GET_STATUS, 0, CLINICIAN, counter)
    for waited in (0, 1, LOCK_S // 2, LOCK_S - 1):
        clock.uptime_s = 1000 + waited
        _is(_use(g, good), m.ERR_LOCKED, "%d s into the lockout" % waited)
        assert g.wait_s == LOCK_S - waited, "wait_s %d at %d s" % (g.wait_s, waited)
        assert not g.verified and "clinician" in g.reason, "reason: %s" % g.reason
    _is(_use(g, _sign(m.STOP, 0, CLINICIAN, counter, payload=struct.pack(
        "<BI", 1, m.STOP_CONFIRM))), m.ERR_LOCKED, "a STOP too")
    assert g.counters[0] == counter - 1, "a refused frame took no counter"
    clock.uptime_s = 1000 + LOCK_S
    _is(_use(g, good), 0, "the lockout is over")
    assert g.wait_s == 0, "no wait on an admitted frame"


def test_lockouts_are_per_role():
    g = _guard()
    _lock_out(g, CLINICIAN)
    _is(_use(g, _sign(m.GET_STATUS, 0, CLINICIAN, 1)), m.ERR_LOCKED, "the clinician")
    # The patient (the pump's owner) and service are not touched by it ...
    _is(_use(g, _sign(m.GET_STATUS, 0, PATIENT, 1)), 0, "the patient reads")
    _is(_use(g, _sign(m.PATIENT_BOLUS, 0, PATIENT, 2)), 0, "the patient's bolus button")
    _is(_use(g, _sign(m.GET_STATUS, 1, SERVICE, 1)), 0, "service")
    # ... and their bad tags count apart from the clinician's.
    for i in range(FAIL_LIMIT - 1):
        _is(_bad(g, PATIENT), m.ERR_BAD_TAG, "patient's bad tag %d" % (i + 1))
    _is(_use(g, _sign(m.GET_STATUS, 0, PATIENT, 3)), 0, "the patient is not locked out yet")
    g.lockout_who = -1
    _is(_bad(g, PATIENT), m.ERR_BAD_TAG, "the patient's FAIL_LIMIT-th")
    assert g.lockout_who == PATIENT, "now the patient's role is: %d" % g.lockout_who
    _is(_use(g, _sign(m.GET_STATUS, 0, PATIENT, 4)), m.ERR_LOCKED, "patient locked out")
    _is(_use(g, _sign(m.GET_STATUS, 1, SERVICE, 2)), 0, "service still served")


def test_back_off_doubles_up_to_its_cap_and_is_forgotten_after_a_quiet_day():
    clock = Clock()
    g = _guard(clock)
    want = LOCK_S
    lengths = []
    for _ in range(7):
        lock = _lock_out(g)
        lengths.append(lock)
        assert lock == want, "lockouts so far %r, want %d next" % (lengths, want)
        assert g.lockout_n == len(lengths), "lockouts in a row: %d" % g.lockout_n
        _is(_bad(g), m.ERR_LOCKED, "during the lockout")
        assert g.wait_s == lock, "wait_s %d, lockout %d" % (g.wait_s, lock)
        clock.uptime_s += lock  # over: the next bad tags start a longer one
        want = min(2 * want, LOCK_MAX_S)
    assert lengths[-1] == LOCK_MAX_S and LOCK_MAX_S < LOCK_S << 6, "capped: %r" % lengths
    # A quiet day later, the back-off starts over.
    clock.uptime_s += FORGET_S
    assert _lock_out(g) == LOCK_S, "after a quiet day: %d" % g.lockout_s
    assert g.lockout_n == 1, "counted from 1 again: %d" % g.lockout_n
    # Not after less than that.
    clock.uptime_s += LOCK_S + FORGET_S // 2
    assert _lock_out(g) == 2 * LOCK_S, "half a day later: %d" % g.lockout_s


def test_bad_tags_count_within_their_window_only():
    clock = Clock()
    g = _guard(clock)
    for i in range(FAIL_LIMIT - 1):
        _is(_bad(g), m.ERR_BAD_TAG, "early bad tag %d" % (i + 1))
    clock.uptime_s += FAIL_WINDOW_S  # the window is over
    for i in range(FAIL_LIMIT - 1):
        _is(_bad(g), m.ERR_BAD_TAG, "bad tag %d of a new window" % (i + 1))
        clock.uptime_s += 1
    assert g.lockout_who == -1, "FAIL_LIMIT - 1 in each window: no lockout"
    _is(_use(g, _sign(m.GET_STATUS, 0, CLINICIAN, 1)), 0, "not locked out")
    _is(_bad(g), m.ERR_BAD_TAG, "the FAIL_LIMIT-th within the window")
    assert g.lockout_who == CLINICIAN, "a lockout: %d" % g.lockout_who


def test_a_good_tag_does_not_clear_the_count():
    # A host with the key working alongside must not reset a guesser's budget.
    g = _guard()
    counter = 0
    for i in range(FAIL_LIMIT - 1):
        _is(_bad(g), m.ERR_BAD_TAG, "bad tag %d" % (i + 1))
        for _ in range(3):
            counter += 1
            _is(_use(g, _sign(m.GET_STATUS, 1, CLINICIAN, counter)), 0, "the clinician works")
    _is(_bad(g), m.ERR_BAD_TAG, "the last")
    assert g.lockout_who == CLINICIAN, "locked out after FAIL_LIMIT bad tags in all"


def test_a_host_whose_session_was_taken_over_is_not_locked_out():
    # Another clinician host's later session made its session stale, and a CHALLENGE took its
    # slot: its next frames, signed with the key and the slot's old nonce, are refused
    # BAD_TAG, but they prove the key and are not counted.
    g = _guard(sessions=1)
    _is(_use(g, _sign(m.GET_STATUS, 0, CLINICIAN, 1)), 0, "the clinician's session")
    for i, role in ((1, PATIENT), (2, SERVICE), (3, CLINICIAN)):  # others' sessions, used
        assert g.open(NONCES[i]) == i, "slot %d" % i
        _is(_use(g, _sign(m.GET_STATUS, i, role, 1)), 0, "slot %d used" % i)
    assert g.open(b"other host   0") == 0, "slot 0 (superseded by slot 3) is taken over"
    for i in range(4 * FAIL_LIMIT):
        _is(_use(g, _sign(m.GET_STATUS, 0, CLINICIAN, 2 + i)), m.ERR_BAD_TAG, "old session")
    assert g.lockout_who == -1 and g.fails[CLINICIAN] == 0, "not counted"
    # A slot taken over twice: the session before the last one proves nothing any more.
    for i in range(m.SESSIONS):
        if g.open(b"yet another %4d" % i) == 0:
            break
    else:
        raise AssertionError("slot 0 was not taken over again")
    for i in range(FAIL_LIMIT):
        _is(_use(g, _sign(m.GET_STATUS, 0, CLINICIAN, 30 + i)), m.ERR_BAD_TAG, "older")
    assert g.lockout_who == CLINICIAN, "counted: a lockout"


def test_what_is_not_a_guess_does_not_count():
    # No session, no key, no signature, a role not allowed or a counter spent: none of them
    # tried a key, so none of them counts towards a lockout, however many.
    g = _guard(sessions=1)
    _is(_use(g, _sign(m.GET_STATUS, 0, CLINICIAN, 10)), 0, "session 0 is the clinician's")
    frames = (
        (_sign(m.GET_STATUS, 3, CLINICIAN, 1, nonce=NONCES[0]), m.ERR_NO_SESSION),
        (_sign(m.GET_STATUS, 0, m.ROLE_NONE, 11, key=CLINICIAN_KEY), m.ERR_NO_KEY),
        (_sign(m.GET_STATUS, 0, 4, 11, key=CLINICIAN_KEY), m.ERR_NO_KEY),
        (_plain(m.GET_STATUS), m.ERR_AUTH_REQUIRED),
        (_sign(m.GET_STATUS, 0, CLINICIAN, 10), m.ERR_REPLAY),
        (_sign(m.PATIENT_BOLUS, 0, CLINICIAN, 11), m.ERR_WRONG_ROLE),
        (_sign(m.GET_STATUS, 0, PATIENT, 11), m.ERR_WRONG_ROLE),  # the session's not theirs
    )
    for _ in range(4 * FAIL_LIMIT):
        for frame, want in frames:
            _is(_use(g, frame), want, "refused")
    assert g.lockout_who == -1 and g.locked_until == [0] * len(g.locked_until), (
        "no lockout: %r" % (g.locked_until,))
    _is(_use(g, _sign(m.GET_STATUS, 0, CLINICIAN, 11)), 0, "the clinician is served")


def test_a_locked_role_costs_no_hmac():
    g = _guard()
    counted = Counter()
    saved = guard_mod.auth
    guard_mod.auth = counted
    try:
        for i in range(FAIL_LIMIT):
            _bad(g)
            assert counted.tags == i + 1, "each bad tag before the lockout is worked out"
        for _ in range(200):  # a flood while locked out, good tags and bad
            _is(_bad(g), m.ERR_LOCKED, "bad")
            _is(_use(g, _sign(m.SET_CONTINUOUS, 0, CLINICIAN, 1, payload=SET_CONT)),
                m.ERR_LOCKED, "good")
        assert counted.tags == FAIL_LIMIT, "HMACs worked out while locked out: %d" % (
            counted.tags - FAIL_LIMIT)
        _is(_use(g, _sign(m.GET_STATUS, 0, PATIENT, 1)), 0, "another role is checked")
        assert counted.tags == FAIL_LIMIT + 1, "its tag was worked out"
    finally:
        guard_mod.auth = saved


def test_a_guard_without_a_clock_limits_nothing_and_the_firmware_always_has_one():
    g = Guard(dict(KEYS))
    assert g.open(NONCES[0]) == 0
    for _ in range(10 * FAIL_LIMIT):
        _is(_bad(g), m.ERR_BAD_TAG, "no clock: every bad tag is BAD_TAG")
    for _ in range(3 * CHALLENGE_BURST):
        _is(_use(g, _plain(m.CHALLENGE)), 0, "no clock: CHALLENGE always")
        g.open(NONCES[1])
    slot = g.open(NONCES[2])
    _is(_use(g, _sign(m.GET_STATUS, slot, CLINICIAN, 1, nonce=NONCES[2])), 0, "served")
    # The dispatcher attaches the pump's uptime; the firmware's loop builds one.
    d = dispatcher(running())
    assert d.guard.clock is d.pump, "the dispatcher's guard runs on the pump's clock"
    from firmware import loop as loop_mod

    saved = loop_mod.time
    clock = FakeClock()
    loop_mod.time = clock
    try:
        lp = loop_mod.Loop(FakeBoard(clock=clock))
    finally:
        loop_mod.time = saved
    assert lp.guard is lp.dispatcher.guard and lp.guard.clock is lp.pump, (
        "the loop's guard runs on its pump's uptime")


# -- CHALLENGE -------------------------------------------------------------------------------


def _challenge(g):
    """A CHALLENGE as the loop takes it: admitted, then a session opened. The refusal, or 0."""
    code = _use(g, _plain(m.CHALLENGE))
    if code == 0:
        g.open(NONCES[0])
    return code


def test_challenge_is_rate_limited_and_each_throttle_noted_once():
    clock = Clock()
    g = Guard(dict(KEYS), clock)
    for i in range(CHALLENGE_BURST):
        _is(_challenge(g), 0, "CHALLENGE %d of the burst" % (i + 1))
    assert g.lockout_who == -1, "no throttle yet"
    _is(_challenge(g), m.ERR_BUSY, "one past the burst")
    assert g.wait_s == CHALLENGE_S, "wait_s %d" % g.wait_s
    assert (g.lockout_who, g.lockout_s) == (THROTTLED, CHALLENGE_S), "throttle noted"
    g.lockout_who = -1
    clock.uptime_s += CHALLENGE_S - 3
    _is(_challenge(g), m.ERR_BUSY, "not yet")
    assert g.wait_s == 3, "wait_s %d" % g.wait_s
    clock.uptime_s += 3
    _is(_challenge(g), 0, "CHALLENGE_S later: one more")
    _is(_challenge(g), m.ERR_BUSY, "and then no more")
    assert g.lockout_who == -1, "the same throttle: not noted again"
    # A steady CHALLENGE_S apart is served; faster is not.
    for i in range(5):
        clock.uptime_s += CHALLENGE_S
        _is(_challenge(g), 0, "steady %d" % i)
        _is(_challenge(g), m.ERR_BUSY, "faster %d" % i)
    # Once the bucket has filled up, the throttle is over: the next one is a new one.
    clock.uptime_s += CHALLENGE_S * CHALLENGE_BURST
    for i in range(CHALLENGE_BURST):
        _is(_challenge(g), 0, "a new burst %d" % (i + 1))
    _is(_challenge(g), m.ERR_BUSY, "past it")
    assert g.lockout_who == THROTTLED, "a new throttle, noted"


def test_a_session_used_by_its_role_gives_its_token_back():
    # A host with a key is never held back by its own sessions, even on a clock that stands
    # still (a paused simulator): only sessions opened and never used count.
    g = Guard(dict(KEYS), Clock())
    for i in range(10 * CHALLENGE_BURST):
        d, buf = _decode(_plain(m.CHALLENGE))
        _is(g.admit(d, buf), 0, "CHALLENGE %d, each used" % (i + 1))
        slot = g.open(NONCES[i % 4])
        _is(_use(g, _sign(m.GET_STATUS, slot, PATIENT, 1, nonce=NONCES[i % 4])), 0, "used")
        _is(_use(g, _sign(m.GET_STATUS, slot, PATIENT, 2, nonce=NONCES[i % 4])), 0,
            "used again: no second token back")
    assert g.tokens == CHALLENGE_BURST, "all given back: %d" % g.tokens
    # Unused ones are what the limit counts.
    for i in range(CHALLENGE_BURST):
        _is(_challenge(g), 0, "unused %d" % (i + 1))
    _is(_challenge(g), m.ERR_BUSY, "past the burst")
    # A bad tag in a session proves nothing: no token back.
    _is(_bad(g, PATIENT, session=0, mtype=m.GET_STATUS), m.ERR_BAD_TAG, "bad")
    _is(_challenge(g), m.ERR_BUSY, "still throttled")
    # A session opened before the throttle and now used gives its token back.
    _is(_use(g, _sign(m.GET_STATUS, 0, CLINICIAN, 1, nonce=NONCES[0])), 0, "used at last")
    _is(_challenge(g), 0, "its token serves one more CHALLENGE")


def _pumpctl_run(g, role, what):
    """A host with a key opens a session and uses it (as each pumpctl run does): its slot."""
    d, buf = _decode(_plain(m.CHALLENGE))
    _is(g.admit(d, buf), 0, what + ": CHALLENGE")
    nonce = b"%-16s" % what[:16].encode()
    slot = g.open(nonce)
    _is(_use(g, _sign(m.GET_STATUS, slot, role, 1, nonce=nonce)), 0, what + ": used")
    return slot


def test_a_host_with_a_key_always_gets_a_session_at_once():
    # On a clock that stands still (a paused simulator), slots full of used sessions: each
    # new host with a key is served at once, in the slot its role's later session made
    # stale; the latest session of each other role is kept.
    g = Guard(dict(KEYS), Clock())
    patient = _pumpctl_run(g, PATIENT, "patient")
    service = _pumpctl_run(g, SERVICE, "service")
    slots = [_pumpctl_run(g, CLINICIAN, "pumpctl %d" % i) for i in range(12)]
    assert patient not in slots and service not in slots, "clinician runs took %r" % (slots,)
    assert sorted(set(slots)) == sorted(set(range(m.SESSIONS)) - {patient, service}), (
        "the clinician's runs take turns in the other two slots: %r" % (slots,))
    assert g.nonces[patient] == b"patient         " and g.roles[patient] == PATIENT
    assert g.nonces[service] == b"service         " and g.roles[service] == SERVICE
    # A host without a key now takes the clinician's stale session, and then its own.
    for i in range(CHALLENGE_BURST):
        _is(_challenge(g), 0, "keyless %d" % i)
    taken = [i for i in range(m.SESSIONS) if g.roles[i] == 0]
    assert len(taken) == 1 and g.nonces[taken[0]] == NONCES[0], "one slot: %r" % (taken,)
    _is(_use(g, _sign(m.GET_STATUS, slots[-1], CLINICIAN, 2, nonce=b"pumpctl 11      ")),
        0, "the clinician's latest session goes on")


def test_a_challenge_takes_an_abandoned_session_before_a_superseded_one():
    def pump_at(now):
        """Slots 0 to 3: patient, clinician, clinician, service, used one second apart from
        1000; the first clinician host carries on at 1500, superseding the second's."""
        clock = Clock(1000)
        g = Guard(dict(KEYS), clock)
        for role in (PATIENT, CLINICIAN, CLINICIAN, SERVICE):
            _pumpctl_run(g, role, "at %d" % clock.uptime_s)
            clock.uptime_s += 1
        clock.uptime_s = 1500
        _is(_use(g, _sign(m.GET_STATUS, 1, CLINICIAN, 2, nonce=b"at 1001         ")), 0,
            "the first clinician host: its session in 1 is the latest now")
        clock.uptime_s = now
        _is(_challenge(g), 0, "CHALLENGE at %d" % now)
        return [i for i in range(m.SESSIONS) if g.roles[i] == 0]

    assert pump_at(1000 + IDLE_S - 1) == [2], "superseded by 1; the patient's not idle yet"
    assert pump_at(1000 + IDLE_S) == [0], "the patient's session, unused for IDLE_S, first"


def test_every_slot_the_latest_of_its_role_in_use_is_busy_until_one_is_idle():
    # Keys for as many roles as there are slots (the firmware provisions three roles for
    # four slots, so this needs a fourth): none of the sessions is stale, so a CHALLENGE is
    # refused BUSY until the least recently used has been idle IDLE_S, noted once.
    keys = dict(KEYS)
    keys[4] = b"\x44" * 32
    clock = Clock(1000)
    g = Guard(keys, clock)
    for slot, role in enumerate((PATIENT, CLINICIAN, SERVICE, 4)):
        d, buf = _decode(_plain(m.CHALLENGE))
        _is(g.admit(d, buf), 0, "CHALLENGE %d" % slot)
        assert g.open(NONCES[slot]) == slot
        _is(_use(g, _sign(m.GET_INFO, slot, role, 1, key=keys[role])), 0, "slot %d" % slot)
        clock.uptime_s += 10
    clock.uptime_s = 1100
    g.lockout_who = -1
    for waited in (0, 250, IDLE_S - 101):
        clock.uptime_s = 1100 + waited
        _is(_challenge(g), m.ERR_BUSY, "%d s on" % waited)
        assert g.wait_s == 1000 + IDLE_S - clock.uptime_s, "wait_s %d" % g.wait_s
        assert "in use" in g.reason, g.reason
    assert (g.lockout_who, g.lockout_s, g.lockout_n) == (THROTTLED, IDLE_S - 100, 0), (
        "noted once, as a throttle: %r" % ((g.lockout_who, g.lockout_s, g.lockout_n),))
    assert g.tokens == CHALLENGE_BURST, "refused CHALLENGEs took no token: %d" % g.tokens
    # The patient (slot 0) uses its session: now the clinician's is the least recently used.
    _is(_use(g, _sign(m.GET_STATUS, 0, PATIENT, 2)), 0, "the patient carries on")
    clock.uptime_s = 1000 + IDLE_S
    _is(_challenge(g), m.ERR_BUSY, "the patient's is not idle any more")
    assert g.wait_s == 10, "until the clinician's is idle IDLE_S: %d" % g.wait_s
    g.lockout_who = -1
    clock.uptime_s += 10
    _is(_challenge(g), 0, "served")
    assert g.roles[1] == 0 and g.nonces[1] == NONCES[0], "in the clinician's idle slot"
    assert not g.crowded and g.lockout_who == -1, "the throttle is over"
    _is(_challenge(g), 0, "and again, in the unused one")
    assert [g.roles[i] for i in range(m.SESSIONS)] == [PATIENT, 0, SERVICE, 4]
    # The clinician's new session in it: full again, a new throttle, noted again.
    _is(_use(g, _sign(m.GET_STATUS, 1, CLINICIAN, 1, nonce=NONCES[0])), 0, "clinician")
    _is(_challenge(g), m.ERR_BUSY, "full again")
    assert (g.lockout_who, g.wait_s) == (THROTTLED, 10), "a new throttle, noted: %r" % (
        (g.lockout_who, g.wait_s),)


# -- through the dispatcher: answers, counters, the log, therapy ----------------------------


def _answer(d, frame):
    """What the loop answers a request with (the codec's refusals aside): (type, values)."""
    dec, buf = _decode(frame)
    g = d.guard
    code = g.admit(dec, buf) or g.advance(dec)
    if code:
        return d.denied(g.code, dec.type, g.reason, dec.role if g.verified else 0)
    return d.handle(dec.type, dec.values, dec.role)


def _events(t, since):
    return [t.log.get(n) for n in range(since, t.log.total)]


def test_a_brute_force_is_answered_typed_counted_and_logged_once():
    t = running(400_000)
    d = dispatcher(t)
    g = d.guard
    slot = g.open(NONCES[0])
    since = t.log.total
    answers = []
    for i in range(FAIL_LIMIT + 40):
        frame = _sign(m.SET_CONTINUOUS, slot, CLINICIAN, i + 1, key=WRONG_KEY,
                      payload=SET_CONT)
        rtype, values = _answer(d, frame)
        assert rtype == m.ERROR, "answered 0x%02x" % rtype
        answers.append((values[0], values[5]))
        advance(t, 500)  # half a second between guesses
    want = [(m.ERR_BAD_TAG, 0)] * FAIL_LIMIT
    want += [(m.ERR_LOCKED, LOCK_S - (i + 1) // 2) for i in range(40)]
    assert answers == want, "answers (code, wait_s): %r" % (answers,)
    assert d.error_counts[m.ERR_BAD_TAG] == FAIL_LIMIT, "BAD_TAG counted"
    assert d.error_counts[m.ERR_LOCKED] == 40, "LOCKED counted: %d" % d.error_counts[
        m.ERR_LOCKED]
    got = [(e[1], e[2], e[4], e[5], e[6], e[7]) for e in _events(t, since)]
    assert got == [
        (m.EV_REFUSED, 0, m.SET_CONTINUOUS, m.ERR_BAD_TAG, 0, 0),  # unproven: once a minute
        (m.EV_LOCKOUT, 0, m.SET_CONTINUOUS, CLINICIAN, LOCK_S, 1),  # once per lockout
    ], "logged (event, role, type, a, b, c): %r" % (got,)
    assert t.mode == m.MODE_CONTINUOUS and t.daily_ng == 400_000, "the program stands"
    # The lockout over, the clinician's key works again (the last frame counter went on).
    advance(t, LOCK_S * 1000)
    rtype, values = _answer(d, _sign(m.GET_STATUS, slot, CLINICIAN, 100))
    assert rtype == m.STATUS, "served after the lockout: %r" % (values,)
    # The next lockout in a row is twice as long, and logged once more.
    since = t.log.total
    for i in range(FAIL_LIMIT + 3):
        _answer(d, _sign(m.GET_STATUS, slot, CLINICIAN, 200 + i, key=WRONG_KEY))
    lockouts = [e for e in _events(t, since) if e[1] == m.EV_LOCKOUT]
    assert [(e[5], e[6], e[7]) for e in lockouts] == [(CLINICIAN, 2 * LOCK_S, 2)], (
        "the second lockout: %r" % (lockouts,))


def test_challenge_flood_is_answered_busy_and_logged_once():
    t = running(400_000)
    d = dispatcher(t)
    since = t.log.total
    answers = []
    for _ in range(CHALLENGE_BURST + 30):
        rtype, values = _answer(d, _plain(m.CHALLENGE))
        answers.append(m.CHALLENGE_OK if rtype == m.CHALLENGE_OK else (values[0], values[5]))
    want = [m.CHALLENGE_OK] * CHALLENGE_BURST + [(m.ERR_BUSY, CHALLENGE_S)] * 30
    assert answers == want, "answers: %r" % (answers,)
    assert d.error_counts[m.ERR_BUSY] == 30, "counted"
    got = [(e[1], e[2], e[4], e[5], e[6], e[7]) for e in _events(t, since)]
    assert got == [(m.EV_LOCKOUT, 0, m.CHALLENGE, THROTTLED, CHALLENGE_S, 0)], (
        "one event for the throttle: %r" % (got,))
    # Unsigned GET_INFO stays open to all.
    rtype, _ = _answer(d, _plain(m.GET_INFO))
    assert rtype == m.INFO, "GET_INFO served"
    advance(t, CHALLENGE_S * 1000)
    rtype, _ = _answer(d, _plain(m.CHALLENGE))
    assert rtype == m.CHALLENGE_OK, "one more CHALLENGE_S later"


def test_a_keyless_challenge_flood_ends_no_session_in_use():
    # Through the dispatcher, on the pump's clock: for half an hour a host without a key
    # sends a CHALLENGE every 2 s (the rate limit serves one each CHALLENGE_S), while the
    # clinician and the patient use their sessions every 5 min. None of their frames is
    # refused: the flood takes the free slots and its own sessions, never theirs.
    t = running(400_000)
    d = dispatcher(t)
    sessions = {}
    counters = {CLINICIAN: 0, PATIENT: 0}
    for role in (CLINICIAN, PATIENT):
        rtype, values = _answer(d, _plain(m.CHALLENGE))
        assert rtype == m.CHALLENGE_OK, "%s's CHALLENGE: %r" % (m.ROLE_NAMES[role], values)
        sessions[role] = values

    def work(role):
        counters[role] += 1
        slot, nonce = sessions[role]
        rtype, values = _answer(d, _sign(m.GET_STATUS, slot, role, counters[role],
                                         nonce=nonce))
        assert rtype == m.STATUS, "%s refused: %r" % (m.ROLE_NAMES[role], values)

    served = [0] * m.SESSIONS
    for second in range(0, 1800, 2):
        if second % 300 == 0:
            work(CLINICIAN)
            work(PATIENT)
        rtype, values = _answer(d, _plain(m.CHALLENGE))
        if rtype == m.CHALLENGE_OK:
            served[values[0]] += 1
        advance(t, 2000)
    work(CLINICIAN)
    work(PATIENT)
    mine = (sessions[CLINICIAN][0], sessions[PATIENT][0])
    assert [served[s] for s in mine] == [0, 0], "the flood took %r" % (served,)
    assert sum(served) >= 1800 // CHALLENGE_S, "served the flood within its rate: %r" % (
        served,)


def test_therapy_goes_on_untouched_through_lockouts():
    # Every role locked out and CHALLENGE throttled for hours: the pump delivers exactly what
    # a twin left alone delivers, and the other requests' answers come on time.
    t = running(412_500)
    twin = running(412_500)
    d = dispatcher(t, keys=dict(KEYS))
    g = d.guard
    for s in range(2):
        g.open(NONCES[s])
    for hour in range(6):
        for role in (PATIENT, CLINICIAN, SERVICE):
            for i in range(FAIL_LIMIT + 2):
                _answer(d, _sign(m.STOP, 0, role, i + 1, key=WRONG_KEY, payload=struct.pack(
                    "<BI", 1, m.STOP_CONFIRM)))
        for _ in range(CHALLENGE_BURST + 2):
            _answer(d, _plain(m.CHALLENGE))
        for _ in range(60):
            advance(t, 60_000)
            advance(twin, 60_000)
            assert t.pump.delivered_steps == twin.pump.delivered_steps, "hour %d" % hour
        assert t.mode == m.MODE_CONTINUOUS and t.pump.basal_nl_day == twin.pump.basal_nl_day
    assert t.pump.delivered_steps > 500, "it delivered: %d" % t.pump.delivered_steps
    assert t.alarms.active == twin.alarms.active, "no alarm from it"
    lockouts = [e for e in _events(t, 0) if e[1] == m.EV_LOCKOUT]
    # Per hour: each role once (the back-off grows, but an hour covers it up to 15 min)
    # and the throttle once.
    assert len(lockouts) == 6 * 4, "%d lockout events" % len(lockouts)


def test_the_loop_answers_locked_with_wait_s():
    # End to end through firmware/loop.py: wire bytes in, ERROR frames out.
    from firmware import loop as loop_mod

    saved = loop_mod.time
    clock = FakeClock()
    loop_mod.time = clock
    try:
        board = FakeBoard(clock=clock)
        written = []
        board.link.write = lambda data: written.append(bytes(data))
        lp = loop_mod.Loop(board)
        lp.guard = lp.dispatcher.guard = Guard(dict(KEYS), lp.pump)  # the test's keys
        slot = lp.guard.open(NONCES[0])
        wire = bytearray(framing.MAX_WIRE)
        for i in range(FAIL_LIMIT + 1):
            frame = _sign(m.GET_STATUS, slot, PATIENT, i + 1, key=WRONG_KEY, seq=10 + i)
            n = framing.cobs_encode(frame, len(frame), wire)
            board.link.rx += wire[:n]
        lp.once()
        while board.link.at < len(board.link.rx):
            lp.once()
        got = []
        for w in written:
            reader = framing.FrameReader()
            for b in w:
                reader.push(b)
            d = codec.Decoded()
            assert codec.decode(reader.frame, reader.length, d, "resp") == 0, d.reason
            if d.type == m.ERROR:
                got.append((d.seq, d.values[0], d.values[5]))
        want = [(10 + i, m.ERR_BAD_TAG, 0) for i in range(FAIL_LIMIT)]
        want.append((10 + FAIL_LIMIT, m.ERR_LOCKED, LOCK_S))
        assert got == want, "(seq, code, wait_s): %r" % (got,)
    finally:
        loop_mod.time = saved


# -- the refusal paths allocate nothing (MicroPython) ---------------------------------------


def _runs_without_allocating(fn, n=1000):
    """fn once to warm up, then n times: under micropython.heap_lock() on MicroPython (False
    if it allocated); on CPython, where every int is an object, just run."""
    fn()
    try:
        import micropython  # type: ignore[import-not-found]
    except ImportError:
        for _ in range(n):
            fn()
        return True
    import gc

    gc.collect()
    micropython.heap_lock()
    try:
        for _ in range(n):
            fn()
    except MemoryError:
        return False
    finally:
        micropython.heap_unlock()
    return True


def test_refusals_of_the_rate_limits_allocate_nothing():
    # On MicroPython, under heap_lock: a flood of frames for a locked role and of CHALLENGEs
    # past the limit allocates nothing (no HMAC, no text formatted). On CPython (all ints
    # are objects there) the same flood is refused alike.
    g = _guard()
    _lock_out(g)
    locked, lbuf = _decode(_sign(m.SET_CONTINUOUS, 0, CLINICIAN, 1, payload=SET_CONT))
    for _ in range(CHALLENGE_BURST):
        _challenge(g)
    chal, cbuf = _decode(_plain(m.CHALLENGE))
    frames = (locked, lbuf, chal, cbuf)
    codes = [0, 0]

    # (A MicroPython closure over more than 5 variables allocates its arguments on each
    # call: this one keeps to 3.)
    def flood():
        codes[0] = g.admit(frames[0], frames[1])
        codes[1] = g.admit(frames[2], frames[3])

    assert _runs_without_allocating(flood), (
        "a refusal by the rate limits allocated (MemoryError under heap_lock)")
    assert codes == [m.ERR_LOCKED, m.ERR_BUSY], "refused: %r" % (codes,)


def test_a_challenge_refused_for_want_of_a_slot_allocates_nothing():
    # As above, for BUSY when every slot holds the latest session of a role in use (keys for
    # four roles).
    keys = dict(KEYS)
    keys[4] = b"\x44" * 32
    g = Guard(keys, Clock())
    for slot, role in enumerate((PATIENT, CLINICIAN, SERVICE, 4)):
        assert g.open(NONCES[slot]) == slot
        _is(_use(g, _sign(m.GET_INFO, slot, role, 1, key=keys[role])), 0, "slot %d" % slot)
    chal, cbuf = _decode(_plain(m.CHALLENGE))
    frames = (chal, cbuf)
    codes = [0]

    def flood():
        codes[0] = g.admit(frames[0], frames[1])

    assert _runs_without_allocating(flood), (
        "refusing a CHALLENGE for want of a slot allocated (heap_lock)")
    assert codes == [m.ERR_BUSY] and g.crowded, "refused: %r" % (codes,)
