# The step pulses, made by a PIO state machine: their width and spacing are set by the PIO's
# clock, not by Python, so they stay the same whatever the loop is doing. Board only (rp2).
# pyright: reportUndefinedVariable=false
# (pull, mov, set, jmp, x, osr, pins, ... exist only inside @rp2.asm_pio, which provides them)

import rp2

PIO_HZ = 2000  # one instruction every 500 us
PULSE_US = 500  # STEP high for one instruction
PERIOD_US = 1500  # high, low, the loop's jump: at most 666 steps/s (a bolus needs 67)


@rp2.asm_pio(set_init=rp2.PIO.OUT_LOW)
def step_pulses():
    # n - 1 from the TX FIFO, then n pulses on the set pin.
    pull(block)
    mov(x, osr)
    label("pulse")
    set(pins, 1)  # pyright: ignore[reportCallIssue] (PIO set, not the builtin)
    set(pins, 0)  # pyright: ignore[reportCallIssue]
    jmp(x_dec, "pulse")
