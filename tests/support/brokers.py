"""A private Mosquitto for a test: own port, own persistence, stop and start at will."""

import shutil
import subprocess
from pathlib import Path

# the demo starts its Mosquitto the same way: one free_port/wait_port for both
from gridlink.gateway.demo import free_port, wait_port

__all__ = ["Mosquitto", "free_port", "wait_port"]


class Mosquitto:
    """A mosquitto process on 127.0.0.1 with persistence in ``workdir``.

    ``extra_conf`` lines are appended (ACLs, TLS listeners…).  ``stop()`` then
    ``start()`` keeps the port and the persisted sessions, as a broker restart does.
    """

    def __init__(self, workdir, port=None, extra_conf=""):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.conf = self.workdir / "mosquitto.conf"
        self.conf.write_text(
            # As root, mosquitto would switch to its own user and could not write the
            # persistence file into the test's private folder (ignored when not root).
            "user root\n"
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
            f"log_dest file {self.workdir}/mosquitto.log\n"
            "log_type error\nlog_type warning\n" + extra_conf
        )
        self.proc = None

    @property
    def url(self):
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self):
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
