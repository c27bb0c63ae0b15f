"""The 大屏 wall view (board/wall.html) and the base map under the board's and the wall's
map, in Debian's chromium (playwright) in a zone that is not Beijing: the wall shows the
API's counts, the late items and the last 7 days' coverage, its clock in Beijing time, its type
sized for a wall; the district's tiles (served here by a local tile server, drawn with
Pillow) lie under the grid cells where their own coordinates put them."""

import math
import subprocess
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from gridlink.firmware.maps import HERE, open_map
from gridlink.gateway.basemap import BaseMap
from gridlink.gateway.clock import CENTRE_TIME
from gridlink.gateway.geojson import grid_geojson

from tests.support.board import add_operator, served_board, sign_in
from tests.support.evaluation_data import fill_week
from tests.support.pages import TileServer, needs_chromium, open_page, screenshot

MAP = open_map(HERE / "shangjie.glgm")
CELL = "410106001001001"

pytestmark = [pytest.mark.browser, needs_chromium]


@pytest.fixture(scope="module")
def tiles():
    with TileServer() as server:
        yield server


@contextmanager
def serve(tmp_path, base_map):
    """A week of a district on the board, a viewer "screen": the server."""
    with served_board(tmp_path, grid_map=MAP, base_map=base_map) as (srv, store, app):
        add_operator(store, "screen", roles=("viewer",))
        fill_week(store, app.state.roster, MAP, datetime.now(UTC))
        yield srv


def tile_of(matrix, lon, lat, z):
    """(col, row, west, north, east, south) of the tile holding a point (the reference)."""
    if matrix == "geographic":
        size = 360 / 2 ** z
        col, row = math.floor((lon + 180) / size), math.floor((90 - lat) / size)
        return col, row, col * size - 180, 90 - row * size, (col + 1) * size - 180, \
            90 - (row + 1) * size
    n = 2 ** z
    col = math.floor((lon + 180) / 360 * n)
    row = math.floor((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)

    def lat_of(r):
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * r / n))))

    return col, row, col / n * 360 - 180, lat_of(row), (col + 1) / n * 360 - 180, lat_of(row + 1)


def assert_tiles_line_up(page, tiles, matrix):
    """Every tile drawn was served; the tile holding CELL's north-west corner lies under
    the cell where that corner falls in the tile."""
    page.wait_for_selector("#basemap image")
    drawn = page.eval_on_selector_all("#basemap image", "els => els.map(e => e.dataset.tile)")
    wanted = {tuple(int(v) for v in t.split("/")) for t in drawn}
    deadline = time.monotonic() + 10
    while not wanted <= set(tiles.asked) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert wanted <= set(tiles.asked)
    assert page.eval_on_selector_all("#basemap image.missing", "els => els.length") == 0
    z = int(drawn[0].split("/")[0])
    (cell,) = [f for f in grid_geojson(MAP)["features"] if f["properties"]["code"] == CELL]
    ring = cell["geometry"]["coordinates"][0]
    west, north = min(p[0] for p in ring), max(p[1] for p in ring)
    col, row, tw, tn, te, ts = tile_of(matrix, west, north, z)
    assert f"{z}/{col}/{row}" in drawn
    box = page.evaluate(
        """([cell, tile]) => {
             const c = document.querySelector(`#cells path[data-grid="${cell}"]`).getBBox();
             const t = document.querySelector(`#basemap image[data-tile="${tile}"]`).getBBox();
             return {cx: c.x, cy: c.y, tx: t.x, ty: t.y, tw: t.width, th: t.height};
           }""", [CELL, f"{z}/{col}/{row}"])
    assert (box["cx"] - box["tx"]) / box["tw"] == pytest.approx((west - tw) / (te - tw),
                                                                abs=0.02)
    assert (box["cy"] - box["ty"]) / box["th"] == pytest.approx((tn - north) / (tn - ts),
                                                                abs=0.02)


def test_cjk_fonts_are_installed():
    """.ci/setup installs them: without, the screenshots show boxes for the Chinese."""
    found = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True,
                           check=True).stdout
    assert "CJK" in found or "WenQuanYi" in found


def test_the_wall_view_shows_today_late_items_and_coverage(tmp_path, tiles, browser):
    base = BaseMap(f"{tiles.url}/wmts?SERVICE=WMTS&REQUEST=GetTile&TileMatrix={{TileMatrix}}"
                   "&TileRow={TileRow}&TileCol={TileCol}", matrix="geographic",
                   attribution="底图: 本地测试瓦片")
    with (serve(tmp_path, base) as srv,
          open_page(browser, viewport=(1920, 1080), zone="America/New_York") as page):
        page.goto(srv.url + "/board/")
        sign_in(page, "screen")
        page.goto(srv.url + "/board/wall.html")
        page.wait_for_selector("#counts div[data-count=reported]")
        page.wait_for_selector("#cells path.visited")
        summary = page.evaluate("fetch('/api/wall').then(r => r.json())")
        shown = dict(page.eval_on_selector_all(
            "#counts div", "els => els.map(e => [e.dataset.count, e.querySelector('dd')"
                           ".textContent])"))
        assert shown == {**{k: str(v) for k, v in summary["today"].items()},
                         "pending": str(summary["pending"])}
        assert summary["pending"] == 3  # each supervisor's newest report
        assert summary["late"]["cases"] > 0
        late = page.eval_on_selector_all("#late li[data-case]", "els => els.map(e =>"
                                         " e.dataset.case)")
        assert late == [c["case_no"] for c in summary["late"]["case_items"]]
        assert "时限" in page.inner_text("#late")
        # the clock is Beijing time, not New York's
        clock = page.inner_text("#clock")
        beijing = datetime.now(UTC).astimezone(CENTRE_TIME)
        assert clock[:5] in {(beijing - timedelta(seconds=s)).strftime("%H:%M")
                             for s in (0, 5)}
        # the last 7 days' coverage: the work grids' cells, visited or not, as the API says
        until = datetime.now(UTC)
        unvisited = page.evaluate(
            f"fetch('/api/evaluation/unvisited?since={(until - timedelta(days=7)).isoformat()}"
            f"&until={until.isoformat()}'.replaceAll('+', '%2B')).then(r => r.json())")
        never = sorted(c for g in unvisited for c in g["unvisited_cells"])
        assert sorted(page.eval_on_selector_all(
            "#cells path.unvisited", "els => els.map(e => e.dataset.grid)")) == never
        assert page.eval_on_selector_all("#cells path.visited", "els => els.length") == sum(
            g["cells"] - g["unvisited"] for g in unvisited)
        # type sized for a wall: the counts read from across a room
        size = page.eval_on_selector("#counts dd", "e => parseFloat(getComputedStyle(e)"
                                     ".fontSize)")
        assert size >= 48
        assert page.eval_on_selector("#chart-open", "c => c.width") > 0
        assert_tiles_line_up(page, tiles, "geographic")
        screenshot(page, tmp_path, "wall.png")


def test_the_board_map_draws_the_district_tiles_under_the_cells(tmp_path, tiles, browser):
    base = BaseMap(f"{tiles.url}/tiles/{{z}}/{{x}}/{{y}}.png", attribution="底图: 本地测试瓦片")
    with serve(tmp_path, base) as srv, open_page(browser) as page:
        page.goto(srv.url + "/board/")
        sign_in(page, "screen")
        page.wait_for_selector("#cells path")
        assert_tiles_line_up(page, tiles, "webmercator")
        assert page.eval_on_selector("#map", "m => m.classList.contains('with-basemap')")
        screenshot(page, tmp_path, "board-basemap.png")


def test_without_a_base_map_nothing_is_fetched_for_it(tmp_path, browser):
    with serve(tmp_path, None) as srv, open_page(browser) as page:
        outside = []
        page.on("request", lambda req: outside.append(req.url)
                if not req.url.startswith(srv.url) else None)
        page.goto(srv.url + "/board/")
        sign_in(page, "screen")
        page.wait_for_selector("#cells path")
        assert page.evaluate("fetch('/api/basemap').then(r => r.json())") == {"url": None}
        assert page.eval_on_selector_all("#basemap *", "els => els.length") == 0
        assert outside == []
