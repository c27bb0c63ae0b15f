"""A local Mosquitto on 127.0.0.1: the demo's broker, and the tests', benchmarks' and HIL
rig's private ones — one way to find a free port, render a config and run the process.

``Mosquitto(workdir)`` runs a bare broker (anonymous, persistent, unlimited queues);
``Mosquitto(workdir, shipped=True, tls=BrokerTLS(...))`` runs the project's own config
(gateway/broker/mosquitto.conf and its ACL) with only the port, the file paths and the
logs pointed at ``workdir`` (:func:`shipped_config`).  Either way ``stop()`` then
``start()`` keeps the port and the persisted sessions, as a broker restart does.
"""

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from gridlink.gateway.ports import free_port

# Settings of the shipped config that name a deployment's files and port: a local broker
# points them at its own.  Without TLS the certificate settings go too.
LOCAL_KEYS = {"listener", "cafile", "capath", "certfile", "keyfile", "crlfile", "acl_file",
              "persistence_location", "log_dest"}
TLS_KEYS = {"protocol", "require_certificate", "use_identity_as_username",
            "use_username_as_clientid", "tls_version",
            "allow_anonymous", "per_listener_settings"}


class MosquittoError(Exception):
    """Mosquitto is not installed, or did not come up on its port."""


class BrokerTLS(NamedTuple):
    """The broker's TLS files: the CA that signs the clients, its certificate and key, and
    the district CRL (``crlfile``; None: no revocation check)."""

    ca: Path
    cert: Path
    key: Path
    crl: Path | None = None


def wait_port(port, host="127.0.0.1", timeout=10.0, proc=None):
    """Until something accepts on ``host:port``; MosquittoError if ``proc`` exits first or
    time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise MosquittoError(f"{proc.args[0]} exited with status {proc.returncode} at start")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise MosquittoError(f"nothing listens on {host}:{port} after {timeout:.0f}s")


def mosquitto_exe():
    """The mosquitto program (Debian keeps it in /usr/sbin, often not on a user's PATH)."""
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto"
                                        if os.path.exists("/usr/sbin/mosquitto") else None)
    if exe is None:
        raise MosquittoError("mosquitto not found: install it (Debian: apt install mosquitto)")
    return exe


def shipped_folder():
    """gateway/broker/ as installed: mosquitto.conf, gridlink.acl."""
    return resources.files("gridlink.gateway") / "broker"


SHIPPED_DISTRICT = "410106"   # the district the shipped gridlink.acl is written for


def district_acl(district):
    """The shipped ACL (gateway/broker/gridlink.acl) for ``district``'s broker: every
    topic line confined to ``gridlink/v1/<district>/``."""
    if not (isinstance(district, str) and len(district) == 6 and district.isascii()
            and district.isdigit() and district[0] != "0"):
        raise MosquittoError(f"district: a 6-digit GB/T 2260 code, not {district!r}")
    text = (shipped_folder() / "gridlink.acl").read_text(encoding="utf-8")
    old, new = f"gridlink/v1/{SHIPPED_DISTRICT}/", f"gridlink/v1/{district}/"
    out = []
    for line in text.splitlines():
        if line.startswith(("topic ", "pattern ")):
            line = line.replace(old, new)
        out.append(line)
    return "\n".join(out) + "\n"


def shipped_config(port, workdir, tls=None, district=None):
    """The project's Mosquitto config (gateway/broker/mosquitto.conf) on a local port.

    Every setting of the shipped file is kept — persistence, the unlimited queue for the
    gateway's session, in-flight window, packet size, session expiry and, with ``tls`` (a
    :class:`BrokerTLS`), mutual TLS with certificate identities confined by the shipped ACL
    (gateway/broker/gridlink.acl) — except the port, the file paths and the logs, which
    point into ``workdir``.  Without ``tls`` the listener is plain and anonymous; on
    127.0.0.1 only either way.  ``district``: the ACL rendered for that district
    (:func:`district_acl`, written into ``workdir``) instead of the shipped district's.
    """
    folder = shipped_folder()
    acl = folder / "gridlink.acl"
    if district is not None and district != SHIPPED_DISTRICT:
        acl = Path(workdir) / "gridlink.acl"
        acl.write_text(district_acl(district), encoding="utf-8")
    shipped = folder / "mosquitto.conf"
    drop = LOCAL_KEYS if tls else LOCAL_KEYS | TLS_KEYS
    # the listener's own lines go where the shipped listener is (settings after a
    # listener line belong to it)
    listener = [f"listener {port} 127.0.0.1"]
    if tls:
        listener += [f"cafile {tls.ca}", f"certfile {tls.cert}", f"keyfile {tls.key}"]
        if tls.crl is not None:
            listener.append(f"crlfile {tls.crl}")
    lines = [f"# from {shipped}, pointed at {workdir} by gridlink.mosquitto"]
    for line in shipped.read_text(encoding="utf-8").splitlines():
        setting = line.split("#", 1)[0].split()
        if setting and setting[0] == "listener" and listener:
            lines += listener
            listener = []
        elif setting and setting[0] not in drop:
            lines.append(line)
    # global settings (per_listener_settings is false): their place does not matter.
    # Started as root, Mosquitto would switch to the "mosquitto" user, which cannot read
    # the keys or write the folder: stay the user who starts it.
    lines += [*listener, f"user {getpass.getuser()}", f"persistence_location {workdir}/",
              f"log_dest file {workdir}/mosquitto.log",
              f"acl_file {acl}" if tls else "allow_anonymous true"]
    return "\n".join(lines) + "\n"


def bare_config(port, workdir):
    """A plain anonymous broker that keeps every message: persistence saved each second,
    unlimited queues and in-flight windows, errors and warnings logged into ``workdir``."""
    return (
        # As root, mosquitto would switch to its own user and could not write the
        # persistence file into a private folder (ignored when not root).
        "user root\n"
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence true\n"
        f"persistence_location {workdir}/\n"
        "autosave_interval 1\n"
        "max_queued_messages 0\n"
        "max_inflight_messages 0\n"
        f"log_dest file {workdir}/mosquitto.log\n"
        "log_type error\nlog_type warning\n")


class Mosquitto:
    """A mosquitto process on 127.0.0.1 with its config, persistence and logs in ``workdir``.

    The bare config (:func:`bare_config`) by default; with ``shipped`` the project's
    (:func:`shipped_config`, TLS with ``tls``, the ACL of ``district``).  ``extra_conf``
    lines are appended (ACLs, more listeners…).  ``preexec_fn`` runs in the child before
    exec (the demo ties the broker's life to its own).  ``stop()`` then ``start()`` keeps
    the port and the persisted sessions, as a broker restart does.
    """

    def __init__(self, workdir, port=None, *, shipped=False, tls=None, extra_conf="",
                 preexec_fn=None, district=None):
        if tls is not None and not shipped:
            raise MosquittoError("tls= needs shipped=True (the bare config has no TLS)")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.tls = tls
        self.conf = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        base = (shipped_config(self.port, self.workdir, tls, district) if shipped
                else bare_config(self.port, self.workdir))
        self.conf.write_text(base + extra_conf, encoding="utf-8")
        self.preexec_fn = preexec_fn
        self.proc = None
        self._out = None

    @property
    def url(self):
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def start(self):
        """Start and wait until the port answers; MosquittoError if it will not come up."""
        exe = mosquitto_exe()
        self._out = open(self.workdir / "stdout.log", "ab")  # noqa: SIM115 - closed in stop
        try:
            self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=self._out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         preexec_fn=self.preexec_fn)
        except OSError as exc:
            self._out.close()
            raise MosquittoError(f"cannot start {exe}: {exc}") from exc
        try:
            wait_port(self.port, proc=self.proc)
        except MosquittoError:
            self.stop()
            raise
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def reload(self):
        """SIGHUP: Mosquitto rereads its config, ACL and (for new connections) the CRL;
        connected clients stay connected."""
        if not self.alive():
            raise MosquittoError("reload: the broker is not running")
        self.proc.send_signal(signal.SIGHUP)

    def stop(self, timeout=10.0):
        """SIGTERM, wait, SIGKILL if it will not go; always reaped."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._out is not None:
            self._out.close()
            self._out = None
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
