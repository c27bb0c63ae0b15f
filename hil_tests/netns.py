"""Network namespaces for the rig: a process in its own network stack, reached over a
veth pair (needs root and ``ip``; ``available()`` says why not when it cannot).

``Namespace()`` makes ``gl<pid><n>`` with a /30 link: the host end ``host_ip``, the
namespace end ``ip``.  ``NamespacedMosquitto`` is gridlink.mosquitto.Mosquitto listening on
the namespace's address, started inside it (stop, start and kill as before).
"""

import itertools
import os
import shutil
import subprocess

from gridlink.mosquitto import Mosquitto, mosquitto_exe, wait_port

_serial = itertools.count(1)


class NetnsError(Exception):
    """A namespace or veth pair that could not be made."""


def _ip(*args, ns=None):
    argv = ["ip", *(["netns", "exec", ns, "ip"] if ns else []), *args]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode:
        raise NetnsError(f"{' '.join(argv)}: {r.stderr.strip() or r.returncode}")


def available():
    """None when namespaces can be made here, else the reason they cannot."""
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root"
    try:
        ns = Namespace()
    except NetnsError as exc:
        return str(exc)
    ns.close()
    return None


class Namespace:
    def __init__(self):
        n = next(_serial)
        pid = os.getpid()
        self.name = f"gl{pid}n{n}"
        # a /30 of 10.0.0.0/8 from the pid and a counter: two rigs on one host do not clash
        a, b = (pid >> 6) % 250 + 2, ((pid & 63) << 2 | n % 4) % 250 + 2
        self.host_ip, self.ip = f"10.{a}.{b}.1", f"10.{a}.{b}.2"
        self.host_if, self.ns_if = f"glh{pid % 100000}{n}"[:15], f"gln{pid % 100000}{n}"[:15]
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            _ip("link", "set", self.ns_if, "netns", self.name)
            _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            _ip("addr", "add", f"{self.ip}/30", "dev", self.ns_if, ns=self.name)
            _ip("link", "set", self.ns_if, "up", ns=self.name)
            _ip("link", "set", "lo", "up", ns=self.name)
        except NetnsError:
            self.close()
            raise

    def argv(self, argv):
        """``argv`` to run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def close(self):
        """Delete the namespace (its veth end, and so the pair, goes with it)."""
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)


class NamespacedMosquitto(Mosquitto):
    """A private Mosquitto inside ``ns``, listening on ``ns.ip``."""

    def __init__(self, workdir, ns, port=1883, extra_conf=""):
        super().__init__(workdir, port=port, extra_conf=extra_conf)
        self.ns = ns
        self.host = ns.ip
        self.conf.write_text(self.conf.read_text().replace(
            f"listener {self.port} 127.0.0.1", f"listener {self.port} {ns.ip}"))

    @property
    def url(self):
        return f"mqtt://{self.host}:{self.port}"

    def start(self):
        self.proc = subprocess.Popen(self.ns.argv([mosquitto_exe(), "-c", str(self.conf)]),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, host=self.host)
        return self
