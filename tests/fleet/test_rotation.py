"""Key rotation: a new root version names the new key; a device provisioned with the
first root walks the chain and accepts what the new key signs, and refuses the old key."""

import json
import shutil

import pytest
from gridlink.cli import main
from gridlink.firmware.device.update import UpdateRefused, fetch_release
from gridlink.fleet.errors import FleetError
from gridlink.fleet.keys import load_roles, signer
from gridlink.fleet.repo import rotate_key
from gridlink.fleet.verify import verify
from tuf.api.metadata import Metadata

from tests.support.fleet import app_release, make_repo


def device_meta(tmp_path, repo, name="device"):
    meta = tmp_path / name / "metadata"
    meta.mkdir(parents=True)
    shutil.copyfile(repo.meta_dir / "1.root.json", meta / "root.json")
    return meta


@pytest.mark.parametrize("role", ["targets", "snapshot", "timestamp"])
def test_an_online_key_is_rotated_and_devices_follow(tmp_path, role):
    keydir, repo = make_repo(tmp_path, versions=("1.0",))
    seen_before = device_meta(tmp_path, repo, "seen")            # saw the old metadata
    fetch_release(seen_before, repo.path, "pi", "1.0", tmp_path / "dl0")
    old_key = signer(keydir / f"{role}.pem").public_key.keyid
    assert main(["fleet", "keys", "rotate", str(keydir), "--role", role,
                 "-o", str(repo.path)]) == 0
    assert load_roles(keydir)[1][role] == [f"{role}-2.pem"]
    root = Metadata.from_file(str(repo.meta_dir / "2.root.json")).signed
    assert root.roles[role].keyids == [signer(keydir / f"{role}-2.pem").public_key.keyid]
    assert old_key not in root.roles[role].keyids
    repo.add_release(keydir, "pi", "1.1", app_release(tmp_path, "1.1"))
    assert verify(repo.path, "pi", "1.1")["target"] == "pi/gridlink-1.1.tar"
    fetch_release(seen_before, repo.path, "pi", "1.1", tmp_path / "dl1", installed="1.0")
    assert json.loads((seen_before / "root.json").read_text())["signed"]["version"] == 2


def test_metadata_signed_by_a_rotated_out_key_is_refused(tmp_path):
    keydir, repo = make_repo(tmp_path, versions=("1.0",))
    shutil.copyfile(keydir / "targets.pem", tmp_path / "stolen.pem")
    rotate_key(repo.path, keydir, "targets")
    targets = repo.load("targets")
    targets.signed.version += 1
    targets.signatures.clear()
    targets.sign(signer(tmp_path / "stolen.pem"))                # the old, retired key
    repo.publish(keydir, targets, sign_targets=False)
    with pytest.raises(UpdateRefused) as info:
        fetch_release(device_meta(tmp_path, repo), repo.path, "pi", "1.0", tmp_path / "dl")
    assert info.value.reason == "signature"
    assert info.value.file == f"metadata/{targets.signed.version}.targets.json"


def test_a_root_key_is_replaced_with_old_and_new_thresholds(tmp_path):
    keydir, repo = make_repo(tmp_path, versions=("1.0",))
    old, new, version = rotate_key(repo.path, keydir, "root", "root-1.pem")
    assert (old, new, version) == ("root-1.pem", "root-4.pem", 2)
    root = Metadata.from_file(str(repo.meta_dir / "2.root.json"))
    ids = root.signed.roles["root"].keyids
    assert signer(keydir / "root-4.pem").public_key.keyid in ids
    assert signer(keydir / "root-1.pem").public_key.keyid not in ids
    assert len(ids) == 3 and root.signed.roles["root"].threshold == 2
    repo.add_release(keydir, "pi", "1.1", app_release(tmp_path, "1.1"))
    assert verify(repo.path, "pi", "1.1")["target"] == "pi/gridlink-1.1.tar"


def test_rotation_without_enough_root_keys_changes_nothing(tmp_path):
    keydir, repo = make_repo(tmp_path, versions=("1.0",))
    (keydir / "root-2.pem").unlink()
    (keydir / "root-3.pem").unlink()
    roles = (keydir / "roles.json").read_text()
    with pytest.raises(FleetError, match="needs 2 signatures of the old root keys; only 1"):
        rotate_key(repo.path, keydir, "targets")
    assert (keydir / "roles.json").read_text() == roles
    assert not (keydir / "targets-2.pem").exists()
    assert not (repo.meta_dir / "2.root.json").exists()
    assert verify(repo.path, "pi", "1.0")["target"] == "pi/gridlink-1.0.tar"
