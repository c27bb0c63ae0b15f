"""The gateway's answers to a sensor node's requests for pieces of a release (protocol
§3.9): pieces of the release tar's files, and an ``error`` for everything else."""

import json

import pytest
from gridlink.firmware.core import otachunk
from gridlink.fleet.keys import init_keys
from gridlink.fleet.release import write_release_tar
from gridlink.fleet.repo import Repository
from gridlink.gateway.update_chunks import ChunkServer
from gridlink.gateway.update_repo import UpdateRepository

GET = "gridlink/v1/410106/sn-0007/ota/get"
BODY = bytes(range(256)) * 40     # 10240 bytes: three pieces of 4096


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chunks")
    init_keys(tmp / "keys")
    src = tmp / "src"
    (src / "image" / "lib").mkdir(parents=True)
    (src / "image" / "lib" / "x.mpy").write_bytes(BODY)
    (src / "manifest").mkdir()
    (src / "manifest" / "manifest.txt").write_bytes(b"gridlink-manifest/1\n")
    write_release_tar(tmp / "r.tar", "mcu", "2.0", src)
    repo = Repository(tmp / "repo")
    repo.add_release(tmp / "keys", "mcu", "2.0", tmp / "r.tar")
    sent = []
    chunks = ChunkServer(UpdateRepository(repo.path),
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
