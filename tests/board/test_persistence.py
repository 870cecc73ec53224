# What survives a reset (DESIGN invariant 6: state survives power loss at any instant, a write
# is atomic or it did not happen; clinical-rules 7 and the label's boxed warning: after any
# reset the pump resumes the programmed therapy, it never stops abruptly).
#   - store.py: two-slot records with a CRC; a power cut at every byte offset of a save leaves
#     the previous record or the new one, never anything else (a bare record, the event log,
#     the therapy's state).
#   - snapshot.py: the therapy and its pump dumped and loaded into a fresh therapy; the gap
#     the pump was off (or -1 when the clock did not survive); unreadable layouts refused.
#   - The label's 24 h rules across a reset (2.5, 2.6; DESIGN invariant 1).
#   - Therapy.restart: the program runs again at once; a cut bolus is logged, not resumed;
#     sessions are closed; EV_RESTORED is logged.
#   - loop.py on fake board objects with store.MemoryFS as the flash: a reboot on the same
#     flash resumes in the constructor; corrupt slots; the periodic flush.
# Board-safe: runs on CPython (pytest) and on the MicroPython VM (tests/mp).

import binascii
import struct

from therapy_kit import (
    CAPACITY_NL,
    CLINICIAN_KEY,
    CLOCK0,
    STEP_NL,
    FakeBoard,
    advance,
    bare,
    ready,
    refused,
    running,
)

from firmware import config
from firmware.core import snapshot
from firmware.core.eventlog import EventLog
from firmware.core.guard import Guard
from firmware.core.store import HEAD_SIZE, MemoryFS, Store
from protocol import auth, codec, framing
from protocol import messages as m

MIN_MS = 60_000
HOUR_MS = 3_600_000
DAY_S = 86_400
FLUSH_MS = config.FLUSH_S * 1000
PICO_EPOCH = 1_609_459_200  # 2021-01-01: where the Pico's RTC starts after a power cut
OVERHEAD = HEAD_SIZE + 4  # a record's header and CRC around its body
CLINICIAN = m.ROLE_CLINICIAN


# -- flash that loses power ------------------------------------------------------------------


class _PowerCut(Exception):
    """The power went: nothing after it runs."""


class _CutFS(MemoryFS):
    """A flash (a copy of `files`) that loses power after `budget` more bytes are written: the
    write under way keeps only its bytes before the cut (as a truncating open() then a write
    cut short leaves it). budget -1: no cut. fail: writes that raise OSError (a flash error,
    nothing written), the firmware going on after each."""

    def __init__(self, files=None, budget=-1):
        MemoryFS.__init__(self)
        if files:
            self.files = dict(files)
        self.budget = budget
        self.fail = 0

    def write(self, name, data):
        if self.fail:
            self.fail -= 1
            raise OSError(5)
        if 0 <= self.budget < len(data):
            self.files[name] = bytes(data[: self.budget])
            self.budget = 0
            raise _PowerCut()
        if self.budget >= 0:
            self.budget -= len(data)
        self.files[name] = bytes(data)


def _save_cut(files, name, body, k):
    """Save body as the next record of `name` on a copy of `files`, the power cut after k
    bytes; return (the flash after it, whether the save was cut)."""
    fs = _CutFS(files, k)
    s = Store(fs, name)
    s.load()
    try:
        s.save(body)
    except _PowerCut:
        return fs, True
    return fs, False


def _cut_everywhere(files, name, body, before, what):
    """A power cut at every byte offset of the save of body (0 .. its whole length): load()
    then gives `before` (the newest whole record: None if there was none) or body, nothing
    else. Returns the flash with body saved whole."""
    whole = len(body) + OVERHEAD
    fs = None
    for k in range(whole + 1):
        fs, cut = _save_cut(files, name, body, k)
        got = Store(fs, name).load()
        if k < whole:
            assert cut, "%s: a save of %d bytes cut after %d" % (what, whole, k)
            assert got == before, "%s: cut after byte %d of %d, load() gave %s" % (
                what, k, whole, _which(got, before, body))
        else:
            assert not cut and got == body, "%s: the whole save reads back" % what
    return fs.files


def _which(got, before, body):
    if got is None:
        return "None"
    if got == body:
        return "the new record"
    if got == before:
        return "the previous record"
    return "%d bytes that are neither the previous nor the new record" % len(got)


def _flip(fs, name, at, bit=0):
    raw = bytearray(fs.files[name])
    raw[at] ^= 1 << bit
    fs.files[name] = bytes(raw)


def _newest_slot(store):
    return store.names[store.seq % 2]


# -- therapies with much to keep -------------------------------------------------------------

# Local time is UTC+1: CLOCK0 (08:00 UTC) is 09:00 local, in the second step.
FLEX_A = ((0, 100_000), (480, 140_000), (1200, 120_000))
FLEX_B = ((0, 110_000), (480, 154_000), (1200, 132_000))  # +10 %: a titration step


def _as(t, role, fn, *args):
    t.role = role
    try:
        return fn(*args)
    finally:
        t.role = 0


def _busy_flex():
    """Titration phase: a flex day, raised a day later; patient boluses used (one running);
    the reservoir under the low level (alarms active, one acknowledged, tones silenced)."""
    t = ready(fill_nl=1_600_000)
    _as(t, CLINICIAN, t.set_flex, 0, 60, FLEX_A)
    advance(t, 25 * HOUR_MS, 300_000)
    _as(t, CLINICIAN, t.set_flex, 0, 60, FLEX_B)
    _as(t, CLINICIAN, t.set_patient_bolus, 20_000, 600, 3600, 3)
    _as(t, m.ROLE_PATIENT, t.patient_bolus)
    advance(t, 2 * HOUR_MS, 300_000)
    _as(t, m.ROLE_PATIENT, t.patient_bolus)
    _as(t, CLINICIAN, t.alarm_ack, m.ALARM_LOW_RESERVOIR)
    _as(t, CLINICIAN, t.alarm_silence, 30)
    advance(t, 5 * MIN_MS)  # the second patient bolus is half given
    assert t.pump.bolus_steps, "a patient bolus is running"
    assert t.alarms.active & _bit(m.ALARM_LOW_RESERVOIR), "low reservoir"
    assert t.alarms.active & _bit(m.ALARM_REFILL_DUE), "refill due"
    assert t.alarms.unacked != t.alarms.active, "one acknowledged"
    return t


def _busy_taper():
    """A taper two days into its 14 down from 400 to 200 mcg/day."""
    t = running(400_000)
    advance(t, 25 * HOUR_MS, 900_000)
    _as(t, CLINICIAN, t.set_taper, 200_000, 14, 0)
    advance(t, 50 * HOUR_MS, 900_000)
    assert t.mode == m.MODE_TAPER and t.taper_day == 2, "day %d" % t.taper_day
    return t


def _busy_screening():
    """Screening phase: 50 mcg given, and a day later 75 mcg half given."""
    t = ready(phase=m.PHASE_SCREENING)
    _as(t, CLINICIAN, t.screen, 50_000, 60)
    advance(t, 25 * HOUR_MS, 900_000)
    _as(t, CLINICIAN, t.screen, 75_000, 600)
    advance(t, 5 * MIN_MS)
    _as(t, CLINICIAN, t.alarm_silence, 10)
    assert t.pump.bolus_steps and len(t.screens) == 2, "a screening bolus is running"
    return t


def _bit(alarm):
    return 1 << (alarm - 1)


def _reboot(t, off_s=0, now_s=None, older=False):
    """A reset: t's snapshot loaded into a fresh therapy (as at boot) and restarted. off_s:
    how long the pump was off with its clock running on; now_s: the board's clock at boot
    instead (PICO_EPOCH: a power cut took the clock). Returns (the new therapy, the gap)."""
    data = snapshot.dump(t)
    if now_s is None:
        now_s = t.pump.clock_s() + off_s
    t2 = bare(now_s)
    gap = snapshot.load(t2, data, now_s)
    t2.restart(gap, older)
    return t2, gap


def _kept(t):
    """What a reset must give back, by name."""
    p = t.pump
    return (
        ("program", t.program()),
        ("program_mode", t.program_mode),
        ("profile", t.profile()),
        ("patient_bolus_state", t.patient_bolus_state()),
        ("screening", t.screening()),
        ("alarm_state", t.alarm_state()),
        ("volume_nl", p.volume_nl),
        ("concentration", p.concentration),
        ("delivered_steps", p.delivered_steps),
        ("delivered_ng", p.delivered_ng()),
        ("delivered_pg", p._pg),
        ("window_total_ng", p.window.total_ng()),
        ("window_ng", list(p.window.ng)),
        ("in_force", list(t.in_force.v)),
        ("peak_24h", t.in_force.peak()),
        ("clock_s", p.clock_s()),
        ("uptime_s", p.uptime_s),
        ("start_up", t.start_up),
        ("last_increase_up", t.last_increase_up),
        ("taper", (t.taper_start_ng, t.taper_target_ng, t.taper_days, t.taper_day,
                   t.taper_next_up)),
        ("ms_until_event", t.ms_until_event()),
    )


def _same(t1, t2, what):
    a = _kept(t1)
    b = _kept(t2)
    for i in range(len(a)):
        assert a[i][1] == b[i][1], "%s: %s %r, after the reset %r" % (
            what, a[i][0], a[i][1], b[i][1])


def _events(t, since=0):
    log = t.log
    start = since if since > log.oldest() else log.oldest()
    return [log.get(n) for n in range(start, log.total)]


def _find(events, event):
    return [e for e in events if e[1] == event]


# -- the store -------------------------------------------------------------------------------


def test_store_round_trip_and_the_newest_wins():
    fs = MemoryFS()
    s = Store(fs, "rec")
    assert s.load() is None and s.corrupt == 0, "nothing written: None, nothing corrupt"
    s.save(b"first")
    assert s.load() == b"first" and s.seq == 1, "round trip"
    s.save(b"")
    assert Store(fs, "rec").load() == b"", "an empty body is a record too"
    bodies = [b"second", bytes(range(256)) * 3, b"\x00" * 40, b"fourth"]
    for i in range(len(bodies)):
        s.save(bodies[i])
        got = Store(fs, "rec").load()
        assert got == bodies[i], "save %d: the newest reads back" % (i + 3)
    assert sorted(fs.files) == ["rec.a", "rec.b"], "two slots: %r" % sorted(fs.files)
    assert s.writes == 6 and s.seq == 6, "writes %d seq %d" % (s.writes, s.seq)
    # Whichever slot holds it, the higher sequence number wins.
    for i in range(3):
        body = ("n%d" % i).encode()
        s.save(body)
        r = Store(fs, "rec")
        assert r.load() == body and r.seq == 7 + i and r.corrupt == 0, "seq %d" % r.seq
    # Another record name is another pair of slots.
    Store(fs, "other").save(b"x")
    assert Store(fs, "rec").load() == b"n2" and Store(fs, "other").load() == b"x", "apart"


def test_store_seq_continues_on_the_same_flash():
    fs = MemoryFS()
    s = Store(fs, "rec")
    for i in range(5):
        s.save(("r%d" % i).encode())
    s2 = Store(fs, "rec")  # after a reboot
    assert s2.load() == b"r4" and s2.seq == 5, "seq %d" % s2.seq
    s2.save(b"r5")
    s3 = Store(fs, "rec")
    assert s3.load() == b"r5" and s3.seq == 6, "the new record is the newest: seq %d" % s3.seq
    # It went into the slot that did not hold the newest: the previous record is still whole.
    fs.files[_newest_slot(s3)] = b""
    s4 = Store(fs, "rec")
    assert s4.load() == b"r4" and s4.seq == 5 and s4.corrupt == 1, "the previous survives"


def test_store_corrupt_slots_are_ignored_and_counted():
    fs = MemoryFS()
    s = Store(fs, "rec")
    s.save(b"older record")
    s.save(b"newer record")
    newest = _newest_slot(s)
    older = s.names[(s.seq + 1) % 2]
    good = dict(fs.files)
    # Every single-bit flip anywhere in the newest slot: ignored, the older record loads.
    n = len(good[newest])
    for at in range(n):
        for bit in range(8):
            fs.files = dict(good)
            _flip(fs, newest, at, bit)
            r = Store(fs, "rec")
            got = r.load()
            assert got == b"older record" and r.corrupt == 1, (
                "bit %d of byte %d of %d flipped: got %r, corrupt %d" % (bit, at, n, got,
                                                                        r.corrupt))
    # ... and in the older slot: the newest still loads.
    for at in range(len(good[older])):
        fs.files = dict(good)
        _flip(fs, older, at, 7)
        r = Store(fs, "rec")
        assert r.load() == b"newer record" and r.corrupt == 1, "older byte %d flipped" % at
    # Truncated at every length, empty, or longer than written: not a record.
    for cut in range(n):
        fs.files = dict(good)
        fs.files[newest] = good[newest][:cut]
        r = Store(fs, "rec")
        assert r.load() == b"older record" and r.corrupt == 1, "truncated to %d" % cut
    fs.files = dict(good)
    fs.files[newest] = good[newest] + b"\x00"
    r = Store(fs, "rec")
    assert r.load() == b"older record" and r.corrupt == 1, "a trailing byte"
    # Both slots bad: nothing, both counted.
    fs.files = dict(good)
    fs.files[newest] = b"garbage"
    _flip(fs, older, 5)
    r = Store(fs, "rec")
    assert r.load() is None and r.corrupt == 2, "both corrupt: %d" % r.corrupt
    # A missing slot is not corrupt: only one record was ever written.
    fs2 = MemoryFS()
    Store(fs2, "rec").save(b"only")
    r = Store(fs2, "rec")
    assert r.load() == b"only" and r.corrupt == 0, "one slot, none corrupt"
    # corrupt is the last load's count.
    fs.files = dict(good)
    r2 = Store(fs, "rec")
    fs.files[newest] = b""
    r2.load()
    fs.files = dict(good)
    r2.load()
    assert r2.corrupt == 0, "corrupt counts the last load only"


def test_store_power_cut_at_every_byte_of_a_save():
    body = [b"record one: " + bytes(range(40)), b"record two", b"record three" * 5]
    files = {}
    before = None
    for i in range(len(body)):  # the first save (no record yet), then into either slot
        files = _cut_everywhere(files, "rec", body[i], before, "save %d" % (i + 1))
        before = body[i]
    # Records of another length, cut in turn: the newest whole one always loads.
    for i in range(4):
        new = bytes([(i * 7 + j) & 0xFF for j in range(i * 11)])
        files = _cut_everywhere(files, "rec", new, before, "save %d" % (i + 4))
        before = new


def test_store_power_cut_at_every_byte_of_the_event_log():
    log = EventLog(config.EVENT_LOG_SIZE)
    for i in range(300):  # wrapped: the oldest dropped
        log.log(CLOCK0 + i, m.EV_PROGRAM, CLINICIAN, 0, 0, i, -i, i * 3)
    first = log.dump()
    files = _cut_everywhere({}, "log", first, None, "the first log save")
    for i in range(7):
        log.log(CLOCK0 + 400 + i, m.EV_BOLUS, 0, 0, m.BOLUS_PATIENT, i, 0, 0)
    second = log.dump()
    assert second != first and len(second) == len(first), "the log moved on"
    files = _cut_everywhere(files, "log", second, first, "a log save")
    # What loads is a log that reads back whole.
    fs = MemoryFS()
    fs.files = files
    back = EventLog(config.EVENT_LOG_SIZE)
    assert back.load(Store(fs, "log").load()), "the log loads"
    assert back.total == 307 and back.get(306) == log.get(306), "the newest event kept"
    assert back.get(back.oldest()) == log.get(log.oldest()), "the oldest kept"


def test_store_power_cut_at_every_byte_of_the_therapy_state():
    t = _busy_flex()
    first = snapshot.dump(t)
    files = _cut_everywhere({}, "state", first, None, "the first state save")
    advance(t, 10 * MIN_MS)
    second = snapshot.dump(t)
    assert second != first, "the state moved on"
    files = _cut_everywhere(files, "state", second, first, "a state save")
    advance(t, 10 * MIN_MS)
    third = snapshot.dump(t)
    files = _cut_everywhere(files, "state", third, second, "the next state save")
    # Whichever record a cut leaves, it is a therapy that loads.
    for data in (first, second, third):
        t2 = bare()
        snapshot.load(t2, data, CLOCK0 + 2 * DAY_S)
        assert t2.steps == FLEX_B and t2.pb_dose_ng == 20_000, "a whole therapy"


def test_store_a_failed_write_does_not_cost_the_newest_record():
    # A flush that raises (a flash error: OSError) is caught by Loop.run, which goes on and
    # flushes again. The next save must still go into the slot that does not hold the newest
    # whole record: a power cut during it must leave the newest whole record (or the new one),
    # not an older one, and not none.
    base = MemoryFS()
    s = Store(base, "state")
    s.save(b"older program")
    s.save(b"program in force")
    whole = len(b"after the error") + OVERHEAD
    for k in range(whole + 1):
        fs = _CutFS(base.files)
        s = Store(fs, "state")
        s.load()
        fs.fail = 1
        try:
            s.save(b"not written")
            raise AssertionError("the flash error raises")
        except OSError:
            pass
        fs.budget = k
        try:
            s.save(b"after the error")
        except _PowerCut:
            pass
        got = Store(fs, "state").load()
        assert got in (b"program in force", b"after the error"), (
            "a failed write, then the next save cut after byte %d of %d: load() gave %r "
            "(the newest whole record was b'program in force')" % (k, whole, got))


# -- the snapshot ----------------------------------------------------------------------------


def test_snapshot_of_a_busy_flex_therapy_round_trips():
    t = _busy_flex()
    t2, gap = _reboot(t)
    assert gap == 0, "the clock survived, no time passed: %d" % gap
    _same(t, t2, "busy flex")
    assert t2.steps == FLEX_B and t2.utc_offset_min == 60, "the flex day: %r" % (t2.steps,)
    assert t2.patient_bolus_state()[4] == 2, "two patient boluses used"
    assert t2.increase_n == t.increase_n and t2.increase_up == t.increase_up, "escalation ring"
    assert t2.pb_up == t.pb_up, "patient bolus times"
    assert t2.refill_base_ng == t.refill_base_ng, "the refill visit's base dose"
    # Both run on alike: the same steps each hour, the same flex step at each hour.
    t.pump.cancel_bolus()  # the copy's bolus was cut by the reset (tested below)
    for hour in range(24):
        s1 = advance(t, HOUR_MS)
        s2 = advance(t2, HOUR_MS)
        assert -1 <= s1 - s2 <= 1, "hour %d: %d steps, after the reset %d" % (hour, s1, s2)
        assert t.pump.basal_nl_day == t2.pump.basal_nl_day, "hour %d: the same step" % hour
    assert t.alarm_state() == t2.alarm_state(), "the same alarms a day on"


def test_snapshot_of_a_taper_round_trips():
    t = _busy_taper()
    t2, gap = _reboot(t)
    _same(t, t2, "taper")
    assert t2.mode == m.MODE_TAPER and t2.taper_day == 2, "mid-taper"
    assert t2.program()[1] == t2._taper_dose() < 400_000, "day 2's dose: %d" % t2.daily_ng
    # The next taper day comes when it would have.
    advance(t, 30 * HOUR_MS, 900_000)
    advance(t2, 30 * HOUR_MS, 900_000)
    assert t2.taper_day == t.taper_day == 3 and t2.daily_ng == t.daily_ng, "day %d, %d" % (
        t2.taper_day, t2.daily_ng)


def test_snapshot_of_a_screening_pump_round_trips():
    t = _busy_screening()
    t2, gap = _reboot(t)
    _same(t, t2, "screening")
    nxt, at, given = t2.screening()
    assert nxt == 100_000 and len(given) == 2 and given[1][1] == 75_000, "%r" % (given,)
    assert at == t.pump.clock_s() + DAY_S - 5 * 60, "the next one a day after the last"
    assert t2.phase == m.PHASE_SCREENING and t2.mode == m.MODE_STOPPED, "still screening"
    # The ladder goes on from where it was: 100 mcg a day after 75, not before.
    e = refused(t2.screen, 100_000, 60)
    assert e.code == m.ERR_TOO_SOON, "too soon after the reset: %d" % e.code


def test_snapshot_load_returns_the_gap_or_minus_one():
    t = running(412_500)
    advance(t, 3 * HOUR_MS)
    data = snapshot.dump(t)
    clock = t.pump.clock_s()
    up = t.pump.uptime_s
    for off in (0, 1, 7200, 3 * DAY_S):
        t2 = bare(clock + off)
        gap = snapshot.load(t2, data, clock + off)
        assert gap == off, "off %d s: gap %d" % (off, gap)
        assert t2.pump.clock_s() == clock + off, "the board's clock"
        assert t2.pump.uptime_s == up + off and t2.pump.boot_s == up + off, (
            "the time off counts: uptime %d" % t2.pump.uptime_s)
    for now in (clock - 1, PICO_EPOCH):
        t2 = bare(now)
        gap = snapshot.load(t2, data, now)
        assert gap == -1, "clock %d before the saved %d: gap %d" % (now, clock, gap)
        assert t2.pump.clock_s() == clock, "the clock resumes from the saved one: %d" % (
            t2.pump.clock_s())
        assert t2.pump.uptime_s == up, "no time counted as passed: %d" % t2.pump.uptime_s
        assert t2.pump.window.total_ng() == t.pump.window.total_ng(), "the 24 h dose kept"
    # Off for more than a day: the quarter hours it was off delivered nothing.
    t2 = bare(clock + DAY_S + 3600)
    snapshot.load(t2, data, clock + DAY_S + 3600)
    assert t2.pump.window.total_ng() == 0, "nothing in the last 24 h"
    assert t2.in_force.peak() == 412_500, "the dose in force held throughout"


def test_snapshot_refuses_what_it_cannot_read():
    data = snapshot.dump(_busy_flex())
    assert data[0] == snapshot.FORMAT, "a format byte leads"
    for bad, what in ((bytes((snapshot.FORMAT + 1,)) + data[1:], "another format"),
                      (bytes((0,)) + data[1:], "format 0"),
                      (data + b"\x00", "a trailing byte"),
                      (data + data, "two snapshots")):
        try:
            snapshot.load(bare(), bad, CLOCK0)
        except ValueError:
            continue
        raise AssertionError("%s: loaded" % what)
    t = bare()
    snapshot.load(t, data, CLOCK0 + DAY_S)  # the good one still loads
    assert t.steps == FLEX_B, "loaded"


def test_snapshot_of_another_window_size_is_refused_whole():
    # A record of the same format from a build whose 24 h windows have another number of
    # buckets is whole and self-consistent, but not this build's: refused, nothing put back.
    for window in ("dose", "peak"):
        t = _busy_flex()
        ring = t.pump.window.ng if window == "dose" else t.in_force.v
        ring.pop()
        data = snapshot.dump(t)
        fresh = bare()
        before = (fresh.program(), fresh.pump.volume_nl, list(fresh.pump.window.ng))
        try:
            snapshot.load(fresh, data, CLOCK0)
        except ValueError:
            after = (fresh.program(), fresh.pump.volume_nl, list(fresh.pump.window.ng))
            assert after == before, "%s window: something was put back" % window
            continue
        raise AssertionError("a %s window of another size loaded" % window)


def _dump_format_1(t):
    """What the firmware before format 2 (no brain injury date) wrote: snapshot.dump as it
    was, written out here so that the test does not lean on the code it checks."""
    p = t.pump
    none = -0x80000000
    out = []

    def put(fmt, *v):
        out.append(struct.pack("<" + fmt, *v))

    def ints(seq):
        put("H", len(seq))
        for v in seq:
            put("I", v)

    def opt(v):
        put("i", none if v is None else v)

    put("B", 1)
    put("II", p.clock_s(), p.uptime_s)
    put("IHIIHH", p.volume_nl, p.concentration, p.delivered_steps, p.delivered_ug, p._ng, p._pg)
    put("iIH", p.window.at, p.window.total, p.window.pg)
    ints(p.window.ng)
    put("BBBII", t.phase, t.origin, t.age_years, t.ceiling_ng, t.catheter_nl)
    put("IB", t.infusion_start_s, 1 if t.programmed else 0)
    opt(t.start_up)
    put("BBBhI", t.mode, t.program_mode, t.stop_reason, t.utc_offset_min, t.daily_ng)
    put("B", len(t.steps))
    for start, dose in t.steps:
        put("HI", start, dose)
    put("IIBBi", t.taper_start_ng, t.taper_target_ng, t.taper_days, t.taper_day,
        t.taper_next_up)
    put("i", t.in_force.at)
    ints(t.in_force.v)
    opt(t.last_increase_up)
    put("II", t.refill_base_ng, t.increase_n)
    for v in t.increase_up:
        opt(v)
    put("IIIB", t.pb_dose_ng, t.pb_duration_s, t.pb_lockout_s, t.pb_max)
    put("B", len(t.pb_up))
    for v in t.pb_up:
        opt(v)
    put("Bi", len(t.screens), t.last_screen_up)
    for time_s, dose, duration in t.screens:
        put("III", time_s, dose, duration)
    a = t.alarms
    put("HHI", a.active, a.unacked, a.silenced_until)
    put("BII", t.bolus_kind, t.bolus_ng, p.bolus_left_ng())
    return b"".join(out)


def test_snapshot_keeps_the_brain_injury_date():
    # Label 1: the first therapy waits a year after a brain injury, by the clock then; the
    # date must outlive a reset before it (here one that took the clock).
    injury = CLOCK0 - 365 * DAY_S
    t = ready(brain_injury_s=injury)
    t2, gap = _reboot(t, now_s=PICO_EPOCH)
    assert gap == -1 and t2.profile()[6] == injury, t2.profile()
    _same(t, t2, "brain injury")
    t2.set_clock(CLOCK0 - 1)
    e = refused(t2.set_continuous, 100_000, 0)
    assert (e.code, e.rule, e.wait_s) == (m.ERR_TOO_SOON, m.RULE_BRAIN_INJURY_WAIT, 1), (
        e.code, e.rule, e.wait_s)


def test_snapshot_of_format_1_from_the_older_firmware_loads():
    # A pump updated in place boots from what its old firmware saved: the same therapy, no
    # brain injury date (0), and it saves the new format from then on.
    for t in (_busy_flex(), _busy_taper(), _busy_screening()):
        old = _dump_format_1(t)
        assert old[0] == 1 and len(old) == len(snapshot.dump(t)) - 4, "format 1: 4 bytes less"
        t2 = bare(t.pump.clock_s())
        gap = snapshot.load(t2, old, t.pump.clock_s())
        t2.restart(gap, False)
        assert gap == 0 and t2.brain_injury_s == 0, (gap, t2.brain_injury_s)
        _same(t, t2, "format 1")
        assert snapshot.dump(t2)[0] == snapshot.FORMAT == 2, "saved as format 2"
    # Cut short or with a byte too many, a format 1 snapshot is refused as any other.
    for bad in (old[:-1], old + b"\x00"):
        try:
            snapshot.load(bare(), bad, CLOCK0)
        except ValueError:
            continue
        raise AssertionError("a format 1 snapshot of %d bytes loaded" % len(bad))


def test_store_ignores_a_whole_record_of_another_kind():
    fs = MemoryFS()
    st = Store(fs, "rec")
    st.save(b"ours")
    body = b"theirs"
    rec = struct.pack("<4sIH", b"XXXX", 9, len(body)) + body
    fs.files["rec.a"] = rec + struct.pack("<I", binascii.crc32(rec))  # a valid CRC
    assert Store(fs, "rec").load() == b"ours", "another magic is not one of ours"


# -- the label's rules across a reset --------------------------------------------------------


def test_titration_interval_holds_across_a_reset():
    for power_cut in (False, True):
        t = running(100_000)
        advance(t, 25 * HOUR_MS, 900_000)
        _as(t, CLINICIAN, t.set_continuous, 120_000, 0)  # day 2's increase
        advance(t, HOUR_MS)
        if power_cut:
            t2, gap = _reboot(t, now_s=PICO_EPOCH)
            since = 3600  # the clock was lost: the time off is not counted
        else:
            t2, gap = _reboot(t, off_s=2 * 3600)
            since = 3 * 3600
        assert t2.program()[1] == 120_000, "the raised dose runs"
        e = refused(_as, t2, CLINICIAN, t2.set_continuous, 130_000, 0)
        what = "power cut" if power_cut else "clock survived"
        assert e.code == m.ERR_TOO_SOON and e.rule == m.RULE_TITRATION_INTERVAL, (
            "%s: code %d rule %d" % (what, e.code, e.rule))
        assert e.wait_s == DAY_S - since, "%s: wait %d" % (what, e.wait_s)
        assert t2.daily_ng == 120_000, "nothing changed"
    # A day after the last increase (the time off counted) the next one is allowed.
    t = running(100_000)
    advance(t, 25 * HOUR_MS, 900_000)
    _as(t, CLINICIAN, t.set_continuous, 120_000, 0)
    advance(t, HOUR_MS)
    t2, gap = _reboot(t, off_s=22 * 3600)
    e = refused(_as, t2, CLINICIAN, t2.set_continuous, 130_000, 0)
    assert e.rule == m.RULE_TITRATION_INTERVAL and e.wait_s == 3600, "an hour left"
    t3, gap = _reboot(t, off_s=23 * 3600)
    _as(t3, CLINICIAN, t3.set_continuous, 130_000, 0)
    assert t3.daily_ng == 130_000, "24 h after the last increase"


def test_first_day_rule_holds_across_a_reset():
    for power_cut in (False, True):
        t = running(100_000)
        advance(t, 2 * HOUR_MS)
        if power_cut:
            t2, gap = _reboot(t, now_s=PICO_EPOCH)
            since = 2 * 3600
        else:
            t2, gap = _reboot(t, off_s=3600)
            since = 3 * 3600
        e = refused(_as, t2, CLINICIAN, t2.set_continuous, 110_000, 0)
        what = "power cut" if power_cut else "clock survived"
        assert e.code == m.ERR_TOO_SOON and e.rule == m.RULE_FIRST_24H, (
            "%s: code %d rule %d" % (what, e.code, e.rule))
        assert e.wait_s == DAY_S - since, "%s: wait %d" % (what, e.wait_s)


def _ceiling_pump(first_bolus):
    t = running(100_000, ceiling_ng=300_000)
    if first_bolus:
        _as(t, CLINICIAN, t.bolus, 150_000, 60)
    advance(t, 10 * MIN_MS)
    return t


def test_a_bolus_before_a_reset_still_counts_in_the_24h_ceiling():
    # Without the first bolus the second fits under the ceiling ...
    t = _ceiling_pump(False)
    _as(t, CLINICIAN, t.bolus, 100_000, 60)
    # ... with it, it does not, before the reset and after it.
    t = _ceiling_pump(True)
    assert t.pump.window.total_ng() >= 150_000, "the bolus was delivered"
    e = refused(_as, t, CLINICIAN, t.bolus, 100_000, 60)
    assert e.rule == m.RULE_BOLUS_CEILING, "before the reset: rule %d" % e.rule
    for t2, what in ((_reboot(t, off_s=3600)[0], "clock survived"),
                     (_reboot(t, now_s=PICO_EPOCH)[0], "power cut")):
        assert t2.pump.window.total_ng() == t.pump.window.total_ng(), "%s: kept" % what
        e = refused(_as, t2, CLINICIAN, t2.bolus, 100_000, 60)
        assert e.code == m.ERR_LIMIT and e.rule == m.RULE_BOLUS_CEILING, (
            "%s: code %d rule %d" % (what, e.code, e.rule))


def test_patient_bolus_limits_hold_across_a_reset():
    t = running(100_000)
    _as(t, CLINICIAN, t.set_patient_bolus, 10_000, 60, 1800, 2)
    _as(t, m.ROLE_PATIENT, t.patient_bolus)
    advance(t, HOUR_MS)
    _as(t, m.ROLE_PATIENT, t.patient_bolus)
    advance(t, 10 * MIN_MS)
    t2, gap = _reboot(t, off_s=3600)
    e = refused(_as, t2, m.ROLE_PATIENT, t2.patient_bolus)
    assert e.code == m.ERR_TOO_SOON and e.rule == m.RULE_PATIENT_BOLUS_MAX, (
        "2 a day used before the reset: rule %d" % e.rule)
    assert e.wait_s == DAY_S - 3600 - 10 * 60 - 3600, "until the first is a day old: %d" % (
        e.wait_s)
    t3, gap = _reboot(t, now_s=PICO_EPOCH)
    e = refused(_as, t3, m.ROLE_PATIENT, t3.patient_bolus)
    assert e.rule == m.RULE_PATIENT_BOLUS_MAX, "power cut: rule %d" % e.rule


# -- resuming after a reset ------------------------------------------------------------------


def test_restart_runs_the_program_at_once():
    for power_cut in (False, True):
        t = running(412_500)  # 825 uL/day: 137.5 steps an hour
        advance(t, 3 * HOUR_MS)
        t2, gap = _reboot(t, now_s=PICO_EPOCH if power_cut else None, off_s=600)
        what = "power cut" if power_cut else "clock survived"
        assert t2.mode == m.MODE_CONTINUOUS, "%s: mode %d" % (what, t2.mode)
        assert t2.pump.basal_nl_day == t.pump.basal_nl_day == 825_000, "%s: the rate" % what
        assert 0 < t2.pump.ms_until_next() <= 27_000, "%s: the next step within its interval" % what
        first = 0
        for _ in range(60):
            first += t2.advance(MIN_MS)
            if first:
                break
        assert first, "%s: a step within the first minute" % what
        steps = advance(t2, HOUR_MS)
        assert 137 <= steps <= 138, "%s: %d steps in an hour" % (what, steps)
        e = _events(t2)[0]
        assert e[1] == m.EV_RESTORED, "%s: the first event: %r" % (what, e)
        assert e[5] == gap == (-1 if power_cut else 600), "%s: a = the gap: %r" % (what, e)
        assert e[6] == m.MODE_CONTINUOUS and e[7] == 0, "%s: b = the mode: %r" % (what, e)


def test_restart_resumes_a_flex_day_at_the_right_step():
    t = ready()
    _as(t, CLINICIAN, t.set_flex, 0, 60, FLEX_A)
    advance(t, 11 * HOUR_MS + 30 * MIN_MS)  # 20:30 local: the third step
    t2, gap = _reboot(t)
    assert t2.pump.basal_nl_day == t.pump.basal_nl_day == 240_000, "the 20:00 step: %d" % (
        t2.pump.basal_nl_day)
    total1 = 0
    total2 = 0
    for hour in range(26):
        s1 = advance(t, HOUR_MS)
        s2 = advance(t2, HOUR_MS)
        total1 += s1
        total2 += s2
        assert -1 <= s1 - s2 <= 1, "hour %d: %d and %d steps" % (hour, s1, s2)
        assert t.pump.basal_nl_day == t2.pump.basal_nl_day, "hour %d: the step" % hour
    assert -2 <= total1 - total2 <= 2, "%d and %d steps" % (total1, total2)


def test_restart_keeps_a_suspended_pump_at_the_minimum_rate():
    t = running(412_500)
    _as(t, CLINICIAN, t.suspend, 2, m.STOP_CONFIRM)
    assert t.pump.basal_nl_day == config.MIN_RATE_NL_DAY, "held at the minimum"
    advance(t, HOUR_MS)
    for t2, _gap in (_reboot(t, off_s=60), _reboot(t, now_s=PICO_EPOCH)):
        assert t2.mode == m.MODE_MINIMUM and t2.program_mode == m.MODE_CONTINUOUS, "held"
        assert t2.pump.basal_nl_day == config.MIN_RATE_NL_DAY, "the minimum rate runs"
        steps = advance(t2, 3 * HOUR_MS)
        want = config.MIN_RATE_NL_DAY // STEP_NL // 8
        assert want - 1 <= steps <= want, "%d steps in 3 h, want %d" % (steps, want)
        assert _events(t2)[0][6] == m.MODE_MINIMUM, "EV_RESTORED b = the mode"
        _as(t2, CLINICIAN, t2.resume)
        assert t2.pump.basal_nl_day == 825_000, "RESUME still returns to the program"


def test_restart_leaves_a_stopped_pump_stopped():
    t = running(412_500)
    _as(t, CLINICIAN, t.stop, 3, m.STOP_CONFIRM)
    for t2, _gap in (_reboot(t, off_s=60), _reboot(t, now_s=PICO_EPOCH)):
        assert t2.mode == m.MODE_STOPPED and t2.stop_reason == 3, "stopped, with its reason"
        assert t2.pump.basal_nl_day == 0 and t2.pump.ms_until_next() == -1, "no rate"
        assert advance(t2, 3 * HOUR_MS) == 0, "no step"
        assert _events(t2)[0][6] == m.MODE_STOPPED, "EV_RESTORED b = the mode"


def test_restart_logs_a_cut_bolus_and_does_not_resume_it():
    t = running(412_500)
    _as(t, CLINICIAN, t.bolus, 100_000, 3600)  # 800 steps over an hour
    advance(t, 30 * MIN_MS)
    left = t.pump.bolus_left_ng()
    assert 0 < left < 100_000, "half given: %d ng left" % left
    for t2, _gap in (_reboot(t, off_s=60), _reboot(t, now_s=PICO_EPOCH)):
        assert t2.pump.bolus_steps == 0 and t2.bolus_kind == m.BOLUS_NONE, "not resumed"
        ev = _events(t2)
        assert ev[0][1] == m.EV_RESTORED, "EV_RESTORED first: %r" % (ev,)
        done = _find(ev, m.EV_BOLUS_DONE)
        assert len(done) == 1, "one bolus_done: %r" % (ev,)
        d = done[0]
        assert d[4] == m.BOLUS_CLINICIAN, "its kind: %r" % (d,)
        assert d[6] == left and d[5] == 100_000 - left, (
            "given %d, not given %d (want %d, %d)" % (d[5], d[6], 100_000 - left, left))
        steps = advance(t2, HOUR_MS)
        assert 137 <= steps <= 138, "the basal rate only: %d steps in an hour" % steps
        assert not _find(_events(t2), m.EV_BOLUS_DONE)[1:], "logged once"


def test_restart_closes_refill_and_cap_sessions():
    t = running(412_500)
    _as(t, CLINICIAN, t.refill_begin)
    assert t.pump.held and t.sessions() == m.SESSION_REFILL, "a refill session holds"
    t2, gap = _reboot(t, off_s=60)
    assert t2.sessions() == 0 and not t2.pump.held, "refill session closed, outlet open"
    assert t2.mode == m.MODE_CONTINUOUS, "the program runs"
    steps = advance(t2, HOUR_MS)
    assert 137 <= steps <= 138, "delivering: %d" % steps
    t = running(412_500)
    _as(t, CLINICIAN, t.cap_begin, 3600)
    assert t.sessions() == m.SESSION_CAP, "a CAP session"
    t2, gap = _reboot(t, now_s=PICO_EPOCH)
    assert t2.sessions() == 0 and not t2.pump.held and t2.cap_end_up == 0, "CAP closed"
    assert 137 <= advance(t2, HOUR_MS) <= 138, "delivering"


def test_restart_logs_ev_restored():
    t = running(412_500)
    t2, gap = _reboot(t, off_s=3600, older=True)
    e = _events(t2)[0]
    assert e[1] == m.EV_RESTORED and e[0] == t.pump.clock_s() + 3600, "at the new clock: %r" % (
        e,)
    assert (e[5], e[6], e[7]) == (3600, m.MODE_CONTINUOUS, 1), "gap, mode, older copy: %r" % (
        e,)
    t2, gap = _reboot(t, now_s=PICO_EPOCH)
    e = _events(t2)[0]
    assert e[0] == t.pump.clock_s() and (e[5], e[6], e[7]) == (-1, m.MODE_CONTINUOUS, 0), (
        "power cut: %r" % (e,))


# -- the loop on fake board objects ----------------------------------------------------------


def _on_fakes(fn):
    """Run fn(boot) with firmware/loop.py on the fakes' time; boot(board) builds a Loop."""
    from firmware import loop as loop_mod

    saved = loop_mod.time

    def boot(board):
        loop_mod.time = board.clock
        return loop_mod.Loop(board)

    try:
        fn(boot)
    finally:
        loop_mod.time = saved


def _ask(lp, mtype, values, role=CLINICIAN):
    """A request through the dispatcher, saved as Loop.answer() saves an accepted one."""
    rtype, out = lp.dispatcher.handle(mtype, values, role)
    assert rtype == mtype | 0x80, "0x%02x answered %r" % (mtype, out)
    lp.save()
    return out


def _program(lp, daily_ng=412_500):
    _ask(lp, m.SET_PROFILE, (m.ORIGIN_SPINAL, 40, m.PHASE_TITRATION, 1_500_000, 200_000, 0, 0))
    _ask(lp, m.REFILL_BEGIN, ())
    _ask(lp, m.REFILL_COMMIT, (0, CAPACITY_NL, m.DRUG_BACLOFEN, 500, 500, 0))
    _ask(lp, m.SET_CONTINUOUS, (daily_ng, 0))


def _run_for(lp, board, ms):
    """Turns of the loop for ms of loop time."""
    end = board.clock.now + ms
    while board.clock.now < end:
        lp.once()


def _on_flash(fs):
    """(the therapy on flash, loaded into a fresh one at its own clock; the log on flash)."""
    t = bare()
    raw = Store(fs, "state").load()
    assert raw is not None, "a state on flash"
    snapshot.load(t, raw, 0)  # a clock earlier than any: the saved clock is kept
    log = EventLog(config.EVENT_LOG_SIZE)
    raw = Store(fs, "log").load()
    assert raw is not None and log.load(raw), "a log on flash"
    return t, log


def test_loop_reboot_resumes_in_its_constructor():
    def run(boot):
        for power_cut in (False, True):
            fs = MemoryFS()
            b1 = FakeBoard(fs)
            lp1 = boot(b1)
            _program(lp1)
            _run_for(lp1, b1, 3 * HOUR_MS + 12_345)  # steps, and periodic flushes
            assert lp1.pump.delivered_steps > 400, "ran: %d" % lp1.pump.delivered_steps
            saved, saved_log = _on_flash(fs)
            assert saved.pump.delivered_steps > 0, "delivery on flash"
            wall = PICO_EPOCH if power_cut else b1.clock.time() + 120
            b2 = FakeBoard(fs, wall)  # the reboot
            lp2 = boot(b2)
            t = lp2.therapy
            what = "power cut" if power_cut else "clock survived"
            # Resumed before the loop's first turn.
            assert t.mode == m.MODE_CONTINUOUS and t.daily_ng == 412_500, "%s: mode %d" % (
                what, t.mode)
            assert lp2.pump.basal_nl_day == lp1.pump.basal_nl_day == 825_000, (
                "%s: the rate %d" % (what, lp2.pump.basal_nl_day))
            assert lp2.pump.delivered_steps == saved.pump.delivered_steps, "totals carried"
            assert lp2.pump.volume_nl == saved.pump.volume_nl, "the reservoir carried"
            gap = -1 if power_cut else wall - saved.pump.clock_s()
            want_clock = saved.pump.clock_s() if power_cut else wall
            assert lp2.pump.clock_s() == want_clock, "%s: clock %d" % (what, lp2.pump.clock_s())
            # The log goes on from what was on flash: EV_RESTORED, then EV_BOOT.
            log = t.log
            assert log.total == saved_log.total + 2, "%s: %d events after %d" % (
                what, log.total, saved_log.total)
            for n in range(saved_log.oldest(), saved_log.total):
                assert log.get(n) == saved_log.get(n), "%s: event %d kept" % (what, n)
            r = log.get(log.total - 2)
            assert r[1] == m.EV_RESTORED and (r[5], r[6], r[7]) == (
                gap, m.MODE_CONTINUOUS, 0), "%s: EV_RESTORED %r" % (what, r)
            assert log.get(log.total - 1)[1] == m.EV_BOOT, "%s: then EV_BOOT" % what
            assert _find([log.get(n) for n in range(log.oldest(), log.total)],
                         m.EV_PROGRAM), "the program's record is kept"
            # The motor steps within the first turns of the loop: within one step interval.
            assert 0 < lp2.pump.ms_until_next() <= 26_200, "%s: the next step in %d ms" % (
                what, lp2.pump.ms_until_next())
            _run_for(lp2, b2, 27_000)
            assert b2.stepper.steps >= 1, "%s: no step in the first turns" % what
            _run_for(lp2, b2, HOUR_MS)
            made = lp2.pump.delivered_steps - saved.pump.delivered_steps
            assert b2.stepper.steps == made, "every step made"
            want = b2.clock.now * 825_000 // STEP_NL // 86_400_000
            assert want - 1 <= made <= want + 1, "%s: %d steps in %d ms, want %d" % (
                what, made, b2.clock.now, want)

    _on_fakes(run)


def test_loop_both_state_slots_corrupt_raise_config_crc():
    def run(boot):
        fs = MemoryFS()
        lp1 = boot(FakeBoard(fs))
        _program(lp1)
        for name in lp1.state_store.names:
            _flip(fs, name, 20)
        lp2 = boot(FakeBoard(fs))
        t = lp2.therapy
        assert lp2.state_store.corrupt == 2, "both counted"
        assert t.alarms.active & _bit(m.ALARM_CONFIG_CRC), "config_crc: %d" % t.alarms.active
        p = lp2.pump
        assert (t.mode, t.phase, p.volume_nl, p.concentration, p.basal_nl_day) == (
            m.MODE_STOPPED, m.PHASE_UNSET, 0, 0, 0), "an empty pump"
        log = t.log
        assert log.total > 5, "the log (its slots whole) is kept: %d" % log.total
        r = log.get(log.total - 2)
        assert r[1] == m.EV_ALARM and (r[5], r[6]) == (m.ALARM_CONFIG_CRC, 1), "%r" % (r,)
        assert log.get(log.total - 1)[1] == m.EV_BOOT, "then EV_BOOT"
        assert not _find([log.get(n) for n in range(log.oldest(), log.total)],
                         m.EV_RESTORED), "nothing restored"

    _on_fakes(run)


def test_loop_one_state_slot_corrupt_gives_the_other():
    def run(boot):
        fs = MemoryFS()
        b1 = FakeBoard(fs)
        lp1 = boot(b1)
        _program(lp1)
        programmed = lp1.state_store.seq
        while lp1.state_store.seq == programmed:  # to the first periodic flush
            lp1.once()
        assert lp1.pump.delivered_steps > 0, "delivered since the program was saved"
        fs.files[_newest_slot(lp1.state_store)] = b"\x00" * 7
        lp2 = boot(FakeBoard(fs, b1.clock.time() + 60))
        t = lp2.therapy
        assert lp2.state_store.corrupt == 1, "one counted"
        assert t.mode == m.MODE_CONTINUOUS and lp2.pump.basal_nl_day == 825_000, "resumed"
        assert lp2.pump.delivered_steps == 0, "the older copy: saved with the program"
        assert not t.alarms.active & _bit(m.ALARM_CONFIG_CRC), "no config_crc"
        log = t.log
        r = log.get(log.total - 2)
        assert r[1] == m.EV_RESTORED and r[6] == m.MODE_CONTINUOUS and r[7] == 1, (
            "EV_RESTORED c = 1 (an older copy): %r" % (r,))

    _on_fakes(run)


def test_loop_flushes_every_flush_s():
    def run(boot):
        fs = MemoryFS()
        b = FakeBoard(fs)
        lp = boot(b)
        _program(lp)  # saved: the flush is FLUSH_S away
        writes = lp.state_store.writes
        last = b.clock.now
        flushes = []
        while b.clock.now < last + 3 * FLUSH_MS + HOUR_MS // 2 and len(flushes) < 4:
            start = b.clock.now
            assert start - last <= FLUSH_MS, "flash %d ms old" % (start - last)
            lp.once()
            if lp.state_store.writes == writes:
                continue
            assert lp.state_store.writes == writes + 1, "one write"
            writes = lp.state_store.writes
            flushes.append(start - last)
            last = start
            t, log = _on_flash(fs)
            assert t.pump.delivered_steps == lp.pump.delivered_steps, "totals on flash"
            assert t.pump.window.total_ng() == lp.pump.window.total_ng(), "24 h dose on flash"
            assert log.total == lp.therapy.log.total, "the log on flash is the whole log"
        assert flushes == [FLUSH_MS] * 4, "a flush every FLUSH_S: %r" % (flushes,)
        want = 4 * FLUSH_MS * 3300 // 86_400_000  # 825 uL/day: 3300 steps a day
        assert want - 1 <= lp.pump.delivered_steps <= want + 1, "delivered %d, want %d" % (
            lp.pump.delivered_steps, want)

    _on_fakes(run)


NONCE = b"persistence test"


def _signed(mtype, values, counter):
    """A clinician's request in session 0 (nonce NONCE), on the wire."""
    head = struct.pack(m.HEADER_FORMAT, m.VERSION, mtype, m.FLAG_AUTH, counter)
    head += struct.pack(codec.LAYOUTS[mtype].fmt, *values)
    head += struct.pack(m.AUTH_FORMAT, 0, CLINICIAN, counter)
    frame = head + auth.frame_tag(CLINICIAN_KEY, NONCE, head)
    frame += struct.pack("<I", binascii.crc32(frame) & 0xFFFFFFFF)
    wire = bytearray(framing.MAX_WIRE)
    return bytes(wire[: framing.cobs_encode(frame, len(frame), wire)])


def test_loop_saves_each_accepted_command_before_the_next():
    def run(boot):
        fs = MemoryFS()
        b = FakeBoard(fs)
        lp = boot(b)
        lp.guard = lp.dispatcher.guard = Guard({CLINICIAN: CLINICIAN_KEY})
        assert lp.guard.open(NONCE) == 0, "session 0"
        requests = (
            (m.SET_PROFILE, (m.ORIGIN_SPINAL, 40, m.PHASE_TITRATION, 1_500_000, 200_000, 0, 0)),
            (m.REFILL_BEGIN, ()),
            (m.REFILL_COMMIT, (0, CAPACITY_NL, m.DRUG_BACLOFEN, 500, 500, 0)),
            (m.SET_CONTINUOUS, (412_500, 0)),
        )
        counter = 0
        for mtype, values in requests:
            counter += 1
            writes = lp.state_store.writes
            b.link.rx += _signed(mtype, values, counter)
            lp.once()
            assert lp.state_store.writes == writes + 1, "0x%02x saved" % mtype
            t, log = _on_flash(fs)
            assert log.total == lp.therapy.log.total, "0x%02x: its log record on flash" % mtype
        assert t.mode == m.MODE_CONTINUOUS and t.daily_ng == 412_500, "the program on flash"
        assert t.pump.volume_nl == CAPACITY_NL and t.phase == m.PHASE_TITRATION, "and the rest"
        # A refused request changes nothing, and needs no save.
        counter += 1
        b.link.rx += _signed(m.SET_CONTINUOUS, (600_000, 0), counter)
        lp.once()
        assert lp.therapy.daily_ng == 412_500, "refused (first 24 h)"

    _on_fakes(run)


def test_loop_power_cut_during_a_save_keeps_state_and_log_agreeing():
    # An accepted change is saved as two records, the state and then the log. Wherever the
    # power goes during that save (each write's every byte is covered by the store tests:
    # within one write, every cut leaves the same thing), the pump that boots must be able to
    # account for the program it runs: its EV_PROGRAM is in the log it boots with.
    def run(boot):
        base = MemoryFS()
        lp = boot(FakeBoard(base))
        _program(lp, 100_000)  # program A, saved whole
        lp.dispatcher.handle(m.SET_CONTINUOUS, (90_000, 0), CLINICIAN)  # B, measured only
        state_len = len(snapshot.dump(lp.therapy)) + OVERHEAD
        log_len = len(lp.therapy.log.dump()) + OVERHEAD
        cuts = (0, 1, state_len // 2, state_len - 1, state_len, state_len + 1,
                state_len + log_len // 2, state_len + log_len - 1, state_len + log_len)
        for k in cuts:
            fs = _CutFS(base.files)
            lp = boot(FakeBoard(fs))  # running program A
            assert lp.therapy.daily_ng == 100_000, "A runs"
            rtype, out = lp.dispatcher.handle(m.SET_CONTINUOUS, (90_000, 0), CLINICIAN)
            assert rtype == m.SET_CONTINUOUS | 0x80, "B accepted: %r" % (out,)
            fs.budget = k
            try:
                lp.save()
                cut = False
            except _PowerCut:
                cut = True
            assert cut == (k < state_len + log_len), "cut after %d bytes" % k
            lp2 = boot(FakeBoard(fs, CLOCK0 + 600))
            t = lp2.therapy
            assert t.daily_ng in (100_000, 90_000), "A or B: %d" % t.daily_ng
            assert not t.alarms.active & _bit(m.ALARM_CONFIG_CRC), "a whole state"
            where = "in the state write" if k < state_len else "in the log write"
            if k == state_len + log_len:
                where = "no cut"
            log = t.log
            found = [e for e in _find([log.get(n) for n in range(log.oldest(), log.total)],
                                      m.EV_PROGRAM) if e[5] == t.daily_ng]
            assert found, (
                "power cut after byte %d of %d (%s): the pump boots running %d ng/day, but "
                "its log has no EV_PROGRAM for it (Loop.save writes the state, then the log)"
                % (k, state_len + log_len, where, t.daily_ng))

    _on_fakes(run)


def _state_record(fs, data):
    s = Store(fs, "state")
    s.load()
    s.save(data)


def test_loop_state_of_another_format_raises_config_crc():
    def run(boot):
        fs = MemoryFS()
        lp1 = boot(FakeBoard(fs))
        _program(lp1)
        raw = Store(fs, "state").load()
        _state_record(fs, bytes((snapshot.FORMAT + 1,)) + raw[1:])  # whole, CRC good
        lp2 = boot(FakeBoard(fs, CLOCK0 + 600))
        t = lp2.therapy
        assert t.alarms.active & _bit(m.ALARM_CONFIG_CRC), "config_crc"
        p = lp2.pump
        assert (t.mode, t.phase, p.volume_nl, p.basal_nl_day) == (
            m.MODE_STOPPED, m.PHASE_UNSET, 0, 0), "an empty pump"

    _on_fakes(run)


def test_loop_boots_from_the_older_firmwares_state_and_goes_on():
    # A firmware update in place: the flash holds format 1 (the firmware before the brain
    # injury date). The pump boots running the program it had, no config_crc alarm.
    def run(boot):
        fs = MemoryFS()
        lp1 = boot(FakeBoard(fs))
        _program(lp1)
        _state_record(fs, _dump_format_1(lp1.therapy))
        board = FakeBoard(fs, CLOCK0 + 600)
        lp2 = boot(board)
        t = lp2.therapy
        assert not t.alarms.active & _bit(m.ALARM_CONFIG_CRC), "no config_crc"
        assert (t.mode, t.daily_ng, t.brain_injury_s) == (m.MODE_CONTINUOUS, 412_500, 0), (
            t.mode, t.daily_ng, t.brain_injury_s)
        assert lp2.pump.basal_nl_day > 0, "the motor runs"
        _run_for(lp2, board, 10 * MIN_MS)
        lp2.save()
        assert Store(fs, "state").load()[0] == 2, "saved as format 2"

    _on_fakes(run)


def test_loop_state_it_cannot_read_is_not_half_loaded():
    # A whole record (its CRC good) whose layout this firmware cannot read (here one byte
    # more than it expects): Loop.restore raises config_crc. The pump must not be left with
    # half a snapshot in it: a program that says it runs while the motor does not.
    def run(boot):
        fs = MemoryFS()
        lp1 = boot(FakeBoard(fs))
        _program(lp1)
        raw = Store(fs, "state").load()
        _state_record(fs, raw + b"\x00")
        lp2 = boot(FakeBoard(fs, CLOCK0 + 600))
        t = lp2.therapy
        p = lp2.pump
        assert t.alarms.active & _bit(m.ALARM_CONFIG_CRC), "config_crc"
        if t.mode == m.MODE_STOPPED:
            assert (t.phase, p.volume_nl, p.concentration) == (m.PHASE_UNSET, 0, 0), (
                "stopped but not empty: phase %d, %d nL at %d mcg/mL" % (
                    t.phase, p.volume_nl, p.concentration))
        else:
            assert p.basal_nl_day > 0, (
                "half a snapshot loaded: program() says mode %d, %d ng/day, but the motor "
                "runs %d nL/day (and %d nL in the reservoir)" % (
                    t.mode, t.daily_ng, p.basal_nl_day, p.volume_nl))

    _on_fakes(run)
