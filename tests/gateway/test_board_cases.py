"""The board's case controls in a real headless browser (Debian's chromium driven by
playwright): a 值班长 picks a case in the case list and moves it through the case routes —
派遣 with a department and a deadline, 挂账, 恢复, 作废 (refused without a reason, with
the server's words), a 值班长 override — while a viewer sees the same case with every
control off; a message stuck on its way to a department's system shows in the header."""

from datetime import UTC, datetime

import pytest
from gridlink.firmware.maps import HERE, open_map

from tests.support.board import add_operator, served_board, sign_in
from tests.support.intake_api import add_report
from tests.support.pages import needs_chromium

MAP = open_map(HERE / "shangjie.glgm")

pytestmark = [pytest.mark.browser, needs_chromium]


@pytest.fixture
def page_options():
    return {"viewport": (1400, 900), "zone": None, "locale": "zh-CN"}


@pytest.fixture
def served(tmp_path):
    with served_board(tmp_path, grid_map=MAP, poll_interval=0.2) as (srv, store, app):
        add_operator(store, "lead", roles=("acceptor", "shift_lead"))
        add_operator(store, "screen", roles=("viewer",))
        book, queue = app.state.cases, app.state.queue
        book.put_department("sanitation", "环卫处", ["06"])
        book.put_department("parks", "园林局", ["01"], system={
            "adapter": "webhook", "url": "http://127.0.0.1:9/cases"})
        cases = [queue.accept(add_report(store, n, code=code), "lead")["case_no"]
                 for n, code in ((1, "06010"), (2, "01010"))]
        book.act(cases[1], "dispatch", "lead", department="parks")
        outbox = app.state.bridge
        for _ in range(5):   # as the sender records a system that never answers
            outbox.failed(f"parks:{cases[1]}", "ConnectionRefusedError: [Errno 111]", cap_s=1)
        yield srv, book, cases


def said(page, text):
    page.wait_for_function("t => document.getElementById('cp-message').textContent.includes(t)",
                           arg=text, timeout=10000)
    return page.inner_text("#cp-message")


def test_a_shift_lead_moves_a_case_from_the_board(served, page, tmp_path):
    server, book, (first, _) = served
    page.goto(server.url + "/board/")
    sign_in(page, "lead")
    page.wait_for_selector("#bridge-stuck:not([hidden])")
    assert page.inner_text("#n-stuck") == "1"
    page.click(f"#cases li[data-case='{first}']")
    page.wait_for_selector(f"#case-panel[data-case='{first}']:not([hidden])")
    assert page.inner_text("#cp-state").startswith("立案 (registered)")
    options = page.eval_on_selector_all("#cp-dept option", "os => os.map(o => o.value)")
    assert options == ["sanitation"]                            # parks does not handle 06
    assert page.is_enabled("#cp-dispatch") and not page.is_enabled("#cp-resume")

    page.fill("#cp-hours", "4")
    asked = datetime.now(UTC).timestamp()
    page.click("#cp-dispatch")
    assert "派遣 (dispatched)" in said(page, "派遣 dispatch:")
    case = book.get(first)
    assert (case["state"], case["department"]) == ("dispatched", "sanitation")
    due = datetime.fromisoformat(case["stage_due"].replace("Z", "+00:00")).timestamp()
    assert abs(due - asked - 4 * 3600) < 30
    assert case["history"][-1]["actor"] == "lead"
    page.wait_for_function("() => document.getElementById('cp-dispatch').disabled")

    page.fill("#cp-reason", "雨季暂缓")
    page.click("#cp-defer")
    said(page, "挂账 defer: 挂账")
    assert book.get(first)["history"][-1]["reason"] == "雨季暂缓"
    page.wait_for_function("() => !document.getElementById('cp-resume').disabled")
    page.click("#cp-resume")
    said(page, "恢复 resume: 立案")

    page.click("#cp-void")                                      # no reason: refused
    assert "作废 void failed" in said(page, "failed")
    assert book.get(first)["state"] == "registered"
    page.fill("#cp-reason", "重复立案")
    page.click("#cp-void")
    said(page, "作废 void: 作废")
    page.wait_for_function("() => document.getElementById('cp-void').disabled")
    page.select_option("#cp-to", "registered")
    page.fill("#cp-reason", "误作废")
    page.click("#cp-override")
    said(page, "改状态 override: 立案")
    case = book.get(first)
    assert [(h["action"], h["to_state"]) for h in case["history"]] == [
        ("register", "registered"), ("dispatch", "dispatched"), ("defer", "deferred"),
        ("resume", "registered"), ("void", "voided"), ("override", "registered")]
    page.wait_for_selector(f"#cases li[data-case='{first}'] .case-state:text('立案')")
    page.screenshot(path=str(tmp_path / "board-cases.png"), full_page=True)


def test_a_viewer_sees_the_case_with_every_control_off(served, page):
    server, _, (first, _) = served
    page.goto(server.url + "/board/")
    sign_in(page, "screen")
    page.click(f"#cases li[data-case='{first}']")
    page.wait_for_selector(f"#case-panel[data-case='{first}']:not([hidden])")
    for button in ("#cp-dispatch", "#cp-defer", "#cp-resume", "#cp-void", "#cp-override"):
        assert not page.is_enabled(button), button
    assert page.inner_text("#cp-state").startswith("立案 (registered)")
