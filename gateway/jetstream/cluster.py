"""A NATS cluster of real ``nats-server`` processes, rendered from the shipped template.

``NatsCluster(workdir, size=3)`` gives each node its own free ports (NATS clients, MQTT,
routes, monitoring), its own JetStream store and a config rendered from
``gateway/broker/nats/node.conf.tmpl``; ``start()`` waits until every node reports
JetStream healthy.  ``kill(i)`` ends one node at once (SIGKILL), ``start_node(i)`` brings
it back on the same ports and store, ``stop()`` ends them all.  Tests, benchmarks and a
demo use it; a production cluster renders the same template with TLS (``NodeTLS``).
"""

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from string import Template

from gridlink.firmware.core import topics

from ..errors import GatewayError
from ..ports import free_port

TEMPLATE = Path(__file__).resolve().parent.parent / "broker" / "nats" / "node.conf.tmpl"


class ClusterError(GatewayError):
    """A node would not start, or the cluster did not become healthy in time."""


@dataclass
class NodeTLS:
    """PEM files of one node: its certificate (SAN = the address others dial) and key,
    and the CA that signed it and every client (devices, gateway workers, other nodes)."""

    ca: str
    cert: str
    key: str


def _tls_block(tls, indent, verify):
    if tls is None:
        return ""
    pad = " " * indent
    return "\n".join([
        f"{pad}tls {{",
        f'{pad}  cert_file: "{tls.cert}"',
        f'{pad}  key_file: "{tls.key}"',
        f'{pad}  ca_file: "{tls.ca}"',
        f"{pad}  {verify}: true",
        f"{pad}  timeout: 5",
        f"{pad}}}",
    ])


# what a device may publish and subscribe: its own subtree only, each leaf in its own
# direction (the Mosquitto ACL's patterns, written out per device; "*" in the district
# position: a device may report from any district it is moved to).  $MQTT.sub.> is where
# nats-server delivers a QoS 1 subscription's messages to the MQTT connection.
# Both come from the protocol's topic table, so a new leaf is never left out of them.
DEVICE_PUBLISH = tuple((leaf + ".>") if leaf in topics.CHUNKED else leaf.replace("/", ".")
                       for leaf, (by, _qos, _retain) in topics.LEAVES.items() if by == "device")
DEVICE_SUBSCRIBE = tuple(leaf.replace("/", ".") for leaf, (by, _qos, _retain)
                         in topics.LEAVES.items() if by == "gateway")


# nats-server maps a certificate to the user whose DN is the certificate's whole subject.
# The district's tools (gridlink flash, the demo) issue ``CN=<id>, O=gridlink``; a CA kept
# by hand (gateway/broker/README.md) may issue ``CN=<id>`` alone: each identity is both.
ISSUED_O = "gridlink"


def subjects(cn):
    """The certificate subjects (DNs) that are the identity ``cn``."""
    return (f"CN={cn}", f"CN={cn},O={ISSUED_O}")


def _token(value, what):
    if not value or any(c in value for c in '.*>"{}[], \n$'):
        raise ClusterError(f"{what} {value!r} cannot be a NATS subject token")
    return value


def _user(cn, pub, sub):
    pub = ", ".join(f'"{p}"' for p in pub)
    sub = ", ".join(f'"{p}"' for p in sub)
    return [f'    {{user: "{dn}", permissions: {{publish: {{allow: [{pub}]}}, '
            f"subscribe: {{allow: [{sub}]}}}}}}" for dn in subjects(cn)]


def device_user(dev, district="*"):
    """A device's entries: its own leaves under ``district`` (``*``: any district)."""
    base = f"gridlink.v1.{district}.{_token(dev, 'device id')}"
    return _user(dev, [f"{base}.{leaf}" for leaf in DEVICE_PUBLISH],
                 [*(f"{base}.{leaf}" for leaf in DEVICE_SUBSCRIBE), "$MQTT.sub.>"])


def district_gateway(gateway, district):
    """The certificate name (CN) of ``district``'s gateway workers."""
    return f"{gateway}-{district}"


def district_gateway_user(gateway, district):
    """The entries of ``district``'s gateway identity: its own durable consumer (made only
    with its district's filter: nats-server 2.9 checks the filter named in the create
    subject against the request), its acks, its replies (its own inbox prefix), and
    messages to its district's devices (also retained, over MQTT); the devices' QoS 0
    requests (``ota/get``) of its district; the signers' consumer of its district's
    certificate requests (``…/csr``); no other stream or consumer."""
    from .link import (
        QOS0_REQUEST_LEAVES,
        STREAM,
        STREAM_PREFIX,
        district_names,
        request_names,
        request_subject,
    )

    durable, filt, inbox = district_names(district)
    api = "$JS.API"
    to_devices = [f"gridlink.v1.{district}.*.{leaf}" for leaf in DEVICE_SUBSCRIBE]
    pub = [f"{api}.STREAM.INFO.{STREAM}", f"{api}.STREAM.CREATE.{STREAM}"]
    for consumer, its_filter in ((durable, filt), request_names(district)):
        pub += [f"{api}.CONSUMER.INFO.{STREAM}.{consumer}",
                f"{api}.CONSUMER.CREATE.{STREAM}.{consumer}.{its_filter}",
                f"{api}.CONSUMER.MSG.NEXT.{STREAM}.{consumer}",
                f"$JS.ACK.{STREAM}.{consumer}.>"]
    pub += [*to_devices, *(STREAM_PREFIX + t for t in to_devices)]
    requests = [request_subject(district, leaf) for leaf in QOS0_REQUEST_LEAVES]
    return _user(district_gateway(gateway, district), pub, [f"{inbox}.>", *requests])


def authorization_block(devices, gateway="gridlink-gateway"):
    """The ``authorization`` section for certificate identities (``verify_and_map``).

    ``devices`` a list of ids: the gateway's CN with full rights (it uses the JetStream
    API), each device's CN with only its own topics, in any district.  ``devices`` a
    mapping district → ids (a cluster shared by districts): each device only under its
    own district, and per district one gateway identity, ``<gateway>-<district>``, that
    reads and writes only that district's messages (``--broker …?district=<district>``),
    as the Mosquitto ACL keeps a district's broker to its district."""
    lines = ["authorization {", "  users: ["]
    if isinstance(devices, dict):
        for district, ids in devices.items():
            _token(district, "district")
            lines += district_gateway_user(gateway, district)
            for dev in ids:
                lines += device_user(dev, district)
    else:
        lines += [f'    {{user: "{dn}"}}' for dn in subjects(gateway)]
        for dev in devices:
            lines += device_user(dev)
    return "\n".join([*lines, "  ]", "}"])


def render_node(*, name, host, client_port, mqtt_port, route_port, monitor_port, store_dir,
                routes, cluster="gridlink", max_file_store="10G", mqtt_ack_wait="30s", tls=None,
                devices=None, gateway="gridlink-gateway", template=TEMPLATE):
    """The config text of one node.  ``routes``: (host, port) of every node's route
    listener, its own included.  With ``tls`` (``NodeTLS``): clients and routes must
    present a certificate of the CA; a device's MQTT identity is its certificate
    (``verify_and_map``).  With ``devices`` (ids, with ``tls``): only the ``gateway``
    identity and these devices may connect, each device to its own topics (``devices`` a
    mapping district → ids: each to its own district, see ``authorization_block``)."""
    if devices is not None and tls is None:
        raise ClusterError("per-device permissions need TLS: the identity is the certificate")
    scheme = "nats-route"
    values = {
        "name": name, "host": host, "client_port": client_port, "mqtt_port": mqtt_port,
        "route_port": route_port, "monitor_port": monitor_port, "store_dir": store_dir,
        "max_file_store": max_file_store, "cluster": cluster, "mqtt_ack_wait": mqtt_ack_wait,
        "routes": ", ".join(f"{scheme}://{h}:{p}" for h, p in routes),
        "client_tls": _tls_block(tls, 0, "verify" if devices is None else "verify_and_map"),
        "authorization": "" if devices is None else authorization_block(devices, gateway),
        "mqtt_tls": _tls_block(tls, 2, "verify_and_map"),
        "route_tls": _tls_block(tls, 2, "verify"),
    }
    try:
        return Template(Path(template).read_text()).substitute(values)
    except (KeyError, ValueError) as exc:
        raise ClusterError(f"NATS config template {template}: {exc}") from exc


def nats_server_exe():
    exe = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(exe).exists():
        raise ClusterError("nats-server is not installed (Debian: apt install nats-server)")
    return exe


class NatsNode:
    """One node: ports, store, config file and process."""

    def __init__(self, index, workdir, host="127.0.0.1", preexec_fn=None):
        self.index = index
        self.preexec_fn = preexec_fn  # run in the child before exec (e.g. die with parent)
        self.name = f"n{index + 1}"
        self.host = host
        self.dir = Path(workdir) / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.client_port, self.mqtt_port, self.route_port, self.monitor_port = (
            free_port(host) for _ in range(4))
        self.conf = self.dir / "nats.conf"
        self.log = self.dir / "nats.log"
        self.proc = None

    @property
    def nats_url(self):
        return f"nats://{self.host}:{self.client_port}"

    @property
    def mqtt_address(self):
        return self.host, self.mqtt_port

    def start(self):
        if self.running():
            return self
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([nats_server_exe(), "-c", str(self.conf)],
                                         stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=self.preexec_fn)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """End the process at once, as a crash or a pulled plug would."""
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self, timeout=10.0):
        if self.running():
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_tail(self, lines=4):
        """The last lines of the node's log (why it exited), as one line."""
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"

    def healthz(self):
        """The node's JetStream health: True when it serves and is caught up."""
        url = f"http://{self.host}:{self.monitor_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return json.loads(r.read()).get("status") == "ok"
        except (OSError, urllib.error.URLError, ValueError):
            return False


class NatsCluster:
    """``size`` nodes on ``host`` with JetStream and MQTT, routes between all of them
    (``preexec_fn``: run in each node's process before exec)."""

    def __init__(self, workdir, size=3, host="127.0.0.1", tls=None, max_file_store="1G",
                 mqtt_ack_wait="30s", devices=None, name="gridlink", preexec_fn=None):
        self.workdir = Path(workdir)
        self.nodes = [NatsNode(i, self.workdir, host, preexec_fn) for i in range(size)]
        routes = [(n.host, n.route_port) for n in self.nodes]
        for n in self.nodes:
            tls_n = tls(n) if callable(tls) else tls
            n.conf.write_text(render_node(
                name=n.name, host=n.host, client_port=n.client_port, mqtt_port=n.mqtt_port,
                route_port=n.route_port, monitor_port=n.monitor_port,
                store_dir=str(n.dir / "jetstream"), routes=routes, cluster=name,
                max_file_store=max_file_store, mqtt_ack_wait=mqtt_ack_wait, tls=tls_n,
                devices=devices))

    @property
    def nats_url(self):
        """All nodes' client addresses, as ``gridlink gateway run --broker`` takes them."""
        return "nats://" + ",".join(f"{n.host}:{n.client_port}" for n in self.nodes)

    def start(self, timeout=30.0):
        for n in self.nodes:
            n.start()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout=30.0, nodes=None):
        deadline = time.monotonic() + timeout
        for n in nodes or [n for n in self.nodes if n.running()]:
            while not n.healthz():
                if not n.running():
                    raise ClusterError(f"nats-server {n.name} exited; see {n.log}: "
                                       + n.log_tail())
                if time.monotonic() > deadline:
                    raise ClusterError(f"nats-server {n.name} not healthy after {timeout}s; "
                                       f"see {n.log}")
                time.sleep(0.1)

    def kill(self, i):
        self.nodes[i].kill()

    def start_node(self, i, timeout=30.0):
        self.nodes[i].start()
        self.wait_healthy(timeout, [self.nodes[i]])

    def stop(self):
        """Stop every node (SIGTERM to all, then wait for each)."""
        for n in self.nodes:
            if n.running():
                with contextlib.suppress(OSError):
                    n.proc.terminate()
        for n in self.nodes:
            with contextlib.suppress(OSError):
                n.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class FrontDoor:
    """One address for the devices in front of several nodes' MQTT listeners, as a TCP
    load balancer (or a DNS name with several addresses) gives them: each connection goes
    to the first node that accepts, starting after the one the previous connection took.
    A node that dies drops its connections; the devices reconnect and land on another."""

    def __init__(self, addresses, host="127.0.0.1"):
        self.addresses = list(addresses)
        self._next = 0
        self._server = socket.create_server((host, 0))
        self._server.settimeout(0.2)
        self.host, self.port = self._server.getsockname()[:2]
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="front-door", daemon=True)
        self._thread.start()

    def _upstream(self):
        for k in range(len(self.addresses)):
            i = (self._next + k) % len(self.addresses)
            try:
                sock = socket.create_connection(self.addresses[i], timeout=2)
            except OSError:
                continue
            sock.settimeout(None)  # the timeout was for connecting; idle links stay up
            self._next = i + 1
            return sock
        return None

    def _accept(self):
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = self._upstream()
            if upstream is None:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self):
        self._closed.set()
        self._server.close()
        self._thread.join(2)


def _pipe(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
