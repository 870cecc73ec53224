# A fake rig board behind the rig controller's core (hil/rigctl/core.py): the board interface
# core.py describes, with the pump's side as plain attributes a test sets and the rig's outputs
# as attributes a test reads. Plain Python: runs on CPython and on the MicroPython VM.

from hil.rigctl import core

TICKS_PERIOD = 1 << 30  # MicroPython's ticks_ms/ticks_us wrap
MASK32 = 0xFFFFFFFF


class FakeBoard:
    TICKS_PERIOD = TICKS_PERIOD

    def __init__(self, ms=0, has_dac=True, has_hx711=True, config=None, clock=None):
        self.ms = ms  # the rig's time, unbounded; ticks_ms/ticks_us wrap as on the board
        self.clock = clock  # or a callable giving ms (real time, for the end-to-end test)
        self.fwd = 0  # STEP rising edges with DIR at deliver (the PIO's x, negated)
        self.back = 0  # ... with DIR reversed (y)
        self.buzzer = 0  # buzzer edges
        self.refill = 0
        self.cap = 0
        self.needles = {"septum": False, "cap": False}
        self.pinch = False
        self.powered = True
        self.run_pulses = []  # ms of each RUN pulse
        self.has_dac = has_dac
        self.dac = None  # type: int | None  # the DAC register's code, None until written
        self.dac_eeprom = None  # type: int | None
        self.dac_is_off = False
        self.has_hx711 = has_hx711
        # signed counts the HX711 converts; None: no conversion ready
        self.load = None  # type: int | None
        self.hx_queue = []  # readings served first, one per read (noise, steps)
        self.config_text = config  # type: str | None
        self.saves = 0
        self.broken = None  # type: Exception | None  # what counters() raises (a fault)

    def now_ms(self):
        return int(self.clock()) if self.clock is not None else self.ms

    def ticks_ms(self):
        return self.now_ms() % TICKS_PERIOD

    def ticks_us(self):
        return (self.now_ms() * 1000) % TICKS_PERIOD

    def counters(self):
        if self.broken is not None:
            raise self.broken
        return (self.fwd & MASK32, self.back & MASK32, self.buzzer & MASK32)

    def valves(self):
        return (self.refill, self.cap)

    def set_needle(self, port, inserted):
        self.needles[port] = inserted

    def set_pinch(self, closed):
        self.pinch = closed

    def set_power(self, on):
        self.powered = on

    def pulse_run(self, ms):
        self.run_pulses.append(ms)

    def dac_write(self, code, persist=False):
        assert 0 <= code <= core.DAC_MAX
        self.dac = code
        self.dac_is_off = False
        if persist:
            self.dac_eeprom = code

    def dac_off(self):
        self.dac_is_off = True

    def hx711_read(self):
        if self.hx_queue:
            return self.hx_queue.pop(0) & 0xFFFFFF
        if self.load is None:
            return -1
        return self.load & 0xFFFFFF

    def load_config(self):
        return self.config_text

    def save_config(self, text):
        self.config_text = text
        self.saves += 1

    def uid(self):
        return "e6614c311b7e4a2f"


def run(ctl, ms, buzzer_hz=0, gate=core.GATE_MS):
    """Let ms pass on a manual-clock FakeBoard, polling every gate, the buzzer sounding
    buzzer_hz meanwhile."""
    board = ctl.board
    done = 0
    while done < ms:
        step = min(gate, ms - done)
        board.ms += step
        # edges by the cumulative time, so that no fraction of an edge is lost per step
        board.buzzer += buzzer_hz * (done + step) // 1000 - buzzer_hz * done // 1000
        done += step
        ctl.poll()


class FakeLink:
    """Input bytes in chunks, one chunk per wait(); what the loop writes, collected."""

    def __init__(self, chunks):
        self.chunks = list(chunks)
        self.pending = b""
        self.out = b""
        self.waits = []

    def more(self):
        return bool(self.chunks or self.pending)

    def wait(self, timeout_ms):
        self.waits.append(timeout_ms)
        if not self.pending and self.chunks:
            self.pending = self.chunks.pop(0)
        return bool(self.pending)

    def read_byte(self):
        if not self.pending:
            return -1
        b = self.pending[0]
        self.pending = self.pending[1:]
        return b

    def write(self, data):
        self.out += data

    def replies(self):
        import json

        return [json.loads(x) for x in self.out.decode().split("\n") if x]
