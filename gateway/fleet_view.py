"""What the board shows of the fleet: each device's presence, fix, outbox and refusals,
and the summary counts over reports, devices, tasks and dead letters."""

from .store.sql import decode_json, one, rows, run
from .tasks import ONLINE_STATES


def devices(store, fleet_config=None, identity=None):
    """Every device, by id: state, last fix, outbox, versions (``ota``: each update slot's
    version, the running one, the one on trial, the last failure; ``cert``: the device's
    certificate expiry and last renewal failure, as it reports them), health, refused
    messages, (given the ``FleetConfig``) its configuration: desired against reported
    version, drift, the last refusal, and (given ``identity``, ``Revocations.identity``)
    its certificate: revoked, when it runs out, renewal due."""
    with store.connect() as conn:
        found = rows(run(store, conn, "SELECT * FROM devices ORDER BY device"))
        # each device's refused messages (kept by the ingest): how many, the newest one
        refused = {r["device"]: r for r in rows(run(store, conn, (
            "SELECT t.device, t.refused AS n, t.id_reused, d.received_at, d.reason"
            " FROM dead_letter_devices t JOIN dead_letters d ON d.id = t.newest_id")))}
    configs = {}
    if fleet_config is not None:
        configs = {c["device"]: {k: c[k] for k in ("desired", "reported", "drift",
                                                   "differences", "last_refused")}
                   for c in fleet_config.states()}
    out = []
    for d in found:
        status = decode_json(d.get("status"), {}) or {}
        dead = refused.get(d["device"])
        out.append({
            "device": d["device"], "district": d.get("district"), "state": d.get("state"),
            "online": d.get("state") in ONLINE_STATES, "last_seen": d.get("last_seen"),
            "last_fix": (None if d.get("last_lat") is None else
                         {"lat": d["last_lat"], "lon": d["last_lon"], "at": d.get("last_fix_at")}),
            "outbox_reports": d.get("outbox_reports"),
            "outbox_track": (status.get("outbox") or {}).get("track"),
            "firmware": d.get("firmware"), "codebook": d.get("codebook"),
            "profile": d.get("profile"),
            "disk_free": status.get("disk_free"), "cpu_temp": status.get("cpu_temp"),
            "uptime": status.get("uptime"),
            "health": status.get("health"),   # a sensor node's: memory, wakes, resets
            "ota": status.get("ota"),
            "cert": status.get("cert"),      # the device's: expiry, last renewal failure
            "refused": dead["n"] if dead else 0,
            "id_reused": dead["id_reused"] if dead else 0,
            "last_refused": ({"at": dead["received_at"], "reason": dead["reason"]} if dead
                             else None),
            "config": configs.get(d["device"]),
            "identity": identity(d["device"]) if identity is not None else None,
        })
    return out


def summary(store, queue):
    """Counts for the board's header and the demo: reports per intake state, devices
    (total, online, per state), tasks per state, dead letters."""
    counts = queue.counts()
    with store.connect() as conn:
        dev = rows(run(store, conn, "SELECT state, COUNT(*) AS n FROM devices GROUP BY state"))
        tasks = rows(run(store, conn, "SELECT state, COUNT(*) AS n FROM tasks GROUP BY state"))
        dead = one(run(store, conn, "SELECT COUNT(*) AS n FROM dead_letters"))["n"]
    by_state = {r["state"] or "unknown": r["n"] for r in dev}
    return {
        "reports": counts,
        "devices": {"total": sum(by_state.values()),
                    "online": sum(by_state.get(s, 0) for s in ONLINE_STATES),
                    "by_state": by_state},
        "tasks": {r["state"]: r["n"] for r in tasks},
        "dead_letters": dead,
    }
