"""A patrol morning under faults on the simulated rig: nothing lost, nothing doubled, and
delivery timed end to end.  Writes hil_tests/results/latest.json (schema: docs/hil.md).

The short run (CI, part of the normal ``pytest``) puts five vehicles on the 3G, 4G, weak
and tunnel links and injects ten faults of ten kinds in about 85 s; ``--soak`` runs ten
vehicles for eighteen minutes with the faults again and again.
"""

import json
import os
import platform
import shutil
import time
from pathlib import Path

import pytest

from hil_tests.morning import SHORT_LINKS, SOAK_LINKS, schedule
from hil_tests.netns import available as netns_unavailable
from hil_tests.patrol import CANCEL_GRACE_S, QUIET_S, RECONNECT_MAX_S, Patrol

RESULTS = Path(__file__).resolve().parent / "results"
# faults the morning cannot hold (its gateway is on SQLite in the test's folder, its
# devices on the host's clock): each has a run of its own, results/<kind>.json
ELSEWHERE = {
    "postgres_restart": "hil_tests/test_store_faults.py (results/postgres_restart.json)",
    "gateway_disk_full": "hil_tests/test_store_faults.py (results/gateway_disk_full.json)",
    "device_clock_jump": "hil_tests/test_clock_jump.py (results/device_clock_jump.json)",
}


NO_MOSQUITTO = not shutil.which("mosquitto") and not Path("/usr/sbin/mosquitto").exists()


@pytest.mark.skipif(NO_MOSQUITTO, reason="needs mosquitto")
def test_patrol_morning_under_faults(tmp_path, request):
    morning(tmp_path, request, soak=False)


@pytest.mark.soak
@pytest.mark.timeout(2400)
@pytest.mark.skipif(NO_MOSQUITTO, reason="needs mosquitto")
def test_patrol_morning_soak(tmp_path, request):
    if not request.config.getoption("--soak", default=False):
        pytest.skip("soak test: run with --soak")
    morning(tmp_path, request, soak=True)


def morning(tmp_path, request, soak):
    if request.config.getoption("--rig") != "sim":
        pytest.skip("the patrol morning runs on the simulated rig (the bench: docs/hil.md)")
    links = SOAK_LINKS if soak else SHORT_LINKS
    plan, duration = schedule(len(links), soak)
    started = time.monotonic()
    use_netns = request.config.getoption("--netns")
    if use_netns and (why := netns_unavailable()):
        pytest.skip(f"--netns: {why}")
    patrol = Patrol(tmp_path, links, netns=use_netns)
    try:
        patrol.run(plan, duration, press_every=1.5)
        drained = patrol.drain(60 if soak else 45)
        patrol.finish()
        results = patrol.results({
            "kind": "sim", "run": "soak" if soak else "short",
            "vehicles": {v.name: v.link for v in patrol.vehicles},
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "cancel_grace_s": CANCEL_GRACE_S, "reconnect_max_s": RECONNECT_MAX_S,
            "quiet_s": QUIET_S, "drained": drained,
            "broker": f"network namespace {patrol.ns.name} ({patrol.ns.ip})" if patrol.ns
            else "127.0.0.1 (run with --netns for its own network namespace)",
        })
    finally:
        patrol.close()
    results["rig"]["wall_s"] = round(time.monotonic() - started, 1)
    results["faults_elsewhere"] = ELSEWHERE
    RESULTS.mkdir(exist_ok=True)
    name = "latest-soak.json" if soak else "latest.json"
    (RESULTS / name).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n",
                                encoding="utf-8")
    t2q = results["trigger_to_queue_ms"].get("3G", {})
    tunnel = results["recovery_s"].get("tunnel", {})
    print(f"\ntrigger→queue on 3G without fault: p50 {t2q.get('p50')} ms, p99 "
          f"{t2q.get('p99')} ms (n={t2q.get('n')}); tunnel backlog delivered "
          f"{tunnel.get('p99')} s after the link's return; faults {results['faults']}")

    assert results["lost"] == 0, results["lost_ids"]
    assert results["doubled"] == 0
    assert results["devices_crashed"] == {}     # every fault survived, none crashed a device
    assert results["reports_made"] >= 30
    assert len(results["faults"]) >= 7
    assert results["reports_in_queue"] >= results["reports_made"]
    assert t2q.get("n") and t2q["p99"] < 3000, t2q
    assert tunnel.get("n") and tunnel["p99"] <= 10, tunnel
