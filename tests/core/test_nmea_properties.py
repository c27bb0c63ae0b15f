"""Properties of the NMEA decoder: it never raises, chunking never matters, checksums
round-trip and catch every single-byte change."""

from itertools import pairwise

import pytest
from gridlink.firmware.core.nmea import NmeaDecoder, checksum, sentence
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.shared import NMEA, nmea_logs, require

# the real logs (a test fails, naming the folder, when they are missing)
CAPTURES = [p.read_bytes() for p in nmea_logs()]
LINES = [line for data in CAPTURES for line in data.splitlines() if line[:1] == b"$"]


@pytest.fixture(autouse=True, scope="module")
def shared_logs():
    require(NMEA)


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(chunks, **options):
    """Feed chunks; return (fixes as comparable tuples, stats)."""
    dec = NmeaDecoder(min_year=1980, **options)
    fixes = []
    for chunk in chunks:
        fixes.extend(dec.feed(chunk))
    fixes.extend(dec.flush())
    stats = dec.stats()
    assert stats["sentences"] == stats["accepted"] + sum(stats["rejected"].values())
    assert stats["fixes"] == len(fixes)
    return [(f.tod, tuple(f.to_dict().items())) for f in fixes], stats


def split_at(data, cuts):
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


@FAST
@given(st.binary(max_size=3000), st.booleans())
def test_arbitrary_bytes_never_raise(data, lenient):
    run([data], allow_no_checksum=lenient)


mutation = st.tuples(st.sampled_from(["replace", "insert", "delete"]),
                     st.integers(0, 200), st.sampled_from(b"$*,.\r\n\x00AN09-" + bytes([255])))


@FAST
@given(st.lists(st.sampled_from(LINES), min_size=1, max_size=30),
       st.lists(mutation, max_size=12), st.lists(st.integers(0, 5000), max_size=8),
       st.booleans())
def test_mutated_real_lines_in_random_chunks_never_raise(lines, mutations, cuts, lenient):
    data = bytearray(b"\r\n".join(lines) + b"\r\n")
    for op, where, byte in mutations:
        i = where % (len(data) + 1)
        if op == "insert":
            data[i:i] = bytes([byte])
        elif i < len(data):
            if op == "replace":
                data[i] = byte
            else:
                del data[i]
    run(split_at(bytes(data), cuts), allow_no_checksum=lenient)


@FAST
@given(st.sampled_from(range(len(CAPTURES))), st.integers(0, 60000), st.integers(200, 6000),
       st.lists(st.integers(0, 10 ** 6), max_size=40))
def test_chunking_never_changes_fixes_or_counters(which, offset, length, cuts):
    capture = CAPTURES[which]
    start = offset % max(1, len(capture))
    data = capture[start:start + length]
    assert run(split_at(data, cuts)) == run([data])


@FAST
@given(st.binary(min_size=1, max_size=40).map(lambda b: bytes(c for c in b if 32 < c < 127
                                                             and c not in b"$*!")))
def test_checksum_round_trip_and_single_byte_changes_are_caught(payload):
    body = b"GPZZZ," + payload
    line = sentence(body)
    assert int(line[-4:-2], 16) == checksum(body)
    dec = NmeaDecoder()
    dec.feed(line)
    assert dec.rejected["unknown"] == 1  # checksum accepted, type unknown
    for i in range(1, len(line) - 5):
        changed = bytearray(line)
        changed[i] = 0x41 if changed[i] != 0x41 else 0x42
        dec = NmeaDecoder()
        dec.feed(bytes(changed))
        assert dec.rejected["bad_checksum"] == 1, changed
