"""Browser pages for the board's tests: Debian's chromium driven by playwright, in a zone
that is not Beijing, its screenshots kept; and a local tile server standing in for the
district's GIS (tiles drawn with Pillow, each showing its own z/x/y).

tests/gateway/conftest.py makes ``browser`` (one chromium a module) and ``page`` (a
context of its own a test, options from the module's ``page_options``) of these."""

import io
import os
import shutil
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DOC_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "img"

needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                    reason="Debian chromium not installed")


@contextmanager
def chromium():
    """Debian's chromium, closed on exit.  While it is open the thread's asyncio loop
    counts as running (playwright's sync API): a module sharing one keeps asyncio.run out
    of its tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def open_page(browser, viewport=(1400, 820), zone="America/Los_Angeles", locale="en-US",
              failed_requests=False, **context):
    """A page in a browser context of its own (cookies, storage), whose script errors fail
    the test on exit; with ``failed_requests`` also requests that failed, but for the
    page's own aborts (leaving for another page) and the event stream.  ``zone`` or
    ``locale`` None: the machine's."""
    ctx = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                              timezone_id=zone, locale=locale, **context)
    page = ctx.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    if failed_requests:
        page.on("requestfailed", lambda req: errors.append(f"failed {req.url}: {req.failure}")
                if not req.url.endswith("/api/events") and req.failure != "net::ERR_ABORTED"
                else None)
    try:
        yield page
    finally:
        ctx.close()
    assert errors == []


@contextmanager
def browser_page(**options):
    """A chromium of its own with one page (``open_page``'s options), for a module whose
    one browser test shares it with tests that need asyncio."""
    with chromium() as browser, open_page(browser, **options) as page:
        yield page


def screenshot(page, tmp_path, name, **kwargs):
    """Save a screenshot in ``tmp_path``; with GRIDLINK_DOC_SCREENSHOTS=1 also in docs/img/
    (the pictures the docs show)."""
    path = tmp_path / name
    page.screenshot(path=str(path), **kwargs)
    if os.environ.get("GRIDLINK_DOC_SCREENSHOTS") == "1":
        DOC_IMAGES.mkdir(exist_ok=True)
        shutil.copyfile(path, DOC_IMAGES / name)
    return path


class TileServer:
    """Serves ``/tiles/{z}/{x}/{y}.png`` and ``/wmts?TileMatrix=&TileRow=&TileCol=`` as
    256 px PNGs (a checkerboard of two greys with the tile's name written on it) and
    records every tile asked for."""

    def __init__(self):
        self.asked = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                from urllib.parse import parse_qs, urlsplit

                parts = urlsplit(self.path)
                try:
                    if parts.path.startswith("/tiles/"):
                        z, x, y = (int(v) for v in
                                   parts.path[len("/tiles/"):].removesuffix(".png").split("/"))
                    elif parts.path == "/wmts":
                        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
                        z, x, y = int(q["TileMatrix"]), int(q["TileCol"]), int(q["TileRow"])
                    else:
                        raise ValueError(parts.path)
                except (ValueError, KeyError):
                    self.send_error(404)
                    return
                server.asked.append((z, x, y))
                body = tile_png(z, x, y)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def tile_png(z, x, y):
    from PIL import Image, ImageDraw

    shade = (214, 222, 230) if (x + y) % 2 else (190, 202, 214)
    img = Image.new("RGB", (256, 256), shade)
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, 255, 255), outline=(120, 130, 140))
    draw.text((8, 8), f"{z}/{x}/{y}", fill=(60, 60, 60))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()
