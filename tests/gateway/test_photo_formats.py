"""WebP photos at the centre: filed as ``.webp``, served as ``image/webp`` (the board's
``<img>`` shows them), and as a JPEG with the same EXIF — GNSS position and time — for
systems that take only JPEG (``?format=jpeg``)."""

import hashlib
import io
import urllib.error
import urllib.request

import numpy as np
import pytest
from gridlink.firmware.device import camera
from gridlink.gateway.api import create_app
from gridlink.gateway.httpserver import BackgroundServer
from gridlink.gateway.photos import PhotoDir
from PIL import Image

from tests.support.intake_api import Api, Tokens

FIX = {"lat": 34.8095, "lon": 113.2965, "alt": 101.5}


@pytest.fixture(scope="module")
def webp():
    img = camera.SyntheticCamera((320, 240)).capture()
    data, _q = camera.encode_photo(img, (320, 240), 20_000,
                                   camera.exif_bytes(FIX, 1_800_000_000, "pv-0001"), "webp")
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    return data


@pytest.fixture
def served(store, tmp_path):
    photos = PhotoDir(tmp_path / "photos")

    def add(data):
        sha = hashlib.sha256(data).hexdigest()
        path = photos.write(sha, data)
        with store.connect() as conn:
            conn.execute(store.sql("INSERT INTO photos (sha256, size, complete, path)"
                                   " VALUES (?, ?, 1, ?)"), (sha, len(data), str(path)))
        return sha, path

    app = create_app(store, photos_dir=tmp_path / "photos")
    with BackgroundServer(app) as server:
        api = Api(server.url, Tokens(store))

        def fetch(path):
            req = urllib.request.Request(server.url + path, headers=api.auth())
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    return resp.status, resp.headers["Content-Type"], resp.read()
            except urllib.error.HTTPError as err:
                return err.code, err.headers["Content-Type"], err.read()

        yield add, fetch


def test_a_webp_photo_is_filed_as_webp_and_served_as_it_came(served, webp):
    add, fetch = served
    sha, path = add(webp)
    assert path.name == f"{sha}.webp"
    assert fetch(f"/api/photos/{sha}") == (200, "image/webp", webp)


def test_as_jpeg_it_keeps_the_gnss_exif_and_the_picture(served, webp):
    add, fetch = served
    sha, _path = add(webp)
    status, ctype, jpeg = fetch(f"/api/photos/{sha}?format=jpeg")
    assert (status, ctype, jpeg[:3]) == (200, "image/jpeg", b"\xff\xd8\xff")
    lat, lon = camera.exif_position(jpeg)
    assert lat == pytest.approx(FIX["lat"], abs=1e-6) and lon == pytest.approx(FIX["lon"],
                                                                                abs=1e-6)
    import piexif

    assert piexif.load(jpeg)["0th"][piexif.ImageIFD.Artist] == b"pv-0001"
    a = np.asarray(Image.open(io.BytesIO(webp)).convert("L"), dtype=float)
    b = np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"), dtype=float)
    assert a.shape == b.shape
    assert np.abs(a - b).mean() < 3                     # the same picture, one more pass


def test_a_jpeg_photo_as_jpeg_is_its_own_bytes_and_anything_else_is_refused(served):
    add, fetch = served
    img = camera.SyntheticCamera((160, 120)).capture()
    jpeg, _q = camera.encode_photo(img, (160, 120), 20_000, b"", "jpeg")
    sha, path = add(jpeg)
    assert path.suffix == ".jpg"
    assert fetch(f"/api/photos/{sha}?format=jpeg") == (200, "image/jpeg", jpeg)
    assert fetch(f"/api/photos/{sha}?format=png")[0] == 422
    junk, _path = add(b"RIFF\x10\x00\x00\x00WEBPVP8 garbage")
    status, _ctype, body = fetch(f"/api/photos/{junk}?format=jpeg")
    assert status == 400 and b"not an image that converts to JPEG" in body
    assert fetch(f"/api/photos/{junk}")[:2] == (200, "image/webp")   # served as it came
