"""The updates page (board/updates.html) in a real headless browser (Debian's chromium
driven by playwright): each rollout's progress stage by stage and each device's versions,
running, in its slots, on trial and failed; it follows the rollout as devices report, up
to the automatic pause with its reason.  Without a session: test_board_pages.py."""

import pytest

from tests.support.board import add_operator, served_board, sign_in
from tests.support.pages import needs_chromium
from tests.support.rollouts import Wire, set_device, status

pytestmark = [pytest.mark.browser, needs_chromium]


@pytest.fixture
def centre(tmp_path):
    with served_board(tmp_path, publisher=Wire()) as (srv, store, app):
        add_operator(store, "carol", roles=("viewer",))
        for i in range(4):
            set_device(store, f"pv-{i:04d}", status())
        set_device(store, "pv-0009", district="410105")          # elsewhere, no slots
        rollout = app.state.rollouts.create(kind="pi", version="1.1",
                                            target={"district": "410106"}, stages=[25, 100],
                                            failure_threshold=0, operator="tech")
        yield srv, store, rollout


def stage_text(page, rid, n):
    return page.inner_text(f'.rollout[data-id="{rid}"] .stage[data-stage="{n}"]')


def test_the_page_shows_a_rollout_move_on_and_pause_with_its_reason(centre, page):
    srv, store, rollout = centre
    rid = rollout["id"]
    canary = next(d["device"] for d in rollout["devices"] if d["stage"] == 0)
    page.goto(srv.url + "/board/")
    sign_in(page, "carol")
    page.goto(srv.url + "/board/updates.html")
    page.wait_for_selector(f'.rollout[data-id="{rid}"]')
    head = page.inner_text(f'.rollout[data-id="{rid}"] h3')
    assert "pi 1.1" in head and "进行中" in head and "第 1/2 批" in head
    assert "第 1 批 (25%) 1 台" in stage_text(page, rid, 1)
    assert "已下发 1" in stage_text(page, rid, 1)
    assert "等待 3" in stage_text(page, rid, 2)
    row = page.inner_text('#devices tr[data-device="pv-0009"]')
    assert "(无升级槽)" in row

    set_device(store, canary, status(version="1.1"))             # the canary is good
    page.wait_for_function(f'document.querySelector(\'.rollout[data-id="{rid}"] h3\')'
                           '.textContent.includes("第 2/2 批")', timeout=10000)
    assert "已安装 1" in stage_text(page, rid, 1)
    assert "已下发 3" in stage_text(page, rid, 2)
    cells = page.locator(f'#devices tr[data-device="{canary}"] td').all_inner_texts()
    assert cells[3:8] == ["1.1", "b", "1.0", "1.1", ""]

    second = next(d["device"] for d in rollout["devices"] if d["stage"] == 1)
    set_device(store, second, status(failed=("1.1", "health: no GNSS fix within 120 s")))
    page.wait_for_selector(f'.rollout[data-id="{rid}"] .reason', timeout=10000)
    assert "已暂停" in page.inner_text(f'.rollout[data-id="{rid}"] h3')
    assert page.inner_text(f'.rollout[data-id="{rid}"] .reason') == (
        "stage 2 (100%): 1 of 3 devices failed, over the 0% threshold")
    failed = page.inner_text(f'#devices tr[data-device="{second}"] td.failed')
    assert failed == "1.1: health: no GNSS fix within 120 s"
