"""pytest plugin for the HIL suites: a pump, a rig and a report for each test.

    --pump URL          the pump under test (a board's port or any pyserial URL);
                        default: a fresh simulator for each test
    --rig ADDR          the rig controller: a serial port or pyserial URL of the rig Pico
                        (hil/RIG.md), or host:port of a simulator's control channel;
                        default: the simulator's own rig
    --keys FILE         role keys of --pump (default: $PUMPCTL_KEYS)
    --time-scale X      the simulator's clock: "paused" (default: the rig advances virtual
                        time as fast as the firmware allows) or N (x N real time, so a person
                        can watch a run with `pumpctl status --watch`)
    --report DIR        write the HIL report there (SUMMARY.md first, then figures and CSV)

Mark a test with @pytest.mark.rig("time_control", ...) for the rig capabilities it needs
(hil/rig.py lists them); on a rig without them it is skipped with the reason, and the report
lists every skip. A test that needs a rig fails when there is none (--pump without --rig): a
HIL run must not pass by skipping. @pytest.mark.shared_pump lets tests that leave nothing
behind share one simulator per session. Every HIL test has a pytest-timeout (the ini's, or
its own @pytest.mark.timeout).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hil.launcher import SimProcess
from hil.rig import Rig, RigError, SimRig
from host import keys
from host.client import PumpClient


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("intrapump", "intrapump HIL rig")
    g.addoption("--pump", metavar="URL", help="pump under test (default: a fresh simulator)")
    g.addoption("--rig", metavar="ADDR", help="rig controller: serial port/URL of the rig "
                "Pico, or host:port of a simulator's control channel (default: simulator)")
    g.addoption("--keys", metavar="FILE", help="role keys of the --pump (default: $PUMPCTL_KEYS)")
    g.addoption("--time-scale", metavar="X", default="paused",
                help="simulator clock: 'paused' (the rig advances it; default) or N x real time")
    g.addoption("--report", metavar="DIR", type=Path, help="write the HIL report to DIR")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "rig(*capabilities): rig capabilities the test needs")
    config.addinivalue_line("markers", "shared_pump: the test may share a session simulator")
    config.addinivalue_line("markers", "hil: needs a pump (the simulator, or --pump URL)")
    scale = str(config.getoption("--time-scale"))
    if scale != "paused":
        try:
            ok = float(scale) > 0
        except ValueError:
            ok = False
        if not ok:
            raise pytest.UsageError(f"--time-scale is 'paused' or a number > 0, not {scale!r}")
    config.stash[REPORT] = HilReport(config.getoption("--report"))


def sim_speed(config: pytest.Config) -> str:
    scale = str(config.getoption("--time-scale"))
    return "0" if scale == "paused" else scale


# -- the report ------------------------------------------------------------------------------


@dataclass
class HilReport:
    """What the suites measured, for a person to read first (SUMMARY.md) and for scripts
    (summary.json). Tests add sections; the plugin adds the outcome of every test."""

    dir: Path | None
    sections: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    outcomes: dict[str, list[str]] = field(default_factory=dict)
    skips: list[tuple[str, str]] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def path(self, name: str, tmp: Path) -> Path:
        """Where a test writes a file of the report (tmp when no --report was given)."""
        base = self.dir if self.dir is not None else tmp
        base.mkdir(parents=True, exist_ok=True)
        return base / name

    def add(self, title: str, markdown: str, data: dict[str, Any] | None = None) -> None:
        self.sections.append((title, markdown, data or {}))

    def write(self, config: pytest.Config) -> Path | None:
        if self.dir is None:
            return None
        self.dir.mkdir(parents=True, exist_ok=True)
        counts = {k: len(v) for k, v in self.outcomes.items()}
        pump = config.getoption("--pump") or "simulator (firmware/ on a virtual Pico)"
        rig = config.getoption("--rig") or "simulator rig"
        lines = [
            "# intrapump HIL report",
            "",
            f"- pump: {pump}",
            f"- rig: {rig}",
            f"- time scale: {config.getoption('--time-scale')}",
            f"- run: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.started))}, "
            f"{time.time() - self.started:.0f} s",
            "- tests: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())),
            "",
        ]
        if self.outcomes.get("failed"):
            lines += ["## Failed", ""] + [f"- `{n}`" for n in self.outcomes["failed"]] + [""]
        for title, markdown, _ in self.sections:
            lines += [f"## {title}", "", markdown.rstrip(), ""]
        if self.skips:
            lines += ["## Skipped", ""] + [f"- `{n}`: {why}" for n, why in self.skips] + [""]
        lines += ["Files: `junit.xml` (every test), the PNG and CSV files named above.", ""]
        (self.dir / "SUMMARY.md").write_text("\n".join(lines))
        (self.dir / "summary.json").write_text(json.dumps({
            "pump": pump, "rig": rig, "counts": counts, "outcomes": self.outcomes,
            "skipped": [{"test": n, "reason": why} for n, why in self.skips],
            "sections": {title: data for title, _, data in self.sections},
        }, indent=2, default=str) + "\n")
        return self.dir


REPORT = pytest.StashKey[HilReport]()


@pytest.fixture(scope="session")
def hil_report(request: pytest.FixtureRequest) -> HilReport:
    return request.config.stash[REPORT]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    rep = outcome.get_result()
    if item.get_closest_marker("hil") is None:
        return
    report = item.config.stash[REPORT]
    if rep.when == "call" or (rep.when == "setup" and not rep.passed):
        state = "skipped" if rep.skipped else rep.outcome
        report.outcomes.setdefault(state, []).append(item.nodeid)
        if rep.skipped:
            reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
            report.skips.append((item.nodeid, reason.removeprefix("Skipped: ")))


def pytest_sessionstart(session: pytest.Session) -> None:
    """A --rig that is not there stops the run at once, with one line saying why (rather
    than the same failure in every test)."""
    address = session.config.getoption("--rig")
    if not address:
        return
    try:
        open_rig(address).close()
    except RigError as e:
        pytest.exit(f"no rig: {e}", returncode=3)


def pytest_sessionfinish(session: pytest.Session) -> None:
    written = session.config.stash[REPORT].write(session.config)
    if written is not None:
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line(f"HIL report: {written / 'SUMMARY.md'}")


# -- the pump and the rig ----------------------------------------------------------------------


def _start_sim(config: pytest.Config) -> SimProcess:
    return SimProcess(sim_speed(config)).start()


def _stop_sim(proc: SimProcess) -> None:
    code = proc.stop()
    text = proc.stderr_text()
    proc.log.unlink(missing_ok=True)
    if code != 0:
        pytest.fail(f"pumpsim exited with {code}:\n{text}")


@pytest.fixture(scope="session")
def _session_sim(request: pytest.FixtureRequest) -> Iterator[SimProcess]:
    proc = _start_sim(request.config)
    yield proc
    _stop_sim(proc)


@pytest.fixture
def sim(request: pytest.FixtureRequest) -> Iterator[SimProcess | None]:
    """A fresh simulator (or the session's, for @shared_pump tests), unless --pump names a
    pump."""
    if request.config.getoption("--pump"):
        yield None
        return
    if request.node.get_closest_marker("shared_pump"):
        yield request.getfixturevalue("_session_sim")
        return
    proc = _start_sim(request.config)
    try:
        yield proc
    finally:
        _stop_sim(proc)


@pytest.fixture
def pump_url(request: pytest.FixtureRequest, sim: SimProcess | None) -> str:
    return request.config.getoption("--pump") or (sim.url if sim else "")


@pytest.fixture
def pump_keys(request: pytest.FixtureRequest, sim: SimProcess | None) -> dict[str, bytes]:
    """Role keys of the pump under test: the simulator's development keys, or --keys."""
    if sim is not None:
        return sim.keys()
    path = keys.find(request.config.getoption("--keys"), None)
    if path is None:
        pytest.fail("--pump needs its role keys: give --keys FILE or set PUMPCTL_KEYS")
    return keys.load(path)


@pytest.fixture
def pump(pump_url: str, pump_keys: dict[str, bytes]) -> Iterator[PumpClient]:
    """A clinician's client of the pump under test."""
    with PumpClient(pump_url, keys=pump_keys) as client:
        yield client


def open_rig(address: str) -> Rig:
    """A simulator's control channel (host:port) or a rig controller on a serial port."""
    host, _, port = address.rpartition(":")
    if host and port.isdigit() and "://" not in address:
        return SimRig(address)
    from hil.pico_rig import PicoRig

    return PicoRig(address)


@pytest.fixture
def rig(request: pytest.FixtureRequest, sim: SimProcess | None) -> Iterator[Rig]:
    address = request.config.getoption("--rig") or (sim.control if sim else None)
    if address is None:
        pytest.fail("this test needs a rig: with --pump, give --rig PORT (hil/RIG.md)")
    try:
        r = open_rig(address)
    except RigError as e:
        pytest.fail(str(e))
    marker = request.node.get_closest_marker("rig")
    missing = set(marker.args if marker else ()) - r.capabilities
    if missing:
        r.close()
        pytest.skip(f"rig lacks {', '.join(sorted(missing))}")
    rest = getattr(r, "rest", None)
    if rest is not None:  # a real rig keeps its state between tests: start each from rest
        rest()
    try:
        yield r
    finally:
        r.close()
