"""The intake board in a real headless browser (Debian's chromium driven by playwright).

The whole chain runs: a private Mosquitto, the gateway runtime ingesting from it into a
SQLite store, and the HTTP app serving the board.  A report published by a "device"
while the page is open must appear in the list and on the map; an operator then claims
and accepts it from the page, and another operator's claim is shown as such: a 值班长
may take it over, a 受理员 may not.  Operators sign in on the page first.
"""

import hashlib
import io
import json
import os
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from gridlink.firmware.core.report import encode_report, make_report

from tests.support.board import add_operator, sign_in
from tests.support.intake_api import Api, Tokens
from tests.support.pages import needs_chromium

STANDARD = "GB/T 47678.5-2026"

pytestmark = [pytest.mark.browser, pytest.mark.broker, needs_chromium]


@pytest.fixture
def page_options():
    """The machine's zone and locale; a request that fails fails the test."""
    return {"zone": None, "locale": None, "failed_requests": True}


def report(grid_map, seq, *, at=(0.5, 0.5), code="06010", text="", photos=()):
    """A report from a point of the map (``at``: fractions of its bounding box)."""
    w, s, e, n = grid_map.bbox
    lon, lat = round(w + (e - w) * at[0], 6), round(s + (n - s) * at[1], 6)
    fix = {"lat": lat, "lon": lon, "alt": 110.0, "mode": 3, "status": 1, "sats": 9,
           "hdop": 0.9, "time": 1795752000.0 + seq}
    return make_report("pv-0001", seq, fix, None, "event", STANDARD, code,
                       grid=grid_map.locate(lon, lat), text=text, photos=photos, fix_age=0.5)


@pytest.fixture
def grid_file(tmp_path):
    """A compiled grid map of a synthetic layer in 上街区 (holes, two-part cells, gaps)."""
    from gridlink.firmware.core.gridmap import GridMap
    from gridlink.firmware.maps.synthetic import SyntheticLayer
    from gridlink.host.gridcompile import compile_layer

    data, _ = compile_layer(SyntheticLayer(cols=12, rows=9, seed=7, holes=0.05).layer)
    path = tmp_path / "grid.glgm"
    path.write_bytes(data)
    return path, GridMap(data)


class Device:
    """The MQTT side of a patrol vehicle: publishes reports, collects acks."""

    def __init__(self, broker, device="pv-0001"):
        self.device = device
        self.acks = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device)
        self.client.on_message = lambda c, u, m: self.acks.append(json.loads(m.payload))
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe(f"gridlink/v1/410106/{device}/ack", qos=1)
        self.client.loop_start()

    def send(self, rep):
        topic = f"gridlink/v1/410106/{self.device}/report"
        self.client.publish(topic, encode_report(rep), qos=1).wait_for_publish(5)

    def send_photo(self, report_id, data):
        sha = hashlib.sha256(data).hexdigest()
        header = json.dumps({"sha256": sha, "n": 0, "of": 1, "size": len(data)}).encode()
        topic = f"gridlink/v1/410106/{self.device}/photo/{report_id}/0"
        self.client.publish(topic, header + b"\n" + data, qos=1).wait_for_publish(5)

    def wait_acks(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.acks) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.acks) >= n, self.acks

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def gateway(broker, tmp_path, grid_file):
    """The gateway as ``gridlink gateway run --http`` assembles it: runtime, store, board."""
    from gridlink.gateway.service import Gateway

    gw = Gateway(broker=broker.url, db=f"sqlite:///{tmp_path}/intake.sqlite",
                 grid=str(grid_file[0]), http="127.0.0.1:0", photos=str(tmp_path / "photos"))
    gw.start()
    add_operator(gw.store, "alice", roles=("acceptor", "shift_lead"), display="张三")
    add_operator(gw.store, "carol", display="李四")
    yield gw.http, gw.store
    gw.stop()



def on_duty(store, device, *, lat, lon):
    """``device`` online at (lat, lon), carried by 监督员 s01, on duty from an hour ago."""
    from datetime import UTC, datetime, timedelta

    from gridlink.gateway.roster import Roster

    now = datetime.now(UTC)
    roster = Roster(store)
    roster.put_supervisor("s01", "王五")
    roster.carry("s01", device, since=(now - timedelta(hours=2)).isoformat())
    roster.put_duty("s01", (now - timedelta(hours=1)).isoformat(),
                    (now + timedelta(hours=1)).isoformat())
    with store.connect() as conn:
        conn.execute(store.sql(
            "INSERT INTO devices (device, district, state, last_seen, status, last_lat,"
            " last_lon, profile) VALUES (?, '410106', 'online', ?, '{}', ?, ?,"
            " 'patrol-vehicle')"), (device, now.isoformat(), lat, lon))


def jpeg_photo():
    from PIL import Image

    img = Image.new("RGB", (64, 48), (180, 90, 40))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=70)
    return buf.getvalue()


def webp_photo():
    """A WebP photo as the device's encoder makes it (camera.format webp), 80×60."""
    from gridlink.firmware.device import camera

    img = camera.SyntheticCamera((80, 60)).capture()
    data, _q = camera.encode_photo(img, (80, 60), 6000, camera.exif_bytes(None), "webp")
    assert data[8:12] == b"WEBP"
    return data


def test_live_report_then_claim_and_accept(gateway, broker, page, tmp_path, grid_file):
    server, gw_store = gateway
    _, grid_map = grid_file
    device = Device(broker)
    try:
        photo = jpeg_photo()
        sha = hashlib.sha256(photo).hexdigest()
        first = report(grid_map, 1, at=(0.3, 0.6), text="暴露垃圾",
                       photos=[{"sha256": sha, "bytes": len(photo)}])
        device.send(first)
        device.send_photo(first["id"], photo)
        device.wait_acks(1)

        page.goto(server.url + "/")
        page.fill("#si-user", "alice")
        page.fill("#si-pass", "wrong-password")
        page.click("#b-signin")
        page.wait_for_function("document.querySelector('#si-error').textContent.includes('错误')")
        sign_in(page, "alice")
        assert "张三" in page.locator("#who").inner_text()
        page.wait_for_selector(f'#reports li[data-id="{first["id"]}"]')
        assert page.locator("#n-pending").inner_text() == "1"
        # the map is drawn from the grid map itself, and the report's cell is marked
        assert page.locator("#cells path").count() == grid_map.n_cells
        page.wait_for_selector(f'#cells path.hit[data-grid="{first["grid"]}"]')
        page.wait_for_selector("#live.on")

        # a report arrives while the page is open: offered as "1 条新上报", it shows up
        # without a reload; its photo is a WebP, what a shipped Pi profile sends
        webp = webp_photo()
        webp_sha = hashlib.sha256(webp).hexdigest()
        second = report(grid_map, 2, at=(0.7, 0.35), code="09001", text="占道经营",
                        photos=[{"sha256": webp_sha, "bytes": len(webp)}])
        device.send(second)
        device.send_photo(second["id"], webp)
        device.wait_acks(2)
        page.click("#new-reports:not([hidden])")
        row = page.wait_for_selector(f'#reports li[data-id="{second["id"]}"]', timeout=10000)
        assert "占道经营" in row.inner_text()
        page.wait_for_selector(f'#points circle[data-id="{second["id"]}"]')
        page.wait_for_function("document.querySelector('#n-pending').textContent === '2'")
        page.click(f'#reports li[data-id="{second["id"]}"]')
        page.wait_for_selector(f'#detail-body[data-id="{second["id"]}"]')
        page.wait_for_function("document.querySelector('#d-photos img') && "
                               "document.querySelector('#d-photos img').naturalWidth === 80")
        assert page.locator("#d-photos img").get_attribute("src") == f"/api/photos/{webp_sha}"

        # details with the photo, then claim and accept
        page.click(f'#reports li[data-id="{first["id"]}"]')
        page.wait_for_selector(f'#detail-body[data-id="{first["id"]}"]')
        assert "市容环境类" in page.locator("#d-fields").inner_text()
        img = page.wait_for_selector("#d-photos img")
        page.wait_for_function("document.querySelector('#d-photos img').naturalWidth === 64")
        assert img.get_attribute("src") == f"/api/photos/{sha}"

        page.click("#b-claim")
        page.wait_for_selector("#message.done")
        assert "已签收，至" in page.locator("#message").inner_text()
        page.wait_for_selector(f'#reports li.held[data-id="{first["id"]}"]')
        page.screenshot(path=str(tmp_path / "board-claimed.png"))

        page.fill("#case-no", "SJ-2026-0001")
        page.click("#b-accept")
        page.click("#b-confirm")
        page.wait_for_function(
            "document.querySelector('#message').textContent.includes('SJ-2026-0001')")
        page.wait_for_selector(f'#reports li[data-id="{first["id"]}"]', state="detached")
        page.wait_for_function("document.querySelector('#n-accepted').textContent === '1'")

        api = Api(server.url, Tokens(gw_store))
        _, stored = api.get(f"/api/reports/{first['id']}")
        assert stored["state"] == "accepted" and stored["case_no"] == "SJ-2026-0001"
        assert stored["decided_by"] == "alice"
        # the report's history is in its detail: who claimed, who decided
        page.wait_for_selector('#d-history li[data-action="report.accept"]', state="attached")
        history = page.locator("#d-history").text_content()
        assert "alice 签收" in history and "alice 立案 SJ-2026-0001" in history

        # the accepted case is found under its state; a 核查 task only once the
        # department has reported back (处置反馈)
        page.select_option("#f-status", "accepted")
        page.click(f'#reports li.accepted[data-id="{first["id"]}"]')
        page.wait_for_function(
            "document.querySelector('#b-task').textContent.includes('核查')")
        assert page.locator("#b-task").is_disabled()
        lead = Api(server.url, Tokens(gw_store, roles={"lead": ("shift_lead",),
                                                       "dept": ("department",)}))
        lead.call("PUT", "/api/departments/sanitation", {"name": "环卫处", "classes": ["06"]},
                  user="lead")
        case = "/api/cases/SJ-2026-0001"
        lead.call("POST", case + "/dispatch", {"department": "sanitation"}, user="lead")
        lead.call("POST", case + "/start", {}, user="dept")
        lead.call("POST", case + "/feedback", {"photos": ["ab" * 32]}, user="dept")
        # a vehicle whose 监督员 is on duty now: the message names it and the rule
        on_duty(gw_store, "pv-0002", lat=first["fix"]["lat"], lon=first["fix"]["lon"])
        page.click(f'#reports li.accepted[data-id="{first["id"]}"]')
        page.wait_for_function("!document.querySelector('#b-task').disabled")
        page.click("#b-task")
        page.wait_for_function("document.querySelector('#message').textContent.includes('核查')")
        assert "pv-0002 · 最近在岗设备" in page.locator("#message").text_content()
        _, tasks = api.get(f"/api/tasks?report_id={first['id']}")
        assert [(t["type"], t["created_by"]) for t in tasks] == [("check", "alice")]
        page.select_option("#f-status", "pending")

        # another operator holds the second report: the page says so; the 值班长 may
        # take it over, a 受理员 (after signing out and in) may not claim it
        api.post(f"/api/reports/{second['id']}/claim", {"operator": "bob"})
        page.wait_for_selector(f'#reports li.held[data-id="{second["id"]}"]')
        page.click(f'#reports li[data-id="{second["id"]}"]')
        page.wait_for_function(
            "document.querySelector('#d-fields').textContent.includes('bob 已签收')")
        assert "接管" in page.locator("#b-claim").inner_text()
        assert page.locator("#b-claim").is_enabled()
        page.click("#b-signout")
        sign_in(page, "carol")
        page.click(f'#reports li[data-id="{second["id"]}"]')
        page.wait_for_function(
            "document.querySelector('#d-fields').textContent.includes('bob 已签收')")
        assert page.locator("#b-claim").is_disabled()
        assert page.locator("#b-accept").is_disabled()
        page.screenshot(path=str(tmp_path / "board.png"))
        shots = os.environ.get("GRIDLINK_SCREENSHOTS")
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(shots) / "board.png"))
    finally:
        device.close()


def test_board_loads_nothing_from_outside(gateway, page):
    server, _ = gateway
    outside = []
    page.on("request", lambda req: outside.append(req.url)
            if not req.url.startswith(server.url) else None)
    page.goto(server.url + "/board/")
    sign_in(page, "carol")
    page.wait_for_selector("#reports[data-loaded='1']")
    assert outside == []


def send_media(device, report_id, kind, data):
    """Publish ``data`` as the media chunks of ``report_id`` (as the device's lane does)."""
    from gridlink.firmware.core import messages

    sha = hashlib.sha256(data).hexdigest()
    parts = [data[i:i + 16384] for i in range(0, len(data), 16384)]
    for n, part in enumerate(parts):
        payload = messages.make_media_chunk(kind, sha, n, len(parts), len(data), part,
                                            hashlib.sha256(part).hexdigest())
        topic = f"gridlink/v1/410106/{device.device}/media/{report_id}/{n}"
        device.client.publish(topic, payload, qos=1).wait_for_publish(5)
    return sha


def test_a_reports_clip_plays_with_the_part_before_the_press_marked_and_its_memo_plays(
        gateway, broker, page, tmp_path, grid_file):
    from gridlink.firmware.device import memo

    from tests.support.clips import tiny_clip
    from tests.support.waiting import wait_until

    server, gw_store = gateway
    _, grid_map = grid_file
    device = Device(broker)
    try:
        rep = report(grid_map, 1, text="车辆巡查")
        device.send(rep)
        device.wait_acks(1)
        clip = tiny_clip(tmp_path, seconds=3.0, trigger_at=1.5)
        clip_sha = send_media(device, rep["id"], "clip", clip)
        memo_sha = send_media(device, rep["id"], "memo", memo.encode_memo(
            memo.synthetic_memo(2)))
        api = Api(server.url, Tokens(gw_store))
        wait_until(lambda: len(api.get(f"/api/reports/{rep['id']}")[1]["media"]) == 2, 20,
                   "clip and memo stored")
        listed = {m["kind"]: m for m in api.get(f"/api/reports/{rep['id']}")[1]["media"]}
        at, seconds = listed["clip"]["trigger_offset_s"], listed["clip"]["seconds"]
        assert 0.5 < at < seconds

        page.goto(server.url + "/")
        sign_in(page, "alice")
        page.click(f'#reports li[data-id="{rep["id"]}"]')
        video = page.wait_for_selector(f'#d-media video[data-sha256="{clip_sha}"]')
        assert video.get_attribute("src") == f"/api/media/{clip_sha}"
        # the browser reads the clip (H.264 in MP4) over the range route
        page.wait_for_function("document.querySelector('#d-media video').readyState >= 1 && "
                               "document.querySelector('#d-media video').duration > 1",
                               timeout=15000)
        width = page.evaluate("parseFloat(document.querySelector('#d-media .pre').style.width)")
        assert abs(width - 100 * at / seconds) < 0.5
        page.evaluate("document.querySelector('#d-media video').currentTime = 0.2")
        page.wait_for_function("document.querySelector('#d-media figcaption .before')"
                               " !== null")
        assert "before the press" in page.locator("#d-media figure.clip figcaption").inner_text()
        page.evaluate(f"document.querySelector('#d-media video').currentTime = {at + 0.5}")
        page.wait_for_function("document.querySelector('#d-media figure.clip figcaption')"
                               ".textContent.includes('after the press')")
        page.wait_for_function("document.querySelector('#d-media audio').readyState >= 1 && "
                               "document.querySelector('#d-media audio').duration > 1.5",
                               timeout=15000)
        assert page.locator("#d-media audio").get_attribute("src") == f"/api/media/{memo_sha}"
        page.screenshot(path=str(tmp_path / "board-media.png"))

        # the operator asks the grid's vehicle for its last 30 s; the clip comes back as
        # the task result's media and shows under the report, marked as the task's
        assert api.call("PUT", f"/api/assignments/{rep['grid']}", {"device": "pv-0001"})[0] \
            == 200
        page.click("#b-clip")
        page.wait_for_function("document.querySelector('#message').textContent"
                               ".includes('pv-0001 · 网格指定设备 (sent)')")
        (task,) = api.get(f"/api/tasks?report_id={rep['id']}")[1]
        assert task["type"] == "clip"
        result = make_report("pv-0001", 2, None, time.time(), "event", STANDARD, "06010",
                             source="task", text="视频", task=task["id"], result="recorded")
        device.client.publish("gridlink/v1/410106/pv-0001/task/result",
                              encode_report(result), qos=1).wait_for_publish(5)
        device.wait_acks(2)
        (tmp_path / "last").mkdir()
        last = tiny_clip(tmp_path / "last", seconds=3.5, trigger_at=2.0)
        last_sha = send_media(device, result["id"], "clip", last)
        page.wait_for_selector(f'#d-media video[data-sha256="{last_sha}"]', timeout=20000)
        page.wait_for_function(
            "[...document.querySelectorAll('#d-media figure.clip figcaption')]"
            f".some((c) => c.textContent.includes('任务 {task['id']}'))")
        page.screenshot(path=str(tmp_path / "board-clip-task.png"))
    finally:
        device.close()


def test_the_devices_list_shows_each_devices_update_slots(gateway, broker, page):
    server, _ = gateway
    status = {"v": 1, "device": "pv-0002", "state": "online", "time": None, "fix": None,
              "outbox": {"reports": 0, "track": 0}, "disk_free": 1 << 30, "cpu_temp": None,
              "uptime": 5.0, "firmware": "0.1.0", "codebook": "GB/T 47678.5-2026",
              "profile": "patrol-vehicle",
              "health": {"mem_free": 61440, "wakes": 289, "resets": 2,
                         "reset_cause": "watchdog"},
              "ota": {"installed": "1.0", "slot": "a", "slots": {"a": "1.0", "b": "1.1"},
                      "pending": None, "failed": {
                          "version": "1.1", "reason": "health check not passed within its boots"}}}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pv-0002")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        client.publish("gridlink/v1/410106/pv-0002/status", json.dumps(status), qos=1,
                       retain=True).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()
    page.goto(server.url + "/board/")
    sign_in(page, "carol")
    line = page.wait_for_selector('#devices li[data-device="pv-0002"] .ota', timeout=15000)
    assert line.inner_text() == ("版本 1.0 (slot a; a 1.0, b 1.1) · failed 1.1: "
                                 "health check not passed within its boots")
    health = page.query_selector('#devices li[data-device="pv-0002"] .health')
    assert health.inner_text() == "内存 60 KiB · 唤醒 289 · 重启 2 (watchdog)"


def test_the_fleet_shows_desired_against_reported_configuration(broker, tmp_path, page):
    """A group change made over the API: the board's fleet list shows each device's
    desired and reported version, the drifting fields and the last refusal."""
    from gridlink.fleet.config import make_key
    from gridlink.gateway.service import Gateway

    from tests.gateway.test_api_tasks import add_device
    from tests.gateway.test_fleet_config import report_version

    make_key(tmp_path / "config.pem")
    gw = Gateway(broker=broker.url, db=f"sqlite:///{tmp_path}/intake.sqlite",
                 http="127.0.0.1:0", photos=str(tmp_path / "photos"),
                 config_key=str(tmp_path / "config.pem")).start()
    try:
        add_operator(gw.store, "tom", roles=("technician",))
        add_device(gw.store, "pv-0001")
        add_device(gw.store, "pv-0002")
        api = Api(gw.http.url, Tokens(gw.store, roles={"tech": ("technician",)}))
        status, change = api.post("/api/fleet/config", {
            "scope": "profile", "target": "patrol-vehicle", "operator": "tech",
            "settings": {"buttons": {"garbage": {"kind": "event", "code": "07001"}}}})
        assert status == 201
        report_version(gw.store, "pv-0001", change["version"])
        report_version(gw.store, "pv-0002", None, {
            "version": 1, "reason": "signature", "field": None,
            "message": "not signed by the centre's key"})
        page.goto(gw.http.url + "/")
        sign_in(page, "tom")
        ok = page.wait_for_selector('#devices li[data-device="pv-0001"] .config')
        assert ok.inner_text() == "config desired v1 · reported v1"
        bad = page.wait_for_selector('#devices li[data-device="pv-0002"] .config.drift')
        assert bad.inner_text() == ("config desired v1 · reported v– · drift: "
                                    "buttons.garbage.code, buttons.garbage.kind · "
                                    "refused v1: signature")
        assert bad.get_attribute("title") == "not signed by the centre's key"
    finally:
        page.goto("about:blank")     # no refresh in flight when the gateway goes
        gw.stop()


def test_the_cases_list_shows_each_cases_state_and_follows_its_moves(gateway, page):
    """A case dispatched over the API shows in the board's case list with its state
    (派遣); a move made while the page is open (处置中) shows without a reload; a click
    opens the case's report."""
    from tests.support.intake_api import add_report

    server, store = gateway
    api = Api(server.url, Tokens(store, roles={"dept": ("department",)}))
    rid = add_report(store, 1, code="06010")
    status, _ = api.call("PUT", "/api/departments/huanwei",
                         {"name": "上街区环卫中心", "classes": ["06"]})
    assert status == 200
    status, accepted = api.post(f"/api/reports/{rid}/accept", {})
    assert status == 200
    no = accepted["case_no"]
    status, _ = api.post(f"/api/cases/{no}/dispatch", {"department": "huanwei"})
    assert status == 200
    page.goto(server.url + "/board/")
    sign_in(page, "alice")
    item = f'#cases li[data-case="{no}"]'
    assert page.wait_for_selector(item + " .case-state").inner_text() == "派遣"
    assert "huanwei" in page.locator(item + " .r-meta").inner_text()
    assert page.locator("#cases-total").inner_text() == "(1)"
    page.wait_for_selector("#live.on")
    status, _ = api.post(f"/api/cases/{no}/start", {"operator": "dept"})
    assert status == 200
    page.wait_for_selector(f'{item}.handling .case-state:text-is("处置中")', timeout=10000)
    page.click(item)
    page.wait_for_selector(f'#detail-body[data-id="{rid}"]')
    assert "处置中 (handling)" in page.locator("#d-fields").inner_text()


def test_an_urgent_report_raises_the_alert_and_tops_the_list_and_repeats_collapse(
        gateway, broker, page, grid_file):
    """Published while the page is open: an urgent report (突发事件) shows the header's
    alert and stands first, marked; two reports of one class at one spot are marked as
    likely the same; a fixed terminal's second motion alert joins its first (one row)."""
    server, _ = gateway
    grid_map = grid_file[1]
    vehicle, terminal = Device(broker), Device(broker, "ft-0001")
    try:
        vehicle.send(report(grid_map, 1))
        vehicle.send(report(grid_map, 2))                  # the same spot and class
        page.goto(server.url + "/board/")
        sign_in(page, "alice")
        page.wait_for_selector("#live.on")
        page.wait_for_selector('#reports li[data-id="pv-0001:000000000002"] .likely-same')
        assert page.locator("#urgent-alert").is_hidden()
        urgent = report(grid_map, 3, at=(0.2, 0.3), code="07001")
        urgent["urgent"] = True
        vehicle.send(urgent)
        page.wait_for_selector("#urgent-alert:not([hidden])", timeout=10000)
        assert page.locator("#n-urgent").inner_text() == "1"
        first = page.locator("#reports li").first
        assert first.get_attribute("data-id") == urgent["id"]
        assert first.locator(".badge.urgent").inner_text() == "突发"
        for seq in (1, 2):
            alert = make_report("ft-0001", seq, None, 1795752000.0 + seq, "event", STANDARD,
                                "06010", source="sensor", text="人员聚集",
                                fixed_position=(grid_map.bbox[1] + 0.001,
                                                grid_map.bbox[0] + 0.001))
            terminal.send(alert)
        # routine reports wait behind "N 条新上报" (rows stay in place): the operator loads
        # them until the second alert has joined the first (at its commit)
        from tests.support.waiting import wait_until

        def joined():
            # one step in the page: the button may go between a look and a click (the list
            # reloads itself for the urgent report), and a click then waits 30 s for it
            page.evaluate("() => { const b = document.getElementById('new-reports');"
                          " if (!b.hidden) b.click(); }")
            return (page.locator('#reports li[data-id="ft-0001:000000000001"] .repeats')
                    .count() == 1)

        wait_until(joined, 20, "the terminal's alerts as one row")
        assert page.locator('#reports li[data-id="ft-0001:000000000001"] .repeats') \
            .inner_text() == "重复报警 ×2"
        assert page.locator('#reports li[data-id="ft-0001:000000000002"]').count() == 0
    finally:
        vehicle.close()
        terminal.close()


def test_the_devices_panel_shows_a_revoked_certificate_and_one_due_for_renewal(
        broker, tmp_path, page):
    """With the district CRL (--crl), each device's certificate state is in the fleet view
    and on the board: revoked, or its end with renewal due within 30 days."""
    import datetime as dt

    from gridlink.gateway.service import Gateway

    from tests.gateway.test_api_tasks import add_device
    from tests.support.pki import make_pki
    from tests.support.probing_rig import cert_serial, write_crl

    pki = make_pki(tmp_path / "pki")
    crl = write_crl(pki, tmp_path / "crl.pem", revoked=["pv-0001"])
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=10)).strftime("%Y-%m-%d")
    (tmp_path / "issued.json").write_text(json.dumps([
        {"device": d, "serial": format(cert_serial(pki, d), "X"), "not_after": soon}
        for d in ("pv-0001", "pv-0002")]))
    gw = Gateway(broker=broker.url, db=f"sqlite:///{tmp_path}/intake.sqlite",
                 http="127.0.0.1:0", photos=str(tmp_path / "photos"), crl=str(crl)).start()
    try:
        add_operator(gw.store, "tom", roles=("technician",))
        add_device(gw.store, "pv-0001")
        add_device(gw.store, "pv-0002")
        page.goto(gw.http.url + "/")
        sign_in(page, "tom")
        revoked = page.wait_for_selector('#devices li[data-device="pv-0001"] .identity')
        assert revoked.inner_text() == "证书已吊销 revoked"
        due = page.wait_for_selector('#devices li[data-device="pv-0002"] .identity.renew-due')
        assert due.inner_text() == f"证书到期 {soon} · 需换发 renew now"
    finally:
        page.goto("about:blank")
        gw.stop()


def test_a_technician_changes_a_buttons_class_for_a_group_from_the_board(broker, tmp_path,
                                                                         page):
    """The board's configuration form (技术员 only): the change is signed and sent to
    every device of the profile, each listed with the new desired version; a class not in
    the code book is refused with the reason and nothing is sent."""
    from gridlink.fleet.config import make_key
    from gridlink.gateway.service import Gateway

    from tests.gateway.test_api_tasks import add_device

    make_key(tmp_path / "config.pem")
    gw = Gateway(broker=broker.url, db=f"sqlite:///{tmp_path}/intake.sqlite",
                 http="127.0.0.1:0", photos=str(tmp_path / "photos"),
                 config_key=str(tmp_path / "config.pem")).start()
    try:
        add_operator(gw.store, "tom", roles=("technician",))
        add_operator(gw.store, "ann")
        for device in ("pv-0001", "pv-0002"):
            add_device(gw.store, device)
        page.goto(gw.http.url + "/")
        sign_in(page, "ann")
        page.wait_for_selector("#devices li")
        assert page.locator("#config-form").is_hidden()        # not an acceptor's
        page.click("#b-signout")
        sign_in(page, "tom")
        page.wait_for_selector("#config-form:not([hidden])")
        page.fill("#cf-target", "patrol-vehicle")
        page.fill("#cf-button", "garbage")
        page.fill("#cf-code", "99999")
        page.click("#cf-send")
        refused = page.wait_for_selector("#cf-message.error")
        assert "99999" in refused.inner_text() and "未下发" in refused.inner_text()
        page.fill("#cf-code", "07001")
        page.click("#cf-send")
        done = page.wait_for_selector("#cf-message.done")
        assert done.inner_text() == "配置 v1 已下发 2/2 台设备"
        for device in ("pv-0001", "pv-0002"):
            line = page.wait_for_selector(f'#devices li[data-device="{device}"] .config')
            assert line.inner_text().startswith("config desired v1")
    finally:
        page.goto("about:blank")
        gw.stop()
