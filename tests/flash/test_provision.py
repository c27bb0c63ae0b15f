"""gridlink flash provision + selftest on directory targets (a Pi's data dir, a board's
flash mirror): certificates signed by a district CA or given, checked by a real
Mosquitto with require_certificate; bad input named by field, nothing half-written."""

import datetime as dt
import json
import os
import stat

import pytest
from gridlink.flash import pki, targets
from gridlink.flash.errors import FlashError
from gridlink.flash.provision import Spec, SpecError, provision
from gridlink.flash.selftest import selftest
from gridlink.mosquitto import Mosquitto, free_port

from tests.support.paths import ROOT

OBJECT = "41010601002000123"


@pytest.fixture
def ca(tmp_path_factory):  # per test: the CA's issued.csv remembers every device id
    d = tmp_path_factory.mktemp("ca")
    key, crt = pki.make_ca("district 410106 CA")
    (d / "ca.key").write_bytes(key)
    (d / "ca.pem").write_bytes(crt)
    skey, scrt = pki.sign_device("broker", d / "ca.pem", d / "ca.key", hosts=["127.0.0.1"])
    (d / "server.key").write_bytes(skey)
    (d / "server.pem").write_bytes(scrt)
    return d


@pytest.fixture
def tls_broker(tmp_path, ca):
    port = free_port()
    conf = (f"listener {port} 127.0.0.1\ncafile {ca}/ca.pem\ncertfile {ca}/server.pem\n"
            f"keyfile {ca}/server.key\nrequire_certificate true\n"
            "use_identity_as_username true\n")
    with Mosquitto(tmp_path / "tls-broker", extra_conf=conf) as b:
        b.tls_url = f"mqtts://127.0.0.1:{port}"
        yield b


def spec(target, ca, broker_url, **kw):
    args = {"device": "pv-0042", "district": "410106", "profile": "patrol-vehicle",
            "ca_cert": str(ca / "ca.pem"), "ca_key": str(ca / "ca.key")}
    args.update(kw)
    return Spec(args.pop("device"), args.pop("district"), args.pop("profile"), str(target),
                broker_url, **args)


def failed(checks):
    return {c.name: c.detail for c in checks if not c.ok}


def test_a_pi_gets_what_its_systemd_unit_reads(tmp_path, ca, tls_broker):
    from gridlink.firmware.device.profile import load_profile

    root = tmp_path / "sdcard-rootfs"
    info = provision(spec(root, ca, tls_broker.tls_url))
    assert info["device"] == "pv-0042" and info["cert_until"]
    etc = root / "etc" / "gridlink"
    ident = json.loads((etc / "identity.json").read_text())
    assert ident["broker"] == {"url": tls_broker.tls_url, "host": "127.0.0.1",
                               "port": int(tls_broker.tls_url.rsplit(":", 1)[1]), "tls": True,
                               "ca": "/etc/gridlink/ca.pem", "cert": "/etc/gridlink/device.pem",
                               "key": "/etc/gridlink/device.key"}
    # the unit's EnvironmentFile and the paths its ExecStart names
    unit = (ROOT / "firmware" / "systemd" / "gridlink-device.service").read_text()
    for path in ("/etc/gridlink/device.env", "/etc/gridlink/ca.pem",
                 "/etc/gridlink/device.pem", "/etc/gridlink/device.key"):
        assert path in unit and (root / path.lstrip("/")).exists()
    env = dict(line.split("=", 1) for line in (etc / "device.env").read_text().splitlines()
               if line and not line.startswith("#"))
    assert env == {"GRIDLINK_PROFILE": "/etc/gridlink/profile.json",
                   "GRIDLINK_BROKER": tls_broker.tls_url, "GRIDLINK_DEVICE_ID": "pv-0042"}
    # the Pi runtime's own loader takes the provisioned profile
    assert load_profile(str(etc / "profile.json"))["device_id"] == "pv-0042"
    assert stat.S_IMODE((etc / "device.key").stat().st_mode) == 0o600
    assert pki.info((etc / "device.pem").read_bytes()).cn == "pv-0042"
    checks = selftest(root)
    assert failed(checks) == {}
    assert [c.name for c in checks] == ["files", "profile", "cert", "grid", "codebook", "broker"]
    assert "accepted pv-0042 with the device certificate" in checks[-1].detail


def test_a_sensor_node_flash_gets_its_config_bound_to_its_manhole(tmp_path, ca, broker):
    flash = tmp_path / "flash"
    provision(spec(flash, ca, broker.url, device="sn-0009", profile="sensor-node",
                   object_id=OBJECT))
    cfg = json.loads((flash / "gridlink" / "config.json").read_text())
    assert cfg["tilt"]["object"] == OBJECT and cfg["tilt"]["code"] == "01002"
    assert cfg["broker"]["cert"] == "/gridlink/device.pem"
    from gridlink.firmware.core.gridmap import GridMap
    from gridlink.firmware.device.profile import default_map

    shipped = json.loads((ROOT / "device_profiles" / "sensor-node.json").read_text())
    pos = shipped["position"]
    grid = GridMap(default_map("410106").read_bytes()).locate(pos["lon"], pos["lat"])
    assert (cfg["device"], cfg["district"], cfg["grid"], cfg["position"]) == (
        "sn-0009", "410106", grid, pos)
    # provisioned but never flashed: only the firmware check fails
    assert failed(selftest(flash)) == {"firmware": "never flashed: no readable "
                                       "gridlink/image.json (run gridlink flash flash IMAGE "
                                       "TARGET)"}


def test_given_certificates_are_checked_and_installed(tmp_path, ca, tls_broker):
    key, crt = pki.sign_device("pv-0043", ca / "ca.pem", ca / "ca.key")
    (tmp_path / "d.key").write_bytes(key)
    (tmp_path / "d.pem").write_bytes(crt)
    data = tmp_path / "data"
    provision(spec(data, ca, tls_broker.tls_url, device="pv-0043", ca_key=None,
                   cert=str(tmp_path / "d.pem"), key=str(tmp_path / "d.key")))
    assert (data / "etc" / "gridlink" / "device.pem").read_bytes() == crt
    assert failed(selftest(data)) == {}
    # another device's certificate is refused, naming the field
    with pytest.raises(SpecError, match=r"^cert: certificate is for 'pv-0043', not 'pv-0044'"):
        provision(spec(tmp_path / "other", ca, tls_broker.tls_url, device="pv-0044",
                       ca_key=None, cert=str(tmp_path / "d.pem"), key=str(tmp_path / "d.key")))
    assert not (tmp_path / "other").exists()


BAD = [
    ({"district": "41010"}, r"^district: '41010' is not a 6-digit GB/T 2260 code"),
    ({"device": "PV_1"}, r"^device: 'PV_1' is not a device id"),
    ({"profile": "tram"}, r"^profile: tram: no such shipped profile"),
    ({"ca_cert": "/nonexistent/ca.pem"}, r"^ca_cert: /nonexistent/ca.pem: No such file or "
     r"directory \(a district CA: 'gridlink flash ca DIR' makes DIR/ca.pem and DIR/ca.key\)"),
    ({"ca_key": None}, r"^ca_key: signing needs both the CA certificate and the CA key"),
    ({"profile": "sensor-node", "object_id": "32050801002000001"},
     r"^object: 32050801002000001 belongs to district 320508, not 410106"),
    ({"profile": "sensor-node", "object_id": "4101060100200001"},
     r"^object: '4101060100200001' is not a 17-digit component id"),
    ({"target": "/dev/ttyACM0"}, r"^target: /dev/ttyACM0 is a serial port, but profile "),
    ({"broker": "http://x"}, r"^broker: 'http://x' is not mqtt://host\[:port\]"),
]


@pytest.mark.parametrize(("change", "message"), BAD, ids=[m[1:12] for _, m in BAD])
def test_bad_input_is_named_and_the_provisioned_device_survives(tmp_path, ca, broker,
                                                               change, message):
    data = tmp_path / "data"
    provision(spec(data, ca, broker.url))
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    change = dict(change)
    target = change.pop("target", data)
    url = change.pop("broker", broker.url)
    with pytest.raises(SpecError, match=message):
        provision(spec(target, ca, url, **change))
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before
    assert failed(selftest(data)) == {}


@pytest.mark.parametrize(("text", "message"), [
    ('{"kind": "x"}', r"^profile (profile|platform|board): required key is missing"),
    ("[1]", r"^profile: .*expected object"),
    ("{", r"^profile: .*bad.json: Expecting"),
])
def test_a_bad_profile_file_is_named_and_the_provisioned_device_survives(tmp_path, ca, broker,
                                                                         text, message):
    data = tmp_path / "data"
    provision(spec(data, ca, broker.url))
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(SpecError, match=message):
        provision(spec(data, ca, broker.url, profile=str(tmp_path / "bad.json")))
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before


def test_tls_broker_without_certificates_is_refused(tmp_path, tls_broker):
    with pytest.raises(SpecError, match=r"^ca_cert: an mqtts:// broker needs certificates"):
        provision(Spec("pv-0042", "410106", "patrol-vehicle", str(tmp_path / "d"),
                       tls_broker.tls_url))


def test_a_ca_key_that_is_not_the_cas_is_refused(tmp_path, ca, broker):
    other_key, _ = pki.make_ca("someone else")
    (tmp_path / "other.key").write_bytes(other_key)
    with pytest.raises(SpecError, match=r"^ca_key: CA key does not belong to CA certificate"):
        provision(spec(tmp_path / "d", ca, broker.url, ca_key=str(tmp_path / "other.key")))


def test_a_failure_while_staging_leaves_the_target_as_it_was(tmp_path, ca, broker, monkeypatch):
    data = tmp_path / "data"
    provision(spec(data, ca, broker.url))
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    real_fsync, calls = os.fsync, []

    def disk_full(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(targets.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        provision(spec(data, ca, broker.url, device="pv-0099", replace=True))
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before
    assert not list(data.glob(".gridlink-provision.*"))


def test_selftest_names_what_is_wrong(tmp_path, ca, tls_broker):
    data = tmp_path / "data"
    provision(spec(data, ca, tls_broker.tls_url))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=900)
    until = pki.info((data / "etc/gridlink/device.pem").read_bytes()).not_after
    assert failed(selftest(data, broker=False, now=later)) == {
        "cert": f"device certificate expired on {until:%Y-%m-%d %H:%M} UTC"}
    prof = json.loads((data / "etc/gridlink/profile.json").read_text())
    prof["device_id"] = "pv-0001"
    (data / "etc/gridlink/profile.json").write_text(json.dumps(prof))
    tls_broker.stop()
    bad = failed(selftest(data, timeout=2))
    assert bad["files"] == "etc/gridlink/profile.json changed"
    assert bad["profile"] == "names device 'pv-0001', not 'pv-0042'"
    assert "unreachable" in bad["broker"]


def test_selftest_of_an_unprovisioned_target_is_one_clear_error(tmp_path):
    with pytest.raises(FlashError, match="not provisioned"):
        selftest(tmp_path)


def test_the_cli_prints_one_line_errors(tmp_path, ca, broker, capsys):
    from gridlink.cli import main

    rc = main(["flash", "provision", "--target", str(tmp_path / "d"), "--device", "pv-0042",
               "--district", "4101", "--profile", "patrol-vehicle", "--broker", broker.url])
    assert rc == 2
    assert capsys.readouterr().err.strip() == (
        "gridlink flash: error: district: '4101' is not a 6-digit GB/T 2260 code")
    rc = main(["flash", "provision", "--target", str(tmp_path / "d"), "--device", "pv-0042",
               "--district", "410106", "--profile", "patrol-vehicle", "--broker", broker.url,
               "--ca-cert", str(ca / "ca.pem"), "--ca-key", str(ca / "ca.key")])
    assert rc == 0 and "pv-0042: ok" in capsys.readouterr().out
    assert main(["flash", "selftest", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 6 and all(line.startswith("ok") for line in out)


def test_a_profile_file_without_the_position_gets_it_from_the_options(tmp_path, ca, broker):
    prof = json.loads((ROOT / "device_profiles" / "fixed-terminal.json").read_text())
    del prof["position"], prof["grid"]
    (tmp_path / "ft.json").write_text(json.dumps(prof))
    provision(spec(tmp_path / "data", ca, broker.url, device="ft-0009",
                   profile=str(tmp_path / "ft.json"), lat=34.8095, lon=113.2965))
    done = json.loads((tmp_path / "data" / "etc/gridlink/profile.json").read_text())
    assert done["position"]["lat"] == 34.8095 and done["grid"] == "410106002005047"


def test_a_folder_made_by_provisioning_is_said_to_be_new(tmp_path, ca, broker, capsys):
    """A mistyped or unmounted SD card path would be a folder on the laptop: the ok line
    says the folder is new; an existing one (a mounted card) is not remarked on."""
    from gridlink.cli import main

    args = ["--device", "pv-0042", "--district", "410106", "--profile", "patrol-vehicle",
            "--broker", broker.url, "--ca-cert", str(ca / "ca.pem"), "--ca-key",
            str(ca / "ca.key")]
    assert main(["flash", "provision", "--target", str(tmp_path / "media" / "rootfs"),
                 *args]) == 0
    assert capsys.readouterr().out.startswith(f"pv-0042: ok → {tmp_path}/media/rootfs (a new "
                                              "folder: nothing was mounted there) (")
    assert main(["flash", "provision", "--target", str(tmp_path / "media" / "rootfs"),
                 *args]) == 0            # again, on the same (now existing) target
    assert "new folder" not in capsys.readouterr().out


def test_a_fixed_position_gets_its_grid_from_the_map_and_selftest_locates_it(tmp_path, ca,
                                                                            broker):
    from gridlink.firmware.core.gridmap import GridMap
    from gridlink.firmware.device.profile import default_map

    gm = GridMap((default_map("410106")).read_bytes())
    cells = [gm.code(i) for i in range(gm.n_cells)]
    # a point inside some cell other than the profile's: the centre of a cell's bbox
    lat, lon = next((la, lo) for la, lo in ((34.80 + i * 0.002, 113.28 + i * 0.002)
                                            for i in range(20))
                    if gm.locate(lo, la) not in (None, cells[0]))
    data = tmp_path / "terminal"
    provision(spec(data, ca, broker.url, device="ft-0001", profile="fixed-terminal",
                   lat=lat, lon=lon))
    prof = json.loads((data / "etc/gridlink/profile.json").read_text())
    assert prof["grid"] == gm.locate(lon, lat) and prof["position"]["lat"] == lat
    assert (data / "etc/gridlink/gridmap.glgm").read_bytes() == \
        default_map("410106").read_bytes()
    grid = {c.name: c for c in selftest(data, broker=False)}["grid"]
    assert grid.ok and grid.detail.endswith(f"→ {prof['grid']}")
    # a position the map does not cover is named, and a grid that disagrees with it too
    with pytest.raises(SpecError, match=r"^lat: position 10.0, 10.0 is outside every cell"):
        provision(spec(tmp_path / "x", ca, broker.url, profile="fixed-terminal", lat=10.0,
                       lon=10.0))
    with pytest.raises(SpecError, match=rf"^grid: 410106001001099 given, but the map puts "
                                        rf"the position in {prof['grid']}"):
        provision(spec(tmp_path / "y", ca, broker.url, profile="fixed-terminal", lat=lat,
                       lon=lon, grid="410106001001099"))


def test_the_centres_configuration_keys_are_provisioned_and_the_unit_passes_them_on(
        tmp_path, ca, broker, monkeypatch):
    """A Pi gets ``config-keys`` and GRIDLINK_CONFIG_KEYS in device.env (the device's
    --config-keys default); a board gets /gridlink/config-keys, which the node reads."""
    from gridlink.cli import build_parser
    from gridlink.fleet.config import make_key

    make_key(tmp_path / "config.pem")
    keys = tmp_path / "config.pem.pub"
    root = tmp_path / "pi"
    provision(spec(root, ca, broker.url, config_keys=str(keys)))
    etc = root / "etc" / "gridlink"
    assert (etc / "config-keys").read_text() == keys.read_text()
    env = dict(line.split("=", 1) for line in (etc / "device.env").read_text().splitlines()
               if line and not line.startswith("#"))
    assert env["GRIDLINK_CONFIG_KEYS"] == "/etc/gridlink/config-keys"
    monkeypatch.setenv("GRIDLINK_CONFIG_KEYS", env["GRIDLINK_CONFIG_KEYS"])  # as systemd does
    args = build_parser("device").parse_args(
        ["device", "run", "--profile", "p", "--data-dir", "d", "--broker", "mqtt://h"])
    assert args.config_keys == "/etc/gridlink/config-keys"
    assert failed(selftest(root)) == {}
    flash = tmp_path / "flash"
    provision(spec(flash, ca, broker.url, device="sn-0009", profile="sensor-node",
                   object_id=OBJECT, config_keys=str(keys)))
    assert (flash / "gridlink" / "config-keys").read_text() == keys.read_text()


def test_a_configuration_key_file_that_is_not_keys_is_named_and_nothing_is_written(
        tmp_path, ca, broker):
    (tmp_path / "keys").write_text("not a key\n")
    with pytest.raises(SpecError, match=r"config-keys: .* is not a 64-hex-digit Ed25519"):
        provision(spec(tmp_path / "pi", ca, broker.url, config_keys=str(tmp_path / "keys")))
    assert not (tmp_path / "pi").exists()


def test_a_node_whose_cover_class_is_urgent_is_provisioned_urgent():
    """The profile's ``urgent_classes`` listing the tilt's class sets ``tilt.urgent`` in
    the node's config (its reports are 突发事件); otherwise the key is absent."""
    from gridlink.firmware.device.profile import load_profile
    from gridlink.flash.provision import node_config

    prof = load_profile("sensor-node")
    broker = {"host": "127.0.0.1", "port": 1883}
    assert "urgent" not in node_config("sn-0001", "410106", prof, broker, "b", {})["tilt"]
    prof["urgent_classes"] = [prof["tilt"]["code"]]
    cfg = node_config("sn-0001", "410106", prof, broker, "b", {})
    assert cfg["tilt"]["urgent"] is True
    assert "urgent" not in prof["tilt"]          # the profile itself is left as it was
