"""``gridlink fleet config``: make the key, then set, show and diff desired state through
a running gateway API (real HTTP, a real SQLite store); bad input is one clear line."""

import json

import pytest
from gridlink.cli import main
from gridlink.gateway.api import create_app
from gridlink.gateway.fleet_config import load_key
from gridlink.gateway.httpserver import BackgroundServer
from gridlink.gateway.store import open_store

from tests.gateway.test_api_tasks import add_device
from tests.support.intake_api import Clock, Tokens


@pytest.fixture
def centre(tmp_path):
    """(api url, technician token, store) of a running API holding a new config key."""
    assert main(["fleet", "config", "key", str(tmp_path / "config.pem")]) == 0
    store = open_store(f"sqlite:///{tmp_path}/intake.sqlite")
    store.migrate()
    app = create_app(store, clock=Clock(), photos_dir=tmp_path / "photos",
                     config_key=load_key(tmp_path / "config.pem"))
    tokens = Tokens(store, roles={"tech": ("technician",)})
    with BackgroundServer(app) as server:
        yield server.url, tokens("tech"), store
    store.close()


def test_the_key_is_made_once_with_its_public_half(tmp_path, capsys):
    assert main(["fleet", "config", "key", str(tmp_path / "k.pem")]) == 0
    public = (tmp_path / "k.pem.pub").read_text().strip()
    assert len(bytes.fromhex(public)) == 32 and public in capsys.readouterr().out
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    assert main(["fleet", "config", "key", str(tmp_path / "k.pem")]) == 2
    assert "never overwritten" in capsys.readouterr().err
    assert (tmp_path / "k.pem.pub").read_text().strip() == public


def test_set_show_and_diff(centre, capsys):
    url, token, store = centre
    add_device(store, "pv-0001")
    add_device(store, "pv-0002")
    api = ["--api", url, "--token", token]
    assert main(["fleet", "config", "set", *api, "--devices", "pv-0001,pv-0002",
                 "--button", "garbage=event:07001:非法小广告", "--status-interval", "30"]) == 0
    assert ("version 1 (list pv-0001,pv-0002): signed for 2 device(s): pv-0001, pv-0002; "
            "0 sent") in capsys.readouterr().out          # this API has no broker link
    assert main(["fleet", "config", "show", *api, "pv-0002"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["desired"] == 1 and shown["settings"] == {
        "buttons": {"garbage": {"kind": "event", "code": "07001", "text": "非法小广告"}},
        "status_interval_s": 30}
    assert main(["fleet", "config", "diff", *api]) == 3          # nobody reported it yet
    out = capsys.readouterr().out
    assert "pv-0001        desired 1     reported -     DRIFT" in out
    assert "buttons.garbage.code: desired '07001', reported None" in out


def test_reset_sets_a_setting_back_to_the_profile(centre, capsys):
    url, token, store = centre
    add_device(store, "pv-0001")
    api = ["--api", url, "--token", token]
    assert main(["fleet", "config", "set", *api, "--device", "pv-0001",
                 "--button", "garbage=event:07001", "--status-interval", "30"]) == 0
    assert main(["fleet", "config", "set", *api, "--device", "pv-0001",
                 "--reset", "buttons.garbage", "--reset", "status_interval_s",
                 "--track-interval", "5"]) == 0
    assert "version 2 (device pv-0001)" in capsys.readouterr().out
    assert main(["fleet", "config", "show", *api, "pv-0001"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["desired"], shown["settings"]) == (2, {"track_interval_s": 5})
    assert main(["fleet", "config", "set", *api, "--device", "pv-0001",
                 "--reset", "colour"]) == 2
    assert "reset: 'colour' is not a setting a centre changes" in capsys.readouterr().err


def test_a_map_is_named_by_its_file_or_its_sha256(centre, capsys):
    import hashlib

    from gridlink.firmware.maps import default_map

    url, token, store = centre
    add_device(store, "sn-0001", profile="sensor-node")
    api = ["--api", url, "--token", token]
    path = default_map("410106")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert main(["fleet", "config", "set", *api, "--device", "sn-0001", "--map", str(path)]) == 0
    capsys.readouterr()
    assert main(["fleet", "config", "show", *api, "sn-0001"]) == 0
    assert json.loads(capsys.readouterr().out)["map"] == digest
    assert main(["fleet", "config", "set", *api, "--device", "sn-0001", "--map", "abc"]) == 2
    assert "map" in capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [
    (["--device", "pv-0001", "--status-interval", "2"],
     "422 settings.status_interval_s: Input should be greater than or equal to 5"),
    (["--device", "pv-0001", "--button", "garbage"], "give NAME=KIND:CODE[:TEXT]"),
    (["--device", "PV 1", "--status-interval", "30"], "400"),
])
def test_bad_input_is_one_clear_line_and_nothing_changes(centre, capsys, argv, words):
    url, token, _store = centre
    assert main(["fleet", "config", "set", "--api", url, "--token", token, *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert main(["fleet", "config", "show", "--api", url, "--token", token]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_without_a_token_the_fix_is_named(centre, capsys, monkeypatch):
    monkeypatch.delenv("GRIDLINK_TOKEN", raising=False)
    url, _, _ = centre
    assert main(["fleet", "config", "diff", "--api", url]) == 2
    assert "GRIDLINK_TOKEN" in capsys.readouterr().err
