# Stand-in for MicroPython's ``socket`` on the simulated board: every call is relayed,
# through two named pipes, to a CPython relay that holds a real TCP socket, so the
# board's bytes reach a real broker. The board code sees plain blocking sockets with
# timeouts, OSError(errno) on failure.  Every call passes the simulated watchdog.
import binascii

import js
import machine

_fs = js.process.getBuiltinModule("fs")
with open("/.sim/relay") as _f:
    _DIR = _f.read().strip()

AF_INET = 2
SOCK_STREAM = 1
IPPROTO_TCP = 6
SOL_SOCKET = 1
SO_REUSEADDR = 4


def _call(line):
    machine._watch()  # a simulated hardware watchdog cuts a program stuck on the link
    _fs.writeFileSync(_DIR + "/req", line)
    status, _, rest = _fs.readFileSync(_DIR + "/rsp", "latin1").partition(" ")
    if status == "err":
        raise OSError(int(rest))
    return rest


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    return [(AF_INET, SOCK_STREAM, IPPROTO_TCP, "", (host, port))]


class socket:
    def __init__(self, af=AF_INET, type=SOCK_STREAM, proto=IPPROTO_TCP):
        self.id = _call("new")
        self.timeout = None

    def settimeout(self, t):
        self.timeout = t

    def setblocking(self, flag):
        self.timeout = None if flag else 0

    def setsockopt(self, *args):
        pass

    def connect(self, addr):
        _call(f"connect {self.id} {addr[0]} {addr[1]} {self._ms()}")

    def _ms(self):
        return "-" if self.timeout is None else str(int(self.timeout * 1000))

    def write(self, data):
        _call(f"send {self.id} {binascii.hexlify(bytes(data)).decode()}")
        return len(data)

    send = write

    def sendall(self, data):
        self.write(data)

    def read(self, n):
        # A blocking stream read: up to n bytes, fewer only at end of stream.
        return binascii.unhexlify(_call(f"read {self.id} {n} {self._ms()}"))

    def recv(self, n):
        return binascii.unhexlify(_call(f"recv {self.id} {n} {self._ms()}"))

    def readinto(self, buf):
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def close(self):
        if self.id:
            _call(f"close {self.id}")
            self.id = None
