"""Built-in schema migrations: (name, sqlite_sql, postgres_sql), applied in order.

A migration is never edited once shipped; a change is a new migration.  Other parts
(the intake board) pass their own as ``store.migrate(extra=...)`` in the same shape.
"""

_REPORTS = """
CREATE TABLE reports (
    id TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    district TEXT NOT NULL,
    seq INTEGER NOT NULL,
    captured_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    committed_at TEXT NOT NULL,
    time_source TEXT,
    lat {real},
    lon {real},
    fix_mode INTEGER,
    fix_status INTEGER,
    flags TEXT NOT NULL,
    grid TEXT,
    grid_device TEXT,
    grid_mismatch INTEGER NOT NULL DEFAULT 0,
    street TEXT,
    kind TEXT NOT NULL,
    standard TEXT NOT NULL,
    code TEXT NOT NULL,
    object TEXT,
    source TEXT NOT NULL,
    task TEXT,
    result TEXT,
    text TEXT,
    photos TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX reports_captured_at ON reports (captured_at);
CREATE INDEX reports_grid ON reports (grid);
CREATE INDEX reports_device ON reports (device);
CREATE TABLE dead_letters (
    id {serial},
    received_at TEXT NOT NULL,
    topic TEXT NOT NULL,
    device TEXT,
    reason TEXT NOT NULL,
    payload TEXT NOT NULL,
    payload_encoding TEXT NOT NULL
);
CREATE INDEX dead_letters_received_at ON dead_letters (received_at);
CREATE TABLE devices (
    device TEXT PRIMARY KEY,
    district TEXT NOT NULL,
    state TEXT,
    last_seen TEXT NOT NULL,
    status TEXT,
    last_lat {real},
    last_lon {real},
    last_fix_at TEXT,
    outbox_reports INTEGER,
    firmware TEXT,
    codebook TEXT,
    profile TEXT
);
CREATE TABLE photos (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    complete INTEGER NOT NULL DEFAULT 0,
    path TEXT,
    first_report TEXT,
    chunks INTEGER,
    chunks_received INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    completed_at TEXT
);
CREATE TABLE photo_chunks (
    sha256 TEXT NOT NULL,
    n INTEGER NOT NULL,
    total INTEGER NOT NULL,
    data {blob} NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (sha256, n)
);
CREATE TABLE report_photos (
    report_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (report_id, sha256)
);
CREATE INDEX report_photos_sha256 ON report_photos (sha256);
CREATE TABLE track_points (
    device TEXT NOT NULL,
    t TEXT NOT NULL,
    lat {real} NOT NULL,
    lon {real} NOT NULL,
    speed {real},
    PRIMARY KEY (device, t)
);
"""

_SQLITE = {"real": "REAL", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB"}
_POSTGRES = {"real": "DOUBLE PRECISION", "serial": "BIGSERIAL PRIMARY KEY", "blob": "BYTEA"}

# A rejection's digest (sha256 of its topic, a NUL and its payload) is unique: a rejected
# message the broker hands over again (the gateway stopped after the commit, before the
# PUBACK) is not a second dead letter.  Rows from before this migration have none.  One
# device's dead letters, newest first, are read straight from an index; and each device's
# count and newest one are kept as they are written (the fleet view reads them at every
# board refresh: counting a million dead letters took 225 ms), counted here once for the
# rows already there.
_DEAD_LETTER_DIGEST = """
ALTER TABLE dead_letters ADD COLUMN digest TEXT;
CREATE UNIQUE INDEX dead_letters_digest ON dead_letters (digest);
CREATE INDEX dead_letters_device ON dead_letters (device, id);
CREATE TABLE dead_letter_devices (
    device TEXT PRIMARY KEY,
    refused BIGINT NOT NULL,
    newest_id BIGINT NOT NULL
);
INSERT INTO dead_letter_devices (device, refused, newest_id)
SELECT device, COUNT(*), MAX(id) FROM dead_letters WHERE device IS NOT NULL GROUP BY device;
"""

# A report's digest: sha256 (hex) of the payload bytes as received, so that a report id
# that comes again can be told from a reused one (docs/protocol.md §5, "Same id, same
# content").  Rows from before this migration have none: they compare by the canonical
# encoding of their stored ``payload``.  Each device's refused reused ids are counted
# beside its dead letters (the fleet view shows them).
_REPORT_DIGEST = """
ALTER TABLE reports ADD COLUMN digest TEXT;
ALTER TABLE dead_letter_devices ADD COLUMN id_reused BIGINT NOT NULL DEFAULT 0;
"""

# A capture time far from the receive time is flagged, never dropped (docs/protocol.md
# §3.1, "Capture-time flags"): ``time_flag`` is NULL, or why the time is doubtful.
_TIME_FLAG = """
ALTER TABLE reports ADD COLUMN time_flag TEXT;
"""

# Photo chunks kept per uploading device: one device's chunks never mix with another's
# transfer of the same photo (a poisoned chunk spoils only the sender's own transfer), and
# each device's unfinished bytes are counted (``bytes``) for its quota.  The chunks of
# transfers in progress move over, as their photo's first reporting device's.
_PHOTO_PARTS = """
CREATE TABLE photo_parts (
    sha256 TEXT NOT NULL,
    device TEXT NOT NULL,
    n INTEGER NOT NULL,
    total INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    data {blob} NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (sha256, device, n)
);
CREATE INDEX photo_parts_device ON photo_parts (device);
INSERT INTO photo_parts (sha256, device, n, total, bytes, data, received_at)
SELECT c.sha256, {device_of}, c.n, c.total, LENGTH(c.data), c.data, c.received_at
FROM photo_chunks c JOIN photos p ON p.sha256 = c.sha256 WHERE p.first_report LIKE '%:%';
DROP TABLE photo_chunks;
"""

# A report's seq has 12 digits (protocol v1) and devices start their counters at the clock
# (about 1.8e9 now, past PostgreSQL's INTEGER in 2038): 64 bits.  SQLite's INTEGER is 64
# bits already.
_SEQ_BIGINT = "ALTER TABLE reports ALTER COLUMN seq TYPE BIGINT"

# An urgent report (突发事件, the report's ``urgent``) is listed above every other in the
# intake queue: a partial index finds the few urgent ones without walking the rest.
_URGENT = """
ALTER TABLE reports ADD COLUMN urgent INTEGER NOT NULL DEFAULT 0;
CREATE INDEX reports_urgent ON reports (id) WHERE urgent = 1;
"""

BUILTIN = (
    ("0001_gateway_tables", _REPORTS.format(**_SQLITE), _REPORTS.format(**_POSTGRES)),
    ("0002_dead_letter_digest", _DEAD_LETTER_DIGEST, _DEAD_LETTER_DIGEST),
    ("0003_report_digest", _REPORT_DIGEST, _REPORT_DIGEST),
    ("0004_capture_time_flag", _TIME_FLAG, _TIME_FLAG),
    ("0005_photo_parts",
     _PHOTO_PARTS.format(blob="BLOB",
                         device_of="substr(p.first_report, 1, instr(p.first_report, ':') - 1)"),
     _PHOTO_PARTS.format(blob="BYTEA", device_of="split_part(p.first_report, ':', 1)")),
    ("0006_report_seq_bigint", "SELECT 1", _SEQ_BIGINT),
    ("urgent_001_report_urgent", _URGENT, _URGENT),
)

# PostgreSQL: the two tables that grow with the fleet — reports and track points — are
# partitioned by month of their time (a report's capture time, a track point's fix time:
# the times every listing and window reads by), so a province's years stay as fast to
# write and to read by time as one month, and an old month leaves as one table
# (DETACH PARTITION) instead of a DELETE of millions of rows.  A partitioned table's
# unique keys must hold its partition key, so a report id alone cannot be the reports'
# primary key any more: ``report_ids`` (one narrow row a report) is what keeps it unique.
# Every row inserted into ``reports`` — by the ingest's INSERT … ON CONFLICT DO NOTHING or
# any other — claims its id there first (a trigger); a row whose id is taken is not
# inserted, as ON CONFLICT DO NOTHING on the old primary key did, and concurrent claims of
# one id wait for each other on that primary key.  A row deleted gives its id back (a
# trigger); a month detached keeps its ids claimed (an archived report sent again stays
# a duplicate).  Times outside the months made go to
# each table's DEFAULT partition; ``gridlink_month_partition`` makes a month's partition
# (moving that month's rows out of the default one), for the months of the rows already
# there now and, at every ``migrate``, from the current month to two ahead
# (``PostgresStore.add_month_partitions``).  Indexes the board's migrations put on the
# tables are made again on the partitioned ones.  SQLite tables stay as they are.
_MONTH_PARTITIONS = r"""
CREATE TABLE report_ids (id TEXT PRIMARY KEY);

CREATE FUNCTION gridlink_claim_report_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_ids (id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    IF FOUND THEN
        RETURN NEW;
    END IF;
    RETURN NULL;  -- the id is taken: this row is not inserted
END $$;

CREATE FUNCTION gridlink_release_report_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM report_ids WHERE id = OLD.id;
    RETURN NULL;
END $$;

CREATE FUNCTION gridlink_month_partition(tbl text, month date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    part text := tbl || '_' || to_char(month, 'YYYY_MM');
    lo text := to_char(date_trunc('month', month), 'YYYY-MM-DD');
    hi text := to_char(date_trunc('month', month) + interval '1 month', 'YYYY-MM-DD');
    key text := CASE tbl WHEN 'reports' THEN 'captured_at' ELSE 't' END;
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('LOCK TABLE %I IN EXCLUSIVE MODE', tbl || '_default');
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS)', part, tbl);
    EXECUTE format('WITH moved AS (DELETE FROM %I WHERE %I >= %L AND %I < %L RETURNING *) '
                   'INSERT INTO %I SELECT * FROM moved',
                   tbl || '_default', key, lo, key, hi, part);
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   tbl, part, lo, hi);
    RETURN true;
END $$;

CREATE TEMP TABLE gridlink_saved_indexes ON COMMIT DROP AS
SELECT indexdef FROM pg_indexes
WHERE schemaname = current_schema() AND tablename IN ('reports', 'track_points')
  AND indexname NOT IN ('reports_pkey', 'track_points_pkey');

ALTER TABLE reports RENAME TO reports_unpartitioned;
CREATE TABLE reports (LIKE reports_unpartitioned INCLUDING DEFAULTS)
    PARTITION BY RANGE (captured_at);
ALTER TABLE reports ADD CONSTRAINT reports_key PRIMARY KEY (id, captured_at);
CREATE TABLE reports_default PARTITION OF reports DEFAULT;

ALTER TABLE track_points RENAME TO track_points_unpartitioned;
CREATE TABLE track_points (LIKE track_points_unpartitioned INCLUDING DEFAULTS)
    PARTITION BY RANGE (t);
ALTER TABLE track_points ADD CONSTRAINT track_points_key PRIMARY KEY (device, t);
CREATE TABLE track_points_default PARTITION OF track_points DEFAULT;

DO $$
DECLARE m date;
BEGIN
    FOR m IN SELECT DISTINCT to_date(left(captured_at, 7), 'YYYY-MM') FROM reports_unpartitioned
             WHERE captured_at ~ '^(19|20)[0-9][0-9]-(0[1-9]|1[0-2])' LOOP
        PERFORM gridlink_month_partition('reports', m);
    END LOOP;
    FOR m IN SELECT DISTINCT to_date(left(t, 7), 'YYYY-MM') FROM track_points_unpartitioned
             WHERE t ~ '^(19|20)[0-9][0-9]-(0[1-9]|1[0-2])' LOOP
        PERFORM gridlink_month_partition('track_points', m);
    END LOOP;
END $$;

INSERT INTO reports SELECT * FROM reports_unpartitioned;
INSERT INTO report_ids (id) SELECT id FROM reports_unpartitioned;
INSERT INTO track_points SELECT * FROM track_points_unpartitioned;
DROP TABLE reports_unpartitioned;
DROP TABLE track_points_unpartitioned;
ALTER TABLE reports RENAME CONSTRAINT reports_key TO reports_pkey;
ALTER TABLE track_points RENAME CONSTRAINT track_points_key TO track_points_pkey;

DO $$
DECLARE def text;
BEGIN
    FOR def IN SELECT indexdef FROM gridlink_saved_indexes LOOP
        EXECUTE def;
    END LOOP;
END $$;

CREATE TRIGGER reports_claim_id BEFORE INSERT ON reports
    FOR EACH ROW EXECUTE FUNCTION gridlink_claim_report_id();
CREATE TRIGGER reports_release_id AFTER DELETE ON reports
    FOR EACH ROW EXECUTE FUNCTION gridlink_release_report_id();
"""

BUILTIN += (("0007_month_partitions", "SELECT 1", _MONTH_PARTITIONS),)
