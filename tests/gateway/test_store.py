"""The store interface, run the same on SQLite and PostgreSQL."""

import threading

import pytest
from gridlink.gateway.errors import GatewayError, StoreError
from gridlink.gateway.store import open_store

BUILT_IN = ["0001_gateway_tables", "0002_dead_letter_digest", "0003_report_digest",
            "0004_capture_time_flag", "0005_photo_parts", "0006_report_seq_bigint",
            "urgent_001_report_urgent", "0007_month_partitions"]

EXTRA = (("board_001_notes",
          "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
          "CREATE TABLE notes (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL)"),)


def test_migrate_records_and_is_idempotent(store_url):
    s = open_store(store_url)
    try:
        assert s.migrate() == BUILT_IN
        assert s.migrate() == []
        assert s.migrate(extra=EXTRA) == ["board_001_notes"]
        assert s.migrate(extra=EXTRA) == []
        # applied_at has millisecond steps: names applied in one sort by name
        assert sorted(s.applied_migrations()) == sorted([*BUILT_IN, "board_001_notes"])
        for table in ("reports", "dead_letters", "devices", "photos", "track_points", "notes"):
            assert s.fetchall(f"SELECT COUNT(*) AS n FROM {table}") == [{"n": 0}]
    finally:
        s.close()


def test_a_database_of_an_earlier_gateway_is_brought_up_to_date_keeping_its_rows(
        store_url, monkeypatch):
    import gridlink.gateway.store.base as base

    s = open_store(store_url)
    try:
        with monkeypatch.context() as m:
            m.setattr(base, "BUILTIN", base.BUILTIN[:1])  # what the first release shipped
            assert s.migrate() == BUILT_IN[:1]
        with s.connect() as conn:
            conn.execute(s.sql("INSERT INTO dead_letters (received_at, topic, device, reason, "
                               "payload, payload_encoding) VALUES (?, ?, ?, ?, ?, ?)"),
                         ("2026-11-01T00:00:00.000Z", "t", "pv-0001", "old", "x", "utf-8"))
        assert s.migrate() == BUILT_IN[1:]
        assert s.fetchall("SELECT reason, digest FROM dead_letters") == [
            {"reason": "old", "digest": None}]
        assert s.fetchall("SELECT device, refused, id_reused FROM dead_letter_devices") == [
            {"device": "pv-0001", "refused": 1, "id_reused": 0}]  # counted from the rows there
    finally:
        s.close()


def test_a_failing_migration_names_itself_and_leaves_nothing_behind(store):
    bad = (("board_002_broken", "CREATE TABLE half (x INTEGER); CREATE TABL oops (y)",
            "CREATE TABLE half (x INTEGER); CREATE TABL oops (y)"),)
    with pytest.raises(StoreError, match="board_002_broken"):
        store.migrate(extra=bad)
    assert "board_002_broken" not in store.applied_migrations()
    with pytest.raises(Exception):  # noqa: B017 - the table of the failed migration is gone
        store.fetchall("SELECT * FROM half")


def test_malformed_migration_is_refused(store):
    with pytest.raises(StoreError, match="name, sqlite_sql, postgres_sql"):
        store.migrate(extra=[("only-a-name",)])


def test_connect_commits_on_exit_and_rolls_back_on_error(store):
    q = store.sql
    with store.connect() as conn:
        conn.execute(q("INSERT INTO track_points (device, t, lat, lon, speed) "
                       "VALUES (?, ?, ?, ?, ?)"), ("pv-0001", "2026-11-28T00:00:00.000Z", 1, 2, 0))
    with pytest.raises(RuntimeError), store.connect() as conn:
        conn.execute(q("INSERT INTO track_points (device, t, lat, lon, speed) "
                       "VALUES (?, ?, ?, ?, ?)"), ("pv-0001", "2026-11-28T00:00:01.000Z", 1, 2, 0))
        raise RuntimeError("boom")
    rows = store.fetchall("SELECT device, t FROM track_points")
    assert rows == [{"device": "pv-0001", "t": "2026-11-28T00:00:00.000Z"}]


def test_insert_new_returns_only_new_keys(store):
    cols = ("device", "t", "lat", "lon", "speed")
    rows = [("a", "1", 1.0, 2.0, 0.0), ("a", "2", 1.0, 2.0, 0.0), ("a", "1", 9.0, 9.0, 9.0)]
    with store.connect() as conn:
        assert sorted(store.insert_new(conn, "track_points", cols, rows, "t")) == ["1", "2"]
    with store.connect() as conn:
        assert store.insert_new(conn, "track_points", cols, rows[:1], "t") == []
    assert store.fetchall("SELECT lat FROM track_points WHERE t = ?", ("1",)) == [{"lat": 1.0}]


def test_threads_each_get_their_own_connection(store):
    q = store.sql
    errors = []

    def work(n):
        try:
            for i in range(20):
                with store.connect() as conn:
                    conn.execute(q("INSERT INTO track_points (device, t, lat, lon, speed) "
                                   "VALUES (?, ?, ?, ?, ?)"), (f"d{n}", str(i), 0, 0, 0))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.fetchall("SELECT COUNT(*) AS n FROM track_points") == [{"n": 120}]


def test_dialect_and_placeholder(store):
    assert (store.dialect, store.placeholder) in (("sqlite", "?"), ("postgres", "%s"))
    assert store.sql("a = ? AND b = ?") == f"a = {store.placeholder} AND b = {store.placeholder}"


@pytest.mark.parametrize("url, words", [
    ("mysql://x", "unknown store URL"),
    ("sqlite:///no/such/folder/db.sqlite", "does not exist"),
    ("postgresql://postgres@127.0.0.1:1/test", "cannot connect"),
    ("postgresql://postgres@127.0.0.1:5432/test?schema=Bad-Name", "schema name"),
])
def test_bad_store_urls_are_clear_errors(url, words):
    with pytest.raises(GatewayError, match=words):
        open_store(url)


def test_closed_store_refuses_work(store):
    store.close()
    with pytest.raises(StoreError, match="closed"), store.connect():
        pass


# -- SQLite: writers of several processes take turns ----------------------------------------

def _sqlite(path, **kw):
    from gridlink.gateway.store.sqlite import SQLiteStore

    s = SQLiteStore(f"sqlite:///{path}", **kw)
    s.migrate()
    return s


def test_a_second_writer_waits_for_its_turn_and_gets_it_when_the_first_commits(tmp_path):
    # two stores on one file stand for two gateway workers: an flock belongs to an open
    # file, so it separates them as it separates processes
    a, b = _sqlite(tmp_path / "db.sqlite"), _sqlite(tmp_path / "db.sqlite")
    events = []

    def writer_b():
        with b.connect() as conn:
            events.append("b begins")
            conn.execute("INSERT INTO schema_migrations VALUES ('b', 'y')")

    with a.connect() as conn:
        conn.execute("INSERT INTO schema_migrations VALUES ('a', 'x')")
        t = threading.Thread(target=writer_b)
        t.start()
        t.join(0.3)
        assert t.is_alive() and events == []  # waiting for the turn, not failing
        events.append("a commits")
    t.join(10)
    assert events == ["a commits", "b begins"]
    names = {r["name"] for r in a.fetchall("SELECT name FROM schema_migrations")}
    assert {"a", "b"} <= names
    a.close()
    b.close()


def test_a_turn_held_too_long_is_a_clear_error_and_nothing_is_written(tmp_path):
    a = _sqlite(tmp_path / "db.sqlite")
    b = _sqlite(tmp_path / "db.sqlite", busy_timeout=0.2)
    with a.connect() as conn:
        conn.execute("INSERT INTO schema_migrations VALUES ('a', 'x')")
        with pytest.raises(StoreError, match=r"db\.sqlite.*write turn"), b.connect() as c2:
            c2.execute("INSERT INTO schema_migrations VALUES ('b', 'y')")
    with b.connect() as conn:  # and b's turn comes once a is done
        conn.execute("INSERT INTO schema_migrations VALUES ('c', 'z')")
    names = {r["name"] for r in a.fetchall("SELECT name FROM schema_migrations")}
    assert {"a", "c"} <= names and "b" not in names
    a.close()
    b.close()


WRITER = """
import sys
from gridlink.gateway.store.sqlite import SQLiteStore
s = SQLiteStore("sqlite:///" + sys.argv[1])
for i in range(int(sys.argv[3])):
    with s.connect() as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (?, 'x')", (f"{sys.argv[2]}-{i}",))
"""


def test_writers_in_two_processes_all_get_in(tmp_path):
    import subprocess
    import sys

    db = tmp_path / "db.sqlite"
    _sqlite(db).close()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), tag, "300"],
                              stderr=subprocess.PIPE, text=True) for tag in ("p", "q")]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    s = _sqlite(db)
    n = s.fetchall("SELECT COUNT(*) AS n FROM schema_migrations WHERE applied_at = 'x'")
    assert n[0]["n"] == 600
    s.close()


def test_insert_new_twice_in_one_transaction_and_after_a_rollback(store):
    """PostgreSQL stages the rows in a temporary table: a second call in the same
    transaction, or one after a rolled-back transaction, must see none of the earlier."""
    cols = ("device", "t", "lat", "lon", "speed")
    with store.connect() as conn:
        assert store.insert_new(conn, "track_points", cols, [("a", "1", 1.0, 2.0, 0.0)],
                                "t") == ["1"]
        assert store.insert_new(conn, "track_points", cols, [("a", "2", 1.0, 2.0, 0.0),
                                                             ("a", "1", 5.0, 5.0, 5.0)],
                                "t") == ["2"]
    with pytest.raises(RuntimeError), store.connect() as conn:
        store.insert_new(conn, "track_points", cols, [("a", "3", 1.0, 2.0, 0.0)], "t")
        raise RuntimeError("boom")
    with store.connect() as conn:
        assert store.insert_new(conn, "track_points", cols, [("a", "4", 1.0, 2.0, 0.0)],
                                "t") == ["4"]
    assert [r["t"] for r in store.fetchall("SELECT t FROM track_points ORDER BY t")] == [
        "1", "2", "4"]


def _indexes(store, table):
    if store.dialect == "sqlite":
        rows = store.fetchall(f"PRAGMA index_list({table})")
        return {r["name"] for r in rows if not r["name"].startswith("sqlite_autoindex")}
    return {r["indexname"] for r in store.fetchall(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
        "AND tablename = ? AND indexname <> ?", (table, f"{table}_pkey"))}


def test_the_boards_migrations_leave_no_redundant_index_on_reports(store):
    from gridlink.gateway.api import MIGRATIONS

    assert "reports_captured_at" in _indexes(store, "reports")  # the gateway alone
    store.migrate(extra=MIGRATIONS)
    # every report ingested updates each of these: captured_at alone is the page order's
    # first column, so it went; the queue's order (capture time, or receive time where the
    # capture time is flagged) has its own; the urgent reports' index is partial: a
    # routine report never enters it; likely duplicates are found by class and time
    assert _indexes(store, "reports") == {"intake_reports_page_order", "reports_grid",
                                          "reports_device", "intake_reports_queue_order",
                                          "reports_urgent", "dup_reports_code_time"}
    if store.dialect == "sqlite":  # a time window is still read through an index
        plan = store.fetchall("EXPLAIN QUERY PLAN SELECT id FROM reports WHERE "
                              "captured_at >= ? AND captured_at < ?", ("a", "b"))
        assert any("intake_reports_page_order" in r["detail"] for r in plan)


def test_a_twelve_digit_seq_is_stored_whole(store):
    """Devices number reports from the clock (about 1.8e9 now); the protocol allows 12
    digits: PostgreSQL's 32-bit INTEGER would refuse them from 2038."""
    from tests.support.intake_api import T0, add_report

    rid = add_report(store, 999_999_999_999, captured=T0)
    assert store.fetchall("SELECT seq FROM reports WHERE id = ?", [rid]) == [
        {"seq": 999_999_999_999}]
