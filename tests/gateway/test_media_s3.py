"""The S3 media store against a real S3-compatible server (moto's server mode, its own
process, over HTTP with boto3): the same content addressing, byte ranges and refusals as
the local folder, chosen by ``--media-store``; clips and memos served from it with ranges."""

import hashlib
import itertools

import pytest
from gridlink.firmware.core import messages
from gridlink.firmware.device import memo
from gridlink.gateway import media
from gridlink.gateway.api import create_app
from gridlink.gateway.errors import ConfigError
from gridlink.gateway.httpserver import BackgroundServer
from gridlink.gateway.ingest import Ingest, Item
from gridlink.gateway.media_ingest import MIGRATIONS
from gridlink.gateway.photos import PhotoDir
from gridlink.gateway.validate import Validator

from tests.support.gateway_rig import topic
from tests.support.intake_api import Api, Tokens, add_report
from tests.support.s3_server import CREDENTIALS, S3Server


@pytest.fixture(scope="module")
def s3():
    with pytest.MonkeyPatch.context() as mp:
        for name, value in CREDENTIALS.items():
            mp.setenv(name, value)
        with S3Server() as server:
            yield server


@pytest.fixture(scope="module")
def memo_bytes():
    return memo.encode_memo(memo.synthetic_memo(2))


_NUMBERS = itertools.count()


@pytest.fixture(params=["local", "s3"])
def any_store(request, tmp_path):
    if request.param == "local":
        return media.open_media_store(tmp_path / "media")
    s3 = request.getfixturevalue("s3")
    bucket = s3.bucket(f"media-{next(_NUMBERS)}")
    return media.open_media_store(f"s3://{bucket}/district/410106?endpoint={s3.endpoint}")


def test_either_store_keeps_media_by_hash_and_reads_ranges(any_store, memo_bytes):
    sha = any_store.put(memo_bytes, "audio/ogg")
    assert sha == hashlib.sha256(memo_bytes).hexdigest()
    assert any_store.has(sha) and any_store.size(sha) == len(memo_bytes)
    assert any_store.content_type(sha) == "audio/ogg"
    assert any_store.read(sha) == memo_bytes
    assert any_store.read(sha, 100, 199) == memo_bytes[100:200]
    assert any_store.read(sha, 100) == memo_bytes[100:]
    assert any_store.read(sha, len(memo_bytes) - 1) == memo_bytes[-1:]
    assert any_store.put(memo_bytes, "audio/ogg", sha) == sha        # idempotent


def test_either_store_refuses_alike_and_keeps_nothing_refused(any_store, memo_bytes):
    sha = hashlib.sha256(memo_bytes).hexdigest()
    with pytest.raises(media.MediaError, match="hash mismatch"):
        any_store.put(memo_bytes, "audio/ogg", "0" * 64)
    with pytest.raises(media.MediaError, match="not kept"):
        any_store.put(memo_bytes, "video/webm")
    assert not any_store.has(sha) and not any_store.has("0" * 64)
    for call in (any_store.size, any_store.read, any_store.content_type):
        with pytest.raises(media.MediaError, match="no media"):
            call(sha)
    with pytest.raises(media.MediaError, match="SHA-256"):
        any_store.has("../../etc/passwd")


def test_the_objects_sit_under_the_prefix_with_their_content_type(s3, memo_bytes):
    bucket = s3.bucket("media-layout")
    store = media.open_media_store(f"s3://{bucket}/gw/?endpoint={s3.endpoint}")
    assert isinstance(store, media.S3MediaStore)
    sha = store.put(memo_bytes, "audio/ogg")
    head = s3.client().head_object(Bucket=bucket, Key=f"gw/{sha[:2]}/{sha}")
    assert head["ContentType"] == "audio/ogg" and head["ContentLength"] == len(memo_bytes)
    # a second gateway worker (its own client) sees it at once
    again = media.open_media_store(f"s3://{bucket}/gw?endpoint={s3.endpoint}")
    assert again.read(sha, 0, 3) == b"OggS"


@pytest.mark.parametrize(("where", "message"), [
    ("ftp://bucket/x", "a folder or s3://"),
    ("s3:///prefix", "no bucket named"),
    ("s3://bucket?endpont=http://127.0.0.1:1", "unknown option endpont"),
])
def test_a_media_store_url_it_cannot_use_is_refused(where, message):
    with pytest.raises(ConfigError, match=message):
        media.open_media_store(where)


def test_a_missing_bucket_or_an_unreachable_server_is_a_config_error(s3, monkeypatch):
    with pytest.raises(ConfigError, match="S3 media bucket 'no-such-bucket'"):
        media.open_media_store(f"s3://no-such-bucket?endpoint={s3.endpoint}")
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    from tests.support.s3_server import free_port

    with pytest.raises(ConfigError, match=r"S3 media bucket 'b1'.*Could not connect"):
        media.open_media_store(f"s3://b1?endpoint=http://127.0.0.1:{free_port()}")


def test_a_memo_arrives_into_the_bucket_and_is_served_from_it_with_ranges(
        s3, store, tmp_path, memo_bytes):
    import urllib.error
    import urllib.request

    store.migrate(extra=MIGRATIONS)
    bucket = s3.bucket(f"media-served-{next(_NUMBERS)}")
    media_store = media.open_media_store(f"s3://{bucket}?endpoint={s3.endpoint}")
    rid = add_report(store, 1)
    sha = hashlib.sha256(memo_bytes).hexdigest()
    parts = [memo_bytes[i:i + 8192] for i in range(0, len(memo_bytes), 8192)]
    judge = Validator()
    batch = [Item(t, p, 0.0, judge.decode(t, p, 0.0)) for t, p in (
        (topic("pv-0001", f"media/{rid}/{n}"),
         messages.make_media_chunk("memo", sha, n, len(parts), len(memo_bytes), part,
                                   hashlib.sha256(part).hexdigest()))
        for n, part in enumerate(parts))]
    Ingest(store, PhotoDir(tmp_path / "photos"), media_store).commit(batch)
    assert {it.outcome for it in batch} == {"stored"}
    assert not (tmp_path / "media").exists()                     # nothing on local disk
    app = create_app(store, photos_dir=tmp_path / "photos", media_store=media_store)
    with BackgroundServer(app) as server:
        api = Api(server.url, Tokens(store))

        def fetch(headers=None):
            req = urllib.request.Request(f"{server.url}/api/media/{sha}",
                                         headers={**api.auth(), **(headers or {})})
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    return resp.status, resp.headers, resp.read()
            except urllib.error.HTTPError as err:
                return err.code, err.headers, err.read()

        status, headers, body = fetch()
        assert (status, headers["Content-Type"], body) == (200, "audio/ogg", memo_bytes)
        status, headers, body = fetch({"Range": "bytes=-50"})
        assert (status, body) == (206, memo_bytes[-50:])
        n = len(memo_bytes)
        assert headers["Content-Range"] == f"bytes {n - 50}-{n - 1}/{n}"
        status, headers, _ = fetch({"Range": f"bytes={n}-"})
        assert (status, headers["Content-Range"]) == (416, f"bytes */{n}")
