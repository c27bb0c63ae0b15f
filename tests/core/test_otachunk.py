"""The sensor node's release-piece messages (protocol §3.9): requests checked field by
field, replies split back into header and bytes."""

import pytest
from gridlink.firmware.core import otachunk
from gridlink.firmware.core.checks import MessageError
from hypothesis import given
from hypothesis import strategies as st

VERSIONS = st.lists(st.integers(0, 999999), min_size=1, max_size=4).map(
    lambda p: ".".join(map(str, p)))
NAMES = st.lists(st.text("abcXYZ019._-", min_size=1, max_size=12).filter(
    lambda s: s not in (".", "..")), min_size=1, max_size=4).map(
    lambda p: "image/" + "/".join(p))


@given(VERSIONS, NAMES, st.integers(0, otachunk.FILE_MAX), st.integers(1, otachunk.CHUNK_MAX),
       st.binary(max_size=300))
def test_a_request_and_its_reply_round_trip(version, name, offset, length, data):
    request = otachunk.parse_request(otachunk.make_request(version, name, offset, length))
    assert (request["version"], request["file"], request["offset"], request["length"]) == (
        version, name, offset, length)
    head, got = otachunk.parse_reply(otachunk.make_reply(request, 5000, data))
    assert (head["size"], head["offset"], got) == (5000, offset, data)
    head, got = otachunk.parse_reply(otachunk.make_reply(request, 0, error="no such file"))
    assert (head["error"], got) == ("no such file", b"")


def test_a_code_book_is_asked_for_by_its_sha256_and_version():
    name = "codebook/" + "0f" * 32
    request = otachunk.parse_request(otachunk.make_request("9b9bd01eda60+zz-410106.3f2a", name,
                                                           4096))
    assert otachunk.is_book(request["file"]) and request["offset"] == 4096


def test_a_map_is_asked_for_by_its_sha256_and_may_be_larger_than_a_release_file():
    name = "map/" + "1e" * 32
    request = otachunk.parse_request(otachunk.make_request("1e1e1e1e1e1e", name,
                                                           otachunk.FILE_MAX + 8192))
    assert otachunk.is_artifact(request["file"]) and not otachunk.is_book(request["file"])
    with pytest.raises(MessageError) as exc:   # a release file stays within FILE_MAX
        otachunk.parse_request(otachunk.make_request("1.0", "image/a", otachunk.FILE_MAX + 1))
    assert exc.value.field == "offset"
    with pytest.raises(MessageError) as exc:
        otachunk.parse_request(otachunk.make_request("1", "map/abc", 0))
    assert exc.value.field == "file" and "map/<sha256" in str(exc.value)


@pytest.mark.parametrize(("payload", "field"), [
    (b"\xff", "message"),
    (b'{"v":1,"version":"1.0","file":"image/a","offset":0}', "length"),
    (b'{"v":2,"version":"1.0","file":"image/a","offset":0,"length":1}', "v"),
    (b'{"v":1,"version":"1.0","file":"/etc/passwd","offset":0,"length":1}', "file"),
    (b'{"v":1,"version":"1.0","file":"image/./a","offset":0,"length":1}', "file"),
    (b'{"v":1,"version":"1.0","file":"image/","offset":0,"length":1}', "file"),
    (b'{"v":1,"version":"1.0","file":"image/a","offset":-1,"length":1}', "offset"),
    (b'{"v":1,"version":"1.0","file":"image/a","offset":0,"length":0}', "length"),
    (b'{"v":1,"version":"1.0","file":"image/a","offset":0,"length":1,"x":1}', "x"),
    # a code book: asked for by the sha256 of its file, its version the book's
    (b'{"v":1,"version":"9b9bd01eda60","file":"codebook/abc","offset":0,"length":1}', "file"),
    (b'{"v":1,"version":"9b9bd01eda60","file":"codebook/' + b"a" * 64 + b'/x","offset":0,'
     b'"length":1}', "file"),
    (b'{"v":1,"version":"9b9b/d01","file":"codebook/' + b"a" * 64 + b'","offset":0,'
     b'"length":1}', "version"),
])
def test_a_bad_request_is_refused_naming_the_field(payload, field):
    with pytest.raises(MessageError) as e:
        otachunk.parse_request(payload)
    assert e.value.field == field


@pytest.mark.parametrize("payload", [b"no header", b"[]\n", b'{"v":1,"offset":0}\n',
                                     b'{"v":1,"offset":"0","size":1}\n', b"\xff\n"])
def test_a_bad_reply_is_refused(payload):
    with pytest.raises(MessageError):
        otachunk.parse_reply(payload)
