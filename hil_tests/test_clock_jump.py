"""Device clocks that jump mid-patrol: three hours forward, back to 2019, then right
again (tests/support/device_clock.py moves each device's wall clock; its monotonic clock and the
rest of the rig keep the true time).  Nothing lost or doubled; a report timed by the
jumped clock (no GNSS time) is flagged as the gateway's validation flags it ("ahead"
beyond validate.TIME_AHEAD_S, "old" beyond TIME_OLD_S), and one timed by GNSS is not."""

import shutil
import time
from datetime import datetime
from pathlib import Path

import pytest
from gridlink.gateway.validate import TIME_AHEAD_S, TIME_OLD_S

from hil_tests import single
from tests.support import device_clock as clock

NO_MOSQUITTO = not shutil.which("mosquitto") and not Path("/usr/sbin/mosquitto").exists()
FORWARD_S = 3 * 3600
GRACE_S = 2.0       # the button reports wait out a cancel grace, across the jumps too


def back_to_2019():
    return -(time.time() - datetime(2019, 6, 1, 8).timestamp())


def expected_flag(offset_s):
    if offset_s > TIME_AHEAD_S:
        return "ahead"
    if offset_s < -TIME_OLD_S:
        return "old"
    return None


def test_device_clock_jumps_mid_patrol(tmp_path, request):
    if request.config.getoption("--rig") != "sim":
        pytest.skip("runs on the simulated rig (a bench Pi's clock: set it with date -s)")
    if NO_MOSQUITTO:
        pytest.skip("needs mosquitto")
    if why := clock.available():
        pytest.skip(f"a device clock cannot be moved here: {why}")
    clocks = []
    for i in range(2):
        (tmp_path / f"clock-{i}").mkdir()
        clocks.append(clock.DeviceClock(tmp_path / f"clock-{i}"))
    # pv-0001 has no receiver fix (its reports take the device clock), pv-0002 has one
    options = [{"clock": clocks[0], "gnss": "silent", "cancel_grace": GRACE_S},
               {"clock": clocks[1], "cancel_grace": GRACE_S}]
    plan = [(4, lambda p: p.clock_jump(FORWARD_S), 0),
            (9, lambda p: p.clock_jump(back_to_2019()), 0),
            (14, lambda p: p.clock_jump(0), 0)]
    results, patrol = single.run(tmp_path, "device_clock_jump", plan, 19,
                                 vehicle_options=options)
    single.assert_nothing_lost_or_doubled(results, "device_clock_jump")

    pressed = {p["id"]: p["at"] for p in patrol.presses if p["id"]}
    seen = {}
    for v in patrol.vehicles:
        for rid, rep in v.reports.items():
            offset = datetime.fromisoformat(rep["time"].replace("Z", "+00:00")).timestamp() \
                - pressed[rid]
            if v.name == "pv-0001" or rep["time_source"] != "gnss":
                # pv-0001 never has a fix; pv-0002 before its first one (a slow start)
                assert rep["time_source"] == "system" and "clock_fallback" in rep["flags"]
                want = expected_flag(offset)
            else:
                want = None
            assert patrol.final_flags[rid] == want, (v.name, rid, rep["time"], offset)
            seen.setdefault((v.name, rep["time_source"]), set()).add(want)
    assert seen[("pv-0001", "system")] == {None, "ahead", "old"}, seen
    assert seen[("pv-0002", "gnss")] == {None}, seen    # its fix's time is never flagged
