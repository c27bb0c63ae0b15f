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

SERIAL_URL = re.compile(r"^(/dev/|COM\d+$|[a-z][a-z0-9+]*://)")
SECRET_SUFFIXES = (".key",)


def is_serial(target):
    return bool(SERIAL_URL.match(str(target)))


def open_target(target):
    return MpremoteTarget(target) if is_serial(target) else DirTarget(target)


class DirTarget:
    kind = "dir"

    def __init__(self, root):
        self.root = Path(root)
        self.name = str(self.root)

    def write(self, files, marker):
        """Write ``files`` ({relative path: bytes}); ``marker`` (one of them) goes last."""
        self.root.mkdir(parents=True, exist_ok=True)
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
        cmd = [sys.executable, "-m", "mpremote", "connect", self.url, *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise FlashError(f"{self.url}: mpremote timed out after {self.timeout}s") from None
        if proc.returncode:
            msg = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
            raise FlashError(f"{self.url}: mpremote failed: {msg[-1] if msg else 'no output'}")
        return proc.stdout

    def write(self, files, marker):
        dirs = sorted({"/" + str(Path(r).parent) for r in files} | {"/.gridlink-new"})
        mk = (f"import os\nfor d in {dirs!r}:\n p=''\n for part in d.strip('/').split('/'):\n"
              "  p+='/'+part\n  try: os.mkdir(p)\n  except OSError: pass\n")
        order = sorted(files, key=lambda r: r == marker)
        names = {rel: f"/.gridlink-new/{i}" for i, rel in enumerate(order)}
        args = ["exec", mk]
        with tempfile.TemporaryDirectory() as d:
            for rel in order:
                local = Path(d, str(len(args)))
                local.write_bytes(files[rel])
                args += ["+", "fs", "cp", str(local), ":" + names[rel]]
            mv = "import os\n" + "".join(
                f"os.rename({names[r]!r}, {'/' + r!r})\n" for r in order)
            # FAT cannot rename over a file: remove the old one first (LittleFS can)
            mv = mv.replace("os.rename(", "_mv(")
            mv = ("import os\ndef _mv(a, b):\n try: os.rename(a, b)\n except OSError:\n"
                  "  os.remove(b)\n  os.rename(a, b)\n" + mv)
            args += ["+", "exec", mv]
            self._run(*args)

    def prune(self, dirs, keep):
        code = (f"import os\nkeep={sorted('/' + k for k in keep)!r}\n"
                f"for d in {['/' + d for d in dirs]!r}:\n"
                " try: names=os.listdir(d)\n except OSError: names=[]\n"
                " for n in names:\n  p=d+'/'+n\n  if p not in keep: os.remove(p)\n")
        self._run("exec", code)

    def read(self, rel):
        code = (f"import binascii\ntry:\n f=open({'/' + rel!r},'rb')\nexcept OSError:\n"
                " print('-')\nelse:\n print(binascii.hexlify(f.read()).decode())\n f.close()\n")
        out = self._run("exec", code).decode().strip().splitlines()
        if not out or out[-1] == "-":
            return None
        return bytes.fromhex(out[-1])
