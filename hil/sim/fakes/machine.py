"""The machine module on the simulated plant: pins, ADC, PWM, UART, unique id, reset."""

from __future__ import annotations

from hil.sim import fakes_state as _s

PWRON_RESET = 1
WDT_RESET = 3
SOFT_RESET = 5


class Reset(BaseException):
    """machine.reset() (or the watchdog): the simulator reboots the firmware."""

    def __init__(self, cause: int = SOFT_RESET):
        super().__init__(cause)
        self.cause = cause


class WDT:
    """The watchdog: the simulator resets the firmware if a wait runs past the last feed
    plus timeout (see fakes/select.py)."""

    def __init__(self, id: int = 0, timeout: int = 5000):
        sim = _s.sim()
        with sim.cond:
            sim.wdt_timeout_ms = timeout
            sim.wdt_fed_ms = sim.clock.now_locked()

    def feed(self) -> None:
        sim = _s.sim()
        sim.wdt_fed_ms = sim.clock.now_locked()  # one attribute write: no lock needed


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 4
    IRQ_RISING = 8

    def __init__(self, id: int | str, mode: int = -1, pull: int = -1, *, value=None):
        self.id = id
        self.mode = mode
        self._plant = _s.sim().plant  # one plant per simulator, across resets
        if value is not None:
            self.value(value)

    def init(self, mode: int = -1, pull: int = -1, *, value=None) -> None:
        self.mode = mode
        if value is not None:
            self.value(value)

    def value(self, x=None):
        plant = self._plant
        if x is None:
            return plant.pin_read(self.id) if self.mode != Pin.OUT else plant.levels.get(
                self.id, 0)
        plant.pin_written(self.id, 1 if x else 0)
        return None

    __call__ = value

    def on(self) -> None:
        self.value(1)

    def off(self) -> None:
        self.value(0)

    high = on
    low = off

    def irq(self, handler=None, trigger: int = 0, hard: bool = False):
        return None


class ADC:
    def __init__(self, pin) -> None:
        self.pin = pin.id if isinstance(pin, Pin) else pin

    def read_u16(self) -> int:
        return _s.sim().plant.adc(self.pin)


class PWM:
    def __init__(self, pin: Pin, freq: int = 0, duty_u16: int = 0) -> None:
        self.pin = pin
        self._freq = freq
        self._duty = duty_u16

    def freq(self, f: int | None = None):
        if f is None:
            return self._freq
        self._freq = f
        self._tell()
        return None

    def duty_u16(self, d: int | None = None):
        if d is None:
            return self._duty
        self._duty = d
        self._tell()
        return None

    def _tell(self) -> None:
        _s.sim().plant.pwm(self.pin.id, self._freq if self._duty else 0)

    def deinit(self) -> None:
        self._duty = 0


class Timer:
    """machine.Timer. Virtual time does not drive it; a periodic timer's callback runs twice
    when it starts, so that what it alternates (the buzzer's two tones) is heard once each."""

    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id: int = -1, **kw) -> None:
        self.callback = None

    def init(self, mode: int = PERIODIC, period: int = -1, callback=None, **kw) -> None:
        self.callback = callback
        if callback is not None and mode == Timer.PERIODIC:
            callback(self)
            callback(self)

    def deinit(self) -> None:
        self.callback = None


class UART:
    """UART0 carries the same virtual link as USB CDC in the simulator."""

    def __init__(self, id: int, baudrate: int = 115200, **kw) -> None:
        self.id = id

    def readinto(self, buf) -> int:
        return _s.sim().link.readinto(buf)

    def write(self, data) -> int:
        _s.sim().link.send(bytes(data))
        return len(data)


def unique_id() -> bytes:
    return _s.sim().board_id


def reset_cause() -> int:
    return _s.sim().reset_cause


def reset() -> None:
    raise Reset()


def freq(hz: int | None = None) -> int:
    return 125_000_000


def idle() -> None:
    pass
