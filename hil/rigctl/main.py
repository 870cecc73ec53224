# The rig controller's entry point: copied to / on the rig Pico (beside the rigctl package),
# where MicroPython runs it at boot. Ctrl-C (mpremote sends it) stops the loop and gives the
# REPL back, so the rig can always be re-flashed.
# (on the board the package is rigctl/; on the host it is hil.rigctl, and main.py never runs)

from rigctl import board, core

core.serve(core.Controller(board.Board()), board.UsbLink())
