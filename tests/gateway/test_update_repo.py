"""The gateway serves the update repository and a Pi updates from it: a release built with
the fleet tools, a real gateway (broker, store, HTTP), a provisioned device that fetches
through tuf.ngclient, installs into its other slot, boots it and keeps it when healthy."""

import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from gridlink.firmware.device.ota import update_device
from gridlink.firmware.device.slots import Slots, commit_if_healthy
from gridlink.firmware.device.update import UpdateRefused
from gridlink.gateway.errors import ConfigError
from gridlink.gateway.service import Gateway, WebOptions

from tests.support.fleet import make_repo, outbox_holds_three_reports, provision, tree_digest
from tests.support.paths import ROOT


@pytest.fixture
def gateway(broker, tmp_path):
    _keydir, repo = make_repo(tmp_path, versions=("1.0", "1.1"))
    gw = Gateway(broker=broker.url, db=f"sqlite:///{tmp_path}/intake.sqlite",
                 photos=tmp_path / "photos", http="127.0.0.1:0",
                 web=WebOptions(update_repo=repo.path)).start()
    try:
        yield gw, repo
    finally:
        gw.stop()


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def launch(device):
    """What the unit's ExecStart does: boot() and start the chosen slot's code."""
    proc = subprocess.run([sys.executable, "-m", "gridlink.firmware.device.launch",
                           str(device), "--module", "gridlink_probe", "--", "device", "run"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_a_pi_updates_from_the_gateway_boots_the_new_slot_and_keeps_it(gateway, tmp_path):
    gw, repo = gateway
    device = provision(tmp_path / "device", repo, "1.0")
    outbox = tree_digest(device / "outbox")
    assert launch(device) == ["1.0", "a", "device", "run"]
    assert update_device(device, gw.http_url + "/ota", "pi", "1.1", boots=3) == "b"
    slots = Slots(device / "ota")
    assert slots.status()["pending"] == "1.1"
    assert launch(device) == ["1.1", "b", "device", "run"]        # first boot of the trial
    assert commit_if_healthy(slots, {"outbox": lambda: outbox_holds_three_reports(device)},
                             deadline=10) == []
    assert slots.status() == {"installed": "1.1", "slot": "b", "pending": None,
                              "boots_left": None, "failed": []}
    assert launch(device) == ["1.1", "b", "device", "run"]
    assert slots.release("a")["version"] == "1.0"                  # the fallback stays
    assert tree_digest(device / "outbox") == outbox


def test_a_tampered_file_on_the_gateway_is_refused_and_nothing_installed(gateway, tmp_path):
    gw, repo = gateway
    device = provision(tmp_path / "device", repo, "1.0")
    (target,) = (repo.targets_dir / "pi").glob("*.gridlink-1.1.tar")
    data = bytearray(target.read_bytes())
    data[100] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(UpdateRefused) as refused:
        update_device(device, gw.http_url + "/ota", "pi", "1.1")
    assert (refused.value.reason, refused.value.file) == ("hash", f"targets/pi/{target.name}")
    status = Slots(device / "ota").status()
    assert status["installed"] == "1.0" and status["pending"] is None
    assert launch(device) == ["1.0", "a", "device", "run"]


def test_release_files_answer_ranges_and_metadata_is_not_cached(gateway):
    gw, repo = gateway
    (target,) = (repo.targets_dir / "pi").glob("*.gridlink-1.1.tar")
    whole = target.read_bytes()
    url = f"{gw.http_url}/ota/targets/pi/{target.name}"
    status, head, body = get(url)
    assert status == 200 and body == whole and head["accept-ranges"] == "bytes"
    assert "immutable" in head["cache-control"]
    status, head, body = get(url, {"Range": "bytes=1000-"})      # resume after a cut
    assert status == 206 and body == whole[1000:]
    assert head["content-range"] == f"bytes 1000-{len(whole) - 1}/{len(whole)}"
    status, head, body = get(f"{gw.http_url}/ota/metadata/timestamp.json")
    assert status == 200 and body == (repo.meta_dir / "timestamp.json").read_bytes()
    assert head["cache-control"] == "no-cache"


def test_only_repository_files_are_served(gateway, tmp_path):
    gw, repo = gateway
    (repo.path / "metadata" / "notes.txt").write_text("x")
    (tmp_path / "secret.json").write_text("{}")
    (repo.path / "metadata" / "link.json").symlink_to(tmp_path / "secret.json")
    for path, why in (("/ota/metadata/..%2Fkeys", None),
                      ("/ota/metadata/a..json", "not a repository file name"),
                      ("/ota/metadata/.hidden", None),
                      ("/ota/metadata/link.json", "no such file"),
                      ("/ota/metadata/9.root.json", "no such file"),
                      ("/ota/targets/x86/a.tar", None),
                      ("/ota/targets/pi/..", None)):
        status, _head, body = get(gw.http_url + path)
        assert status in (404, 422), (path, status, body)
        if why:
            assert why.encode() in body, (path, body)
    assert get(gw.http_url + "/ota/metadata/notes.txt")[0] == 200   # inside: served


def test_over_https_the_device_checks_the_gateways_certificate_with_the_district_ca(
        pki, tmp_path):
    from gridlink.gateway.api import create_app
    from gridlink.gateway.httpserver import BackgroundServer
    from gridlink.gateway.store import open_store

    _keydir, repo = make_repo(tmp_path, versions=("1.0", "1.1"))
    store = open_store(f"sqlite:///{tmp_path}/intake.sqlite")
    app = create_app(store, update_repo=repo.path)
    with BackgroundServer(app, certfile=str(pki / "broker.crt"),
                          keyfile=str(pki / "broker.key")) as server:
        url = server.url.replace("127.0.0.1", "localhost") + "/ota"
        assert url.startswith("https://")
        device = provision(tmp_path / "device", repo, "1.0")
        with pytest.raises(UpdateRefused) as refused:            # not a CA it knows
            update_device(device, url, "pi", "1.1")
        assert refused.value.reason == "download"
        assert "CERTIFICATE_VERIFY_FAILED" in refused.value.detail
        assert update_device(device, url, "pi", "1.1", ca=pki / "ca.crt") == "b"
    store.close()


def test_without_a_repository_the_routes_say_so(broker, tmp_path):
    gw = Gateway(broker=broker.url, db=f"sqlite:///{tmp_path}/intake.sqlite",
                 photos=tmp_path / "photos", http="127.0.0.1:0").start()
    try:
        status, _head, body = get(gw.http_url + "/ota/metadata/timestamp.json")
    finally:
        gw.stop()
    assert status == 404 and b"serves no update repository (--update-repo)" in body


def test_a_folder_that_is_no_repository_is_refused_at_start(tmp_path):
    with pytest.raises(ConfigError, match="is not an update repository"):
        WebOptions(update_repo=tmp_path)
