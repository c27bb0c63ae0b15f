"""A private PostgreSQL cluster for one test: ``initdb`` and ``pg_ctl`` from
/usr/lib/postgresql/*/bin, its own data directory and port, so that a test may stop and
restart it without touching the shared server on 5432.

The server refuses to run as root: as root the cluster belongs to the ``postgres`` user
(``runuser``).  ``available()`` says why a cluster cannot be made here, or None.
"""

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from gridlink.mosquitto import free_port


def _bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def available():
    """None when a private cluster can be made, else why not."""
    if _bindir() is None:
        return "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to own the cluster"
        if not shutil.which("runuser"):
            return "running as root without runuser to start the server as postgres"
    return None


class Cluster:
    """``initdb`` a cluster in a fresh temporary directory; ``start``/``stop``/``close``.
    ``url`` is a database of its own, ``gridlink``."""

    def __init__(self):
        self.bin = _bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="gridlink-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:
            self.user = "postgres"
            shutil.chown(self.dir, self.user)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--no-sync")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  "gridlink")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/gridlink"

    def _run(self, tool, *args):
        argv = [str(self.bin / tool), *args]
        if self.user:
            argv = ["runuser", "-u", self.user, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, cwd=self.dir, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{tool} failed ({done.returncode}): "
                               f"{(done.stderr or done.stdout).strip()[-800:]}")
        return done.stdout

    def start(self):
        """Start the server and wait until it takes connections."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
                  "start")
        return self

    def stop(self, mode="immediate"):
        """Stop the server: ``immediate`` is a crash (every connection cut, crash
        recovery at the next start), ``fast`` a clean shutdown."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self):
        done = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1",
                               "-p", str(self.port)], capture_output=True)
        return done.returncode == 0

    def close(self):
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
