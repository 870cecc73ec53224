# Board entry point (copied to / on the Pico). Service jumper (GP22 to GND) at boot: REPL.
from firmware import board, loop

if not board.repl_requested():
    loop.main(board.Board())
