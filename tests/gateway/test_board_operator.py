"""The intake board as an operator uses it, in a real headless browser (Debian's chromium
driven by playwright) whose zone is not Beijing: rows that stay in place while reports
arrive, receive times in the centre's time, 核实 results linked to the report they answer,
filter errors beside the filters, decisions behind a confirmation, the devices panel, the
map's stacked reports and two-part cells, and one zh-CN vocabulary.  One browser serves
the module; each test has its own store and page."""

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from gridlink.firmware.maps import HERE, open_map

from tests.support.board import add_operator, served_board, sign_in
from tests.support.intake_api import Api, Tokens, add_report, iso
from tests.support.pages import needs_chromium

MAP = open_map(HERE / "shangjie.glgm")
BEIJING = ZoneInfo("Asia/Shanghai")

pytestmark = [pytest.mark.browser, needs_chromium]


def beijing(t):
    """A time as the board shows it (zh-CN, 24 h, Asia/Shanghai): 2026/11/28 10:00:01."""
    b = t.astimezone(BEIJING)
    return f"{b.year}/{b.month}/{b.day} {b:%H:%M:%S}"


def received(store, rid, at):
    with store.connect() as conn:
        conn.execute(store.sql("UPDATE reports SET received_at = ? WHERE id = ?"), (iso(at), rid))


def serve(tmp_path, grid_map):
    with served_board(tmp_path, grid_map=grid_map, poll_interval=0.2) as (server, store, app):
        add_operator(store, "carol", display="李四")
        add_operator(store, "alice", roles=("acceptor", "shift_lead"), display="张三")
        yield server, store, app


@pytest.fixture
def board(tmp_path):
    """A gateway's app and store without a grid map (the board frames its reports)."""
    yield from serve(tmp_path, None)


@pytest.fixture
def mapped_board(tmp_path):
    """The same over the district's map (4288 cells to draw)."""
    yield from serve(tmp_path, MAP)


def open_board(page, server, user="carol"):
    page.goto(server.url + "/board/")
    sign_in(page, user)
    page.wait_for_selector("#reports[data-loaded='1']")


def row_top(page, rid):
    return page.locator(f'#reports li[data-id="{rid}"]').bounding_box()["y"]


def test_rows_stay_in_place_new_reports_wait_and_the_list_is_by_receive_time(board, page):
    server, store, _ = board
    now = datetime.now(UTC).replace(microsecond=0)
    # captured two days ago by a wrong clock, received a minute ago: newest by receipt
    late = add_report(store, 1, captured=now - timedelta(days=2))
    received(store, late, now - timedelta(minutes=1))
    older = add_report(store, 2, captured=now - timedelta(minutes=10))
    open_board(page, server)
    ids = page.eval_on_selector_all("#reports li", "(lis) => lis.map((li) => li.dataset.id)")
    assert ids == [late, older]
    text = page.locator(f'#reports li[data-id="{late}"] .received').inner_text()
    assert text == f"接收 {beijing(now - timedelta(minutes=1))} · 1 分钟前"

    y = row_top(page, older)
    fresh = add_report(store, 3, captured=now)
    received(store, fresh, datetime.now(UTC))
    page.wait_for_selector("#new-reports:not([hidden])")
    assert page.locator("#new-reports").inner_text() == "1 条新上报 · 点击载入"
    assert page.locator(f'#reports li[data-id="{fresh}"]').count() == 0
    assert row_top(page, older) == y
    # another operator signs for one: the row changes where it stands
    Api(server.url, Tokens(store)).post(f"/api/reports/{older}/claim", {"operator": "bob"})
    page.wait_for_selector(f'#reports li.held[data-id="{older}"]')
    assert row_top(page, older) == y
    page.click("#new-reports")
    page.wait_for_selector(f'#reports li[data-id="{fresh}"]')
    assert page.eval_on_selector("#reports li", "(li) => li.dataset.id") == fresh
    assert page.locator("#new-reports").is_hidden()


def test_a_verify_task_with_instruction_and_deadline_and_its_result_inside_the_report(
        board, page):
    server, store, app = board
    now = datetime.now(UTC)
    rid = add_report(store, 1, text="暴露垃圾")
    with store.connect() as conn:
        conn.execute(store.sql(
            "INSERT INTO devices (device, district, state, last_seen, status, last_lat,"
            " last_lon, profile) VALUES ('pv-0002', '410106', 'online', ?, '{}', 34.8205,"
            " 113.2871, 'patrol-vehicle')"), (iso(now),))
    open_board(page, server, "alice")  # 值班长: sends tasks
    page.click(f'#reports li[data-id="{rid}"]')
    page.wait_for_selector(f'#detail-body[data-id="{rid}"]')
    page.fill("#task-text", "请拍摄垃圾堆放全景")
    page.select_option("#task-deadline", "3600")
    page.click("#b-task")
    page.wait_for_selector("#message.done, #message.error")
    assert "核实" in page.locator("#message").inner_text(), page.locator("#message").inner_text()
    (task,) = Api(server.url, Tokens(store)).get(f"/api/tasks?report_id={rid}")[1]
    assert task["text"] == "请拍摄垃圾堆放全景"
    deadline = datetime.fromisoformat(task["deadline"].replace("Z", "+00:00"))
    assert abs((deadline - now).total_seconds() - 3600) < 60
    sha = "ab" * 32
    result = add_report(store, 2, device="pv-0002", source="task", task=task["id"],
                        result="confirmed", text="属实", photos=[{"sha256": sha, "bytes": 10}])
    app.state.tasks.sync()  # the task desk attaches the result
    page.click(f'#reports li[data-id="{rid}"]')
    item = page.wait_for_selector(f'#d-tasks li[data-task="{task["id"]}"] .outcome')
    assert item.inner_text() == "属实"
    li = page.locator(f'#d-tasks li[data-task="{task["id"]}"]')
    assert "要求：请拍摄垃圾堆放全景" in li.inner_text()
    assert f"时限 {beijing(deadline)}" in li.inner_text()
    page.wait_for_selector(f'#d-tasks img.result-photo[src="/api/photos/{sha}"]')
    # the link opens the result, which links back to the report it answers
    page.click(f'#d-tasks a[data-report="{result}"]')
    page.wait_for_selector(f'#detail-body[data-id="{result}"]')
    page.wait_for_selector(f'#d-origin a[data-report="{rid}"]')
    assert "核实任务" in page.locator("#d-origin").inner_text()
    assert "属实" in page.locator("#d-fields").inner_text()
    # 任务结果 is a state of the filter
    page.select_option("#f-status", "attached")
    page.wait_for_selector(f'#reports li[data-id="{result}"] .outcome')
    assert page.locator("#reports li").count() == 1


def test_filter_errors_show_beside_the_filters_and_class_names_filter(board, page):
    server, store, _ = board
    litter = add_report(store, 1, code="06010")
    other = add_report(store, 2, code="09001")
    open_board(page, server)
    page.fill("#f-grid", "41010600X")
    page.press("#f-grid", "Enter")
    page.wait_for_selector("#filter-error:not([hidden])")
    assert "筛选有误" in page.locator("#filter-error").inner_text()
    assert page.locator("#reports li").count() == 0  # the stale list does not stay
    page.fill("#f-grid", "")
    page.fill("#f-code", "暴露垃圾")
    page.press("#f-code", "Enter")
    page.wait_for_function("[...document.querySelectorAll('#reports li')]"
                           f".map((li) => li.dataset.id).join() === '{litter}'")
    assert page.locator("#filter-error").is_hidden()
    assert page.locator(f'#reports li[data-id="{other}"]').count() == 0
    page.fill("#f-code", "不存在的类")
    page.press("#f-code", "Enter")
    page.wait_for_function("document.querySelector('#filter-error').textContent"
                           ".includes('不存在的类')")


def test_decisions_are_confirmed_locked_while_sent_warned_and_explained(board, page):
    server, store, _ = board
    first = add_report(store, 1)
    second = add_report(store, 2)
    api = Api(server.url, Tokens(store))
    open_board(page, server)
    page.click(f'#reports li[data-id="{first}"]')
    page.wait_for_selector(f'#detail-body[data-id="{first}"]')
    # 立案 asks first; 取消 leaves the report pending
    page.click("#b-accept")
    assert "确认立案" in page.locator("#confirm-text").inner_text()
    page.click("#b-cancel")
    assert page.locator("#confirm").is_hidden()
    assert api.get(f"/api/reports/{first}")[1]["state"] == "pending"
    # a common reason from the pick-list; the buttons are off while the request runs
    page.select_option("#reason-pick", "重复上报")
    assert page.input_value("#reason") == "重复上报"
    page.click("#b-reject")
    assert "确认不予立案" in page.locator("#confirm-text").inner_text()
    requests = []
    page.on("request", lambda req: requests.append(req.url) if req.url.endswith("/reject")
            else None)
    off = page.evaluate("() => { const b = document.getElementById('b-confirm'); b.click();"
                        " b.click(); return ['b-accept', 'b-reject', 'b-claim', 'b-confirm']"
                        ".map((id) => document.getElementById(id).disabled); }")
    assert off == [True, True, True, True]
    page.wait_for_selector('#d-history li[data-action="report.reject"]', state="attached")
    assert len(requests) == 1
    stored = api.get(f"/api/reports/{first}")[1]
    assert (stored["state"], stored["reason"]) == ("rejected", "重复上报")
    decided = datetime.fromisoformat(stored["decided_at"].replace("Z", "+00:00"))
    fields = page.locator("#d-fields").inner_text()
    assert f"carol 不予立案 · {beijing(decided)}" in fields
    page.select_option("#f-status", "rejected")
    row = page.wait_for_selector(f'#reports li[data-id="{first}"] .reason')
    assert row.inner_text() == "不予立案原因：重复上报"
    # one's own 签收 about to lapse is said, with 延长 beside it
    page.select_option("#f-status", "pending")
    page.click(f'#reports li[data-id="{second}"]')
    page.wait_for_selector(f'#detail-body[data-id="{second}"]')
    page.evaluate(f"api('POST', '/api/reports/{second}/claim', {{lease_s: 30}})")
    page.click(f'#reports li[data-id="{second}"]')
    warn = page.wait_for_selector("#lease-warn:not([hidden])")
    assert re.fullmatch(r"签收将在 \d+ 秒后失效，请延长", warn.inner_text())
    assert page.locator("#b-claim").inner_text().startswith("延长")
    # another's 签收 refused (409) is told in Beijing time, not the UTC of the answer
    third = add_report(store, 3)
    _, held = api.post(f"/api/reports/{third}/claim", {"operator": "bob"})
    said = page.evaluate(f"api('POST', '/api/reports/{third}/claim', {{}})"
                         ".then(() => 'no conflict', (err) => conflictText(err))")
    until = datetime.fromisoformat(held["lease_until"].replace("Z", "+00:00"))
    assert said == f"bob 已签收，至 {beijing(until)}"


def test_devices_panel_map_stacks_fixed_terminals_and_two_part_cells(mapped_board, page):
    server, store, _ = mapped_board
    now = datetime.now(UTC).replace(microsecond=0)
    fix_at = now - timedelta(minutes=3)
    with store.connect() as conn:
        for device, state, seen in (("pv-0001", "online", now - timedelta(seconds=20)),
                                    ("pv-0002", "offline", now - timedelta(hours=2))):
            conn.execute(store.sql(
                "INSERT INTO devices (device, district, state, last_seen, status, last_lat,"
                " last_lon, last_fix_at, outbox_reports, firmware, codebook, profile) VALUES"
                " (?, '410106', ?, ?, '{}', 34.8205, 113.2871, ?, 3, '0.1.0',"
                " 'GB/T 47678.5-2026@ab12', 'patrol-vehicle')"),
                (device, state, iso(seen), iso(fix_at)))
    # two reports at one spot; a fixed terminal's report with its three flags
    add_report(store, 1, lat=34.8100, lon=113.3000)
    add_report(store, 2, lat=34.8100, lon=113.3000)
    fixed = add_report(store, 3, device="ft-0001", lat=34.8000, lon=113.2900,
                       flags=("fixed_position", "clock_fallback", "no_fix"))
    open_board(page, server)
    online = page.locator('#devices li[data-device="pv-0001"]').inner_text()
    assert re.search(r"在线 · patrol-vehicle", online)
    assert re.search(r"最后通信 (19|2\d) 秒前 · 待发 3 条", online)
    assert f"定位时间 {beijing(fix_at)}" in online
    assert "代码本 GB/T 47678.5-2026@ab12" in online
    offline = page.locator('#devices li[data-device="pv-0002"]').inner_text()
    assert "离线" in offline and "最后通信 2 小时前" in offline
    # devices above the report dots (drawn later in the SVG)
    assert page.evaluate("[...document.querySelector('#map').children].map((g) => g.id)") \
        == ["basemap", "cells", "points", "cars"]
    assert page.locator("#points text.stack").get_attribute("data-count") == "2"
    badges = page.locator(f'#reports li[data-id="{fixed}"] .badge').all_inner_texts()
    assert badges == ["固定点位"]
    # a cell in two parts draws; no path carries NaN
    d = page.get_attribute('#cells path[data-grid="410106002002001"]', "d")
    assert d.count("M") == 2 and "NaN" not in d
    assert page.evaluate("[...document.querySelectorAll('#cells path')]"
                         ".filter((p) => p.getAttribute('d').includes('NaN')).length") == 0
    assert page.locator("#cells path").count() == MAP.n_cells
