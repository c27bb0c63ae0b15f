"""The board's bundled charting library (gateway/board/vendor/) is the npm package the repo
pins in package.json, byte for byte: the wheel ships it, the browser loads it from the
gateway, nothing is downloaded at run time."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "gateway" / "board" / "vendor"
PACKAGE = ROOT / "node_modules" / "chart.js"


def test_the_bundled_chart_js_is_the_pinned_npm_package():
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["chart.js"]
    installed = json.loads((PACKAGE / "package.json").read_text())["version"]
    assert installed == pinned, "npm install: node_modules holds another Chart.js"
    bundled = (VENDOR / "chart.umd.min.js").read_bytes()
    assert bundled == (PACKAGE / "dist" / "chart.umd.min.js").read_bytes(), (
        "copy node_modules/chart.js/dist/chart.umd.min.js to gateway/board/vendor/")
    assert re.search(rb"Chart\.js v([0-9.]+)", bundled[:200]).group(1).decode() == pinned
    assert (VENDOR / "chart.js-LICENSE.md").read_bytes() == (PACKAGE / "LICENSE.md").read_bytes()


def test_the_pages_load_their_scripts_from_the_gateway():
    for page in ("stats.html", "wall.html"):
        html = (ROOT / "gateway" / "board" / page).read_text()
        sources = re.findall(r'<script src="([^"]+)"', html)
        assert "vendor/chart.umd.min.js" in sources
        assert all("//" not in s for s in sources), sources
