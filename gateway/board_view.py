"""The intake board's change fingerprint: one row that changes whenever anything the
board shows does (reports, intake decisions, tasks, devices)."""

from .store.sql import one, run


def fingerprint(store):
    """Counts and latest change times of every table the board shows, as one dict."""
    with store.connect() as conn:
        return one(run(
            store, conn,
            "SELECT (SELECT COUNT(*) FROM reports) AS reports,"
            " (SELECT MAX(committed_at) FROM reports) AS committed,"
            " (SELECT COUNT(*) FROM intake) AS intake,"
            " (SELECT MAX(updated_at) FROM intake) AS intake_at,"
            " (SELECT COUNT(*) FROM tasks) AS tasks,"
            " (SELECT MAX(COALESCE(done_at, sent_at, created_at)) FROM tasks) AS tasks_at,"
            " (SELECT COUNT(*) FROM devices) AS devices,"
            " (SELECT MAX(last_seen) FROM devices) AS devices_at,"
            " (SELECT COUNT(*) FROM devices WHERE state = 'offline') AS offline,"
            " (SELECT COUNT(*) FROM cases) AS cases,"
            " (SELECT MAX(updated_at) FROM cases) AS cases_at"))
