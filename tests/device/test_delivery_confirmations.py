"""Photos and track batches stay on the device until the gateway confirms them
(``photo_stored``, ``track_stored``), not until the broker's PUBACK: on a real broker,
against the stand-in acker, a spoofing client and the real gateway."""

import json
import logging
import time

import paho.mqtt.client as mqtt
import pytest
from gridlink.firmware.core import messages, topics
from gridlink.firmware.core import track as coretrack
from gridlink.firmware.device.delivery import Delivery
from gridlink.firmware.device.store import PHOTO, REPORT, TRACK, Store

from tests.device.test_delivery import STATUS, photo_report, progress, received
from tests.support.device_rig import GatewayAcker
from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker


def add_track(store, delivery, t0, n=3):
    """One numbered track batch of ``n`` points from ``t0``; its outbox seq."""
    batch = coretrack.Batch("pv-0001", max_points=50)
    for i in range(n):
        batch.add(t0 + 5 * i, 34.805 + i * 1e-4, 113.285, 3.0)
    seq = store.append_numbered(TRACK, batch.take)
    delivery.kick()
    return seq


def pending_track(store):
    return [json.loads(p)["seq"] for _s, _k, p in store.pending((TRACK,))]


def test_a_photo_and_a_track_batch_stay_until_the_gateway_confirms_them(tmp_path, broker):
    """A gateway that PUBACKs (through the broker) but confirms nothing: the batch goes
    again after resend_s and the photo's last chunk is sent again to ask; both stay in
    the outbox.  Once the gateway confirms, both are settled."""
    acker = GatewayAcker(broker, confirm=False).start()
    store = Store(tmp_path / "dev")
    d = Delivery(broker.url, "pv-0001", "410106", store, status_fn=lambda: STATUS,
                 resend_s=1.0).start()
    try:
        wait_until(lambda: d.connected, 10, "connected")
        seq = add_track(store, d, 1_795_000_000)
        rep, data = photo_report(store, d)
        of = messages.photo_chunk_count(len(data))
        wait_until(lambda: received(acker, rep["id"]).get(of - 1, 0) >= 2, 15,
                   "the photo's last chunk sent again to ask")
        wait_until(lambda: [t["seq"] for t in acker.tracks].count(seq) >= 2, 15,
                   "the track batch sent again")
        assert pending_track(store) == [seq]
        assert [p["done"] for p in progress(store)] == [list(range(of))]
        assert store.photo_path(rep["photos"][0]["sha256"]).exists()
        assert d.counters["photo_probes"] >= 1
        acker.confirm = True
        wait_until(lambda: not pending_track(store) and not progress(store), 15,
                   "both settled by the gateway's confirmations")
    finally:
        d.stop()
        acker.stop()
        store.close()
    assert acker.photo(rep["id"]) == data and acker.errors == []
    assert d.counters["track_confirmed"] == 1 and d.counters["photos_confirmed"] == 1
    assert d.counters["stray_acks"] == 0


def test_spoofed_and_malformed_confirmations_drop_nothing(tmp_path, broker, caplog):
    """Confirmations that name what the device does not hold (a report's record number
    as a track seq, another photo, another report) drop nothing and are logged; malformed
    ones are refused as bad messages; the true ones then settle exactly what they name."""
    acker = GatewayAcker(broker, ack=False).start()  # answers nothing: all stays pending
    spoofer = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-spoofer")
    spoofer.connect("127.0.0.1", broker.port)
    spoofer.loop_start()
    ack_topic = topics.topic("410106", "pv-0001", "ack")

    def say(obj):
        raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        spoofer.publish(ack_topic, raw, qos=1).wait_for_publish(5)

    store = Store(tmp_path / "dev")
    d = Delivery(broker.url, "pv-0001", "410106", store, status_fn=lambda: STATUS).start()
    caplog.set_level(logging.WARNING, logger="gridlink.device.delivery")
    try:
        wait_until(lambda: d.connected, 10, "connected")
        rep, data = photo_report(store, d)
        sha = rep["photos"][0]["sha256"]
        seq = add_track(store, d, 1_795_000_000)
        ((report_oseq, _k, _p),) = store.pending((REPORT,))
        of = messages.photo_chunk_count(len(data))
        wait_until(lambda: len(received(acker, rep["id"])) == of, 15, "every chunk sent")
        say(messages.make_track_stored([report_oseq, 999_999]))  # not track batches
        say(messages.make_photo_stored(rep["id"], "0" * 64))       # another photo
        say(messages.make_photo_stored("pv-0001:000000000099", sha))  # no upload of it
        wait_until(lambda: d.counters["stray_acks"] == 2, 10, "two stray acks logged")
        say({"v": 1, "status": "track_stored", "reason": None, "seqs": [str(seq)]})
        say({"v": 1, "status": "track_stored", "reason": None, "seqs": []})
        say({"v": 1, "id": rep["id"], "status": "photo_stored", "reason": "done",
             "sha256": sha})
        say(b'{"v":1,"status":"photo_stored","reason":null,"sha256":"' + sha.encode() + b'"}')
        wait_until(lambda: d.counters["bad_messages"] == 4, 10, "four bad messages refused")
        assert store.depth() == {"reports": 1, "track": 1}
        assert len(progress(store)) == 1 and store.photo_path(sha).exists()
        say(messages.make_track_stored([seq]))
        say(messages.make_photo_stored(rep["id"], sha))
        wait_until(lambda: store.depth()["track"] == 0 and not progress(store), 10,
                   "the true confirmations settle the batch and the photo")
        assert store.depth()["reports"] == 1  # a report waits for its own ack
        say(messages.make_track_stored([seq]))  # a batch sent twice is confirmed twice
        say({"v": 1, "status": "track_stored", "reason": None, "seqs": [0.5]})
        wait_until(lambda: d.counters["bad_messages"] == 5, 10, "both read")
        assert d.counters["stray_acks"] == 2 and d.counters["track_confirmed"] == 1
    finally:
        d.stop()
        spoofer.loop_stop()
        spoofer.disconnect()
        acker.stop()
        store.close()
    logged = caplog.text
    assert "which are no pending track batch of this device; nothing dropped" in logged
    assert "which this device is not uploading" in logged
    assert "seqs[0]: must be an integer" in logged and "no reason (null)" in logged
    assert "seqs: must be a list of 1 to 64" in logged and "id: is required" in logged


def test_photo_and_track_survive_a_broker_that_lost_its_store(tmp_path, broker):
    """The real gateway is down while the broker takes a report, its photo and a track
    batch (PUBACKed: held for the gateway's session); the broker dies and comes back
    without its store.  The device, kept waiting for the gateway's confirmations, sends
    them again: the gateway ends with the report, the whole photo and every point."""
    from gridlink.gateway.photos import report_photos

    from tests.support.probing_rig import start_gateway

    store_url = f"sqlite:///{tmp_path}/intake.sqlite"
    gw = start_gateway(broker, store_url, tmp_path)
    gw.stop()  # its persistent session at the broker holds what comes next
    store = Store(tmp_path / "dev")
    d = Delivery(broker.url, "pv-0001", "410106", store, status_fn=lambda: STATUS,
                 reconnect_max=0.3).start()
    try:
        wait_until(lambda: d.connected, 10, "connected")
        rep, data = photo_report(store, d)
        add_track(store, d, 1_795_000_000, n=4)
        of = messages.photo_chunk_count(len(data))
        wait_until(lambda: [p["done"] for p in progress(store)] == [list(range(of))]
                   and d.counters["published"] >= 1, 20, "everything PUBACKed by the broker")
        time.sleep(0.3)  # the track batch's PUBACK
        broker.stop()
        for f in broker.workdir.glob("mosquitto.db*"):
            f.unlink()
        broker.start()
        gw = start_gateway(broker, store_url, tmp_path)
        wait_until(lambda: store.depth() == {"reports": 0, "track": 0}
                   and not store.pending((PHOTO,)), 40,
                   "report, track and photo confirmed by the gateway")
        assert [p["complete"] for p in report_photos(gw.store, rep["id"])] == [True]
        (n,) = gw.store.fetchall("SELECT COUNT(*) AS n FROM track_points "
                                 "WHERE device = 'pv-0001'")
        assert n["n"] == 4
    finally:
        d.stop()
        store.close()
        gw.stop()
