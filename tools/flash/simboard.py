"""A simulated MicroPython board: the official WebAssembly port under Node.

The board's flash is a host directory (mirrored in before a run and back after it), its
pins are a JSON file the rig writes, ``machine.deepsleep`` ends a run and records how long
the board would sleep, and its sockets are relayed by :class:`SocketRelay` to real TCP
sockets on the host, so the firmware talks to a real broker.  Only ``machine``, ``socket`` and
``ssl`` are stand-ins (``simfs/``); everything else is the firmware as flashed.
"""

import binascii
import contextlib
import errno
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from .errors import FlashError

HERE = Path(__file__).resolve().parent
SIMFS = HERE / "simfs"
RUNNER = HERE / "simboard.mjs"
REPL = HERE / "replboard.mjs"
PORT_PACKAGE = Path("node_modules") / "@micropython" / "micropython-webassembly-pyscript"

# What a board does at power-on: run /main.py as __main__, until it sleeps or returns.
BOOT = """
import sys
sys.path.insert(0, "/.sim/lib")
import machine
try:
    exec(open("/main.py").read(), {"__name__": "__main__"})
except machine.Reset:  # a deep sleep, or the watchdog
    pass
"""


def find_port():
    """The directory holding the WebAssembly port's ``micropython.mjs``, or None."""
    env = os.environ.get("GRIDLINK_MPY_WASM")
    candidates = [Path(env)] if env else []
    for base in (Path.cwd(), *Path.cwd().parents, HERE, *HERE.parents):
        candidates.append(base / PORT_PACKAGE)
    for c in candidates:
        if (c / "micropython.mjs").exists():
            return c
    return None


def available():
    return shutil.which("node") is not None and find_port() is not None


class BoardCrashed(FlashError):
    """The simulated board's program raised; the message is its traceback."""


class SocketRelay:
    """Serves the board's socket calls (two named pipes) with real host sockets.

    ``transcript`` records every byte in order as ``(sock_id, "out"|"in", bytes)``,
    so a test can decode what went over the wire.
    """

    def __init__(self, workdir):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.req = self.dir / "req"
        self.rsp = self.dir / "rsp"
        for p in (self.req, self.rsp):
            if p.exists():
                p.unlink()
            os.mkfifo(p)
        self.socks = {}
        self.transcript = []
        self.connects = []
        self._next = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="socket-relay", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        with contextlib.suppress(OSError):
            fd = os.open(self.req, os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, b"quit")
            os.close(fd)
        self._thread.join(5)
        for s in self.socks.values():
            s.close()
        self.socks.clear()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _serve(self):
        while not self._stop.is_set():
            with open(self.req, "rb") as f:
                line = f.read().decode("latin1")
            if line == "quit" or self._stop.is_set():
                return
            try:
                reply = "ok " + self._handle(line.split(" "))
            except OSError as exc:
                reply = f"err {exc.errno or errno.EIO}"
            self._reply(reply.encode("latin1"))

    def _reply(self, data):
        while not self._stop.is_set():
            try:
                fd = os.open(self.rsp, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # no reader yet
                    raise
                time.sleep(0.002)
                continue
            os.set_blocking(fd, True)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            return

    def _handle(self, words):
        op = words[0]
        if op == "new":
            self._next += 1
            return str(self._next)
        sid = words[1]
        if op == "connect":
            host, port, ms = words[2], int(words[3]), words[4]
            self.connects.append((host, port))
            timeout = None if ms == "-" else int(ms) / 1000
            self.socks[sid] = socket.create_connection((host, port), timeout=timeout or 10)
            return ""
        sock = self.socks.get(sid)
        if op == "tls":
            self.socks[sid] = self._tls(sock, *words[2:6])
            return ""
        if op == "close":
            if sock:
                sock.close()
                del self.socks[sid]
            return ""
        if sock is None:
            raise OSError(errno.ENOTCONN, "not connected")
        if op == "send":
            data = binascii.unhexlify(words[2])
            self.transcript.append((sid, "out", data))
            sock.sendall(data)
            return ""
        n, ms = int(words[2]), words[3]
        sock.settimeout(None if ms == "-" else int(ms) / 1000)
        data = b""
        try:
            while len(data) < n:
                chunk = sock.recv(n - len(data))
                if not chunk or op == "recv":
                    data += chunk
                    break
                data += chunk
        except TimeoutError:
            if not data:
                raise OSError(errno.ETIMEDOUT, "timed out") from None
        except ConnectionResetError:
            if not data:
                raise
        if data:
            self.transcript.append((sid, "in", data))
        return data.hex()

    @staticmethod
    def _tls(sock, host, ca, cert, key):
        """``sock`` wrapped in TLS with the board's files (hex PEM; "-" when none)."""
        import ssl
        import tempfile

        if sock is None:
            raise OSError(errno.ENOTCONN, "not connected")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            if ca != "-":
                ctx.load_verify_locations(cadata=binascii.unhexlify(ca).decode())
            if cert != "-":
                with tempfile.TemporaryDirectory() as d:
                    paths = (Path(d) / "cert.pem", Path(d) / "key.pem")
                    paths[0].write_bytes(binascii.unhexlify(cert))
                    paths[1].write_bytes(binascii.unhexlify(key))
                    ctx.load_cert_chain(*paths)
        except ValueError as exc:   # files that are not PEM: as mbedTLS refuses them
            raise OSError(errno.EINVAL, str(exc)) from None
        return ctx.wrap_socket(sock, server_hostname=None if host == "-" else host)

    def drop_all(self):
        """Close every open socket without a word, as a board losing power does."""
        for s in self.socks.values():
            with contextlib.suppress(OSError):
                s.close()
        self.socks.clear()

    def sent(self):
        """All bytes the board sent, per socket, in order."""
        out = {}
        for sid, way, data in self.transcript:
            if way == "out":
                out[sid] = out.get(sid, b"") + data
        return out


class SimBoard:
    """A MicroPython board simulated under Node, its flash in ``root/flash``."""

    def __init__(self, root, heapsize=2 * 1024 * 1024, timeout=120):
        self.root = Path(root)
        self.flash = self.root / "flash"
        self.sim = self.root / "sim"
        self.flash.mkdir(parents=True, exist_ok=True)
        self.sim.mkdir(parents=True, exist_ok=True)
        self.heapsize = heapsize
        self.timeout = timeout
        self.relay = SocketRelay(self.root / "relay")
        (self.sim / "relay").write_text(str(self.relay.dir))
        self.port = find_port()
        if self.port is None or shutil.which("node") is None:
            raise FlashError("the MicroPython WebAssembly port is not installed (run .ci/setup)")
        self.relay.start()

    def close(self):
        self.stop_console()
        self.relay.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def set_pin(self, num, *levels):
        """Drive pin ``num``: each read on the board takes the next level, the last stays."""
        pins = self._load("pins.json", {})
        pins[str(num)] = [1 if v else 0 for v in levels]
        self._save("pins.json", pins)

    def pin_levels(self, num):
        return self._load("pins.json", {}).get(str(num))

    def set_reset_cause(self, cause):
        board = self._load("board.json", {})
        board["reset_cause"] = cause
        self._save("board.json", board)

    def run(self, script=BOOT):
        """Run ``script`` (by default: boot ``/main.py``); returns what the board printed.

        Raises :class:`BoardCrashed` with the traceback if the program raised.
        ``last_sleep_ms`` tells whether (and for how long) the board went to deep sleep.
        """
        for name in ("sleep.json", "wdt.json"):  # each run starts without them
            if (self.sim / name).exists():
                (self.sim / name).unlink()
        job = {
            "port": str(self.port),
            "flash": str(self.flash),
            "sim": str(self.sim),
            "simfs": str(SIMFS),
            "script": script,
            "heapsize": self.heapsize,
        }
        try:
            proc = subprocess.run(["node", str(RUNNER)], input=json.dumps(job).encode(),
                                  capture_output=True, timeout=self.timeout)
        finally:
            # the program is over (slept, crashed, lost power): its TCP links die with it
            self.relay.drop_all()
        self.stdout = proc.stdout.decode(errors="replace")
        if proc.returncode:
            raise BoardCrashed(proc.stderr.decode(errors="replace").strip())
        return self.stdout

    def serve_console(self):
        """Serve the board's REPL on a TCP port until ``stop_console()``; returns the
        pyserial URL (``socket://127.0.0.1:PORT``) mpremote connects to.  The flash is
        shared with :meth:`run`, so do not run the program while the console is up."""
        if getattr(self, "_console", None) is not None:
            return self.console_url
        job = {"port": str(self.port), "flash": str(self.flash), "listen": 0}
        proc = subprocess.Popen(["node", str(REPL), json.dumps(job)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        line = proc.stdout.readline().decode()
        if not line.startswith("listening "):
            proc.kill()
            raise FlashError("the simulated board's console did not start: "
                             + proc.stderr.read().decode(errors="replace").strip()[-300:])
        self._console = proc
        self.console_url = f"socket://127.0.0.1:{int(line.split()[1])}"
        return self.console_url

    def stop_console(self):
        proc = getattr(self, "_console", None)
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._console = None

    @property
    def watchdog(self):
        """The board's watchdog as the last run left it: ``{timeout_ms, fired[, unfed_ms]}``,
        or None when the program never started one."""
        return self._load("wdt.json", None)

    @property
    def last_sleep_ms(self):
        got = self._load("sleep.json", None)
        return None if got is None else got["ms"]

    def _load(self, name, default):
        p = self.sim / name
        return json.loads(p.read_text()) if p.exists() else default

    def _save(self, name, obj):
        tmp = self.sim / (name + ".tmp")
        tmp.write_text(json.dumps(obj))
        tmp.replace(self.sim / name)
