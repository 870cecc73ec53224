# The event loop: advance the pump to now, make the steps that fell due, answer input, then
# sleep until the next deadline or the next input byte. It never busy-waits.

import time

from firmware import config, keystore, version
from firmware.core import snapshot
from firmware.core.dispatch import Dispatcher
from firmware.core.eventlog import EventLog
from firmware.core.guard import Guard
from firmware.core.interlocks import Inputs, Interlocks
from firmware.core.pump import Pump
from firmware.core.store import Store
from firmware.core.therapy import Therapy
from protocol import codec, framing
from protocol import messages as m

# The longest the loop sleeps: within the watchdog's timeout (config.WDT_MS), which a healthy
# loop feeds after every turn. (It also keeps ticks_diff, valid across less than 2**29 ms,
# right when a stopped pump has no step deadline.)
MAX_WAIT_MS = 5_000
BATTERY_READ_MS = 60_000  # the battery changes over days: a reading a minute is plenty
WDT_RESET = 3  # machine.reset_cause() after a watchdog reset (machine.WDT_RESET on rp2)


class Loop:
    def __init__(self, board):
        self.board = board
        # A new pump is empty until its first refill session fills it.
        self.pump = Pump(config.STEP_NL, config.RESERVOIR_NL, 0, config.MAX_RATE_NL_DAY,
                         time.time(), config.MAX_CATCH_UP_STEPS)
        self.therapy = Therapy(self.pump, EventLog(config.EVENT_LOG_SIZE), config)
        self.inputs = Inputs()
        self.interlocks = Interlocks(self.therapy, config)
        self.guard = Guard(keystore.load())
        self.dispatcher = Dispatcher(
            self.therapy, (board.unique_id(), version.full()), self.guard, board.random_bytes)
        fs = board.fs
        self.state_store = Store(fs, "state")
        self.log_store = Store(fs, "log")
        self.log_saved = -1  # log.total when the log was last written
        self.restore()
        cause = board.reset_cause()
        self.therapy.record(m.EV_BOOT, cause)
        if cause == WDT_RESET:
            self.therapy.set_alarm(m.ALARM_WATCHDOG_RESET, True)
        self.flush_due = config.FLUSH_S * 1000
        self.therapy.battery(board.battery_mv())
        self.battery_due = BATTERY_READ_MS
        self.reader = framing.FrameReader()
        self.decoded = codec.Decoded()
        self.encoder = codec.Encoder()
        self.last = time.ticks_ms()
        # The answer to the last command of each session (and of unsigned requests, in the
        # last slot), kept so that a host retrying it (same sequence number and CRC) gets the
        # answer again instead of having the command run twice, whoever spoke in between.
        self.faults = 0  # turns of the loop that raised
        slots = m.SESSIONS + 1
        self.answered_seq = [-1] * slots
        self.answered_crc = [bytearray(m.CRC_SIZE) for _ in range(slots)]
        self.answer_cache = [bytearray(framing.MAX_WIRE) for _ in range(slots)]
        self.answer_len = [0] * slots

    def restore(self):
        """Read the therapy and the log back from flash and go on with the therapy (within
        this boot's first turn: never stop abruptly). No whole copy of a state that was
        written (both slots corrupt) raises the config_crc alarm and starts empty."""
        t = self.therapy
        raw = self.log_store.load()
        if raw is not None:
            t.log.load(raw)
        raw = self.state_store.load()
        if raw is None:
            if self.state_store.corrupt:
                t.set_alarm(m.ALARM_CONFIG_CRC, True)
            return
        try:
            gap = snapshot.load(t, raw, time.time())
        except ValueError:  # a layout this firmware cannot read: nothing was put back
            t.set_alarm(m.ALARM_CONFIG_CRC, True)
            return
        t.restart(gap, self.state_store.corrupt)

    def save(self):
        """Write the therapy and the log to flash (each record atomic, store.py)."""
        # The log first: a cut between the two leaves a log that records a change the state
        # may not have yet, never a state whose change the log does not record.
        log = self.therapy.log
        if log.total != self.log_saved:  # (the log is the larger record: only when it grew)
            self.log_store.save(log.dump())
            self.log_saved = log.total
        self.state_store.save(snapshot.dump(self.therapy))
        self.flush_due = config.FLUSH_S * 1000

    def run(self):
        """Deliver and answer until a host asks for the REPL (only possible when stopped).
        A fault in one turn (a bug, MemoryError) is logged and the loop goes on: leaving it
        would stop delivery."""
        board = self.board
        board.start_watchdog()
        while not self.dispatcher.repl_requested:
            try:
                self.once()
                board.feed()  # only after a turn that finished: a loop that hangs or faults
                # on every turn is reset by the watchdog and resumes from flash
            except Exception:  # a reset is not an Exception: it still goes through
                self.faults += 1
                self.therapy.record(m.EV_FAULT, self.faults)
        self.save()
        board.link.close()
        board.reboot_to_repl()

    def once(self):
        now = time.ticks_ms()
        elapsed = time.ticks_diff(now, self.last)
        therapy = self.therapy
        board = self.board
        steps = therapy.advance(elapsed)
        self.last = now
        if steps:
            board.stepper.step(steps)
        # The ports and the motor, after the steps (a blocked motor shows in the pressure).
        lock = self.interlocks
        board.ports.read(self.inputs)
        lock.update(self.inputs)
        board.ports.valves(lock.refill_valve, lock.cap_valve)
        if lock.backoff:
            board.stepper.step(lock.backoff, True)
            lock.backoff = 0
        self.flush_due -= elapsed
        if self.flush_due <= 0:
            self.save()  # delivered totals and the 24 h windows, every FLUSH_S
        self.battery_due -= elapsed
        if self.battery_due <= 0:
            self.therapy.battery(self.board.battery_mv())
            self.battery_due = BATTERY_READ_MS
        # Last, after every source of alarms this turn: an alarm sounds in the turn it rose.
        board.buzzer.sound(therapy.tone())
        alarms = therapy.alarms
        while alarms.queued:
            change = alarms.pop()
            self.reply(m.SEQ_UNSOLICITED, m.ALARM, (change >> 1, change & 1,
                                                     self.pump.clock_s(), alarms.active))
        wait = self.pump.ms_until_next()
        if wait < 0 or wait > MAX_WAIT_MS:
            wait = MAX_WAIT_MS
        event = therapy.ms_until_event()
        if 0 <= event < wait:
            wait = event
        if self.battery_due < wait:
            wait = self.battery_due
        if self.flush_due < wait:
            wait = self.flush_due
        d = self.dispatcher
        if d.telemetry_ms:
            d.telemetry_due -= elapsed
            if d.telemetry_due <= 0:
                self.reply(m.SEQ_UNSOLICITED, m.TELEMETRY, d.telemetry())
                d.telemetry_due = d.telemetry_ms
            if d.telemetry_due < wait:
                wait = d.telemetry_due
        if not self.read_input():
            self.board.link.wait(wait)

    def read_input(self):
        """Feed waiting bytes to the frame reader and answer what completes. Returns True if
        any byte was read. It returns after each delimiter and after MAX_FRAME bytes, so
        that no stream of input, however long, keeps the loop from delivery."""
        link = self.board.link
        for budget in range(m.MAX_FRAME):
            b = link.read_byte()
            if b < 0:
                return budget > 0
            r = self.reader.push(b)
            if r == framing.FRAME:
                self.answer()
                return True
            if r == framing.BAD_COBS:
                self.reply(m.SEQ_UNSOLICITED, *self.dispatcher.error(
                    m.ERR_BAD_COBS, 0, "bad COBS encoding"))
                return True
            if r == framing.OVERSIZE:
                self.reply(m.SEQ_UNSOLICITED, *self.dispatcher.error(
                    m.ERR_OVERSIZE, 0, "frame over %d bytes" % m.MAX_FRAME))
                return True
        return True

    def answer(self):
        """Checks in order: the frame (codec), who sent it (guard), a retry of the last
        command (answered from the cache), the counter (replay), then the request itself."""
        d = self.decoded
        frame = self.reader.frame
        if codec.decode(frame, self.reader.length, d):
            self.reply(d.seq, *self.dispatcher.error(d.error, d.type, d.reason))
            return
        if self.guard.admit(d, frame):
            self.refuse(d)
            return
        fresh = d.type in m.ANSWERED_AFRESH
        slot = d.session if d.auth else m.SESSIONS
        crc_at = self.reader.length - m.CRC_SIZE
        if not fresh and d.seq == self.answered_seq[slot] and (
                frame[crc_at : crc_at + m.CRC_SIZE] == self.answered_crc[slot]):
            self.board.link.write(memoryview(self.answer_cache[slot])[: self.answer_len[slot]])
            return
        if self.guard.advance(d):
            self.refuse(d)
            return
        rtype, values = self.dispatcher.handle(d.type, d.values, d.role)
        if not fresh and rtype != m.ERROR:
            # On flash before it is acknowledged: a power cut after the answer loses nothing
            # the host was told was done (one cut during the write: no answer, so the host
            # knows to check).
            self.save()
        wire = self.reply(d.seq, rtype, values)
        if fresh:
            return
        self.answered_seq[slot] = d.seq
        self.answered_crc[slot][:] = frame[crc_at : crc_at + m.CRC_SIZE]
        self.answer_len[slot] = len(wire)
        self.answer_cache[slot][: len(wire)] = wire

    def refuse(self, d):
        """Answer and log a request the guard refused. The log names the role only if the
        tag proved it: an unauthenticated frame cannot write a role into the audit trail."""
        g = self.guard
        self.reply(d.seq, *self.dispatcher.denied(
            g.code, d.type, g.reason, d.role if g.verified else 0))

    def reply(self, seq, mtype, values):
        wire = self.encoder.encode(mtype, seq, values)
        self.board.link.write(wire)
        return wire


def main(board):
    Loop(board).run()
