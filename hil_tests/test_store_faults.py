"""The gateway's store goes away under a reporting fleet: its PostgreSQL restarted, its
disk full.  Each time: every report in the intake queue exactly once afterwards, nothing
acknowledged to a device before it was committed, the devices keep what was not, and
the gateway says in its log that the store was down and when it was back."""

import shutil
from pathlib import Path

import pytest

from hil_tests import pgcluster, single
from tests.support.tmpfs import tmpfs

NO_MOSQUITTO = not shutil.which("mosquitto") and not Path("/usr/sbin/mosquitto").exists()
DOWN_S = 8          # how long the store is away
DURATION_S = 18     # the run: the fault at 6 s, then presses on for 4 s after its return


@pytest.fixture
def sim_only(request):
    if request.config.getoption("--rig") != "sim":
        pytest.skip("runs on the simulated rig (the gateway is a process here)")
    if NO_MOSQUITTO:
        pytest.skip("needs mosquitto")


def said_store_down_and_back(patrol, reason):
    log = patrol.gateway.log.read_text(encoding="utf-8")
    down = [ln for ln in log.splitlines() if "intake store unavailable" in ln]
    assert down, log[-3000:]
    assert reason in down[0].lower(), down[0]
    assert "intake store back after" in log


def kept_by_the_devices(fault):
    """Reports made while the store was away that the devices still held unacknowledged
    when it came back (so the gateway stopped acknowledging)."""
    return set(fault["made_while_down"]) - fault["acked_before_back"]


def test_postgres_restarted_mid_patrol(tmp_path, sim_only):
    if why := pgcluster.available():
        pytest.skip(f"a private PostgreSQL cluster cannot be made here: {why}")
    cluster = pgcluster.Cluster()
    try:
        plan = [(6, lambda p: p.postgres_restart(cluster), DOWN_S)]
        results, patrol = single.run(tmp_path, "postgres_restart", plan, DURATION_S,
                                     db=cluster.url)
    finally:
        cluster.close()
    single.assert_nothing_lost_or_doubled(results, "postgres_restart")
    fault = patrol.faults[0]
    # acknowledged before the database was back: committed before it went down
    late = {rid: patrol.final_queue[rid][2] - fault["down_at"]
            for rid in fault["acked_before_back"]
            if patrol.final_queue[rid][2] > fault["down_at"] + 0.01}
    assert late == {}, f"acked before being committed: {late}"
    assert kept_by_the_devices(fault)
    said_store_down_and_back(patrol, "connect")


def test_gateway_disk_full_mid_patrol(tmp_path, sim_only):
    with tmpfs(tmp_path / "gateway-disk", "24m") as disk:
        plan = [(6, lambda p: p.gateway_disk_full(disk), DOWN_S)]
        results, patrol = single.run(tmp_path, "gateway_disk_full", plan, DURATION_S,
                                     db=f"sqlite:///{disk}/intake.sqlite",
                                     photos=disk / "photos")
    single.assert_nothing_lost_or_doubled(results, "gateway_disk_full")
    fault = patrol.faults[0]
    uncommitted = fault["acked_before_back"] - fault["queue_before_back"]
    assert uncommitted == set(), f"acked before being committed: {uncommitted}"
    assert kept_by_the_devices(fault)
    said_store_down_and_back(patrol, "full")
