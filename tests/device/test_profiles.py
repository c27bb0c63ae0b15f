"""Device profiles: every shipped one is valid; a bad one names file, key, problem, fix."""

import copy
import json
import subprocess
import sys

import pytest
from gridlink.firmware.device.profile import (
    load_profile,
    load_schema,
    pins_of,
    shipped_profiles,
    validate,
)
from gridlink.firmware.errors import ProfileError
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

SHIPPED = shipped_profiles()


def shipped(name):
    return json.loads(next(p for p in SHIPPED if p.stem == name).read_text())


def test_the_three_kinds_are_shipped():
    assert {p.stem for p in SHIPPED} >= {"patrol-vehicle", "fixed-terminal", "sensor-node"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_profile_is_valid(path):
    prof = load_profile(path)
    assert prof["kind"] == path.stem or prof["profile"] == path.stem
    Draft202012Validator.check_schema(load_schema())
    errors = list(Draft202012Validator(load_schema()).iter_errors(json.loads(path.read_text())))
    assert errors == []                    # the schema's own meaning agrees (jsonschema)
    pins = [pin for _key, pin in pins_of(prof)]
    assert len(pins) == len(set(pins))


def problems(obj):
    return validate(obj, "device_profiles/bad.json")


def one(obj, key):
    found = [p for p in problems(obj) if p.key == key]
    assert found, problems(obj)
    text = str(found[0])
    assert text.startswith(f"device_profiles/bad.json: {key}: ")
    assert "\n  fix: " in text
    return found[0]


def test_a_pin_used_twice_names_both_keys():
    p = shipped("patrol-vehicle")
    p["buttons"][2]["pin"] = p["buttons"][0]["pin"]
    prob = one(p, "buttons[2].pin")
    assert "already used by buttons[0].pin" in prob.message
    assert "own GPIO" in prob.fix


def test_operator_button_on_a_class_button_pin_is_a_clash():
    p = shipped("patrol-vehicle")
    p["operator_buttons"]["no"] = p["buttons"][1]["pin"]
    assert "already used" in one(p, "operator_buttons.no").message


def test_the_gnss_uart_pins_are_taken():
    p = shipped("patrol-vehicle")
    p["buttons"][0]["pin"] = 15
    assert "UART0 RXD" in one(p, "buttons[0].pin").message


def test_class_code_not_in_the_code_book():
    p = shipped("patrol-vehicle")
    p["buttons"][1]["code"] = "09007"          # a gap in 09 街面秩序类
    prob = one(p, "buttons[1].code")
    assert "09007" in prob.message and "gap" in prob.message


def test_component_code_checked_in_the_component_table():
    p = shipped("sensor-node")
    p["tilt"]["code"] = "01016"
    p["tilt"]["object"] = "41010601016000001"
    assert "01016" in one(p, "tilt.code").message


def test_tilt_object_must_carry_its_class_and_district():
    p = shipped("sensor-node")
    p["tilt"]["object"] = "41010601003000001"
    assert "does not carry class 01002" in one(p, "tilt.object").message
    p["tilt"]["object"] = "41010201002000001"
    assert "not in district 410106" in one(p, "tilt.object").message


def test_unknown_key_suggests_the_near_one():
    p = shipped("patrol-vehicle")
    p["trak"] = p.pop("track")
    assert one(p, "trak").fix == 'did you mean "track"?'
    assert one(p, "track").message == "required key is missing"


def test_wrong_type_and_range_and_enum():
    p = shipped("patrol-vehicle")
    p["gnss"]["baud"] = 9601
    p["press"]["hold_s"] = 0.1
    p["buttons"][0]["pin"] = "5"
    assert "9601 is not one of" in one(p, "gnss.baud").message
    assert "below the minimum" in one(p, "press.hold_s").message
    assert "expected integer, got string" in one(p, "buttons[0].pin").message


def test_kind_requires_its_sections_and_platform():
    p = shipped("fixed-terminal")
    del p["kiosk"]
    p["platform"] = "micropython"
    one(p, "kiosk")
    assert 'must be "raspberry-pi" here' in one(p, "platform").message


def test_pin_outside_the_board():
    p = shipped("sensor-node")
    p["tilt"]["pin"] = 24                       # drives the Pico W radio
    prob = one(p, "tilt.pin")
    assert "not usable on pico-w" in prob.message and "26-28" in prob.fix


def test_provisioned_grid_must_match_the_map():
    p = shipped("fixed-terminal")
    good = p["grid"]
    p["grid"] = "410106001001001"
    prob = one(p, "grid")
    assert good in prob.fix


def test_every_problem_is_reported_at_once():
    p = shipped("patrol-vehicle")
    p["buttons"][1]["pin"] = p["buttons"][0]["pin"]
    p["buttons"][2]["code"] = "99999"
    keys = {x.key for x in problems(p)}
    assert {"buttons[1].pin", "buttons[2].code"} <= keys


def test_jsonschema_agrees_on_schema_level_mistakes():
    v = Draft202012Validator(load_schema())
    for mutate in (lambda p: p["gnss"].update(baud=9601), lambda p: p.pop("track"),
                   lambda p: p.update(trak=1), lambda p: p["buttons"][0].update(pin="5")):
        p = shipped("patrol-vehicle")
        mutate(p)
        assert list(v.iter_errors(p)), "jsonschema accepts what the device rejects"
        assert problems(p)


def test_invalid_json_names_line_and_column(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"profile": "x",\n "kind": }\n')
    with pytest.raises(ProfileError) as err:
        load_profile(bad)
    assert "line 2 column" in str(err.value) and "fix:" in str(err.value)


def test_check_cli_reports_the_bad_file_and_keeps_the_good(tmp_path):
    p = shipped("patrol-vehicle")
    p["buttons"][3]["pin"] = p["buttons"][0]["pin"]
    bad = tmp_path / "bad-vehicle.json"
    bad.write_text(json.dumps(p))
    good = tmp_path / "good-vehicle.json"
    good.write_text(json.dumps(shipped("patrol-vehicle")))
    run = subprocess.run([sys.executable, "-m", "gridlink.cli", "device", "check", str(bad),
                          str(good)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert f"{bad}: buttons[3].pin: GPIO 5 is already used by buttons[0].pin" in run.stderr
    assert "fix: give each input its own GPIO pin" in run.stderr
    assert f"{good}: ok" in run.stdout
    assert json.loads(good.read_text()) == shipped("patrol-vehicle")


def test_check_cli_all_shipped_ok():
    run = subprocess.run([sys.executable, "-m", "gridlink.cli", "device", "check"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count(": ok (") == len(SHIPPED)


def test_run_refuses_a_micropython_profile(tmp_path):
    run = subprocess.run([sys.executable, "-m", "gridlink.firmware.device", "run", "--profile",
                          "sensor-node", "--data-dir", str(tmp_path), "--broker",
                          "mqtt://127.0.0.1:1"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "gridlink flash" in run.stderr and "Traceback" not in run.stderr


def test_profiles_are_not_mutated_by_validation():
    p = shipped("patrol-vehicle")
    before = copy.deepcopy(p)
    validate(p)
    assert p == before


def load_written(tmp_path, prof):
    path = tmp_path / f"{prof['profile']}.json"
    path.write_text(json.dumps(prof))
    return load_profile(path)


def test_a_loaded_profile_is_completed_from_the_schema_defaults(tmp_path):
    p = shipped("patrol-vehicle")
    p["press"] = {}
    del p["gnss"]["stale_after_s"], p["camera"]["max_bytes"], p["track"]["batch_s"]
    del p["buttons"][0]["text"], p["sim"], p["status_interval_s"]
    prof = load_written(tmp_path, p)
    assert prof["press"] == {"bounce_time_s": 0.05, "hold_s": 2.0, "cancel_grace_s": 10,
                             "long_press": "cancel"}
    assert prof["urgent_classes"] == []
    assert prof["gnss"]["stale_after_s"] == 10 and prof["camera"]["max_bytes"] == 153600
    assert prof["track"]["batch_s"] == 60 and prof["buttons"][0]["text"] == ""
    assert prof["sim"] == {"enabled": False, "capture": "nmea-rtk.log", "speed": 1.0,
                           "loop": True, "clips": True}
    assert prof["status_interval_s"] == 60
    assert "kiosk" not in prof and "pir" not in prof     # a part left out stays out


def test_given_values_win_and_defaults_follow_the_platform(tmp_path):
    node = shipped("sensor-node")
    assert load_written(tmp_path, node)["tilt"]["debounce_ms"] == 200
    del node["status_interval_s"], node["tilt"]["pull"]
    prof = load_written(tmp_path, node)
    assert prof["status_interval_s"] == 300 and prof["tilt"]["pull"] == "up"
    assert "buttons" not in prof and "sim" not in prof
    term = shipped("fixed-terminal")
    del term["status_interval_s"], term["press"], term["kiosk"]["bind"]
    prof = load_written(tmp_path, term)
    assert prof["status_interval_s"] == 60 and "buttons" not in prof   # none: none made up
    assert prof["press"]["hold_s"] == 2.0 and prof["kiosk"]["bind"] == "127.0.0.1"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=10)


def paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from paths(v, (*prefix, i))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([p.stem for p in SHIPPED]), st.data(), json_values)
def test_any_value_anywhere_gives_problems_never_a_crash(name, data, value):
    prof = shipped(name)
    where = data.draw(st.sampled_from(list(paths(prof))[1:]))
    node = prof
    for step in where[:-1]:
        node = node[step]
    node[where[-1]] = value
    found = validate(prof, "x.json")
    assert isinstance(found, list)
    for p in found:
        assert str(p).startswith("x.json: ") and p.message


# ---- clips ---------------------------------------------------------------------------

VEHICLES = [p for p in SHIPPED if json.loads(p.read_text())["kind"] == "patrol-vehicle"]


@pytest.mark.parametrize("path", VEHICLES, ids=lambda p: p.name)
def test_shipped_vehicle_profiles_record_clips_that_fit_their_ring(path):
    clips = load_profile(path)["clips"]
    assert (clips["pre_s"], clips["post_s"]) == (10, 20)           # the default
    assert clips["bit_rate"] <= 1_000_000                            # the 720p budget
    window = clips["pre_s"] + clips["post_s"] + 2 * clips["gop_s"]
    assert clips["ring_bytes"] >= window * clips["bit_rate"] / 8
    assert load_profile(path)["sim"]["clips"] is False               # light in simulation


def test_a_ring_too_small_for_the_clip_is_refused_with_the_bytes_it_needs():
    p = shipped("patrol-vehicle")
    p["clips"]["ring_bytes"] = 2_000_000
    prob = one(p, "clips.ring_bytes")
    assert "hold less than the 32 s a clip needs at 900000 bit/s (3600000 bytes)" \
        in prob.message
    assert "at least 3600000" in prob.fix
    p["clips"]["bit_rate"] = 400_000                                 # 32 s × 50 kB/s fits
    assert problems(p) == []


def test_clips_without_a_camera_or_with_an_unknown_key_are_refused():
    p = shipped("patrol-vehicle")
    p["camera"]["backend"] = "none"
    assert "need a camera" in one(p, "clips").message
    p = shipped("patrol-vehicle")
    p["clips"]["pre"] = 5
    assert one(p, "clips.pre").fix == 'did you mean "pre_s"?'
    p = shipped("patrol-vehicle")
    p["clips"]["pre_s"] = 61
    one(p, "clips.pre_s")
