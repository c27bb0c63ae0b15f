"""The sensor node's signed manifest: made and signed by ``gridlink fleet`` for a real
board image, checked by the core under CPython and under MicroPython — and each refusal
(tampered file, wrong key, expired, other kind, older version, bad format) named."""

import contextlib
import datetime
import json
import tarfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gridlink.cli import main
from gridlink.firmware.core.signed_manifest import (
    ManifestError,
    check,
    check_file,
    encode,
    parse,
)
from gridlink.fleet import mcu_manifest
from gridlink.fleet.keys import load_private
from gridlink.fleet.release import build_mcu
from hypothesis import given
from hypothesis import strategies as st

from tests.support.mpy_wasm import run_micropython

NOW = int(datetime.datetime(2026, 12, 6, tzinfo=datetime.UTC).timestamp())


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(image files {path: bytes}, manifest bytes, signature, public key) of a real
    ``release build --kind mcu`` tar."""
    key = Ed25519PrivateKey.generate()
    tar_path = tmp_path_factory.mktemp("mcu") / "release.tar"
    build_mcu(tar_path, "1.4", signing_key=key)
    with tarfile.open(tar_path) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    image = {k.removeprefix("image/"): v for k, v in files.items() if k.startswith("image/")}
    return (image, files["manifest/manifest.txt"], files["manifest/manifest.sig"],
            mcu_manifest.public_bytes(key))


def test_a_real_image_manifest_checks_and_lists_every_file(release, tmp_path):
    image, manifest, sig, public = release
    parsed = check(manifest, sig, [public], "mcu", NOW, installed="1.3")
    assert parsed["version"] == "1.4" and parsed["kind"] == "mcu"
    assert sorted(p for p, _, _ in parsed["files"]) == sorted(image)
    assert "main.py" in image and "lib/gridcore/ed25519.mpy" in image
    for path, sha, size in parsed["files"]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(image[path])
        check_file(str(tmp_path / path), sha, size)
    (tmp_path / "main.py").write_bytes(image["main.py"] + b"#")
    sha, size = next((s, n) for p, s, n in parsed["files"] if p == "main.py")
    with pytest.raises(ManifestError, match=r"hash: .*main\.py differs"):
        check_file(str(tmp_path / "main.py"), sha, size)


def sign(data, key):
    return mcu_manifest.sign(data, key)


@pytest.mark.parametrize("change, reason", [
    ("wrong-key", "signature"),
    ("tampered", "signature"),
    ("expired", "expired"),
    ("kind", "wrong-kind"),
    ("older", "older-than-installed"),
    ("same", "older-than-installed"),
])
def test_each_refusal_names_its_reason(change, reason):
    key = Ed25519PrivateKey.generate()
    public = mcu_manifest.public_bytes(key)
    files = [("main.py", "a" * 64, 10)]
    kind = "pi" if change == "kind" else "mcu"
    expires = NOW - 1 if change == "expired" else NOW + 3600
    version = {"older": "1.2", "same": "1.3"}.get(change, "1.4")
    data = encode(kind, version, expires, files)
    sig = sign(data, Ed25519PrivateKey.generate() if change == "wrong-key" else key)
    if change == "tampered":
        data = data.replace(b"1.4", b"9.4")
    with pytest.raises(ManifestError) as info:
        check(data, sig, [public], "mcu", NOW, installed="1.3")
    assert info.value.reason == reason


def test_a_rotated_key_list_accepts_either_key():
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    data = encode("mcu", "2.0", NOW + 60, [])
    keys = [mcu_manifest.public_bytes(old), mcu_manifest.public_bytes(new)]
    assert check(data, sign(data, new), keys, "mcu", NOW)["version"] == "2.0"
    with pytest.raises(ManifestError, match="signature"):
        check(data, sign(data, new), keys[:1], "mcu", NOW)


@pytest.mark.parametrize("data", [
    b"", b"gridlink-manifest/2\nkind mcu\nversion 1\nexpires 5\n",
    b"gridlink-manifest/1\nkind mcu\nversion v1\nexpires 5\n",
    b"gridlink-manifest/1\nkind mcu\nversion 1\nexpires soon\n",
    b"gridlink-manifest/1\nkind mcu\nversion 1\nexpires 5\n" + b"a" * 64 + b" 3 ../x\n",
    b"gridlink-manifest/1\nkind mcu\nversion 1\nexpires 5\n" + b"a" * 64 + b" 3 /x\n",
    b"gridlink-manifest/1\nkind mcu\nversion 1\nexpires 5\nab 3 x\n",
    b"\xff\xfe",
])
def test_bad_manifests_are_format_errors(data):
    with pytest.raises(ManifestError) as info:
        parse(data)
    assert info.value.reason == "format"


@given(st.binary(max_size=300))
def test_parse_never_fails_other_than_with_a_manifest_error(data):
    with contextlib.suppress(ManifestError):
        parse(data)


@given(st.lists(st.tuples(st.from_regex(r"[a-z]{1,8}(/[a-z]{1,8}\.mpy)?", fullmatch=True),
                          st.binary(min_size=32, max_size=32).map(bytes.hex),
                          st.integers(0, 10 ** 7)), max_size=5, unique_by=lambda t: t[0]),
       st.integers(0, 2 ** 40))
def test_encode_parse_round_trip(files, expires):
    parsed = parse(encode("mcu", "3.1.4", expires, files))
    assert parsed == {"kind": "mcu", "version": "3.1.4", "expires": expires,
                      "files": sorted(files)}


MPY_CHECK = """
import json, time
from gridcore.signed_manifest import check, check_file, ManifestError

def load(p):
    f = open(p, "rb")
    d = f.read()
    f.close()
    return d

key = load("/keys/update.pub")
out = {}
t0 = time.ticks_ms()
m = check(load("/upd/manifest.txt"), load("/upd/manifest.sig"), [key], "mcu", NOW, "1.3")
t1 = time.ticks_ms()
for path, sha, size in m["files"]:
    check_file("/upd/image/" + path, sha, size)
t2 = time.ticks_ms()
out["verified"] = [m["kind"], m["version"], len(m["files"])]
out["signature_ms"] = time.ticks_diff(t1, t0)
out["files_ms"] = time.ticks_diff(t2, t1)
for name, args in (("expired", (NOW + 10 ** 9, "1.3")), ("older", (NOW, "1.4"))):
    try:
        check(load("/upd/manifest.txt"), load("/upd/manifest.sig"), [key], "mcu", *args)
    except ManifestError as e:
        out[name] = e.reason
f = open("/upd/image/main.py", "ab")
f.write(b"#")
f.close()
for path, sha, size in m["files"]:
    try:
        check_file("/upd/image/" + path, sha, size)
    except ManifestError as e:
        out["tampered"] = [e.reason, path]
print(json.dumps(out))
"""


@pytest.mark.micropython
def test_the_board_checks_a_real_image_under_micropython(release):
    image, manifest, sig, public = release
    files = {f"/upd/image/{p}": data for p, data in image.items()}
    files.update({"/upd/manifest.txt": manifest, "/upd/manifest.sig": sig,
                  "/keys/update.pub": public})
    out = run_micropython(f"NOW = {NOW}\n" + MPY_CHECK, files=files)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["verified"] == ["mcu", "1.4", len(image)]
    assert result["expired"] == "expired" and result["older"] == "older-than-installed"
    assert result["tampered"] == ["hash", "main.py"]
    print(f"MicroPython (WebAssembly): signature check {result['signature_ms']} ms, "
          f"{len(image)} files hashed in {result['files_ms']} ms")


def test_the_cli_release_carries_the_signed_manifest(tmp_path):
    keys, repo = tmp_path / "keys", tmp_path / "repo"
    assert main(["fleet", "keys", "init", str(keys)]) == 0
    assert main(["fleet", "release", "build", "--kind", "mcu", "--version", "2.0",
                 "--keys", str(keys), "-o", str(repo)]) == 0
    (tar_path,) = (repo / "targets" / "mcu").iterdir()
    with tarfile.open(tar_path) as tar:
        manifest = tar.extractfile("manifest/manifest.txt").read()
        sig = tar.extractfile("manifest/manifest.sig").read()
    public = mcu_manifest.public_bytes(load_private(keys / "targets.pem"))
    assert check(manifest, sig, [public], "mcu", NOW)["version"] == "2.0"
    assert len(sig.strip()) == 128
