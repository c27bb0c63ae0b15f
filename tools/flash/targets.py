"""Where provisioned files go: a directory (a Pi's data dir, a board's flash mirror) or a
MicroPython board reached by ``mpremote`` over any pyserial URL.

Both write all-or-nothing per file and commit with a marker file written last: files go
to a staging area first, then each is renamed into place, the marker (which lists every
file's sha256) last.  A crash leaves whole files only, and a marker that either is the
old one or lists exactly what was written; ``selftest`` compares the two.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import FlashError

SERIAL_URL = re.compile(r"^(/dev/|COM\d+$|[a-z][a-z0-9+]*://)", re.IGNORECASE)
# A port named without /dev/ (ttyACM0, ttyUSB1, cu.usbmodem1101): a port, never a folder
# to create (./ttyACM0 is a folder).
BARE_PORT = re.compile(r"^(tty(ACM|USB|S|AMA|THS)\d+|(cu|tty)\.[\w.-]+)$")
SECRET_SUFFIXES = (".key",)
CHUNK = 4096  # bytes per exec (8 KB of hex): small enough for a board's RAM

_MKDIRS = """import os
def _mkdirs(dirs):
    for d in dirs:
        p = ''
        for part in d.strip('/').split('/'):
            p += '/' + part
            try:
                os.mkdir(p)
            except OSError:
                pass
"""
_PUT = """import binascii
def _put(name, mode, data):
    with open(name, mode) as f:
        f.write(binascii.unhexlify(data))
"""
STAGE = "/.gridlink-new"  # a board's staging folder
# A run killed part-way leaves staged files: the next run starts by clearing them.
_CLEAR = f"""import os
try:
    for n in os.listdir({STAGE!r}):
        os.remove({STAGE!r} + '/' + n)
except OSError:
    pass
"""
# FAT cannot rename over a file: remove the old one first (LittleFS can)
_MOVE = """import os
def _mv(a, b):
    try:
        os.rename(a, b)
    except OSError:
        os.remove(b)
        os.rename(a, b)
"""


def is_serial(target):
    return bool(SERIAL_URL.match(str(target)) or BARE_PORT.match(str(target)))


def port_path(target):
    """``/dev/ttyACM0`` for ``ttyACM0``; every other target as given."""
    target = str(target)
    return "/dev/" + target if BARE_PORT.match(target) else target


def open_target(target):
    return MpremoteTarget(port_path(target)) if is_serial(target) else DirTarget(target)


def connected_ports():
    """The serial ports this machine has now (pyserial's list), as one phrase."""
    from serial.tools import list_ports

    ports = sorted(p.device for p in list_ports.comports())
    return "connected ports: " + (", ".join(ports) if ports else "none")


def check_port(url):
    """A local port that does not exist is named as missing, with the ports there are
    (mpremote would blame it on the port being in use)."""
    if url.startswith("/dev/") and not os.path.exists(url):
        raise FlashError(f"{url}: no such port (is the board plugged in?); "
                         f"{connected_ports()}")


class DirTarget:
    kind = "dir"

    def __init__(self, root):
        self.root = Path(root)
        self.name = str(self.root)

    def write(self, files, marker, prune=()):
        """Write ``files`` ({relative path: bytes}); ``marker`` (one of them) goes last.

        Files under the ``prune`` directories that are not in ``files`` are removed first.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(".gridlink-provision.*"):  # of a run killed part-way
            shutil.rmtree(stale, ignore_errors=True)
        self.prune(prune, set(files))
        stage = Path(tempfile.mkdtemp(prefix=".gridlink-provision.", dir=self.root))
        try:
            for rel, data in files.items():
                p = stage / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                with open(p, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                if rel.endswith(SECRET_SUFFIXES):
                    p.chmod(0o600)
            for rel in sorted(files, key=lambda r: r == marker):
                dest = self.root / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(stage / rel, dest)
                _sync_dir(dest.parent)
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def read(self, rel):
        try:
            return (self.root / rel).read_bytes()
        except OSError:
            return None

    def read_many(self, rels):
        return {rel: self.read(rel) for rel in rels}

    def prune(self, dirs, keep):
        """Remove files under ``dirs`` that are not in ``keep`` (stale modules)."""
        for d in dirs:
            base = self.root / d
            if base.is_dir():
                for p in base.rglob("*"):
                    if p.is_file() and str(p.relative_to(self.root)) not in keep:
                        p.unlink()


def _sync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class MpremoteTarget:
    """A MicroPython board over ``mpremote connect <url>`` (a port, socket://, rfc2217://)."""

    kind = "mpremote"

    def __init__(self, url, timeout=120):
        self.url = str(url)
        self.name = self.url
        self.timeout = timeout

    def _run(self, *args):
        check_port(self.url)
        cmd = [sys.executable, "-m", "mpremote", "connect", self.url, *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise FlashError(f"{self.url}: mpremote timed out after {self.timeout}s") from None
        if proc.returncode:
            msg = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
            last = msg[-1] if msg else "no output"
            if "SerialException:" in last:  # pyserial's words for a board that went away
                last = ("the connection to the board was lost ("
                        + last.split("SerialException:", 1)[1].strip() + ")")
            if "failed to access" in last or "no device found" in last:
                last += f" ({connected_ports()})"
            raise FlashError(f"{self.url}: mpremote failed: {last}")
        return proc.stdout

    def write(self, files, marker, prune=()):
        """Stage every file under /.gridlink-new/ (written by ``exec`` in hex chunks, which
        every port's raw REPL takes), then rename them into place, ``marker`` last.
        Files under the ``prune`` directories that are not in ``files`` are removed first.
        """
        order = sorted(files, key=lambda r: r == marker)
        names = {rel: f"{STAGE}/{i}" for i, rel in enumerate(order)}
        dirs = sorted({"/" + str(Path(r).parent) for r in files} | {STAGE})
        scripts = [_CLEAR + _MKDIRS + f"_mkdirs({dirs!r})\n"]
        if prune:
            scripts.append(self._prune_code(prune, files))
        code, size = _PUT, 0
        for rel in order:
            data = files[rel]
            for i in range(0, max(len(data), 1), CHUNK):
                part = data[i:i + CHUNK]
                if size and size + len(part) > CHUNK:
                    scripts.append(code)
                    code, size = _PUT, 0
                code += f"_put({names[rel]!r},{'wb' if i == 0 else 'ab'!r},{part.hex()!r})\n"
                size += len(part)
        scripts.append(code)
        scripts.append(_MOVE + "".join(f"_mv({names[r]!r},{'/' + r!r})\n" for r in order)
                       + f"try:\n    os.rmdir({STAGE!r})\nexcept OSError:\n    pass\n")
        args = []
        for code in scripts:
            args += ["exec", code, "+"]
        check_port(self.url)  # a missing port is not a write that stopped part-way
        try:
            self._run(*args[:-1])
        except FlashError as exc:
            raise FlashError(
                f"{exc}: the write stopped part-way (board reset, unplugged or powered "
                f"off?).  What is in place is whole: old or new files, /{marker} last.  "
                f"Run the same command again to finish: it clears the staging folder "
                f"{STAGE} first.") from None

    @staticmethod
    def _prune_code(dirs, keep):
        return (f"import os\nkeep={sorted('/' + k for k in keep)!r}\n"
                f"for d in {['/' + d for d in dirs]!r}:\n"
                " try: names=os.listdir(d)\n except OSError: names=[]\n"
                " for n in names:\n  p=d+'/'+n\n  if p not in keep: os.remove(p)\n")

    def prune(self, dirs, keep):
        self._run("exec", self._prune_code(dirs, keep))

    def read_many(self, rels):
        """{path: bytes or None} of several files, in one session."""
        rels = list(rels)
        code = (f"import binascii\nfor p in {['/' + r for r in rels]!r}:\n try:\n"
                "  f=open(p,'rb')\n except OSError:\n  print('@-')\n else:\n"
                "  print('@'+binascii.hexlify(f.read()).decode())\n  f.close()\n")
        lines = [ln for ln in self._run("exec", code).decode().splitlines()
                 if ln.startswith("@")]
        if len(lines) != len(rels):
            raise FlashError(f"{self.url}: the board answered {len(lines)} of {len(rels)} reads")
        return {r: None if ln == "@-" else bytes.fromhex(ln[1:].strip())
                for r, ln in zip(rels, lines, strict=True)}

    def read(self, rel):
        return self.read_many([rel])[rel]
