# The rig controller's core: the JSON-lines protocol, the rig's state and its arithmetic.
# Plain Python that runs unchanged on MicroPython (the rig Pico) and on CPython (the tests):
# no machine/rp2 here. Everything physical goes through a board object (board.py on the Pico,
# a fake in tests/rig) with these methods:
#   ticks_ms(), ticks_us(), TICKS_PERIOD      the free-running tick counters and their wrap
#   counters() -> (fwd, back, buzzer)         the PIO edge counters, raw 32-bit values
#   valves() -> (refill, cap)                 the pump's valve drive lines, 1 = open
#   set_needle(port, inserted)                pull the pump's needle-detect line low (or not)
#   set_pinch(closed)                         the pinch valve on the catheter
#   set_power(on)                             the relay in the pump's supply
#   pulse_run(ms)                             hold the pump's RUN pin low for ms
#   has_dac, dac_write(code, persist), dac_off()   the MCP4725 behind the battery-sense input
#   has_hx711, hx711_read() -> raw 24 bits, or -1 when no conversion is ready
#   load_config() -> str or None, save_config(text)   rig.json on the rig's flash
#   uid() -> str
# Protocol (hil/RIG.md): one JSON object per line in, one per line out. A request is
# {"cmd": name, ...} with an optional "id" that the reply echoes; the reply is
# {"ok": true, ...} or {"ok": false, "code": ..., "error": ...}.

import json

RIG_NAME = "intrapump-rig"
VERSION = 1

# The pump's side of the wiring (firmware/config.py is the source; tests/rig checks these).
PUMP_PIN_STEP = 2
PUMP_PIN_DIR = 3
PUMP_PIN_REFILL_VALVE = 8
PUMP_PIN_CAP_VALVE = 9
PUMP_PIN_NEEDLE_SEPTUM = 10
PUMP_PIN_NEEDLE_CAP = 11
PUMP_PIN_BUZZER = 15
PUMP_PIN_BATTERY_ADC = 27
PUMP_BATTERY_DIVIDER = 2  # battery voltage / voltage at the pump's ADC pin

PORTS = ("septum", "cap")
# What this rig can do when everything is fitted. A real rig has no time_control, hang,
# flash_cut or plant_model: it cannot stop time, stop the firmware, or see inside the pump.
ALL_CAPABILITIES = ("battery", "delivered_volume", "needles", "occlusion", "power", "reset",
                    "steps", "tones", "valves")

GATE_MS = 50  # buzzer gate: a 250 ms tone spans at least four whole gates
GATE_US = GATE_MS * 1000
MAX_GATE_US = 2 * GATE_US  # a longer gate (the loop was busy) may span a change of tone
QUIET_HZ = 100  # below this the buzzer is quiet (the firmware sets duty 0: no edges at all)
SAME_TONE_PCT = 5  # two readings this close are one tone (2.0 and 2.8 kHz differ by 40 %)
TONE_ROUND_HZ = 10
COUNTER_MOD = 1 << 32  # the PIO counters are 32-bit registers

MAX_LINE = 512  # bytes in one request line
MAX_PULSE_MS = 2000  # the longest RUN pulse
DAC_MAX = 4095  # MCP4725: 12 bits
HX711_STALE_MS = 2000  # at 10 samples/s, no reading this long means the HX711 is gone
MIN_CAL_COUNTS = 100  # a known mass that moves the reading less than this calibrates nothing
MAX_BATTERY_MV = 20_000  # a sanity bound; the DAC's full scale is the real limit
MAX_CAL_MG = 10_000_000  # 10 kg: more than any load cell under a collection vessel

DEFAULTS = {
    "tare": None,  # averaged HX711 counts with the empty collection vessel
    "noise_counts": 0,  # spread of the readings when tared (the scale's noise)
    "cal_counts": None,  # counts the known mass added ...
    "cal_mg": None,  # ... and that mass, in mg
    "density_ug_per_ul": 1000,  # the drug solution: 1000 ug/uL = 1.000 mg/uL
    "window": 8,  # readings averaged (0.8 s at the HX711's 10 samples/s)
    "tolerance_nl": 0,  # added to the scale's own tolerance (evaporation, drops)
    "battery_mv": 3900,  # the battery the pump sees when no test sets one
    "dac_vref_mv": 3300,  # the DAC's supply (its full scale); trim so the pump reads true
    "without": [],  # capabilities whose hardware this rig does not have fitted
}
CONFIG_LIMITS = {  # settable with the config command: (lowest, highest)
    "density_ug_per_ul": (500, 3000),
    "window": (1, 64),
    "tolerance_nl": (0, 10_000_000),
    "battery_mv": (0, 6000),
    "dac_vref_mv": (2500, 3600),
}


class Refused(Exception):
    """A request the controller answers with {"ok": false}: code for programs, text for
    people."""

    def __init__(self, code, text):
        super().__init__(text)
        self.code = code
        self.text = text


def div_round(num, den):
    """num / den rounded to the nearest integer, halves away from zero (integers only)."""
    if den < 0:
        num, den = -num, -den
    if num >= 0:
        return (2 * num + den) // (2 * den)
    return -((-2 * num + den) // (2 * den))


def sign24(raw):
    """The HX711's 24-bit two's complement reading as a signed int."""
    raw &= 0xFFFFFF
    return raw - 0x1000000 if raw & 0x800000 else raw


def count_delta(new, old):
    """Edges between two readings of a 32-bit counter that may have wrapped once."""
    return (new - old) % COUNTER_MOD


class Clock:
    """Milliseconds since the rig started, as an unbounded int, from a tick counter that
    wraps (MicroPython's ticks_ms wraps every 2**30 ms, 12.4 days). update() must be called
    more often than once a wrap; the loop does every GATE_MS."""

    def __init__(self, ticks, period):
        self.period = period
        self._last = ticks
        self.ms = 0

    def update(self, ticks):
        self.ms += (ticks - self._last) % self.period
        self._last = ticks
        return self.ms


def same_tone(a, b):
    return abs(a - b) * 100 <= SAME_TONE_PCT * max(a, b)


class Tones:
    """The buzzer as heard through gated edge counts: the frequency sounding now, and the
    tones heard since it last fell quiet (like the simulator's buzzer_tones). A reading
    counts as a tone only when the next gate agrees: a gate that spans a change of tone
    reads a frequency between the two, which no neighbour confirms."""

    def __init__(self):
        self.hz = 0
        self.heard = []
        self._prev = 0

    def feed(self, hz):
        if hz < QUIET_HZ:
            self.hz = 0
            self.heard = []
            self._prev = 0
            return
        self.hz = div_round(hz, TONE_ROUND_HZ) * TONE_ROUND_HZ
        prev = self._prev
        self._prev = hz
        if not prev or not same_tone(hz, prev):
            return
        tone = div_round(hz + prev, 2 * TONE_ROUND_HZ) * TONE_ROUND_HZ
        for t in self.heard:
            if same_tone(t, tone):
                return
        self.heard.append(tone)

    def skip(self):
        """A gate that cannot be trusted (too long): forget the reading to pair with."""
        self._prev = 0


class Scale:
    """The load cell under the collection vessel: a window of HX711 readings, averaged, and
    the tare and calibration that turn counts into nanolitres of drug solution."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.readings = []
        self.last_ms = None  # when the last reading came

    def add(self, counts, now_ms):
        r = self.readings
        r.append(counts)
        while len(r) > self.cfg["window"]:
            r.pop(0)
        self.last_ms = now_ms

    def check(self, now_ms):
        if self.last_ms is None or not self.readings:
            raise Refused("hardware", "no reading from the load cell's HX711 yet")
        if now_ms - self.last_ms > HX711_STALE_MS:
            raise Refused("hardware", f"no reading from the load cell's HX711 for "
                          f"{now_ms - self.last_ms} ms (check its DOUT and PD_SCK wires)")

    def full(self):
        return len(self.readings) >= self.cfg["window"]

    def average(self):
        return div_round(sum(self.readings), len(self.readings))

    def spread(self):
        return max(self.readings) - min(self.readings)

    def calibrated(self):
        c = self.cfg
        return c["tare"] is not None and bool(c["cal_counts"]) and bool(c["cal_mg"])

    def nl(self):
        """The volume on the scale since the tare, in nL: counts -> mg (calibration) ->
        uL (density). From the sum of the window, so the average loses no resolution."""
        c = self.cfg
        n = len(self.readings)
        num = (sum(self.readings) - c["tare"] * n) * c["cal_mg"] * 1_000_000
        return div_round(num, c["cal_counts"] * c["density_ug_per_ul"] * n)

    def nl_per_count_x1000(self):
        c = self.cfg
        return abs(div_round(c["cal_mg"] * 1_000_000_000,
                             c["cal_counts"] * c["density_ug_per_ul"]))

    def tolerance_nl(self):
        """How far delivered_nl may be from the truth: the noise seen at the tare plus a
        count of quantisation on each of the two readings (tare, now), in nL, plus the
        configured allowance."""
        c = self.cfg
        counts = c["noise_counts"] + 2
        return -(-counts * self.nl_per_count_x1000() // 1000) + c["tolerance_nl"]


def _want_bool(req, key):
    v = req.get(key)
    if type(v) is not bool:
        raise Refused("bad_request", f"{key} must be true or false")
    return v


def _want_int(req, key, lo, hi, optional=False):
    v = req.get(key)
    if v is None and optional:
        return None
    if type(v) is not int:
        raise Refused("bad_request", f"{key} must be an integer")
    if v < lo or v > hi:
        raise Refused("bad_request", f"{key} must be within {lo}..{hi}, not {v}")
    return v


SETTABLE = ("density_ug_per_ul", "window", "tolerance_nl", "battery_mv", "dac_vref_mv",
            "without")


def check_setting(key, v):
    """A rig.json value as it must be, or Refused."""
    if key in CONFIG_LIMITS:
        lo, hi = CONFIG_LIMITS[key]
        return _want_int({key: v}, key, lo, hi)
    if key == "without":
        if type(v) is not list or [c for c in v if c not in ALL_CAPABILITIES]:
            raise Refused("bad_request", "without is a list of: " + ", ".join(ALL_CAPABILITIES))
        return v
    if key == "noise_counts":
        return _want_int({key: v}, key, 0, 1 << 24)
    if key == "cal_mg":
        return _want_int({key: v}, key, 1, MAX_CAL_MG, optional=True)
    if key == "cal_counts" and v == 0:
        raise Refused("bad_request", "cal_counts must not be 0")
    # tare, cal_counts, cal_mg: set by tare and calibrate; None until then
    return _want_int({key: v}, key, -(1 << 24), 1 << 24, optional=True)


class Controller:
    def __init__(self, board):
        self.board = board
        self.cfg = dict(DEFAULTS)
        self.config_error = None
        self._load_config()
        self.clock = Clock(board.ticks_ms(), board.TICKS_PERIOD)
        self.tones = Tones()
        self.scale = Scale(self.cfg)
        fwd, back, buzz = board.counters()
        self._raw = [fwd, back, buzz]
        self.totals = [0, 0]  # step pulses with DIR at deliver, and drawn back
        self._gate_us = board.ticks_us()
        self._gate_edges = buzz
        self.needles = {"septum": False, "cap": False}
        self.occluded = False
        self.powered = True
        self.battery_set = None  # mv a test set; None: the nominal battery (cfg)
        self.resets = 0  # RUN pulses given while the pump was powered
        self.power_cycles = 0  # supply restored after a cut
        # Start from the rig's resting state whatever the pins did before (fail-safe wiring
        # keeps the pump powered and the catheter open while the rig boots).
        for port in PORTS:
            board.set_needle(port, False)
        board.set_pinch(False)
        board.set_power(True)
        try:
            self._apply_battery()
        except Refused as e:  # a nominal battery over the DAC's range: say so in hello
            self.config_error = e.text
        self.commands = {
            "hello": self.cmd_hello, "now": self.cmd_now, "measure": self.cmd_measure,
            "needle": self.cmd_needle, "occlude": self.cmd_occlude,
            "battery": self.cmd_battery, "power": self.cmd_power, "reset": self.cmd_reset,
            "boot": self.cmd_boot, "tare": self.cmd_tare, "calibrate": self.cmd_calibrate,
            "config": self.cmd_config, "scale": self.cmd_scale, "rest": self.cmd_rest,
        }

    # -- configuration (rig.json) ------------------------------------------------------------

    def _load_config(self):
        text = self.board.load_config()
        if text is None:
            return
        try:
            saved = json.loads(text)
            if type(saved) is not dict:
                raise ValueError("not an object")
        except Exception as e:  # a damaged file: run uncalibrated, and say so in hello
            self.config_error = f"rig.json unreadable ({e}): defaults in use"
            return
        bad = []
        for key in DEFAULTS:
            if key not in saved:
                continue
            try:
                self.cfg[key] = check_setting(key, saved[key])
            except Refused as e:  # keep the default for this one, and say so in hello
                bad.append(e.text)
        if bad:
            self.config_error = "rig.json: " + "; ".join(bad) + " (defaults in use)"

    def _save_config(self):
        self.board.save_config(json.dumps(self.cfg))
        self.config_error = None

    # -- the loop's periodic work ----------------------------------------------------------

    def now(self):
        return self.clock.update(self.board.ticks_ms())

    def poll(self):
        """Keep the clock, the counters and the scale up to date; close the buzzer's gate
        when it is due. Returns the ms until the next gate (what the loop may sleep)."""
        board = self.board
        now = self.now()
        if board.has_hx711:
            raw = board.hx711_read()
            if raw >= 0:
                self.scale.add(sign24(raw), now)
        self._read_counters()
        t = board.ticks_us()
        elapsed = (t - self._gate_us) % board.TICKS_PERIOD
        if elapsed >= GATE_US:
            edges = count_delta(self._raw[2], self._gate_edges)
            if elapsed > MAX_GATE_US:
                self.tones.skip()
            else:
                self.tones.feed(div_round(edges * 1_000_000, elapsed))
            self._gate_us = t
            self._gate_edges = self._raw[2]
            elapsed = 0
        return (GATE_US - elapsed + 999) // 1000

    def _read_counters(self):
        raw = self.board.counters()
        for i in range(2):
            self.totals[i] += count_delta(raw[i], self._raw[i])
            self._raw[i] = raw[i]
        self._raw[2] = raw[2]

    # -- requests ----------------------------------------------------------------------------

    def handle_line(self, line):
        """One request line (bytes, no newline) -> one reply line (bytes, with newline)."""
        req_id = None
        try:
            try:
                req = json.loads(line.decode())
            except Exception:
                raise Refused("bad_json", f"not a JSON object: {bytes(line[:60])!r}") from None
            if type(req) is not dict:
                raise Refused("bad_json", "a request is a JSON object")
            req_id = req.get("id")
            reply = self.handle(req)
        except Refused as e:
            reply = {"ok": False, "code": e.code, "error": e.text}
        except Exception as e:  # a bug or a hardware fault: answer it, keep serving
            reply = {"ok": False, "code": "internal", "error": f"{type(e).__name__}: {e}"}
        if req_id is not None:
            reply["id"] = req_id
        return json.dumps(reply).encode() + b"\n"

    def handle(self, req):
        cmd = req.get("cmd")
        fn = self.commands.get(cmd) if type(cmd) is str else None
        if fn is None:
            raise Refused("unknown_command", f"unknown command {cmd!r} (commands: "
                          f"{', '.join(sorted(self.commands))})")
        reply = fn(req)
        reply["ok"] = True
        return reply

    def capabilities(self):
        board = self.board
        caps = []
        for cap in ALL_CAPABILITIES:
            if cap in self.cfg["without"]:
                continue
            if cap == "battery" and not board.has_dac:
                continue
            if cap == "delivered_volume" and not (board.has_hx711 and self.scale.calibrated()):
                continue
            caps.append(cap)
        return caps

    def _need(self, cap):
        if cap not in self.capabilities():
            raise Refused("unsupported", f"this rig has no {cap} (hello lists what it has)")

    def cmd_hello(self, req):
        board = self.board
        scale = self.scale
        return {
            "rig": RIG_NAME, "version": VERSION, "capabilities": self.capabilities(),
            "uid": board.uid(), "now_ms": self.now(),
            "hardware": {"dac": bool(board.has_dac), "hx711": bool(board.has_hx711)},
            "calibrated": scale.calibrated(),
            "delivered_tolerance_nl": scale.tolerance_nl() if scale.calibrated() else None,
            "config_error": self.config_error,
        }

    def cmd_now(self, req):
        return {"now_ms": self.now()}

    def cmd_measure(self, req):
        now = self.now()
        self._read_counters()
        refill, cap = self.board.valves()
        reply = {
            "now_ms": now,
            "steps": self.totals[0], "steps_back": self.totals[1],
            "refill_valve": 1 if refill else 0, "cap_valve": 1 if cap else 0,
            "buzzer_hz": self.tones.hz, "buzzer_tones": sorted(self.tones.heard),
            "needle_septum": self.needles["septum"], "needle_cap": self.needles["cap"],
            "occluded": self.occluded, "power": self.powered,
            "battery_mv": self._battery_mv(),
        }
        if "delivered_volume" in self.capabilities():
            self.scale.check(now)
            reply["delivered_nl"] = self.scale.nl()
        return reply

    def cmd_needle(self, req):
        self._need("needles")
        port = req.get("port")
        if port not in PORTS:
            raise Refused("bad_request", f"port is septum or cap, not {port!r}")
        inserted = _want_bool(req, "inserted")
        self.board.set_needle(port, inserted)
        self.needles[port] = inserted
        return {}

    def cmd_occlude(self, req):
        self._need("occlusion")
        blocked = _want_bool(req, "blocked")
        self.board.set_pinch(blocked)
        self.occluded = blocked
        return {}

    def _battery_mv(self):
        return self.cfg["battery_mv"] if self.battery_set is None else self.battery_set

    def dac_code(self, mv):
        """The MCP4725 drives the pump's ADC pin (the divider's top is unlinked from the
        battery): the pin must see mv / divider."""
        code = div_round(mv * (DAC_MAX + 1), PUMP_BATTERY_DIVIDER * self.cfg["dac_vref_mv"])
        if code > DAC_MAX:
            top = DAC_MAX * PUMP_BATTERY_DIVIDER * self.cfg["dac_vref_mv"] // (DAC_MAX + 1)
            raise Refused("bad_request", f"{mv} mV is over the DAC's full scale ({top} mV)")
        return code

    def _apply_battery(self, persist=False):
        board = self.board
        if not board.has_dac:
            return
        if self.powered:
            board.dac_write(self.dac_code(self._battery_mv()), persist)
        else:  # an unpowered RP2040 must not be fed through its ADC pin's protection diodes
            board.dac_off()

    def cmd_battery(self, req):
        self._need("battery")
        mv = _want_int(req, "mv", 0, MAX_BATTERY_MV, optional=True)
        if mv is not None:
            self.dac_code(mv)  # refuse before changing anything
        self.battery_set = mv
        self._apply_battery()
        return {"battery_mv": self._battery_mv()}

    def cmd_power(self, req):
        self._need("power")
        on = _want_bool(req, "on")
        board = self.board
        if on == self.powered:
            return {"power": on}
        if on:
            board.set_power(True)
            self.powered = True
            self.power_cycles += 1
            self._apply_battery()
        else:
            self.powered = False
            self._apply_battery()  # the DAC goes quiet before the supply does
            board.set_power(False)
        return {"power": on}

    def cmd_reset(self, req):
        self._need("reset")
        ms = _want_int(req, "ms", 1, MAX_PULSE_MS, optional=True) or 20
        self.board.pulse_run(ms)
        if self.powered:
            self.resets += 1
        return {"ms": ms}

    def cmd_rest(self, req):
        """Everything back as at start-up: no needle, catheter open, the nominal battery,
        pump powered (a rig outlives its tests; each should start from rest)."""
        board = self.board
        for port in PORTS:
            board.set_needle(port, False)
            self.needles[port] = False
        board.set_pinch(False)
        self.occluded = False
        self.battery_set = None
        if not self.powered:
            board.set_power(True)
            self.powered = True
            self.power_cycles += 1
        self._apply_battery()
        return {}

    def cmd_boot(self, req):
        # Boots the rig caused; a watchdog reset inside the pump is invisible from here.
        return {"boots": self.resets + self.power_cycles, "resets": self.resets,
                "power_cycles": self.power_cycles, "reset_cause": None}

    def _settled_scale(self):
        if not self.board.has_hx711:
            raise Refused("unsupported", "no HX711 found at start-up (check its wiring)")
        scale = self.scale
        scale.check(self.now())
        if not scale.full():
            raise Refused("not_ready", f"{len(scale.readings)} of {self.cfg['window']} "
                          "readings since start-up: try again in a second")
        return scale

    def cmd_tare(self, req):
        """The empty vessel (or whatever is on the scale now) is zero from here on."""
        scale = self._settled_scale()
        self.cfg["tare"] = scale.average()
        self.cfg["noise_counts"] = scale.spread()
        self._save_config()
        return self._scale_report()

    def cmd_calibrate(self, req):
        """A known mass (mg) is on the tared scale: the counts it adds set the scale."""
        mg = _want_int(req, "mg", 1, MAX_CAL_MG)
        scale = self._settled_scale()
        if self.cfg["tare"] is None:
            raise Refused("not_calibrated", "tare first, with the vessel empty")
        counts = scale.average() - self.cfg["tare"]
        if abs(counts) < MIN_CAL_COUNTS:
            raise Refused("bad_request", f"{mg} mg moved the reading by {counts} counts "
                          "only: is the mass on the scale, the load cell wired?")
        self.cfg["cal_counts"] = counts
        self.cfg["cal_mg"] = mg
        self._save_config()
        return self._scale_report()

    def _scale_report(self):
        scale = self.scale
        c = self.cfg
        out = {"tare": c["tare"], "noise_counts": c["noise_counts"],
               "cal_counts": c["cal_counts"], "cal_mg": c["cal_mg"],
               "density_ug_per_ul": c["density_ug_per_ul"], "calibrated": scale.calibrated(),
               "readings": len(scale.readings)}
        if scale.readings:
            out["counts"] = scale.average()
            out["spread"] = scale.spread()
        if scale.calibrated():
            out["delivered_tolerance_nl"] = scale.tolerance_nl()
            out["nl_per_count_x1000"] = scale.nl_per_count_x1000()
            if scale.readings:
                out["delivered_nl"] = scale.nl()
        return out

    def cmd_scale(self, req):
        """The load cell's raw state, for calibrating and for checking the wiring."""
        return self._scale_report()

    def cmd_config(self, req):
        new = dict(self.cfg)
        for key in SETTABLE:
            if key in req:
                new[key] = check_setting(key, req[key])
        old = self.cfg
        self.cfg = new
        self.scale.cfg = new
        try:
            if self.board.has_dac and (new["battery_mv"] != old["battery_mv"]
                                       or new["dac_vref_mv"] != old["dac_vref_mv"]):
                code = self.dac_code(new["battery_mv"])
                # The DAC's EEPROM keeps the nominal battery for its next power-up: the pump
                # reads a sane voltage even before the rig's firmware runs.
                self.board.dac_write(code, True)
                self._apply_battery()
        except Refused:
            self.cfg = old
            self.scale.cfg = old
            raise
        while len(self.scale.readings) > new["window"]:
            self.scale.readings.pop(0)
        self._save_config()
        out = dict(new)
        out["capabilities"] = self.capabilities()
        return out


def serve(ctl, link, running=None):
    """The event loop: answer each request line as it completes; between them, sleep until
    the next gate (ctl.poll says when) or the next input byte. Ctrl-C (a KeyboardInterrupt,
    not an Exception) ends it: the REPL is back for mpremote. running: a callable that
    returns False to stop (tests)."""
    buf = bytearray(MAX_LINE)
    n = 0
    overflow = False
    while running is None or running():
        try:
            timeout = ctl.poll()
        except Exception:  # a hardware fault: the requests that touch it will report it
            timeout = GATE_MS
        if not link.wait(timeout):
            continue
        while True:
            b = link.read_byte()
            if b < 0:
                break
            if b == 0:  # a framing byte from a probe: whatever came before is not a line
                n = 0
                overflow = False
            elif b == 10:
                if overflow:
                    link.write(json.dumps({
                        "ok": False, "code": "line_too_long",
                        "error": f"a request line is at most {MAX_LINE} bytes",
                    }).encode() + b"\n")
                elif n:
                    link.write(ctl.handle_line(bytes(buf[:n])))
                n = 0
                overflow = False
            elif b == 13:
                pass
            elif n < MAX_LINE:
                buf[n] = b
                n += 1
            else:
                overflow = True
