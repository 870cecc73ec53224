# The rig controller's firmware (MicroPython, on the rig Pico): core.py, board.py, main.py.
# hil/RIG.md has the wiring, the protocol and how to flash it.
