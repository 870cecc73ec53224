# The MicroPython side of the MicroPython lane: tests/mp/run_lane.mjs copies the board-side
# sources and tests/board into the WebAssembly VM's filesystem and calls main() here. This file
# runs on MicroPython: nothing CPython-only. Each test module is imported by its file name from
# its own folder (as pytest's default import mode does); every callable named test_* in it is
# called with no arguments, in sorted name order, and failures are caught per test.

import gc
import io
import json
import sys
import time


def _traceback(e):
    buf = io.StringIO()
    sys.print_exception(e, buf)  # pyright: ignore[reportAttributeAccessIssue]
    # Drop this runner's own frames: the test's are the ones that matter.
    lines = [x for x in buf.getvalue().split("\n") if "tests/mp/runner.py" not in x]
    return "\n".join(lines)


def _run_one(test_id, fn, results, started):
    if started is not None:
        started(test_id)
    gc.collect()
    t0 = time.time_ns()
    try:
        fn()
        ok = True
    except BaseException as e:  # a failing test must not stop the lane
        ok = False
        tb = _traceback(e)
    ms = (time.time_ns() - t0) // 1_000_000
    if ok:
        results["passed"].append(test_id)
        print(f"PASS {test_id} ({ms} ms)")
    else:
        results["failed"].append({"id": test_id, "traceback": tb})
        print(f"FAIL {test_id} ({ms} ms)")
        print(tb.rstrip("\n"))


def main(files, results_path, only=None, started=None):
    """files: test file paths relative to the cwd (the mirrored repo root).
    only: {path: [test names]} to run just those tests of a file.
    started: optional callable(test_id), called before each test.
    Writes {"passed": [ids], "failed": [{"id", "traceback"}]} as JSON to results_path."""
    results = {"passed": [], "failed": []}
    for path in files:
        slash = path.rfind("/")
        folder = path[:slash] if slash >= 0 else "."
        name = path[slash + 1 :]
        if name.endswith(".py"):
            name = name[:-3]
        if folder not in sys.path:
            sys.path.insert(0, folder)
        try:
            mod = __import__(name)
        except BaseException as e:
            _run_one(path + "::<import>", _raiser(e), results, started)
            continue
        wanted = only.get(path) if only else None
        for attr in sorted(dir(mod)):
            if not attr.startswith("test_") or (wanted and attr not in wanted):
                continue
            fn = getattr(mod, attr)
            if callable(fn):
                _run_one(path + "::" + attr, fn, results, started)
    with open(results_path, "w") as f:
        json.dump(results, f)
    return results


def _raiser(e):
    def fail():
        raise e

    return fail
