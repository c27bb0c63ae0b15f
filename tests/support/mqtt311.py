"""An independent CPython decoder of MQTT 3.1.1 packets (§2-3), for the sensor node's tests."""

import struct

TYPES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 8: "SUBSCRIBE", 9: "SUBACK",
         12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT"}


def _str(b, i):
    n = struct.unpack_from("!H", b, i)[0]
    return b[i + 2:i + 2 + n].decode(), i + 2 + n


def packets(data):
    """Decode a byte stream into a list of packet dicts; raises on any malformation."""
    out, i = [], 0
    while i < len(data):
        head = data[i]
        mult, n, j = 1, 0, i + 1
        while True:
            b = data[j]
            n += (b & 0x7F) * mult
            mult *= 128
            j += 1
            if not b & 0x80:
                break
            if mult > 128 ** 3:
                raise ValueError("remaining length longer than 4 bytes")
        body = data[j:j + n]
        if len(body) != n:
            raise ValueError("truncated packet")
        kind = TYPES[head >> 4]
        p = {"type": kind, "flags": head & 0x0F}
        if kind == "CONNECT":
            name, k = _str(body, 0)
            level, flags = body[k], body[k + 1]
            if flags & 1:
                raise ValueError("reserved CONNECT flag set")
            p.update(protocol=(name, level), clean_session=bool(flags & 2),
                     keepalive=struct.unpack_from("!H", body, k + 2)[0])
            p["client_id"], k = _str(body, k + 4)
            p["will"] = None
            if flags & 4:
                wt, k = _str(body, k)
                wm_len = struct.unpack_from("!H", body, k)[0]
                p["will_payload"] = body[k + 2:k + 2 + wm_len]
                k += 2 + wm_len
                p["will"] = (wt, flags >> 3 & 3, bool(flags & 0x20))
            if k != len(body) and not flags & 0xC0:
                raise ValueError("trailing bytes in CONNECT")
        elif kind == "PUBLISH":
            p["qos"], p["retain"] = head >> 1 & 3, bool(head & 1)
            p["topic"], k = _str(body, 0)
            if p["qos"]:
                p["pid"] = struct.unpack_from("!H", body, k)[0]
                k += 2
            p["payload"] = body[k:]
        elif kind == "SUBSCRIBE":
            if head & 0x0F != 2:
                raise ValueError("SUBSCRIBE flags must be 0010")
            p["pid"] = struct.unpack_from("!H", body, 0)[0]
            p["topic"], k = _str(body, 2)
            p["qos"] = body[k]
        elif kind == "PUBACK":
            p["pid"] = struct.unpack_from("!H", body, 0)[0]
        elif kind in ("PINGREQ", "DISCONNECT") and n:
            raise ValueError(f"{kind} with a body")
        out.append(p)
        i = j + n
    return out
