"""One fault on a small fleet: a short patrol (``Patrol``) with a single scheduled fault,
drained and counted like the morning, its results written to
``hil_tests/results/<kind>.json`` (the morning's schema, docs/hil.md).

For the faults the morning cannot hold (its gateway is on SQLite in the test's folder):
the gateway's PostgreSQL restarted, the gateway's disk full, a device clock that jumps
(its devices run on a clock of their own).
"""

import json
import os
import platform
import time
from pathlib import Path

from hil_tests.patrol import RECONNECT_MAX_S, Patrol

RESULTS = Path(__file__).resolve().parent / "results"
LINKS = ["3G", "4G"]
PRESS_EVERY_S = 1.0


def run(tmp_path, kind, plan, duration, links=LINKS, drain_s=45, press_every=PRESS_EVERY_S,
        everything=False, **patrol_kw):
    """(results, patrol) of a run of ``plan`` ([(t, action, hold)]) for ``duration`` s;
    the patrol is closed, its records kept for the test's own checks (``points_drained``:
    the track points its devices had written when the drain ended).  ``everything``: the
    drain waits for photos and track too (``Patrol.drain``)."""
    started = time.monotonic()
    patrol = Patrol(tmp_path, links, **patrol_kw)
    try:
        patrol.run(plan, duration, press_every=press_every)
        drained = patrol.drain(drain_s, everything)
        patrol.points_drained = sum(n for v in patrol.vehicles for n in v.track.values())
        patrol.finish()
        results = patrol.results({
            "kind": "sim", "run": kind, "vehicles": {v.name: v.link for v in patrol.vehicles},
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "cancel_grace_s": {v.name: v.cancel_grace for v in patrol.vehicles},
            "reconnect_max_s": RECONNECT_MAX_S,
            "store": patrol.db_url.split("://")[0], "drained": drained})
        patrol.final_flags = patrol.time_flags()
        patrol.final_queue = patrol.queue()
        results["time_flags"] = _count(patrol.final_flags.values())
    finally:
        patrol.close()
    results["rig"]["wall_s"] = round(time.monotonic() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{kind}.json").write_text(json.dumps(results, indent=2, ensure_ascii=False)
                                          + "\n", encoding="utf-8")
    return results, patrol


def assert_nothing_lost_or_doubled(results, kind):
    assert results["lost"] == 0, results["lost_ids"]
    assert results["doubled"] == 0
    assert results["devices_crashed"] == {}
    assert results["faults"] == {kind: 1}, results["faults"]
    assert results["reports_in_queue"] == results["reports_made"] > 0


def _count(values):
    out = {}
    for v in values:
        key = v or "none"
        out[key] = out.get(key, 0) + 1
    return out
