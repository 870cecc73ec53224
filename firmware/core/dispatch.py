# Protocol requests -> pump actions -> responses. Pure: it sees decoded values, never bytes.

from firmware.core.pump import Refused
from protocol import messages as m

_N_ERRORS = len(m.ERRORS)
# Where each TELEMETRY field sits in STATUS: an event is a subset of a status answer.
_TELEMETRY_AT = tuple(m.STATUS_FIELDS.index(f) for f in m.TELEMETRY_FIELDS)
UNPROVEN_LOG_S = 60


class Dispatcher:
    def __init__(self, pump, identity, guard, random_bytes, log):
        """identity: (board_id bytes, firmware version str); guard: the sessions and keys;
        random_bytes(n): n unpredictable bytes (the board's entropy) for session nonces;
        log: the EventLog every change and refusal goes to."""
        self.pump = pump
        self.log = log
        self.role = 0  # who sent the request being handled (0: no one authenticated)
        self.board_id, self.fw_version = identity
        self.guard = guard
        self.random_bytes = random_bytes
        self.frame_errors = 0  # frames the codec could not read or accept
        self._last_unproven = -UNPROVEN_LOG_S  # clock of the last unproven refusal logged
        # Refusals of frames and of who sent them, by error code (issue counters).
        self.error_counts = [0] * (_N_ERRORS + 1)
        self.repl_requested = False
        self.telemetry_ms = 0  # period of TELEMETRY events; 0: off
        self.telemetry_due = 0  # ms until the next one
        self._handlers = {
            m.GET_INFO: self._info,
            m.GET_STATUS: self._status,
            m.SET_CONTINUOUS: self._set_continuous,
            m.STOP: self._stop,
            m.ENTER_REPL: self._enter_repl,
            m.CHALLENGE: self._challenge,
            m.GET_COUNTERS: self._counters,
            m.READ_LOG: self._read_log,
            m.SET_CLOCK: self._set_clock,
            m.SET_TELEMETRY: self._set_telemetry,
        }

    def record(self, event, a=0, b=0):
        self.log.log(self.pump.clock_s(), event, self.role, a, b)

    def handle(self, mtype, values, role=0):
        """Answer a valid, admitted request from `role`: (response type, response values)."""
        self.role = role
        try:
            return mtype | 0x80, self._handlers[mtype](values)
        except Refused as e:
            self.count(e.code)
            if mtype not in m.READ_ONLY:  # a read refused changes nothing worth a record
                self.record(m.EV_REFUSED, e.code, mtype)
            return m.ERROR, (e.code, mtype, e.reason)
        except Exception as e:  # a firmware bug must not stop delivery: report it, go on
            self.count(m.ERR_INTERNAL)
            self.record(m.EV_REFUSED, m.ERR_INTERNAL, mtype)
            return m.ERROR, (m.ERR_INTERNAL, mtype, "internal error: %s" % e)

    def count(self, code):
        if 0 < code <= _N_ERRORS:
            self.error_counts[code] = (self.error_counts[code] + 1) & 0xFFFF

    def error(self, code, request_type, reason):
        """Answer a frame the codec refused (line noise, a broken host): counted only."""
        self.frame_errors = (self.frame_errors + 1) & 0xFFFF
        self.count(code)
        return m.ERROR, (code, request_type, reason)

    def denied(self, code, request_type, reason, role):
        """Answer a request the guard refused, count it and log it. role is 0 unless the tag
        proved who sent it; unproven refusals (anyone can send them) are logged at most once
        a minute, so that a flood of them cannot push real events out of the log."""
        self.count(code)
        now = self.pump.clock_s()
        if role or now - self._last_unproven >= UNPROVEN_LOG_S or now < self._last_unproven:
            if not role:
                self._last_unproven = now
            self.role = role
            self.record(m.EV_REFUSED, code, request_type)
        return m.ERROR, (code, request_type, reason)

    def _challenge(self, values):
        slot = self.guard.open(self.random_bytes(m.NONCE_SIZE))
        return (slot, self.guard.nonces[slot])

    def _info(self, values):
        p = self.pump
        return (m.VERSION, self.board_id, p.reservoir_nl, p.step_nl, self.fw_version)

    def _status(self, values):
        p = self.pump
        return (
            p.mode,
            p.daily_dose_ng,
            p.concentration,
            p.rate_nl_day(),
            p.delivered_nl() & 0xFFFFFFFF,
            p.delivered_ng() & 0xFFFFFFFF,
            p.volume_nl,
            p.uptime_s,
            p.clock_s(),
            p.dry_at_s() & 0xFFFFFFFF,
            p.battery_mv,
            self.frame_errors,
        )

    def _set_continuous(self, values):
        dose, conc = values
        self.pump.set_continuous(dose, conc)
        self.record(m.EV_PROGRAM, dose, conc)
        return (dose, conc, self.pump.rate_nl_day())

    def _stop(self, values):
        reason, confirm = values
        self.pump.stop(reason, confirm)
        self.record(m.EV_STOP, reason)
        return (reason,)

    def telemetry(self):
        """The values of a TELEMETRY event."""
        status = self._status(())
        return tuple(status[i] for i in _TELEMETRY_AT)

    def _set_telemetry(self, values):
        self.telemetry_ms = values[0] * 1000
        self.telemetry_due = 0  # the first one at once
        return values

    def _counters(self, values):
        return tuple(self.error_counts[1:])

    def _read_log(self, values):
        """The first event held at or after the number asked for (older ones are dropped)."""
        log = self.log
        n = max(values[0], log.oldest())
        entry = log.get(n)
        if entry is None:
            raise Refused(m.ERR_OUT_OF_RANGE, "no event %d yet: %d logged" % (n, log.total))
        return (n, log.oldest(), log.total) + entry

    def _set_clock(self, values):
        moved = values[0] - self.pump.clock_s()
        self.pump.set_clock(values[0])
        # The log's details are i32: the move in seconds (clamped), not the clock itself.
        self.record(m.EV_CLOCK_SET, max(-0x80000000, min(0x7FFFFFFF, moved)))
        return (self.pump.clock_s(),)

    def _enter_repl(self, values):
        if values[0] != m.REPL_CONFIRM:
            raise Refused(m.ERR_NOT_CONFIRMED, "needs the confirmation word 0x%08X"
                          % m.REPL_CONFIRM)
        if self.pump.mode != m.MODE_STOPPED:
            raise Refused(m.ERR_INVALID_STATE, "delivery is running: stop it before the REPL")
        self.repl_requested = True
        self.record(m.EV_REPL)
        return ()
