# What the pump keeps across a reset: the therapy (profile, program, the 24 h rule state,
# patient-bolus use, screening, alarms) and the mechanism's account (reservoir, concentration,
# delivered totals, the 24 h dose window), as bytes for store.py. A version byte leads, so
# that a later layout can read or refuse an older one.
#
# Formats: a firmware writes FORMAT and reads every format in READS, so that a pump updated
# in place boots from the snapshot its old firmware left (a layout it could not read would
# start it empty and stopped, with the config_crc alarm: never stop abruptly). _read reads
# a field an older format lacks as its default (below, each format's additions). A snapshot of
# a newer format than the firmware's (a downgrade) is refused whole, as any it cannot read.
#   1: the first layout.
#   2: + the profile's brain_injury_s (label 1) after the infusion start; 0 (none) from 1.
#
# Times kept are the pump's monotonic seconds (Pump.uptime_s, carried across resets) and the
# wall clock at the save. A running bolus and open refill or CAP sessions are not kept: after
# a reset no bolus goes on unseen, and the outlet and the CAP are closed.

import struct

FORMAT = 2
READS = (1, 2)
NONE = -0x80000000  # an absent monotonic time (None)


class _W:
    def __init__(self):
        self.b = bytearray()

    def put(self, fmt, *v):
        self.b += struct.pack("<" + fmt, *v)

    def opt(self, v):
        self.put("i", NONE if v is None else v)

    def ints(self, fmt, seq):
        self.put("H", len(seq))
        for v in seq:
            self.put(fmt, v)


class _R:
    def __init__(self, data):
        self.d = data
        self.at = 0

    def get(self, fmt):
        """The values of a struct format, as a tuple."""
        fmt = "<" + fmt
        v = struct.unpack_from(fmt, self.d, self.at)
        self.at += struct.calcsize(fmt)
        return v

    def one(self, fmt):
        return self.get(fmt)[0]

    def opt(self):
        v = self.one("i")
        return None if v == NONE else v

    def ints(self, fmt):
        return [self.one(fmt) for _ in range(self.one("H"))]


def dump(t):
    """The therapy t and its pump as bytes."""
    p = t.pump
    w = _W()
    w.put("B", FORMAT)
    w.put("II", p.clock_s(), p.uptime_s)
    # the mechanism's account
    w.put("IHIIHH", p.volume_nl, p.concentration, p.delivered_steps, p.delivered_ug, p._ng,
          p._pg)
    w.put("iIH", p.window.at, p.window.total, p.window.pg)
    w.ints("I", p.window.ng)
    # profile
    w.put("BBBII", t.phase, t.origin, t.age_years, t.ceiling_ng, t.catheter_nl)
    w.put("IB", t.infusion_start_s, 1 if t.programmed else 0)
    w.opt(t.start_up)
    w.put("I", t.brain_injury_s)  # (format 2)
    # program
    w.put("BBBhI", t.mode, t.program_mode, t.stop_reason, t.utc_offset_min, t.daily_ng)
    w.put("B", len(t.steps))
    for start, dose in t.steps:
        w.put("HI", start, dose)
    w.put("IIBBi", t.taper_start_ng, t.taper_target_ng, t.taper_days, t.taper_day,
          t.taper_next_up)
    # the 24 h rules
    w.put("i", t.in_force.at)
    w.ints("I", t.in_force.v)
    w.opt(t.last_increase_up)
    w.put("II", t.refill_base_ng, t.increase_n)
    for v in t.increase_up:
        w.opt(v)
    # patient boluses
    w.put("IIIB", t.pb_dose_ng, t.pb_duration_s, t.pb_lockout_s, t.pb_max)
    w.put("B", len(t.pb_up))
    for v in t.pb_up:
        w.opt(v)
    # screening
    w.put("Bi", len(t.screens), t.last_screen_up)
    for time_s, dose, duration in t.screens:
        w.put("III", time_s, dose, duration)
    # alarms
    a = t.alarms
    w.put("HHI", a.active, a.unacked, a.silenced_until)
    # a bolus running: not resumed, but reported as cut short
    w.put("BII", t.bolus_kind, t.bolus_ng, p.bolus_left_ng())
    return bytes(w.b)


def load(t, data, now_s):
    """Put a snapshot back into a fresh therapy t (and its pump). now_s: the board's clock at
    boot. Returns how long the pump was off in s, or -1 if the clock did not survive (a power
    cut: the Pico has no battery-backed clock), in which case the clock resumes from the
    snapshot's and no time is counted as passed: every 24 h limit then holds longer, never
    shorter. A snapshot it cannot read raises ValueError and changes nothing: it is read
    whole before anything is put back."""
    try:
        parts, clock, up = _read(t, data)
    except ValueError:
        raise
    except Exception as e:  # struct.error on CPython (a ValueError on MicroPython), IndexError
        raise ValueError("snapshot unreadable: %s" % e) from e
    p = t.pump
    gap = now_s - clock if now_s >= clock else -1
    p.uptime_s = up + (gap if gap > 0 else 0)
    p.boot_s = p.uptime_s
    p.set_clock(now_s if gap >= 0 else clock)
    for obj, names, values in parts:
        if len(names) == 1:
            values = (values,)
        for i in range(len(names)):
            setattr(obj, names[i], values[i])
    p.window.roll(p.uptime_s)  # the quarter hours the pump was off delivered nothing
    t.in_force.roll(p.uptime_s, t.daily_ng)
    return gap


def _read(t, data):
    """Everything load() puts back, as (object, attribute names, values), checked whole."""
    r = _R(data)
    fmt = r.one("B")
    if fmt not in READS:
        raise ValueError("snapshot format")
    clock, up = r.get("II")
    p = t.pump
    w = p.window
    a = t.alarms
    parts = [
        (p, ("volume_nl", "concentration", "delivered_steps", "delivered_ug", "_ng", "_pg"),
         r.get("IHIIHH")),
        (w, ("at", "total", "pg"), r.get("iIH")),
        (w, ("ng",), r.ints("I")),
        (t, ("phase", "origin", "age_years", "ceiling_ng", "catheter_nl"), r.get("BBBII")),
    ]
    start, programmed = r.get("IB")
    parts.append((t, ("infusion_start_s", "programmed", "start_up"),
                  (start, programmed == 1, r.opt())))
    parts.append((t, ("brain_injury_s",), r.one("I") if fmt >= 2 else 0))
    parts.append((t, ("mode", "program_mode", "stop_reason", "utc_offset_min", "daily_ng"),
                  r.get("BBBhI")))
    parts.append((t, ("steps",), tuple(r.get("HI") for _ in range(r.one("B")))))
    parts.append((t, ("taper_start_ng", "taper_target_ng", "taper_days", "taper_day",
                      "taper_next_up"), r.get("IIBBi")))
    parts.append((t.in_force, ("at",), r.one("i")))
    peaks = r.ints("I")
    parts.append((t.in_force, ("v",), peaks))
    parts.append((t, ("last_increase_up",), r.opt()))
    parts.append((t, ("refill_base_ng", "increase_n"), r.get("II")))
    parts.append((t, ("increase_up",), [r.opt() for _ in range(len(t.increase_up))]))
    parts.append((t, ("pb_dose_ng", "pb_duration_s", "pb_lockout_s", "pb_max"),
                  r.get("IIIB")))
    parts.append((t, ("pb_up",), [r.opt() for _ in range(r.one("B"))]))
    n, last_screen = r.get("Bi")
    parts.append((t, ("screens", "last_screen_up"),
                  ([r.get("III") for _ in range(n)], last_screen)))
    parts.append((a, ("active", "unacked", "silenced_until"), r.get("HHI")))
    parts.append((t, ("bolus_kind", "bolus_ng", "bolus_cut_ng"), r.get("BII")))
    if r.at != len(data):
        raise ValueError("snapshot length")
    if len(parts[2][2]) != len(w.ng) or len(peaks) != len(t.in_force.v):
        raise ValueError("snapshot window size")
    return parts, clock, up
