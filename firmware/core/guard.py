# Who may do what: sessions, role keys, tags, counters and the access table. Pure: the shell
# supplies the keys (from flash) and the random nonces; the dispatcher attaches the pump's
# monotonic clock (attach()), on which the rate limits below run.
#
# Brute force and session churn (issue 8). Anyone on the link can send frames, so:
#
# - Bad tags lock their role out. A tag that does not match (BAD_TAG) counts against the role
#   the frame claims, FAIL_LIMIT of them within FAIL_WINDOW_S lock that role out: for
#   LOCK_S, doubling with each lockout in a row up to LOCK_MAX_S; a role that had no bad tag
#   for FORGET_S starts at LOCK_S again. While a role is locked out every signed frame that
#   claims it is refused LOCKED (wait_s: the seconds left) before any HMAC is worked out, so
#   a guesser gets at most FAIL_LIMIT tries per lockout and a flood of frames costs the pump
#   no hashing. A matching tag never clears the count: a legitimate host working in
#   parallel must not reset an attacker's budget. A frame whose tag matches the nonce its
#   slot held before (a host whose session others' CHALLENGEs took over, sending once more
#   before it opens a new one) is refused BAD_TAG as before but not counted: it proves the
#   key, it guesses nothing (one more HMAC, on refused frames only).
# - Per role, not for the whole pump: a programmer with a stale clinician key (the common
#   case) never locks the patient out of their own bolus button or alarm silence, nor a
#   stale patient remote the clinician. An attacker on the link can lock out any role it
#   names, one by one; LOCK_MAX_S bounds how long each lockout lasts and the keys (32 random
#   bytes) make the guessing itself hopeless, so the limit mostly keeps the pump's time and
#   the log in hand. What a lockout never touches: therapy. Delivery, alarms and their tones,
#   the interlocks and the sessions' own time-outs (a refill or CAP session closes by itself)
#   run on; GET_INFO (and CHALLENGE, within its limit) stay open to all, and a role not
#   locked out carries on (the clinician can still read and stop while the patient's role is
#   locked out, and the other way round).
# - CHALLENGE is rate-limited: a token bucket of CHALLENGE_BURST sessions, one more each
#   CHALLENGE_S; past it CHALLENGE is refused BUSY (wait_s: until the next one). A session
#   gives its token back when its role first uses it (a host that holds a key is never held
#   back by its own sessions, however fast its clock or paused its simulator), so what the
#   limit counts is sessions opened and never used: what a host without a key can make.
# - Which session a CHALLENGE ends (slot reuse). There are SESSIONS slots; a CHALLENGE takes,
#   in this order: a free slot; else the least recently used session that was never used
#   (opened, no frame of a role ever accepted in it); else the least recently used stale
#   session: one whose role has used a later session since (superseded: a host that opens a
#   new session drops its old one, each pumpctl run does) or that no one has used for IDLE_S
#   (abandoned). The latest session of each role, used within IDLE_S, is never ended by a
#   CHALLENGE: if every slot holds one, CHALLENGE is refused BUSY, wait_s until the least
#   recently used of them is IDLE_S idle (logged once, as a throttle, until one is served).
#   Why this and not either plain choice:
#   . Taking the least recently used session once the slots are full (as before) let anyone
#     without a key end the session a clinician is working in, mid-procedure: a CHALLENGE
#     costs nothing, and a command whose answer was lost could then no longer be retried in
#     its own session (the pump answers a retry from its cache, per session). A host without
#     a key can only make unused sessions, which go first: its flood of CHALLENGEs cycles
#     through the free slots and its own sessions and ends no session a host with a key is
#     using.
#   . Refusing BUSY whenever every slot holds a used session would lock a host out after
#     its session was lost (a restarted programmer, a fifth pumpctl run in a row) until an
#     idle time-out passes, and forever on a paused simulator. Superseding needs no clock:
#     with the three roles in SESSIONS = 4 slots, slots full of used sessions always hold
#     one its role has superseded, so a host with a key always gets a session at once (the
#     BUSY above needs keys for as many roles as there are slots). IDLE_S only orders stale
#     sessions (an abandoned one goes before a superseded one used later) and bounds that
#     BUSY.
#   . What it costs: of two hosts working in one role at once (a programmer and a pumpctl
#     script, both clinician), the one less recently used may be ended by others'
#     CHALLENGEs. Its next frame is refused BAD_TAG before it runs (not counted, above) and
#     PumpClient opens a new session and sends it again; a retry of a command whose answer
#     was lost is refused, and PumpClient reports OutcomeUnknown instead of resending it.
#   Without a clock (a Guard on its own) nothing is idle and nothing is refused: with no
#   stale session, the least recently used goes.
# - Logged once per lockout, not per frame: the guard notes each lockout as it begins
#   (lockout_who, lockout_s, lockout_n) and the dispatcher writes one EV_LOCKOUT when it
#   answers the refusal that caused it. A CHALLENGE throttle is one lockout (who = 0) from
#   its first BUSY until the bucket is full again. LOCKED and BUSY refusals are counted
#   (COUNTERS) but not logged one by one.
# - Time is the pump's uptime in whole seconds (monotonic, small ints: integer arithmetic,
#   no allocation on the refusal paths). Without a clock (a Guard built on its own, as unit
#   tests of the tags do) nothing is rate-limited; the firmware's Dispatcher always attaches
#   one. The state is in RAM: a reboot (which no one can cause from the link without a
#   key) starts afresh.

from protocol import auth
from protocol import messages as m

FAIL_LIMIT = 5  # bad tags of one role ...
FAIL_WINDOW_S = 60  # ... within this long lock the role out
LOCK_S = 60  # the first lockout; each one in a row doubles it ...
LOCK_MAX_S = 900  # ... up to 15 min
FORGET_S = 86_400  # a role with no bad tag for a day starts at LOCK_S again
CHALLENGE_BURST = 8  # sessions opened and not yet used, at most this many at once ...
CHALLENGE_S = 10  # ... and one more each CHALLENGE_S (6 a minute)
THROTTLED = 0  # EV_LOCKOUT's `a` for the CHALLENGE limit (roles are 1 and up)
IDLE_S = 600  # a session no one used for 10 min is abandoned: a CHALLENGE may take it
_MAX_STRIKES = 8  # LOCK_S << 8 is far past LOCK_MAX_S: the count need not grow further


class Guard:
    def __init__(self, keys, clock=None):
        """keys: {role: key bytes} as provisioned; a role without a key cannot sign.
        clock: see attach()."""
        self.keys = keys
        self.pads = {}  # each key's HMAC pads, worked out once
        n = len(m.ROLE_NAMES)
        for role in keys:
            self.pads[role] = auth.pads(keys[role])
            if role >= n:
                n = role + 1
        # Per role (indexed by role; 0 unused): bad tags in the window that began at
        # fail_from, the last bad tag, lockouts in a row, and until when it is locked out.
        self.fails = [0] * n
        self.fail_from = [0] * n
        self.last_fail = [0] * n
        self.strikes = [0] * n
        self.locked_until = [0] * n
        self._locked_reason = [
            "%s locked out after %d bad tags" % (
                m.ROLE_NAMES[r] if r < len(m.ROLE_NAMES) else "role %d" % r, FAIL_LIMIT)
            for r in range(n)]
        # CHALLENGE's token bucket: tokens left, uptime they were last counted at, whether a
        # throttle (BUSY) is on, and which sessions took a token they give back when used.
        self.tokens = CHALLENGE_BURST
        self.token_at = 0
        self.throttled = False
        self.crowded = False  # CHALLENGE refused BUSY for want of a slot it may take
        self.charged = [False] * m.SESSIONS
        self._charge = False  # the CHALLENGE being answered took a token: open() keeps it
        self.wait_s = 0  # of the last refusal LOCKED or BUSY: s until it may be allowed
        # A lockout that began with the last refusal, for the dispatcher to log: who (the
        # role, or THROTTLED; -1: none), for how long (s) and how many in a row.
        self.lockout_who = -1
        self.lockout_s = 0
        self.lockout_n = 0
        self.clock = None
        if clock is not None:
            self.attach(clock)
        self.nonces = [b""] * m.SESSIONS  # b"": the slot has no session
        self.old_nonces = [b""] * m.SESSIONS  # the session each slot held before its own
        self.counters = [0] * m.SESSIONS
        self.roles = [0] * m.SESSIONS  # bound by a session's first accepted request
        self.last_used = [0] * m.SESSIONS  # order of use: _uses when last opened or used
        self.used_at = [0] * m.SESSIONS  # and uptime then (s)
        self._uses = 0
        self.code = 0  # the last refusal: its error code and reason
        self.reason = ""
        self.verified = False  # the last frame's tag checked out: its role is who sent it

    def attach(self, clock):
        """Run the rate limits on clock.uptime_s: the pump's monotonic seconds (the
        dispatcher attaches the pump)."""
        self.clock = clock
        self.token_at = clock.uptime_s

    def open(self, nonce):
        """Start a session in the slot a CHALLENGE takes (see the notes above); return the
        slot. If there is none (admit() refuses such a CHALLENGE BUSY: only a caller that
        skips it gets here), the least recently used."""
        slot = self._slot(self._now())
        if slot < 0:
            slot = 0
            for i in range(1, m.SESSIONS):
                if self.last_used[i] < self.last_used[slot]:
                    slot = i
        self.old_nonces[slot] = self.nonces[slot]
        self.nonces[slot] = bytes(nonce)
        self.counters[slot] = 0
        self.roles[slot] = 0
        self.charged[slot] = self._charge
        self._charge = False
        self.crowded = False
        self._touch(slot)
        return slot

    def _slot(self, now):
        """The slot a new session may take: a free one, else the least recently used session
        never used, else the least recently used stale one (its role used a later session,
        or it was idle IDLE_S); -1 if none."""
        nonces = self.nonces
        roles = self.roles
        last = self.last_used
        idle = self.clock is not None
        unused = -1
        stale = -1
        n = m.SESSIONS
        for i in range(n):
            if not nonces[i]:
                return i
            role = roles[i]
            if not role:
                if unused < 0 or last[i] < last[unused]:
                    unused = i
            elif unused < 0 and (stale < 0 or last[i] < last[stale]):
                if idle and now - self.used_at[i] >= IDLE_S:
                    stale = i
                    continue
                for j in range(n):
                    if roles[j] == role and last[j] > last[i]:
                        stale = i
                        break
        if unused >= 0:
            return unused
        return stale

    def _now(self):
        clock = self.clock
        return 0 if clock is None else clock.uptime_s

    def _touch(self, slot):
        self._uses += 1
        self.last_used[slot] = self._uses
        self.used_at[slot] = self._now()

    def admit(self, d, frame):
        """0 if the decoded request `d` may be carried out as far as who sent it goes (the
        counter is checked apart, by advance()); else an error code, with self.reason."""
        need = m.ACCESS.get(d.type, m.ANY_ROLE)
        self.verified = False
        self.wait_s = 0
        clock = self.clock
        now = 0 if clock is None else clock.uptime_s
        challenge = d.type == m.CHALLENGE and clock is not None
        if challenge:
            if self._tokens(now) == 0:
                return self._busy(now)
            if self._slot(now) < 0:
                return self._crowded(now)
        if not d.auth:
            if need == m.OPEN:
                if challenge:
                    self._take()
                return 0
            return self._no(m.ERR_AUTH_REQUIRED, "authenticate (CHALLENGE, then sign)")
        if d.session >= m.SESSIONS or not self.nonces[d.session]:
            return self._no(m.ERR_NO_SESSION, "session %d is not open" % d.session)
        key = self.pads.get(d.role)
        if key is None:
            return self._no(m.ERR_NO_KEY, "no key for role %d" % d.role)
        role = d.role
        if clock is not None and now < self.locked_until[role]:
            self.wait_s = self.locked_until[role] - now
            return self._no(m.ERR_LOCKED, self._locked_reason[role])
        mv = memoryview(frame)
        tag = auth.frame_tag_pads(key, self.nonces[d.session], mv[: d.tag_at])
        if not auth.equal(tag, mv[d.tag_at : d.tag_at + m.TAG_SIZE]):
            old = self.old_nonces[d.session]
            if clock is not None and not (old and auth.equal(auth.frame_tag_pads(
                    key, old, mv[: d.tag_at]), mv[d.tag_at : d.tag_at + m.TAG_SIZE])):
                self._failed(role, now)
            return self._no(m.ERR_BAD_TAG, "tag does not match (key, session or frame)")
        self.verified = True
        bound = self.roles[d.session]
        if bound and bound != d.role:  # one role per session: no burning another's counter
            return self._no(m.ERR_WRONG_ROLE, "session %d belongs to %s" % (
                d.session, m.ROLE_NAMES[bound]))
        if need != m.OPEN and not need & (1 << d.role):
            return self._no(m.ERR_WRONG_ROLE, "%s may not send this" % m.ROLE_NAMES[d.role])
        if challenge:
            self._take()
        return 0

    def advance(self, d):
        """Take the counter of an admitted, authenticated request: it must rise."""
        if not d.auth:
            return 0
        if d.counter <= self.counters[d.session]:
            return self._no(m.ERR_REPLAY, "counter %d, last %d" % (
                d.counter, self.counters[d.session]))
        self.counters[d.session] = d.counter
        self.roles[d.session] = d.role
        if self.charged[d.session]:  # its first use: the session gives its token back
            self.charged[d.session] = False
            self._give()
        self._touch(d.session)
        return 0

    # -- the rate limits ---------------------------------------------------------------------

    def _failed(self, role, now):
        """A bad tag claiming `role`: count it; the FAIL_LIMIT-th in the window locks the
        role out."""
        if now - self.last_fail[role] >= FORGET_S or now < self.last_fail[role]:
            self.strikes[role] = 0
        self.last_fail[role] = now
        n = self.fails[role]
        if n == 0 or now - self.fail_from[role] >= FAIL_WINDOW_S or now < self.fail_from[role]:
            self.fail_from[role] = now
            n = 0
        n += 1
        if n < FAIL_LIMIT:
            self.fails[role] = n
            return
        self.fails[role] = 0
        strikes = self.strikes[role]
        lock = LOCK_S << strikes
        if lock > LOCK_MAX_S:
            lock = LOCK_MAX_S
        if strikes < _MAX_STRIKES:
            self.strikes[role] = strikes + 1
        self.locked_until[role] = now + lock
        self._lockout(role, lock, strikes + 1)

    def _tokens(self, now):
        """CHALLENGE's bucket refilled to `now`: the tokens in it."""
        t = self.tokens
        if t >= CHALLENGE_BURST or now < self.token_at:
            self.token_at = now  # full (or a clock that went back): count from now
            return t
        gained = (now - self.token_at) // CHALLENGE_S
        if gained:
            t += gained
            if t >= CHALLENGE_BURST:
                t = CHALLENGE_BURST
                self.token_at = now
                self.throttled = False  # full again: the throttle is over
            else:
                self.token_at += gained * CHALLENGE_S
            self.tokens = t
        return t

    def _take(self):
        self.tokens -= 1
        self._charge = True

    def _give(self):
        if self.tokens < CHALLENGE_BURST:
            self.tokens += 1
            if self.tokens == CHALLENGE_BURST:
                self.throttled = False

    def _busy(self, now):
        self.wait_s = self.token_at + CHALLENGE_S - now
        if not self.throttled:
            self.throttled = True
            self._lockout(THROTTLED, self.wait_s, 0)
        return self._no(m.ERR_BUSY, "too many sessions opened and not used")

    def _crowded(self, now):
        """Every slot holds the latest session of its role, used within IDLE_S: BUSY until
        the least recently used of them has been idle IDLE_S."""
        at = self.used_at
        first = at[0]
        for i in range(1, m.SESSIONS):
            if at[i] < first:
                first = at[i]
        wait = first + IDLE_S - now
        if wait > IDLE_S:  # a clock that went back
            wait = IDLE_S
        self.wait_s = wait if wait > 0 else 1
        if not self.crowded:
            self.crowded = True
            self._lockout(THROTTLED, self.wait_s, 0)
        return self._no(m.ERR_BUSY, "every session is in use")

    def _lockout(self, who, seconds, n):
        self.lockout_who = who
        self.lockout_s = seconds
        self.lockout_n = n

    def _no(self, code, reason):
        self.code = code
        self.reason = reason
        return code
