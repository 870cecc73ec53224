"""Helpers for the fault tests (tests/faults): the firmware's loop on fake board objects with a
flash that records every write (and a power cut at any byte of any of them, in two models of
what a cut write leaves), and the simulator's fault hooks (hil/sim/lossy.py) for the
watchdog and lossy-link tests. CPython only (host_codec builds the signed frames)."""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BOARD_TESTS = Path(__file__).resolve().parents[1] / "board"
if str(BOARD_TESTS) not in sys.path:
    sys.path.insert(0, str(BOARD_TESTS))

import therapy_kit as kit  # noqa: E402

from firmware import config  # noqa: E402
from firmware import loop as loop_mod  # noqa: E402
from firmware.core.guard import Guard  # noqa: E402
from firmware.core.store import HEAD_SIZE, MemoryFS, Store  # noqa: E402
from protocol import host_codec  # noqa: E402
from protocol import messages as m  # noqa: E402

FLUSH_MS = config.FLUSH_S * 1000
PICO_EPOCH = 1_609_459_200  # where the Pico's clock starts after a power cut (no RTC battery)
CLINICIAN_KEY = kit.CLINICIAN_KEY
PATIENT_KEY = kit.PATIENT_KEY
ROLES = {"clinician": (m.ROLE_CLINICIAN, CLINICIAN_KEY), "patient": (m.ROLE_PATIENT, PATIENT_KEY)}
# What a write cut by a power failure leaves of the file it was writing:
#   truncate: the bytes written before the cut (open("wb") truncates, then the write stops:
#             FAT, a raw flash file, the simulator's FlashFile);
#   keep_old: the file as it was before the write (LittleFS: copy on write, committed only
#             when the file is closed).
MODELS = ("truncate", "keep_old")
# Alarms a boot works out afresh from the board (the battery read at boot), not from flash.
BOOT_READ = (1 << (m.ALARM_BATTERY_REPLACE - 1)) | (1 << (m.ALARM_BATTERY_END - 1))


# -- the loop on fake board objects ----------------------------------------------------------


class WireLink(kit.FakeLink):
    """FakeLink that keeps what the firmware wrote (to read its answers back)."""

    def __init__(self, clock: kit.FakeClock):
        super().__init__(clock)
        self.out = bytearray()

    def write(self, data: Any) -> None:
        self.out += bytes(data)
        self.written += len(data)

    def frames(self) -> list[host_codec.Message]:
        """The frames written since the last call, decoded (unreadable ones skipped)."""
        got = []
        while (end := self.out.find(0)) >= 0:
            block = bytes(self.out[:end])
            del self.out[: end + 1]
            try:
                got.append(host_codec.decode(block))
            except host_codec.DecodeError:
                pass
        return got


class CoreBoard(kit.FakeBoard):
    """FakeBoard with a WireLink, a battery the test sets and a reset cause."""

    def __init__(self, fs: Any = None, wall_s: int = kit.CLOCK0, battery_mv: int = 3900,
                 cause: int = 1):
        super().__init__(fs, wall_s)
        self.link = WireLink(self.clock)
        self.battery = battery_mv
        self.cause = cause

    # (FakeBoard's return a constant, which pyright infers as a Literal type)
    def battery_mv(self) -> int:  # pyright: ignore[reportIncompatibleMethodOverride]
        return self.battery

    def reset_cause(self) -> int:  # pyright: ignore[reportIncompatibleMethodOverride]
        return self.cause


@contextmanager
def core_time() -> Iterator[Callable[[kit.FakeBoard], loop_mod.Loop]]:
    """firmware/loop.py on the fakes' time: yields boot(board) -> a Loop (a boot of the board:
    restore() runs in the constructor)."""
    saved = loop_mod.time

    def boot(board: kit.FakeBoard) -> loop_mod.Loop:
        loop_mod.time = board.clock  # type: ignore[assignment]
        return loop_mod.Loop(board)

    try:
        yield boot
    finally:
        loop_mod.time = saved


class Host:
    """Signed requests into a Loop, frame by frame through its link (Loop.answer: checked,
    run, saved, answered), in one session per role (opened on the guard directly)."""

    def __init__(self, lp: loop_mod.Loop, board: CoreBoard):
        self.lp = lp
        self.board = board
        keys = {role: key for role, key in ROLES.values()}
        lp.guard = lp.dispatcher.guard = Guard(keys)
        self.signers: dict[str, tuple[host_codec.Signer, list[int]]] = {}
        for name, (_role, key) in ROLES.items():
            nonce = bytes((len(self.signers) * 31 + i) & 0xFF for i in range(m.NONCE_SIZE))
            slot = lp.guard.open(nonce)
            self.signers[name] = (host_codec.Signer(slot, nonce, name, key), [0])
        self.seq = 100

    def ask(self, name: str, fields: dict[str, Any] | None = None, role: str = "clinician",
            ok: bool = True) -> host_codec.Message:
        """Send one request, run the loop's turn that answers it; its answer (which must be
        the request's own, not an error, unless ok is False)."""
        signer, counter = self.signers[role]
        counter[0] += 1
        self.seq += 1
        wire = host_codec.encode(name, self.seq, fields, signer=signer, counter=counter[0])
        self.board.link.frames()
        self.board.link.rx += wire
        while self.board.link.at < len(self.board.link.rx):
            self.lp.once()
        answers = [f for f in self.board.link.frames() if f.seq == self.seq]
        assert len(answers) == 1, f"{name}: {len(answers)} answers"
        got = answers[0]
        if ok:
            assert got.type == host_codec.type_of(name) | 0x80, f"{name} refused: {got.fields}"
        return got


# -- saves, recorded -------------------------------------------------------------------------


class RecordingFS(MemoryFS):
    """MemoryFS that keeps every write in order."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, bytes]] = []

    def write(self, name: str, data: Any) -> None:
        self.writes.append((name, bytes(data)))
        MemoryFS.write(self, name, data)


@dataclass
class Truth:
    """The pump's delivery account at an instant (live, in RAM)."""

    now_ms: int
    steps: int
    ng: int
    window_ng: int


@dataclass
class SaveRecord:
    """One Loop.save: what it was for, the flash before it, the writes it made (in order),
    the account and the therapy at that instant."""

    label: str
    before: dict[str, bytes]
    truth: Truth
    digest: tuple[Any, ...]
    log_total: int
    battery_mv: int
    bolus_running: bool
    writes: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(len(d) for _n, d in self.writes)

    def body(self, prefix: str) -> bytes | None:
        """The record body this save wrote under `prefix` ("state", "log"), or None."""
        for name, data in self.writes:
            if name.startswith(prefix + "."):
                return data[HEAD_SIZE:-4]
        return None


def truth_of(lp: loop_mod.Loop, now_ms: int) -> Truth:
    p = lp.pump
    return Truth(now_ms, p.delivered_steps, p.delivered_ng(), p.window.total_ng())


def state_digest(lp: loop_mod.Loop) -> tuple[Any, ...]:
    """What a restored pump must hold of the therapy it saved, whole (a running bolus and
    open sessions are not kept: snapshot.py; the clock is the saved one after a power cut)."""
    t = lp.therapy
    p = lp.pump
    w = p.window
    return (
        ("profile", t.profile()),
        ("program", t.program(), t.program_mode, t.stop_reason, t.programmed, t.start_up),
        ("taper", t.taper_start_ng, t.taper_target_ng, t.taper_days, t.taper_day,
         t.taper_next_up),
        ("rules", tuple(t.in_force.v), t.in_force.at, t.last_increase_up, t.refill_base_ng,
         t.increase_n, tuple(t.increase_up)),
        ("patient_bolus", t.pb_dose_ng, t.pb_duration_s, t.pb_lockout_s, t.pb_max,
         tuple(t.pb_up)),
        ("screening", tuple(tuple(s) for s in t.screens), t.last_screen_up),
        ("reservoir", p.volume_nl, p.concentration),
        ("delivered", p.delivered_steps, p.delivered_ug, p._ng, p._pg),
        ("window", w.at, w.total, w.pg, tuple(w.ng)),
        ("alarms", t.alarms.active & ~BOOT_READ, t.alarms.unacked & ~BOOT_READ),
        ("clock", p.clock_s(), p.uptime_s),
    )


class Recorder:
    """Wraps a Loop's save() to record each save (SaveRecord) and each turn's account."""

    def __init__(self, lp: loop_mod.Loop, board: CoreBoard, fs: RecordingFS):
        self.lp = lp
        self.board = board
        self.fs = fs
        self.saves: list[SaveRecord] = []
        self.history: list[Truth] = [truth_of(lp, board.clock.now)]
        self.label = ""
        original = lp.save

        def save() -> None:
            caller = sys._getframe(1).f_code.co_name
            label = self.label if caller == "answer" else "flush"
            rec = SaveRecord(label, dict(fs.files), truth_of(lp, board.clock.now),
                             state_digest(lp), lp.therapy.log.total, board.battery,
                             bool(lp.pump.bolus_steps))
            start = len(fs.writes)
            original()
            rec.writes = fs.writes[start:]
            if rec.label == "flush":
                rec.label = "flush (state and log)" if len(rec.writes) > 1 else (
                    "flush (state only)")
            self.saves.append(rec)

        lp.save = save  # type: ignore[method-assign]
        once = lp.once

        def turn() -> None:
            once()
            self.history.append(truth_of(lp, board.clock.now))

        lp.once = turn  # type: ignore[method-assign]

    def run_for(self, ms: int) -> None:
        end = self.board.clock.now + ms
        while self.board.clock.now < end:
            self.lp.once()

    def floor(self, now_ms: int) -> Truth:
        """The account as of FLUSH_S before now_ms (the last turn at or before then): what a
        restore may fall back to at the worst."""
        best = self.history[0]
        for h in self.history:
            if h.now_ms <= now_ms - FLUSH_MS:
                best = h
        return best


# -- a power cut during a save ---------------------------------------------------------------


def cut_images(rec: SaveRecord, model: str) -> Iterator[tuple[str, int, dict[str, bytes]]]:
    """Every flash a power cut during this save can leave: for each of its writes, the cut
    after k = 0 .. len bytes of it (len: all bytes handed over, the file not yet closed).
    Yields (the write's file, k, the files)."""
    for i, (name, data) in enumerate(rec.writes):
        files = dict(rec.before)
        for n, d in rec.writes[:i]:
            files[n] = d
        old = files.get(name)
        for k in range(len(data) + 1):
            cut = dict(files)
            if model == "truncate":
                cut[name] = data[:k]
            elif old is None:
                cut.pop(name, None)
            else:
                cut[name] = old
            yield name, k, cut


def load_records(files: dict[str, bytes]) -> tuple[bytes | None, int, bytes | None, int]:
    """(state body, corrupt state slots, log body, corrupt log slots) as Store.load finds."""
    fs = MemoryFS()
    fs.files = files
    s = Store(fs, "state")
    state = s.load()
    lg = Store(fs, "log")
    log = lg.load()
    return state, s.corrupt, log, lg.corrupt


def log_total(body: bytes | None) -> int:
    return struct.unpack_from("<I", body, 0)[0] if body else 0


@dataclass
class Tally:
    """Cuts checked, by save label and model."""

    cuts: int = 0
    boots: int = 0
    by_label: dict[str, int] = field(default_factory=dict)
    by_model: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)

    def add(self, label: str, model: str, outcome: str) -> None:
        self.cuts += 1
        self.by_label[label] = self.by_label.get(label, 0) + 1
        self.by_model[model] = self.by_model.get(model, 0) + 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


class CutChecker:
    """Checks what a pump boots with after a cut: the newest whole state (the one before the
    save, or the save's own: never a mix), a log that holds every change that state has,
    and a delivery account at most FLUSH_S behind the truth."""

    def __init__(self, rec: Recorder, boot: Callable[[kit.FakeBoard], loop_mod.Loop]):
        self.rec = rec
        self.boot = boot
        # Each state body written: the therapy it was saved from and the log's length then
        # (the first save of an identical body: the log then already explained it).
        self.by_body: dict[bytes, tuple[tuple[Any, ...], int]] = {}
        for r in rec.saves:
            body = r.body("state")
            if body is not None and body not in self.by_body:
                self.by_body[body] = (r.digest, r.log_total)
        self.tally = Tally()

    def check_save(self, index: int, models: tuple[str, ...] = MODELS,
                   boot_each: bool = False) -> None:
        """Every cut of save `index`, in each model. The store's part (what Store.load finds)
        is checked at every offset; a pump is booted once for each distinct thing the store
        hands to Loop.restore (the state and log bodies and the corrupt-slot counts: all it
        reads of the flash), and that boot's result counted for every offset that leads to
        it. boot_each: boot a pump at every offset instead (the same checks, slower)."""
        r = self.rec.saves[index]
        before = load_records(r.before)
        old_state, old_log = before[0], before[2]
        new_state = r.body("state")
        new_log = r.body("log")
        if new_log is None:
            new_log = old_log
        assert new_state is not None, f"{r.label}: a save writes the state"
        low = self.rec.floor(r.truth.now_ms)
        booted: dict[tuple[bytes | None, int, bytes | None, int], str] = {}
        sizes = dict(r.writes)
        for model in models:
            for name, k, files in cut_images(r, model):
                what = f"save {index} ({r.label}), {model} model, cut after byte {k} of " \
                       f"the {name} write ({len(sizes[name])} bytes)"
                found = load_records(files)
                state, _sc, log, _lc = found
                # The store: the newest whole record of each, the one before the save or
                # the one it wrote.
                assert state in (old_state, new_state), f"{what}: a state that is neither " \
                    "the one before the save nor the one it wrote"
                assert log in (old_log, new_log), f"{what}: a log that is neither the one " \
                    "before the save nor the one it wrote"
                if state == new_state and state != old_state:
                    assert log == new_log, f"{what}: the new state is whole but the log " \
                        "lacks its change (the log must be written first)"
                outcome = None if boot_each else booted.get(found)
                if outcome is None:
                    outcome = self._check_boot(files, found, what, old_state, new_state,
                                               old_log, new_log, r, low)
                    booted[found] = outcome
                    self.tally.boots += 1
                self.tally.add(r.label, model, outcome)

    def _check_boot(self, files: dict[str, bytes],
                    found: tuple[bytes | None, int, bytes | None, int], what: str,
                    old_state: bytes | None, new_state: bytes, old_log: bytes | None,
                    new_log: bytes | None, r: SaveRecord, low: Truth) -> str:
        state, state_corrupt, log, _log_corrupt = found
        fs = MemoryFS()
        fs.files = dict(files)
        lp = self.boot(CoreBoard(fs, PICO_EPOCH, r.battery_mv))
        t = lp.therapy
        crc_alarm = bool(t.alarms.active & (1 << (m.ALARM_CONFIG_CRC - 1)))
        if state is None:
            assert old_state is None, f"{what}: the pump lost the state it had"
            assert crc_alarm == (state_corrupt > 0), f"{what}: config_crc {crc_alarm} with " \
                f"{state_corrupt} corrupt state slots"
            assert (t.mode, t.phase, lp.pump.volume_nl) == (m.MODE_STOPPED, m.PHASE_UNSET,
                                                             0), f"{what}: not a new pump"
            return "nothing (a new pump)"
        assert not crc_alarm, f"{what}: config_crc raised with a whole state on flash"
        digest, logged = self.by_body[state]
        got = state_digest(lp)
        for want_part, got_part in zip(digest, got, strict=True):
            assert want_part == got_part, f"{what}: restored {got_part[0]} differs from " \
                f"the one saved: {got_part[1:]} != {want_part[1:]}"
        assert log_total(log) >= logged, f"{what}: the state restored was saved with " \
            f"{logged} events logged, the log restored has {log_total(log)}"
        assert t.log.total >= log_total(log), f"{what}: events lost at boot"
        # The account: at most FLUSH_S behind the truth at the cut, never ahead of it.
        p = lp.pump
        for name, got_v, truth, floor in (
            ("delivered steps", p.delivered_steps, r.truth.steps, low.steps),
            ("delivered ng", p.delivered_ng(), r.truth.ng, low.ng),
            ("24 h window ng", p.window.total_ng(), r.truth.window_ng, low.window_ng),
        ):
            assert floor <= got_v <= truth, f"{what}: {name} {got_v} after the restore; " \
                f"the truth at the cut {truth}, {FLUSH_MS // 1000} s before it {floor}"
        if new_state == old_state:
            which = "the state (the save left it as it was)"
        else:
            which = "the new state" if state == new_state else "the old state"
        if new_log == old_log:
            return which
        return f"{which}, {'the new' if log == new_log else 'the old'} log"


# -- the scenario: every kind of save --------------------------------------------------------

HOUR_MS = 3_600_000
MIN_MS = 60_000


def bolus_steps_ng(dose_mcg_x8: int) -> int:
    """A dose in whole motor steps at 500 mcg/mL (125 ng a step)."""
    return dose_mcg_x8 * 125


def run_scenario(boot: Callable[[kit.FakeBoard], loop_mod.Loop]) -> Recorder:
    """A pump through every kind of accepted command and periodic flush, each save
    recorded: profile, refill (begin, commit, abort), programs (continuous, flex, taper),
    boluses (clinician, priming, patient, its settings), suspend, resume, stop, CAP
    session, alarm ack and silence, clock, telemetry; flushes with and without new events,
    one during a bolus."""
    fs = RecordingFS()
    board = CoreBoard(fs)
    lp = boot(board)
    host = Host(lp, board)
    rec = Recorder(lp, board, fs)

    def ask(name: str, fields: dict[str, Any] | None = None, role: str = "clinician") -> Any:
        rec.label = name
        saves = len(rec.saves)
        got = host.ask(name, fields, role)
        # (a flush may fall due in the same turn, before the request is read)
        assert len(rec.saves) > saves and rec.saves[-1].label == name, f"{name}: saved"
        return got

    ask("SET_PROFILE", {"origin": "spinal", "age_years": 40, "phase": "titration",
                        "ceiling_ng": 1_500_000, "catheter_nl": 200_000,
                        "infusion_start_s": 0, "brain_injury_s": 0})
    opened = ask("REFILL_BEGIN")
    ask("REFILL_COMMIT", {"drained_nl": opened["expected_nl"], "fill_nl": 20_000_000,
                          "drug": "baclofen", "concentration": 500,
                          "concentration_again": 500, "confirm": []})
    ask("SET_CONTINUOUS", {"daily_dose_ng": 400_000, "confirm": []})
    rec.run_for(25 * MIN_MS)  # flushes, state only
    ask("BOLUS", {"dose_ng": bolus_steps_ng(8 * 20), "duration_s": 1500})  # 20 mcg, 25 min
    rec.run_for(15 * MIN_MS)  # a flush during the bolus
    rec.run_for(15 * MIN_MS)  # the bolus ends (logged), then a flush with the log
    ask("SET_PATIENT_BOLUS", {"dose_ng": 25_000, "duration_s": 600, "lockout_s": 3600,
                              "max_per_day": 4})
    ask("PATIENT_BOLUS", role="patient")
    rec.run_for(11 * MIN_MS)
    ask("PRIME", {"duration_s": 600})
    rec.run_for(11 * MIN_MS)
    ask("SET_FLEX", {"confirm": [], "utc_offset_min": 60,
                     "steps": [{"start_min": 0, "daily_dose_ng": 380_000},
                               {"start_min": 600, "daily_dose_ng": 390_000}]})
    rec.run_for(5 * MIN_MS)
    ask("SUSPEND", {"reason": "clinician_decision", "confirm": m.STOP_CONFIRM})
    ask("RESUME")
    ask("STOP", {"reason": "clinician_decision", "confirm": m.STOP_CONFIRM})
    ask("RESUME")
    ask("CAP_BEGIN", {"duration_s": 600})
    ask("CAP_END")
    board.battery = 3400  # elective replacement: an alarm at the next reading (each minute)
    rec.run_for(2 * MIN_MS)
    ask("ALARM_ACK", {"alarm": "battery_replace"})
    ask("ALARM_SILENCE", {"minutes": 30})
    board.battery = 3900
    rec.run_for(2 * MIN_MS)
    ask("SET_TAPER", {"target_ng": 300_000, "days": 14, "confirm": ["large_decrease"]})
    ask("SET_TELEMETRY", {"period_s": 0})
    ask("SET_CLOCK", {"time_s": kit.CLOCK0 + 7200})
    opened = ask("REFILL_BEGIN")
    ask("REFILL_ABORT")
    opened = ask("REFILL_BEGIN")
    ask("REFILL_COMMIT", {"drained_nl": opened["expected_nl"], "fill_nl": 18_000_000,
                          "drug": "baclofen", "concentration": 500,
                          "concentration_again": 500, "confirm": []})
    rec.run_for(11 * MIN_MS)
    return rec


# -- the simulator (hil/sim/lossy.py's hooks, through the rig's control channel) -------------

STEP_NL = 250
STEPS_PER_HOUR_400 = 800 * 1000 / STEP_NL / 24  # 400 mcg/day at 500 mcg/mL: 133.3 a hour


def recent_events(pump: Any, n: int) -> list[Any]:
    """The last n events of the pump's log (PumpClient.Event)."""
    total = pump.read_log(0, 1).total
    return pump.events(max(0, total - n))


def pump_steps(status: Any) -> int:
    """The pump's own count of steps delivered (its status, in uL)."""
    return int(status.delivered_ul * 1000) // STEP_NL


def point_fake(point: str) -> str:
    """The fake a point ends in ("... > Stepper.step:84 > StateMachine.put" -> its last)."""
    return point.rsplit(" > ", 1)[-1]


def point_caller(point: str) -> str:
    """The firmware function that calls the fake, without its line."""
    parts = point.split(" > ")
    return parts[-2].split(":")[0] if len(parts) > 1 else ""
