"""A sensor node's key file, certificate request and certificate facts, in plain Python
(p256 and der): what it needs to renew its certificate with no EC library.

- ``key_pem(d, q)``: the key as PKCS#8 PEM (``PRIVATE KEY``, the ECPrivateKey inside
  carries the public point), the form ``gridlink flash provision`` writes device.key in
  and MicroPython's ``ssl`` (mbedTLS) loads; ``read_key`` reads it back (or SEC1
  ``EC PRIVATE KEY``).
- ``csr_pem(d, q, cn)``: a PKCS#10 request (CN = the device, O = gridlink), signed
  ECDSA-SHA256.
- ``facts(cert_pem)``: a certificate's subject CN, public point, validity (Unix seconds)
  and what its signature covers; ``signed_by(facts, ca_facts)`` checks that signature
  when the CA's key is P-256.
"""

import hashlib

from . import der, p256
from .timefmt import days_from_civil

EC_PUBLIC_KEY = der.tlv(der.OID, b"\x2a\x86\x48\xce\x3d\x02\x01")       # 1.2.840.10045.2.1
PRIME256V1 = der.tlv(der.OID, b"\x2a\x86\x48\xce\x3d\x03\x01\x07")      # 1.2.840.10045.3.1.7
ECDSA_SHA256 = der.tlv(der.OID, b"\x2a\x86\x48\xce\x3d\x04\x03\x02")    # 1.2.840.10045.4.3.2
CN = b"\x55\x04\x03"                                                   # 2.5.4.3
O = b"\x55\x04\x0a"                                                    # noqa: E741 2.5.4.10


class CertError(der.DerError):
    """A key file or certificate this node cannot read."""


def point(q):
    return b"\x04" + q[0].to_bytes(32, "big") + q[1].to_bytes(32, "big")


def spki(q):
    return der.seq(der.seq(EC_PUBLIC_KEY, PRIME256V1), der.bits(point(q)))


def _ec_private_key(d, q):
    return der.seq(der.integer(1), der.tlv(der.OCTET_STRING, d.to_bytes(32, "big")),
                   der.tlv(0xA1, der.bits(point(q))))


def key_pem(d, q):
    body = der.seq(der.integer(0), der.seq(EC_PUBLIC_KEY, PRIME256V1),
                   der.tlv(der.OCTET_STRING, _ec_private_key(d, q)))
    return der.pem("PRIVATE KEY", body)


def _point_of(raw):
    raw = bytes(raw)
    if len(raw) != 65 or raw[0] != 4:
        raise CertError("not an uncompressed P-256 point")
    q = (int.from_bytes(raw[1:33], "big"), int.from_bytes(raw[33:], "big"))
    if not p256.on_curve(q):
        raise CertError("the public key is not on P-256")
    return q


def read_key(pem_text):
    """(d, q) of a P-256 key in PKCS#8 or SEC1 PEM; q from the file or computed."""
    try:
        buf = der.unpem(pem_text, "PRIVATE KEY")
        top = der.children(buf, *der.read(buf)[1:])
        if bytes(buf[top[1][1]:top[1][2]]) != EC_PUBLIC_KEY + PRIME256V1:
            raise CertError("the key is not an EC P-256 key")
        buf = bytes(buf[top[2][1]:top[2][2]])
    except der.DerError as e:
        if isinstance(e, CertError):
            raise
        buf = der.unpem(pem_text, "EC PRIVATE KEY")
    parts = der.children(buf, *der.read(buf)[1:])
    d = der.to_int(buf, der.expect(buf, parts[1], der.OCTET_STRING, "private key"))
    if not 0 < d < p256.N:
        raise CertError("the private key is out of range")
    for t, s, e in parts[2:]:
        if t == 0xA1:
            _, bs, be = der.read(buf, s, e)
            q = _point_of(buf[bs + 1:be])
            return d, q
    return d, p256.public_key(d)


def _name(cn):
    def rdn(oid, value):
        return der.tlv(der.SET, der.seq(der.tlv(der.OID, oid), der.tlv(der.UTF8, value)))
    return der.seq(rdn(CN, cn.encode()), rdn(O, b"gridlink"))


def signature(d, message, tick=None):
    r, s = p256.sign(d, hashlib.sha256(message).digest(), tick)
    return der.seq(der.integer(r), der.integer(s))


def csr_pem(d, q, cn, tick=None):
    """A PKCS#10 request for key (d, q) with subject CN = ``cn``, O = gridlink."""
    info = der.seq(der.integer(0), _name(cn), spki(q), der.tlv(0xA0, b""))
    body = der.seq(info, der.seq(ECDSA_SHA256), der.bits(signature(d, info, tick)))
    return der.pem("CERTIFICATE REQUEST", body)


def _time(buf, element):
    t, s, e = element
    text = bytes(buf[s:e]).decode()
    if t == 0x17 and len(text) == 13:      # UTCTime YYMMDDHHMMSSZ
        y = int(text[:2])
        text = str(1900 + y if y >= 50 else 2000 + y) + text[2:]
    elif t != 0x18 or len(text) != 15:      # GeneralizedTime YYYYMMDDHHMMSSZ
        raise CertError("a validity time in a form this node does not read")
    if text[-1] != "Z":
        raise CertError("a validity time not in UTC")
    y, mo, d = int(text[:4]), int(text[4:6]), int(text[6:8])
    hh, mm, ss = int(text[8:10]), int(text[10:12]), int(text[12:14])
    return days_from_civil(y, mo, d) * 86400 + hh * 3600 + mm * 60 + ss


def _common_name(buf, element):
    for _, s, e in der.children(buf, element[1], element[2]):           # SET
        for _, as_, ae in der.children(buf, s, e):                         # SEQ
            oid, value = der.children(buf, as_, ae)[:2]
            if bytes(buf[oid[1]:oid[2]]) == CN:
                return bytes(buf[value[1]:value[2]]).decode()
    return None


def facts(cert_pem):
    """{cn, public (x, y) or None when not P-256, not_before, not_after (Unix s),
    tbs (bytes), sig_alg_ec256 (bool), sig (r, s) or None} of a PEM certificate."""
    try:
        buf = der.unpem(cert_pem, "CERTIFICATE")
        tbs_el, alg_el, sig_el = der.children(buf, *der.read(buf)[1:])[:3]
        tbs = der.children(buf, tbs_el[1], tbs_el[2])
        if tbs[0][0] == 0xA0:
            tbs = tbs[1:]                                   # the version
        validity = der.children(buf, tbs[3][1], tbs[3][2])
        key_el = der.children(buf, tbs[5][1], tbs[5][2])
        public = None
        if bytes(buf[key_el[0][1]:key_el[0][2]]) == EC_PUBLIC_KEY + PRIME256V1:
            public = _point_of(buf[key_el[1][1] + 1:key_el[1][2]])
        ec256 = bytes(buf[alg_el[1]:alg_el[2]]) == ECDSA_SHA256
        sig = None
        if ec256:
            raw = bytes(buf[sig_el[1] + 1:sig_el[2]])
            rs = der.children(raw, *der.read(raw)[1:])
            sig = (der.to_int(raw, rs[0]), der.to_int(raw, rs[1]))
        return {"cn": _common_name(buf, tbs[4]), "public": public,
                "not_before": _time(buf, validity[0]), "not_after": _time(buf, validity[1]),
                "tbs": bytes(buf[tbs_el[1] - _head(buf, tbs_el):tbs_el[2]]),
                "sig_alg_ec256": ec256, "sig": sig}
    except (IndexError, ValueError) as e:
        raise CertError("not a certificate this node reads (" + str(e) + ")")  # noqa: B904


def _head(buf, element):
    # the bytes of an element's tag and length (before its content)
    n = element[2] - element[1]
    return 2 if n < 0x80 else 2 + der.nbytes(n)


def signed_by(cert, ca, tick=None):
    """True when ``cert``'s signature (facts) verifies with ``ca``'s P-256 key; None when
    this node cannot tell (the CA's key or the signature is not ECDSA P-256/SHA-256)."""
    if ca["public"] is None or not cert["sig_alg_ec256"]:
        return None
    r, s = cert["sig"]
    return p256.verify(ca["public"], hashlib.sha256(cert["tbs"]).digest(), r, s, tick)
