"""PostgreSQL's month partitions of ``reports`` and ``track_points`` (migration
0007_month_partitions): an existing database keeps every row through the upgrade, a
report id stays unique across partitions (the old primary key's exactly-once), and a
month's partition is made when it is asked for, moving that month's rows out of the
default partition."""

import datetime as dt
import threading

import pytest
from gridlink.gateway.store import open_store

from tests.support.gateway_rig import drop_store, pg_available, pg_url
from tests.support.intake_api import add_report

pytestmark = pytest.mark.postgres

COLS = ("device", "t", "lat", "lon", "speed")
MONTHS = [dt.datetime(2025, m, 14, 8, 30, tzinfo=dt.UTC) for m in (1, 2, 7)]
ODD = dt.datetime(2107, 12, 31, 23, 0, tzinfo=dt.UTC)  # a device clock far off: no month made


@pytest.fixture
def pg(request):
    if not pg_available():
        pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432")
    s = open_store(pg_url("part"))
    yield s
    drop_store(s)


def partitions(store, table):
    return sorted(r["name"] for r in store.fetchall(
        "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(?)", (table,)))


def rows_of(store, table, order):
    return store.fetchall(f"SELECT * FROM {table} ORDER BY {order}")


def holder(store, rid):
    """The partition holding report ``rid``."""
    return store.fetchall("SELECT tableoid::regclass::text AS p FROM reports WHERE id = ?",
                          (rid,))[0]["p"]


def test_an_earlier_database_is_partitioned_keeping_every_row_and_index(pg, monkeypatch):
    import gridlink.gateway.store.base as base
    from gridlink.gateway.api import MIGRATIONS

    with monkeypatch.context() as m:
        m.setattr(base, "BUILTIN", tuple(  # the schema before partitions
            b for b in base.BUILTIN if b[0] != "0007_month_partitions"))
        pg.migrate(extra=MIGRATIONS)
    ids = [add_report(pg, i + 1, captured=t) for i, t in enumerate([*MONTHS, ODD])]
    with pg.connect() as conn:
        conn.cursor().executemany(pg.sql("INSERT INTO track_points VALUES (?, ?, ?, ?, ?)"),
                                  [("pv-0001", t.isoformat(), 34.8, 113.2, 1.5)
                                   for t in [*MONTHS, ODD]])
    before = (rows_of(pg, "reports", "id"), rows_of(pg, "track_points", "t"))
    indexes = {r["indexname"] for r in pg.fetchall(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
        "AND tablename = 'reports'")}

    assert pg.migrate(extra=MIGRATIONS) == ["0007_month_partitions"]

    assert (rows_of(pg, "reports", "id"), rows_of(pg, "track_points", "t")) == before
    assert {r["indexname"] for r in pg.fetchall(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
        "AND tablename = 'reports'")} == indexes  # the board's indexes, made again
    for table in ("reports", "track_points"):
        made = partitions(pg, table)
        assert {f"{table}_2025_01", f"{table}_2025_02", f"{table}_2025_07",
                f"{table}_default"} <= set(made)
        now = dt.datetime.now(dt.UTC)
        assert f"{table}_{now:%Y_%m}" in made  # the present month and a year ahead
    assert holder(pg, ids[1]) == "reports_2025_02"
    assert holder(pg, ids[3]) == "reports_default"
    # the old ids are claimed: none can be inserted again
    assert pg.fetchall("SELECT COUNT(*) AS n FROM report_ids") == [{"n": 4}]
    assert add_report(pg, 2, captured=MONTHS[1]) == ids[1]
    assert pg.fetchall("SELECT COUNT(*) AS n FROM reports") == [{"n": 4}]


def test_a_report_id_is_inserted_once_whatever_month_it_claims(pg):
    from gridlink.gateway.ingest import REPORT_COLUMNS

    pg.migrate()
    first = add_report(pg, 7, captured=MONTHS[0])
    # the same id again, also with another capture time (another partition): not a row
    add_report(pg, 7, captured=MONTHS[2])
    assert pg.fetchall("SELECT captured_at FROM reports") == [
        {"captured_at": MONTHS[0].strftime("%Y-%m-%dT%H:%M:%S.000Z")}]
    # the ingest's path: INSERT … ON CONFLICT DO NOTHING RETURNING id through a COPY twin
    row = pg.fetchall("SELECT * FROM reports WHERE id = ?", (first,))[0]
    again = tuple(row[c] for c in REPORT_COLUMNS)
    moved = tuple({**row, "captured_at": "2025-07-01T00:00:00.000Z"}[c] for c in REPORT_COLUMNS)
    fresh = tuple({**row, "id": "pv-0001:000000000008", "seq": 8}[c] for c in REPORT_COLUMNS)
    with pg.connect() as conn:
        assert pg.insert_new(conn, "reports", REPORT_COLUMNS, [again, moved, fresh], "id") == [
            "pv-0001:000000000008"]
    assert pg.fetchall("SELECT COUNT(*) AS n FROM reports") == [{"n": 2}]


def test_a_deleted_report_gives_its_id_back_a_detached_month_keeps_its_ids(pg):
    pg.migrate()
    pg.add_month_partitions(months_ahead=0, today=MONTHS[0].date())
    kept = add_report(pg, 1, captured=MONTHS[0])
    gone = add_report(pg, 2, captured=MONTHS[1])
    with pg.connect() as conn:
        conn.execute(pg.sql("DELETE FROM reports WHERE id = ?"), (gone,))
        conn.execute("ALTER TABLE reports DETACH PARTITION reports_2025_01")
    add_report(pg, 2, captured=MONTHS[2], text="again")
    add_report(pg, 1, captured=MONTHS[2], text="again")
    assert pg.fetchall("SELECT id, text FROM reports") == [{"id": gone, "text": "again"}]
    assert pg.fetchall("SELECT id FROM report_ids ORDER BY id") == [{"id": kept}, {"id": gone}]


def test_two_writers_claiming_one_id_at_once_store_it_once(pg):
    """The second transaction waits on the first's claim, then inserts nothing."""
    pg.migrate()
    other = open_store(pg.url)
    barrier = threading.Barrier(2)
    results = []

    def write(store, month):
        with store.connect() as conn:
            barrier.wait()
            cur = conn.execute(store.sql(
                "INSERT INTO reports (id, device, district, seq, captured_at, received_at, "
                "committed_at, flags, kind, standard, code, source, photos, payload) VALUES "
                "('pv-0009:000000000001', 'pv-0009', '410106', 1, ?, ?, ?, '[]', 'event', "
                "'s', '06010', 'button', '[]', '{}') ON CONFLICT DO NOTHING"),
                (month, month, month))
            results.append(cur.rowcount)

    threads = [threading.Thread(target=write, args=(s, t)) for s, t in
               ((pg, "2025-01-05T00:00:00Z"), (other, "2025-07-05T00:00:00Z"))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
    finally:
        other.close()
    assert sorted(results) == [0, 1]
    assert pg.fetchall("SELECT COUNT(*) AS n FROM reports") == [{"n": 1}]


def test_a_month_made_later_takes_its_rows_from_the_default_partition(pg):
    pg.migrate()
    far = dt.date(2031, 5, 1)
    rid = add_report(pg, 3, captured=dt.datetime(2031, 5, 2, tzinfo=dt.UTC))
    with pg.connect() as conn:
        conn.execute(pg.sql("INSERT INTO track_points VALUES (?, ?, ?, ?, ?)"),
                     ("pv-0001", "2031-05-02T00:00:00Z", 1.0, 2.0, None))
    assert holder(pg, rid) == "reports_default"
    made = pg.add_month_partitions(months_ahead=0, today=far)
    assert made == ["reports_2031_05", "track_points_2031_05"]
    assert holder(pg, rid) == "reports_2031_05"
    assert pg.fetchall("SELECT COUNT(*) AS n FROM track_points_2031_05") == [{"n": 1}]
    assert pg.add_month_partitions(months_ahead=0, today=far) == []  # made once
    # a month's query reads that month's partition only
    plan = "\n".join(r["QUERY PLAN"] for r in pg.fetchall(
        "EXPLAIN SELECT id FROM reports WHERE captured_at >= '2031-05-01' "
        "AND captured_at < '2031-06-01'"))
    assert "reports_2031_05" in plan and "reports_default" not in plan


def test_the_centre_numbers_its_reports_past_a_claimed_id(pg):
    """The call centre numbers its reports itself: an id claimed with no row (its
    month's partition detached, or a report filed at the same moment) makes it count on
    instead of losing the report or giving up."""
    from gridlink.gateway.api import MIGRATIONS
    from gridlink.gateway.cases.sources import CENTRE_DEVICE, OperatorReports
    from gridlink.gateway.open311 import ClassNames

    pg.migrate(extra=MIGRATIONS)
    with pg.connect() as conn:
        for n in (1, 2):
            conn.execute(pg.sql("INSERT INTO report_ids (id) VALUES (?)"),
                         (f"{CENTRE_DEVICE}:{n:012d}",))
    centre = OperatorReports(pg, ClassNames.load())
    rid = centre.file(source="12345", code=centre.codes()[0], lat=34.82, lon=113.28,
                      operator="op")
    assert rid == f"{CENTRE_DEVICE}:000000000003"
    assert pg.fetchall("SELECT id FROM reports") == [{"id": rid}]
