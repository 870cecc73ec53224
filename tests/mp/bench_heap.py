# Runs on the MicroPython VM (tests/mp/bench_heap.mjs starts it; hil/bench.py reads its line):
# the firmware's heap figures, on fake board objects (tests/board/therapy_kit.py) and a fake
# clock, as tests/board/test_heap_micropython.py runs the loop.
#
#   heap after boot: what the firmware's modules (their bytecode, as imported: from .mpy when
#     the harness copied the built ones, as on the board) and a booted Loop hold, live after a
#     collection; the fake board objects are measured apart and left out, and so are the
#     modules the rp2 port has built in but this VM has as Python (VM_PYTHON_MODULES);
#   steady state: the loop delivering 412.5 mcg/day (a step every 26 s, the waits jumping to
#     each deadline), the flush to flash moved out of the way (a turn of its own every 10 min,
#     which opens files); bytes allocated per turn from gc.mem_alloc() with the collector
#     off, and whether the same turns run under micropython.heap_lock().
# Prints one line: BENCHHEAP {json}.
#
# Live heap on this VM: its gc.collect() does not collect. The npm package's port grows its heap
# instead (MICROPY_GC_SPLIT_HEAP_AUTO), and a collection asked for inside Python only runs when
# control returns to JavaScript (it cannot scan the WebAssembly stack), so gc.mem_alloc() read
# in one run of Python counts every byte allocated since it began, garbage included. main() is
# therefore a generator that bench_heap.mjs drives: at each `yield from _live()` control goes
# back to JavaScript, which collects there (nothing held but what Python's globals and this
# generator's frame reach) and sends back gc.mem_alloc().

import gc
import json
import sys

import micropython

# Modules the firmware imports that the Pico's MicroPython (the rp2 port) has built in, in C
# and flash, but the WebAssembly VM has as Python modules (frozen from micropython-lib), whose
# objects take heap once imported: binascii (crc32) holds ~0.8 KB there and nothing on the
# board. They are imported before the count starts, as gc, json and micropython are, and their
# heap is reported apart (vm_modules_bytes).
VM_PYTHON_MODULES = ("binascii",)


def _live():
    """The live heap, in a generator: `live = yield from _live()`. The harness collects (at the
    top level, where a collection runs on this VM) and sends gc.mem_alloc() back."""
    gc.collect()  # on a port whose collection runs here (not this VM's): done already
    live = yield
    return live


_run = []  # main()'s generator, while bench_heap.mjs drives it (held here, not in JavaScript)


def begin(turns):
    """bench_heap.mjs's side: make main(turns)'s generator, run by resume()."""
    _run[:] = [main(turns)]


def resume(live):
    """bench_heap.mjs's side: run main()'s generator to its next measurement, sending it the
    last one (None at first). False once it has finished."""
    try:
        _run[0].send(live)
    except StopIteration:
        _run.clear()
        return False
    return True


def _ask(lp, mtype, values, role):
    rtype, out = lp.dispatcher.handle(mtype, values, role)
    if rtype != mtype | 0x80:
        raise AssertionError(f"0x{mtype:02x} answered {out!r}")


# The firmware's modules in the order they can be imported alone (each after what it uses):
# each one's share of the heap. firmware.loop, last, brings in whatever else it needs.
MODULES = (
    "protocol.messages", "protocol.framing", "protocol.auth", "protocol.codec",
    "firmware.config", "firmware.version", "firmware.keystore", "firmware.core.eventlog",
    "firmware.core.window", "firmware.core.infusion", "firmware.core.pump",
    "firmware.core.rules", "firmware.core.schedule", "firmware.core.alarms",
    "firmware.core.therapy", "firmware.core.guard", "firmware.core.dispatch",
    "firmware.core.interlocks", "firmware.core.store", "firmware.core.snapshot",
    "firmware.loop",
)


REPEATS = 50  # rounds of commands for repeat_growth_bytes


def main(turns):
    """A generator (see above): bench_heap.mjs runs it with resume() until it finishes."""
    before_vm = yield from _live()
    vm_python = []
    for name in VM_PYTHON_MODULES:
        mod = __import__(name)
        if (getattr(mod, "__file__", "") or "").endswith(".py"):  # not built in, here
            vm_python.append(name)
    vm_modules = (yield from _live()) - before_vm
    start = yield from _live()
    by_module = {}
    for name in MODULES:
        before = yield from _live()
        try:
            __import__(name)
        except ImportError:  # a module gone or renamed: loop's imports cover it
            continue
        by_module[name] = (yield from _live()) - before
    from firmware import loop as loop_mod  # everything main.py's loop imports
    from protocol import messages as m

    modules = (yield from _live()) - start
    # The host's half of the message table (protocol/spec.py, `# host-only`) is never on the
    # board: the firmware must boot without it.
    if "protocol.spec" in sys.modules:
        raise AssertionError("the firmware imported protocol.spec (host-only)")
    from therapy_kit import CAPACITY_NL, FakeBoard, FakeClock

    before_fakes = yield from _live()
    clock = FakeClock()
    board = FakeBoard(clock=clock)
    fakes = (yield from _live()) - before_fakes
    loop_mod.time = clock
    before_boot = yield from _live()
    lp = loop_mod.Loop(board)
    for _ in range(3):
        lp.once()
    state = (yield from _live()) - before_boot

    clin = m.ROLE_CLINICIAN
    # What each step of the setup leaves live (the commands, then the loop's first turns).
    by_step = {}
    last = yield from _live()
    for name, mtype, values in (
        ("SET_PROFILE", m.SET_PROFILE,
         (m.ORIGIN_SPINAL, 40, m.PHASE_TITRATION, 1_500_000, 200_000, 0, 0)),
        ("REFILL_BEGIN", m.REFILL_BEGIN, ()),
        ("REFILL_COMMIT", m.REFILL_COMMIT, (0, CAPACITY_NL, m.DRUG_BACLOFEN, 500, 500, 0)),
        ("SET_CONTINUOUS", m.SET_CONTINUOUS, (412_500, 0)),
    ):
        _ask(lp, mtype, values, clin)
        now = yield from _live()
        by_step[name] = now - last
        last = now
    for _ in range(3):
        lp.once()
    lp.flush_due = 1 << 29
    running = (yield from _live()) - before_boot
    by_step["3 turns"] = running + before_boot - last

    once = lp.once
    once()
    gc.collect()
    gc.disable()
    steps0 = board.stepper.steps
    before = gc.mem_alloc()
    for _ in range(turns):
        once()
    grew = gc.mem_alloc() - before
    gc.enable()
    steps = board.stepper.steps - steps0

    gc.collect()
    micropython.heap_lock()
    try:
        for _ in range(turns):
            once()
        locked = True
    except MemoryError:
        locked = False
    finally:
        micropython.heap_unlock()

    # Commands over and over (each answered, and saved as Loop.answer saves them) must leave
    # nothing behind: the live heap after each of REPEATS rounds against before them.
    def round_():
        _ask(lp, m.SET_CONTINUOUS, (412_500, 0), clin)
        _ask(lp, m.GET_STATUS, (), clin)
        _ask(lp, m.GET_PROGRAM, (), clin)
        lp.save()
        once()

    round_()
    round_()  # both slots of each record written: the fake flash (in RAM) holds two of each
    before_repeat = yield from _live()
    after = before_repeat
    for _ in range(REPEATS):
        round_()
        # Collected after every round: garbage piled up between collections makes this port
        # grow its heap, and that alone shows as a few hundred live bytes (with no firmware
        # at all: plain Python garbage does it too).
        after = yield from _live()
    repeat_growth = after - before_repeat

    gc.collect()
    print("BENCHHEAP " + json.dumps({
        "modules_bytes": modules,
        "boot_state_bytes": state,
        "after_boot_bytes": modules + state,
        "delivering_bytes": modules + running,
        "fakes_bytes": fakes,
        "vm_modules": vm_python,
        "vm_modules_bytes": vm_modules,
        "by_module": by_module,
        "by_step": by_step,
        "repeat_rounds": REPEATS,
        "repeat_growth_bytes": repeat_growth,
        "turns": turns,
        "steps": steps,
        "uptime_s": lp.pump.uptime_s,
        "alloc_bytes": grew,
        "alloc_per_turn": grew / turns,
        "heap_lock_ok": locked,
        "from_mpy": not _from_source(loop_mod),
        "implementation": sys.implementation.name,
    }))


def _from_source(mod):
    f = getattr(mod, "__file__", "") or ""
    return f.endswith(".py")
