"""The pump's clock across long idle periods and the 2**30 ms tick wrap (12.4 days), and a
flex day's steps starting on the minute of the patient's local day."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hil.rig import Rig
from hil.suites.kit import prepare
from host.client import PumpClient

DAY_MS = 86_400_000


@pytest.mark.hil
@pytest.mark.rig("time_control")
def test_uptime_counts_through_long_idle_and_tick_wrap(pump: PumpClient, rig: Rig) -> None:
    before = pump.status().uptime_s
    rig.advance(14 * DAY_MS)  # stopped: no step deadlines, past one tick wrap
    assert pump.status().uptime_s - before == 14 * 86_400


@pytest.mark.hil
@pytest.mark.rig("time_control")
def test_a_flex_step_starts_on_its_local_minute(pump: PumpClient, rig: Rig) -> None:
    pump.set_clock(datetime(2027, 3, 1, 7, 0, tzinfo=UTC))  # 08:00 local at UTC+1
    prepare(pump)
    p = pump.set_flex([("00:00", "200"), ("09:00", "400")], utc_offset_min=60)
    assert p.mode == "flex" and p.rate_ul_day == 400  # 200 mcg/day at 500 mcg/mL
    rig.advance(3_599_000)  # 08:59:59 local
    assert pump.status().rate_ul_day == 400
    rig.advance(2_000)  # 09:00:01 local
    assert pump.status().rate_ul_day == 800
    assert pump.program().steps[1].start == "09:00"
