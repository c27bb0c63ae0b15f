"""``gridlink fleet rollout …`` and ``gridlink fleet devices`` against a real gateway app
(SQLite), signed in with a 技术员's API token: start, show, pause, resume, abort, each
device's versions; every mistake is one clear line and exit 2, and changes nothing."""

import json

import pytest
from gridlink.cli import main
from gridlink.gateway.api import create_app
from gridlink.gateway.httpserver import BackgroundServer
from gridlink.gateway.store import open_store

from tests.support.intake_api import Tokens
from tests.support.rollouts import Wire, set_device, status


@pytest.fixture
def centre(tmp_path, monkeypatch):
    store = open_store(f"sqlite:///{tmp_path}/intake.sqlite")
    wire = Wire()
    app = create_app(store, publisher=wire)
    for i in range(4):
        set_device(store, f"pv-{i:04d}", status())
    set_device(store, "pv-0003", status(version="1.1", pending="1.1"))
    tokens = Tokens(store, roles={"tech": ("technician",), "screen": ("viewer",)})
    with BackgroundServer(app) as srv:
        monkeypatch.setenv("GRIDLINK_API", srv.url)
        monkeypatch.setenv("GRIDLINK_TOKEN", tokens("tech"))
        yield store, wire, tokens, app
    store.close()


def fleet(capsys, *args):
    code = main(["fleet", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_start_show_pause_resume_abort(centre, capsys):
    _store, wire, _tokens, app = centre
    code, out, err = fleet(capsys, "rollout", "start", "--kind", "pi", "--version", "1.1",
                           "--district", "410106", "--stages", "25,100",
                           "--failure-threshold", "0")
    assert code == 0, err
    rid = out.split()[0]
    assert out.startswith(f"{rid}  pi 1.1  district 410106  running  stage 1/2 (25%→100%)")
    assert len(wire.offered()) == 1
    code, out, _ = fleet(capsys, "rollout", "show")
    assert code == 0 and out.startswith(rid) and len(out.splitlines()) == 1
    code, out, _ = fleet(capsys, "rollout", "show", rid)
    lines = out.splitlines()
    assert lines[1] == "  stage 1 (25%): 1 devices: offered 1"
    assert lines[2] == "  stage 2 (100%): 3 devices: waiting 3"
    assert len(lines) == 7
    for step, state in (("pause", "paused"), ("resume", "running"), ("abort", "aborted")):
        code, out, err = fleet(capsys, "rollout", step, rid)
        assert code == 0, err
        assert f"  {state}  " in out
    assert "aborted by tech" in out
    code, out, _ = fleet(capsys, "rollout", "show", rid, "--json")
    assert json.loads(out)["state"] == "aborted"
    actions = [e["action"] for e in app.state.audit.entries() if e["actor"] == "tech"]
    assert actions == ["rollout.create", "rollout.pause", "rollout.resume", "rollout.abort"]


def test_a_stage_timeout_goes_with_the_rollout(centre, capsys):
    code, out, err = fleet(capsys, "rollout", "start", "--kind", "pi", "--version", "1.1",
                           "--district", "410106", "--stage-timeout", "3600")
    assert code == 0, err
    code, out, _ = fleet(capsys, "rollout", "show", out.split()[0], "--json")
    assert json.loads(out)["stage_timeout_s"] == 3600


def test_devices_lists_each_devices_versions(centre, capsys):
    code, out, _ = fleet(capsys, "devices")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["device", "district", "state", "runs", "slot", "a", "b",
                                "trial", "last", "failure"]
    assert lines[1].split() == ["pv-0000", "410106", "online", "1.0", "a", "1.0", "-", "-",
                                "-"]
    assert lines[4].split() == ["pv-0003", "410106", "online", "1.1", "b", "1.0", "1.1",
                                "1.1", "-"]


@pytest.mark.parametrize("args,message", [
    (("rollout", "start", "--kind", "pi", "--version", "1.1"), "give one target"),
    (("rollout", "start", "--kind", "pi", "--version", "1.1", "--district", "410106",
      "--profile", "patrol-vehicle"), "give one target"),
    (("rollout", "start", "--kind", "pi", "--version", "1.1", "--district", "410106",
      "--stages", "5,x"), "--stages '5,x': percentages separated by commas"),
    (("rollout", "start", "--kind", "pi", "--version", "1.1", "--district", "410106",
      "--stages", "50,5,100"), "400 stages: rising percentages ending at 100"),
    (("rollout", "start", "--kind", "pi", "--version", "1.x", "--district", "410106"),
     "422 version: String should match pattern"),
    (("rollout", "start", "--kind", "pi", "--version", "1.1", "--devices", "pv-0009"),
     "400 target: no such device pv-0009"),
    (("rollout", "start", "--kind", "pi", "--version", "1.1", "--district", "410106",
      "--stage-timeout", "0"), "422 stage_timeout_s: Input should be greater than or equal"),
    (("rollout", "pause", "R-nope"), "404 no rollout 'R-nope'"),
    (("rollout", "show", "R-../x"), "404"),
])
def test_mistakes_are_one_clear_line_and_change_nothing(centre, capsys, args, message):
    store, wire, _tokens, _app = centre
    code, out, err = fleet(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith("gridlink fleet: error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert store.fetchall("SELECT id FROM ota_rollouts") == [] and wire.sent == []


def test_the_token_must_be_a_technicians_and_the_gateway_reachable(centre, capsys,
                                                                   monkeypatch):
    _store, _wire, tokens, _app = centre
    start = ("rollout", "start", "--kind", "pi", "--version", "1.1", "--district", "410106")
    code, _, err = fleet(capsys, *start, "--token", tokens("screen"))
    assert code == 2 and "403 screen (只读/大屏) may not do this: it needs the 'fleet'" in err
    monkeypatch.delenv("GRIDLINK_TOKEN")
    code, _, err = fleet(capsys, *start)
    assert code == 2 and "give an API token of a fleet technician: --token or GRIDLINK_TOKEN" in err
    code, _, err = fleet(capsys, *start, "--token", "x", "--api", "http://127.0.0.1:9")
    assert code == 2 and "http://127.0.0.1:9: [Errno 111] Connection refused" in err
