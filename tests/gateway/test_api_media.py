"""Serving clips and memos: the right content type, HTTP byte ranges (206, Accept-Ranges,
416 for a range beyond the file), and the report's view listing its media.  The media
arrive through the real path (validator → ingest → media store)."""

import hashlib
import json
import urllib.error
import urllib.request

import pytest
from gridlink.firmware.core import messages
from gridlink.firmware.device import memo
from gridlink.gateway.api import create_app
from gridlink.gateway.httpserver import BackgroundServer
from gridlink.gateway.ingest import Ingest, Item
from gridlink.gateway.media import LocalMediaStore
from gridlink.gateway.media_ingest import MIGRATIONS
from gridlink.gateway.photos import PhotoDir
from gridlink.gateway.validate import Validator

from tests.support.gateway_rig import topic
from tests.support.intake_api import Api, Tokens, add_report


@pytest.fixture(scope="module")
def memo_bytes():
    return memo.encode_memo(memo.synthetic_memo(2))


@pytest.fixture
def served(store, tmp_path, memo_bytes):
    """(api, base url, report id, memo sha256): one report with a memo, served."""
    store.migrate(extra=MIGRATIONS)
    media_store = LocalMediaStore(tmp_path / "media")
    rid = add_report(store, 1)
    sha = hashlib.sha256(memo_bytes).hexdigest()
    parts = [memo_bytes[i:i + 8192] for i in range(0, len(memo_bytes), 8192)]
    judge = Validator()
    msgs = [(topic("pv-0001", f"media/{rid}/{n}"),
             messages.make_media_chunk("memo", sha, n, len(parts), len(memo_bytes), part,
                                       hashlib.sha256(part).hexdigest()))
            for n, part in enumerate(parts)]
    batch = [Item(t, p, 0.0, judge.decode(t, p, 0.0)) for t, p in msgs]
    Ingest(store, PhotoDir(tmp_path / "photos"), media_store).commit(batch)
    assert {it.outcome for it in batch} == {"stored"}
    app = create_app(store, photos_dir=tmp_path / "photos", media_store=media_store)
    with BackgroundServer(app) as server:
        yield Api(server.url, Tokens(store)), server.url, rid, sha


def fetch(api, base, path, headers=None):
    """(status, headers, body) of a GET signed in as the default operator."""
    req = urllib.request.Request(base + path, headers={**api.auth(), **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def test_a_memo_is_served_whole_with_its_type_and_range_support(served, memo_bytes):
    api, base, _rid, sha = served
    status, headers, body = fetch(api, base, f"/api/media/{sha}")
    assert status == 200 and body == memo_bytes
    assert headers["Content-Type"] == "audio/ogg" and headers["Accept-Ranges"] == "bytes"


@pytest.mark.parametrize(("asked", "first", "last"), [
    ("bytes=0-99", 0, 99), ("bytes=100-", 100, None), ("bytes=-50", -50, None),
    ("bytes=10-999999999", 10, None)])
def test_a_range_gets_206_with_just_those_bytes(served, memo_bytes, asked, first, last):
    api, base, _rid, sha = served
    status, headers, body = fetch(api, base, f"/api/media/{sha}", {"Range": asked})
    want = memo_bytes[first:None if last is None else last + 1]
    assert status == 206 and body == want
    start = first % len(memo_bytes)
    assert headers["Content-Range"] == (f"bytes {start}-{start + len(want) - 1}"
                                        f"/{len(memo_bytes)}")
    assert headers["Accept-Ranges"] == "bytes" and headers["Content-Type"] == "audio/ogg"


def test_a_range_beyond_the_file_gets_416_naming_the_size(served, memo_bytes):
    api, base, _rid, sha = served
    status, headers, _body = fetch(api, base, f"/api/media/{sha}",
                                   {"Range": f"bytes={len(memo_bytes)}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(memo_bytes)}"
    status, _h, body = fetch(api, base, f"/api/media/{sha}")      # the file is still there
    assert status == 200 and body == memo_bytes


def test_unknown_media_is_404_and_anonymous_is_401(served):
    api, base, _rid, sha = served
    assert fetch(api, base, "/api/media/" + "0" * 64)[0] == 404
    assert fetch(api, base, "/api/media/not-a-hash")[0] == 422
    assert api.anonymous().call("GET", f"/api/media/{sha}")[0] == 401


def test_the_reports_view_lists_its_media(served, memo_bytes):
    api, _base, rid, sha = served
    status, view = api.get(f"/api/reports/{rid}")
    assert status == 200
    (listed,) = view["media"]
    assert (listed["sha256"], listed["kind"], listed["content_type"], listed["bytes"]) == \
        (sha, "memo", "audio/ogg", len(memo_bytes))
    assert listed["seconds"] > 1.5
    assert api.get("/api/reports/pv-0001:000000000002")[0] == 404


def test_a_clip_task_lists_the_clip_that_came_back_with_its_result(store, tmp_path):
    """The centre asks pv-0001 for its last 30 s; the result report and its clip arrive
    (validator → ingest); the task's view lists the clip."""
    from tests.support.clips import tiny_clip
    from tests.support.gateway_rig import encode, report

    store.migrate(extra=MIGRATIONS)
    media_store = LocalMediaStore(tmp_path / "media")
    sent = []
    app = create_app(store, photos_dir=tmp_path / "photos", media_store=media_store,
                     publisher=lambda topic, payload, qos=1: sent.append((topic, payload)))
    with BackgroundServer(app) as server:
        api = Api(server.url, Tokens(store))
        status, task = api.post("/api/tasks", {"type": "clip", "device": "pv-0001",
                                               "lat": 34.805, "lon": 113.285,
                                               "text": "最近30秒"})
        assert status == 201 and task["type"] == "clip" and task["state"] == "sent"
        (topic_name, payload), = sent
        assert messages.validate_task(json.loads(payload))["type"] == "clip"
        assert topic_name.endswith("/pv-0001/task")
        result = report("pv-0001", 5, source="task", task=task["id"], result="recorded")
        clip = tiny_clip(tmp_path)
        sha = hashlib.sha256(clip).hexdigest()
        parts = [clip[i:i + 16384] for i in range(0, len(clip), 16384)]
        msgs = [(topic("pv-0001", "task/result"), encode(result))] + [
            (topic("pv-0001", f"media/{result['id']}/{n}"),
             messages.make_media_chunk("clip", sha, n, len(parts), len(clip), part,
                                       hashlib.sha256(part).hexdigest()))
            for n, part in enumerate(parts)]
        judge = Validator()
        batch = [Item(t, p, 0.0, judge.decode(t, p, 0.0)) for t, p in msgs]
        Ingest(store, PhotoDir(tmp_path / "photos"), media_store).commit(batch)
        assert batch[0].outcome == "accepted", batch[0].reason
        status, done = api.get(f"/api/tasks/{task['id']}")
        assert status == 200 and done["state"] == "done" and done["result"] == "recorded"
        assert done["result_report"] == result["id"]
        (listed,) = done["media"]
        assert (listed["sha256"], listed["kind"]) == (sha, "clip")
        assert fetch(api, server.url, f"/api/media/{sha}", {"Range": "bytes=0-3"})[2] == \
            clip[:4]
        status, _ = api.post("/api/tasks", {"type": "photo", "lat": 34.8, "lon": 113.2})
        assert status == 422                          # an unknown type is refused


def test_a_clip_task_fits_a_report_at_any_stage(served):
    """核实 only before 立案 and 核查 only after 处置反馈, but video can be asked for any
    time: a clip task about a report that is a case already is taken."""
    api, _base, rid, _sha = served
    status, decided = api.post(f"/api/reports/{rid}/accept", {})
    assert status == 200 and decided["state"] == "accepted", decided
    assert api.post("/api/tasks", {"type": "verify", "report_id": rid})[0] == 409
    status, task = api.post("/api/tasks", {"type": "clip", "report_id": rid})
    assert status == 201 and task["type"] == "clip" and task["report_id"] == rid
