"""Desired-state documents: signed by the centre (``cryptography``), checked by the core
under CPython and MicroPython; each refusal names its reason and the field at fault."""

import json
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from gridlink.firmware.core import canonjson, desired
from gridlink.firmware.core.desired import ConfigRefused
from gridlink.firmware.device.profile import load_profile, load_schema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import mpy_wasm

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
SETTINGS = {"buttons": {"garbage": {"kind": "event", "code": "07001"}},
            "track_interval_s": 10, "status_interval_s": 30, "photo_max_bytes": 100000,
            "max_fix_age_s": 20}


def public(key):
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def signed(settings=None, device="pv-0001", version=2, key=KEY):
    """A signed message; built by hand, since ``document`` refuses to make a bad one."""
    doc = canonjson.dumps({"v": 1, "device": device, "district": "410106", "version": version,
                           "issued": 1765000000, "settings": SETTINGS if settings is None
                           else settings, "map": None, "codebook": None})
    return desired.envelope(doc, key.sign(desired.digest(doc)))


def test_the_centre_cannot_make_a_document_with_a_setting_it_may_not_change():
    with pytest.raises(ConfigRefused, match=r"settings\.board: a centre may not set this"):
        desired.document("pv-0001", "410106", 1, {"board": "pi5"}, 1765000000)


def refusal(message, applied=None, device="pv-0001"):
    with pytest.raises(ConfigRefused) as info:
        desired.check(message, [public(KEY)], device, applied=applied, schema=load_schema(),
                      pattern=re.search)
    return info.value


def test_a_signed_document_checks_and_applies_onto_a_profile():
    doc = desired.check(signed(), [public(OTHER), public(KEY)], "pv-0001", applied=1,
                        schema=load_schema())
    assert doc["version"] == 2 and doc["settings"] == SETTINGS
    base = load_profile("patrol-vehicle")
    new = desired.apply(base, doc["settings"])
    assert new["buttons"][0]["code"] == "07001" and new["buttons"][0]["pin"] == 5
    assert (new["track"]["interval_s"], new["status_interval_s"], new["camera"]["max_bytes"],
            new["gnss"]["stale_after_s"]) == (10, 30, 100000, 20)
    assert base["buttons"][0]["code"] == "06010"          # the base is not touched


@pytest.mark.parametrize("settings, field, words", [
    ({"status_interval_s": 2}, "settings.status_interval_s", "below the minimum 5"),
    ({"photo_max_bytes": 10 ** 7}, "settings.photo_max_bytes", "above the maximum"),
    ({"track_interval_s": "5"}, "settings.track_interval_s", "must be number"),
    ({"buttons": {"garbage": {"kind": "incident", "code": "06010"}}},
     "settings.buttons.garbage.kind", "is not one of"),
    ({"buttons": {"garbage": {"kind": "event", "code": "6a"}}},
     "settings.buttons.garbage.code", "does not have the form"),
    ({"buttons": {"garbage": {"kind": "event", "code": "06010", "pin": 7}}},
     "settings.buttons.garbage.pin", "only kind, code and text"),
    ({"board": "pi5"}, "settings.board", "a centre may not set this"),
])
def test_a_value_outside_the_schema_is_refused_naming_the_field(settings, field, words):
    exc = refusal(signed(settings))
    assert exc.reason == "schema" and exc.field == field and words in str(exc)


def test_a_document_for_another_device_is_refused():
    exc = refusal(signed(device="pv-0002"))
    assert (exc.reason, exc.field) == ("device", "device")
    assert "for pv-0002, this is pv-0001" in str(exc)


def test_a_signature_by_the_wrong_key_is_refused():
    assert refusal(signed(key=OTHER)).reason == "signature"


def test_an_older_or_equal_version_is_refused():
    assert refusal(signed(version=3), applied=3).reason == "older"
    exc = refusal(signed(version=2), applied=3)
    assert exc.field == "version" and "2 is not newer than the applied 3" in str(exc)


def test_a_document_that_does_not_hash_to_its_digest_is_refused():
    env = json.loads(signed())
    env["doc"] = env["doc"].replace('"status_interval_s":30', '"status_interval_s":31')
    exc = refusal(json.dumps(env).encode())
    assert exc.reason == "hash"
    # the tampered text with a matching digest: the signature no longer holds
    env["sha256"] = desired.digest(env["doc"].encode()).hex()
    assert refusal(json.dumps(env).encode()).reason == "signature"


def test_a_button_the_device_lacks_is_named():
    with pytest.raises(ConfigRefused, match=r"settings\.buttons\.horn: this device has no"):
        desired.apply(load_profile("patrol-vehicle"),
                      {"buttons": {"horn": {"kind": "event", "code": "06010"}}})
    with pytest.raises(ConfigRefused, match=r"settings\.max_fix_age_s: this device has no gnss"):
        desired.apply(load_profile("fixed-terminal"), {"max_fix_age_s": 5})


def test_a_new_class_without_a_text_does_not_keep_the_old_class_s_text():
    # the garbage button (06010 暴露垃圾) set to 07001: its reports must not say 暴露垃圾
    base = load_profile("patrol-vehicle")
    moved = desired.apply(base, {"buttons": {"garbage": {"kind": "event", "code": "07001"}}})
    assert moved["buttons"][0]["code"] == "07001" and moved["buttons"][0]["text"] == ""
    named = desired.apply(base, {"buttons": {"garbage": {"kind": "event", "code": "07001",
                                                         "text": "非法小广告"}}})
    assert named["buttons"][0]["text"] == "非法小广告"
    same = desired.apply(base, {"buttons": {"garbage": {"kind": "event", "code": "06010"}}})
    assert same["buttons"][0]["text"] == "暴露垃圾"       # its own class: its text stays


@settings(deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_are_a_document_or_a_refusal(data):
    try:
        desired.check(data, [public(KEY)], "pv-0001", schema=load_schema())
    except ConfigRefused as exc:
        assert exc.reason in ("format", "hash", "signature")


@pytest.mark.parametrize("codebook, sha", [
    (None, "ab" * 32),                                # a hash without a book
    ("CJ/T 214-2007@4ea8fd4c181b", "AB" * 32),        # not lowercase hex
    ("CJ/T 214-2007@4ea8fd4c181b", "ab" * 31),        # too short
    ("CJ/T 214-2007@4ea8fd4c181b", 7),
])
def test_a_code_book_hash_that_is_not_one_is_refused(codebook, sha):
    doc = canonjson.dumps({"v": 1, "device": "pv-0001", "district": "410106", "version": 2,
                           "issued": 1765000000, "settings": {}, "map": None,
                           "codebook": codebook, "codebook_sha256": sha})
    e = refusal(desired.envelope(doc, KEY.sign(desired.digest(doc))))
    assert (e.reason, e.field) == ("format", "codebook_sha256")
    with pytest.raises(ConfigRefused):
        desired.document("pv-0001", "410106", 2, {}, 1765000000, codebook=codebook,
                         codebook_sha256=sha)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["version", "device", "settings", "map", "issued",
                                        "codebook", "codebook_sha256", "extra"]),
                       st.one_of(st.none(), st.integers(), st.text(max_size=8),
                                 st.dictionaries(st.text(max_size=4), st.integers(),
                                                 max_size=2))))
def test_any_signed_object_is_a_document_or_a_format_or_schema_refusal(fields):
    doc = {"v": 1, "device": "pv-0001", "district": "410106", "version": 1, "issued": 1,
           "settings": {}, "map": None, "codebook": None, **fields}
    data = json.dumps(doc).encode()
    message = desired.envelope(data, KEY.sign(desired.digest(data)))
    try:
        got = desired.check(message, [public(KEY)], "pv-0001", schema=load_schema())
    except ConfigRefused as exc:
        assert exc.reason in ("format", "schema", "device")
    else:
        assert got["version"] >= 1


MPY = """
import json
from gridcore import desired
schema = json.loads(open("/schema.json").read())
key = open("/centre.pub", "rb").read()
out = {}
def verdict(label, name, applied=None):
    try:
        doc = desired.check(open("/" + name, "rb").read(), [key], "pv-0001", applied, schema)
        out[label] = doc["version"]
    except desired.ConfigRefused as exc:
        out[label] = [exc.reason, exc.field]
for name in ("good", "wrong-key", "other-device", "too-fast"):
    verdict(name, name)
verdict("applied", "good", 2)
print(json.dumps(out))
"""


@pytest.mark.skipif(not mpy_wasm.available(), reason="MicroPython (WebAssembly) not installed")
def test_micropython_checks_the_same_documents():
    files = {"/schema.json": json.dumps(load_schema()), "/centre.pub": public(KEY),
             "/good": signed(), "/wrong-key": signed(key=OTHER),
             "/other-device": signed(device="pv-0002"),
             "/too-fast": signed({"status_interval_s": 1})}
    out = json.loads(mpy_wasm.run_micropython(MPY, files=files).strip().splitlines()[-1])
    assert out == {"good": 2, "wrong-key": ["signature", None],
                   "other-device": ["device", "device"], "applied": ["older", "version"],
                   "too-fast": ["schema", "settings.status_interval_s"]}


def test_every_setting_a_centre_may_change_is_a_node_of_the_profile_schema():
    schema = load_schema()
    profile = load_profile("patrol-vehicle")
    for name, (path, node_path) in desired.SETTINGS.items():
        node = desired._node(schema, node_path, name)
        assert {"type", "minimum", "maximum"} <= set(node), name
        value = profile
        for part in path:                       # and lands where the profile holds it
            value = value[part]
        desired.check_value(value, node, name)
    for field in desired.BUTTON_FIELDS:
        assert field in desired._node(schema, desired.BUTTON_SCHEMA, "buttons")
