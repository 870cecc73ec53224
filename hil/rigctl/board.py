# The rig Pico's hardware layer: the only rig module that touches machine and rp2. It offers
# the board interface core.py describes; hil/RIG.md draws the wiring.
# pyright: reportUndefinedVariable=false
# (wait, jmp, label, pin, x_dec ... exist only inside @rp2.asm_pio, which provides them.)

import binascii
import os
import select
import sys
import time

import machine
import rp2

# Rig Pico pins. The inputs face the pump pin of the same number where there is one.
PIN_STEP = 2  # <- pump GP2, STEP
PIN_DIR = 3  # <- pump GP3, DIR (1 = deliver)
PIN_SDA = 4  # I2C0 -> MCP4725 DAC
PIN_SCL = 5
PIN_HX711_DOUT = 6  # <- HX711 DOUT
PIN_HX711_SCK = 7  # -> HX711 PD_SCK
PIN_REFILL_VALVE = 8  # <- pump GP8
PIN_CAP_VALVE = 9  # <- pump GP9
PIN_NEEDLE_SEPTUM = 10  # open drain -> pump GP10 (low = needle present)
PIN_NEEDLE_CAP = 11  # open drain -> pump GP11
PIN_PINCH = 12  # -> MOSFET: pinch valve solenoid (1 = catheter blocked)
PIN_POWER_CUT = 13  # -> MOSFET: relay coil, NC contact in the pump's supply (1 = cut)
PIN_RUN = 14  # open drain -> pump RUN (low = held in reset)
PIN_BUZZER = 15  # <- pump GP15, buzzer PWM
PIN_LED = 25

CONFIG_FILE = "rig.json"
HX711_WAIT_MS = 600  # an HX711 is ready within 400 ms of power-up at 10 samples/s
DAC_EEPROM_MS = 100  # an MCP4725 EEPROM write takes up to 50 ms


# Edge counters in PIO rather than Pin.irq: a state machine sees every edge whatever Python
# is doing, while an IRQ handler is held off by a flash write (rig.json), by the HX711 read
# (interrupts off so PD_SCK never stays high long enough to power it down) and by the
# garbage collector; the buzzer's 2.8 kHz would also cost an interrupt every 360 us.
# Each counter counts down from 0 in a scratch register; the host side negates it.
@rp2.asm_pio()
def step_counter():
    # STEP rising edges, sorted by the DIR level at the edge: x deliver, y drawn back.
    label("top")  # noqa: F821
    wait(0, pin, 0)  # noqa: F821
    wait(1, pin, 0)  # noqa: F821
    jmp(pin, "deliver")  # noqa: F821
    jmp(y_dec, "top")  # noqa: F821
    jmp("top")  # noqa: F821
    label("deliver")  # noqa: F821
    # (x at 0 falls through to the end, and the program wraps to top)
    jmp(x_dec, "top")  # noqa: F821


@rp2.asm_pio()
def edge_counter():
    label("top")  # noqa: F821
    wait(0, pin, 0)  # noqa: F821
    wait(1, pin, 0)  # noqa: F821
    jmp(x_dec, "top")  # noqa: F821


_MOV_ISR_X = rp2.asm_pio_encode("mov(isr, x)", 0)
_MOV_ISR_Y = rp2.asm_pio_encode("mov(isr, y)", 0)
_PUSH = rp2.asm_pio_encode("push(noblock)", 0)


class Counter:
    def __init__(self, sm_id, program, pin, jmp_pin=None):
        if jmp_pin is None:
            sm = rp2.StateMachine(sm_id, program, in_base=pin)
        else:
            sm = rp2.StateMachine(sm_id, program, in_base=pin, jmp_pin=jmp_pin)
        sm.exec("set(x, 0)")
        sm.exec("set(y, 0)")
        sm.active(1)
        self._sm = sm

    def read(self, mov):
        """Edges counted so far, as a 32-bit value that wraps (the core takes differences).
        An instruction forced into a state machine stalled on wait runs at once; the wait
        then goes on."""
        sm = self._sm
        sm.exec(mov)
        sm.exec(_PUSH)
        return (-sm.get()) & 0xFFFFFFFF


class Dac:
    """MCP4725 (12 bits, I2C), found at any of its addresses 0x60-0x67."""

    def __init__(self):
        self._i2c = machine.I2C(0, sda=machine.Pin(PIN_SDA), scl=machine.Pin(PIN_SCL),
                                freq=400_000)
        try:
            found = [a for a in self._i2c.scan() if 0x60 <= a <= 0x67]
        except OSError:
            found = []
        self.present = bool(found)
        self.addr = found[0] if found else 0x60

    def write(self, code, persist=False):
        if persist:  # write DAC register and EEPROM (its power-up value), normal mode
            self._i2c.writeto(self.addr, bytes((0x60, code >> 4, (code & 0xF) << 4)))
            deadline = time.ticks_add(time.ticks_ms(), DAC_EEPROM_MS)
            while not self._i2c.readfrom(self.addr, 1)[0] & 0x80:  # RDY: EEPROM written
                if time.ticks_diff(deadline, time.ticks_ms()) < 0:
                    raise OSError("MCP4725 EEPROM write did not finish")
                time.sleep_ms(5)
        else:  # fast write: DAC register only
            self._i2c.writeto(self.addr, bytes(((code >> 8) & 0x0F, code & 0xFF)))

    def off(self):
        """Power-down mode 3: the output is 500 kOhm to ground."""
        self._i2c.writeto(self.addr, bytes((0x30, 0)))


class Hx711:
    """The load cell's 24-bit ADC, bit-banged: channel A, gain 128, 10 samples/s (RATE
    low)."""

    def __init__(self):
        # Pulled up: with no HX711 on the wire DOUT never falls, i.e. never "ready".
        self._dout = machine.Pin(PIN_HX711_DOUT, machine.Pin.IN, machine.Pin.PULL_UP)
        self._sck = machine.Pin(PIN_HX711_SCK, machine.Pin.OUT, value=0)
        deadline = time.ticks_add(time.ticks_ms(), HX711_WAIT_MS)
        while self._dout.value() and time.ticks_diff(deadline, time.ticks_ms()) > 0:
            time.sleep_ms(5)
        self.present = self._dout.value() == 0

    def read(self):
        """The conversion waiting (24 bits, two's complement), or -1 if none is ready."""
        dout = self._dout
        if dout.value():
            return -1
        sck = self._sck
        v = 0
        # PD_SCK high for over 60 us powers the HX711 down: no interrupt between the edges.
        state = machine.disable_irq()
        try:
            for _ in range(24):
                sck.value(1)
                sck.value(0)
                v = (v << 1) | dout.value()
            sck.value(1)  # a 25th pulse: channel A, gain 128 for the next conversion
            sck.value(0)
        finally:
            machine.enable_irq(state)
        return v


class Board:
    # Where ticks_ms/ticks_us wrap (2**30 on the RP2040), asked of MicroPython itself.
    TICKS_PERIOD = time.ticks_add(0, -1) + 1  # pyright: ignore[reportArgumentType]

    def __init__(self):
        pin = machine.Pin
        self._led = pin(PIN_LED, pin.OUT, value=1)
        # Outputs first, in their resting state: pump powered, catheter open, no needle,
        # RUN released.
        self._power_cut = pin(PIN_POWER_CUT, pin.OUT, value=0)
        self._pinch = pin(PIN_PINCH, pin.OUT, value=0)
        self._needles = {
            "septum": pin(PIN_NEEDLE_SEPTUM, pin.OPEN_DRAIN, value=1),
            "cap": pin(PIN_NEEDLE_CAP, pin.OPEN_DRAIN, value=1),
        }
        self._run = pin(PIN_RUN, pin.OPEN_DRAIN, value=1)
        # The pump's outputs; pulled down so that an unpowered pump reads closed and quiet.
        self._refill = pin(PIN_REFILL_VALVE, pin.IN, pin.PULL_DOWN)
        self._cap = pin(PIN_CAP_VALVE, pin.IN, pin.PULL_DOWN)
        step = pin(PIN_STEP, pin.IN, pin.PULL_DOWN)
        direction = pin(PIN_DIR, pin.IN, pin.PULL_DOWN)
        buzzer = pin(PIN_BUZZER, pin.IN, pin.PULL_DOWN)
        self._steps = Counter(0, step_counter, step, direction)
        self._buzzer = Counter(1, edge_counter, buzzer)
        self._dac = Dac()
        self.has_dac = self._dac.present
        self._hx711 = Hx711()
        self.has_hx711 = self._hx711.present

    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_us(self):
        return time.ticks_us()

    def counters(self):
        return (self._steps.read(_MOV_ISR_X), self._steps.read(_MOV_ISR_Y),
                self._buzzer.read(_MOV_ISR_X))

    def valves(self):
        return (self._refill.value(), self._cap.value())

    def set_needle(self, port, inserted):
        self._needles[port].value(0 if inserted else 1)

    def set_pinch(self, closed):
        self._pinch.value(1 if closed else 0)

    def set_power(self, on):
        self._power_cut.value(0 if on else 1)

    def pulse_run(self, ms):
        self._run.value(0)
        time.sleep_ms(ms)
        self._run.value(1)

    def dac_write(self, code, persist=False):
        self._dac.write(code, persist)

    def dac_off(self):
        self._dac.off()

    def hx711_read(self):
        return self._hx711.read()

    def load_config(self):
        try:
            with open(CONFIG_FILE) as f:
                return f.read()
        except OSError:
            return None

    def save_config(self, text):
        # Written aside, then renamed over the old file: LittleFS renames atomically, so a
        # power cut leaves the old calibration or the new one, never half of one.
        tmp = CONFIG_FILE + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, CONFIG_FILE)

    def uid(self):
        return binascii.hexlify(machine.unique_id()).decode()


class UsbLink:
    """The JSON lines over USB CDC (stdin/stdout). Ctrl-C stays enabled: a JSON line never
    holds 0x03, and it is how mpremote takes the REPL back to re-flash the rig."""

    def __init__(self):
        self._in = sys.stdin.buffer
        self._out = sys.stdout.buffer
        self._poll = select.poll()
        self._poll.register(sys.stdin, select.POLLIN)
        self._byte = bytearray(1)

    def wait(self, timeout_ms):
        """Block until input is readable or timeout_ms passes."""
        for _ in self._poll.ipoll(timeout_ms):
            return True
        return False

    def read_byte(self):
        """The next input byte, or -1 if none is waiting."""
        for _ in self._poll.ipoll(0):
            self._in.readinto(self._byte)
            return self._byte[0]
        return -1

    def write(self, data):
        self._out.write(data)
