"""The bench (hil/bench.py): `--quick` runs every part at tiny sizes and writes the results file
in the shape `make bench` writes it (reports/bench.json: the raw figures and one row per
figure with its target; bench.md; the table printed), and each target is judged as it says."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from hil import bench

ROW_KEYS = {"figure", "value", "unit", "shown", "target", "met", "source"}
# Every figure the bench reports (a prefix of its name) and the target it answers to (a part
# of the target's text; "" for a figure given for information).
WANTED = {
    "simulator time warp": ">= 500,000x",
    "trumpet, 31-min window": "+-1 %",
    "worst 24 h window": "< 1 step",
    "occlusion at 1000 mcg/day: blockage to alarm": "",
    "occlusion at 1000 mcg/day: pressure limit to alarm": "<= 5 s",
    "occlusion at 1000 mcg/day: released when cleared": "<= 0",
    "authenticated status round trip": "",
    "raw pty echo": "",
    "round trip / echo": "<= 5x",
    "board encode STATUS frames": "115,200 baud",
    "board decode STATUS frames": "115,200 baud",
    "construct encode STATUS frames": "115,200 baud",
    "construct decode STATUS frames": "115,200 baud",
    "firmware on flash": "256 KiB",
    "heap after boot": "KiB",
    "heap while delivering": "",
    "live heap growth over": "0 bytes",
    "allocations per steady-state loop turn": "0 bytes",
    "steady-state loop under micropython.heap_lock()": "runs",
}


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    out = tmp_path_factory.mktemp("bench")
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert bench.main(["--quick", "--out", str(out)]) == 0
    return json.loads((out / "bench.json").read_text()), printed.getvalue(), out


def find(results: dict[str, Any], prefix: str) -> dict[str, Any]:
    rows = [f for f in results["figures"] if f["figure"].startswith(prefix)]
    assert len(rows) == 1, f"{prefix!r}: {[f['figure'] for f in results['figures']]}"
    return rows[0]


def test_quick_results_file_has_every_figure_beside_its_target(quick: tuple) -> None:
    results, _, _ = quick
    assert results["quick"] is True
    for key in ("time_warp", "occlusion", "trumpet", "round_trip", "codec", "mpy_bytes",
                "heap", "figures", "when", "machine"):
        assert key in results, key
    assert len(results["figures"]) == len(WANTED)
    for f in results["figures"]:
        assert set(f) == ROW_KEYS, f
        assert isinstance(f["figure"], str) and isinstance(f["shown"], str) and f["shown"]
        assert f["met"] in (True, False, None)
        assert f["met"] is None or f["target"], f"judged without a target: {f}"
        assert f["value"] is None or isinstance(f["value"], int | float), f
    for prefix, target in WANTED.items():
        f = find(results, prefix)
        assert target in f["target"], f"{prefix}: target {f['target']!r}"
        assert (f["met"] is None) == (not target), f"{prefix}: met {f['met']}"


def test_quick_heap_figures_come_from_the_micropython_vm(quick: tuple) -> None:
    results, _, _ = quick
    h = results["heap"]
    assert "error" not in h, h
    assert h["from_mpy"] and h["implementation"] == "micropython", h
    assert 0 < h["modules_bytes"] < h["after_boot_bytes"] <= h["delivering_bytes"], h
    assert h["steps"] > 0, "the loop delivered while it was measured"
    assert h["by_module"]["protocol.messages"] > 0 and "firmware.loop" in h["by_module"]
    # Modules this VM has as Python but the rp2 port has built in: counted apart, and said.
    assert set(h["vm_modules"]) <= {"binascii"} and h["vm_modules_bytes"] >= 0, h
    # The firmware's own claim, even at the quick size: nothing allocated, runs locked.
    assert find(results, "allocations per steady-state")["value"] == 0
    assert find(results, "steady-state loop under")["met"] is True
    assert find(results, "firmware on flash")["value"] == results["mpy_bytes"] > 10_000


def test_quick_writes_the_markdown_table_and_prints_it(quick: tuple) -> None:
    results, printed, out = quick
    md = (out / "bench.md").read_text()
    assert "| figure | value | target | met | source |" in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + len(results["figures"])
    assert "--quick" in md and "--quick" in printed
    for f in results["figures"]:
        assert f["shown"].replace("|", "\\|") in md
    assert "target" in printed and "heap after boot" in printed


def test_targets_are_judged_by_the_figures() -> None:
    r = copy.deepcopy(SAMPLE)
    rows = {f["figure"]: f for f in bench.figures(r)}
    assert all(f["met"] in (True, None) for f in rows.values()), rows
    r["time_warp"]["warp"] = 499_999.0
    r["trumpet"]["windows"][31] = [-1.01, 0.2]
    r["time_warp"]["worst_window_nl"] = r["time_warp"]["ideal_window_nl"] - 250
    r["round_trip"]["ratio"] = 5.01
    r["occlusion"]["400"]["released_nl"] = 1
    r["occlusion"]["400"]["pushed_over_nl"] = 251
    r["codec"]["board_decode_per_s"] = 100.0
    r["heap"].update(alloc_bytes=16, alloc_per_turn=0.008, heap_lock_ok=False,
                     after_boot_bytes=200_000)
    r["mpy_bytes"] = 300_000
    failed = {f["figure"].split(",")[0].split(" (")[0] for f in bench.figures(r)
              if f["met"] is False}
    assert failed == {
        "simulator time warp", "trumpet", "worst 24 h window of the 90 days vs ideal",
        "occlusion at 400 mcg/day: pressure limit to alarm",
        "occlusion at 400 mcg/day: released when cleared", "round trip / echo",
        "board decode STATUS frames", "firmware on flash", "heap after boot",
        "allocations per steady-state loop turn",
        "steady-state loop under micropython.heap_lock()",
    }, failed


def test_vm_python_modules_are_said_apart() -> None:
    r = copy.deepcopy(SAMPLE)
    r["heap"].update(vm_modules=["binascii"], vm_modules_bytes=7_600)
    row = next(f for f in bench.figures(r) if f["figure"].startswith("heap after boot"))
    assert row["value"] == 100_000 and "not counted" in row["shown"] and "7,600" in row["shown"]
    r["figures"] = bench.figures(r)
    assert "binascii (7,600 bytes)" in bench.markdown(r)
    plain = copy.deepcopy(SAMPLE)
    plain["figures"] = bench.figures(plain)
    assert "not counted" not in bench.markdown(plain)


def test_heap_not_measured_is_said_not_judged() -> None:
    r = copy.deepcopy(SAMPLE)
    r["heap"] = {"error": "node is not installed"}
    rows = [f for f in bench.figures(r) if f["value"] is None]
    assert [f["figure"] for f in rows] == [
        "heap after boot", "allocations per steady-state loop turn",
        "steady-state loop under micropython.heap_lock()"]
    assert all(f["met"] is None and "not measured" in f["shown"] for f in rows)


SAMPLE: dict[str, Any] = {
    "quick": False, "when": "2027-01-01 00:00 UTC", "machine": "test",
    "time_warp": {"days": 90, "refills": 6, "steps": 307_200, "real_s": 14.0, "warp": 555_000.0,
                  "alarms": [], "worst_window_nl": 853_500, "ideal_window_nl": 853_333.3,
                  "windows": 357},
    "occlusion": {"400": {"blockage_to_alarm_ms": 72_013, "limit_to_alarm_ms": 13,
                          "pushed_over_nl": 0, "pressure_after": 0, "released_nl": -1250,
                          "occlusion_alarm": 1, "tones": 2}},
    "trumpet": {"dose_mcg_day": "800", "a_pct": 0.1, "windows": {31: [-0.5, 0.2]}},
    "round_trip": {"status_ms": 0.2, "echo_ms": 0.05, "ratio": 4.0, "request_bytes": 40},
    "codec": {"status_wire_bytes": 71, "board_encode_per_s": 50_000.0,
              "board_decode_per_s": 40_000.0, "construct_encode_per_s": 30_000.0,
              "construct_decode_per_s": 20_000.0},
    "mpy_bytes": 68_000,
    "heap": {"modules_bytes": 90_000, "boot_state_bytes": 10_000, "after_boot_bytes": 100_000,
             "delivering_bytes": 110_000, "fakes_bytes": 368, "by_module": {}, "turns": 2000,
             "steps": 300, "uptime_s": 17_000, "alloc_bytes": 0, "alloc_per_turn": 0.0,
             "heap_lock_ok": True, "from_mpy": True, "implementation": "micropython",
             "micropython": "test"},
}
