"""``gridlink flash provision --release V --update-repo REPO``: a Pi's first release,
verified as a device does, lands in update slot a (current and good, its trusted root
beside it), so the first update has a version to roll back to.  Each refusal names the
reason and writes nothing."""

import pytest
from gridlink.cli import main
from gridlink.firmware.device.ota import update_device
from gridlink.firmware.device.slots import Slots
from gridlink.flash.provision import Spec, SpecError, provision

from tests.support.fleet import make_repo

DATA = ("var", "lib", "gridlink")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("repo"), versions=("1.0", "1.1"))[1]


def pi(target, broker, **kw):
    return Spec("pv-0042", "410106", "patrol-vehicle", str(target), broker.url, **kw)


def test_the_first_release_runs_from_slot_a_and_the_first_update_can_fall_back_to_it(
        tmp_path, broker, repo):
    root = tmp_path / "sdcard-rootfs"
    info = provision(pi(root, broker, release="1.0", update_repo=str(repo.path),
                        update_url="https://gateway:8443/ota"))
    assert info["release"] == "1.0"
    ota = root.joinpath(*DATA, "ota")
    slots = Slots(ota)
    assert slots.status() == {"installed": "1.0", "slot": "a", "pending": None,
                              "boots_left": None, "failed": []}
    assert (ota / "metadata" / "root.json").read_bytes() == \
        (repo.meta_dir / "1.root.json").read_bytes()
    env = (root / "etc" / "gridlink" / "device.env").read_text()
    assert "GRIDLINK_UPDATE_REPO=https://gateway:8443/ota\n" in env
    # the first update goes to slot b; a trial that never passes its health check
    # gives way to the provisioned 1.0
    assert update_device(root.joinpath(*DATA), str(repo.path), "pi", "1.1", boots=1) == "b"
    assert slots.boot() == "b"
    assert slots.boot() == "a"
    status = slots.status()
    assert (status["installed"], status["failed"][-1]["version"]) == ("1.0", "1.1")


def test_the_command_line_says_which_release_it_installed(tmp_path, broker, repo, capsys):
    code = main(["flash", "provision", "--target", str(tmp_path / "pi"), "--device", "pv-0042",
                 "--district", "410106", "--profile", "patrol-vehicle", "--broker", broker.url,
                 "--release", "1.1", "--update-repo", str(repo.path)])
    assert code == 0
    assert ", release 1.1 in slot a)" in capsys.readouterr().out
    assert Slots(tmp_path.joinpath("pi", *DATA, "ota")).installed_version() == "1.1"


def test_a_pi_that_has_slots_already_is_refused(tmp_path, broker, repo):
    provision(pi(tmp_path / "pi", broker, release="1.0", update_repo=str(repo.path)))
    with pytest.raises(SpecError, match=r"^release: .* already runs 1.0 from its update "
                                        r"slots; it takes new versions through rollouts"):
        provision(pi(tmp_path / "pi", broker, release="1.1", update_repo=str(repo.path)))
    assert Slots(tmp_path.joinpath("pi", *DATA, "ota")).installed_version() == "1.0"


@pytest.mark.parametrize(("change", "message"), [
    ({"release": "9.9"}, r"^release: 9.9 from .*: .*refused \(unknown-release\)"),
    ({"release": "1.0", "update_repo": None}, r"^release: give --update-repo"),
    ({"release": "1.0", "update_repo": "https://gateway:8443/ota"},
     r"^release: .*give --update-root"),
    ({"release": "1.0", "update_repo": "{tmp}/nothing"}, r"^release: .*no such file"),
    ({"update_url": "gateway:8443/ota"}, r"^update-url: .* is not an http\(s\) URL"),
    ({"release": "1.0", "profile": "sensor-node"}, r"^release: a sensor node's first image"),
])
def test_bad_release_options_are_refused_and_nothing_is_written(tmp_path, broker, repo,
                                                                change, message):
    kw = {"release": None, "update_repo": str(repo.path)}
    kw.update({k: (v.format(tmp=tmp_path) if isinstance(v, str) else v)
               for k, v in change.items()})
    profile = kw.pop("profile", "patrol-vehicle")
    spec = Spec("pv-0042", "410106", profile, str(tmp_path / "pi"), broker.url,
                object_id="41010601002000123" if profile == "sensor-node" else None, **kw)
    with pytest.raises(SpecError, match=message):
        provision(spec)
    assert not (tmp_path / "pi").exists() or not any((tmp_path / "pi").rglob("*.json"))


def test_a_tampered_release_is_refused_and_nothing_is_written(tmp_path, broker):
    _keys, repo = make_repo(tmp_path / "r", versions=("1.0",))
    (target,) = (repo.targets_dir / "pi").glob("*.gridlink-1.0.tar")
    data = bytearray(target.read_bytes())
    data[700] ^= 1
    target.write_bytes(bytes(data))
    with pytest.raises(SpecError, match=r"^release: 1.0 from .*refused \(hash\)"):
        provision(pi(tmp_path / "pi", broker, release="1.0", update_repo=str(repo.path)))
    assert not (tmp_path / "pi").exists()


def test_a_sensor_node_gets_the_keys_that_sign_its_updates(tmp_path, broker, capsys):
    from gridlink.fleet import mcu_manifest
    from gridlink.fleet.keys import init_keys, load_private, load_roles

    init_keys(tmp_path / "keys")
    assert main(["fleet", "keys", "node-keys", str(tmp_path / "keys"),
                 "-o", str(tmp_path / "update-keys")]) == 0
    assert "1 targets key (copy it to the sensor nodes" in capsys.readouterr().out
    targets = load_private(tmp_path / "keys" / load_roles(tmp_path / "keys")[1]["targets"][0])
    expected = mcu_manifest.public_bytes(targets).hex() + "\n"
    assert (tmp_path / "update-keys").read_text() == expected
    provision(Spec("sn-0042", "410106", "sensor-node", str(tmp_path / "board"), broker.url,
                   object_id="41010601002000123", update_keys=str(tmp_path / "update-keys")))
    assert (tmp_path / "board" / "gridlink" / "update-keys").read_text() == expected


@pytest.mark.parametrize(("profile", "keys", "message"), [
    ("patrol-vehicle", "11" * 32, r"^update-keys: a Pi trusts its update repository's root"),
    ("sensor-node", "not hex", r"^update-keys: key file .* is not a 64-hex-digit Ed25519"),
])
def test_bad_update_keys_are_refused_and_nothing_is_written(tmp_path, broker, profile, keys,
                                                            message):
    (tmp_path / "keys.txt").write_text(keys + "\n")
    node = profile == "sensor-node"
    with pytest.raises(SpecError, match=message):
        provision(Spec("sn-0042", "410106", profile, str(tmp_path / "board"), broker.url,
                       object_id="41010601002000123" if node else None,
                       update_keys=str(tmp_path / "keys.txt")))
    assert not (tmp_path / "board").exists()
