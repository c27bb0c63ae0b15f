"""Who may call which route: the one table every request of the HTTP API is checked against.

Each route of the app, as (METHOD, path template), names the permission it needs
(``roles.READ`` …), ``SIGNED_IN`` (any operator) or ``PUBLIC`` (no sign-in).  A route
missing from the table is refused to everyone, so a new endpoint stays closed until it is
given a line here.
"""

from . import roles

PUBLIC = "public"          # no sign-in: the sign-in itself, the Open311 service list
SIGNED_IN = "signed-in"    # any operator, whatever the role

POLICY = {
    # the board's page and the session
    ("GET", "/"): PUBLIC,
    ("POST", "/api/session"): PUBLIC,
    ("GET", "/api/session"): SIGNED_IN,
    ("DELETE", "/api/session"): SIGNED_IN,
    # the intake queue
    ("GET", "/api/reports"): roles.READ,
    ("GET", "/api/reports/{report_id}"): roles.READ,
    ("GET", "/api/reports/{report_id}/history"): roles.READ,
    ("POST", "/api/reports/{report_id}/claim"): roles.DECIDE,
    ("POST", "/api/reports/{report_id}/release"): roles.DECIDE,
    ("POST", "/api/reports/{report_id}/accept"): roles.DECIDE,
    ("POST", "/api/reports/{report_id}/reject"): roles.DECIDE,
    ("GET", "/api/summary"): roles.READ,
    ("GET", "/api/events"): roles.READ,
    # the fleet
    ("GET", "/api/devices"): roles.READ,
    ("GET", "/api/dead-letters"): roles.READ,
    # tasks and grid assignments
    ("GET", "/api/assignments"): roles.READ,
    ("PUT", "/api/assignments/{grid}"): roles.ASSIGN,
    ("DELETE", "/api/assignments/{grid}"): roles.ASSIGN,
    ("GET", "/api/tasks"): roles.READ,
    ("POST", "/api/tasks"): roles.TASKS,
    ("GET", "/api/tasks/{task_id}"): roles.READ,
    ("POST", "/api/tasks/{task_id}/dispatch"): roles.TASKS,
    # the map, the photos, the clips and memos
    ("GET", "/api/grid"): roles.READ,
    ("GET", "/api/photos/{sha256}"): roles.READ,
    ("GET", "/api/media/{sha256}"): roles.READ,
    # the audit trail
    ("GET", "/api/audit"): roles.AUDIT,
    # Open311 GeoReport v2: the service list is public, the requests are reports
    ("GET", "/open311/v2/services.json"): PUBLIC,
    ("GET", "/open311/v2/requests.json"): roles.READ,
    ("GET", "/open311/v2/requests/{request_id}.json"): roles.READ,
}

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def required(method, path):
    """The permission (or PUBLIC / SIGNED_IN) for a route; None when the route is not in
    the table (and so refused)."""
    return POLICY.get((method.upper(), path))


def unlisted(routes):
    """The (method, path) pairs of ``routes`` (pairs) that the table does not name."""
    return sorted({(m.upper(), p) for m, p in routes} - set(POLICY))
