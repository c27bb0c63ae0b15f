"""Desired state on the centre's side: configuration changes per device or group, the
signed document each device gets, and what each device reports back.

A change (table ``fleetcfg_changes``) targets one device, a district, a profile or a
list of devices, and sets some of the settings a centre may change (button classes,
track and status intervals, photo budget, fix age) and optionally the map and code book.
Its number is the version: a device's desired state is every change that targets it,
later ones over earlier ones setting by setting (buttons button by button), and its
version the newest such change.  Each device's document is signed with the centre's
Ed25519 key (``cryptography``; the device verifies with ``firmware/core/ed25519``) and
published retained on ``…/{device}/config``; it is kept in ``fleetcfg_documents`` so a
reported version can be compared with what is desired now (drift).
"""

import json
from importlib import resources
from pathlib import Path

from ..firmware.core import desired
from ..firmware.core.errors import CoreError
from .clock import wire_time
from .queue import Invalid, NotFound, system_clock
from .store.sql import decode_json, one, rows, run
from .tasks import _device
from .topics import PREFIX

SCOPES = ("device", "district", "profile", "list")

MIGRATIONS = (
    (
        "fleetcfg_001_changes",
        "CREATE TABLE IF NOT EXISTS fleetcfg_changes ("
        " version INTEGER PRIMARY KEY AUTOINCREMENT, scope TEXT NOT NULL, target TEXT NOT NULL,"
        " settings TEXT NOT NULL, map TEXT, codebook TEXT, created_at TEXT NOT NULL,"
        " created_by TEXT)",
        "CREATE TABLE IF NOT EXISTS fleetcfg_changes ("
        " version BIGSERIAL PRIMARY KEY, scope TEXT NOT NULL, target TEXT NOT NULL,"
        " settings TEXT NOT NULL, map TEXT, codebook TEXT, created_at TEXT NOT NULL,"
        " created_by TEXT)",
    ),
    (
        "fleetcfg_002_documents",
        "CREATE TABLE IF NOT EXISTS fleetcfg_documents ("
        " device TEXT NOT NULL, version INTEGER NOT NULL, district TEXT NOT NULL,"
        " settings TEXT NOT NULL, sha256 TEXT NOT NULL, message TEXT NOT NULL,"
        " sent_at TEXT, PRIMARY KEY (device, version))",
        "CREATE TABLE IF NOT EXISTS fleetcfg_documents ("
        " device TEXT NOT NULL, version BIGINT NOT NULL, district TEXT NOT NULL,"
        " settings TEXT NOT NULL, sha256 TEXT NOT NULL, message TEXT NOT NULL,"
        " sent_at TEXT, PRIMARY KEY (device, version))",
    ),
    (
        "fleetcfg_003_broker",
        "ALTER TABLE fleetcfg_changes ADD COLUMN broker TEXT",
        "ALTER TABLE fleetcfg_changes ADD COLUMN IF NOT EXISTS broker TEXT",
    ),
)


def profile_schema():
    """The device profile schema (device_profiles/schema.json, as installed)."""
    text = resources.files("gridlink.device_profiles").joinpath("schema.json").read_text(
        encoding="utf-8")
    return json.loads(text)


def shipped_buttons(profile):
    """The button names of a shipped device profile (device_profiles/<profile>.json), or
    None when the gateway ships no profile of that name (a district's own)."""
    if not (isinstance(profile, str) and profile.replace("-", "").isalnum()):
        return None
    path = resources.files("gridlink.device_profiles").joinpath(f"{profile}.json")
    if not path.is_file():
        return None
    obj = json.loads(path.read_text(encoding="utf-8"))
    return sorted(b["name"] for b in obj.get("buttons", []))


def load_key(path):
    """The centre's Ed25519 private key from a PEM file (``gridlink fleet config key``)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from .errors import ConfigError

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"configuration key {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"configuration key {path}: not an unencrypted PEM key ({exc})"
                          ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"configuration key {path}: not an Ed25519 key")
    return key


def public_hex(key):
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


RESETTABLE = ("track_interval_s", "status_interval_s", "photo_max_bytes", "max_fix_age_s")


def reset_settings(names, schema):
    """``{setting: None, "buttons": {name: None}}`` for names a change sets back to the
    device's profile (``status_interval_s``, ``buttons.horn``); Invalid names the misfit."""
    button_name = schema["$defs"]["button"]["properties"]["name"]["pattern"]
    out = {}
    for name in names:
        head, dot, button = str(name).partition(".")
        if head == "buttons" and dot and _search(button_name, button):
            out.setdefault("buttons", {})[button] = None
        elif name in RESETTABLE:
            out[name] = None
        else:
            raise Invalid(f"reset: {name!r} is not a setting a centre changes (one of "
                          f"{', '.join(RESETTABLE)}, or buttons.NAME)")
    return out


def merge(changes):
    """The settings, map, code book and broker of ``changes`` (oldest first), later over
    earlier; a setting a change sets to None (a reset) is back to the device's profile."""
    settings, out = {}, {"map": None, "codebook": None, "broker": None}
    for change in changes:
        for name, value in change["settings"].items():
            if name == "buttons":
                buttons = settings.setdefault("buttons", {})
                for bname, button in value.items():
                    if button is None:
                        buttons.pop(bname, None)
                    else:
                        buttons[bname] = dict(button)
                if not buttons:
                    del settings["buttons"]
            elif value is None:
                settings.pop(name, None)
            else:
                settings[name] = value
        for k in ("map", "codebook", "broker"):
            if change.get(k) is not None:
                out[k] = change[k]
    return {"settings": settings, **out}


def differences(desired_settings, reported_settings):
    """Sorted ``[{field, desired, reported}]`` where two settings dicts differ."""
    flat_a, flat_b = _flatten(desired_settings or {}), _flatten(reported_settings or {})
    return [{"field": k, "desired": flat_a.get(k), "reported": flat_b.get(k)}
            for k in sorted(set(flat_a) | set(flat_b)) if flat_a.get(k) != flat_b.get(k)]


def _flatten(settings, prefix=""):
    out = {}
    for k, v in settings.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


NODE_PROFILE = "sensor-node"   # devices that fetch the smallest file of a code book


class FleetConfig:
    """Record changes, sign and publish each device's document, compare with reports.

    ``key``: the centre's Ed25519 private key (None: changes are refused);
    ``publisher(topic, payload, qos=1, retain=False)``: the running gateway's publish
    (None: documents wait, unsent, for ``sync``); ``check_code(kind, code)``: None when
    the class is in the code book, else why not; ``book_files`` (an
    ``update_chunks.CodeBookFiles``, or None): the code book files the gateway serves, whose
    sha256 goes in the documents as ``codebook_sha256`` — a sensor node's the smallest file
    of the book (``for_node``: a slim copy), a Pi's the whole book (``for_pi``);
    ``map_files`` (an ``update_chunks.MapFiles``, or None): the maps the gateway serves.
    With either, a change naming a book or map the gateway does not serve is refused:
    every device that lacks it would refuse the document.
    """

    def __init__(self, store, *, key=None, publisher=None, clock=None, check_code=None,
                 book_files=None, map_files=None):
        self.store, self.key, self.publisher = store, key, publisher
        self.book_files, self.map_files = book_files, map_files
        self.clock = clock or system_clock
        self.check_code = check_code
        self.schema = profile_schema()

    # ------------------------------------------------------------ changing

    def change(self, scope, target, settings, map_sha256=None, codebook=None, operator=None,
               broker=None, reset=()):
        """Record a change and sign and send the document of every device it reaches
        (``broker``: a new broker URL, which each device takes only once it connects;
        ``reset``: settings set back to the device's profile, e.g. ``buttons.horn``)."""
        if self.key is None:
            raise Invalid("this gateway holds no configuration key: start it with "
                          "--config-key FILE (`gridlink fleet config key FILE` makes one)")
        target = self._target(scope, target)
        if not isinstance(settings, dict) or not (settings or map_sha256 or codebook
                                                  or broker or reset):
            raise Invalid("settings: give at least one setting, a reset, a map, a code book "
                          "or a broker")
        resets = reset_settings(reset, self.schema)
        both = sorted(set(settings) & set(resets) - {"buttons"}) + sorted(
            f"buttons.{b}" for b in set(settings.get("buttons") or {})
            & set(resets.get("buttons") or {}))
        if both:
            raise Invalid(f"reset: {', '.join(both)} is both set and reset")
        try:                        # the document check the devices make, before storing
            desired.validate_settings(settings, self.schema, _search)
            desired.document("pv-0000", "000000", 1, settings, 1, map_sha256, codebook,
                             broker)
        except desired.ConfigRefused as exc:
            raise Invalid(f"{exc.field or exc.reason}: {exc.message}") from None
        except CoreError as exc:        # e.g. NaN, which JSON cannot carry to a device
            raise Invalid(f"settings: {exc}") from None
        for bname, button in sorted(settings.get("buttons", {}).items()):
            why = self.check_code and self.check_code(button["kind"], button["code"])
            if why:
                raise Invalid(f"settings.buttons.{bname}.code: {why}")
        self._check_button_names(scope, target, settings.get("buttons") or {})
        self._check_served(map_sha256, codebook)
        if resets:
            settings = {**settings, **{k: v for k, v in resets.items() if k != "buttons"}}
            if "buttons" in resets:
                settings["buttons"] = {**settings.get("buttons", {}), **resets["buttons"]}
        now = wire_time(self.clock())
        with self.store.connect() as conn:
            cur = run(self.store, conn,
                      "INSERT INTO fleetcfg_changes (scope, target, settings, map, codebook,"
                      " broker, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                      " RETURNING version",
                      [scope, target, json.dumps(settings, ensure_ascii=False), map_sha256,
                       codebook, broker, now, operator])
            version = one(cur)["version"]
        self.sync()
        with self.store.connect() as conn:
            docs = rows(run(self.store, conn, "SELECT device, sent_at FROM fleetcfg_documents"
                            " WHERE version = ? ORDER BY device", [version]))
        return {**self.get_change(version), "devices": [d["device"] for d in docs],
                "sent": [d["device"] for d in docs if d["sent_at"]]}

    def _check_served(self, map_sha256, codebook):
        if map_sha256 and self.map_files is not None and not self.map_files.has(map_sha256):
            raise Invalid(f"map: the gateway serves no map with sha256 {map_sha256[:12]}… "
                          "(put the .glgm file in its --map-files folder first)")
        if codebook and self.book_files is not None and self.book_files.for_pi(codebook) is None:
            raise Invalid(f"codebook: the gateway serves no code book {codebook} (put its "
                          "file in its --codebook-files folder first)")

    def _check_button_names(self, scope, target, buttons):
        """Refuse a button that a shipped profile the change reaches lacks (the profile
        named, or those of the known devices it reaches): each of its devices would refuse
        this document and every later one, which carries the button too."""
        if not buttons:
            return
        if scope == "profile":
            profiles = {target}
        else:
            change = {"scope": scope, "target": target}
            with self.store.connect() as conn:
                profiles = {d["profile"] for d in self._devices(conn)
                            if self._reaches(change, d)}
        for profile in sorted(p for p in profiles if p):
            names = shipped_buttons(profile)
            for bname in sorted(buttons):
                if names is not None and bname not in names:
                    raise Invalid(f"settings.buttons.{bname}: profile {profile} has "
                                  + (f"no such button ({', '.join(names)})" if names
                                     else "no buttons"))

    def _target(self, scope, target):
        if scope not in SCOPES:
            raise Invalid(f"scope: one of {', '.join(SCOPES)}, not {scope!r}")
        if scope == "list":
            items = target if isinstance(target, list) else str(target).split(",")
            devices = sorted({_device(d) for d in items if str(d).strip()})
            if not devices:
                raise Invalid("target: a list of device ids")
            return ",".join(devices)
        target = str(target or "").strip()
        if scope == "device":
            return _device(target)
        if scope == "district" and not (target.isascii() and target.isdigit()
                                        and len(target) == 6):
            raise Invalid(f"target: a 6-digit district code, not {target!r}")
        if scope == "profile" and not target:
            raise Invalid("target: a profile name, e.g. patrol-vehicle")
        return target

    # ------------------------------------------------------------ per device

    def _devices(self, conn):
        return rows(run(self.store, conn,
                        "SELECT device, district, profile, status FROM devices ORDER BY device"))

    def _changes(self, conn):
        found = rows(run(self.store, conn, "SELECT * FROM fleetcfg_changes ORDER BY version"))
        for c in found:
            c["settings"] = decode_json(c["settings"], {})
        return found

    @staticmethod
    def _reaches(change, device):
        scope, target = change["scope"], change["target"]
        return ((scope == "device" and target == device["device"])
                or (scope == "district" and target == device.get("district"))
                or (scope == "profile" and target == device.get("profile"))
                or (scope == "list" and device["device"] in target.split(",")))

    def desired_for(self, device, changes):
        """{version, settings, map, codebook} desired for a device row (version None when
        no change reaches it)."""
        mine = [c for c in changes if self._reaches(c, device)]
        if not mine:
            return {"version": None, "settings": {}, "map": None, "codebook": None,
                    "broker": None}
        return {"version": mine[-1]["version"], **merge(mine)}

    def sync(self):
        """Sign each known device's desired document when it is newer than the last one
        made, and publish what is unsent; returns {change version: [devices]} of what
        was sent now."""
        sent = {}
        with self.store.connect() as conn:
            changes = self._changes(conn)
            devices = self._devices(conn)
            made = {r["device"]: r for r in rows(run(
                self.store, conn, "SELECT device, MAX(version) AS version FROM"
                " fleetcfg_documents GROUP BY device"))}
        for device in devices:
            want = self.desired_for(device, changes)
            have = made.get(device["device"])
            if want["version"] is None or (have and have["version"] >= want["version"]):
                continue
            self._make(device, want)
        with self.store.connect() as conn:
            unsent = rows(run(self.store, conn,
                              "SELECT device, version, district, message FROM fleetcfg_documents"
                              " WHERE sent_at IS NULL ORDER BY device, version"))
        for doc in unsent:
            if self.publisher is None:
                break
            topic = f"{PREFIX}{doc['district']}/{doc['device']}/config"
            try:
                self.publisher(topic, doc["message"].encode("utf-8"), qos=1, retain=True)
            except Exception:  # the link is down: sent at the next sync
                break
            with self.store.connect() as conn:
                run(self.store, conn, "UPDATE fleetcfg_documents SET sent_at = ?"
                    " WHERE device = ? AND version = ?",
                    [wire_time(self.clock()), doc["device"], doc["version"]])
            sent.setdefault(doc["version"], []).append(doc["device"])
        return sent

    def _make(self, device, want):
        district = device.get("district") or ""
        book_sha = None
        if want["codebook"] and self.book_files is not None:
            book_sha = (self.book_files.for_node if device.get("profile") == NODE_PROFILE
                        else self.book_files.for_pi)(want["codebook"])
        doc = desired.document(device["device"], district, want["version"], want["settings"],
                               int(self.clock().timestamp()), want["map"], want["codebook"],
                               want["broker"], codebook_sha256=book_sha)
        message = desired.envelope(doc, self.key.sign(desired.digest(doc)))
        with self.store.connect() as conn:
            run(self.store, conn,
                "INSERT INTO fleetcfg_documents (device, version, district, settings, sha256,"
                " message) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (device, version) DO NOTHING",
                [device["device"], want["version"], district,
                 json.dumps(want["settings"], ensure_ascii=False), desired.digest(doc).hex(),
                 message.decode("utf-8")])

    # ------------------------------------------------------------ reading

    def get_change(self, version):
        with self.store.connect() as conn:
            c = one(run(self.store, conn, "SELECT * FROM fleetcfg_changes WHERE version = ?",
                        [int(version)]))
        if c is None:
            raise NotFound(f"no configuration change {version}")
        c["settings"] = decode_json(c["settings"], {})
        return c

    def changes(self, limit=100):
        with self.store.connect() as conn:
            found = rows(run(self.store, conn, "SELECT * FROM fleetcfg_changes"
                             " ORDER BY version DESC LIMIT ?", [int(limit)]))
        for c in found:
            c["settings"] = decode_json(c["settings"], {})
        return found

    def states(self, device=None):
        """Per device: desired version and settings, the reported version and settings,
        drift (the fields that differ), and the device's last refusal."""
        with self.store.connect() as conn:
            changes = self._changes(conn)
            devices = self._devices(conn)
            docs = {(r["device"], r["version"]): decode_json(r["settings"], {}) for r in rows(
                run(self.store, conn, "SELECT device, version, settings FROM fleetcfg_documents"))}
        if device is not None:
            devices = [d for d in devices if d["device"] == device]
            if not devices:
                raise NotFound(f"no device {device!r} has reported")
        out = []
        for d in devices:
            want = self.desired_for(d, changes)
            config = (decode_json(d.get("status"), {}) or {}).get("config") or {}
            reported = config.get("version")
            have = docs.get((d["device"], reported), {}) if reported else {}
            diff = differences(want["settings"], have)
            out.append({
                "device": d["device"], "district": d.get("district"),
                "profile": d.get("profile"), "desired": want["version"],
                "reported": reported, "drift": want["version"] != reported,
                "differences": diff, "settings": want["settings"], "map": want["map"],
                "codebook": want["codebook"], "broker": want["broker"],
                "last_refused": config.get("refused")})
        return out


def _search(pattern, text):
    import re

    return re.search(pattern, text)
