"""A device fetches over HTTP, as a Pi does from the gateway (tuf.ngclient's urllib3
fetcher), here from a plain local HTTP server serving the repository folder."""

import functools
import http.server
import shutil
import subprocess
import sys
import threading

import pytest
from gridlink.firmware.device.update import UpdateRefused, fetch_release

from tests.support.fleet import make_repo


@pytest.fixture
def served(tmp_path):
    keydir, repo = make_repo(tmp_path, versions=("1.0", "1.1"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(repo.path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield keydir, repo, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_device_fetches_and_verifies_over_http(served, tmp_path):
    _keydir, repo, url = served
    meta = tmp_path / "device" / "metadata"
    meta.mkdir(parents=True)
    shutil.copyfile(repo.meta_dir / "1.root.json", meta / "root.json")
    tar, info = fetch_release(meta, url, "pi", "1.1", tmp_path / "dl", installed="1.0")
    assert tar.read_bytes() == next((repo.targets_dir / "pi").glob("*.gridlink-1.1.tar")) \
        .read_bytes()
    assert info.custom == {"kind": "pi", "version": "1.1"}
    (target,) = (repo.targets_dir / "pi").glob("*.gridlink-1.0.tar")
    target.write_bytes(target.read_bytes()[:-1] + b"!")
    with pytest.raises(UpdateRefused) as refused:
        fetch_release(meta, url, "pi", "1.0", tmp_path / "dl2")
    assert refused.value.reason == "hash"
    assert refused.value.file == f"targets/pi/{target.name}"
    assert not list((tmp_path / "dl2").iterdir())


def test_cli_verify_over_http_needs_and_uses_the_devices_root(served):
    _keydir, repo, url = served
    run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=120)
    proc = run([sys.executable, "-m", "gridlink.cli", "fleet", "release", "verify", url,
                "--kind", "pi", "--version", "1.1"])
    assert proc.returncode == 2
    assert "give --root" in proc.stderr
    proc = run([sys.executable, "-m", "gridlink.cli", "fleet", "release", "verify", url,
                "--kind", "pi", "--version", "1.1", "--root",
                str(repo.meta_dir / "1.root.json")])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: pi/gridlink-1.1.tar")
