"""The kiosk's report form: what the screen offers, the submitted form checked (a form
that is wrong files nothing and says why), the pause between filings, and the kiosk's
page over real HTTP handing a citizen's choice to the device's report call."""

import urllib.error
import urllib.parse
import urllib.request

import pytest
from gridlink.firmware.device.kiosk_form import (
    FormError,
    Pacer,
    choices,
    parse_form,
    render_form,
)
from gridlink.firmware.device.tasks import Kiosk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CLASSES = [{"kind": "event", "code": "06010", "text": "暴露垃圾"},
           {"kind": "component", "code": "01001"}]
OFFERED = choices(CLASSES, lambda kind, code: {"01001": "供水井盖"}.get(code))


def form(**fields):
    return urllib.parse.urlencode(fields).encode()


def test_the_screen_offers_the_profiles_classes_by_name():
    assert OFFERED == [{"kind": "event", "code": "06010", "label": "暴露垃圾"},
                       {"kind": "component", "code": "01001", "label": "供水井盖"}]
    assert choices([{"kind": "event", "code": "06034"}])[0]["label"] == "06034"
    page = render_form("ft-0001", OFFERED, camera=False, message="<b>", error=True)
    assert page.count('type="radio"') == 2 and "供水井盖" in page
    assert 'name="photo"' not in page and "&lt;b&gt;" in page


def test_a_form_is_taken_whole():
    chosen, text, photo = parse_form(form(code="01001", text="  井盖\n 缺失 ", photo="1"),
                                     OFFERED)
    assert (chosen["kind"], chosen["code"], text, photo) == ("component", "01001", "井盖 缺失",
                                                             True)
    assert parse_form(form(code="06010"), OFFERED)[1:] == ("", False)


@pytest.mark.parametrize("body, why", [
    (form(text="x"), "pick one kind"),
    (form(code="09006"), "不受理"),
    (b"code=06010&code=01001", "pick one kind"),
    (form(code="06010", text="字" * 257), "at most 256"),
    (b"code=06010&text=a&text=b", "one description"),
    (b"code=06010&text=\xff", "not UTF-8"),
    (b"x" * 5000, "larger than"),
])
def test_a_wrong_form_files_nothing_and_says_why(body, why):
    with pytest.raises(FormError, match=why):
        parse_form(body, OFFERED)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300) | st.text(max_size=120).map(str.encode))
def test_any_body_is_a_class_offered_or_a_form_error(body):
    try:
        chosen, text, photo = parse_form(body, OFFERED)
    except FormError:
        return
    assert chosen in OFFERED and len(text) <= 256 and isinstance(photo, bool)


def test_the_pacer_leaves_a_gap_between_filings():
    now = [100.0]
    pacer = Pacer(10, clock=lambda: now[0])
    assert pacer.wait_s() == 0
    pacer.filed()
    now[0] += 4
    assert pacer.wait_s() == 6
    now[0] += 6
    assert pacer.wait_s() == 0


class Board:
    def open(self):
        return []


@pytest.fixture
def kiosk():
    filed = []

    def file_report(kind, code, text, photo):
        if text == "store full":
            raise OSError("no space left on the device")
        filed.append((kind, code, text, photo))
        return {"id": f"ft-0001:{len(filed):012d}"}

    k = Kiosk("ft-0001", Board(), None, port=0, offered=OFFERED, file_report=file_report,
              gap_s=0.5).start()
    yield f"http://127.0.0.1:{k.port}", filed
    k.stop()


def post(url, body):
    try:
        with urllib.request.urlopen(url, body, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_the_kiosk_page_files_a_citizens_report(kiosk):
    base, filed = kiosk
    home = urllib.request.urlopen(base + "/", timeout=5).read().decode()
    assert 'href="/report"' in home
    page = urllib.request.urlopen(base + "/report", timeout=5).read().decode()
    assert "暴露垃圾" in page and 'name="photo"' in page
    status, page = post(base + "/report", form(code="06010", text="桥下", photo="1"))
    assert status == 200 and "已提交" in page and "ft-0001:000000000001" in page
    assert filed == [("event", "06010", "桥下", True)]
    status, page = post(base + "/report", form(code="01001"))       # within the gap
    assert status == 429 and "please wait" in page
    status, page = post(base + "/report", form(code="99999"))
    assert status == 400 and "不受理" in page
    assert len(filed) == 1


def test_a_report_the_device_cannot_make_is_said_so(kiosk):
    base, filed = kiosk
    status, page = post(base + "/report", form(code="06010", text="store full"))
    assert status == 503 and "no space left" in page and filed == []


def test_a_kiosk_without_classes_offers_no_form():
    k = Kiosk("ft-0001", Board(), None, port=0).start()
    try:
        base = f"http://127.0.0.1:{k.port}"
        assert "/report" not in urllib.request.urlopen(base + "/", timeout=5).read().decode()
        assert post(base + "/report", form(code="06010"))[0] == 404
    finally:
        k.stop()
