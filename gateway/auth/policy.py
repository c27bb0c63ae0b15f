"""Who may call which route: the one table every request of the HTTP API is checked against.

Each route of the app, as (METHOD, path template), names the permission it needs
(``roles.READ`` …), ``SIGNED_IN`` (any operator) or ``PUBLIC`` (no sign-in).  A route
missing from the table is refused to everyone, so a new endpoint stays closed until it is
given a line here.
"""

from . import roles

PUBLIC = "public"          # no sign-in: the sign-in, the Open311 service list, /ota/
SIGNED_IN = "signed-in"    # any operator, whatever the role

POLICY = {
    # the board's page and the session
    ("GET", "/"): PUBLIC,
    ("POST", "/api/session"): PUBLIC,
    ("GET", "/api/session"): SIGNED_IN,
    ("DELETE", "/api/session"): SIGNED_IN,
    # signing in through the city's identity provider (OpenID Connect)
    ("GET", "/api/session/providers"): PUBLIC,
    ("GET", "/api/session/oidc"): PUBLIC,
    ("GET", "/api/session/oidc/callback"): PUBLIC,
    # the intake queue
    ("GET", "/api/reports"): roles.READ,
    ("POST", "/api/reports"): roles.DECIDE,
    ("GET", "/api/reports/{report_id}"): roles.READ,
    ("GET", "/api/reports/{report_id}/history"): roles.READ,
    ("POST", "/api/reports/{report_id}/claim"): roles.DECIDE,
    ("POST", "/api/reports/{report_id}/release"): roles.DECIDE,
    ("POST", "/api/reports/{report_id}/accept"): roles.DECIDE,
    ("POST", "/api/reports/{report_id}/reject"): roles.DECIDE,
    ("POST", "/api/reports/{report_id}/merge"): roles.DECIDE,
    ("GET", "/api/summary"): roles.READ,
    ("GET", "/api/events"): roles.READ,
    # the fleet
    ("GET", "/api/devices"): roles.READ,
    ("GET", "/api/dead-letters"): roles.READ,
    # desired state: fleet technicians change it, anyone who reads sees it
    ("POST", "/api/fleet/config"): roles.FLEET,
    ("GET", "/api/fleet/config"): roles.READ,
    ("GET", "/api/fleet/config/devices"): roles.READ,
    ("GET", "/api/fleet/config/devices/{device}"): roles.READ,
    # tasks and grid assignments
    ("GET", "/api/assignments"): roles.READ,
    ("PUT", "/api/assignments/{grid}"): roles.ASSIGN,
    ("DELETE", "/api/assignments/{grid}"): roles.ASSIGN,
    ("GET", "/api/tasks"): roles.READ,
    ("POST", "/api/tasks"): roles.TASKS,
    ("GET", "/api/tasks/{task_id}"): roles.READ,
    ("POST", "/api/tasks/{task_id}/dispatch"): roles.TASKS,
    # cases after 立案 (docs/cases.md)
    ("GET", "/api/cases"): roles.READ,
    ("GET", "/api/cases/{case_no}"): roles.READ,
    ("POST", "/api/cases/{case_no}/dispatch"): roles.CASE_DISPATCH,
    ("POST", "/api/cases/{case_no}/start"): roles.CASE_HANDLE,
    ("POST", "/api/cases/{case_no}/feedback"): roles.CASE_HANDLE,
    ("POST", "/api/cases/{case_no}/check"): roles.TASKS,
    ("POST", "/api/cases/{case_no}/defer"): roles.CASE_LEAD,
    ("POST", "/api/cases/{case_no}/resume"): roles.CASE_LEAD,
    ("POST", "/api/cases/{case_no}/void"): roles.CASE_LEAD,
    ("POST", "/api/cases/{case_no}/override"): roles.CASE_LEAD,
    ("GET", "/api/departments"): roles.READ,
    ("PUT", "/api/departments/{dept_id}"): roles.DEPARTMENTS,
    ("GET", "/api/deadlines"): roles.READ,
    ("PUT", "/api/deadlines/{stage}/{code}"): roles.DEPARTMENTS,
    ("GET", "/api/calendar"): roles.READ,
    ("PUT", "/api/calendar/{day}"): roles.DEPARTMENTS,
    ("DELETE", "/api/calendar/{day}"): roles.DEPARTMENTS,
    # the bridge out: case messages to departments' systems and the city platform
    ("GET", "/api/bridge/outbox"): roles.READ,
    ("GET", "/api/bridge/outbox/{msg_id}"): roles.READ,
    ("POST", "/api/bridge/outbox/{msg_id}/retry"): roles.CASE_LEAD,
    ("POST", "/api/cases/{case_no}/photos"): roles.CASE_HANDLE,
    # the map, the photos, the clips and memos
    ("GET", "/api/grid"): roles.READ,
    ("GET", "/api/photos/{sha256}"): roles.READ,
    ("GET", "/api/media/{sha256}"): roles.READ,
    # evaluation: the roster (监督员, devices, shifts, work grids, duty) and the figures
    ("GET", "/api/supervisors"): roles.READ,
    ("PUT", "/api/supervisors/{supervisor_id}"): roles.ASSIGN,
    ("POST", "/api/supervisors/{supervisor_id}/devices"): roles.ASSIGN,
    ("GET", "/api/carries"): roles.READ,
    ("GET", "/api/shifts"): roles.READ,
    ("PUT", "/api/shifts/{name}"): roles.ASSIGN,
    ("GET", "/api/work-grids"): roles.READ,
    ("PUT", "/api/work-grids/{work_grid_id}"): roles.ASSIGN,
    ("DELETE", "/api/work-grids/{work_grid_id}"): roles.ASSIGN,
    ("GET", "/api/duty"): roles.READ,
    ("POST", "/api/duty"): roles.ASSIGN,
    ("POST", "/api/duty/schedule"): roles.ASSIGN,
    ("GET", "/api/evaluation/rates"): roles.READ,
    ("GET", "/api/evaluation/coverage"): roles.READ,
    ("GET", "/api/evaluation/unvisited"): roles.READ,
    # the 大屏 wall view and the base map under the board's map
    ("GET", "/api/wall"): roles.READ,
    ("GET", "/api/basemap"): roles.READ,
    # the audit trail
    ("GET", "/api/audit"): roles.AUDIT,
    # Open311 GeoReport v2: the service list is public, the requests are reports
    ("GET", "/open311/v2/services.json"): PUBLIC,
    ("GET", "/open311/v2/requests.json"): roles.READ,
    ("GET", "/open311/v2/requests/{request_id}.json"): roles.READ,
    # Prometheus scrapes with a read-only (只读) token
    ("GET", "/metrics"): roles.READ,
    # rollouts of releases: a 技术员's act
    ("GET", "/api/rollouts"): roles.READ,
    ("POST", "/api/rollouts"): roles.FLEET,
    ("GET", "/api/rollouts/{rollout_id}"): roles.READ,
    ("POST", "/api/rollouts/{rollout_id}/pause"): roles.FLEET,
    ("POST", "/api/rollouts/{rollout_id}/resume"): roles.FLEET,
    ("POST", "/api/rollouts/{rollout_id}/abort"): roles.FLEET,
    # the update repository, open to read: devices hold no operator token, and every byte
    # is TUF-signed metadata or a release file the signed metadata names by its hash
    ("GET", "/ota/metadata/{name}"): PUBLIC,
    ("GET", "/ota/targets/{kind}/{name}"): PUBLIC,
}

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Every route that changes state, and the audit action it writes (``auth.audit``): every
# non-GET route, and the one GET that changes something (the identity provider's answer
# opens a session).  The tests walk the app's routes against this table and drive each.
AUDITED = {
    ("POST", "/api/session"): "session.open",           # session.failed when refused
    ("DELETE", "/api/session"): "session.close",
    ("GET", "/api/session/oidc/callback"): "session.open",  # session.failed when refused
    ("POST", "/api/reports/{report_id}/claim"): "report.claim",
    ("POST", "/api/reports/{report_id}/release"): "report.release",
    ("POST", "/api/reports/{report_id}/accept"): "report.accept",
    ("POST", "/api/reports/{report_id}/reject"): "report.reject",
    ("PUT", "/api/assignments/{grid}"): "assignment.put",
    ("DELETE", "/api/assignments/{grid}"): "assignment.delete",
    ("POST", "/api/tasks"): "task.create",
    ("POST", "/api/tasks/{task_id}/dispatch"): "task.dispatch",
    ("PUT", "/api/supervisors/{supervisor_id}"): "supervisor.put",
    ("POST", "/api/supervisors/{supervisor_id}/devices"): "device.carry",
    ("PUT", "/api/shifts/{name}"): "shift.put",
    ("PUT", "/api/work-grids/{work_grid_id}"): "work_grid.put",
    ("DELETE", "/api/work-grids/{work_grid_id}"): "work_grid.delete",
    ("POST", "/api/duty"): "duty.add",
    ("POST", "/api/duty/schedule"): "duty.schedule",
    ("POST", "/api/fleet/config"): "fleet.config",
    ("POST", "/api/reports"): "report.file",
    ("PUT", "/api/departments/{dept_id}"): "department.put",
    ("PUT", "/api/deadlines/{stage}/{code}"): "deadline.put",
    ("PUT", "/api/calendar/{day}"): "calendar.put",
    ("DELETE", "/api/calendar/{day}"): "calendar.delete",
    ("POST", "/api/cases/{case_no}/defer"): "case.defer",
    ("POST", "/api/cases/{case_no}/resume"): "case.resume",
    ("POST", "/api/cases/{case_no}/dispatch"): "case.dispatch",
    ("POST", "/api/cases/{case_no}/start"): "case.start",
    ("POST", "/api/cases/{case_no}/feedback"): "case.feedback",
    ("POST", "/api/cases/{case_no}/check"): "case.check",      # then task.create, its task
    ("POST", "/api/cases/{case_no}/void"): "case.void",
    ("POST", "/api/cases/{case_no}/override"): "case.override",
    ("POST", "/api/rollouts"): "rollout.create",
    ("POST", "/api/rollouts/{rollout_id}/pause"): "rollout.pause",
    ("POST", "/api/rollouts/{rollout_id}/resume"): "rollout.resume",
    ("POST", "/api/rollouts/{rollout_id}/abort"): "rollout.abort",
    ("POST", "/api/bridge/outbox/{msg_id}/retry"): "bridge.retry",
    ("POST", "/api/cases/{case_no}/photos"): "case.photo",
    ("POST", "/api/reports/{report_id}/merge"): "report.merge",
}


def required(method, path):
    """The permission (or PUBLIC / SIGNED_IN) for a route; None when the route is not in
    the table (and so refused)."""
    return POLICY.get((method.upper(), path))


def unlisted(routes):
    """The (method, path) pairs of ``routes`` (pairs) that the table does not name."""
    return sorted({(m.upper(), p) for m, p in routes} - set(POLICY))
