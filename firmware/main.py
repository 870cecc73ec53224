# Board entry point (copied to / on the Pico). Hold BOOTSEL at reset for the REPL.
from firmware import board, loop

if not board.repl_requested():
    loop.main(board.Board())
