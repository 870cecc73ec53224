# tests/board runs on CPython (pytest) and on the MicroPython VM (tests/mp). Checks that only
# mean something on MicroPython are kept from CPython here, not skipped there.
collect_ignore = ["test_heap_micropython.py"]
