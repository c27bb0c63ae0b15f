"""Staged rollouts of a release (hawkBit-style groups, an Uptane-style director).

A rollout names a release (kind, version), a target group (a district, a device profile
or a list of devices, as the ``devices`` table knows them), stages as cumulative
percentages of the group (e.g. 5 → 50 → 100: a canary first) and a failure threshold (a
percentage of a stage's devices).  At creation each device of the group is given its
stage, in an order drawn from the rollout id so every rollout picks another canary.

``sync()`` — after each status batch the gateway commits, and after each change — moves
every running rollout on:

* a device of the current stage (or an earlier one) whose status says it runs the
  version with nothing pending is ``installed``; one whose status names the version as
  its last failure is ``failed`` (with the device's reason).  A device of a later stage
  counts for nothing, whatever it reports, until its stage comes;
* when more of the stage's devices failed than the threshold allows the rollout
  ``paused`` itself, saying why; a technician may resume it (the stage's failures are then
  accepted) or abort it;
* with a stage timeout, a stage whose devices have not all finished within that many
  seconds of its start ``paused`` itself, naming the silent devices (switched off, out of
  reach); resuming it counts them ``skipped`` and goes on, and starts the clock again;
* when every device of the stage is finished the next stage begins; after the last the
  rollout is ``done``;
* the current stage's devices not yet offered get the offer: a retained message on their
  ``…/update`` topic.  A device of a later stage is never offered the release.  The first
  ``sync`` of a gateway publishes the open offers of running rollouts again (retained, so
  idempotent): an offer committed but not yet sent when a gateway stopped is not lost.

A group holds only devices of the release's kind: a profile whose name begins ``sensor``
is a MicroPython node (``mcu``), any other a Pi (as the task desk tells patrol vehicles by
their profile names).  A Pi whose status carries no ``ota`` (no update slots: it cannot
install) is ``skipped``, as is one already running a newer version.

Refused at creation: an unknown kind or version, stages that do not rise to 100, a group
with no device, a release the served repository does not hold, and a downgrade — a
version not newer than one an earlier rollout of the same kind has (had) running.
Aborting withdraws the offers not yet taken up (an empty retained message).
"""

import datetime
import hashlib
import itertools
import json
import math
import re
import secrets

from gridlink.firmware.core import topics
from gridlink.firmware.core.checks import MessageError
from gridlink.firmware.core.messages import check_release_version, encode, make_update

from .clock import wire_time
from .queue import Conflict, Invalid, NotFound, system_clock
from .store.sql import decode_json, locked, one, rows, run

KINDS = ("pi", "mcu")
STATES = ("running", "paused", "aborted", "done")
LIVE = ("running", "paused")
FINISHED = ("installed", "failed", "skipped")
_PROFILE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_DEVICE = re.compile(r"[a-z0-9][a-z0-9-]{2,31}")
_DISTRICT = re.compile(r"[0-9]{6}")
MCU_PROFILE_PREFIXES = ("sensor",)


def kind_of(profile):
    """"mcu" for a sensor node's profile, "pi" for any other (or none)."""
    return "mcu" if str(profile or "").startswith(MCU_PROFILE_PREFIXES) else "pi"

MIGRATIONS = (
    (
        "ota_001_rollouts",
        "CREATE TABLE IF NOT EXISTS ota_rollouts ("
        " id TEXT PRIMARY KEY, kind TEXT NOT NULL, version TEXT NOT NULL,"
        " target TEXT NOT NULL, stages TEXT NOT NULL, failure_threshold REAL NOT NULL,"
        " state TEXT NOT NULL, stage INTEGER NOT NULL, reason TEXT,"
        " accepted_stage INTEGER, created_at TEXT NOT NULL, created_by TEXT,"
        " updated_at TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS ota_rollouts ("
        " id TEXT PRIMARY KEY, kind TEXT NOT NULL, version TEXT NOT NULL,"
        " target TEXT NOT NULL, stages TEXT NOT NULL, failure_threshold DOUBLE PRECISION"
        " NOT NULL, state TEXT NOT NULL, stage INTEGER NOT NULL, reason TEXT,"
        " accepted_stage INTEGER, created_at TEXT NOT NULL, created_by TEXT,"
        " updated_at TEXT NOT NULL)",
    ),
    (
        "ota_002_rollout_devices",
        "CREATE TABLE IF NOT EXISTS ota_rollout_devices ("
        " rollout TEXT NOT NULL, device TEXT NOT NULL, district TEXT NOT NULL,"
        " stage INTEGER NOT NULL, outcome TEXT NOT NULL, reason TEXT, offered_at TEXT,"
        " done_at TEXT, PRIMARY KEY (rollout, device))",
        "CREATE TABLE IF NOT EXISTS ota_rollout_devices ("
        " rollout TEXT NOT NULL, device TEXT NOT NULL, district TEXT NOT NULL,"
        " stage INTEGER NOT NULL, outcome TEXT NOT NULL, reason TEXT, offered_at TEXT,"
        " done_at TEXT, PRIMARY KEY (rollout, device))",
    ),
    (
        "ota_003_stage_timeout",
        "ALTER TABLE ota_rollouts ADD COLUMN stage_timeout_s REAL;\n"
        "ALTER TABLE ota_rollouts ADD COLUMN stage_started_at TEXT;\n",
        "ALTER TABLE ota_rollouts ADD COLUMN stage_timeout_s DOUBLE PRECISION;\n"
        "ALTER TABLE ota_rollouts ADD COLUMN stage_started_at TEXT;\n",
    ),
)


def version_key(text):
    """"1.4" → (1, 4, 0, 0), for comparing versions."""
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (4 - len(parts)))


def check_stages(stages):
    """[5, 50, 100] → the same list; Invalid unless whole percentages that rise to 100."""
    if not isinstance(stages, list) or not 1 <= len(stages) <= 10:
        raise Invalid("stages: a list of 1 to 10 percentages, e.g. [5, 50, 100]")
    if not all(isinstance(p, int) and not isinstance(p, bool) and 0 < p <= 100
               for p in stages):
        raise Invalid(f"stages: whole percentages between 1 and 100, not {stages!r}")
    if any(b <= a for a, b in itertools.pairwise(stages)) or stages[-1] != 100:
        raise Invalid(f"stages: rising percentages ending at 100 (every device), not {stages!r}")
    return stages


def check_target(target):
    """Exactly one of {"district": "410106"}, {"profile": "patrol-vehicle"},
    {"devices": ["pv-0001", …]}."""
    if not isinstance(target, dict) or len(target) != 1:
        raise Invalid("target: one of district, profile or devices")
    (key, value), = target.items()
    if key == "district" and isinstance(value, str) and _DISTRICT.fullmatch(value):
        return target
    if key == "profile" and isinstance(value, str) and _PROFILE.fullmatch(value):
        return target
    if (key == "devices" and isinstance(value, list) and 1 <= len(value) <= 10000
            and all(isinstance(d, str) and _DEVICE.fullmatch(d) for d in value)):
        return {"devices": sorted(set(value))}
    raise Invalid(f"target: a 6-digit district, a profile name or a list of device ids, "
                  f"not {target!r}")


def stage_of(index, count, stages):
    """The stage of the ``index``-th device (0-based) of ``count``: the first whose
    cumulative share covers it (a stage of at least one device when count allows)."""
    for k, pct in enumerate(stages):
        if index < max(k + 1, math.ceil(pct * count / 100)):
            return k
    return len(stages) - 1


def ota_of(status_text):
    """The ``ota`` part of a device's stored status, or None."""
    status = decode_json(status_text, {}) or {}
    ota = status.get("ota") if isinstance(status, dict) else None
    return ota if isinstance(ota, dict) else None


class Rollouts:
    """Rollouts over a store; ``publisher(topic, payload, qos=1, retain=False)`` is the
    running gateway's publish (without one offers wait for a later ``sync``);
    ``repository`` (an ``update_repo.UpdateRepository``) lets creation check the release
    exists."""

    def __init__(self, store, *, publisher=None, repository=None, clock=None):
        self.store = store
        self.publisher = publisher
        self.repository = repository
        self.clock = clock or system_clock
        self.republished = False

    # ------------------------------------------------------------ creating

    def create(self, *, kind, version, target, stages=(5, 50, 100), failure_threshold=20.0,
               operator=None, stage_timeout_s=None):
        """A new rollout, running, its canary offered the release at once (``sync``).
        ``stage_timeout_s``: pause a stage whose devices have not all finished by then."""
        if kind not in KINDS:
            raise Invalid(f"kind: one of {', '.join(KINDS)}, not {kind!r}")
        try:
            check_release_version(MessageError, version, "version")
        except MessageError as exc:
            raise Invalid(str(exc)) from None
        stages = check_stages(list(stages))
        target = check_target(target)
        if not isinstance(failure_threshold, int | float) or not 0 <= failure_threshold <= 100:
            raise Invalid("failure_threshold: a percentage of a stage's devices, 0 to 100")
        if stage_timeout_s is not None and (
                isinstance(stage_timeout_s, bool) or not isinstance(stage_timeout_s, int | float)
                or not 1 <= stage_timeout_s <= 90 * 86400):
            raise Invalid("stage_timeout_s: seconds a stage may wait for its devices, "
                          "1 to 7776000 (90 days), or none")
        if self.repository is not None and not self.repository.has_release(kind, version):
            raise Invalid(f"the update repository holds no {kind} release {version} "
                          "(gridlink fleet release build first)")
        now = wire_time(self.clock())
        rid = f"R-{now[:10].replace('-', '')}-{secrets.token_hex(3)}"
        with self.store.connect() as conn:
            if self.store.dialect == "postgres":   # two creations at once: one downgrade check
                run(self.store, conn, "LOCK TABLE ota_rollouts IN SHARE ROW EXCLUSIVE MODE")
            newer = self._newest(conn, kind)
            if newer and version_key(newer["version"]) >= version_key(version):
                raise Conflict(f"downgrade refused: rollout {newer['id']} has {kind} "
                               f"{newer['version']} ({newer['state']}); a rollout must bring "
                               "a newer version", rollout=newer["id"], state=newer["state"])
            group = self._group(conn, target, kind)
            order = sorted(group, key=lambda d: hashlib.sha256(
                f"{rid}/{d['device']}".encode()).digest())
            run(self.store, conn,
                "INSERT INTO ota_rollouts (id, kind, version, target, stages, failure_threshold,"
                " state, stage, created_at, created_by, updated_at, stage_timeout_s,"
                " stage_started_at) VALUES (?, ?, ?, ?, ?, ?, 'running', 0, ?, ?, ?, ?, ?)",
                [rid, kind, version, json.dumps(target), json.dumps(stages),
                 float(failure_threshold), now, operator, now,
                 None if stage_timeout_s is None else float(stage_timeout_s), now])
            for i, d in enumerate(order):
                ota = ota_of(d["status"])
                running = ota.get("installed") if ota else None
                outcome, reason = "waiting", None
                if kind == "pi" and ota is None:
                    outcome, reason = "skipped", "reports no update slots"
                elif running and version_key(running) > version_key(version):
                    outcome, reason = "skipped", f"runs {running}, newer"
                run(self.store, conn,
                    "INSERT INTO ota_rollout_devices (rollout, device, district, stage,"
                    " outcome, reason) VALUES (?, ?, ?, ?, ?, ?)",
                    [rid, d["device"], d["district"], stage_of(i, len(order), stages),
                     outcome, reason])
        self.sync(rid)
        return self.get(rid)

    def _newest(self, conn, kind):
        found = rows(run(self.store, conn,
                         "SELECT id, version, state FROM ota_rollouts WHERE kind = ?"
                         " AND state <> 'aborted'", [kind]))
        return max(found, key=lambda r: version_key(r["version"]), default=None)

    def _group(self, conn, target, kind):
        (key, value), = target.items()
        columns = "SELECT device, district, status, profile FROM devices"
        if key == "devices":
            found = rows(run(self.store, conn, columns + " WHERE device IN ("
                             + ", ".join("?" * len(value)) + ")", value))
            unknown = sorted(set(value) - {d["device"] for d in found})
            if unknown:
                raise Invalid(f"target: no such device {_some(unknown)}")
            other = sorted(d["device"] for d in found if kind_of(d["profile"]) != kind)
            if other:
                raise Invalid(f"target: not {kind} devices: {_some(other)}")
            return found
        found = [d for d in rows(run(self.store, conn, columns + f" WHERE {key} = ?", [value]))
                 if kind_of(d["profile"]) == kind]
        if not found:
            raise Invalid(f"target: no {kind} device has {key} {value}")
        return found

    # ------------------------------------------------------------ reading

    def get(self, rollout_id):
        """The rollout with its progress: per stage how many devices are waiting,
        offered, installed, failed, skipped; and each device's outcome."""
        with self.store.connect() as conn:
            r = one(run(self.store, conn, "SELECT * FROM ota_rollouts WHERE id = ?",
                        [rollout_id]))
            if r is None:
                raise NotFound(f"no rollout {rollout_id!r}")
            devices = rows(run(self.store, conn,
                               "SELECT device, stage, outcome, reason, offered_at, done_at"
                               " FROM ota_rollout_devices WHERE rollout = ?"
                               " ORDER BY stage, device", [rollout_id]))
        return _shown(r, devices)

    def list(self, state=None):
        with self.store.connect() as conn:
            found = rows(run(self.store, conn, "SELECT id FROM ota_rollouts"
                             + (" WHERE state = ?" if state else "") + " ORDER BY created_at",
                             [state] if state else []))
        return [self.get(r["id"]) for r in found]

    # ------------------------------------------------------------ a technician's acts

    def pause(self, rollout_id, operator=None):
        return self._move(rollout_id, ("running",), "paused", f"paused by {operator}")

    def resume(self, rollout_id, operator=None):
        """Paused → running; the current stage's failures so far are accepted, and, when
        its deadline has passed, its devices that never reported count as skipped; the
        stage's clock starts again."""
        now = self.clock()
        with self.store.connect() as conn:
            r = self._lock(conn, rollout_id)
            if r["state"] == "paused" and _overdue(r, now):
                run(self.store, conn, "UPDATE ota_rollout_devices SET outcome = 'skipped',"
                    " reason = ?, done_at = ? WHERE rollout = ? AND stage <= ?"
                    " AND outcome = 'offered'",
                    [f"no report within the stage timeout; resumed by {operator}",
                     wire_time(now), rollout_id, r["stage"]])
        self._move(rollout_id, ("paused",), "running", None, accept=True)
        self.sync(rollout_id)
        return self.get(rollout_id)

    def abort(self, rollout_id, operator=None):
        """Stop for good; offers not yet taken up are withdrawn."""
        self._move(rollout_id, LIVE, "aborted", f"aborted by {operator}")
        with self.store.connect() as conn:
            open_offers = rows(run(self.store, conn,
                                   "SELECT device, district FROM ota_rollout_devices"
                                   " WHERE rollout = ? AND outcome = 'offered'", [rollout_id]))
            run(self.store, conn, "UPDATE ota_rollout_devices SET outcome = 'withdrawn'"
                " WHERE rollout = ? AND outcome IN ('offered', 'waiting')", [rollout_id])
        for d in open_offers:
            self._publish(d["district"], d["device"], b"")
        return self.get(rollout_id)

    def _move(self, rollout_id, allowed, state, reason, accept=False):
        now = wire_time(self.clock())
        with self.store.connect() as conn:
            r = self._lock(conn, rollout_id)
            if r["state"] not in allowed:
                raise Conflict(f"rollout {rollout_id} is {r['state']}: it cannot be {state}",
                               state=r["state"])
            run(self.store, conn,
                "UPDATE ota_rollouts SET state = ?, reason = ?, updated_at = ?"
                + (", accepted_stage = stage, stage_started_at = ?" if accept else "")
                + " WHERE id = ?", [state, reason, now, *([now] if accept else []), rollout_id])
        return self.get(rollout_id)

    def _lock(self, conn, rollout_id):
        return locked(self.store, conn, "SELECT * FROM ota_rollouts WHERE id = ?",
                      [rollout_id], lambda: NotFound(f"no rollout {rollout_id!r}"))

    # ------------------------------------------------------------ moving on

    def on_commit(self, items):
        """The runtime's after-commit hook: a batch with device statuses moves rollouts."""
        if any(getattr(getattr(it, "verdict", None), "kind", None) == "status"
               for it in items):
            self.sync()

    def sync(self, rollout_id=None):
        """Move every running rollout (or one) on: outcomes from the devices' statuses,
        pause on the threshold, next stage, offers.  A paused rollout's outcomes are kept
        up to date too, nothing else.  Returns the ids it changed."""
        if not self.republished and self.publisher is not None:
            self.republished = True
            self._republish()
        with self.store.connect() as conn:
            ids = [r["id"] for r in rows(run(
                self.store, conn, "SELECT id FROM ota_rollouts WHERE state IN ('running',"
                " 'paused')" + (" AND id = ?" if rollout_id else ""),
                [rollout_id] if rollout_id else []))]
        changed = []
        for rid in ids:
            offers = []
            with self.store.connect() as conn:
                if self._step(conn, rid, offers):
                    changed.append(rid)
            for district, device, payload in offers:
                self._publish(district, device, payload)
        return changed

    def _step(self, conn, rid, offers):
        r = self._lock(conn, rid)
        if r["state"] not in LIVE:
            return False
        running = r["state"] == "running"
        moment = self.clock()
        now = wire_time(moment)
        stages = json.loads(r["stages"])
        members = rows(run(self.store, conn,
                           "SELECT m.device, m.district, m.stage, m.outcome, d.status"
                           " FROM ota_rollout_devices m LEFT JOIN devices d"
                           " ON d.device = m.device WHERE m.rollout = ?", [rid]))
        changed = False
        stage = r["stage"]
        while True:
            for m in members:
                if m["stage"] > stage:
                    continue                      # a later stage: nothing counts yet
                if m["outcome"] == "waiting" and running:
                    offers.append((m["district"], m["device"],
                                   encode(make_update(rid, r["kind"], r["version"]))))
                    m["outcome"] = "offered"
                    run(self.store, conn, "UPDATE ota_rollout_devices SET outcome = 'offered',"
                        " offered_at = ? WHERE rollout = ? AND device = ?",
                        [now, rid, m["device"]])
                    changed = True
                if m["outcome"] == "offered":
                    outcome = _outcome(ota_of(m["status"]), r["version"])
                    if outcome:
                        m["outcome"] = outcome[0]
                        run(self.store, conn,
                            "UPDATE ota_rollout_devices SET outcome = ?, reason = ?,"
                            " done_at = ? WHERE rollout = ? AND device = ?",
                            [outcome[0], outcome[1], now, rid, m["device"]])
                        changed = True
            if not running:
                return changed
            current = [m for m in members if m["stage"] == stage]
            failed = sum(m["outcome"] == "failed" for m in current)
            if (current and failed * 100 > r["failure_threshold"] * len(current)
                    and r["accepted_stage"] != stage):
                reason = (f"stage {stage + 1} ({stages[stage]}%): {failed} of {len(current)} "
                          f"devices failed, over the {r['failure_threshold']:g}% threshold")
                run(self.store, conn, "UPDATE ota_rollouts SET state = 'paused', reason = ?,"
                    " stage = ?, updated_at = ? WHERE id = ?", [reason, stage, now, rid])
                return True
            if not all(m["outcome"] in FINISHED for m in current):
                if stage == r["stage"] and _overdue(r, moment):
                    silent = sorted(m["device"] for m in current
                                    if m["outcome"] not in FINISHED)
                    reason = (f"stage {stage + 1} ({stages[stage]}%): {len(silent)} of "
                              f"{len(current)} devices did not report within the stage "
                              f"timeout of {r['stage_timeout_s']:g} s: {_some(silent)}")
                    run(self.store, conn, "UPDATE ota_rollouts SET state = 'paused',"
                        " reason = ?, updated_at = ? WHERE id = ?", [reason, now, rid])
                    return True
                break
            if stage == len(stages) - 1:
                run(self.store, conn, "UPDATE ota_rollouts SET state = 'done', stage = ?,"
                    " reason = NULL, updated_at = ? WHERE id = ?", [stage, now, rid])
                return True
            stage += 1
            changed = True
        if stage != r["stage"]:
            run(self.store, conn, "UPDATE ota_rollouts SET stage = ?, updated_at = ?,"
                " stage_started_at = ? WHERE id = ?", [stage, now, now, rid])
        return changed

    def _republish(self):
        with self.store.connect() as conn:
            found = rows(run(self.store, conn,
                             "SELECT r.id, r.kind, r.version, m.device, m.district"
                             " FROM ota_rollouts r JOIN ota_rollout_devices m"
                             " ON m.rollout = r.id WHERE r.state IN ('running', 'paused')"
                             " AND m.outcome = 'offered' ORDER BY m.device"))
        for o in found:
            self._publish(o["district"], o["device"],
                          encode(make_update(o["id"], o["kind"], o["version"])))

    def _publish(self, district, device, payload):
        if self.publisher is None:
            return
        self.publisher(topics.topic(district, device, "update"), payload, qos=1, retain=True)


def _overdue(r, moment):
    """Whether rollout row ``r``'s current stage has run past its timeout at ``moment``."""
    if r.get("stage_timeout_s") is None or not r.get("stage_started_at"):
        return False
    started = datetime.datetime.fromisoformat(r["stage_started_at"].replace("Z", "+00:00"))
    if not isinstance(moment, datetime.datetime):   # a clock of Unix seconds
        moment = datetime.datetime.fromtimestamp(moment, datetime.UTC)
    return (moment - started).total_seconds() > r["stage_timeout_s"]


def _some(names):
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _outcome(ota, version):
    """("installed", None) / ("failed", reason) from a device's ``ota`` status, or None."""
    if not ota:
        return None
    if ota.get("installed") == version and ota.get("pending") is None:
        return "installed", None
    failed = ota.get("failed")
    if isinstance(failed, dict) and failed.get("version") == version:
        return "failed", str(failed.get("reason"))[:200]
    return None


def _shown(r, devices):
    stages = json.loads(r["stages"])
    per_stage = []
    for k, pct in enumerate(stages):
        mine = [d for d in devices if d["stage"] == k]
        counts = {}
        for d in mine:
            counts[d["outcome"]] = counts.get(d["outcome"], 0) + 1
        per_stage.append({"stage": k + 1, "percent": pct, "devices": len(mine), **counts})
    return {"id": r["id"], "kind": r["kind"], "version": r["version"],
            "target": json.loads(r["target"]), "stages": stages,
            "failure_threshold": r["failure_threshold"],
            "stage_timeout_s": r.get("stage_timeout_s"),
            "stage_started_at": r.get("stage_started_at"), "state": r["state"],
            "stage": r["stage"] + 1, "reason": r["reason"], "created_at": r["created_at"],
            "created_by": r["created_by"], "updated_at": r["updated_at"],
            "progress": per_stage, "devices": devices}
