# Protocol requests -> pump actions -> responses. Pure: it sees decoded values, never bytes.

from firmware.core.pump import Refused
from protocol import messages as m


class Dispatcher:
    def __init__(self, pump, identity, guard, random_bytes):
        """identity: (board_id bytes, firmware version str); guard: the sessions and keys;
        random_bytes(n): n unpredictable bytes (the board's entropy) for session nonces."""
        self.pump = pump
        self.board_id, self.fw_version = identity
        self.guard = guard
        self.random_bytes = random_bytes
        self.frame_errors = 0
        # Refusals of frames and of who sent them, by error code (issue counters).
        self.error_counts = [0] * (m.ERRORS[-1][0] + 1)
        self.repl_requested = False
        self._handlers = {
            m.GET_INFO: self._info,
            m.GET_STATUS: self._status,
            m.SET_CONTINUOUS: self._set_continuous,
            m.STOP: self._stop,
            m.ENTER_REPL: self._enter_repl,
            m.CHALLENGE: self._challenge,
        }

    def handle(self, mtype, values):
        """Answer a valid request: (response type, response values)."""
        try:
            return mtype | 0x80, self._handlers[mtype](values)
        except Refused as e:
            return m.ERROR, (e.code, mtype, e.reason)
        except Exception as e:  # a firmware bug must not stop delivery: report it, go on
            return m.ERROR, (m.ERR_INTERNAL, mtype, "internal error: %s" % e)

    def error(self, code, request_type, reason):
        """Answer a frame refused by the codec or the guard, and count it."""
        self.frame_errors = (self.frame_errors + 1) & 0xFFFF
        if code < len(self.error_counts):
            self.error_counts[code] = (self.error_counts[code] + 1) & 0xFFFF
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
            p.delivered_ng & 0xFFFFFFFF,
            p.volume_nl,
            p.uptime_s,
            self.frame_errors,
        )

    def _set_continuous(self, values):
        dose, conc = values
        self.pump.set_continuous(dose, conc)
        return (dose, conc, self.pump.rate_nl_day())

    def _stop(self, values):
        reason, confirm = values
        self.pump.stop(reason, confirm)
        return (reason,)

    def _enter_repl(self, values):
        if values[0] != m.REPL_CONFIRM:
            raise Refused(m.ERR_NOT_CONFIRMED, "needs the confirmation word 0x%08X"
                          % m.REPL_CONFIRM)
        if self.pump.mode != m.MODE_STOPPED:
            raise Refused(m.ERR_INVALID_STATE, "delivery is running: stop it before the REPL")
        self.repl_requested = True
        return ()
