"""A power cut at every byte offset of every write the pump makes to flash (DESIGN invariant
6: state survives power loss at any instant, a write is atomic or it did not happen).

The firmware's loop runs on fake board objects (tests/board/therapy_kit.py) through every
kind of accepted command and the periodic flush (faultkit.run_scenario); each save (the log,
then the state: Loop.save) is recorded with the flash before it. Then, for each save, each of
its writes and each k from 0 to the write's length, the flash a cut after k bytes leaves is
built, in two models of what a cut write leaves of its file (faultkit.MODELS: only the k
bytes written; the file's old content), and a pump boots from it (Loop.__init__ -> restore).
Each boot must hold:
  - the newest whole state: the one before the save or the one it wrote, never a mix, and
    the therapy restored equal to the therapy that was saved (faultkit.state_digest);
  - a log that holds every change the restored state has (the log saved with that state, or
    a newer one);
  - a delivery account (steps, ng, the 24 h window) between the truth at the cut and the
    truth FLUSH_S before it.
No offset is skipped. The store's part (what Store.load finds) is checked at every offset; a
pump is booted once per distinct thing the store hands to Loop.restore (both bodies and the
corrupt-slot counts, all restore reads of the flash) and that boot counted for each offset
that leads to it: booting at every offset took 38 s for 333,988 cuts (over this file's
budget), the classes give the same outcome counts in under 3 s. FAULTS_BOOT_EACH=1 boots a
pump at every offset anyway. Run with -s (or -rP) to see the tally."""

from __future__ import annotations

import os
import time

import faultkit as fk
import pytest

from firmware import loop as loop_mod
from firmware.core import snapshot
from firmware.core.store import Store


@pytest.fixture(scope="module")
def scenario():
    with fk.core_time() as boot:
        yield fk.run_scenario(boot), boot


def test_the_scenario_covers_every_kind_of_save(scenario) -> None:
    rec, _boot = scenario
    labels = {r.label for r in rec.saves}
    want = {"SET_PROFILE", "REFILL_BEGIN", "REFILL_COMMIT", "REFILL_ABORT", "SET_CONTINUOUS",
            "SET_FLEX", "SET_TAPER", "BOLUS", "PRIME", "SET_PATIENT_BOLUS", "PATIENT_BOLUS",
            "SUSPEND", "RESUME", "STOP", "CAP_BEGIN", "CAP_END", "ALARM_ACK",
            "ALARM_SILENCE", "SET_CLOCK", "SET_TELEMETRY", "flush (state only)",
            "flush (state and log)"}
    assert want <= labels, f"missing: {sorted(want - labels)}"
    assert [r for r in rec.saves if r.label.startswith("flush") and r.bolus_running], (
        "a flush while a bolus runs")
    # The log (if it grew since it was last written), then the state. The first save of
    # all finds no record (a new pump).
    logged = -1
    for r in rec.saves:
        names = [n.split(".")[0] for n, _d in r.writes]
        grew = r.log_total != logged
        assert names == (["log", "state"] if grew else ["state"]), f"{r.label}: {names}"
        logged = r.log_total
    assert fk.load_records(rec.saves[0].before) == (None, 0, None, 0)


def test_a_power_cut_at_every_byte_of_every_save_is_recovered(scenario) -> None:
    rec, boot = scenario
    checker = fk.CutChecker(rec, boot)
    start = time.perf_counter()
    boot_each = os.environ.get("FAULTS_BOOT_EACH") == "1"
    for i in range(len(rec.saves)):
        checker.check_save(i, boot_each=boot_each)
    took = time.perf_counter() - start
    tally = checker.tally
    total_bytes = sum(r.size for r in rec.saves)
    # Every offset of every write, in both models: nothing sampled.
    want = sum(r.size + len(r.writes) for r in rec.saves) * len(fk.MODELS)
    assert tally.cuts == want, f"{tally.cuts} cuts checked, {want} offsets"
    print(f"\npower cut at every byte: {len(rec.saves)} saves ({total_bytes} bytes written), "
          f"{tally.cuts} cuts ({', '.join(f'{n} {m}' for m, n in tally.by_model.items())}), "
          f"all recovered; {tally.boots} pumps booted "
          f"({'one per cut' if boot_each else 'one per distinct store outcome'}) in {took:.1f} s")
    for label, n in sorted(tally.by_label.items()):
        print(f"  {n:7d}  {label}")
    for outcome, n in sorted(tally.outcomes.items()):
        print(f"  {n:7d}  cuts that boot with {outcome}")
    # Both outcomes are reached: cuts that keep the old state and cuts that keep the new.
    assert any(o.startswith("the old state") for o in tally.outcomes)
    assert any(o.startswith("the new state") for o in tally.outcomes)


# -- the checks can fail ---------------------------------------------------------------------


def _broken_save_state_first(self: loop_mod.Loop) -> None:
    """Loop.save with its two writes swapped: the state, then the log."""
    self.state_store.save(snapshot.dump(self.therapy))
    log = self.therapy.log
    if log.total != self.log_saved:
        self.log_store.save(log.dump())
        self.log_saved = log.total
    self.flush_due = fk.config.FLUSH_S * 1000


def _broken_store_one_slot(self: Store, body: bytes) -> None:
    """Store.save that always writes the same slot (no second copy)."""
    import binascii
    import struct

    from firmware.core.store import HEAD, MAGIC

    seq = self.seq + 1
    rec = struct.pack(HEAD, MAGIC, seq, len(body)) + body
    rec += struct.pack("<I", binascii.crc32(rec))
    self.fs.write(self.names[0], rec)
    self.seq = seq
    self.writes += 1


@pytest.mark.parametrize("broken, finds", [
    ("state_first", "the new state is whole but the log lacks its change"),
    ("one_slot", "(a state|a log) that is neither the one before the save"),
    ("flush_hourly", "delivered steps .* after the restore"),
])
def test_the_cut_checks_catch_a_broken_save(monkeypatch: pytest.MonkeyPatch, broken: str,
                                            finds: str, capsys: pytest.CaptureFixture) -> None:
    """The same checks on a firmware broken on purpose: the log written after the state, a
    store with one slot, a flush every hour instead of every FLUSH_S."""
    import re

    label = "SET_CONTINUOUS"
    if broken == "state_first":
        monkeypatch.setattr(loop_mod.Loop, "save", _broken_save_state_first)
    elif broken == "one_slot":
        monkeypatch.setattr(Store, "save", _broken_store_one_slot)
    else:
        monkeypatch.setattr(fk.config, "FLUSH_S", 3600)
        label = "BOLUS"
    with fk.core_time() as boot:
        rec = fk.run_scenario(boot)
        checker = fk.CutChecker(rec, boot)
        at = next(i for i, r in enumerate(rec.saves) if r.label == label)
        with pytest.raises(AssertionError) as caught:
            checker.check_save(at, ("truncate",))
    with capsys.disabled():
        print(f"\n{broken}: {str(caught.value).splitlines()[0]}")
    assert re.search(finds, str(caught.value)), str(caught.value)
