# Who may do what: sessions, role keys, tags, counters and the access table. Pure: the shell
# supplies the keys (from flash) and the random nonces.

from protocol import auth
from protocol import messages as m


class Guard:
    def __init__(self, keys):
        """keys: {role: key bytes} as provisioned; a role without a key cannot sign."""
        self.keys = keys
        self.pads = {}  # each key's HMAC pads, worked out once
        for role in keys:
            self.pads[role] = auth.pads(keys[role])
        self.nonces = [b""] * m.SESSIONS  # b"": the slot has no session
        self.counters = [0] * m.SESSIONS
        self.roles = [0] * m.SESSIONS  # bound by a session's first accepted request
        self.last_used = [0] * m.SESSIONS
        self._uses = 0
        self.code = 0  # the last refusal: its error code and reason
        self.reason = ""
        self.verified = False  # the last frame's tag checked out: its role is who sent it

    def open(self, nonce):
        """Start a session in the least recently used slot; return the slot."""
        slot = 0
        for i in range(1, m.SESSIONS):
            if self.last_used[i] < self.last_used[slot]:
                slot = i
        self.nonces[slot] = bytes(nonce)
        self.counters[slot] = 0
        self.roles[slot] = 0
        self._touch(slot)
        return slot

    def _touch(self, slot):
        self._uses += 1
        self.last_used[slot] = self._uses

    def admit(self, d, frame):
        """0 if the decoded request `d` may be carried out as far as who sent it goes (the
        counter is checked apart, by advance()); else an error code, with self.reason."""
        need = m.ACCESS.get(d.type, m.ANY_ROLE)
        self.verified = False
        if not d.auth:
            if need == m.OPEN:
                return 0
            return self._no(m.ERR_AUTH_REQUIRED, "authenticate (CHALLENGE, then sign)")
        if d.session >= m.SESSIONS or not self.nonces[d.session]:
            return self._no(m.ERR_NO_SESSION, "session %d is not open" % d.session)
        key = self.pads.get(d.role)
        if key is None:
            return self._no(m.ERR_NO_KEY, "no key for role %d" % d.role)
        mv = memoryview(frame)
        tag = auth.frame_tag_pads(key, self.nonces[d.session], mv[: d.tag_at])
        if not auth.equal(tag, mv[d.tag_at : d.tag_at + m.TAG_SIZE]):
            return self._no(m.ERR_BAD_TAG, "tag does not match (key, session or frame)")
        self.verified = True
        bound = self.roles[d.session]
        if bound and bound != d.role:  # one role per session: no burning another's counter
            return self._no(m.ERR_WRONG_ROLE, "session %d belongs to %s" % (
                d.session, m.ROLE_NAMES[bound]))
        if need != m.OPEN and not need & (1 << d.role):
            return self._no(m.ERR_WRONG_ROLE, "%s may not send this" % m.ROLE_NAMES[d.role])
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
        self._touch(d.session)
        return 0

    def _no(self, code, reason):
        self.code = code
        self.reason = reason
        return code
