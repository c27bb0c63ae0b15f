"""The media shelf: bounded, pruned on delivery, every drop recorded, survives restarts."""

import hashlib
import json

import pytest
from gridlink.firmware.device.shelf import INDEX, MediaShelf, ShelfError


class Clock:
    def __init__(self):
        self.t = 1_800_000_000.0

    def __call__(self):
        self.t += 1
        return self.t


def blob(n, fill=0):
    return bytes([fill]) * n


def test_media_is_kept_by_hash_until_delivered(tmp_path):
    shelf = MediaShelf(tmp_path, 10_000, Clock())
    entry = shelf.add(blob(1000, 1), "clip", report="pv-0001:000000000042")
    sha = hashlib.sha256(blob(1000, 1)).hexdigest()
    assert entry["sha256"] == sha and (tmp_path / f"{sha}.mp4").read_bytes() == blob(1000, 1)
    assert [e["report"] for e in shelf.pending()] == ["pv-0001:000000000042"]
    assert shelf.delivered(sha) is True
    assert not (tmp_path / f"{sha}.mp4").exists() and shelf.pending() == []
    assert shelf.delivered(sha) is False


def test_a_full_shelf_drops_the_oldest_and_says_so(tmp_path):
    shelf = MediaShelf(tmp_path, 2500, Clock())
    a = shelf.add(blob(1000, 1), "clip", "r1")
    b = shelf.add(blob(1000, 2), "memo", "r2")
    c = shelf.add(blob(1000, 3), "clip", "r3")
    assert [e["sha256"] for e in shelf.pending()] == [b["sha256"], c["sha256"]]
    assert shelf.used() <= 2500
    (dropped,) = shelf.take_dropped()
    assert dropped["sha256"] == a["sha256"] and dropped["report"] == "r1"
    assert dropped["reason"] == "shelf full"
    assert not (tmp_path / f"{a['sha256']}.mp4").exists()
    assert shelf.take_dropped() == []                       # reported once


def test_adding_the_same_media_twice_keeps_one(tmp_path):
    shelf = MediaShelf(tmp_path, 10_000, Clock())
    shelf.add(blob(500), "clip")
    shelf.add(blob(500), "clip")
    assert len(shelf.pending()) == 1 and shelf.used() == 500


def test_the_shelf_survives_a_restart_and_reconciles_with_the_folder(tmp_path):
    clock = Clock()
    shelf = MediaShelf(tmp_path, 10_000, clock)
    kept = shelf.add(blob(100, 1), "clip", "r1")
    gone = shelf.add(blob(100, 2), "memo", "r2")
    (tmp_path / f"{gone['sha256']}.ogg").unlink()              # lost behind our back
    orphan = hashlib.sha256(b"orphan").hexdigest()
    (tmp_path / f"{orphan}.mp4").write_bytes(b"orphan")          # written, index not
    again = MediaShelf(tmp_path, 10_000, clock)
    assert {e["sha256"] for e in again.pending()} == {kept["sha256"], orphan}
    (dropped,) = again.take_dropped()
    assert dropped["sha256"] == gone["sha256"] and "missing" in dropped["reason"]
    assert json.loads((tmp_path / INDEX).read_text())["dropped"] == []


def test_a_clip_file_is_moved_onto_the_shelf(tmp_path):
    shelf = MediaShelf(tmp_path / "shelf", 10_000, Clock())
    clip = tmp_path / "clip-1.mp4"
    clip.write_bytes(b"mp4 bytes")
    entry = shelf.add_file(clip, "clip", "r9")
    assert not clip.exists() and shelf.path(entry["sha256"]).read_bytes() == b"mp4 bytes"


@pytest.mark.parametrize(("call", "message"), [
    (lambda s: s.add(b"x", "video"), "unknown media kind"),
    (lambda s: s.add(blob(2000), "clip"), "larger than the whole shelf"),
])
def test_what_cannot_be_shelved_is_refused_and_nothing_changes(tmp_path, call, message):
    shelf = MediaShelf(tmp_path, 1000, Clock())
    shelf.add(b"keep", "memo")
    with pytest.raises(ShelfError, match=message):
        call(shelf)
    assert len(shelf.pending()) == 1 and shelf.take_dropped() == []


def test_a_broken_index_is_a_clear_error(tmp_path):
    (tmp_path / INDEX).write_text("{not json")
    with pytest.raises(ShelfError, match="unreadable shelf index"):
        MediaShelf(tmp_path, 1000)
    with pytest.raises(ShelfError, match="positive"):
        MediaShelf(tmp_path / "x", 0)


def test_progress_survives_a_restart_and_never_goes_back(tmp_path):
    shelf = MediaShelf(tmp_path, 10_000, Clock())
    sha = shelf.add(blob(5000, 4), "clip", "r1")["sha256"]
    assert shelf.pending()[0]["done"] == 0
    shelf.progress(sha, 3)
    shelf.progress(sha, 2)                       # a late, smaller count changes nothing
    shelf.progress("ff" * 32, 9)                 # nor one for a file it does not hold
    again = MediaShelf(tmp_path, 10_000, Clock())
    assert [(e["sha256"], e["done"]) for e in again.pending()] == [(sha, 3)]


def test_a_file_given_up_is_removed_and_recorded_with_its_reason(tmp_path):
    shelf = MediaShelf(tmp_path, 10_000, Clock())
    keep = shelf.add(blob(100, 5), "memo", "r1")
    gone = shelf.add(blob(100, 6), "clip", None)
    assert shelf.drop(gone["sha256"], "no report named") is True
    assert shelf.drop(gone["sha256"], "again") is False
    assert not (tmp_path / f"{gone['sha256']}.mp4").exists()
    assert [e["sha256"] for e in shelf.pending()] == [keep["sha256"]]
    (dropped,) = MediaShelf(tmp_path, 10_000, Clock()).take_dropped()   # kept on disk
    assert (dropped["sha256"], dropped["reason"]) == (gone["sha256"], "no report named")


def test_a_withdrawn_reports_files_go_without_being_counted_as_dropped(tmp_path):
    shelf = MediaShelf(tmp_path, 10_000, Clock())
    keep = shelf.add(blob(100, 7), "clip", "r1")
    shelf.add(blob(100, 8), "clip", "r2")
    shelf.add(blob(100, 9), "memo", "r2")
    assert shelf.withdraw("r2") == 2 and shelf.withdraw("r2") == 0
    assert [e["sha256"] for e in shelf.pending()] == [keep["sha256"]]
    assert shelf.take_dropped() == [] and len(list(tmp_path.glob("*.*"))) == 2  # + index


def test_a_sent_file_is_kept_for_a_request_again_then_pruned(tmp_path):
    clock = Clock()
    shelf = MediaShelf(tmp_path, 10_000, clock)
    sha = shelf.add(blob(1000, 10), "clip", "r1")["sha256"]
    shelf.progress(sha, 1)
    shelf.sent(sha)
    assert shelf.pending() == [] and shelf.holds(sha)
    assert shelf.again(sha, 0) is True                   # the gateway asks again
    assert [(e["sha256"], e["done"]) for e in shelf.pending()] == [(sha, 0)]
    shelf.sent(sha)
    assert shelf.prune_sent(keep_s=100) == 0 and shelf.holds(sha)
    clock.t += 200
    assert shelf.prune_sent(keep_s=100) == 1 and not shelf.holds(sha)
    assert shelf.again(sha) is False and shelf.take_dropped() == []


def test_sent_files_make_room_first_and_quietly(tmp_path):
    shelf = MediaShelf(tmp_path, 2500, Clock())
    old = shelf.add(blob(1000, 11), "clip", "r1")
    sent = shelf.add(blob(1000, 12), "clip", "r2")
    shelf.sent(sent["sha256"])
    shelf.add(blob(1000, 13), "memo", "r3")
    assert not shelf.holds(sent["sha256"]) and shelf.holds(old["sha256"])
    assert shelf.take_dropped() == []                    # a sent file is not a loss


def test_the_edges_of_progress_again_and_prune(tmp_path):
    clock = Clock()
    shelf = MediaShelf(tmp_path, 10_000, clock)
    sha = shelf.add(blob(1000, 14), "clip", "r1")["sha256"]
    shelf.progress(sha, 1)                               # the first chunk counts
    assert shelf.pending()[0]["done"] == 1
    shelf.progress(sha, 3)
    shelf.sent(sha)
    assert shelf.again(sha) is True                      # by default from chunk 0
    assert shelf.pending()[0]["done"] == 0
    fresh = shelf.add(blob(1000, 15), "memo", "r2")["sha256"]
    shelf.sent(fresh)
    shelf.again(fresh, 2)                                # never progressed: stays at 0
    assert {e["sha256"]: e["done"] for e in shelf.pending()}[fresh] == 0
    shelf.sent(fresh)
    sent_at = clock.t
    clock.t = sent_at + 99                               # Clock adds one per call
    assert shelf.prune_sent(keep_s=100) == 1             # exactly keep_s: due


def test_a_shelf_fills_to_exactly_its_size_without_dropping(tmp_path):
    shelf = MediaShelf(tmp_path, 2000, Clock())
    shelf.add(blob(1000, 16), "clip", "r1")
    shelf.add(blob(1000, 17), "clip", "r2")
    assert len(shelf.pending()) == 2 and shelf.take_dropped() == []
    whole = MediaShelf(tmp_path / "b", 2000, Clock())
    assert whole.add(blob(2000, 18), "clip", "r3")["bytes"] == 2000   # as large as the shelf


def test_reconciling_is_written_down_and_a_file_already_gone_is_no_error(tmp_path):
    assert MediaShelf(tmp_path / "tiny", 1).max_bytes == 1       # one byte is a size
    shelf = MediaShelf(tmp_path, 10_000, Clock())
    kept = shelf.add(blob(100, 19), "clip", "r1")
    lost = shelf.add(blob(100, 20), "memo", "r2")
    (tmp_path / f"{lost['sha256']}.ogg").unlink()
    (tmp_path / ("ef" * 32 + ".mp4")).write_bytes(b"orphan")
    MediaShelf(tmp_path, 10_000, Clock())                        # reconciles, and saves it
    index = json.loads((tmp_path / INDEX).read_text())
    assert {e["sha256"] for e in index["pending"]} == {kept["sha256"], "ef" * 32}
    assert [d["sha256"] for d in index["dropped"]] == [lost["sha256"]]
    again = MediaShelf(tmp_path, 10_000, Clock())
    (tmp_path / f"{kept['sha256']}.mp4").unlink()                # gone under its feet
    assert again.delivered(kept["sha256"]) is True
