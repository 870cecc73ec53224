"""pytest plugin for HIL suites: a pump and a rig for each test.

    --pump URL   the pump under test (a board's port or any pyserial URL);
                 default: start a fresh simulator for each test
    --rig ADDR   the rig controller (default: the simulator's own rig)

Mark a test with @pytest.mark.rig("time_control", ...) for the rig capabilities it needs; on a
rig without them it is skipped with the reason. A test that needs a rig fails when there is
none (--pump without --rig): a HIL run must not pass by skipping.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hil.launcher import SimProcess
from hil.rig import Rig, SimRig
from host import keys
from host.client import PumpClient


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("intrapump", "intrapump HIL rig")
    g.addoption("--pump", metavar="URL", help="pump under test (default: a fresh simulator)")
    g.addoption("--rig", metavar="ADDR", help="rig controller address (default: simulator)")
    g.addoption("--keys", metavar="FILE", help="role keys of the --pump (default: $PUMPCTL_KEYS)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "rig(*capabilities): rig capabilities the test needs")


@pytest.fixture
def sim(request: pytest.FixtureRequest) -> Iterator[SimProcess | None]:
    """A fresh simulator, paused (the rig advances time), unless --pump names a pump."""
    if request.config.getoption("--pump"):
        yield None
        return
    proc = SimProcess("0").start()
    try:
        yield proc
    finally:
        code = proc.stop()
        text = proc.stderr_text()
        proc.log.unlink(missing_ok=True)
        if code != 0:
            pytest.fail(f"pumpsim exited with {code}:\n{text}")


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
        pytest.skip("needs role keys: give --keys FILE or set PUMPCTL_KEYS")
    return keys.load(path)


@pytest.fixture
def pump(pump_url: str, pump_keys: dict[str, bytes]) -> Iterator[PumpClient]:
    """A clinician's client of the pump under test."""
    with PumpClient(pump_url, keys=pump_keys) as client:
        yield client


@pytest.fixture
def rig(request: pytest.FixtureRequest, sim: SimProcess | None) -> Iterator[Rig]:
    address = request.config.getoption("--rig") or (sim.control if sim else None)
    if address is None:
        pytest.fail("this test needs a rig: with --pump, give --rig ADDR (hil/RIG.md)")
    r = SimRig(address)
    marker = request.node.get_closest_marker("rig")
    missing = set(marker.args if marker else ()) - r.capabilities
    if missing:
        r.close()
        pytest.skip(f"rig lacks {', '.join(sorted(missing))}")
    try:
        yield r
    finally:
        r.close()
