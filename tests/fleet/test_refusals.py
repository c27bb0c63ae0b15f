"""Every refusal installs nothing, keeps nothing it downloaded, leaves the outbox alone,
and names the file and the reason (also in the device's update state)."""

import shutil

import pytest
from gridlink.firmware.device.ota import update_device
from gridlink.firmware.device.slots import Slots
from gridlink.firmware.device.update import UpdateRefused, fetch_release
from gridlink.fleet.keys import role_signers
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import TargetFile

from tests.support.fleet import app_release, make_repo, past, provision, tree_digest


@pytest.fixture
def setup(tmp_path):
    keydir, repo = make_repo(tmp_path, versions=("1.0", "1.1"))
    device = provision(tmp_path / "device", repo, "1.0")
    return keydir, repo, device


def snapshot_of(device):
    return tree_digest(device / "ota" / "slots"), tree_digest(device / "outbox"), \
        Slots(device / "ota").current()


def refused(device, repo, version, reason, file_prefix, kind="pi", **kw):
    before = snapshot_of(device)
    with pytest.raises(UpdateRefused) as info:
        update_device(device, repo.path, kind, version, **kw)
    exc = info.value
    assert exc.reason == reason, exc
    assert exc.file.startswith(file_prefix), exc
    assert str(exc).startswith(f"{exc.file}: refused ({reason}): ")
    assert snapshot_of(device) == before                        # nothing installed
    assert not (device / "ota" / "download").exists()            # nothing kept
    status = Slots(device / "ota").status()
    assert status["installed"] == "1.0" and status["pending"] is None
    assert status["failed"][-1] == {"version": version, "reason": reason, "file": exc.file}
    return exc


def test_the_good_release_installs(setup):
    _keydir, repo, device = setup
    assert update_device(device, repo.path, "pi", "1.1") == "b"
    assert Slots(device / "ota").status()["pending"] == "1.1"


def test_a_tampered_release_file(setup):
    _keydir, repo, device = setup
    (target,) = (repo.targets_dir / "pi").glob("*.gridlink-1.1.tar")
    data = bytearray(target.read_bytes())
    data[-10] ^= 0xFF
    target.write_bytes(bytes(data))
    refused(device, repo, "1.1", "hash", f"targets/pi/{target.name}")


def test_a_release_signed_by_the_wrong_key(setup, tmp_path):
    keydir, repo, device = setup
    targets = repo.load("targets")
    tar = app_release(tmp_path, "1.2")
    target = TargetFile.from_file("pi/gridlink-1.2.tar", str(tar), ["sha256"])
    target.unrecognized_fields["custom"] = {"kind": "pi", "version": "1.2"}
    dest = repo.targets_dir / "pi" / f"{target.hashes['sha256']}.gridlink-1.2.tar"
    shutil.copyfile(tar, dest)
    targets.signed.targets[target.path] = target
    targets.signed.version += 1
    targets.signatures.clear()
    intruder = CryptoSigner.generate_ed25519()
    targets.sign(intruder)                                   # not the key root names
    assert intruder.public_key.keyid != role_signers(keydir, "targets")[0].public_key.keyid
    repo.publish(keydir, targets, sign_targets=False)       # snapshot, timestamp: genuine
    refused(device, repo, "1.2", "signature", f"metadata/{targets.signed.version}.targets.json")


def test_expired_metadata(setup, tmp_path):
    keydir, repo, device = setup
    repo.add_release(keydir, "pi", "1.2", app_release(tmp_path, "1.2"),
                     expires={"targets": past()})
    exc = refused(device, repo, "1.2", "expired", "metadata/")
    assert exc.file.endswith(".targets.json")


def test_a_version_older_than_the_installed_one(tmp_path):
    _keydir, repo = make_repo(tmp_path, versions=("1.0", "1.1"))
    device = provision(tmp_path / "device", repo, "1.1")
    before = snapshot_of(device)
    with pytest.raises(UpdateRefused) as info:
        update_device(device, repo.path, "pi", "1.0")
    assert info.value.reason == "older-than-installed"
    assert info.value.file == "pi/gridlink-1.0.tar"
    assert "1.0 is not newer than the installed 1.1" in str(info.value)
    assert snapshot_of(device) == before
    assert Slots(device / "ota").status()["failed"][-1]["reason"] == "older-than-installed"


def test_a_stale_timestamp_freeze(setup):
    keydir, repo, device = setup
    repo.timestamp(keydir, expires=past(days=2))
    refused(device, repo, "1.1", "expired", "metadata/timestamp.json")


def test_a_replayed_older_timestamp(setup, tmp_path):
    keydir, repo, device = setup
    old = (repo.meta_dir / "timestamp.json").read_bytes()
    repo.timestamp(keydir)                                   # the device sees this one
    fetch_release(device / "ota" / "metadata", repo.path, "pi", "1.1", tmp_path / "dl",
                  installed="1.0")
    (repo.meta_dir / "timestamp.json").write_bytes(old)      # an attacker replays the old
    refused(device, repo, "1.1", "rollback-metadata", "metadata/timestamp.json")


def test_a_release_for_another_device_kind(setup, tmp_path):
    keydir, repo, device = setup
    # An mcu image published under a Pi name: the signed kind says mcu.
    targets = repo.load("targets")
    tar = app_release(tmp_path, "1.2", kind="mcu")
    target = TargetFile.from_file("pi/gridlink-1.2.tar", str(tar), ["sha256"])
    target.unrecognized_fields["custom"] = {"kind": "mcu", "version": "1.2"}
    shutil.copyfile(tar, repo.targets_dir / "pi" / f"{target.hashes['sha256']}.gridlink-1.2.tar")
    targets.signed.targets[target.path] = target
    targets.signed.version += 1
    repo.publish(keydir, targets)
    exc = refused(device, repo, "1.2", "wrong-kind", "pi/gridlink-1.2.tar")
    assert "release is for 'mcu', this device is 'pi'" in str(exc)


def test_an_mcu_release_asked_for_by_a_pi(setup, tmp_path):
    keydir, repo, device = setup
    repo.add_release(keydir, "mcu", "1.2", app_release(tmp_path, "1.2", kind="mcu"))
    refused(device, repo, "1.2", "unknown-release", "pi/gridlink-1.2.tar")


def test_too_little_disk(setup):
    _keydir, repo, device = setup
    exc = refused(device, repo, "1.1", "disk", "pi/gridlink-1.1.tar",
                  free_bytes=lambda _path: 10_000_000)
    assert "has 10000000" in str(exc)


def test_release_contents_that_differ_from_its_release_json(setup, tmp_path):
    keydir, repo, device = setup
    # Signed correctly, but release.json inside names another version.
    repo.add_release(keydir, "pi", "1.2", app_release(tmp_path, "1.3"))
    refused(device, repo, "1.2", "content", "gridlink-1.2.tar")
