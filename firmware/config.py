# The reference rig: one pin map and the plant's constants (drawn in hil/RIG.md).
# The simulator reads this same file to wire its plant to the firmware's pins.

# Stepper driver (step/dir, e.g. A4988/TMC2209 in legacy mode)
PIN_STEP = 2
PIN_DIR = 3
PIN_ENABLE = 4  # active low
PIN_DRIVER_FAULT = 5  # input, active low, pulled up
# Plunger end-of-travel switches (inputs, active low, pulled up)
PIN_END_EMPTY = 6
PIN_END_FULL = 7
# Valves (outputs, high = open)
PIN_REFILL_VALVE = 8
PIN_CAP_VALVE = 9
# Needle-detect inputs (active low, pulled up)
PIN_NEEDLE_SEPTUM = 10
PIN_NEEDLE_CAP = 11
PIN_BUZZER = 15  # PWM
PIN_SERVICE = 22  # service jumper: to GND at boot = stay at the REPL (input, pulled up)
PIN_LED = 25
# ADC inputs
PIN_PRESSURE_ADC = 26  # ADC0: downstream pressure sensor
PIN_BATTERY_ADC = 27  # ADC1: battery voltage through a divider
BATTERY_DIVIDER = 2  # battery voltage / ADC pin voltage (two equal resistors)
# Battery alarms (a Li-ion cell under the motor's load): elective replacement, then the end of
# service, when the pump can no longer be trusted to deliver.
BATTERY_REPLACE_MV = 3_500
BATTERY_END_MV = 3_300
# UART0, the alternative link to USB CDC
PIN_UART_TX = 0
PIN_UART_RX = 1

DIR_DELIVER = 1  # level of PIN_DIR that drives the plunger towards the outlet

# Plant
STEP_NL = 250  # volume per motor step (lead screw pitch x syringe bore / steps per turn)
RESERVOIR_ML = 20  # the pump model: a 20 mL or a 40 mL reservoir (the syringe on the rig)
RESERVOIR_NL = RESERVOIR_ML * 1_000_000
MAX_RATE_NL_DAY = 24_000_000  # the mechanism's top continuous rate: 1 mL/h

# When the loop falls behind (a long frame burst, a slow flash write), at most this many
# overdue steps are made at once; more would be an unprogrammed bolus. The rest are skipped
# and logged (delivery_gap): a little under-delivery is safer than an overdose.
MAX_CATCH_UP_STEPS = 4

EVENT_LOG_SIZE = 256  # events kept in RAM (20 bytes each); the oldest is dropped first

# Link: "usb" (USB CDC stdin/stdout) or "uart0"
LINK = "usb"
UART_BAUD = 115200

# Therapy (see firmware/core/therapy.py)
MIN_RATE_NL_DAY = 48_000  # minimum (catheter-patency) rate while suspended: 0.048 mL/day
MAX_BOLUS_NL_MIN = 1_000_000  # the mechanism's top bolus rate: 1 mL/min (15 ms per step)
LOW_RESERVOIR_NL = 2_000_000  # low-reservoir alarm level: 2 mL
REFILL_MARGIN_S = 7 * 86400  # refill due this long before the low-reservoir date
REFILL_TIMEOUT_S = 1800  # a refill session left open this long is aborted (outlet reopens)
DRAIN_TOLERANCE_NL = 100_000  # a drained volume this close to the expected one never mismatches

# Interlocks (firmware/core/interlocks.py)
PRESSURE_LIMIT_RAW = 40_000  # downstream pressure ADC reading over which the motor is blocked
OCCLUSION_BACKOFF_STEPS = 8  # drawn back when blocked: the pressure built up is not a bolus
OCCLUSION_RETRY_S = 600  # a blocked motor tries again this often (a stall may clear)

# Watchdog: the RP2040's longest timeout is 8.3 s; the loop wakes at least every
# loop.MAX_WAIT_MS (5 s) and feeds it after each turn that completed.
WDT_MS = 8000
REPL_FLAG = "repl.flag"  # on flash: the next boot stays at the REPL (see board.py)

# Storage (see firmware/core/store.py, snapshot.py): the therapy is saved after every accepted
# command and every FLUSH_S, so a power cut loses at most FLUSH_S of delivery accounting.
FLUSH_S = 600
