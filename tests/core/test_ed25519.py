"""The core's Ed25519 verifier and SHA-512 agree with ``cryptography`` and ``hashlib``,
under CPython and under MicroPython (the WebAssembly port), whose run time is measured."""

import hashlib
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gridlink.firmware.core.ed25519 import verify
from gridlink.firmware.core.sha512 import sha512
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.mpy_wasm import run_micropython


def keypair(seed):
    key = Ed25519PrivateKey.from_private_bytes(seed)
    return key, key.public_key().public_bytes(serialization.Encoding.Raw,
                                              serialization.PublicFormat.Raw)


@given(st.binary(max_size=600))
def test_sha512_agrees_with_hashlib(data):
    assert sha512(data) == hashlib.sha512(data).digest()


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=200))
def test_verify_accepts_what_cryptography_signs(seed, message):
    key, public = keypair(seed)
    assert verify(public, message, key.sign(message))


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=1, max_size=100),
       st.integers(min_value=0, max_value=8 * 64 - 1))
def test_verify_refuses_any_flipped_signature_bit(seed, message, bit):
    key, public = keypair(seed)
    signature = bytearray(key.sign(message))
    signature[bit // 8] ^= 1 << (bit % 8)
    assert not verify(public, message, bytes(signature))


def test_verify_refuses_another_message_another_key_and_malformed_input():
    key, public = keypair(bytes(range(32)))
    _other, other_public = keypair(bytes(32))
    sig = key.sign(b"manifest")
    assert verify(public, b"manifest", sig)
    assert not verify(public, b"manifesT", sig)
    assert not verify(other_public, b"manifest", sig)
    assert not verify(public[:31], b"manifest", sig)
    assert not verify(public, b"manifest", sig[:63])
    assert not verify(b"\xff" * 32, b"manifest", sig)           # not a point
    s_too_big = sig[:32] + (2 ** 253).to_bytes(32, "little")
    assert not verify(public, b"manifest", s_too_big)


MPY_SCRIPT = """
import json, time, binascii
from gridcore.ed25519 import verify
from gridcore.sha512 import sha512
cases = json.loads(CASES)
out = []
t0 = time.ticks_ms()
for pub, msg, sig in cases:
    out.append(verify(binascii.unhexlify(pub), binascii.unhexlify(msg),
                      binascii.unhexlify(sig)))
ms = time.ticks_diff(time.ticks_ms(), t0)
print(json.dumps({"results": out, "ms_per_verify": ms / len(cases),
                  "sha": binascii.hexlify(sha512(b"abc" * 50)).decode()}))
"""


@pytest.mark.micropython
def test_verify_under_micropython_agrees_and_is_timed():
    cases, expected = [], []
    for i in range(4):
        key, public = keypair(bytes([i]) * 32)
        message = hashlib.sha256(f"manifest {i}".encode()).digest()
        sig = key.sign(message)
        cases.append([public.hex(), message.hex(), sig.hex()])
        expected.append(True)
        bad = bytearray(sig)
        bad[i * 7] ^= 4
        cases.append([public.hex(), message.hex(), bytes(bad).hex()])
        expected.append(False)
    script = f"CASES = {json.dumps(json.dumps(cases))}\n" + MPY_SCRIPT
    result = json.loads(run_micropython(script).strip().splitlines()[-1])
    assert result["results"] == expected
    assert result["sha"] == hashlib.sha512(b"abc" * 50).hexdigest()
    assert result["ms_per_verify"] < 10_000
    print(f"Ed25519 verify under MicroPython (WebAssembly): {result['ms_per_verify']:.0f} ms")
