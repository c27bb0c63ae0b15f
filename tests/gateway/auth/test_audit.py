"""The audit trail: appended in order, each entry chained to the one before; any edit,
removal or reorder is found by ``verify``."""

import threading

import pytest
from gridlink.gateway.auth.audit import AuditTrail, export
from gridlink.gateway.auth.migrations import MIGRATIONS
from gridlink.gateway.store import open_store


@pytest.fixture
def trail(store):
    store.migrate(extra=MIGRATIONS)
    return AuditTrail(store)


def fill(trail, n=5):
    for i in range(n):
        trail.append(f"slw-0{i % 2 + 1}", "accept", target=f"pv-0001:{i:012d}",
                     before={"state": "pending"}, after={"state": "accepted", "case_no": i},
                     address="10.0.0.5")


def test_entries_come_back_in_order_with_who_what_and_where(trail):
    fill(trail, 3)
    got = trail.entries()
    assert [e["n"] for e in got] == [1, 2, 3]
    assert got[0]["actor"] == "slw-01" and got[0]["address"] == "10.0.0.5"
    assert got[2]["before"] == {"state": "pending"} and got[2]["after"]["case_no"] == 2
    assert [e["n"] for e in trail.entries(target="pv-0001:000000000001")] == [2]
    assert trail.verify() == (True, [])


def test_an_empty_trail_verifies(trail):
    assert trail.verify() == (True, [])


@pytest.mark.parametrize(("sql", "found"), [
    ("UPDATE audit SET actor = 'someone-else' WHERE n = 3", "entry 3: its content"),
    ("UPDATE audit SET after_state = '{\"state\":\"rejected\"}' WHERE n = 2",
     "entry 2: its content"),
    ("DELETE FROM audit WHERE n = 2", "entry 2: missing"),
    ("DELETE FROM audit WHERE n = 5", "the head says 5"),
    ("UPDATE audit SET at = '2020-01-01T00:00:00.000Z' WHERE n = 1", "entry 1: its content"),
])
def test_verify_finds_every_edit(trail, store, sql, found):
    fill(trail)
    with store.connect() as conn:
        conn.execute(sql)
    ok, problems = trail.verify()
    assert not ok and any(found in p for p in problems), problems


def test_a_rewritten_entry_with_its_hash_recomputed_still_breaks_the_next_link(trail, store):
    from gridlink.gateway.auth.audit import entry_hash

    fill(trail)
    e = trail.entries()[1]
    forged = entry_hash(e["prev"], 2, e["at"], "forger", e["address"], e["action"], e["target"],
                        '{"state":"pending"}', '{"case_no":1,"state":"accepted"}')
    with store.connect() as conn:
        conn.execute(store.sql("UPDATE audit SET actor = ?, hash = ? WHERE n = 2"),
                     ("forger", forged))
    ok, problems = trail.verify()
    assert not ok and any("entry 3: its link" in p for p in problems), problems


def test_an_entry_joins_the_callers_transaction(trail, store):
    with pytest.raises(RuntimeError), store.connect() as conn:
        trail.record(conn, "slw-01", "accept", target="x")
        raise RuntimeError("the decision failed")
    assert trail.entries() == [] and trail.verify() == (True, [])


def test_two_writers_at_once_keep_one_chain(trail, store_url):
    others = [open_store(store_url) for _ in range(2)]
    try:
        trails = [AuditTrail(s) for s in others]
        threads = [threading.Thread(target=fill, args=(t, 20)) for t in trails]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for s in others:
            s.close()
    assert len(trail.entries()) == 40 and trail.verify() == (True, [])


def test_export_as_csv_and_json(trail):
    fill(trail, 2)
    entries = trail.entries()
    text = export(entries, "csv").splitlines()
    assert text[0] == "n,at,actor,address,action,target,before,after,prev,hash"
    assert len(text) == 3 and '""state"":""accepted""' in text[1]
    assert '"actor": "slw-01"' in export(entries, "json")
