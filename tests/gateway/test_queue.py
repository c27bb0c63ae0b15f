"""Intake queue HTTP API: listing and filters, claims with leases, accept/reject idempotence.

The app runs under a real uvicorn on a free port and is driven over HTTP; the store is the
real one (SQLite here, PostgreSQL in the parametrised race test).
"""

import base64
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from gridlink.firmware.codebooks import load_books
from gridlink.gateway.api import create_app
from gridlink.gateway.clock import wire_time
from gridlink.gateway.httpserver import BackgroundServer
from gridlink.gateway.ingest import Ingest, Item
from gridlink.gateway.photos import PhotoDir
from gridlink.gateway.store import open_store
from gridlink.gateway.validate import Validator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.gateway_rig import encode, report
from tests.support.gateway_rig import topic as rig_topic
from tests.support.intake_api import T0, Api, Clock, Tokens, add_report, iso


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/intake.db")
    yield s
    s.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def api(store, clock, tmp_path):
    app = create_app(store, clock=clock, photos_dir=tmp_path / "photos", poll_interval=0.2)
    with BackgroundServer(app) as server:
        yield Api(server.url, Tokens(store))


# ---------------------------------------------------------------- listing


def test_pending_list_filters_and_pages(api, store):
    a = add_report(store, 1, code="06010", grid="410106001001001")
    b = add_report(store, 2, code="01001", kind="component", grid="410106002003004",
                   flags=("no_fix",))
    c = add_report(store, 3, code="06012", grid="410106001001002", grid_mismatch=1,
                   device="pv-0002")
    status, page = api.get("/api/reports")
    assert status == 200
    assert page["total"] == 3
    assert [r["id"] for r in page["items"]] == [c, b, a]  # newest first

    def ids(query):
        status, page = api.get("/api/reports?" + query)
        assert status == 200, page
        return [r["id"] for r in page["items"]]

    assert ids("grid=410106001") == [c, a]
    assert ids("street=410106002") == [b]
    assert ids("code=0601") == [c, a]
    assert ids("kind=component") == [b]
    assert ids("device=pv-0002") == [c]
    assert ids("flag=no_fix") == [b]
    assert ids("flag=grid_mismatch") == [c]
    assert ids("since=2026-11-28T02:00:02Z") == [c, b]
    assert ids("until=2026-11-28T02:00:02Z") == [a]
    assert ids("order=asc&limit=2") == [a, b]
    assert ids("order=asc&limit=2&offset=2") == [c]
    assert ids("until=2026-11-30T00:00:00Z") == [c, b, a]     # days 29-31 are days too
    assert ids("since=2026-10-31T00:00:00Z&until=2026-11-29") == [c, b, a]


def test_newest_by_receive_time_and_class_names_as_filters(api, store):
    """sort=received lists by when the gateway got each report (a device clock can be
    days off); a class or major class name filters as its codes do."""
    late = add_report(store, 1, code="06010")  # captured first, received last
    with store.connect() as conn:
        conn.execute(store.sql("UPDATE reports SET received_at = ? WHERE id = ?"),
                     (iso(T0 + timedelta(hours=1)), late))
    other = add_report(store, 2, code="09001")
    litter = add_report(store, 3, code="06012")

    def ids(query):
        status, page = api.get("/api/reports?" + urllib.parse.quote(query, safe="=&"))
        assert status == 200, page
        return [r["id"] for r in page["items"]]

    assert ids("sort=received") == [late, litter, other]
    assert ids("sort=queue") == ids("") == [litter, other, late]
    assert ids("code=暴露垃圾") == [late]
    assert ids("code=市容环境类&sort=received") == [late, litter]
    status, body = api.get("/api/reports?code=" + urllib.parse.quote("不存在的类"))
    assert status == 400 and "no class or major class is named '不存在的类'" in body["detail"]
    status, body = api.get("/api/reports?sort=capture")
    assert status == 422 and body["detail"][0]["loc"] == ["query", "sort"]


def test_listing_names_the_class_from_the_code_books(api, store):
    rid = add_report(store, 1, code="01001", kind="component")
    status, report = api.get(f"/api/reports/{rid}")
    assert status == 200
    assert report["class_name"] == "供水井盖"
    assert report["major_name"] == "市政公用设施"


@pytest.mark.parametrize("query, field", [
    ("flag=on_fire", "flag"), ("grid=41a", "grid"), ("since=yesterday", "since"),
    ("status=lost", "status"), ("since=2026-02-30T00:00:00Z", "since"),
    ("until=2026-04-31", "until"),
])
def test_bad_filter_is_a_clear_400(api, store, query, field):
    add_report(store, 1)
    status, body = api.get("/api/reports?" + query)
    assert status in (400, 422)
    assert field in json.dumps(body)


def test_unknown_report_is_404(api):
    status, body = api.post("/api/reports/pv-0001:000000000099/claim", {"operator": "op-a"})
    assert status == 404
    assert "pv-0001:000000000099" in body["detail"]


@pytest.mark.parametrize("backend", [
    "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_dead_letters_say_why_a_devices_messages_were_refused(tmp_path, backend):
    """Rejections written by the real ingest path, read back newest first, by device, a
    page at a time, since a time — on both back ends."""
    store = open_store(dict(_stores(tmp_path))[backend])
    try:
        with BackgroundServer(create_app(store)) as server:
            _dead_letter_pages(Api(server.url, Tokens(store)), store, tmp_path)
    finally:
        if backend == "postgres":
            store.drop_schema()
        store.close()


def _dead_letter_pages(api, store, tmp_path):
    t = 1_795_000_000.0
    judge = Validator(None, load_books())
    messages = [(rig_topic("pv-0003", "report"), encode(report("pv-0003", s, code="99999")))
                for s in (1, 2, 3)]
    messages += [(rig_topic("pv-0004", "report"), b"\xff\x00"),
                 (rig_topic("pv-0003", "report"), encode(report("pv-0003", 4)))]
    batch = [Item(tp, p, t + i, judge.decode(tp, p, t + i)) for i, (tp, p) in enumerate(messages)]
    Ingest(store, PhotoDir(tmp_path / "photos")).commit(batch)
    assert batch[-1].outcome == "accepted"  # a good report is no dead letter

    status, page = api.get("/api/dead-letters")
    assert status == 200 and page["next"] is None
    assert [d["device"] for d in page["items"]] == ["pv-0004", "pv-0003", "pv-0003", "pv-0003"]
    garbage, third = page["items"][:2]
    assert garbage["payload_encoding"] == "base64"
    assert base64.b64decode(garbage["payload"]) == b"\xff\x00"
    assert "99999" in third["reason"] and json.loads(third["payload"])["seq"] == 3
    assert third["topic"] == "gridlink/v1/410106/pv-0003/report"

    def seqs(page):
        return [json.loads(d["payload"])["seq"] for d in page["items"]]

    status, first = api.get("/api/dead-letters?device=pv-0003&limit=2")
    assert status == 200 and seqs(first) == [3, 2] and first["next"]
    status, rest = api.get(f"/api/dead-letters?device=pv-0003&limit=2&before={first['next']}")
    assert seqs(rest) == [1] and rest["next"] is None
    status, recent = api.get("/api/dead-letters?since=" + wire_time(t + 2))
    assert [d["device"] for d in recent["items"]] == ["pv-0004", "pv-0003"]
    assert api.get("/api/dead-letters?device=pv-0009")[1] == {"items": [], "next": None}


@pytest.mark.parametrize("query, field", [
    ("since=yesterday", "since"), ("limit=0", "limit"), ("limit=501", "limit"),
    ("before=0", "before"), ("since=2025-02-29T00:00:00Z", "since"),
])
def test_bad_dead_letter_query_is_a_clear_error(api, query, field):
    status, body = api.get("/api/dead-letters?" + query)
    assert status in (400, 422)
    assert field in json.dumps(body)


# ---------------------------------------------------------------- claims


def test_claim_conflict_names_holder_and_lease_and_lease_expires(api, store, clock):
    rid = add_report(store, 1)
    status, claim = api.post(f"/api/reports/{rid}/claim", {"operator": "alice", "lease_s": 60})
    assert status == 200
    assert claim["holder"] == "alice"
    assert claim["lease_until"] == iso(T0 + timedelta(seconds=60))

    status, body = api.post(f"/api/reports/{rid}/claim", {"operator": "bob"})
    assert status == 409
    assert body["holder"] == "alice"
    assert body["lease_until"] == claim["lease_until"]
    assert "alice" in body["detail"]

    # Same request twice: same holder, lease renewed, no conflict.
    status, again = api.post(f"/api/reports/{rid}/claim", {"operator": "alice", "lease_s": 60})
    assert status == 200 and again["holder"] == "alice"

    # bob cannot decide a report alice holds either.
    status, body = api.post(f"/api/reports/{rid}/accept", {"operator": "bob"})
    assert status == 409 and body["holder"] == "alice"

    clock.advance(61)
    status, page = api.get("/api/reports?held=true")
    assert page["total"] == 0
    status, claim = api.post(f"/api/reports/{rid}/claim", {"operator": "bob"})
    assert status == 200 and claim["holder"] == "bob"


def test_release_gives_the_report_back(api, store):
    rid = add_report(store, 1)
    api.post(f"/api/reports/{rid}/claim", {"operator": "alice"})
    status, _ = api.post(f"/api/reports/{rid}/release", {"operator": "alice"})
    assert status == 200
    status, claim = api.post(f"/api/reports/{rid}/claim", {"operator": "bob"})
    assert status == 200 and claim["holder"] == "bob"


def test_the_actor_is_the_signed_in_operator_not_the_body(api, store):
    rid = add_report(store, 1)
    status, claim = api.call("POST", f"/api/reports/{rid}/claim", {"operator": "mallory"},
                             user="alice")
    assert status == 200 and claim["holder"] == "alice"
    status, decision = api.call("POST", f"/api/reports/{rid}/accept", {"operator": "mallory"},
                                user="alice")
    assert status == 200 and decision["decided_by"] == "alice"


# ---------------------------------------------------------------- decisions


def test_accept_is_idempotent_and_numbers_cases(api, store):
    r1, r2 = add_report(store, 1), add_report(store, 2)
    api.post(f"/api/reports/{r1}/claim", {"operator": "alice"})
    status, first = api.post(f"/api/reports/{r1}/accept", {"operator": "alice"})
    assert status == 200
    assert first["state"] == "accepted"
    assert first["case_no"].startswith("41010620261128")
    status, second = api.post(f"/api/reports/{r1}/accept", {"operator": "alice"})
    assert status == 200 and second == first

    status, other = api.post(f"/api/reports/{r2}/accept", {"operator": "alice"})
    assert status == 200 and other["case_no"] != first["case_no"]

    # conflicting decisions
    status, body = api.post(f"/api/reports/{r1}/reject", {"operator": "alice", "reason": "dup"})
    assert status == 409 and body["state"] == "accepted" and body["case_no"] == first["case_no"]
    status, body = api.post(f"/api/reports/{r1}/accept", {"operator": "alice", "case_no": "X-1"})
    assert status == 409
    # accepted reports leave the pending list
    status, page = api.get("/api/reports")
    assert page["total"] == 0
    status, page = api.get("/api/reports?status=accepted")
    assert page["total"] == 2


def test_case_numbers_count_per_day_of_beijing_time(api, store, clock):
    # the centre's day runs 16:00 to 16:00 UTC: a case at 07:30 in Zhengzhou is the new
    # day's, though it is still the day before in UTC
    ids = [add_report(store, n) for n in range(1, 5)]

    def accept(rid):
        status, body = api.post(f"/api/reports/{rid}/accept", {"operator": "alice"})
        assert status == 200
        return body["case_no"]

    clock.t = datetime(2026, 11, 28, 15, 59, 59, tzinfo=UTC)  # 23:59:59 in Beijing
    assert accept(ids[0]) == "410106202611280001"
    clock.advance(1)  # midnight in Beijing
    assert [accept(ids[1]), accept(ids[2])] == ["410106202611290001", "410106202611290002"]
    clock.t = datetime(2026, 11, 29, 15, 0, tzinfo=UTC)  # 23:00 on the 29th in Beijing
    assert accept(ids[3]) == "410106202611290003"


def test_accept_with_given_case_number_and_duplicate_number(api, store):
    r1, r2 = add_report(store, 1), add_report(store, 2)
    status, body = api.post(f"/api/reports/{r1}/accept", {"operator": "op-a", "case_no": "SJ-7"})
    assert status == 200 and body["case_no"] == "SJ-7"
    status, body = api.post(f"/api/reports/{r1}/accept", {"operator": "op-a", "case_no": "SJ-7"})
    assert status == 200 and body["case_no"] == "SJ-7"
    status, body = api.post(f"/api/reports/{r2}/accept", {"operator": "op-a", "case_no": "SJ-7"})
    assert status == 409 and body["report_id"] == r1
    status, report = api.get(f"/api/reports/{r2}")
    assert report["state"] == "pending"


def test_reject_needs_a_reason_and_is_idempotent(api, store):
    rid = add_report(store, 1)
    status, body = api.post(f"/api/reports/{rid}/reject", {"operator": "op-a", "reason": " "})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "reason"]  # the schema's
    status, body = api.post(f"/api/reports/{rid}/reject",
                            {"operator": "op-a", "reason": "\u3000"})  # the queue's own check
    assert status == 422 or (status == 400 and "reason" in body["detail"])
    dup = {"operator": "op-a", "reason": "重复上报"}
    status, first = api.post(f"/api/reports/{rid}/reject", dup)
    assert status == 200 and first["state"] == "rejected" and first["reason"] == "重复上报"
    status, again = api.post(f"/api/reports/{rid}/reject", dup)
    assert status == 200 and again == first
    status, body = api.post(f"/api/reports/{rid}/reject", {"operator": "op-a", "reason": "other"})
    assert status == 409 and body["reason"] == "重复上报"
    status, body = api.post(f"/api/reports/{rid}/accept", {"operator": "op-a"})
    assert status == 409 and body["state"] == "rejected"
    status, body = api.post(f"/api/reports/{rid}/claim", {"operator": "op-b"})
    assert status == 409 and body["state"] == "rejected"


def test_summary_counts(api, store):
    r1, _ = add_report(store, 1), add_report(store, 2)
    api.post(f"/api/reports/{r1}/reject", {"operator": "op-a", "reason": "no"})
    status, summary = api.get("/api/summary")
    assert status == 200
    assert summary["reports"]["pending"] == 1
    assert summary["reports"]["rejected"] == 1
    assert summary["reports"]["total"] == 2


# ---------------------------------------------------------------- races, on both back ends


def _stores(tmp_path):
    yield "sqlite", f"sqlite:///{tmp_path}/race.db"
    yield "postgres", f"postgresql://postgres@127.0.0.1:5432/test?schema=t_{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize("backend", [
    "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_racing_claims_and_decisions_have_one_winner(tmp_path, backend):
    url = dict(_stores(tmp_path))[backend]
    store = open_store(url)
    try:
        app = create_app(store)
        rids = [add_report(store, n) for n in range(1, 6)]
        with BackgroundServer(app) as server:
            api = Api(server.url, Tokens(store))
            for rid in rids:
                results = []

                def race(op, rid=rid, results=results):
                    results.append((op, *api.post(f"/api/reports/{rid}/claim", {"operator": op})))

                threads = [threading.Thread(target=race, args=(f"op{i}",)) for i in range(4)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                winners = [r for r in results if r[1] == 200]
                losers = [r for r in results if r[1] == 409]
                assert len(winners) == 1 and len(losers) == 3
                assert all(r[2]["holder"] == winners[0][0] for r in losers)

            decided = []

            def decide(n):
                verb = "accept" if n % 2 else "reject"
                body = {"operator": "op-any", "reason": "r"} if verb == "reject" else {
                    "operator": "op-any"}
                decided.append((verb, api.post(f"/api/reports/{rids[0]}/{verb}", body)[0]))

            for op in ("op0", "op1", "op2", "op3"):
                api.post(f"/api/reports/{rids[0]}/release", {"operator": op})
            threads = [threading.Thread(target=decide, args=(n,)) for n in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            _, report = api.get(f"/api/reports/{rids[0]}")
            won = "accept" if report["state"] == "accepted" else "reject"
            assert report["state"] in ("accepted", "rejected")
            # the winning verb's repeats are idempotent; every other verb conflicts
            assert sorted(decided) == sorted((verb, 200 if verb == won else 409)
                                             for verb, _ in decided)

            # different reports accepted at once: each gets its own next case number
            cases = []

            def accept(rid):
                cases.append(api.post(f"/api/reports/{rid}/accept", {"operator": "op-x"}))

            for rid in rids[1:]:
                for op in ("op0", "op1", "op2", "op3"):  # whoever won the claim race
                    api.post(f"/api/reports/{rid}/release", {"operator": op})
            threads = [threading.Thread(target=accept, args=(rid,)) for rid in rids[1:]]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert [status for status, _ in cases] == [200] * 4, cases
            assert len({body["case_no"] for _, body in cases}) == 4
    finally:
        if backend == "postgres":
            with store.connect() as conn:
                conn.execute(f'DROP SCHEMA "{store.schema}" CASCADE')
        store.close()


# ---------------------------------------------------------------- the grid map as GeoJSON


@pytest.fixture(scope="module")
def grid_map():
    from gridlink.firmware.core.gridmap import GridMap
    from gridlink.firmware.maps.synthetic import SyntheticLayer
    from gridlink.host.gridcompile import compile_layer

    layer = SyntheticLayer(cols=9, rows=7, seed=5, holes=0.15, multis=0.1, triangles=0.1)
    data, _ = compile_layer(layer.layer)
    return GridMap(data)


def test_grid_geojson_cells_are_valid_and_locate_back(store, grid_map):
    from shapely.geometry import shape

    app = create_app(store, grid_map=grid_map)
    with BackgroundServer(app) as server:
        status, doc = Api(server.url, Tokens(store)).get("/api/grid")
    assert status == 200 and doc["type"] == "FeatureCollection"
    assert len(doc["features"]) == grid_map.n_cells
    kinds = set()
    for feature in doc["features"]:
        geom = shape(feature["geometry"])
        kinds.add((feature["geometry"]["type"], len(getattr(geom, "interiors", ()))))
        assert geom.is_valid, feature["id"]
        p = geom.representative_point()
        assert grid_map.locate(p.x, p.y) == feature["properties"]["code"] == feature["id"]
    # the synthetic layer has holes and two-part cells: both must come out as such
    assert any(t == "MultiPolygon" for t, _ in kinds)
    assert any(t == "Polygon" and holes for t, holes in kinds)


def test_task_for_a_point_takes_its_grid_from_the_map(store, grid_map):
    app = create_app(store, grid_map=grid_map)
    w, s, e, n = grid_map.bbox
    lat, lon = (s + n) / 2, (w + e) / 2
    with BackgroundServer(app) as server:
        status, task = Api(server.url, Tokens(store)).post("/api/tasks", {"lat": lat, "lon": lon})
    assert status == 201
    assert task["grid"] == grid_map.locate(lon, lat) and task["grid"] is not None
    assert task["district"] == task["grid"][:6]


# ---------------------------------------------------------------- any filter input


FILTER_TEXT = st.one_of(st.text(max_size=24), st.from_regex(r"[0-9]{0,18}", fullmatch=True),
                        st.sampled_from(["2026-11-28T02:00:00Z", "2026-11-28", "410106001",
                                         "no_fix", "grid_mismatch", "pending", "all", "²", "١٢"]))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["status", "grid", "street", "code", "kind", "since", "until",
                              "flags", "order", "limit", "offset"]),
       value=FILTER_TEXT)
def test_any_filter_value_lists_or_is_refused_by_name(store, field, value):
    from gridlink.gateway.queue import IntakeQueue, Invalid

    add_report_once(store)
    queue = IntakeQueue(store)
    kwargs = {"flags": [value]} if field == "flags" else {field: value}
    try:
        page = queue.list(**kwargs)
    except Invalid as exc:
        name = "flag" if field == "flags" else field
        assert str(exc).startswith(name + ":"), exc
    else:
        assert 0 <= len(page["items"]) <= page["total"] <= 1


def add_report_once(store):
    from gridlink.gateway.api import MIGRATIONS

    store.migrate(extra=MIGRATIONS)
    with store.connect() as conn:
        have = conn.execute("SELECT COUNT(*) FROM reports").fetchone()[0]
    if not have:
        add_report(store, 1, flags=("no_fix",))


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=st.lists(st.tuples(st.integers(0, 11), st.sampled_from(
    ["claim", "accept", "reject", "release", "wait"]), st.sampled_from(["a", "b"])),
    max_size=30))
def test_totals_match_the_listed_reports_in_every_state(tmp_path_factory, actions):
    """The counted total equals what paging through the list yields, for every filter mix."""
    from gridlink.gateway.api import MIGRATIONS
    from gridlink.gateway.queue import Conflict, IntakeQueue

    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('q')}/q.db")
    try:
        store.migrate(extra=MIGRATIONS)
        clock = Clock()
        queue = IntakeQueue(store, clock=clock)
        ids = [add_report(store, n, code=("06010", "01001", "09009")[n % 3],
                          grid=f"4101060010010{n % 4:02d}") for n in range(12)]
        for n, verb, op in actions:
            try:
                if verb == "claim":
                    queue.claim(ids[n], op, lease_s=60)
                elif verb == "accept":
                    queue.accept(ids[n], op)
                elif verb == "reject":
                    queue.reject(ids[n], op, reason="r")
                elif verb == "release":
                    queue.release(ids[n], op)
                else:
                    clock.advance(45)
            except Conflict:
                pass
        everything = queue.list(status="all", limit=500)["items"]
        for status in ("pending", "accepted", "rejected", "all"):
            for held in (None, True, False):
                for code in (None, "06", "01001"):
                    page = queue.list(status=status, held=held, code=code, limit=500)
                    expect = [r["id"] for r in everything
                              if status in ("all", r["state"])
                              and (held is None or bool(r["holder"]) == held)
                              and (code is None or r["code"].startswith(code))]
                    assert sorted(r["id"] for r in page["items"]) == sorted(expect)
                    assert page["total"] == len(expect), (status, held, code)
    finally:
        store.close()


def test_event_stream_announces_each_change(store, clock):
    app = create_app(store, clock=clock, poll_interval=0.1)
    with BackgroundServer(app) as server:
        api = Api(server.url, Tokens(store))
        stream = urllib.request.urlopen(urllib.request.Request(
            server.url + "/api/events", headers=api.auth()), timeout=10)

        def next_change():
            event = None
            for raw in stream:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "change":
                    return json.loads(line[6:])
            raise AssertionError("stream ended")

        first = next_change()
        assert first["reports"] == 0
        rid = add_report(store, 1)
        assert next_change()["reports"] == 1
        api.post(f"/api/reports/{rid}/claim", {"operator": "alice"})
        assert next_change()["intake"] == 1
        stream.close()
