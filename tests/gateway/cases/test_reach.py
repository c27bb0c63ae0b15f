"""The bridge's adapters as data: the request each makes of a case message, what an
answer means, the backoff between tries, and the checked system setting."""

import json
from urllib.parse import parse_qs

import pytest
from gridlink.gateway.cases import reach as rc
from gridlink.gateway.queue import Invalid
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MESSAGE = {"key": "410106202611280001", "case_no": "410106202611280001", "code": "06010",
           "class_name": "暴露垃圾", "lat": 34.8205, "lon": 113.2871, "text": "桥下",
           "department_name": "环卫处", "deadline": "2026-11-28T10:00:00.000Z"}


def test_the_webhook_posts_the_message_as_json_with_the_key():
    method, url, headers, body = rc.request_for(
        {"adapter": "webhook", "url": "https://d.example/in", "api_key": "t"}, MESSAGE)
    assert (method, url) == ("POST", "https://d.example/in")
    assert headers["Idempotency-Key"] == MESSAGE["key"]
    assert headers["Authorization"] == "Bearer t"
    assert json.loads(body) == MESSAGE


def test_open311_posts_a_georeport_form():
    _, _, headers, body = rc.request_for(
        {"adapter": "open311", "url": "https://c.example/requests.json", "api_key": "k"},
        {**MESSAGE, "lat": None})
    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["Idempotency-Key"] == MESSAGE["key"]
    assert form["service_code"] == "06010" and form["long"] == "113.287100"
    assert "lat" not in form                                   # none given, none sent
    assert form["attribute[case_no]"] == MESSAGE["case_no"] and form["api_key"] == "k"
    assert form["description"] == ("案卷 410106202611280001 · 暴露垃圾 · 派遣 环卫处 · "
                                   "处置时限 2026-11-28T10:00:00.000Z · 桥下")


@pytest.mark.parametrize("status, body, expected", [
    (201, b'[{"service_request_id": "77"}]', ("sent", "77")),
    (200, b'[{"token": "t-1"}]', ("sent", "t-1")),
    (200, b'{"id": 5}', ("sent", "5")),
    (204, b"", ("sent", None)),
    (409, b"duplicate", ("sent", None)),
    (500, b"boom", ("retry", "HTTP 500: boom")),
    (429, b"", ("retry", "HTTP 429")),
    (400, b"bad", ("retry", "HTTP 400: bad")),
])
def test_what_an_answer_means(status, body, expected):
    assert rc.outcome("open311", status, body) == expected


def test_backoff_doubles_to_a_cap():
    assert [rc.backoff(n) for n in range(0, 5)] == [0.0, 2.0, 4.0, 8.0, 16.0]
    assert rc.backoff(20) == 600.0 and rc.backoff(10**6) == 600.0
    assert rc.backoff(3, base_s=1, cap_s=3) == 3


def test_the_city_platform_target_from_the_command_line():
    assert rc.parse_target("open311=https://c.example/requests.json") == {
        "adapter": "open311", "url": "https://c.example/requests.json"}
    for bad in ("https://c.example", "smtp=https://c", "webhook=c.example"):
        with pytest.raises(Invalid):
            rc.parse_target(bad)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["adapter", "url", "api_key", "timeout_s", "x"]),
                       st.one_of(st.none(), st.text(max_size=30), st.floats(), st.integers(),
                                 st.sampled_from(["webhook", "open311", "http://a.b/c"]))))
def test_a_setting_is_taken_whole_or_refused_with_invalid(value):
    try:
        got = rc.parse_reach(value)
    except Invalid:
        return
    assert got["adapter"] in rc.ADAPTERS and rc.URL.fullmatch(got["url"])
    assert set(got) <= {"adapter", "url", "api_key", "timeout_s"}
