"""A patrol morning under faults on the simulated rig: nothing lost, nothing doubled, and
delivery timed end to end.  Writes hil_tests/results/latest.json (schema: docs/hil.md).

The short run (CI, part of the normal ``pytest``) puts ten vehicles on the 3G, 4G, weak
and tunnel links, over TLS with a certificate each (``--plain-mqtt``: without), and
injects ten faults of ten kinds in about 85 s; ``--soak`` runs the same fleet for
eighteen minutes with the faults again and again.  Both print issue 18's budgets and the
run's wall time against its time budget, and write them into the results.
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


SHORT_BUDGET_S, SOAK_BUDGET_S = 180, 1500    # the runs' wall time budgets
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
    # TLS as in the field (the shipped broker config, a certificate per device), unless
    # --plain-mqtt; a namespaced broker is plain (its certificate names 127.0.0.1)
    tls = not (request.config.getoption("--plain-mqtt") or use_netns)
    patrol = Patrol(tmp_path, links, netns=use_netns, tls=tls)
    try:
        patrol.run(plan, duration, press_every=1.5)
        # reports, photos and track: a photo still on its way when the fleet stops would
        # count as incomplete although it is not lost
        drained = patrol.drain(60 if soak else 45, everything=True)
        patrol.finish()
        results = patrol.results({
            "kind": "sim", "run": "soak" if soak else "short",
            "vehicles": {v.name: v.link for v in patrol.vehicles},
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "cancel_grace_s": CANCEL_GRACE_S, "reconnect_max_s": RECONNECT_MAX_S,
            "quiet_s": QUIET_S, "drained": drained, "tls": tls,
            "broker": f"network namespace {patrol.ns.name} ({patrol.ns.ip})" if patrol.ns
            else "127.0.0.1 (run with --netns for its own network namespace)",
        })
    finally:
        patrol.close()
    results["rig"]["wall_s"] = round(time.monotonic() - started, 1)
    results["faults_elsewhere"] = ELSEWHERE
    results["budgets"] = budgets(results, soak)
    RESULTS.mkdir(exist_ok=True)
    name = "latest-soak.json" if soak else "latest.json"
    (RESULTS / name).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n",
                                encoding="utf-8")
    print("\n" + budget_table(results["budgets"]))

    assert results["devices_crashed"] == {}     # every fault survived, none crashed a device
    assert results["reports_made"] >= 30
    assert results["reports_in_queue"] >= results["reports_made"]
    assert results["lost"] == 0, results["lost_ids"]
    failed = {k: b for k, b in results["budgets"].items() if b["ok"] is False
              and k != "wall_s"}
    assert not failed, failed


def budgets(results, soak):
    """Issue 18's budgets with what this run measured: {name: {limit, measured, ok}}.
    ``ok`` None: printed beside its reference, no limit.  The wall time is the run's time
    budget (the CI's short run stays a few minutes); it is printed, not asserted (a
    loaded machine is slower, not wrong)."""
    t2q = results["trigger_to_queue_ms"].get("3G", {})
    tunnel = results["recovery_s"].get("tunnel", {})
    wire = results["bytes_on_wire_per_vehicle_hour"]
    wall_limit = SOAK_BUDGET_S if soak else SHORT_BUDGET_S

    def within(measured, limit, test):
        return {"limit": limit, "measured": measured,
                "ok": None if measured is None else test(measured)}
    return {
        "lost": within(results["lost"], "== 0", lambda m: m == 0),
        "doubled": within(results["doubled"], "== 0", lambda m: m == 0),
        # a photo neither whole at the gateway nor held by its device for sending again
        "photos_lost": within(results["photos_lost"], "== 0", lambda m: m == 0),
        "fault_kinds": within(len(results["faults"]), ">= 7", lambda m: m >= 7),
        "trigger_to_queue_p99_ms_3G_no_fault": within(t2q.get("p99"), "< 3000",
                                                       lambda m: m < 3000),
        "tunnel_backlog_after_return_s_p99": within(tunnel.get("p99"), "<= 10",
                                                     lambda m: m <= 10),
        "bytes_per_vehicle_hour_patrol": {
            "limit": f"beside OwnTracks JSON: {wire['patrol_hour_owntracks_json']}",
            "measured": wire["patrol_hour"], "ok": None},
        "wall_s": within(results["rig"]["wall_s"], f"<= {wall_limit}",
                         lambda m: m <= wall_limit),
    }


def budget_table(rows):
    lines = [f"{'budget':<40} {'limit':<36} {'measured':>10}  ok"]
    for name, b in rows.items():
        ok = {True: "yes", False: "NO", None: "-"}[b["ok"]]
        lines.append(f"{name:<40} {b['limit']:<36} {b['measured']!s:>10}  {ok}")
    return "\n".join(lines)
