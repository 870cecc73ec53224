"""The pump's clock across long idle periods and the 2**30 ms tick wrap (12.4 days)."""

from __future__ import annotations

import pytest

from hil.rig import Rig
from host.client import PumpClient

DAY_MS = 86_400_000


@pytest.mark.hil
@pytest.mark.rig("time_control")
def test_uptime_counts_through_long_idle_and_tick_wrap(pump: PumpClient, rig: Rig) -> None:
    before = pump.status().uptime_s
    rig.advance(14 * DAY_MS)  # stopped: no step deadlines, past one tick wrap
    assert pump.status().uptime_s - before == 14 * 86_400
