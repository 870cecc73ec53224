# The Pico hardware layer: the only firmware module that touches machine and the link.
# The simulator runs this file unchanged against its own machine/time/select modules.

import os
import select
import sys
import time

import machine
import micropython
import rp2

from firmware import config, pio
from firmware.core.store import FileFS


class UsbLink:
    """The binary protocol over USB CDC (stdin/stdout). Ctrl-C is disabled so that 0x03 in a
    frame cannot interrupt the firmware; ENTER_REPL (when stopped) or the service jumper at
    boot gives the REPL back."""

    def __init__(self):
        micropython.kbd_intr(-1)
        self._in = sys.stdin.buffer
        self._out = sys.stdout.buffer
        self._polled = sys.stdin
        self._poll = select.poll()
        self._poll.register(self._polled, select.POLLIN)
        self._byte = bytearray(1)

    def wait(self, timeout_ms):
        """Block until input is readable or timeout_ms passes (-1: no timeout)."""
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

    def close(self):
        """Hand the link back to the REPL."""
        self._poll.unregister(self._polled)
        micropython.kbd_intr(3)


class UartLink(UsbLink):
    """The binary protocol over UART0 (pins in config)."""

    def __init__(self):
        self._uart = machine.UART(
            0, config.UART_BAUD, tx=machine.Pin(config.PIN_UART_TX),
            rx=machine.Pin(config.PIN_UART_RX))
        self._in = self._uart
        self._out = self._uart
        self._polled = self._uart
        self._poll = select.poll()
        self._poll.register(self._polled, select.POLLIN)
        self._byte = bytearray(1)


class Stepper:
    """The step/dir driver. The pulses come from a PIO state machine (firmware/pio.py): their
    width and spacing do not depend on what the loop is doing."""

    def __init__(self):
        step = machine.Pin(config.PIN_STEP, machine.Pin.OUT, value=0)
        self._dir = machine.Pin(config.PIN_DIR, machine.Pin.OUT, value=config.DIR_DELIVER)
        self._enable = machine.Pin(config.PIN_ENABLE, machine.Pin.OUT, value=1)
        self._sm = rp2.StateMachine(0, pio.step_pulses, freq=pio.PIO_HZ, set_base=step)
        self._sm.active(1)

    def step(self, n, back=False):
        """Make n delivery steps (back: draw the plunger back n steps), then release the
        driver (the lead screw holds the plunger)."""
        self._dir.value(1 - config.DIR_DELIVER if back else config.DIR_DELIVER)
        self._enable.value(0)
        self._sm.put(n - 1)
        time.sleep_us(n * pio.PERIOD_US)  # the PIO makes them; the driver stays on meanwhile
        self._enable.value(1)


class Ports:
    """The valves (outputs, high = open) and the inputs behind interlocks.py: needle detectors,
    the plunger's end stop, the driver's fault line (all active low, pulled up) and the
    downstream pressure sensor (ADC)."""

    def __init__(self):
        pin = machine.Pin
        self._refill = pin(config.PIN_REFILL_VALVE, pin.OUT, value=0)
        self._cap = pin(config.PIN_CAP_VALVE, pin.OUT, value=0)
        self._septum = pin(config.PIN_NEEDLE_SEPTUM, pin.IN, pin.PULL_UP)
        self._needle_cap = pin(config.PIN_NEEDLE_CAP, pin.IN, pin.PULL_UP)
        self._end = pin(config.PIN_END_EMPTY, pin.IN, pin.PULL_UP)
        self._fault = pin(config.PIN_DRIVER_FAULT, pin.IN, pin.PULL_UP)
        self._pressure = machine.ADC(pin(config.PIN_PRESSURE_ADC))

    @staticmethod
    def _low(p):
        """Active low, debounced: low on three reads in a row."""
        return not (p.value() or p.value() or p.value())

    def read(self, inp):
        """Fill an interlocks.Inputs (no allocation)."""
        inp.needle_septum = self._low(self._septum)
        inp.needle_cap = self._low(self._needle_cap)
        inp.end_empty = self._low(self._end)
        inp.driver_fault = self._low(self._fault)
        inp.pressure = self._pressure.read_u16()

    def valves(self, refill_open, cap_open):
        self._refill.value(1 if refill_open else 0)
        self._cap.value(1 if cap_open else 0)


class Buzzer:
    """Alarm tones on a piezo (PWM): a critical alarm sounds two tones in turn, any other
    alarm one tone; quiet when acknowledged or silenced (Therapy.tone())."""

    LOW_HZ = 2000
    HIGH_HZ = 2800

    def __init__(self):
        self._pwm = machine.PWM(machine.Pin(config.PIN_BUZZER))
        self._pwm.duty_u16(0)
        self._timer = machine.Timer(-1)  # a virtual (software) timer
        self._high = False
        self.level = 0

    def sound(self, level):
        if level == self.level:
            return
        self.level = level
        self._timer.deinit()
        if level == 0:
            self._pwm.duty_u16(0)
            return
        self._pwm.freq(self.LOW_HZ)
        self._pwm.duty_u16(32768)
        if level == 2:
            self._timer.init(mode=machine.Timer.PERIODIC, period=250, callback=self._alternate)

    def _alternate(self, _timer):
        self._high = not self._high
        self._pwm.freq(self.HIGH_HZ if self._high else self.LOW_HZ)


class Board:
    def __init__(self):
        self.led = machine.Pin(config.PIN_LED, machine.Pin.OUT, value=1)
        self.stepper = Stepper()
        self.ports = Ports()
        self.buzzer = Buzzer()
        self.link = UartLink() if config.LINK == "uart0" else UsbLink()
        self._battery = machine.ADC(machine.Pin(config.PIN_BATTERY_ADC))
        self.fs = FileFS()  # the flash filesystem (LittleFS), where the therapy is kept
        self._wdt = None

    def start_watchdog(self):
        """From here on a turn of the loop that does not finish within config.WDT_MS resets
        the board (and the therapy resumes from flash). It cannot be stopped again."""
        self._wdt = machine.WDT(timeout=config.WDT_MS)

    def feed(self):
        if self._wdt is not None:
            self._wdt.feed()

    def reboot_to_repl(self):
        """Hand the board to the REPL. A running watchdog cannot be stopped on the RP2040 and
        would reset a REPL session, so the board restarts and the next boot (which starts
        none) stays at the REPL."""
        if self._wdt is None:
            return  # main.py returns: the REPL is there
        self.fs.write(config.REPL_FLAG, b"1")
        machine.reset()

    def unique_id(self):
        return bytes(machine.unique_id())[:8]

    def battery_mv(self):
        """Battery voltage through the divider on PIN_BATTERY_ADC."""
        raw = self._battery.read_u16()
        return raw * 3300 * config.BATTERY_DIVIDER // 65535

    def reset_cause(self):
        return machine.reset_cause()

    def random_bytes(self, n):
        """Unpredictable bytes (the RP2040's ring-oscillator entropy behind os.urandom)."""
        return os.urandom(n)


def repl_requested():
    """Service jumper (PIN_SERVICE to GND) at boot, or a REPL asked for over the protocol
    before a restart (config.REPL_FLAG, used once): leave the binary protocol off so the REPL
    stays usable, whatever state the firmware is in."""
    try:
        os.remove(config.REPL_FLAG)
        return True
    except OSError:
        pass
    return machine.Pin(config.PIN_SERVICE, machine.Pin.IN, machine.Pin.PULL_UP).value() == 0
