"""A report whose id the gateway refuses (another report holds it) is never lost: the
device keeps it and sends it again under a fresh id, its photo follows under that id, and
the status counts it.  On a real Mosquitto, with a stand-in gateway that answers acks."""

import hashlib
import json
import time

import pytest
from gridlink.firmware.core.report import encode_report, make_report
from gridlink.firmware.device.delivery import Delivery
from gridlink.firmware.device.store import REPORT, Store

from tests.support.device_rig import GatewayAcker
from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker

STATUS = {"time": None, "fix": None, "reports": 0, "track": 0, "disk_free": None,
          "cpu_temp": None, "uptime": 1.0, "firmware": "0.1.0", "codebook": "test",
          "profile": "patrol-vehicle"}


def report(seq, photos=()):
    return make_report("pv-0001", seq, None, time.time(), "event", "GB/T 47678.5-2026",
                       "06010", text="井盖缺失", photos=photos)


def refuse_first(status):
    seen = []

    def answer(rep):
        seen.append(rep["id"])
        if len(seen) == 1:
            return status, "pv-0001:000000000002 is held by another report"
        return "accepted", None
    return answer


def test_a_refused_id_is_sent_again_under_a_fresh_id_never_dropped(tmp_path, broker):
    status = "id_reused"
    gw = GatewayAcker(broker, answer=refuse_first(status)).start()
    store = Store(tmp_path / "dev")
    d = Delivery(broker.url, "pv-0001", "410106", store,
                 status_fn=lambda: {**STATUS, "problems": store.problems()}).start()
    try:
        old = report(2)
        store.append(REPORT, encode_report(old))
        d.kick()
        wait_until(lambda: len(gw.reports) == 2 and store.depth()["reports"] == 0, 20,
                   "the report sent again and acknowledged")
        d.request_status()
        wait_until(lambda: gw.statuses and gw.statuses[-1].get("problems", {}).get("reissued"),
                   10, "a status counting it")
    finally:
        d.stop()
        gw.stop()
    first, again = gw.reports
    assert first["id"] == old["id"]
    assert again["id"] != old["id"] and again["seq"] > old["seq"]
    assert again["seq"] > time.time() - 3600      # above the clock: cannot repeat
    assert {**again, "id": old["id"], "seq": old["seq"]} == first   # the same report
    assert d.counters["reissued"] == 1
    assert store.problems()["reissued"] == 1
    [line] = [json.loads(x) for x in (tmp_path / "dev" / "reissued.jsonl").read_text()
              .splitlines()]
    assert (line["old"], line["new"]) == (old["id"], again["id"])
    assert line["why"].startswith(status)
    store.close()
    again_store = Store(tmp_path / "dev")      # the count is kept across a restart
    assert again_store.problems()["reissued"] == 1
    assert again_store.next_seq() > again["seq"]
    again_store.close()


def test_an_unknown_status_keeps_the_report_under_its_id_until_it_is_stored(tmp_path,
                                                                             broker):
    gw = GatewayAcker(broker, answer=refuse_first("a_status_from_the_future")).start()
    store = Store(tmp_path / "dev")
    d = Delivery(broker.url, "pv-0001", "410106", store, status_fn=lambda: STATUS,
                 resend_s=0.5).start()
    try:
        rep = report(3)
        store.append(REPORT, encode_report(rep))
        d.kick()
        wait_until(lambda: store.depth()["reports"] == 0, 20, "the report stored at last")
    finally:
        d.stop()
        gw.stop()
    assert [r["id"] for r in gw.reports] == [rep["id"], rep["id"]]   # same id: no double
    assert (d.counters["unknown_acks"], d.counters["reissued"], d.counters["acked"]) == \
        (1, 0, 1)
    assert store.problems()["reissued"] == 0 and store.rejected() == []


def refused_with_its_photo(tmp_path, broker, gw):
    """A report with a two-chunk photo, refused once as ``id_reused`` by ``gw``: (the
    report, the photo, the new id) once the photo came again under the new id and the
    new id was acknowledged."""
    store = Store(tmp_path / "dev")
    d = Delivery(broker.url, "pv-0001", "410106", store, status_fn=lambda: STATUS).start()
    data = bytes(range(256)) * 100                     # 25 600 bytes: two chunks
    sha = hashlib.sha256(data).hexdigest()
    try:
        store.save_photo(sha, data)
        rep = report(1, photos=[(sha, len(data))])
        with store.lock:
            store.append(REPORT, encode_report(rep))
            d.add_photo_job(rep["id"], sha, len(data))
        d.kick()
        wait_until(lambda: len(gw.reports) == 2, 20, "the report sent again")
        new_id = gw.reports[1]["id"]
        wait_until(lambda: (new_id, 0) in gw.chunks and (new_id, 1) in gw.chunks, 20,
                   "the photo under the new id")
        wait_until(lambda: store.depth()["reports"] == 0, 20, "the new id acknowledged")
    finally:
        d.stop()
        gw.stop()
    return rep, data, new_id


def test_a_refused_reports_photo_follows_it_under_the_new_id(tmp_path, broker):
    gw = GatewayAcker(broker, answer=refuse_first("id_reused")).start()
    rep, data, new_id = refused_with_its_photo(tmp_path, broker, gw)
    assert gw.photo(new_id) == data
    assert gw.reports[1]["photos"] == rep["photos"]


class LateGateway(GatewayAcker):
    """Answers a report with a photo only once every chunk of that photo has arrived."""

    def __init__(self, broker, answer, chunks):
        self.of, self.held = chunks, {}
        super().__init__(broker, answer=answer)

    def _on_message(self, client, userdata, msg):
        leaf = msg.topic.split("/")[4]
        if leaf == "report" and json.loads(msg.payload)["photos"]:
            with self.lock:
                self.held[json.loads(msg.payload)["id"]] = msg
        else:
            super()._on_message(client, userdata, msg)
        with self.lock:
            ready = [rid for rid in self.held
                     if all((rid, n) in self.chunks for n in range(self.of))]
            held = [self.held.pop(rid) for rid in ready]
        for m in held:
            super()._on_message(client, userdata, m)


def test_a_photo_already_delivered_under_the_refused_id_is_sent_again_under_the_new(
        tmp_path, broker):
    gw = LateGateway(broker, refuse_first("id_reused"), chunks=2).start()
    rep, data, new_id = refused_with_its_photo(tmp_path, broker, gw)
    assert (rep["id"], 1) in gw.chunks                 # it had all left under the old id
    assert gw.photo(new_id) == data


def test_an_accepted_report_raises_the_last_acknowledged_seq(tmp_path, broker):
    gw = GatewayAcker(broker, answer=lambda rep: ("accepted", None)).start()
    store = Store(tmp_path / "dev")
    d = Delivery(broker.url, "pv-0001", "410106", store, status_fn=lambda: STATUS).start()
    try:
        for seq in (7, 9, 8):
            store.append(REPORT, encode_report(report(seq)))
        d.kick()
        wait_until(lambda: store.depth()["reports"] == 0, 20, "all acknowledged")
    finally:
        d.stop()
        gw.stop()
    store.close()
    (tmp_path / "dev" / "seq").write_bytes(b"broken")   # and then the counter is damaged
    # (a clock that was never set: the last acknowledged id is the floor left)
    from gridlink.firmware.core.seqfile import SequenceFile

    assert SequenceFile(str(tmp_path / "dev" / "seq"), floor=1).next() == 10
