"""Free TCP ports for the services this project starts on one machine (a Mosquitto, a NATS
cluster, test servers).

A port from ``bind(port 0)`` lies in the kernel's ephemeral range, the range it also
takes the local ports of outgoing connections from: between the probe closing it and the
service binding it, any client connecting anywhere may take it (seen with several test
processes at once: a nats-server that could not start).  The ports here come from below
that range, picked at random and probed, so only another picker could take one meanwhile.
"""

import random
import socket
from pathlib import Path

BELOW = 20000           # the lowest port picked
_pick = random.SystemRandom()   # every process its own sequence


def ephemeral_range(path="/proc/sys/net/ipv4/ip_local_port_range"):
    """(low, high) of the kernel's ephemeral ports (Linux's default where unreadable)."""
    try:
        low, high = (int(x) for x in Path(path).read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def free_port(host="127.0.0.1", tries=200):
    """A TCP port nothing listens on now, outside the ephemeral range where there is room
    for it (else the kernel's pick)."""
    low, _high = ephemeral_range()
    if low - 1 > BELOW:
        for _ in range(tries):
            port = _pick.randint(BELOW, low - 1)
            with socket.socket() as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
