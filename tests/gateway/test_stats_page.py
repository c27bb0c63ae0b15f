"""The statistics page (board/stats.html) in a real headless browser (Debian's chromium
driven by playwright), in a browser whose zone is not Beijing: the rates and the coverage
of a supervisor's duty appear in zh-CN tables and charts, the CSV export answers, and a bad
window is answered beside the filters."""

from datetime import UTC, datetime, timedelta

import pytest
from gridlink.firmware.maps import HERE, open_map
from gridlink.gateway.clock import CENTRE_TIME

from tests.support.board import add_operator, served_board, sign_in
from tests.support.evaluation_data import fill_week
from tests.support.intake_api import add_report, iso
from tests.support.pages import needs_chromium, open_page, screenshot

MAP = open_map(HERE / "shangjie.glgm")

pytestmark = [pytest.mark.browser, needs_chromium]


@pytest.fixture
def server(tmp_path):
    with served_board(tmp_path, grid_map=MAP) as (srv, store, app):
        add_operator(store, "carol", roles=("viewer",))
        fill_duty(store, app.state.roster)
        yield srv


def fill_duty(store, roster):
    """Supervisor s01's duty yesterday, three reports in it (one accepted), a track point."""
    now = datetime.now(UTC)
    yesterday = (now - timedelta(days=1)).astimezone(CENTRE_TIME).date().isoformat()
    roster.put_supervisor("s01", "张三")
    roster.put_shift("day", "08:00", "16:00")
    roster.put_work_grid("wg1", supervisor="s01", shift="day", cells=["410106001001"])
    roster.carry("s01", "pv-0001", since=iso(now - timedelta(days=10)))
    (duty,) = roster.schedule("s01", "day", yesterday, yesterday)
    on = datetime.fromisoformat(duty["on_at"].replace("Z", "+00:00"))
    rids = [add_report(store, n, device="pv-0001", captured=on + timedelta(minutes=n))
            for n in (1, 2, 3)]
    with store.connect() as conn:
        conn.execute("INSERT INTO intake (report_id, state, case_no, decided_by, decided_at,"
                     " updated_at) VALUES (?, 'accepted', 'C1', 'op', ?, ?)",
                     (rids[0], iso(on + timedelta(minutes=5)), iso(on + timedelta(minutes=5))))
        conn.execute("INSERT INTO track_points (device, t, lat, lon, speed)"
                     " VALUES (?, ?, 34.8205, 113.2871, 0)", ("pv-0001", iso(on)))


def test_rates_and_coverage_on_the_statistics_page(server, page, tmp_path):
    outside = []
    page.on("request", lambda req: outside.append(req.url)
            if not req.url.startswith(server.url) else None)
    page.goto(server.url + "/board/")
    sign_in(page, "carol")
    page.goto(server.url + "/board/stats.html")
    page.wait_for_selector("#rates tbody tr")
    head = page.inner_text("#rates thead")
    assert "有效上报率" in head and "按时核实率" in head and "每在岗小时上报" in head
    row = page.inner_text("#rates tbody tr").split("\t")
    assert row[:5] == ["s01", "all", "3", "1", "33.3%"]
    page.wait_for_selector("#coverage tbody tr")
    cover = page.inner_text("#coverage tbody tr").split("\t")
    assert cover[:2] == ["s01", "day"]
    assert cover[2].endswith("08:00")  # shown in Beijing time, whatever the browser's zone
    page.screenshot(path=str(tmp_path / "stats.png"), full_page=True)
    text = page.evaluate("fetch(document.getElementById('csv-rates').href)"
                         ".then(r => r.text())")
    assert text.lstrip("\ufeff").startswith("supervisor,period,reported,accepted")
    # a window ending before it starts is answered beside the filters
    page.fill("#f-since", "2026-12-31")
    page.fill("#f-until", "2026-01-01")
    page.click("#b-query")
    page.wait_for_selector("#error:has-text('since must come before until')")
    assert outside == []


def test_charts_on_the_statistics_page_from_a_week_of_a_district(tmp_path, browser):
    """Charts (the bundled Chart.js) of the rates, the counts and the coverage, per
    supervisor and per department, from a week of three supervisors' work."""
    with (served_board(tmp_path, grid_map=MAP) as (srv, store, app),
          open_page(browser, viewport=(1600, 1000)) as pg):
        add_operator(store, "carol", roles=("viewer",))
        fill_week(store, app.state.roster, MAP, datetime.now(UTC))
        pg.goto(srv.url + "/board/")
        sign_in(pg, "carol")
        pg.goto(srv.url + "/board/stats.html")
        pg.wait_for_function("Chart.getChart('chart-coverage') !== undefined")
        charts = pg.evaluate("""() => Object.fromEntries(['chart-rates', 'chart-counts',
            'chart-coverage'].map(id => { const c = Chart.getChart(id);
              return [id, {labels: c.data.labels, sets: c.data.datasets.map(d => d.label),
                           first: c.data.datasets[0].data}]; }))""")
        table = pg.evaluate("fetch(document.getElementById('csv-rates').href"
                            ".replace('&format=csv', '')).then(r => r.json())")
        assert charts["chart-rates"]["labels"] == [r["supervisor"] for r in table["rows"]]
        assert charts["chart-rates"]["sets"] == ["有效上报率", "按时核实率", "按时核查率",
                                                 "结案率", "按期结案率"]
        assert charts["chart-rates"]["first"] == [
            pytest.approx(r["valid_report_rate"] * 100) for r in table["rows"]]
        assert charts["chart-counts"]["sets"] == ["上报数", "立案数", "结案数"]
        assert len(charts["chart-coverage"]["labels"]) == 18  # 3 supervisors × 6 days
        head = pg.inner_text("#rates thead")
        assert "结案率" in head and "按期结案率" in head
        screenshot(pg, tmp_path, "stats.png", full_page=True)
        # per department, per day: the counts chart follows the periods
        pg.select_option("#f-by", "department")
        pg.select_option("#f-period", "day")
        pg.click("#b-query")
        pg.wait_for_function("Chart.getChart('chart-counts').config.type === 'line'")
        assert "(未派遣)" in pg.inner_text("#rates tbody")
        assert "按周期" in pg.inner_text("#trend-caption")
