# The rig controller's core (hil/rigctl/core.py) behind a fake board: every command, bad
# input (a typed error line, and the controller keeps serving), the clock across a tick wrap,
# the 32-bit edge counters across theirs, the buzzer's tones, the battery DAC's arithmetic and
# the load cell's calibration. Plain test functions: they run on CPython (pytest) and on the
# MicroPython VM (tests/rig/test_rigctl_micropython.py).

import json

from rigfake import TICKS_PERIOD, FakeBoard, FakeLink, run

from hil.rigctl import core

CALIBRATED = json.dumps({"tare": 1000, "noise_counts": 6, "cal_counts": 200000,
                         "cal_mg": 10000})  # 20 counts per mg


def call(ctl, **req):
    reply = json.loads(ctl.handle_line(json.dumps(req).encode()))
    assert reply["ok"] is True, reply
    return reply


def refused(ctl, line, code):
    """Send a raw line; the reply must be a refusal with this code. Returns its text."""
    raw = ctl.handle_line(line if isinstance(line, bytes) else json.dumps(line).encode())
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1, raw
    reply = json.loads(raw)
    assert reply["ok"] is False, reply
    assert reply["code"] == code, reply
    assert reply["error"], reply
    return reply["error"]


def rig(**kw):
    return core.Controller(FakeBoard(**kw))


def calibrated_rig(load=1000, **kw):
    ctl = rig(config=CALIBRATED, **kw)
    ctl.board.load = load
    run(ctl, 1000)  # the window fills
    return ctl


# -- small arithmetic ---------------------------------------------------------------------


def test_div_round_rounds_halves_away_from_zero():
    assert core.div_round(7, 2) == 4
    assert core.div_round(-7, 2) == -4
    assert core.div_round(5, 3) == 2
    assert core.div_round(-5, 3) == -2
    assert core.div_round(4, 3) == 1
    assert core.div_round(5, -3) == -2
    assert core.div_round(0, 9) == 0
    assert core.div_round(10**20 + 1, 2) == 5 * 10**19 + 1  # no float anywhere


def test_sign24_reads_twos_complement():
    assert core.sign24(0) == 0
    assert core.sign24(0x7FFFFF) == 8388607
    assert core.sign24(0x800000) == -8388608
    assert core.sign24(0xFFFFFF) == -1
    assert core.sign24(-5 & 0xFFFFFF) == -5


def test_count_delta_across_the_32_bit_wrap():
    assert core.count_delta(5, 3) == 2
    assert core.count_delta(2, 0xFFFFFFFE) == 4
    assert core.count_delta(7, 7) == 0


# -- hello, now, ids --------------------------------------------------------------------------


def test_hello_names_the_rig_and_what_it_can_do():
    ctl = calibrated_rig()
    r = call(ctl, cmd="hello")
    assert r["rig"] == "intrapump-rig" and r["version"] == 1
    assert r["capabilities"] == sorted(core.ALL_CAPABILITIES)
    for never in ("time_control", "hang", "flash_cut", "plant_model"):
        assert never not in r["capabilities"]
    assert r["hardware"] == {"dac": True, "hx711": True}
    assert r["calibrated"] is True
    assert r["delivered_tolerance_nl"] == ctl.scale.tolerance_nl() > 0
    assert r["uid"] and r["config_error"] is None


def test_capabilities_follow_the_hardware_and_the_calibration():
    caps = call(rig(), cmd="hello")["capabilities"]  # no rig.json: not calibrated
    assert "delivered_volume" not in caps and "battery" in caps
    r = call(rig(has_dac=False, has_hx711=False, config=CALIBRATED), cmd="hello")
    assert "battery" not in r["capabilities"] and "delivered_volume" not in r["capabilities"]
    assert r["hardware"] == {"dac": False, "hx711": False}
    assert r["delivered_tolerance_nl"] is not None  # calibrated, the load cell missing
    assert "steps" in r["capabilities"] and "needles" in r["capabilities"]


def test_the_reply_echoes_the_request_id():
    ctl = rig()
    assert call(ctl, cmd="now", id=41)["id"] == 41
    assert "id" not in call(ctl, cmd="now")
    reply = json.loads(ctl.handle_line(b'{"cmd": "nope", "id": "x"}'))
    assert reply["id"] == "x" and reply["ok"] is False


def test_now_counts_ms_since_the_rig_started():
    ctl = rig(ms=123_456)
    assert call(ctl, cmd="now")["now_ms"] == 0
    ctl.board.ms += 2500
    assert call(ctl, cmd="now")["now_ms"] == 2500


# -- time across the tick wrap --------------------------------------------------------------


def test_clock_runs_on_across_the_tick_wrap():
    c = core.Clock(TICKS_PERIOD - 10, TICKS_PERIOD)
    assert c.update(TICKS_PERIOD - 4) == 6
    assert c.update(5) == 15  # wrapped
    assert c.update(5) == 15
    assert c.update(TICKS_PERIOD // 2) == 15 + TICKS_PERIOD // 2 - 5


def test_now_passes_several_wraps_of_ticks_ms():
    start = TICKS_PERIOD - 1000
    ctl = rig(ms=start)
    day = 86_400_000
    for _ in range(40):  # 40 days: more than three wraps of 2**30 ms
        run(ctl, day, gate=day // 4)
    assert ctl.board.ticks_ms() != ctl.board.ms  # the ticks did wrap
    assert call(ctl, cmd="now")["now_ms"] == 40 * day
    assert call(ctl, cmd="now")["now_ms"] > 3 * TICKS_PERIOD


# -- measure: steps, valves, what the rig does ----------------------------------------------


def test_measure_counts_steps_by_direction_and_reads_the_valves():
    ctl = rig()
    b = ctl.board
    b.fwd += 40
    b.back += 8
    b.refill, b.cap = 0, 1
    m = call(ctl, cmd="measure")
    assert (m["steps"], m["steps_back"]) == (40, 8)
    assert (m["refill_valve"], m["cap_valve"]) == (0, 1)
    assert m["buzzer_hz"] == 0 and m["buzzer_tones"] == []
    assert m["needle_septum"] is False and m["occluded"] is False and m["power"] is True
    assert m["battery_mv"] == 3900
    assert "delivered_nl" not in m  # not calibrated: no delivered_volume


def test_steps_count_on_across_the_pio_counters_wrap():
    ctl = rig()
    b = ctl.board
    b.fwd = 0xFFFFFFF0  # as if the rig had booted with the counter there
    ctl = core.Controller(b)
    b.fwd += 0x20  # past 2**32
    run(ctl, 100)
    b.fwd += 3
    assert call(ctl, cmd="measure")["steps"] == 0x23


def test_needles_occlusion_and_their_readback():
    ctl = rig()
    b = ctl.board
    call(ctl, cmd="needle", port="cap", inserted=True)
    assert b.needles == {"septum": False, "cap": True}
    call(ctl, cmd="needle", port="septum", inserted=True)
    call(ctl, cmd="needle", port="cap", inserted=False)
    assert b.needles == {"septum": True, "cap": False}
    call(ctl, cmd="occlude", blocked=True)
    assert b.pinch is True
    m = call(ctl, cmd="measure")
    assert (m["needle_septum"], m["needle_cap"], m["occluded"]) == (True, False, True)
    call(ctl, cmd="occlude", blocked=False)
    assert b.pinch is False


def test_the_rig_starts_at_rest_whatever_the_pins_did():
    b = FakeBoard()
    b.needles["cap"] = True
    b.pinch = True
    b.powered = False
    core.Controller(b)
    assert b.needles == {"septum": False, "cap": False}
    assert b.pinch is False and b.powered is True
    assert b.dac == 2420  # the nominal 3.9 V battery


# -- power, reset, boot -----------------------------------------------------------------------


def test_power_cut_and_restore_count_a_boot_and_keep_the_dac_off_meanwhile():
    ctl = rig()
    b = ctl.board
    call(ctl, cmd="battery", mv=3400)
    assert call(ctl, cmd="power", on=False)["power"] is False
    assert b.powered is False and b.dac_is_off  # no current into an unpowered ADC pin
    assert call(ctl, cmd="measure")["power"] is False
    assert call(ctl, cmd="boot")["boots"] == 0
    call(ctl, cmd="power", on=False)  # already off: nothing changes
    call(ctl, cmd="power", on=True)
    assert b.powered is True and not b.dac_is_off and b.dac == ctl.dac_code(3400)
    boot = call(ctl, cmd="boot")
    assert (boot["boots"], boot["power_cycles"], boot["resets"]) == (1, 1, 0)
    assert boot["reset_cause"] is None
    call(ctl, cmd="power", on=True)  # already on: no boot
    assert call(ctl, cmd="boot")["boots"] == 1


def test_reset_pulses_run_and_counts_a_boot_only_when_powered():
    ctl = rig()
    b = ctl.board
    assert call(ctl, cmd="reset")["ms"] == 20
    call(ctl, cmd="reset", ms=100)
    assert b.run_pulses == [20, 100]
    call(ctl, cmd="power", on=False)
    call(ctl, cmd="reset")
    boot = call(ctl, cmd="boot")
    assert (boot["boots"], boot["resets"]) == (2, 2)


def test_rest_puts_everything_back_as_at_start_up():
    ctl = rig()
    b = ctl.board
    call(ctl, cmd="needle", port="cap", inserted=True)
    call(ctl, cmd="occlude", blocked=True)
    call(ctl, cmd="battery", mv=3200)
    call(ctl, cmd="power", on=False)
    call(ctl, cmd="rest")
    assert b.needles == {"septum": False, "cap": False} and b.pinch is False
    assert b.powered is True and b.dac == 2420 and not b.dac_is_off
    m = call(ctl, cmd="measure")
    assert (m["needle_cap"], m["occluded"], m["power"], m["battery_mv"]) == (
        False, False, True, 3900)
    assert call(ctl, cmd="boot")["power_cycles"] == 1
    call(ctl, cmd="rest")  # at rest already: nothing more
    assert call(ctl, cmd="boot")["power_cycles"] == 1


# -- battery (the MCP4725) -----------------------------------------------------------------


def test_battery_sets_the_dac_through_the_pumps_divider():
    ctl = rig()
    b = ctl.board
    # 3.4 V at the battery is 1.7 V at the pump's pin: 1700 / 3300 of 4096
    assert call(ctl, cmd="battery", mv=3400)["battery_mv"] == 3400
    assert b.dac == core.div_round(1700 * 4096, 3300) == 2110
    # what the pump then reads (firmware/board.py: raw * 3300 * 2 // 65535, 16-bit scaled)
    code = b.dac
    assert code is not None
    pump_mv = (code * 16) * 3300 * 2 // 65535
    assert abs(pump_mv - 3400) <= 2
    call(ctl, cmd="battery", mv=0)
    assert b.dac == 0
    call(ctl, cmd="battery", mv=None)  # back to the nominal battery
    assert b.dac == 2420 and call(ctl, cmd="measure")["battery_mv"] == 3900
    call(ctl, cmd="battery")  # mv left out: the same
    assert b.dac == 2420


def test_battery_refuses_what_the_dac_cannot_make():
    ctl = rig()
    text = refused(ctl, {"cmd": "battery", "mv": 6700}, "bad_request")
    assert "full scale" in text
    assert ctl.board.dac == 2420  # unchanged
    refused(ctl, {"cmd": "battery", "mv": -1}, "bad_request")
    refused(ctl, {"cmd": "battery", "mv": "3400"}, "bad_request")
    refused(ctl, {"cmd": "battery", "mv": True}, "bad_request")
    refused(rig(has_dac=False), {"cmd": "battery", "mv": 3400}, "unsupported")


def test_config_trims_the_dac_and_keeps_the_nominal_battery_in_its_eeprom():
    ctl = rig()
    b = ctl.board
    r = call(ctl, cmd="config", battery_mv=4000, dac_vref_mv=3250)
    assert r["battery_mv"] == 4000 and "battery" in r["capabilities"]
    code = core.div_round(2000 * 4096, 3250)
    assert b.dac == b.dac_eeprom == code
    assert json.loads(b.config_text or "")["battery_mv"] == 4000
    refused(ctl, {"cmd": "config", "dac_vref_mv": 2500, "battery_mv": 5500}, "bad_request")
    assert ctl.cfg["battery_mv"] == 4000 and ctl.cfg["dac_vref_mv"] == 3250  # unchanged


# -- the buzzer's tones ---------------------------------------------------------------------


def test_a_single_tone_is_heard_and_cleared_when_quiet():
    ctl = rig()
    run(ctl, 1000, buzzer_hz=2000)
    m = call(ctl, cmd="measure")
    assert m["buzzer_hz"] == 2000 and m["buzzer_tones"] == [2000]
    run(ctl, 100)
    m = call(ctl, cmd="measure")
    assert m["buzzer_hz"] == 0 and m["buzzer_tones"] == []


def test_alternating_tones_are_two_and_a_gate_across_a_change_is_none():
    ctl = rig()
    # 2.0 / 2.8 kHz every 250 ms (firmware/board.py Buzzer), started off the gate's phase,
    # with the counts in ms steps so that gates span the changes
    run(ctl, 17)
    for _ in range(8):
        run(ctl, 250, buzzer_hz=2000, gate=1)
        run(ctl, 250, buzzer_hz=2800, gate=1)
    m = call(ctl, cmd="measure")
    assert m["buzzer_tones"] == [2000, 2800], m
    assert m["buzzer_hz"] in (2000, 2800)


def test_tones_a_little_off_are_one_tone():
    t = core.Tones()
    for hz in (1990, 2010, 2000, 1980, 2020):
        t.feed(hz)
    assert t.heard == [2000]
    t.feed(3000)
    assert t.heard == [2000]  # not confirmed by a second reading
    t.feed(50)
    assert t.heard == [] and t.hz == 0


def test_a_gate_the_loop_overran_is_not_a_tone():
    ctl = rig()
    run(ctl, 1000, buzzer_hz=2000)
    for _ in range(3):  # three long gates of a mixed signal: they would agree on 2.4 kHz
        run(ctl, 400, buzzer_hz=2400, gate=400)
    assert call(ctl, cmd="measure")["buzzer_tones"] == [2000]


def test_poll_says_how_long_the_loop_may_sleep():
    ctl = rig()
    assert ctl.poll() == core.GATE_MS
    ctl.board.ms += 20
    assert ctl.poll() == core.GATE_MS - 20
    ctl.board.ms += 30
    assert ctl.poll() == core.GATE_MS  # the gate closed, a new one started


# -- the load cell ----------------------------------------------------------------------------


def test_delivered_volume_from_the_load_cell():
    ctl = calibrated_rig(load=1000)  # the tare: nothing delivered
    assert call(ctl, cmd="measure")["delivered_nl"] == 0
    # 20 counts per mg, 1.000 mg/uL: 1 count is 50 nL; 250 uL is 5000 counts
    ctl.board.load = 1000 + 5000
    run(ctl, 1000)
    assert call(ctl, cmd="measure")["delivered_nl"] == 250_000
    call(ctl, cmd="config", density_ug_per_ul=1250)  # a denser solution: less volume
    assert call(ctl, cmd="measure")["delivered_nl"] == 200_000


def test_delivered_volume_keeps_the_resolution_of_the_average():
    ctl = calibrated_rig(load=1000)
    ctl.board.load = None
    ctl.board.hx_queue = [1001, 1002, 1001, 1002, 1001, 1002, 1001, 1002]
    run(ctl, 400)  # eight polls, eight readings: the average is 1001.5 counts
    assert call(ctl, cmd="measure")["delivered_nl"] == 75  # 1.5 counts x 50 nL


def test_negative_counts_and_a_load_cell_wired_the_other_way():
    ctl = rig(config=json.dumps({"tare": -500, "cal_counts": -20000, "cal_mg": 1000}))
    ctl.board.load = -500 - 2000
    run(ctl, 1000)
    assert call(ctl, cmd="measure")["delivered_nl"] == 100_000  # 2000 counts of 50 nL


def test_tolerance_is_the_noise_and_quantisation_in_nl():
    ctl = calibrated_rig()
    # noise 6 counts + 2 of quantisation = 8 counts of 50 nL
    assert ctl.scale.tolerance_nl() == 400
    call(ctl, cmd="config", tolerance_nl=1000)
    assert call(ctl, cmd="hello")["delivered_tolerance_nl"] == 1400


def test_tare_then_calibrate_with_a_known_mass_and_save():
    ctl = rig()
    b = ctl.board
    b.load = None
    b.hx_queue = [8000, 8004, 8002, 8002, 8001, 8003, 8000, 8004]
    run(ctl, 400)
    r = call(ctl, cmd="tare")
    assert r["tare"] == 8002 and r["noise_counts"] == 4 and r["calibrated"] is False
    b.load = 8002 + 428_000  # a 20 g mass: 21.4 counts per mg
    run(ctl, 1000)
    r = call(ctl, cmd="calibrate", mg=20_000)
    assert r["cal_counts"] == 428_000 and r["cal_mg"] == 20_000 and r["calibrated"] is True
    assert r["delivered_nl"] == 20_000_000  # 20 g of a 1.000 mg/uL solution
    assert "delivered_volume" in call(ctl, cmd="hello")["capabilities"]
    saved = json.loads(b.config_text or "")
    assert (saved["tare"], saved["cal_counts"], saved["cal_mg"]) == (8002, 428_000, 20_000)
    again = core.Controller(b)  # the rig restarts: the calibration is read back
    assert again.scale.calibrated() and again.cfg["noise_counts"] == 4
    b.load = 8002 + 21_400  # 1 g
    run(again, 1000)
    assert call(again, cmd="measure")["delivered_nl"] == 1_000_000


def test_calibration_refusals():
    ctl = rig()
    b = ctl.board
    b.load = 100
    run(ctl, 100)
    assert "readings" in refused(ctl, {"cmd": "tare"}, "not_ready")
    run(ctl, 1000)
    refused(ctl, {"cmd": "calibrate", "mg": 1000}, "not_calibrated")  # no tare yet
    call(ctl, cmd="tare")
    b.load = 150  # the mass moved it 50 counts: nothing on the scale
    run(ctl, 1000)
    assert "counts only" in refused(ctl, {"cmd": "calibrate", "mg": 1000}, "bad_request")
    refused(ctl, {"cmd": "calibrate", "mg": 0}, "bad_request")
    refused(ctl, {"cmd": "calibrate"}, "bad_request")
    refused(rig(has_hx711=False), {"cmd": "tare"}, "unsupported")


def test_a_silent_hx711_is_a_hardware_error_not_a_stale_volume():
    ctl = calibrated_rig()
    ctl.board.load = None
    run(ctl, core.HX711_STALE_MS + 100)
    text = refused(ctl, {"cmd": "measure"}, "hardware")
    assert "HX711" in text
    ctl.board.load = 1000
    run(ctl, 100)
    assert call(ctl, cmd="measure")["delivered_nl"] == 0  # it came back


def test_scale_reports_the_raw_state():
    ctl = calibrated_rig(load=1500)
    r = call(ctl, cmd="scale")
    assert r["counts"] == 1500 and r["spread"] == 0 and r["readings"] == 8
    assert r["delivered_nl"] == 25_000 and r["nl_per_count_x1000"] == 50_000


# -- rig.json ---------------------------------------------------------------------------------


def test_a_damaged_rig_json_runs_on_defaults_and_says_so():
    ctl = rig(config="{not json")
    r = call(ctl, cmd="hello")
    assert "rig.json" in r["config_error"] and r["calibrated"] is False
    ctl = rig(config=json.dumps({"tare": 5, "window": 0, "density_ug_per_ul": "x",
                                 "cal_counts": 100, "cal_mg": 4}))
    r = call(ctl, cmd="hello")
    assert "window" in r["config_error"] and "density_ug_per_ul" in r["config_error"]
    assert ctl.cfg["window"] == 8 and ctl.cfg["density_ug_per_ul"] == 1000
    assert ctl.cfg["tare"] == 5 and r["calibrated"] is True
    call(ctl, cmd="config", window=4)  # a good save clears the complaint
    assert call(ctl, cmd="hello")["config_error"] is None


def test_config_without_drops_capabilities_a_rig_has_not_fitted():
    ctl = calibrated_rig()
    r = call(ctl, cmd="config", without=["occlusion", "power"])
    assert "occlusion" not in r["capabilities"] and "power" not in r["capabilities"]
    refused(ctl, {"cmd": "occlude", "blocked": True}, "unsupported")
    refused(ctl, {"cmd": "power", "on": False}, "unsupported")
    refused(ctl, {"cmd": "config", "without": ["time_control"]}, "bad_request")
    refused(ctl, {"cmd": "config", "without": "power"}, "bad_request")
    call(ctl, cmd="config", without=[])
    assert "occlusion" in call(ctl, cmd="hello")["capabilities"]


def test_config_window_shrinks_the_average():
    ctl = calibrated_rig()
    call(ctl, cmd="config", window=2)
    assert len(ctl.scale.readings) == 2
    refused(ctl, {"cmd": "config", "window": 0}, "bad_request")
    refused(ctl, {"cmd": "config", "density_ug_per_ul": 1.0}, "bad_request")


# -- bad input --------------------------------------------------------------------------------


def test_bad_requests_get_typed_errors_and_the_controller_goes_on():
    ctl = rig()
    refused(ctl, b"this is not json", "bad_json")
    refused(ctl, b"\xff\xfe{", "bad_json")
    refused(ctl, b"[1, 2]", "bad_json")
    refused(ctl, b'"hello"', "bad_json")
    refused(ctl, {"nocmd": 1}, "unknown_command")
    refused(ctl, {"cmd": 5}, "unknown_command")
    assert "commands:" in refused(ctl, {"cmd": "fly"}, "unknown_command")
    refused(ctl, {"cmd": "needle", "port": "arm", "inserted": True}, "bad_request")
    refused(ctl, {"cmd": "needle", "port": "cap", "inserted": "yes"}, "bad_request")
    refused(ctl, {"cmd": "needle", "port": "cap", "inserted": 1}, "bad_request")
    refused(ctl, {"cmd": "needle", "port": "cap"}, "bad_request")
    refused(ctl, {"cmd": "occlude"}, "bad_request")
    refused(ctl, {"cmd": "power", "on": None}, "bad_request")
    refused(ctl, {"cmd": "reset", "ms": 0}, "bad_request")
    refused(ctl, {"cmd": "reset", "ms": 10**6}, "bad_request")
    refused(ctl, {"cmd": "config", "tolerance_nl": -1}, "bad_request")
    assert ctl.board.needles == {"septum": False, "cap": False}  # nothing half-done
    assert ctl.board.run_pulses == []
    assert call(ctl, cmd="hello")["rig"] == "intrapump-rig"


def test_a_fault_inside_a_command_is_an_internal_error_and_the_next_one_works():
    ctl = rig()
    ctl.board.broken = OSError(5, "EIO")
    text = refused(ctl, {"cmd": "measure"}, "internal")
    assert "OSError" in text
    ctl.board.broken = None
    assert call(ctl, cmd="measure")["steps"] == 0


# -- the loop -------------------------------------------------------------------------------


def test_serve_answers_lines_split_and_joined_any_way():
    ctl = rig()
    link = FakeLink([b'{"cmd": "now", "id": 1}\r', b'\n{"cmd": "he', b'llo", "id": 2}\n\n\n',
                     b'{"cmd": "now", "id": 3}\n{"cmd": "now", "id": 4}\n'])
    core.serve(ctl, link, link.more)
    assert [r["id"] for r in link.replies()] == [1, 2, 3, 4]
    assert all(r["ok"] for r in link.replies())
    assert max(link.waits) <= core.GATE_MS and min(link.waits) >= 1


def test_serve_refuses_a_line_too_long_then_goes_on():
    ctl = rig()
    long = b'{"cmd": "now", "pad": "' + b"x" * core.MAX_LINE + b'"}\n'
    link = FakeLink([long, b"garbage\n", b'{"cmd": "now", "id": 9}\n'])
    core.serve(ctl, link, link.more)
    codes = [r.get("code") for r in link.replies()]
    assert codes == ["line_too_long", "bad_json", None]
    assert link.replies()[-1]["id"] == 9


def test_serve_drops_a_partial_line_at_a_zero_byte():
    ctl = rig()
    link = FakeLink([b'{"cmd": "no', b"\x00", b'{"cmd": "now", "id": 5}\n', b"\x00\x00"])
    core.serve(ctl, link, link.more)
    replies = link.replies()
    assert len(replies) == 1 and replies[0]["id"] == 5 and replies[0]["ok"]
