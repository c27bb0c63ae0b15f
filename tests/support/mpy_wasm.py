"""Run code under real MicroPython: the official WebAssembly port from npm, under Node.

``run_micropython(script)`` installs ``firmware/core`` as the package ``gridcore`` in
``/lib`` (as it is laid out on a board's flash) and returns what the script printed.
"""

import base64
import json
import shutil
import subprocess
from pathlib import Path

from tests.support.paths import ROOT

CORE = ROOT / "firmware" / "core"
RUNNER = Path(__file__).with_name("mpy_wasm_runner.mjs")
PORT = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"


class MicroPythonError(Exception):
    """The script raised under MicroPython; the message is its traceback."""


def available():
    return shutil.which("node") is not None and (PORT / "micropython.mjs").exists()


def core_files(dest="/lib/gridcore"):
    """The core's sources, keyed by their path on the board."""
    return {f"{dest}/{p.name}": p.read_bytes() for p in sorted(CORE.glob("*.py"))}


def run_micropython(script, files=None, core=True, heapsize=4 * 1024 * 1024, timeout=120):
    payload = dict(core_files()) if core else {}
    for path, data in (files or {}).items():
        payload[path] = data.encode() if isinstance(data, str) else bytes(data)
    job = {
        "script": script,
        "files": {k: base64.b64encode(v).decode() for k, v in payload.items()},
        "heapsize": heapsize,
    }
    proc = subprocess.run(
        ["node", str(RUNNER)],
        input=json.dumps(job).encode(),
        capture_output=True,
        cwd=ROOT,
        timeout=timeout,
    )
    if proc.returncode:
        raise MicroPythonError(proc.stderr.decode(errors="replace").strip())
    return proc.stdout.decode()
