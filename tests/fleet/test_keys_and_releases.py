"""``gridlink fleet keys init``, ``release build`` and ``release verify``: Ed25519 keys,
a TUF repository (root signed by a threshold of root keys, expiry dates, targets with
kind and version), checked as a device checks it."""

import datetime
import json
import stat
import subprocess
import sys
import tarfile

import pytest
from gridlink.cli import main
from gridlink.fleet.errors import FleetError
from gridlink.fleet.keys import init_keys, load_roles
from gridlink.fleet.repo import Repository
from gridlink.fleet.verify import verify
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata

from tests.support.fleet import app_release, make_repo


def gridlink(*args):
    return subprocess.run([sys.executable, "-m", "gridlink.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_keys_init_makes_private_ed25519_keys_for_every_role(tmp_path):
    roles = init_keys(tmp_path / "keys", root_keys=3, threshold=2)
    names = sorted(p.name for p in (tmp_path / "keys").iterdir())
    assert names == ["roles.json", "root-1.pem", "root-2.pem", "root-3.pem", "snapshot.pem",
                     "targets.pem", "timestamp.pem"]
    for name in names[1:]:
        path = tmp_path / "keys" / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert b"BEGIN PRIVATE KEY" in path.read_bytes()
    assert load_roles(tmp_path / "keys") == (2, roles["files"])


def test_keys_are_never_overwritten_and_the_threshold_must_fit(tmp_path):
    init_keys(tmp_path / "keys")
    before = (tmp_path / "keys" / "targets.pem").read_bytes()
    with pytest.raises(FleetError, match="not an empty folder"):
        init_keys(tmp_path / "keys")
    assert (tmp_path / "keys" / "targets.pem").read_bytes() == before
    with pytest.raises(FleetError, match="threshold 4"):
        init_keys(tmp_path / "other", root_keys=3, threshold=4)
    assert not (tmp_path / "other").exists()


def test_root_is_signed_by_a_threshold_and_roles_expire(tmp_path):
    _keydir, repo = make_repo(tmp_path, versions=("1.0",))
    root = Metadata.from_file(str(repo.meta_dir / "1.root.json"))
    assert root.signed.roles["root"].threshold == 2
    assert len(root.signed.roles["root"].keyids) == 3
    assert len(root.signatures) == 3
    root.verify_delegate("root", root)                     # the threshold is met
    del root.signatures[next(iter(root.signatures))]
    root.verify_delegate("root", root)                     # two of three still are
    del root.signatures[next(iter(root.signatures))]
    with pytest.raises(UnsignedMetadataError, match="1/2"):  # one is not enough
        root.verify_delegate("root", root)
    now = datetime.datetime.now(datetime.UTC)
    lifetimes = {role: (repo.load(role).signed.expires - now).days
                 for role in ("root", "targets", "snapshot", "timestamp")}
    assert lifetimes == {"root": 364, "targets": 89, "snapshot": 6, "timestamp": 0}


def test_a_release_target_carries_kind_version_and_a_hash_named_file(tmp_path):
    _keydir, repo = make_repo(tmp_path, versions=("1.0", "1.1"))
    releases = repo.releases()
    assert sorted(releases) == ["pi/gridlink-1.0.tar", "pi/gridlink-1.1.tar"]
    target = releases["pi/gridlink-1.1.tar"]
    assert target.custom == {"kind": "pi", "version": "1.1"}
    digest = target.hashes["sha256"]
    assert (repo.targets_dir / "pi" / f"{digest}.gridlink-1.1.tar").stat().st_size == \
        target.length
    assert repo.load("targets").signed.version == 3         # empty, 1.0, 1.1
    assert repo.load("timestamp").signed.snapshot_meta.version == \
        repo.load("snapshot").signed.version


def test_root_keys_can_stay_offline_after_the_repository_is_made(tmp_path):
    keydir, repo = make_repo(tmp_path, versions=("1.0",))
    for i in (1, 2, 3):
        (keydir / f"root-{i}.pem").unlink()
    repo.add_release(keydir, "pi", "1.2", app_release(tmp_path, "1.2"))
    assert verify(repo.path, "pi", "1.2")["target"] == "pi/gridlink-1.2.tar"


def test_a_new_repository_needs_the_root_threshold(tmp_path):
    keydir = tmp_path / "keys"
    init_keys(keydir)
    for i in (1, 2):
        (keydir / f"root-{i}.pem").unlink()
    with pytest.raises(FleetError, match="root needs 2 signatures, only 1"):
        Repository(tmp_path / "repo").add_release(keydir, "pi", "1.0",
                                                  app_release(tmp_path, "1.0"))
    assert not (tmp_path / "repo" / "metadata" / "1.root.json").exists()


@pytest.mark.parametrize("kind, version, problem", [
    ("pi", "1.0", "already released"),
    ("pi", "v1.2", "not dotted numbers"),
    ("pi", "1.2-beta", "not dotted numbers"),
    ("tractor", "1.3", "unknown device kind"),
])
def test_bad_releases_are_refused_and_publish_nothing(tmp_path, kind, version, problem):
    keydir, repo = make_repo(tmp_path, versions=("1.0",))
    before = sorted(p.name for p in repo.meta_dir.iterdir())
    with pytest.raises(FleetError, match=problem):
        repo.add_release(keydir, kind, version, app_release(tmp_path, "9.9"))
    assert sorted(p.name for p in repo.meta_dir.iterdir()) == before


def test_cli_builds_an_mcu_image_release_and_verifies_it(tmp_path):
    keys, repo = tmp_path / "keys", tmp_path / "repo"
    assert main(["fleet", "keys", "init", str(keys)]) == 0
    assert main(["fleet", "release", "build", "--kind", "mcu", "--version", "2.0",
                 "--keys", str(keys), "-o", str(repo)]) == 0
    (tar,) = (repo / "targets" / "mcu").glob("*.image-2.0.tar")
    with tarfile.open(tar) as t:
        names = t.getnames()
        release = json.loads(t.extractfile("release.json").read())
    assert names[0] == "release.json"
    assert "image/main.py" in names and "image/lib/gridcore/outbox.mpy" in names
    assert (release["kind"], release["version"]) == ("mcu", "2.0")
    proc = gridlink("fleet", "release", "verify", str(repo), "--kind", "mcu", "--version", "2.0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: mcu/image-2.0.tar")


def test_cli_builds_the_pi_wheel_release(tmp_path):
    keys, repo = tmp_path / "keys", tmp_path / "repo"
    init_keys(keys)
    proc = gridlink("fleet", "release", "build", "--kind", "pi", "--version", "1.0",
                    "--keys", str(keys), "-o", str(repo))
    assert proc.returncode == 0, proc.stderr
    result = verify(repo, "pi", "1.0")
    (wheel,) = result["files"]
    assert wheel["path"].startswith("wheels/gridlink-") and wheel["path"].endswith(".whl")
    assert 100_000 < result["bytes"] < 5_000_000


def test_cli_verify_names_the_file_and_reason_and_exits_non_zero(tmp_path):
    _keydir, repo = make_repo(tmp_path, versions=("1.0",))
    (target,) = (repo.targets_dir / "pi").iterdir()
    data = bytearray(target.read_bytes())
    data[600] ^= 1
    target.write_bytes(bytes(data))
    proc = gridlink("fleet", "release", "verify", str(repo.path), "--kind", "pi",
                    "--version", "1.0")
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"gridlink fleet: error: targets/pi/{target.name}: refused (hash)")
    proc = gridlink("fleet", "release", "verify", str(repo.path), "--kind", "pi",
                    "--version", "3.0")
    assert proc.returncode == 2
    assert "pi/gridlink-3.0.tar: refused (unknown-release)" in proc.stderr


def test_timestamp_command_re_signs_a_newer_timestamp(tmp_path):
    keydir, repo = make_repo(tmp_path, versions=("1.0",))
    before = repo.load("timestamp").signed.version
    assert main(["fleet", "timestamp", str(repo.path), "--keys", str(keydir)]) == 0
    assert repo.load("timestamp").signed.version == before + 1
    assert verify(repo.path, "pi", "1.0")["target"] == "pi/gridlink-1.0.tar"


@pytest.mark.parametrize("argv, message", [
    (["release", "build", "--kind", "pi", "--version", "1.0", "--keys", "{tmp}/none",
      "-o", "{tmp}/repo"], "no roles.json; make the keys with 'gridlink fleet keys init'"),
    (["release", "build", "--kind", "mcu", "--version", "1.x", "--keys", "{tmp}/none",
      "-o", "{tmp}/repo"], "version '1.x' is not dotted numbers"),
    (["release", "verify", "{tmp}", "--kind", "pi", "--version", "1.0"],
     "metadata/1.root.json: no such root metadata file"),
    (["timestamp", "{tmp}", "--keys", "{tmp}"], "no snapshot metadata; not an update "
     "repository"),
    (["keys", "rotate", "{tmp}", "--role", "targets", "-o", "{tmp}"],
     "no update repository to rotate a key in"),
])
def test_cli_bad_input_is_one_clear_line(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["fleet", *argv]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("gridlink fleet: error: ") and message in line, line
    assert not (tmp_path / "repo").exists()
