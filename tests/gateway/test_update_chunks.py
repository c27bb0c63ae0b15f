"""The gateway's answers to a sensor node's requests for pieces of a release (protocol
§3.9): pieces of the release tar's files, and an ``error`` for everything else."""

import json

import pytest
from gridlink.firmware.core import otachunk
from gridlink.gateway.update_chunks import ChunkServer
from gridlink.gateway.update_repo import UpdateRepository

from tests.support.fleet import mcu_release_repo

GET = "gridlink/v1/410106/sn-0007/ota/get"
BODY = bytes(range(256)) * 40     # 10240 bytes: three pieces of 4096


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = mcu_release_repo(tmp_path_factory.mktemp("chunks"), BODY)
    sent = []
    chunks = ChunkServer(UpdateRepository(repo),
                         lambda topic, payload, qos, retain: sent.append((topic, payload, qos)))
    return chunks, sent


def ask(server, payload, topic=GET):
    chunks, sent = server
    sent.clear()
    reply = chunks.handle(topic, payload)
    if reply is None:
        assert sent == []
        return None
    assert sent == [("gridlink/v1/410106/sn-0007/ota/chunk", reply, 0)]
    return otachunk.parse_reply(reply)


def test_a_file_comes_whole_piece_by_piece_from_any_offset(server):
    got, offset = b"", 0
    while True:
        head, data = ask(server, otachunk.make_request("2.0", "image/lib/x.mpy", offset, 4096))
        assert head["size"] == len(BODY) and head["offset"] == offset
        if not data:
            break
        got += data
        offset += len(data)
    assert got == BODY
    head, data = ask(server, otachunk.make_request("2.0", "image/lib/x.mpy", 5000, 100))
    assert data == BODY[5000:5100]


@pytest.mark.parametrize(("request_", "error"), [
    (otachunk.make_request("9.9", "image/lib/x.mpy", 0), "no release mcu 9.9"),
    (otachunk.make_request("2.0", "image/lib/y.mpy", 0), "has no file image/lib/y.mpy"),
    (otachunk.make_request("2.0", "image/lib/x.mpy", 20000), "has 10240 bytes, not 20000"),
    (otachunk.make_request("2.0", "release.json", 0), "bad request: file"),
    (otachunk.make_request("2.0", "image/../release.json", 0), "bad request: file"),
    (otachunk.make_request("2.0", "image/lib/x.mpy", 0, 100000), "bad request: length"),
    (otachunk.make_request("2.x", "image/lib/x.mpy", 0), "bad request: version"),
])
def test_what_cannot_be_served_is_answered_with_the_reason(server, request_, error):
    head, data = ask(server, request_)
    assert error in head["error"] and "size" not in head and data == b""


@pytest.mark.parametrize("payload", [b"not json", b"[]", json.dumps({"v": 1}).encode()])
def test_a_request_without_a_file_to_name_gets_no_answer(server, payload):
    assert ask(server, payload) is None


def test_a_request_on_another_topic_gets_no_answer(server):
    request = otachunk.make_request("2.0", "image/lib/x.mpy", 0)
    assert ask(server, request, "gridlink/v1/410106/sn-0007/status") is None
    assert ask(server, request, "elsewhere/ota/get") is None


def test_a_code_book_is_served_by_the_sha256_of_its_file(tmp_path):
    import hashlib

    from gridlink.gateway.update_chunks import CodeBookFiles, shipped_books

    (tmp_path / "slim.json").write_bytes(b'{"format": "gridlink-codebook/1"}' * 200)
    data = (tmp_path / "slim.json").read_bytes()
    sent = []
    chunks = ChunkServer(None, lambda t, p, qos, retain: sent.append(p),
                         CodeBookFiles(shipped_books(), tmp_path))
    name = "codebook/" + hashlib.sha256(data).hexdigest()
    got = b""
    while len(got) < len(data):
        head, piece = otachunk.parse_reply(chunks.handle(GET, otachunk.make_request(
            "9b9bd01eda60", name, len(got), 4096)))
        assert head["size"] == len(data) and piece
        got += piece
    assert got == data
    shipped = (shipped_books() / "cjt214-2007.json").read_bytes()
    head, piece = otachunk.parse_reply(chunks.handle(GET, otachunk.make_request(
        "4ea8fd4c181b", "codebook/" + hashlib.sha256(shipped).hexdigest(), 0, 8192)))
    assert piece == shipped[:8192]
    head, _ = otachunk.parse_reply(chunks.handle(GET, otachunk.make_request(
        "1", "codebook/" + "0" * 64, 0, 10)))
    assert head["error"].startswith("no code book file with sha256")
    head, _ = otachunk.parse_reply(chunks.handle(GET, otachunk.make_request(
        "1.0", "image/lib/x.mpy", 0, 10)))
    assert head["error"] == "this gateway serves no releases"


def test_a_gateway_given_no_folder_of_code_books_says_so(tmp_path):
    from gridlink.gateway.errors import ConfigError
    from gridlink.gateway.service import Gateway

    with pytest.raises(ConfigError, match="--codebook-files: no folder"):
        Gateway(broker="mqtt://127.0.0.1:1", db=f"sqlite:///{tmp_path}/x.sqlite",
                photos=tmp_path / "photos", codebook_files=tmp_path / "absent")


def test_a_grid_map_is_served_by_the_sha256_of_its_file_and_a_bad_one_is_not(tmp_path,
                                                                               caplog):
    import hashlib

    from gridlink.gateway.update_chunks import MapFiles, shipped_maps

    shipped = (shipped_maps() / "shangjie.glgm").read_bytes()
    (tmp_path / "broken.glgm").write_bytes(shipped[:1000])       # cut short: not a map
    (tmp_path / "copy.glgm").write_bytes(shipped)
    maps = MapFiles(shipped_maps(), tmp_path)
    assert "broken.glgm not served" in caplog.text
    chunks = ChunkServer(None, lambda *a, **kw: None, maps=maps)
    digest = hashlib.sha256(shipped).hexdigest()
    got = b""
    while len(got) < len(shipped):     # a whole district's map, 45 pieces
        head, piece = otachunk.parse_reply(chunks.handle(GET, otachunk.make_request(
            digest[:12], "map/" + digest, len(got), otachunk.CHUNK_MAX)))
        assert head["size"] == len(shipped) and piece
        got += piece
    assert got == shipped
    for missing in (hashlib.sha256(shipped[:1000]).hexdigest(), "0" * 64):
        head, _ = otachunk.parse_reply(chunks.handle(GET, otachunk.make_request(
            "1", "map/" + missing, 0, 10)))
        assert head["error"] == f"no grid map with sha256 {missing}"
    head, _ = otachunk.parse_reply(chunks.handle(GET, otachunk.make_request(
        digest[:12], "map/" + digest, len(shipped) + 1, 10)))
    assert head["error"] == f"the grid map has {len(shipped)} bytes, not {len(shipped) + 1}"


def test_a_gateway_given_no_folder_of_maps_says_so(tmp_path):
    from gridlink.gateway.errors import ConfigError
    from gridlink.gateway.service import Gateway

    with pytest.raises(ConfigError, match="--map-files: no folder"):
        Gateway(broker="mqtt://127.0.0.1:1", db=f"sqlite:///{tmp_path}/x.sqlite",
                photos=tmp_path / "photos", map_files=tmp_path / "absent")


def test_a_map_put_in_the_folder_later_is_served_without_a_restart(tmp_path):
    import hashlib

    from gridlink.gateway.update_chunks import MapFiles, shipped_maps

    maps = MapFiles(tmp_path)
    chunks = ChunkServer(None, lambda *a, **kw: None, maps=maps)
    data = (shipped_maps() / "shangjie.glgm").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    (tmp_path / "new.glgm").write_bytes(data)
    maps._scanned -= maps.RESCAN_S          # the last reading is a while ago
    head, piece = otachunk.parse_reply(chunks.handle(GET, otachunk.make_request(
        digest[:12], "map/" + digest, 0, 100)))
    assert head["size"] == len(data) and piece == data[:100]
