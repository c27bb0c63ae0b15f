"""The core's P-256 ECDSA agrees with ``cryptography``: its keys, its signatures (RFC 6979
nonces) and its verification, on CPython and under MicroPython (the WebAssembly port),
where key generation and signing are timed."""

import hashlib
import json
import os

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from gridlink.firmware.core import p256
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.mpy_wasm import run_micropython

scalars = st.integers(min_value=1, max_value=p256.N - 1)


def theirs(d):
    return ec.derive_private_key(d, ec.SECP256R1())


def point(key):
    n = key.public_key().public_numbers()
    return (n.x, n.y)


@settings(max_examples=40, deadline=None)
@given(scalars)
def test_the_public_point_is_cryptographys(d):
    assert p256.public_key(d) == point(theirs(d))


@settings(max_examples=40, deadline=None)
@given(scalars, st.binary(max_size=300))
def test_signatures_verify_with_cryptography(d, message):
    r, s = p256.sign(d, hashlib.sha256(message).digest())
    theirs(d).public_key().verify(encode_dss_signature(r, s), message,
                                  ec.ECDSA(hashes.SHA256()))


@settings(max_examples=40, deadline=None)
@given(scalars, st.binary(max_size=300), st.integers(min_value=0, max_value=511))
def test_verify_accepts_cryptographys_signatures_and_refuses_any_flipped_bit(d, message, bit):
    key = theirs(d)
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
    digest = hashlib.sha256(message).digest()
    assert p256.verify(point(key), digest, r, s)
    raw = bytearray(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    raw[bit // 8] ^= 1 << (bit % 8)
    r2, s2 = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    assert not p256.verify(point(key), digest, r2, s2)


def test_rfc6979_vector_and_determinism():
    # RFC 6979 A.2.5, P-256 with SHA-256, message "sample"
    d = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
    digest = hashlib.sha256(b"sample").digest()
    assert p256.sign(d, digest) == (
        0xEFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716,
        0xF7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8)


def test_verify_refuses_out_of_range_values_and_points_off_the_curve():
    d = 12345
    q = p256.public_key(d)
    digest = hashlib.sha256(b"x").digest()
    r, s = p256.sign(d, digest)
    assert p256.verify(q, digest, r, s)
    assert not p256.verify(q, digest, 0, s)
    assert not p256.verify(q, digest, r, p256.N)
    assert not p256.verify((q[0], q[1] + 1), digest, r, s)
    assert not p256.verify(p256.public_key(d + 1), digest, r, s)


def test_a_key_comes_from_the_random_source_and_out_of_range_draws_are_drawn_again():
    draws = [b"\xff" * 32, bytes(32), (7).to_bytes(32, "big")]
    d, q = p256.private_key(lambda n: draws.pop(0))
    assert d == 7 and q == p256.public_key(7) and not draws


def test_tick_is_called_during_a_multiplication():
    ticks = []
    p256.public_key(p256.N - 2, lambda: ticks.append(1))
    assert len(ticks) == 8


MPY_SCRIPT = """
import json, time, binascii, hashlib
from gridcore import p256
seeds = json.loads(SEEDS)
keys, sigs, t_key, t_sign = [], [], 0, 0
for seed in seeds:
    raw = binascii.unhexlify(seed)
    t0 = time.ticks_ms()
    d, q = p256.private_key(lambda n: raw)
    t1 = time.ticks_ms()
    r, s = p256.sign(d, hashlib.sha256(b"csr " + raw).digest())
    t2 = time.ticks_ms()
    t_key += time.ticks_diff(t1, t0)
    t_sign += time.ticks_diff(t2, t1)
    keys.append([d, q[0], q[1]])
    sigs.append([r, s])
t0 = time.ticks_ms()
ok = p256.verify(q, hashlib.sha256(b"csr " + raw).digest(), r, s)
t_verify = time.ticks_diff(time.ticks_ms(), t0)
print(json.dumps({"keys": keys, "sigs": sigs, "ok": ok, "ms_key": t_key / len(seeds),
                  "ms_sign": t_sign / len(seeds), "ms_verify": t_verify}))
"""


@pytest.mark.micropython
def test_under_micropython_keys_and_signatures_agree_and_are_timed():
    seeds = [os.urandom(32) for _ in range(4)]
    seeds = [s for s in seeds if 0 < int.from_bytes(s, "big") < p256.N]
    script = f"SEEDS = {json.dumps(json.dumps([s.hex() for s in seeds]))}\n" + MPY_SCRIPT
    got = json.loads(run_micropython(script).strip().splitlines()[-1])
    for seed, (d, x, y), (r, s) in zip(seeds, got["keys"], got["sigs"], strict=True):
        assert d == int.from_bytes(seed, "big") and (x, y) == point(theirs(d))
        theirs(d).public_key().verify(encode_dss_signature(r, s), b"csr " + seed,
                                      ec.ECDSA(hashes.SHA256()))
    assert got["ok"] is True
    with pytest.raises(InvalidSignature):
        theirs(d).public_key().verify(encode_dss_signature(r, s), b"csr", ec.ECDSA(hashes.SHA256()))
    print(f"P-256 under MicroPython (WebAssembly): key {got['ms_key']:.0f} ms, "
          f"sign {got['ms_sign']:.0f} ms, verify {got['ms_verify']:.0f} ms")
