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
