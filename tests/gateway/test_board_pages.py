"""The board's pages beside the intake board (statistics, updates, wall) in a real
headless browser (Debian's chromium driven by playwright): they share board/page.js, so
without a session each says on the page where to sign in."""

import pytest

from tests.support.board import served_board
from tests.support.pages import needs_chromium

pytestmark = [pytest.mark.browser, needs_chromium]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with served_board(tmp_path_factory.mktemp("board")) as (srv, _store, _app):
        yield srv


@pytest.mark.parametrize(("name", "says"), [
    ("stats.html", "未登录: 请先在受理台登录"),
    ("updates.html", "未登录: 请先在受理台登录"),
    ("wall.html", "未登录: 请先在受理台 (/board/) 以大屏账号登录"),
])
def test_without_a_session_the_page_says_where_to_sign_in(server, page, name, says):
    loaded = []
    page.on("response", lambda resp: loaded.append(resp.url.removeprefix(server.url)))
    page.goto(f"{server.url}/board/{name}")
    page.wait_for_function('document.getElementById("error").textContent !== ""')
    assert page.inner_text("#error") == says
    assert "/board/page.js" in loaded
