"""Stand-ins for MicroPython's machine, rp2, micropython, time and select modules, bound to
one running simulator (one per process, like one Pico per board)."""
