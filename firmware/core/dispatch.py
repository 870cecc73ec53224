# Protocol requests -> therapy actions -> responses. Pure: it sees decoded values, never bytes.

from firmware.core.pump import Refused
from protocol import messages as m

_N_ERRORS = len(m.ERRORS)
# Where each TELEMETRY field sits in STATUS: an event is a subset of a status answer.
_TELEMETRY_AT = tuple(m.STATUS_FIELDS.index(f) for f in m.TELEMETRY_FIELDS)
UNPROVEN_LOG_S = 60


def _u32(v):
    """A value for a u32 field: saturated, never wrapped into a smaller one."""
    return 0 if v < 0 else 0xFFFFFFFF if v > 0xFFFFFFFF else v


class Dispatcher:
    def __init__(self, therapy, identity, guard, random_bytes):
        """therapy: the engine (and through it the pump and the event log);
        identity: (board_id bytes, firmware version str); guard: the sessions and keys;
        random_bytes(n): n unpredictable bytes (the board's entropy) for session nonces."""
        self.therapy = therapy
        self.pump = therapy.pump
        self.log = therapy.log
        self.board_id, self.fw_version = identity
        self.guard = guard
        guard.attach(self.pump)  # the guard's rate limits run on the pump's uptime
        self.random_bytes = random_bytes
        self.frame_errors = 0  # frames the codec could not read or accept
        self._last_unproven = -UNPROVEN_LOG_S  # clock of the last unproven refusal logged
        # Refusals of frames and of who sent them, by error code (issue counters).
        self.error_counts = [0] * (_N_ERRORS + 1)
        self.repl_requested = False
        self.telemetry_ms = 0  # period of TELEMETRY events; 0: off
        self.telemetry_due = 0  # ms until the next one
        t = therapy
        # Each request: its handler, called with the request's values unpacked.
        self._handlers = {
            m.GET_INFO: self._info,
            m.GET_STATUS: self.status,
            m.SET_CONTINUOUS: t.set_continuous,
            m.STOP: t.stop,
            m.ENTER_REPL: self._enter_repl,
            m.CHALLENGE: self._challenge,
            m.GET_COUNTERS: self._counters,
            m.READ_LOG: self._read_log,
            m.SET_CLOCK: self._set_clock,
            m.SET_TELEMETRY: self._set_telemetry,
            m.SET_PROFILE: t.set_profile,
            m.GET_PROFILE: t.profile,
            m.SET_FLEX: t.set_flex,
            m.GET_PROGRAM: t.program,
            m.BOLUS: t.bolus,
            m.PRIME: t.prime,
            m.SCREEN: t.screen,
            m.PATIENT_BOLUS: t.patient_bolus,
            m.SET_PATIENT_BOLUS: t.set_patient_bolus,
            m.GET_PATIENT_BOLUS: t.patient_bolus_state,
            m.GET_SCREENING: t.screening,
            m.SUSPEND: t.suspend,
            m.RESUME: t.resume,
            m.REFILL_BEGIN: t.refill_begin,
            m.REFILL_COMMIT: t.refill_commit,
            m.REFILL_ABORT: t.refill_abort,
            m.CAP_BEGIN: t.cap_begin,
            m.CAP_END: t.cap_end,
            m.ALARM_ACK: t.alarm_ack,
            m.ALARM_SILENCE: t.alarm_silence,
            m.SET_TAPER: t.set_taper,
            m.GET_ALARMS: t.alarm_state,
        }

    def handle(self, mtype, values, role=0):
        """Answer a valid, admitted request from `role`: (response type, response values)."""
        self.therapy.role = role
        try:
            return mtype | 0x80, self._handlers[mtype](*values)
        except Refused as e:
            self.count(e.code)
            if mtype not in m.READ_ONLY:  # a read refused changes nothing worth a record
                self.therapy.record(m.EV_REFUSED, e.code, e.requested, e.allowed, e.rule, mtype)
            return m.ERROR, (e.code, mtype, e.rule, _u32(e.requested), _u32(e.allowed),
                             _u32(e.wait_s), e.reason)
        except Exception as e:  # a firmware bug must not stop delivery: report it, go on
            self.count(m.ERR_INTERNAL)
            self.therapy.record(m.EV_REFUSED, m.ERR_INTERNAL, type_=mtype)
            return m.ERROR, (m.ERR_INTERNAL, mtype, 0, 0, 0, 0, "internal error: %s" % e)
        finally:
            self.therapy.role = 0

    def count(self, code):
        if 0 < code <= _N_ERRORS:
            self.error_counts[code] = (self.error_counts[code] + 1) & 0xFFFF

    def error(self, code, request_type, reason):
        """Answer a frame the codec refused (line noise, a broken host): counted only."""
        self.frame_errors = (self.frame_errors + 1) & 0xFFFF
        self.count(code)
        return m.ERROR, (code, request_type, 0, 0, 0, 0, reason)

    def denied(self, code, request_type, reason, role):
        """Answer a request the guard refused, count it and log it. role is 0 unless the tag
        proved who sent it; unproven refusals (anyone can send them) are logged at most once
        a minute, so that a flood of them cannot push real events out of the log. A refusal
        by the guard's rate limits (LOCKED, BUSY) is not logged itself: the lockout is, once,
        when it begins (guard.py)."""
        self.count(code)
        g = self.guard
        wait = 0
        if code == m.ERR_LOCKED or code == m.ERR_BUSY:
            wait = g.wait_s
        else:
            now = self.pump.clock_s()
            if role or now - self._last_unproven >= UNPROVEN_LOG_S or now < self._last_unproven:
                if not role:
                    self._last_unproven = now
                self.therapy.role = role
                self.therapy.record(m.EV_REFUSED, code, type_=request_type)
                self.therapy.role = 0
        if g.lockout_who >= 0:  # this refusal began a lockout: one event for all of it
            self.therapy.record(m.EV_LOCKOUT, g.lockout_who, g.lockout_s, g.lockout_n,
                                type_=request_type)
            g.lockout_who = -1
        return m.ERROR, (code, request_type, 0, 0, 0, wait, reason)

    def _challenge(self):
        slot = self.guard.open(self.random_bytes(m.NONCE_SIZE))
        return (slot, self.guard.nonces[slot])

    def _info(self):
        p = self.pump
        return (m.VERSION, self.board_id, p.capacity_nl, p.step_nl, self.fw_version)

    def status(self):
        p = self.pump
        t = self.therapy
        return (
            t.mode,
            t.phase,
            t.daily_ng,
            p.concentration,
            p.basal_nl_day,
            t.bolus_kind,
            p.bolus_left_ng(),
            p.window.total_ng() & 0xFFFFFFFF,
            p.delivered_nl() & 0xFFFFFFFF,
            p.delivered_ng() & 0xFFFFFFFF,
            p.volume_nl,
            p.uptime_s - p.boot_s,
            p.clock_s(),
            t.low_at_s & 0xFFFFFFFF,
            t.refill_at_s & 0xFFFFFFFF,
            t.dry_at_s & 0xFFFFFFFF,
            t.alarms.active,
            t.sessions(),
            p.battery_mv,
            self.frame_errors,
        )

    def telemetry(self):
        """The values of a TELEMETRY event."""
        status = self.status()
        return tuple(status[i] for i in _TELEMETRY_AT)

    def _set_telemetry(self, period_s):
        self.telemetry_ms = period_s * 1000
        self.telemetry_due = 0  # the first one at once
        return (period_s,)

    def _counters(self):
        return tuple(self.error_counts[1:])

    def _read_log(self, number, count):
        """Up to `count` events held at or after `number` (older ones are dropped)."""
        log = self.log
        n = max(number, log.oldest())
        events = []
        while len(events) < count and n < log.total:
            events.append((n,) + log.get(n))
            n += 1
        return (log.oldest(), log.total, tuple(events))

    def _set_clock(self, time_s):
        moved = time_s - self.pump.clock_s()
        self.therapy.set_clock(time_s)
        # The log's details are i32: the move in seconds (clamped), not the clock itself.
        self.therapy.record(m.EV_CLOCK_SET, moved)
        return (self.pump.clock_s(),)

    def _enter_repl(self, confirm):
        if confirm != m.REPL_CONFIRM:
            raise Refused(m.ERR_NOT_CONFIRMED, "needs the confirmation word 0x%08X"
                          % m.REPL_CONFIRM)
        if self.therapy.mode != m.MODE_STOPPED:
            raise Refused(m.ERR_INVALID_STATE, "delivery is running: stop it before the REPL")
        self.repl_requested = True
        self.therapy.record(m.EV_REPL)
        return ()
