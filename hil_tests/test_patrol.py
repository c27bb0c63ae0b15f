"""The patrol's counting from the devices' own records (hil_tests/patrol.py): what is
still pending at the end is read from the outbox as it is then, and a photo is lost only
when it is neither whole at the gateway nor held by its device."""

import json

from gridlink.firmware.core import outbox
from gridlink.firmware.core.outbox import Outbox

from hil_tests.patrol import outbox_records, photo_counts


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
