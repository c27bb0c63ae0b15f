"""The media lane: clips and memos from the shelf go after their report (acknowledged) and
its photos, chunk by chunk with each chunk's hash, under the profile's bandwidth cap; a
new report never waits behind a clip; a cut resumes where it stopped; delivered media are
pruned and dropped ones are counted in the status.  On a real Mosquitto, with a stand-in
gateway that acks reports and records everything in arrival order."""

import hashlib
import json
import os
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from gridlink.firmware.core import messages, topics
from gridlink.firmware.core.report import encode_report, make_report
from gridlink.firmware.device.delivery import Delivery
from gridlink.firmware.device.shelf import MediaShelf
from gridlink.firmware.device.store import REPORT, Store

from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker

STATUS = {"time": None, "fix": None, "reports": 0, "track": 0, "disk_free": None,
          "cpu_temp": None, "uptime": 1.0, "firmware": "0.1.0", "codebook": "test",
          "profile": "patrol-vehicle"}


class Gateway:
    """Acks the reports it is told to (``ack`` decides per report id); keeps every message
    as (monotonic time, leaf, report id, chunk header or None) in arrival order, and the
    media bytes by (sha256, n)."""

    def __init__(self, broker, ack=lambda rid: True):
        self.ack = ack
        self.log, self.media, self.status = [], {}, []
        self.lock = threading.Lock()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-media-gateway")
        c.on_message = self._on_message
        ready = threading.Event()
        c.on_subscribe = lambda *a: ready.set()
        c.connect("127.0.0.1", broker.port)
        c.subscribe(topics.subscription(leaf="#"), 1)
        c.loop_start()
        assert ready.wait(10)
        self.c = c

    def _on_message(self, client, userdata, msg):
        _d, _dev, leaf, extra = topics.parse_topic(msg.topic)
        now = time.monotonic()
        with self.lock:
            if leaf == "media":
                head, data = messages.split_media_chunk(msg.payload)
                assert hashlib.sha256(data).hexdigest() == head["digest"]
                self.media[(head["sha256"], head["n"])] = data
                self.log.append((now, "media", extra[0], head))
            elif leaf == "status":
                self.status.append(json.loads(msg.payload))
            elif leaf == "report":
                rep = json.loads(msg.payload)
                self.log.append((now, "report", rep["id"], None))
                if self.ack(rep["id"]):
                    client.publish(topics.topic("410106", "pv-0001", "ack"), messages.encode(
                        {"v": 1, "id": rep["id"], "status": "accepted", "reason": None}), qos=1)

    def chunks(self, sha):
        with self.lock:
            return [h for _t, leaf, _r, h in self.log if leaf == "media" and h["sha256"] == sha]

    def whole(self, sha, of):
        with self.lock:
            return b"".join(self.media[(sha, n)] for n in range(of))

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def report(store, seq):
    rep = make_report("pv-0001", seq, None, time.time(), "event", "GB/T 47678.5-2026",
                      "06010", text="井盖缺失")
    store.append(REPORT, encode_report(rep))
    return rep["id"]


def delivery(broker, store, shelf, **kw):
    return Delivery(broker.url, "pv-0001", "410106", store, shelf=shelf,
                    status_fn=lambda: {**STATUS, "problems": store.problems()}, **kw).start()


def clip(nbytes, seed=1):
    return (hashlib.sha256(bytes([seed])).digest() * (nbytes // 32 + 1))[:nbytes]


def test_a_report_queued_behind_a_large_clip_still_goes_first(tmp_path, broker):
    gw = Gateway(broker)
    store, shelf = Store(tmp_path / "dev"), MediaShelf(tmp_path / "dev" / "media", 4 << 20)
    data = clip(1_000_000)                               # 62 chunks: ~15 s at the cap
    first = report(store, 1)
    entry = shelf.add(data, "clip", first)
    d = delivery(broker, store, shelf, media_rate=64_000)
    try:
        wait_until(lambda: len(gw.chunks(entry["sha256"])) >= 3, 30, "the clip under way")
        under_way = len(gw.chunks(entry["sha256"]))
        second = report(store, 2)
        d.kick()
        wait_until(lambda: any(r == second for _t, k, r, _h in gw.log if k == "report"), 10,
                   "the second report")
        with gw.lock:
            order = [(k, r, h and h["n"]) for _t, k, r, h in gw.log]
        at = order.index(("report", second, None))
        # only the chunks in flight (the window, 2) or due that instant go before it
        sent_before = [o for o in order[:at] if o[0] == "media"]
        assert len(sent_before) <= under_way + 4 < 62
        wait_until(lambda: len(gw.chunks(entry["sha256"])) >= len(sent_before) + 3, 30,
                   "the clip going on")
        with gw.lock:
            later = [(k, r) for _t, k, r, _h in gw.log][at + 1:]
        assert ("media", first) in later           # the clip went on after the report
        assert ("media", second) not in later      # (the second report has no media)
    finally:
        d.stop()
        gw.close()
        store.close()


def test_the_cap_limits_media_bytes_per_second_and_the_file_arrives_whole(tmp_path, broker):
    gw = Gateway(broker)
    store = Store(tmp_path / "dev", photo_keep_s=0)       # pruned as soon as delivered
    shelf = MediaShelf(tmp_path / "dev" / "media", 4 << 20)
    data = clip(200_000)                                  # 13 chunks
    rid = report(store, 1)
    entry = shelf.add(data, "clip", rid)
    memo = shelf.add(clip(20_000, seed=2), "memo", rid)
    rate = 50_000
    d = delivery(broker, store, shelf, media_rate=rate)
    try:
        wait_until(lambda: d.counters["media_delivered"] == 2, 60, "clip and memo delivered")
    finally:
        d.stop()
        gw.close()
    heads = gw.chunks(entry["sha256"])
    assert sorted(h["n"] for h in heads) == list(range(13))
    assert {h["kind"] for h in heads} == {"clip"} and heads[0]["size"] == len(data)
    assert gw.whole(entry["sha256"], 13) == data
    assert [h["kind"] for h in gw.chunks(memo["sha256"])] == ["memo", "memo"]
    with gw.lock:
        times = [t for t, k, _r, _h in gw.log if k == "media"]
    # the first 50 000 bytes may go at once (the bucket's burst), the rest at the cap
    assert times[-1] - times[0] >= (len(data) + 20_000 - rate - 16384) / rate * 0.9
    wait_until(lambda: os.listdir(shelf.folder) == ["index.json"], 5, "pruned")
    assert shelf.pending() == []
    store.close()


def test_media_waits_for_its_reports_ack_and_photos_go_first(tmp_path, broker):
    acked = set()
    gw = Gateway(broker, ack=lambda rid: rid in acked)
    store, shelf = Store(tmp_path / "dev"), MediaShelf(tmp_path / "dev" / "media", 4 << 20)
    rid = report(store, 1)
    photo = clip(40_000, seed=3)
    psha = hashlib.sha256(photo).hexdigest()
    store.save_photo(psha, photo)
    entry = shelf.add(clip(30_000), "clip", rid)
    d = delivery(broker, store, shelf, resend_s=0.5)
    try:
        with store.lock:
            d.add_photo_job(rid, psha, len(photo))
        wait_until(lambda: sum(k == "report" for _t, k, _r, _h in gw.log) >= 2, 10,
                   "the report sent (and sent again: no ack)")
        assert gw.chunks(entry["sha256"]) == []       # no ack yet: no media
        acked.add(rid)
        wait_until(lambda: d.counters["media_delivered"] == 1, 30, "the clip delivered")
    finally:
        d.stop()
        gw.close()
    assert d.counters["chunks"] == 3                  # the photo's chunks …
    assert d.counters["media_chunks"] == 2            # … and after them the clip's
    store.close()


def test_a_cut_transfer_resumes_where_it_stopped(tmp_path, broker):
    gw = Gateway(broker)
    store = Store(tmp_path / "dev")
    shelf = MediaShelf(tmp_path / "dev" / "media", 4 << 20)
    data = clip(480_000)                                  # 30 chunks
    rid = report(store, 1)
    sha = shelf.add(data, "clip", rid)["sha256"]
    d = delivery(broker, store, shelf, media_rate=100_000)
    try:
        wait_until(lambda: shelf.pending()[0]["done"] >= 10, 30, "a third of the clip sent")
    finally:
        d.stop()                                          # the device goes down mid-clip
    store.close()
    store = Store(tmp_path / "dev")
    again = MediaShelf(tmp_path / "dev" / "media", 4 << 20)   # as after a restart
    (kept,) = again.pending()
    assert 10 <= kept["done"] < 30
    d = delivery(broker, store, again)
    try:
        wait_until(lambda: d.counters["media_delivered"] == 1, 30, "the rest of the clip")
    finally:
        d.stop()
        gw.close()
    assert gw.whole(sha, 30) == data
    assert d.counters["media_chunks"] <= 30 - kept["done"]    # only the rest went again
    assert min(h["n"] for h in gw.chunks(sha)[-d.counters["media_chunks"]:]) == kept["done"]
    assert again.pending() == []
    store.close()


def test_dropped_media_are_counted_in_the_status_never_silently(tmp_path, broker):
    gw = Gateway(broker, ack=lambda rid: False)            # nothing is ever acknowledged
    store = Store(tmp_path / "dev")
    shelf = MediaShelf(tmp_path / "dev" / "media", 100_000)
    rid = report(store, 1)
    old = shelf.add(clip(60_000, seed=1), "clip", rid)
    kept = shelf.add(clip(60_000, seed=2), "clip", rid)    # the shelf is full: old goes
    (tmp_path / "dev" / "media" / ("cd" * 32 + ".ogg")).write_bytes(b"OggS orphan")
    orphaned = MediaShelf(tmp_path / "dev" / "media", 100_000)  # adopted: no report
    d = delivery(broker, store, orphaned)
    try:
        wait_until(lambda: any(s.get("problems", {}).get("media_dropped") == 2
                               for s in gw.status), 10, "a status counting both drops")
    finally:
        d.stop()
        gw.close()
    # the oldest clip (shelf full) and the orphan (no report to send it under) are gone;
    # the clip whose report is not acknowledged yet waits
    assert [e["sha256"] for e in orphaned.pending()] == [kept["sha256"]]
    assert not (tmp_path / "dev" / "media" / (old["sha256"] + ".mp4")).exists()
    assert (d.counters["media_dropped"], store.problems()["media_dropped"]) == (2, 2)
    assert gw.chunks(kept["sha256"]) == []
    store.close()


def resend(gw, rid, sha, chunks):
    gw.c.publish(topics.topic("410106", "pv-0001", "ack"), messages.encode(
        messages.make_resend(rid, sha, chunks, "damaged on the way")), qos=1)


def test_the_gateway_can_ask_again_for_a_delivered_clip_until_it_is_pruned(tmp_path, broker):
    gw = Gateway(broker)
    store = Store(tmp_path / "dev", photo_keep_s=3)
    shelf = MediaShelf(tmp_path / "dev" / "media", 4 << 20)
    rid = report(store, 1)
    data = clip(50_000)                                   # 4 chunks
    sha = shelf.add(data, "clip", rid)["sha256"]
    d = delivery(broker, store, shelf)
    try:
        wait_until(lambda: d.counters["media_delivered"] == 1, 20, "delivered")
        assert shelf.pending() == [] and shelf.holds(sha)   # kept: it may be asked for
        resend(gw, rid, sha, [2])
        wait_until(lambda: len(gw.chunks(sha)) == 6, 10, "chunk 2 (and on) again")
        assert sorted(h["n"] for h in gw.chunks(sha)) == [0, 1, 2, 2, 3, 3]   # from 2 on
        resend(gw, rid, sha, None)
        wait_until(lambda: len(gw.chunks(sha)) == 10, 10, "every chunk again")
        assert d.counters["media_resends"] == 2 and gw.whole(sha, 4) == data
        wait_until(lambda: not shelf.holds(sha), 10, "pruned after keep_delivered_s")
        resend(gw, rid, sha, None)                        # too late: nothing to send
        time.sleep(1)
        assert len(gw.chunks(sha)) == 10 and d.is_alive()
    finally:
        d.stop()
        gw.close()
    store.close()


def test_a_damaged_file_asked_for_again_is_dropped_and_counted(tmp_path, broker):
    gw = Gateway(broker)
    store = Store(tmp_path / "dev")
    shelf = MediaShelf(tmp_path / "dev" / "media", 4 << 20)
    rid = report(store, 1)
    sha = shelf.add(clip(20_000), "memo", rid)["sha256"]
    d = delivery(broker, store, shelf)
    try:
        wait_until(lambda: d.counters["media_delivered"] == 1, 20, "delivered")
        path = shelf.path(sha)
        path.write_bytes(b"\0" + path.read_bytes()[1:])     # the card flipped a byte
        resend(gw, rid, sha, None)
        wait_until(lambda: any(s.get("problems", {}).get("media_dropped") == 1
                               for s in gw.status), 10, "the drop in the status")
    finally:
        d.stop()
        gw.close()
    assert len(gw.chunks(sha)) == 2 and not shelf.holds(sha)   # not sent again
    store.close()
