"""pumpctl log's exports and pumpctl plot: the series host/plot.py computes from synthetic
events (not the pixels), the PNG it writes, and both commands against the simulator."""

from __future__ import annotations

import csv
import json
import os
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from clikit import run, run_json

from hil.launcher import SimProcess
from hil.suites.kit import prepare
from host import cli
from host.cli.log import CSV_COLUMNS, read_events
from host.cli.plot import load_samples
from host.cli.ui import UsageError
from host.client import Event
from host.plot import DPI, HEIGHT_IN, WIDTH_IN, Sample, compute, integrate, render

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
EVENT_FIELDS = {"number", "time", "event", "role", "rule", "type", "a", "b", "c"}
PNG_SIZE = (round(WIDTH_IN * DPI), round(HEIGHT_IN * DPI))


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


class Log:
    """Synthetic log entries, numbered in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, hours: float, event: str, a: int = 0, b: int = 0, c: int = 0,
            type_: int = 0, role: str = "clinician") -> Log:
        self.events.append(Event(len(self.events), at(hours), event, role, None, type_, a, b,
                                 c))
        return self

    def started(self, dose_ng: int = 400_000, concentration: int = 500) -> Log:
        """Boot, a refill at `concentration`, and a continuous program from 1 h on."""
        return (self.add(0, "boot", 1, role="none")
                .add(0.5, "refill_begin").add(0.5, "refill_commit", 20_000_000, concentration)
                .add(1, "program", dose_ng, 0, 1))


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


# --- the series ----------------------------------------------------------------------------------


def test_programmed_dose_follows_the_log() -> None:
    log = Log().started()
    log.add(5, "suspend", 1).add(8, "resume", 1)
    log.add(10, "refill_begin", 18_000_000).add(10.5, "refill_commit", 20_000_000, 250, 18_000_000)
    log.add(11, "suspend", 1).add(11.5, "resume", 1)
    log.add(12, "stop", 3).add(14, "program", 480_000, 400_000, 1)
    log.add(15, "program", 500_000, 480_000, 2)  # a flex day: its daily total
    data = compute(log.events, [], at(-1), at(20))
    assert data.programmed == [
        (at(-1), 0.0), (at(1), 400.0),
        (at(5), 24.0),  # suspended: 48 uL/day at 500 mcg/mL
        (at(8), 400.0), (at(10), 0.0),  # a refill session holds the outlet
        (at(10.5), 400.0), (at(11), 12.0),  # the minimum rate at the new 250 mcg/mL
        (at(11.5), 400.0), (at(12), 0.0), (at(14), 480.0), (at(15), 500.0), (at(20), 500.0),
    ]
    assert [(s.kind, s.start, s.end) for s in data.spans] == [
        ("suspended", at(5), at(8)), ("refill", at(10), at(10.5)),
        ("suspended", at(11), at(11.5)), ("stopped", at(12), at(14)),
    ]
    assert data.programmed_at(at(9)) == 400.0 and data.programmed_at(at(13)) == 0.0
    assert data.programmed_total(at(1), at(5)) == pytest.approx(400 * 4 / 24)
    assert [k.kind for k in data.marks] == ["boot", "refill", "program", "suspend", "resume",
                                            "refill", "suspend", "resume", "stop", "program",
                                            "program"]
    assert data.marks[-1].text == "500 mcg/day (flex)"
    # A window that starts later begins in the state the earlier events left.
    later = compute(log.events, [], at(6), at(9))
    assert later.programmed == [(at(6), 24.0), (at(8), 400.0), (at(9), 400.0)]
    assert [(s.kind, s.start, s.end) for s in later.spans] == [("suspended", at(6), at(8))]


def test_suspended_low_program_keeps_its_own_rate() -> None:
    log = Log().started(dose_ng=10_000).add(2, "suspend", 1)
    data = compute(log.events, [], at(0), at(3))
    assert data.programmed_at(at(2.5)) == 10.0  # under the 24 mcg/day minimum rate


def test_alarm_spans() -> None:
    log = Log().started()
    log.add(2, "alarm", 1, 1, role="none").add(3, "alarm", 1, 0, role="none")  # low_reservoir
    log.add(4, "alarm", 6, 1, role="none")  # occlusion, still active
    log.add(5, "alarm", 3, 0, role="none")  # refill_due cleared: raised before the log holds
    log.add(6, "alarm", 11, 1, role="none").add(6.5, "alarm", 11, 0, role="none")
    data = compute(log.events, [], at(1), at(8))
    spans = [(a.alarm, a.level, a.start, a.end) for a in data.alarms]
    assert spans == [
        ("refill_due", 1, at(0), at(5)),  # from the first event the log holds
        ("low_reservoir", 1, at(2), at(3)),
        ("occlusion", 2, at(4), None),
        ("escalation", 0, at(6), at(6.5)),
    ]
    assert compute(log.events, [], at(7), at(8)).alarms[0].alarm == "occlusion"


def test_boluses_readings_and_rates() -> None:
    log = Log().started(dose_ng=480_000)
    # A 50 mcg bolus over 10 min at 3 h, cut short (a stop) at 5 min with 25 mcg given.
    log.add(3, "bolus", 50_000, 600, 100_000, type_=1)
    log.add(3 + 5 / 60, "bolus_done", 25_000, 25_000, type_=1, role="none")
    # The pump's readings: every 10 min from 2 h, exactly the program (and the bolus).
    samples, total = [], 1000.0
    for k in range(37):
        t = at(2 + k / 6)
        samples.append(Sample(t, total))
        total += 480 / 144 + (25 if k == 6 else 0)  # the bolus lands in 3:00-3:10
    data = compute(log.events, samples, at(0), at(8), bin_s=3600)
    assert [(b.kind, b.dose_mcg, b.delivered_mcg, b.end) for b in data.boluses] == [
        ("clinician", 50.0, 25.0, at(3 + 5 / 60))]
    assert data.delivered[0] == (at(2), 0.0)
    assert data.delivered[-1][1] == pytest.approx(480 * 6 / 24 + 25)
    assert data.expected[-1] == (at(8), pytest.approx(480 * 6 / 24 + 25))
    assert data.expected[6] == (at(3), pytest.approx(480 / 24))  # before the bolus
    assert data.expected[7] == (at(3 + 1 / 6), pytest.approx(480 * 7 / 144 + 25))
    assert [(lo, hi) for lo, hi, _ in data.delivered_rate] == [(at(h), at(h + 1))
                                                               for h in range(2, 8)]
    assert [r for _, _, r in data.delivered_rate] == pytest.approx(
        [480, 480 + 25 * 24, 480, 480, 480, 480])
    s = data.summary()
    assert (s["readings"], s["delivered_mcg"], s["expected_mcg"], s["difference_pct"]) == (
        37, 145.0, 145.0, 0.0)
    assert s["boluses"] == [{"kind": "clinician", "start": at(3).isoformat(), "dose_mcg": 50.0,
                             "delivered_mcg": 25.0}]
    # Automatic bins: at most 48 over the readings (6 h: a quarter of an hour).
    assert compute(log.events, samples, at(0), at(8)).bin_s == 900


def test_under_delivery_shows() -> None:
    log = Log().started()
    # at the programmed rate for 2 h, then at half of it (an occlusion building up)
    samples = [Sample(at(1 + h), 400 / 24 * (h if h <= 2 else 2 + (h - 2) / 2))
               for h in range(5)]
    data = compute(log.events, samples, at(0), at(6), bin_s=3600)
    s = data.summary()
    assert s["expected_mcg"] == pytest.approx(400 * 4 / 24, abs=1e-3)
    assert s["difference_pct"] == -25.0
    assert [r for _, _, r in data.delivered_rate] == pytest.approx([400, 400, 200, 200])
    # a total that goes back (another pump's readings, a reset) does not count as negative
    back = [Sample(at(1), 100.0), Sample(at(2), 110.0), Sample(at(3), 5.0), Sample(at(4), 15.0)]
    assert [v for _, v in compute(log.events, back, at(0), at(6)).delivered] == [0, 10, 10, 20]


def test_pump_off_and_taper() -> None:
    log = Log().started()
    log.add(6, "boot", 1, role="none").add(6, "restored", 3600, 1, 0, role="none")
    data = compute(log.events, [], at(0), at(8))
    assert (data.programmed_at(at(5.5)), data.programmed_at(at(6))) == (0.0, 400.0)
    assert ("off", at(5), at(6)) in [(s.kind, s.start, s.end) for s in data.spans]
    assert data.programmed_total(at(1), at(8)) == pytest.approx(400 * 6 / 24)
    log.add(7, "program", 200_000, 400_000, 4)  # a taper from 400 to 200 mcg/day
    data = compute(log.events, [Sample(at(6.5), 0), Sample(at(7.5), 8)], at(0), at(8))
    assert data.programmed_at(at(7.5)) is None  # each day's step is not in the log
    taper = [s for s in data.spans if s.kind == "taper"]
    assert [(s.start, s.end, s.doses) for s in taper] == [(at(7), at(8), (400.0, 200.0))]
    assert data.expected[-1][1] is None and data.summary()["difference_pct"] is None
    assert integrate(data.programmed, at(0), at(7)) == pytest.approx(400 * 5 / 24)


def test_render_writes_the_png(tmp_path: Path) -> None:
    log = Log().started()
    log.add(3, "bolus", 50_000, 600, 100_000, type_=1)
    log.add(3.2, "bolus_done", 50_000, 0, type_=1, role="none")
    log.add(4, "alarm", 1, 1, role="none").add(5, "suspend", 1).add(6, "resume", 1)
    log.add(6.5, "refused", 8, 600_000, 520_000, type_=0x31)
    log.add(7, "program", 200_000, 400_000, 4)
    samples = [Sample(at(1 + k / 4), 400 / 96 * k) for k in range(24)]
    for name, data in (("full.png", compute(log.events, samples, at(0), at(9))),
                       ("no-readings.png", compute(log.events, [], at(0), at(9))),
                       ("empty.png", compute([], [], at(0), at(9)))):
        path = tmp_path / name
        assert render(data, path, "title", "subtitle") == PNG_SIZE
        assert png_size(path) == PNG_SIZE and path.stat().st_size > 10_000


def test_readings_files(tmp_path: Path) -> None:
    lines = tmp_path / "watch.jsonl"
    lines.write_text(
        json.dumps({"clock": "2026-03-01T08:00:00+00:00", "delivered_mcg": "1.5", "mode": "x"})
        + "\n" + json.dumps({"error": {"type": "NoResponse", "message": "..."}}) + "\n\n"
        + json.dumps({"clock": "2026-03-01T09:00:00", "delivered_mcg": "18.25"}) + "\n")
    assert load_samples(lines) == [Sample(at(0), 1.5), Sample(at(1), 18.25)]
    table = tmp_path / "readings.csv"
    table.write_text("time,delivered_mcg\n2026-03-01T08:00:00Z,0\n2026-03-01T10:00Z,33.3\n")
    assert load_samples(table) == [Sample(at(0), 0.0), Sample(at(2), 33.3)]
    for text, says in (("{not json\n", "not JSON"), ('{"clock": "x"}\n', "needs clock"),
                       ("clock,delivered_mcg\nsoon,1\n", ":2: not a time"),
                       ("clock,delivered_mcg\n", "no readings")):
        table.write_text(text)
        with pytest.raises(UsageError, match=says):
            load_samples(table)
    with pytest.raises(UsageError, match="cannot read"):
        load_samples(tmp_path / "none.jsonl")


# --- against the simulator -----------------------------------------------------------------------



pytestmark = pytest.mark.usefixtures("cli_env")




def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The one-line message of a refusal on the host (exit 2), checked with and without
    --json."""
    code, data = run_json(capsys, *argv)
    assert code == 2 and data["error"]["type"] == "UsageError", data
    code, _, err = run(capsys, *argv)
    assert code == 2 and err.count("\n") == 1
    return data["error"]["message"]


def test_log_exports(sim: SimProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with sim.client() as pump:
        prepare(pump)
        pump.set_continuous("400")
    rig = sim.rig()
    rig.advance(3_600_000)
    rig.close()
    assert run(capsys, "set-dose", "600")[0] == 4  # refused: logged with its rule
    code, out, _ = run(capsys, "log", "--json")  # JSON lines, as before
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and all(set(e) == EVENT_FIELDS for e in lines)
    names = [e["event"] for e in lines]
    assert names == ["boot", "profile", "refill_begin", "refill_commit", "program", "refused"]

    code, data = run_json(capsys, "log", "--format", "csv", "--output", str(tmp_path / "a.csv"))
    assert (code, data) == (0, {"output": str(tmp_path / "a.csv"), "format": "csv",
                                "events": 6, "first": 0, "last": 5})
    with (tmp_path / "a.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 7
    program = dict(zip(CSV_COLUMNS, rows[5], strict=True))
    refused = dict(zip(CSV_COLUMNS, rows[6], strict=True))
    assert program["details"] == "continuous 400 mcg/day" and program["a"] == "400000"
    assert program["time"] == lines[4]["time"] and program["rule"] == ""
    assert refused["rule"] == "first_24h" and "TOO_SOON" in refused["details"]

    code, out, _ = run(capsys, "log", "-o", str(tmp_path / "b.json"))  # the suffix says
    assert code == 0 and "wrote 6 events" in out
    listed = json.loads((tmp_path / "b.json").read_text())
    assert [e["event"] for e in listed] == names
    assert all(set(e) == EVENT_FIELDS | {"details"} for e in listed)
    code, out, _ = run(capsys, "log", "--format", "json")
    assert code == 0 and json.loads(out) == listed
    code, out, _ = run(capsys, "log", "--format", "csv", "--json")  # the format asked wins
    assert code == 0 and out.splitlines()[0] == ",".join(CSV_COLUMNS)
    code, out, _ = run(capsys, "log", "-o", str(tmp_path / "c.txt"))
    assert code == 0 and "filled 20 mL at 500 mcg/mL" in (tmp_path / "c.txt").read_text()

    refused_at = lines[5]["time"]
    code, out, _ = run(capsys, "log", "--json", "--since", refused_at)
    assert [json.loads(line)["event"] for line in out.splitlines()] == ["refused"]
    naive = refused_at.removesuffix("+00:00")  # UTC unless it says otherwise
    code, out, _ = run(capsys, "log", "--json", "--until", naive, "--start", "3")
    assert [json.loads(line)["number"] for line in out.splitlines()] == [3, 4, 5]
    code, out, _ = run(capsys, "log", "--since", lines[4]["time"][:10])
    assert code == 0 and "event log (6 events, 20" in out

    with sim.client() as pump:  # page by page, with the bar on: the same events
        assert read_events(pump, progress=True) == pump.events()
        assert read_events(pump, 2) == pump.events(2)


def test_log_errors(sim: SimProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "--since: not an ISO date" in usage_error(capsys, "log", "--since", "yesterday")
    assert "--until" in usage_error(capsys, "log", "--until", "2026-13-01")
    assert "no folder" in usage_error(capsys, "log", "-o", str(tmp_path / "no" / "x.csv"))
    assert "is a folder" in usage_error(capsys, "log", "-o", str(tmp_path))
    assert "give --format" in usage_error(capsys, "log", "-o", str(tmp_path / "log.xlsx"))
    code, data = run_json(capsys, "log", "--format", "table")
    assert code == 2 and "--json prints JSON lines" in data["error"]["message"]
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert "permission denied" in usage_error(capsys, "log", "-o", str(locked / "x.csv"))
    with pytest.raises(SystemExit) as exited:  # argparse's own refusal
        cli.main(["log", "--format", "yaml"])
    assert exited.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_plot_from_recorded_readings(
    sim: SimProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with sim.client() as pump:
        prepare(pump)
        pump.set_continuous("400")
    rig = sim.rig()
    readings = []
    for hour in range(6):  # as `pumpctl status --watch 3600 --json` would record them
        if hour == 2:
            assert run(capsys, "bolus", "50", "--minutes", "10")[0] == 0
        if hour == 4:
            assert run(capsys, "suspend", "--confirm")[0] == 0
        readings.append(run(capsys, "status", "--json")[1])
        rig.advance(3_600_000)
    rig.close()
    readings.append(run(capsys, "status", "--json")[1])
    record = tmp_path / "readings.jsonl"
    record.write_text("".join(readings))
    png = tmp_path / "plot.png"
    code, data = run_json(capsys, "plot", "-o", str(png), "--hours", "12", "--telemetry",
                          str(record))
    assert code == 0, data
    assert set(data) == {
        "output", "width", "height", "board_id", "events", "readings_skipped", "start", "end",
        "programmed_now_mcg_day", "programmed_total_mcg", "readings", "readings_from",
        "readings_to", "delivered_mcg", "expected_mcg", "difference_pct", "bin_s", "alarms",
        "spans", "boluses", "last_24h"}
    assert (data["width"], data["height"]) == PNG_SIZE == png_size(png)
    assert data["board_id"] == "e66118604b3c2a21" and data["readings"] == 7
    assert data["programmed_now_mcg_day"] == 24.0  # suspended: the minimum rate
    # 4 h at 400 mcg/day, the bolus, 2 h at the minimum rate: the pump delivered it
    assert data["expected_mcg"] == pytest.approx(400 * 4 / 24 + 50 + 24 * 2 / 24, abs=0.01)
    assert abs(data["difference_pct"]) < 1
    assert [s["kind"] for s in data["spans"]] == ["suspended"]
    assert data["boluses"][0]["dose_mcg"] == 50.0 and data["alarms"] == []
    assert set(data["last_24h"]) == {"delivered_mcg", "programmed_mcg", "difference_pct"}
    assert abs(data["last_24h"]["difference_pct"]) < 1
    code, out, _ = run(capsys, "plot", "-o", str(png), "--hours", "12", "--telemetry",
                       str(record))
    assert code == 0 and "7 readings: delivered" in out and "last 24 h" in out
    code, out, _ = run(capsys, "plot", "-o", str(png), "--since", data["start"][:16])
    assert code == 0 and "no delivery readings" in out


def test_plot_watching_the_pump(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    with SimProcess("3600") as sim:  # an hour a second
        monkeypatch.setenv("PUMPCTL_KEYS", sim.keyfile)
        with sim.client() as pump:
            prepare(pump)
            pump.set_continuous("480")
        code, data = run_json(capsys, "plot", "-o", str(tmp_path / "w.png"), "--hours", "2",
                              "--watch-seconds", "1", "--period", "120", "--port", sim.url)
        assert code == 0, data
        assert data["readings"] >= 10 and data["programmed_now_mcg_day"] == 480.0
        assert abs(data["difference_pct"]) < 3
        with sim.client() as pump:  # telemetry is off again
            pump.set_telemetry(0)
            assert pump.next_event(0.3) is None


def test_plot_errors(sim: SimProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = str(tmp_path / "p.png")
    assert "no folder" in usage_error(capsys, "plot", "-o", str(tmp_path / "no" / "p.png"))
    assert "--since: not an ISO" in usage_error(capsys, "plot", "-o", png, "--since", "monday")
    assert "after the pump's clock" in usage_error(capsys, "plot", "-o", png, "--since",
                                                   "2100-01-01")
    assert "--hours must be" in usage_error(capsys, "plot", "-o", png, "--hours", "0")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"clock": "2026-03-01T08:00:00"}\n')
    assert "needs clock" in usage_error(capsys, "plot", "-o", png, "--telemetry", str(bad))
    assert not Path(png).exists()
    with pytest.raises(SystemExit) as exited:  # argparse's own refusal
        cli.main(["plot"])
    assert exited.value.code == 2 and "--output" in capsys.readouterr().err
