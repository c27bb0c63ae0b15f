"""The patrol's counting from the devices' own records (hil_tests/patrol.py): what is
still pending at the end is read from the outbox as it is then, and a photo is lost only
when it is neither whole at the gateway nor held by its device."""

import json

from gridlink.firmware.core import outbox
from gridlink.firmware.core.outbox import Outbox

from hil_tests.patrol import faults_on_path, outbox_records, photo_counts


def _report(seq, sha):
    return json.dumps({"id": f"pv-0001:{seq:012d}", "seq": seq,
                       "photos": [{"sha256": sha, "bytes": 1000}]}).encode()


def _upload(seq, sha, done):
    return json.dumps({"report": f"pv-0001:{seq:012d}", "sha256": sha, "size": 1000,
                       "done": done}).encode()


def test_pending_is_what_the_outbox_holds_unconfirmed_now(tmp_path):
    folder = tmp_path / "outbox"
    box = Outbox(str(folder))
    sent, waiting = "a" * 64, "b" * 64
    reports = [box.append(outbox.REPORT, _report(1, sent)),
               box.append(outbox.REPORT, _report(2, waiting))]
    batch = box.append(outbox.TRACK, json.dumps({"pts": [[0, 1, 2]] * 3, "seq": 3}).encode())
    done = box.append(outbox.PHOTO_PROGRESS, _upload(1, sent, [0]))
    box.append(outbox.PHOTO_PROGRESS, _upload(2, waiting, []))

    oseqs = {}
    found, track, _acked, pending = outbox_records(tmp_path, oseqs)
    assert set(found) == {"pv-0001:000000000001", "pv-0001:000000000002"}
    assert track == {batch: 3}
    assert pending == {"track": {batch}, "photos": {sent, waiting}}
    assert oseqs["pv-0001:000000000001"] == reports[0]

    # the gateway confirms the report, the batch and the first photo; the log is
    # compacted, which drops those records and their acks together: not pending now,
    # although no read ever saw their acks
    box.ack_many([reports[0], batch, done])
    box.compact()
    box.close()
    found, track, acked, pending = outbox_records(tmp_path)
    assert batch not in track and batch not in acked
    assert pending == {"track": set(), "photos": {waiting}}


def test_a_photo_is_lost_only_when_neither_whole_nor_held():
    reports = [{"photos": [{"sha256": "a"}]}, {"photos": [{"sha256": "b"}]},
               {"photos": [{"sha256": "c"}]}, {"photos": []}]
    counts = photo_counts(reports, complete={"a", "z"}, held={"b", "a"})
    assert counts == {"made": 3, "complete": 1, "pending": 1, "lost": ["c"]}
    # a photo named twice (a report sent again under a fresh id) counts once
    assert photo_counts(reports + reports[:1], {"a", "b", "c"}, ())["made"] == 3


def test_a_fault_that_begins_while_a_report_is_on_its_way_is_on_its_path():
    """trigger → queue "without fault" counts a press only when no fault on its path was
    active from ``QUIET_S`` before the press until its report reached the queue: in the
    soak a tunnel that began 0.3 s after a press held its report 33 s, and a sample
    chosen at the press called that "no fault"."""
    press = {"device": "pv-0009", "at": 100.0}
    tunnel = {"kind": "tunnel", "devices": ["pv-0009"], "start": 100.3, "clear": 130.3}
    other = {"kind": "link_cut", "devices": ["pv-0001"], "start": 100.1, "clear": 108.1}
    gateway = {"kind": "gateway_killed", "devices": None, "start": 60.0, "clear": 85.5}
    assert faults_on_path(press, [tunnel, other, gateway], until=133.4) == [
        "gateway_killed", "tunnel"]
    assert faults_on_path(press, [tunnel, other], until=100.2) == []   # in before it began
    gateway["clear"] = 84.9                           # cleared more than QUIET_S before
    assert faults_on_path(press, [gateway, other], until=101.0) == []
    gateway["clear"] = None                           # still going
    assert faults_on_path(press, [gateway], until=101.0) == ["gateway_killed"]
