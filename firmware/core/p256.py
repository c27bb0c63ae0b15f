"""ECDSA over NIST P-256 with SHA-256 in plain Python, for the sensor node to make its own
key and sign its certificate request on MicroPython (no EC library there), and to check
that a certificate is signed by its CA.  Signatures use RFC 6979's deterministic nonce
(no random source needed to sign); a key needs 32 random bytes from the board.  Agrees
with ``cryptography`` (tests/core/test_p256.py).  Not constant-time: the node signs once
per renewal (its one CSR), so a timing attack would need the board in hand.
"""

import hashlib

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
G = (0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
     0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)


def _double(p):
    """2·p in Jacobian coordinates (X, Y, Z), a = -3; Z = 0 is the point at infinity."""
    x, y, z = p
    if not z:
        return p
    delta = z * z % P
    gamma = y * y % P
    beta = x * gamma % P
    alpha = 3 * (x - delta) * (x + delta) % P
    x3 = (alpha * alpha - 8 * beta) % P
    z3 = ((y + z) * (y + z) - gamma - delta) % P
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % P
    return (x3, y3, z3)


def _add_affine(p, q):
    """p (Jacobian) + q (affine x, y)."""
    x1, y1, z1 = p
    if not z1:
        return (q[0], q[1], 1)
    zz = z1 * z1 % P
    h = (q[0] * zz - x1) % P
    r = (q[1] * z1 * zz - y1) % P
    if not h:
        return _double(p) if not r else (1, 1, 0)
    hh = h * h % P
    hhh = h * hh % P
    v = x1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    return (x3, (r * (v - x3) - y1 * hhh) % P, z1 * h % P)


def _affine(p):
    x, y, z = p
    if not z:
        return None
    zi = pow(z, P - 2, P)
    zi2 = zi * zi % P
    return (x * zi2 % P, y * zi2 * zi % P)


def _mul2(k1, p1, k2=0, p2=None, tick=None):
    """k1·p1 + k2·p2 (affine points in, affine out or None for infinity), one pass;
    ``tick()`` is called every 32 bits (a board feeds its watchdog there)."""
    both = None
    if k2:
        both = _affine(_add_affine((p1[0], p1[1], 1), p2))
    r = (1, 1, 0)
    for i in range(255, -1, -1):   # scalars < N < 2**256 (MicroPython: no bit_length)
        if tick is not None and not i % 32:
            tick()
        r = _double(r)
        b1, b2 = (k1 >> i) & 1, (k2 >> i) & 1
        if b1 and b2:
            r = _add_affine(r, both) if both else r
        elif b1:
            r = _add_affine(r, p1)
        elif b2:
            r = _add_affine(r, p2)
    return _affine(r)


def on_curve(q):
    x, y = q
    return 0 <= x < P and 0 <= y < P and (y * y - x * x * x + 3 * x - B) % P == 0


def public_key(d, tick=None):
    """The public point (x, y) of private scalar ``d``."""
    return _mul2(d, G, tick=tick)


def private_key(random_bytes, tick=None):
    """A new private scalar from ``random_bytes(n)`` (the board's os.urandom), with its
    public point: (d, (x, y))."""
    while True:
        d = int.from_bytes(random_bytes(32), "big")
        if 0 < d < N:
            return d, public_key(d, tick)


def _hmac(key, data):
    key = key + bytes(64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key) + data).digest()
    return hashlib.sha256(bytes(b ^ 0x5C for b in key) + inner).digest()


def sign(d, digest, tick=None):
    """The ECDSA signature (r, s) of a SHA-256 ``digest`` with scalar ``d``; the nonce is
    RFC 6979's (deterministic: the same key and digest give the same signature)."""
    h = int.from_bytes(digest, "big")
    x = d.to_bytes(32, "big")
    h1 = (h % N).to_bytes(32, "big")
    v, k = b"\x01" * 32, b"\x00" * 32
    k = _hmac(k, v + b"\x00" + x + h1)
    v = _hmac(k, v)
    k = _hmac(k, v + b"\x01" + x + h1)
    v = _hmac(k, v)
    while True:
        v = _hmac(k, v)
        nonce = int.from_bytes(v, "big")
        if 0 < nonce < N:
            r = public_key(nonce, tick)[0] % N
            if r:
                s = pow(nonce, N - 2, N) * (h + r * d) % N
                if s:
                    return r, s
        k = _hmac(k, v + b"\x00")
        v = _hmac(k, v)


def verify(q, digest, r, s, tick=None):
    """True when (r, s) is public point ``q``'s signature of the SHA-256 ``digest``."""
    if not (0 < r < N and 0 < s < N) or not on_curve(q):
        return False
    w = pow(s, N - 2, N)
    h = int.from_bytes(digest, "big")
    got = _mul2(h * w % N, G, r * w % N, q, tick)
    return got is not None and got[0] % N == r
