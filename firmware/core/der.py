"""The little DER and PEM a sensor node needs to write a certificate request and a key
file and to read a certificate: definite lengths only, on CPython and MicroPython."""

import binascii

from .errors import CoreError

SEQUENCE = 0x30
SET = 0x31
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
OID = 0x06
UTF8 = 0x0C


class DerError(CoreError):
    """Bytes that are not the DER (or PEM) expected."""


def nbytes(value):
    """How many bytes the non-negative ``value`` takes (MicroPython has no bit_length)."""
    n = 0
    while value:
        value >>= 8
        n += 1
    return n


def tlv(tag, body):
    n = len(body)
    if n < 0x80:
        head = bytes((tag, n))
    else:
        size = n.to_bytes(nbytes(n), "big")
        head = bytes((tag, 0x80 | len(size))) + size
    return head + body


def seq(*parts):
    return tlv(SEQUENCE, b"".join(parts))


def integer(value):
    """A non-negative INTEGER, minimal with a sign byte when the top bit is set."""
    body = value.to_bytes(max(1, nbytes(value)), "big")
    if body[0] & 0x80:
        body = b"\x00" + body
    return tlv(INTEGER, body)


def bits(body):
    """A BIT STRING of whole bytes."""
    return tlv(BIT_STRING, b"\x00" + body)


def read(buf, pos=0, end=None):
    """(tag, start of content, end of content) of the element at ``pos``."""
    end = len(buf) if end is None else end
    if pos + 2 > end:
        raise DerError("truncated element")
    tag, n = buf[pos], buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if not 0 < k <= 4 or pos + k > end:
            raise DerError("bad length")
        n = int.from_bytes(bytes(buf[pos:pos + k]), "big")
        pos += k
    if pos + n > end:
        raise DerError("element runs past its parent")
    return tag, pos, pos + n


def children(buf, start, end):
    """[(tag, start, end)] of the elements between ``start`` and ``end``."""
    out = []
    while start < end:
        t, s, e = read(buf, start, end)
        out.append((t, s, e))
        start = e
    return out


def expect(buf, element, tag, what):
    if element[0] != tag:
        raise DerError(what + ": tag " + hex(element[0]) + ", not " + hex(tag))
    return element


def to_int(buf, element):
    return int.from_bytes(bytes(buf[element[1]:element[2]]), "big")


def pem(label, der):
    text = binascii.b2a_base64(der).decode().replace("\n", "")
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return "-----BEGIN " + label + "-----\n" + "\n".join(lines) + "\n-----END " + label \
        + "-----\n"


def unpem(text, label):
    """The DER bytes of the first ``label`` block in PEM ``text`` (str or bytes)."""
    if not isinstance(text, str):
        text = bytes(text).decode()
    begin, end = "-----BEGIN " + label + "-----", "-----END " + label + "-----"
    i = text.find(begin)
    j = text.find(end, i + 1)
    if i < 0 or j < 0:
        raise DerError("no " + label + " block")
    try:
        return binascii.a2b_base64("".join(text[i + len(begin):j].split()).encode())
    except ValueError:
        raise DerError("the " + label + " block is not base64")  # noqa: B904
