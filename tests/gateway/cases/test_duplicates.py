"""Likely duplicates, merges and a sensor's repeated alerts, on SQLite and PostgreSQL."""

import threading
from datetime import timedelta

import pytest
from gridlink.firmware.codebooks import load_books
from gridlink.firmware.maps import open_map
from gridlink.gateway.cases.duplicates import DuplicateRule, Duplicates, distance_m
from gridlink.gateway.ingest import Ingest, Item
from gridlink.gateway.photos import PhotoDir
from gridlink.gateway.queue import Conflict, Invalid, NotFound
from gridlink.gateway.store import open_store
from gridlink.gateway.validate import Validator
from hypothesis import given
from hypothesis import strategies as st

from tests.support.gateway_rig import encode, grid_map_file, report, topic
from tests.support.intake_api import T0, add_report

LAT, LON = 34.8205, 113.2871
M = 1 / 111_195            # degrees of latitude in one metre (mean Earth radius)


@pytest.fixture
def dups(desk):
    d = Duplicates(desk.queue)
    desk.queue.annotate = d.annotate
    return d


def _add(desk, *, north_m=0.0, hours=0.0, **kw):
    desk.seq += 1
    return add_report(desk.store, desk.seq, lat=LAT + north_m * M, lon=LON,
                      captured=T0 + timedelta(hours=hours), **kw)


def _listed(desk, **kw):
    return {it["id"]: it for it in desk.queue.list(**kw)["items"]}


def test_same_class_within_50_m_and_24_h_is_flagged_both_ways(desk, dups):
    a = _add(desk)
    b = _add(desk, north_m=40, hours=23)
    far = _add(desk, north_m=-60)                    # 60 m from a, 100 m from b
    late = _add(desk, hours=48)                      # 48 h after a, 25 h after b
    other = _add(desk, code="07001")                 # another class
    task = _add(desk, north_m=5, source="task", task="T-1", result="confirmed")
    items = _listed(desk, status="all")
    assert items[a]["likely_same"] == [b] and items[b]["likely_same"] == [a]
    assert items[far]["likely_same"] == [] and items[late]["likely_same"] == []
    assert items[other]["likely_same"] == [] and items[task]["likely_same"] == []
    desk.queue.reject(b, "op-a", reason="不是问题")
    assert _listed(desk)[a]["likely_same"] == []     # a rejected one is no duplicate


def test_the_distance_and_time_are_configurable(desk):
    d = Duplicates(desk.queue, DuplicateRule(radius_m=100, window_h=1))
    desk.queue.annotate = d.annotate
    a = _add(desk)
    b = _add(desk, north_m=80, hours=0.5)
    _add(desk, north_m=10, hours=2)
    assert _listed(desk)[a]["likely_same"] == [b]
    for bad in ({"radius_m": 0}, {"radius_m": "50"}, {"window_h": -1}, {"window_h": True}):
        with pytest.raises(Invalid, match="duplicate"):
            DuplicateRule(**bad)


@given(st.floats(-80, 80), st.floats(-179, 179), st.floats(0, 200), st.floats(0, 360))
def test_the_box_holds_every_point_within_the_radius(lat, lon, metres, bearing):
    import math

    rule = DuplicateRule(radius_m=200)
    d = metres / 6371008.8
    b = math.radians(bearing)
    p1, l1 = math.radians(lat), math.radians(lon)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1),
                         math.cos(d) - math.sin(p1) * math.sin(p2))
    lat2, lon2 = math.degrees(p2), math.degrees(l2)
    assert distance_m(lat, lon, lat2, lon2) == pytest.approx(metres, abs=1e-3)
    lat_lo, lat_hi, lon_lo, lon_hi = rule.box(lat, lon)
    assert lat_lo - 1e-9 <= lat2 <= lat_hi + 1e-9 and lon_lo - 1e-9 <= lon2 <= lon_hi + 1e-9


def test_a_merge_keeps_every_report_with_the_case_and_is_audited(desk, dups):
    case_no, first = desk.case()
    again = _add(desk, north_m=10)
    assert _listed(desk)[again]["likely_same"] == [first]
    done = dups.merge(again, first, "op-b", audit=desk.record("op-b"))
    assert (done["state"], done["into"], done["merged_by"]) == ("merged", first, "op-b")
    assert again not in _listed(desk)                # out of the pending queue
    assert _listed(desk, status="merged")[again]["merged_into"] == first
    assert desk.queue.get(first)["merged"] == [again]
    assert desk.queue.get(again)["state"] == "merged"
    assert desk.book.by_report(first)["case_no"] == case_no
    entry = desk.trail.entries(target=f"report:{again}")[-1]
    assert (entry["action"], entry["actor"]) == ("report.merge", "op-b")
    assert entry["before"]["state"] == "pending" and entry["after"]["into"] == first
    assert dups.merge(again, first, "op-b") == done            # the same merge: no change
    assert len(desk.trail.entries(target=f"report:{again}")) == 1
    with pytest.raises(Conflict, match=f"was merged into {first} by op-b"):
        dups.merge(again, _add(desk), "op-b")
    with pytest.raises(Conflict, match=f"was merged into {first}"):
        desk.queue.accept(again, "op-b")
    assert dups.merged_into(again) == first and dups.merged_into(first) is None
    from gridlink.gateway.open311 import _requests

    assert [r["closed"] for r in _requests(desk.queue, ids=[again])] == [False]
    desk.act(case_no, "void", reason="重复立案")
    found = _requests(desk.queue, ids=[again])     # Open311 follows the case it joined
    assert (found[0]["closed"], found[0]["case_no"], found[0]["merged_into"]) == (
        True, case_no, first)


def test_merges_that_are_refused_say_why_and_change_nothing(desk, dups):
    a, b = _add(desk), _add(desk, north_m=5)
    with pytest.raises(Conflict, match="cannot merge pv-0001:000000000001 into itself"):
        dups.merge(a, a, "op-a")
    with pytest.raises(NotFound, match="no report 'pv-0001:9'"):
        dups.merge(a, "pv-0001:9", "op-a")
    other = _add(desk, code="07001")
    with pytest.raises(Conflict, match=r"of class event 06010, .* of event 07001: only "
                                      "reports of the same class"):
        dups.merge(other, a, "op-a")
    desk.queue.reject(b, "op-a", reason="无效")
    with pytest.raises(Conflict, match=f"cannot merge into {b}: it is rejected"):
        dups.merge(a, b, "op-a")
    desk.queue.claim(a, "op-c")
    c = _add(desk, north_m=3)
    with pytest.raises(Conflict, match="held by op-c"):
        dups.merge(a, c, "op-a")
    assert dups.merge(a, c, "lead", override=True)["into"] == c   # 值班长 over a claim
    d = _add(desk, north_m=4)
    with pytest.raises(Conflict, match=f"it is merged; merge into {c}, which it joined"):
        dups.merge(d, a, "op-a")
    with pytest.raises(Conflict, match=r"cannot merge: report .* was rejected"):
        dups.merge(b, c, "op-a")
    assert _listed(desk, status="all")[a]["state"] == "merged"
    assert [r for r in desk.store.fetchall("SELECT report_id FROM dup_merges")] == [
        {"report_id": a}]


@pytest.fixture
def judge(tmp_path):
    return Validator(open_map(grid_map_file(tmp_path)), load_books())


def _commit_alert(ingest, judge, seq, device="ft-0001", code="06010"):
    """A sensor's alert committed by ``ingest`` (where repeats collapse); its report id."""
    t, p = topic(device, "report"), encode(report(device, seq, code=code, source="sensor"))
    batch = [Item(t, p, 1_795_000_000.0 + seq, judge.decode(t, p, 1_795_000_000.0))]
    ingest.commit(batch)
    assert batch[0].outcome == "accepted"
    return f"{device}:{seq:012d}"


def test_a_sensors_repeated_alerts_collapse_into_one_open_item(desk, dups, judge, tmp_path):
    ingest, seqs = Ingest(desk.store, PhotoDir(tmp_path / "p")), iter(range(1, 100))

    def alert(device="ft-0001", code="06010"):
        rid = _commit_alert(ingest, judge, next(seqs), device, code)
        return rid, dups.merged_into(rid)

    first, into = alert()
    assert into is None
    second, into = alert()
    third, _ = alert()
    assert into == first
    _, into = alert(code="07001")                    # another class
    _, into2 = alert(device="ft-0002")               # another sensor
    assert into is into2 is None
    pending = _listed(desk)
    assert second not in pending and third not in pending
    assert pending[first]["repeats"] == 2 and pending[first]["merged"] == [second, third]
    # handled: accepted as a case, the alerts still join it until it is closed or voided
    case_no = desk.queue.accept(first, "op-a")["case_no"]
    _, into = alert()
    assert into == first
    desk.act(case_no, "void", reason="设备误报")
    fifth, into = alert()
    assert into is None
    assert fifth in _listed(desk)                    # a new open item
    _, into = alert()
    assert into == fifth
    desk.queue.reject(fifth, "op-a", reason="误报")
    seventh, into = alert()
    assert into is None and _listed(desk)[seventh]["repeats"] == 0


def test_repeats_collapse_whichever_gateway_worker_commits_them(desk, dups, judge, store_url,
                                                               tmp_path):
    """Two gateway workers over one store, each with its own ingest and connections: the
    first alert committed by one, the next by the other (a worker without ``--http``,
    no after-commit hook) — one open item; then two alerts at once, one on each worker,
    after the item was handled — again one open item."""
    other = open_store(store_url)
    workers = [Ingest(desk.store, PhotoDir(tmp_path / "p0")),
               Ingest(other, PhotoDir(tmp_path / "p1"))]

    def alert(worker, seq, start=None):
        if start is not None:
            start.wait(10)
        return _commit_alert(workers[worker], judge, seq)

    try:
        first, second = alert(0, 1), alert(1, 2)
        listed = _listed(desk)
        assert list(listed) == [first]
        assert listed[first]["repeats"] == 1 and listed[first]["merged"] == [second]
        desk.queue.reject(first, "op-a", reason="误报")
        start = threading.Barrier(2)
        threads = [threading.Thread(target=alert, args=(w, 3 + w, start)) for w in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        (item,) = _listed(desk)
        assert item in ("ft-0001:000000000003", "ft-0001:000000000004")
        assert _listed(desk)[item]["repeats"] == 1
    finally:
        other.close()
