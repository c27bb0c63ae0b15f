"""Delivery details on a real broker: photo chunks resume after a broken link (and after a
restart) without resending finished chunks; backoff; rejected reports are kept."""

import contextlib
import hashlib
import io
import json
import socket
import threading
import time

import pytest
from gridlink.firmware.core import messages
from gridlink.firmware.core.report import encode_report, make_report
from gridlink.firmware.device import camera
from gridlink.firmware.device.delivery import REPORT_AGAIN_S, Backoff, Delivery, parse_broker
from gridlink.firmware.device.store import PHOTO, REPORT, Store
from gridlink.firmware.errors import DeviceError
from gridlink.mosquitto import free_port
from PIL import Image

from tests.support.device_rig import GatewayAcker
from tests.support.waiting import wait_until

STATUS = {"time": None, "fix": None, "reports": 0, "track": 0, "disk_free": None,
          "cpu_temp": None, "uptime": 1.0, "firmware": "0.1.0", "codebook": "test",
          "profile": "patrol-vehicle"}


class CuttingProxy:
    """A userspace TCP proxy that cuts the link after ``budget`` upstream bytes and then
    refuses connections until ``restore()`` (tc netem is not available here)."""

    def __init__(self, target_port):
        self.target = target_port
        self.port = free_port()
        self.budget = None
        self.up = True
        self.cuts = 0
        self.conns = []
        self.lock = threading.Lock()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", self.port))
        self.srv.listen(8)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return f"mqtt://127.0.0.1:{self.port}"

    def _accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            if not self.up:
                c.close()
                continue
            s = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.conns += [c, s]
            threading.Thread(target=self._pipe, args=(c, s, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(s, c, False), daemon=True).start()

    def _pipe(self, src, dst, upstream):
        try:
            while True:
                data = src.recv(4096)
                if not data:
                    break
                if upstream and self.budget is not None:
                    self.budget -= len(data)
                    if self.budget < 0:
                        self.cut()
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.close()

    def cut(self):
        with self.lock:
            self.up = False
            self.budget = None
            self.cuts += 1
            for sock in self.conns:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                except OSError:
                    pass
            self.conns = []

    def restore(self):
        self.up = True

    def close(self):
        self.srv.close()
        self.cut()


def photo_report(store, delivery, seq=1):
    img = Image.open(io.BytesIO(camera.encode_jpeg(camera.SyntheticCamera((1280, 960))
                                                   .capture())[0]))
    data, _ = camera.encode_jpeg(img, max_bytes=150 * 1024)
    sha = hashlib.sha256(data).hexdigest()
    store.save_photo(sha, data)
    rep = make_report("pv-0001", seq, None, time.time(), "event", "GB/T 47678.5-2026",
                      "06010", photos=[(sha, len(data))])
    with store.lock:
        store.append(REPORT, encode_report(rep))
        delivery.add_photo_job(rep["id"], sha, len(data))
    delivery.kick()
    return rep, data


def progress(store):
    return [json.loads(p) for _s, _k, p in store.pending((PHOTO,))]


def received(acker, rid):
    with acker.lock:
        return {n: len(v) for (r, n), v in acker.chunks.items() if r == rid}


@pytest.mark.broker
def test_photo_resumes_after_a_broken_link_and_a_restart_without_resending_done_chunks(
        tmp_path, broker):
    acker = GatewayAcker(broker).start()
    proxy = CuttingProxy(broker.port)
    store = Store(tmp_path / "dev")
    d = Delivery(proxy.url, "pv-0001", "410106", store, status_fn=lambda: STATUS,
                 chunk_window=1, reconnect_max=0.3).start()
    try:
        wait_until(lambda: d.connected, 10, "connected")
        proxy.budget = 60_000           # the link breaks in the middle of the photo
        rep, data = photo_report(store, d)
        rid = rep["id"]
        of = messages.photo_chunk_count(len(data))
        wait_until(lambda: proxy.cuts == 1, 20, "the cut")
        wait_until(lambda: not d.connected, 10, "device notices")
        done_first = set(progress(store)[0]["done"])
        assert 0 < len(done_first) < of
        at_first_cut = received(acker, rid)
        proxy.restore()
        proxy.budget = 40_000           # and breaks once more after a little progress
        wait_until(lambda: proxy.cuts == 2, 30, "the second cut")
        d.stop()                        # the device goes down before the photo is done
        store.close()
        store = Store(tmp_path / "dev")
        done_before = set(progress(store)[0]["done"])
        assert done_first <= done_before and len(done_before) < of
        at_restart = received(acker, rid)
        proxy.restore()
        d = Delivery(proxy.url, "pv-0001", "410106", store, status_fn=lambda: STATUS,
                     chunk_window=1, reconnect_max=0.3).start()
        wait_until(lambda: acker.photo(rid) is not None, 30, "the whole photo")
        wait_until(lambda: not progress(store), 10, "progress record settled")
        wait_until(lambda: store.depth()["reports"] == 0, 10, "report acked")
    finally:
        d.stop()
        proxy.close()
        acker.stop()
    assert acker.photo(rid) == data
    counts = received(acker, rid)
    assert set(counts) == set(range(of))
    # a chunk marked done (PUBACK persisted) is never sent again: not after the link came
    # back, not by the restarted device
    assert all(counts[n] == at_first_cut[n] for n in done_first), (counts, at_first_cut)
    assert all(counts[n] == at_restart[n] for n in done_before), (counts, at_restart)
    assert acker.errors == []


def _answering_gateway(broker, client_id, answer):
    """A stand-in gateway: ``answer(rid)`` → the acks (messages) for pv-0001's report."""
    import paho.mqtt.client as mqtt
    from gridlink.firmware.core import topics

    gw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)

    def on_message(client, userdata, msg):
        for ack in answer(json.loads(msg.payload)["id"]):
            client.publish(topics.topic("410106", "pv-0001", "ack"), messages.encode(ack),
                           qos=1)

    gw.on_message = on_message
    gw.on_connect = lambda c, *a: c.subscribe(topics.topic("410106", "pv-0001", "report"), 1)
    gw.connect("127.0.0.1", broker.port)
    gw.loop_start()
    return gw


@pytest.mark.broker
def test_a_rejected_report_is_kept_in_the_rejected_file_not_retried(tmp_path, broker):
    gw = _answering_gateway(broker, "test-rejecting-gateway", lambda rid: [
        messages.make_ack(rid, "rejected", "grid code outside the district")])
    store = Store(tmp_path / "dev")
    d = Delivery(broker.url, "pv-0001", "410106", store, status_fn=lambda: STATUS).start()
    try:
        rep = make_report("pv-0001", 1, None, time.time(), "event", "GB/T 47678.5-2026",
                          "06010")
        store.append(REPORT, encode_report(rep))
        good = make_report("pv-0001", 2, None, time.time(), "event", "GB/T 47678.5-2026",
                           "07001")
        store.append(REPORT, encode_report(good))
        d.kick()
        wait_until(lambda: d.counters["rejected"] == 2, 20, "both answered")
    finally:
        d.stop()
        gw.loop_stop()
    assert store.depth()["reports"] == 0
    kept = store.rejected()
    assert [r[2]["id"] for r in kept] == [rep["id"], good["id"]]
    assert kept[0][3] == "grid code outside the district"


@pytest.mark.broker
def test_one_grouped_ack_settles_every_report_it_lists(tmp_path, broker):
    got = []

    def answer(rid):
        got.append(rid)
        if len(got) < 3:
            return []
        # all in: one ack for two of them, one for the third
        return [messages.make_ack([got[0], got[2]], "accepted"),
                messages.make_ack([got[1]], "duplicate")]

    gw = _answering_gateway(broker, "test-grouping-gateway", answer)
    store = Store(tmp_path / "dev")
    settled = []  # each call is one fsync of the outbox's ack file
    ack_many = store.ack_many
    store.ack_many = lambda oseqs: (settled.append(list(oseqs)), ack_many(oseqs))[1]
    d = Delivery(broker.url, "pv-0001", "410106", store, status_fn=lambda: STATUS).start()
    try:
        for seq in (1, 2, 3):
            store.append(REPORT, encode_report(make_report(
                "pv-0001", seq, None, time.time(), "event", "GB/T 47678.5-2026", "07001")))
        d.kick()
        wait_until(lambda: store.depth()["reports"] == 0, 20, "all three settled")
    finally:
        d.stop()
        gw.loop_stop()
    assert (d.counters["acked"], d.counters["duplicate"], d.counters["rejected"]) == (2, 1, 0)
    assert [len(oseqs) for oseqs in settled] == [2, 1]  # one durable write an ack
    assert sorted(got) == [f"pv-0001:{s:012d}" for s in (1, 2, 3)]


def test_backoff_grows_exponentially_with_full_jitter_and_a_cap():
    b = Backoff(base=0.5, cap=8, rng=lambda: 1.0)
    assert [b.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    b.reset()
    assert b.next() == 0.5
    low = Backoff(base=0.5, cap=8, rng=lambda: 0.0)
    assert low.next() == 0.05                       # never a busy loop


def test_broker_urls():
    assert parse_broker("mqtt://10.0.0.2:1884") == ("10.0.0.2", 1884, False)
    assert parse_broker("mqtts://gw.example") == ("gw.example", 8883, True)
    with pytest.raises(DeviceError, match="mqtt://"):
        parse_broker("http://x")


@pytest.mark.broker
def test_a_backlog_over_a_thousand_reports_drains_whole_and_in_order(tmp_path, broker):
    store = Store(tmp_path / "dev")
    made = []
    for seq in range(1, 1051):            # made while the link was down
        rep = make_report("pv-0001", seq, None, 1_764_296_107.0 + seq, "event",
                          "GB/T 47678.5-2026", "06010")
        store.append(REPORT, encode_report(rep))
        made.append(rep["id"])
    acker = GatewayAcker(broker).start()
    d = Delivery(broker.url, "pv-0001", "410106", store, status_fn=lambda: STATUS).start()
    try:
        wait_until(lambda: store.depth()["reports"] == 0, 120, "the backlog drained")
        wait_until(lambda: any(s["state"] == "online" for s in acker.statuses[1:]), 10,
                   "online again")
    finally:
        d.stop()
        acker.stop()
    assert [r["id"] for r in acker.unique_reports()] == made
    states = [s["state"] for s in acker.statuses]
    assert states[0] == "buffering" and "online" in states      # then offline at stop()
    assert states[-1] == "offline"
    assert acker.errors == []


@pytest.mark.broker
def test_a_report_the_gateway_lacks_goes_again_when_its_photo_comes_back(tmp_path, broker):
    """The broker lost a report the device had sent (it waits ``resend_s`` for the ack):
    the gateway sends back each chunk of its photo (a chunk is taken only after its
    report).  The device sends the report again soon — ``REPORT_AGAIN_S`` after it
    went, not ``resend_s`` (30 s) — and holds the photo's chunks until the report is
    acknowledged: only those already on their way come back, none a second time (round
    and round, a 3G link carried 650 kB of them in 5 s in the soak), then the photo."""
    import paho.mqtt.client as mqtt
    from gridlink.firmware.core import topics

    seen = {"reports": 0, "sent_back": 0}
    back = {}                           # chunk number → times sent back
    lock = threading.Lock()
    chunks = {}
    sha = {}

    def on_message(client, userdata, msg):
        district, device, leaf, extra = topics.parse_topic(msg.topic)
        if leaf == "report":
            rid = json.loads(msg.payload)["id"]
            with lock:
                seen["reports"] += 1
                first = seen["reports"] == 1
            if not first:               # the first copy is the one the broker lost
                client.publish(topics.topic(district, device, "ack"),
                               messages.encode(messages.make_ack(rid, "accepted")), qos=1)
            return
        rid, n = extra
        with lock:
            have = seen["reports"] > 1
            if not have:
                seen["sent_back"] += 1
                back[int(n)] = back.get(int(n), 0) + 1
            else:
                chunks[int(n)] = msg.payload
        if not have:
            client.publish(topics.topic(district, device, "ack"), messages.encode(
                messages.make_resend(rid, sha["photo"], [int(n)],
                                     f"report {rid} does not announce it: send it again")),
                qos=1)

    gw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-lacking-gateway")
    gw.on_message = on_message
    gw.on_connect = lambda c, *a: c.subscribe([
        (topics.topic("410106", "pv-0001", "report"), 1),
        (topics.topic("410106", "pv-0001", "report").replace("/report", "/photo/#"), 1)])
    gw.connect("127.0.0.1", broker.port)
    gw.loop_start()
    store = Store(tmp_path / "dev")
    d = Delivery(broker.url, "pv-0001", "410106", store, status_fn=lambda: STATUS,
                 resend_s=30.0).start()
    try:
        wait_until(lambda: d.connected, 10, "connected")
        t0 = time.monotonic()
        rep, data = photo_report(store, d)
        sha["photo"] = rep["photos"][0]["sha256"]
        of = messages.photo_chunk_count(len(data))
        wait_until(lambda: store.depth()["reports"] == 0, 15,
                   "the report sent again and acknowledged well before resend_s")
        took = time.monotonic() - t0
        wait_until(lambda: len(chunks) == of, 20, "every chunk once the report is in")
    finally:
        d.stop()
        gw.loop_stop()
    assert took < 10, took
    assert seen["sent_back"] >= 1 and set(back.values()) == {1}, back
    assert 2 <= seen["reports"] <= 3     # sent again once (at most once more in flight)
    assert d.counters["photo_resends"] == seen["sent_back"]


@pytest.mark.broker
def test_reports_go_again_at_once_to_a_broker_that_lost_its_store(tmp_path, broker):
    """A report the gateway had not answered when the broker died and came back without
    its store (the report gone with it): on reconnecting the device finds no session of
    its own there and sends every unacknowledged report again at once, not ``resend_s``
    (30 s) after it first went — and again ``REPORT_AGAIN_S`` later, as the gateway
    (whose subscription went with the store) comes back after the device here."""
    silent = GatewayAcker(broker, client_id="test-silent-gateway", ack=False).start()
    proxy = CuttingProxy(broker.port)   # the device's link: back once the gateway is in
    store = Store(tmp_path / "dev")
    d = Delivery(proxy.url, "pv-0001", "410106", store, status_fn=lambda: STATUS,
                 resend_s=30.0, reconnect_max=0.3).start()
    acker = None
    try:
        wait_until(lambda: d.connected, 10, "connected")
        rep = make_report("pv-0001", 1, None, time.time(), "event", "GB/T 47678.5-2026",
                          "06010")
        store.append(REPORT, encode_report(rep))
        d.kick()
        wait_until(lambda: silent.reports, 10, "the report at the (silent) gateway")
        silent.stop()
        proxy.cut()
        broker.stop()
        for f in broker.workdir.glob("mosquitto.db*"):
            f.unlink()
        broker.start()
        published = d.counters["published"]
        proxy.restore()
        wait_until(lambda: d.counters["published"] > published, 15,
                   "the report sent again on reconnecting, before the gateway is back")
        t0 = time.monotonic()
        acker = GatewayAcker(broker).start()
        wait_until(lambda: store.depth()["reports"] == 0, 15,
                   "the report sent again and acknowledged well before resend_s")
        took = time.monotonic() - t0
    finally:
        d.stop()
        proxy.close()
        if acker is not None:
            acker.stop()
    assert took < REPORT_AGAIN_S + 5, took
    assert [r["id"] for r in acker.reports] == [rep["id"]]
