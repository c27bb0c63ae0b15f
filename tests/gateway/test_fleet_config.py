"""Desired state at the centre: a technician changes a group's configuration over the API
(audited), each device of the group gets its own signed document, retained, on its
``…/config`` topic (a real Mosquitto), and the fleet view compares desired with reported.
A bad change is refused whole, naming the field, and nothing is stored or sent."""

import hashlib
import json
import queue
import time

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gridlink.firmware.core import desired
from gridlink.gateway.api import MIGRATIONS, create_app
from gridlink.gateway.fleet_config import differences, merge, public_hex
from gridlink.gateway.httpserver import BackgroundServer
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.gateway.test_api_tasks import Publisher, add_device
from tests.support.intake_api import Api, Clock, Tokens

KEY = Ed25519PrivateKey.generate()
CHANGE = {"scope": "profile", "target": "patrol-vehicle",
          "settings": {"buttons": {"garbage": {"kind": "event", "code": "07001"}},
                       "status_interval_s": 30}}


class Watcher:
    """A client reading every device's retained configuration documents."""

    def __init__(self, broker):
        self.got = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="cfg-watch")
        self.client.on_message = lambda c, u, m: self.got.put((m.topic, m.payload, m.retain))
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe("gridlink/v1/+/+/config", qos=1)
        self.client.loop_start()

    def take(self, n, timeout=15):
        return sorted(self.got.get(timeout=timeout) for _ in range(n))

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


class RetainingPublisher(Publisher):
    def __call__(self, topic, payload, qos=1, retain=False):
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)


@pytest.fixture
def wired(store, broker, tmp_path):
    pub = RetainingPublisher(broker)
    app = create_app(store, clock=Clock(), publisher=pub, photos_dir=tmp_path / "photos",
                     config_key=KEY)
    tokens = Tokens(store, roles={"tech": ("technician",), "acc": ("acceptor",)})
    with BackgroundServer(app) as server:
        yield Api(server.url, tokens), app
    pub.close()


def report_version(store, device, version, refused=None):
    """What a device's status says (the real device does this in tests/device)."""
    with store.connect() as conn:
        row = conn.execute(store.sql("SELECT status FROM devices WHERE device = ?"),
                           (device,)).fetchone()
        status = json.loads(row["status"] if isinstance(row, dict) else row[0])
        status["config"] = {"version": version, "refused": refused}
        conn.execute(store.sql("UPDATE devices SET status = ? WHERE device = ?"),
                     (json.dumps(status), device))


def test_a_group_change_reaches_each_device_signed_for_it_and_drift_is_shown(
        wired, store, broker):
    api, _ = wired
    for device in ("pv-0001", "pv-0002"):
        add_device(store, device)
    add_device(store, "ft-0001", profile="fixed-terminal")
    watch = Watcher(broker)
    try:
        status, change = api.post("/api/fleet/config", {**CHANGE, "operator": "tech"})
        assert status == 201, change
        assert change["version"] == 1 and change["devices"] == ["pv-0001", "pv-0002"]
        assert change["sent"] == change["devices"]
        watch.take(2)
    finally:
        watch.close()
    late = Watcher(broker)                 # one subscribing later gets them, retained
    try:
        got = late.take(2)
    finally:
        late.close()
    public = bytes.fromhex(public_hex(KEY))
    for (topic, payload, retain), device in zip(got, ("pv-0001", "pv-0002"), strict=True):
        assert topic == f"gridlink/v1/410106/{device}/config" and retain
        doc = desired.check(payload, [public], device)
        assert doc["version"] == 1 and doc["settings"] == CHANGE["settings"]
    # a later change for one device wins over the group's for that device only
    status, one = api.post("/api/fleet/config", {
        "scope": "device", "target": "pv-0002",
        "settings": {"buttons": {"garbage": {"kind": "event", "code": "06013"}}}})
    assert status == 201 and one["devices"] == ["pv-0002"]
    report_version(store, "pv-0001", 1)
    report_version(store, "pv-0002", 1)
    status, states = api.get("/api/fleet/config/devices")
    by = {s["device"]: s for s in states}
    assert (by["pv-0001"]["desired"], by["pv-0001"]["reported"], by["pv-0001"]["drift"]) == (
        1, 1, False)
    assert (by["pv-0002"]["desired"], by["pv-0002"]["drift"]) == (2, True)
    assert by["pv-0002"]["differences"] == [
        {"field": "buttons.garbage.code", "desired": "06013", "reported": "07001"}]
    assert by["ft-0001"]["desired"] is None and not by["ft-0001"]["drift"]
    # the fleet view carries the same, and a device's refusal
    refusal = {"version": 2, "reason": "schema", "field": "settings.buttons.garbage.code",
               "message": "99999 is not a class"}
    report_version(store, "pv-0002", 1, refusal)
    status, devices = api.get("/api/devices")
    seen = {d["device"]: d["config"] for d in devices}
    assert seen["pv-0002"]["drift"] and seen["pv-0002"]["last_refused"] == refusal
    assert seen["pv-0001"] == {"desired": 1, "reported": 1, "drift": False,
                               "differences": [], "last_refused": None}
    # the change is on the audit trail in the technician's name
    status, entries = api.get("/api/audit?target=config:1")
    assert status == 200
    assert [(e["actor"], e["action"]) for e in entries] == [("tech", "fleet.config")]
    assert entries[0]["after"]["devices"] == ["pv-0001", "pv-0002"]


@pytest.mark.parametrize("settings, code, words", [
    ({"status_interval_s": 1}, 422, "['body', 'settings', 'status_interval_s']"),
    ({"buttons": {"garbage": {"kind": "event", "code": "99999"}}}, 400,
     "settings.buttons.garbage.code: event 99999 is not a class"),
    ({"buttons": {"Garbage!": {"kind": "event", "code": "06010"}}}, 400,
     'settings.buttons.Garbage!: "Garbage!" does not have the form'),
    ({"board": "pi5"}, 422, "['body', 'settings', 'board']"),
    ({}, 400, "give at least one setting"),
    # a button its profile lacks: every device would refuse every later document
    ({"buttons": {"horn": {"kind": "event", "code": "06010"}}}, 400,
     "settings.buttons.horn: profile patrol-vehicle has no such button (flyposting, "
     "garbage, parking, road)"),
])
def test_a_bad_change_is_refused_naming_the_field_and_nothing_is_stored_or_sent(
        wired, store, broker, settings, code, words):
    api, _ = wired
    add_device(store, "pv-0001")
    watch = Watcher(broker)
    try:
        status, body = api.post("/api/fleet/config", {"scope": "device", "target": "pv-0001",
                                                      "settings": settings})
        shown = body["detail"] if code == 400 else str([d["loc"] for d in body["detail"]])
        assert status == code and words in shown, body
        assert api.get("/api/fleet/config") == (200, [])
        with pytest.raises(queue.Empty):
            watch.got.get(timeout=1)
    finally:
        watch.close()


def test_a_button_a_profile_lacks_is_refused_for_the_profile_and_its_devices(wired, store):
    api, _ = wired
    add_device(store, "sn-0001", profile="sensor-node")
    add_device(store, "pv-0001")
    horn = {"buttons": {"horn": {"kind": "event", "code": "06010"}}}
    for scope, target in (("profile", "patrol-vehicle"), ("district", "410106"),
                          ("list", "pv-0001,sn-0001")):
        status, body = api.post("/api/fleet/config", {"scope": scope, "target": target,
                                                      "settings": horn})
        assert status == 400 and "settings.buttons.horn: profile " in body["detail"], body
    status, body = api.post("/api/fleet/config", {"scope": "device", "target": "sn-0001",
                                                  "settings": {"buttons": CHANGE["settings"]
                                                               ["buttons"]}})
    assert status == 400 and body["detail"] == ("settings.buttons.garbage: profile "
                                                "sensor-node has no buttons")
    assert api.get("/api/fleet/config") == (200, [])
    # a profile the gateway does not ship (a district's own) is the devices' to judge
    status, _ = api.post("/api/fleet/config", {"scope": "profile", "target": "tram",
                                               "settings": horn})
    assert status == 201


def test_only_fleet_technicians_change_configuration(wired, store):
    api, _ = wired
    add_device(store, "pv-0001")
    status, _ = api.post("/api/fleet/config", {**CHANGE, "operator": "acc"})
    assert status == 403
    assert api.anonymous().post("/api/fleet/config", CHANGE)[0] == 401
    assert api.call("GET", "/api/fleet/config", user="acc")[0] == 200
    assert api.get("/api/fleet/config") == (200, [])


def test_without_a_key_a_change_is_refused_with_the_fix(store, tmp_path):
    app = create_app(store, clock=Clock(), photos_dir=tmp_path / "photos")
    with BackgroundServer(app) as server:
        api = Api(server.url, Tokens(store))
        status, body = api.post("/api/fleet/config", CHANGE)
    assert status == 400 and "--config-key" in body["detail"]


def test_a_device_first_seen_later_gets_its_group_document_at_the_next_sync(wired, store,
                                                                             broker):
    api, app = wired
    add_device(store, "pv-0001")
    assert api.post("/api/fleet/config", CHANGE)[0] == 201
    add_device(store, "pv-0003")
    watch = Watcher(broker)                 # the retained one of pv-0001 arrives at once
    try:
        assert [t for t, _, _ in watch.take(1)] == ["gridlink/v1/410106/pv-0001/config"]
        assert app.state.fleet_config.sync() == {1: ["pv-0003"]}
        (topic, payload, _), = watch.take(1)
        assert topic == "gridlink/v1/410106/pv-0003/config"
        assert desired.check(payload, [bytes.fromhex(public_hex(KEY))], "pv-0003")["version"] == 1
    finally:
        watch.close()


def test_a_value_json_cannot_carry_to_a_device_is_refused(store, tmp_path):
    from gridlink.gateway.fleet_config import FleetConfig
    from gridlink.gateway.queue import Invalid

    store.migrate(extra=MIGRATIONS)
    fleet = FleetConfig(store, key=KEY)
    with pytest.raises(Invalid, match=r"settings\.track_interval_s: must be number"):
        fleet.change("device", "pv-0001", {"track_interval_s": float("nan")})
    assert fleet.changes() == []


def test_the_running_gateway_sends_a_device_first_seen_later_its_document(broker, tmp_path):
    """``gridlink gateway run --config-key``: a device that reports after a group change
    gets the group's document at the next sync round, without another change."""
    from gridlink.fleet.config import make_key
    from gridlink.gateway.service import Gateway

    make_key(tmp_path / "config.pem")
    gw = Gateway(broker=broker.url, db=f"sqlite:///{tmp_path}/intake.sqlite",
                 http="127.0.0.1:0", photos=str(tmp_path / "photos"),
                 config_key=str(tmp_path / "config.pem"), config_sync_s=0.5).start()
    watch = Watcher(broker)
    try:
        add_device(gw.store, "pv-0001")
        api = Api(gw.http.url, Tokens(gw.store))
        assert api.post("/api/fleet/config", CHANGE)[0] == 201
        assert [t for t, _, _ in watch.take(1)] == ["gridlink/v1/410106/pv-0001/config"]
        add_device(gw.store, "pv-0009")                   # its first status arrives
        (topic, payload, _), = watch.take(1)
        assert topic == "gridlink/v1/410106/pv-0009/config"
        public = (tmp_path / "config.pem.pub").read_text().strip()
        assert desired.check(payload, [bytes.fromhex(public)], "pv-0009")["version"] == 1
    finally:
        watch.close()
        gw.stop()


SETTING = st.sampled_from(["track_interval_s", "status_interval_s", "photo_max_bytes",
                           "max_fix_age_s"])
BUTTONS = st.dictionaries(st.sampled_from(["garbage", "parking", "road"]),
                          st.fixed_dictionaries({"kind": st.just("event"),
                                                 "code": st.sampled_from(["06010", "07001"])}),
                          max_size=2)
CHANGES = st.lists(st.fixed_dictionaries({
    "settings": st.dictionaries(SETTING, st.integers(5, 600), max_size=3).flatmap(
        lambda s: BUTTONS.map(lambda b: {**s, **({"buttons": b} if b else {})})),
    "map": st.none() | st.sampled_from(["a" * 64, "b" * 64])}), max_size=5)


@settings(deadline=None)
@given(CHANGES)
def test_later_changes_win_setting_by_setting_and_differences_name_each_field(changes):
    merged = merge(changes)
    for name in ("track_interval_s", "status_interval_s", "photo_max_bytes", "max_fix_age_s"):
        last = [c["settings"][name] for c in changes if name in c["settings"]]
        assert merged["settings"].get(name) == (last[-1] if last else None)
    for button in ("garbage", "parking", "road"):
        last = [c["settings"]["buttons"][button] for c in changes
                if button in c["settings"].get("buttons", {})]
        assert merged["settings"].get("buttons", {}).get(button) == (last[-1] if last else None)
    maps = [c["map"] for c in changes if c["map"]]
    assert merged["map"] == (maps[-1] if maps else None)
    assert differences(merged["settings"], merged["settings"]) == []
    if changes:
        first = merge(changes[:1])["settings"]
        for d in differences(merged["settings"], first):
            assert d["desired"] != d["reported"]


def test_a_devices_document_names_the_file_of_its_code_book(store, broker, tmp_path):
    """A change naming a code book: a sensor node's document carries the sha256 of the
    smallest file of that book the gateway serves (a slim copy), a Pi's that of the whole
    book."""
    from gridlink.firmware.codebooks import build
    from gridlink.gateway.update_chunks import CodeBookFiles, shipped_books

    full = (shipped_books() / "gbt47678.5-2026.json").read_bytes()
    (tmp_path / "books").mkdir()
    slim = build.dump(build.slim(json.loads(full)))
    (tmp_path / "books" / "slim.json").write_bytes(slim)
    files = CodeBookFiles(shipped_books(), tmp_path / "books")
    book_id = "GB/T 47678.5-2026@9b9bd01eda60"
    assert files.for_node(book_id) == hashlib.sha256(slim).hexdigest() != hashlib.sha256(
        full).hexdigest()
    assert files.for_node("GB/T 47678.5-2026@000000000000") is None
    pub = RetainingPublisher(broker)
    app = create_app(store, clock=Clock(), publisher=pub, photos_dir=tmp_path / "photos",
                     config_key=KEY, book_files=files)
    add_device(store, "sn-0001", profile="sensor-node")
    add_device(store, "pv-0001")
    watch = Watcher(broker)
    try:
        with BackgroundServer(app) as server:
            api = Api(server.url, Tokens(store, roles={"tech": ("technician",)}))
            status, change = api.post("/api/fleet/config", {
                "scope": "district", "target": "410106", "settings": {},
                "codebook": book_id, "operator": "tech"})
            assert status == 201, change
            got = watch.take(2)
    finally:
        watch.close()
        pub.close()
    public = bytes.fromhex(public_hex(KEY))
    docs = {topic.split("/")[3]: desired.check(payload, [public], topic.split("/")[3])
            for topic, payload, _ in got}
    assert docs["sn-0001"]["codebook_sha256"] == hashlib.sha256(slim).hexdigest()
    assert docs["pv-0001"]["codebook_sha256"] == hashlib.sha256(full).hexdigest()
    assert docs["pv-0001"]["codebook"] == docs["sn-0001"]["codebook"] == book_id


def test_a_reset_withdraws_what_earlier_changes_set_back_to_the_profile(wired, store, broker):
    # a district's own profile is the devices' to judge, so a button its devices lack can be
    # sent; every later document carries it until a change resets it
    api, _ = wired
    add_device(store, "tr-0001", profile="tram")
    horn = {"buttons": {"horn": {"kind": "event", "code": "06010"},
                        "garbage": {"kind": "event", "code": "07001"}}, "status_interval_s": 30}
    assert api.post("/api/fleet/config", {"scope": "profile", "target": "tram",
                                          "settings": horn})[0] == 201
    assert api.post("/api/fleet/config", {"scope": "device", "target": "tr-0001",
                                          "settings": {"track_interval_s": 5}})[0] == 201
    status, change = api.post("/api/fleet/config", {
        "scope": "profile", "target": "tram", "settings": {},
        "reset": ["buttons.horn", "status_interval_s"]})
    assert status == 201 and change["version"] == 3 and change["devices"] == ["tr-0001"]
    watch = Watcher(broker)
    try:
        (_topic, payload, _retain), = watch.take(1)
    finally:
        watch.close()
    doc = desired.check(payload, [bytes.fromhex(public_hex(KEY))], "tr-0001")
    assert doc["version"] == 3
    assert doc["settings"] == {"buttons": {"garbage": {"kind": "event", "code": "07001"}},
                               "track_interval_s": 5}
    # the change list says what was reset
    status, changes = api.get("/api/fleet/config")
    assert changes[0]["settings"] == {"buttons": {"horn": None}, "status_interval_s": None}


@pytest.mark.parametrize("body, words", [
    ({"reset": ["board"]}, "reset: 'board' is not a setting a centre changes"),
    ({"reset": ["buttons.Horn!"]}, "reset: 'buttons.Horn!' is not a setting"),
    ({"reset": ["status_interval_s"], "settings": {"status_interval_s": 30}},
     "reset: status_interval_s is both set and reset"),
    ({"reset": ["buttons.garbage"],
      "settings": {"buttons": {"garbage": {"kind": "event", "code": "07001"}}}},
     "reset: buttons.garbage is both set and reset"),
])
def test_a_bad_reset_is_refused_naming_it_and_nothing_is_stored(wired, store, body, words):
    api, _ = wired
    add_device(store, "pv-0001")
    status, got = api.post("/api/fleet/config", {"scope": "device", "target": "pv-0001",
                                                 "settings": {}, **body})
    assert status == 400 and words in got["detail"], got
    assert api.get("/api/fleet/config") == (200, [])


@settings(deadline=None)
@given(CHANGES, st.lists(SETTING, max_size=2), st.lists(st.sampled_from(
    ["garbage", "parking", "road"]), max_size=2))
def test_a_reset_after_any_changes_leaves_the_setting_to_the_profile(changes, names, buttons):
    from gridlink.gateway.fleet_config import profile_schema, reset_settings

    reset = reset_settings(names + [f"buttons.{b}" for b in buttons], profile_schema())
    merged = merge([*changes, {"settings": reset, "map": None}])["settings"]
    for name in names:
        assert name not in merged
    for b in buttons:
        assert b not in merged.get("buttons", {})
    assert merged.get("buttons", True) != {}     # no empty button section is made
    before = merge(changes)["settings"]
    for name in set(before) - set(names) - {"buttons"}:
        assert merged[name] == before[name]


def test_a_map_or_book_the_gateway_does_not_serve_is_refused_at_the_centre(store, tmp_path):
    # every device that lacks it would refuse the document; a file put in the folder is
    # served, and then named, without a restart
    from gridlink.gateway.update_chunks import CodeBookFiles, MapFiles, shipped_books

    from tests.support.artifacts import redrawn_map, sha

    (tmp_path / "maps").mkdir()
    maps, books = MapFiles(tmp_path / "maps"), CodeBookFiles(shipped_books())
    app = create_app(store, clock=Clock(), photos_dir=tmp_path / "photos", config_key=KEY,
                     book_files=books, map_files=maps)
    add_device(store, "pv-0001")
    redrawn = redrawn_map()
    with BackgroundServer(app) as server:
        api = Api(server.url, Tokens(store, roles={"tech": ("technician",)}))
        change = {"scope": "device", "target": "pv-0001", "settings": {}, "operator": "tech"}
        status, body = api.post("/api/fleet/config", {**change, "map": sha(redrawn)})
        assert status == 400 and body["detail"].startswith(
            f"map: the gateway serves no map with sha256 {sha(redrawn)[:12]}"), body
        status, body = api.post("/api/fleet/config", {
            **change, "codebook": "GB/T 47678.5-2026@000000000000"})
        assert status == 400 and "codebook: the gateway serves no code book" in body["detail"]
        assert api.get("/api/fleet/config") == (200, [])
        (tmp_path / "maps" / "redrawn.glgm").write_bytes(redrawn)
        time.sleep(maps.RESCAN_S)             # the folder is read again at most this often
        status, body = api.post("/api/fleet/config", {**change, "map": sha(redrawn)})
        assert status == 201, body
