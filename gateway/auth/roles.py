"""The supervision centre's roles and the permissions each holds.

Every endpoint names one permission (``gridlink.gateway.auth.permissions``); a role holds
a set of them.  Roles follow the posts of a 数字城管 centre: 受理员 takes reports in and
decides them, 值班长 leads the shift (reassigns, overrides, sends tasks, assigns grids),
技术员 looks after the fleet, 只读/大屏 only reads, 管理员 manages people and tokens;
after 立案, 派遣员 dispatches cases to departments and a 专业部门 account reports their
handling (处置反馈).
"""

ACCEPTOR, SHIFT_LEAD, TECHNICIAN, VIEWER, ADMIN = (
    "acceptor", "shift_lead", "technician", "viewer", "admin")
DISPATCHER, DEPARTMENT = "dispatcher", "department"

LABELS = {ACCEPTOR: "受理员", SHIFT_LEAD: "值班长", TECHNICIAN: "技术员", VIEWER: "只读/大屏",
          ADMIN: "管理员", DISPATCHER: "派遣员", DEPARTMENT: "专业部门"}
ROLES = tuple(LABELS)

# permission → what it covers
READ = "read"                  # the queue, reports, photos, devices, tasks, the map
DECIDE = "intake.decide"       # claim, release, 立案, 不予立案 (one's own claims)
OVERRIDE = "intake.override"   # act on another operator's claim
TASKS = "tasks"                # send 核实/核查 tasks, dispatch again
ASSIGN = "assignments"         # grid → device assignments
FLEET = "fleet"                # devices, releases, configuration, revocation
USERS = "users"                # people and API tokens
AUDIT = "audit"                # read and export the audit trail
CASE_DISPATCH = "cases.dispatch"  # 派遣 a case to a department
CASE_HANDLE = "cases.handle"   # a department's side: 开始处置, 处置反馈
CASE_LEAD = "cases.lead"       # 挂账, 恢复, 作废, and setting a case's state by hand
DEPARTMENTS = "departments"    # departments and per-class deadlines

GRANTS = {
    ACCEPTOR: {READ, DECIDE},
    SHIFT_LEAD: {READ, DECIDE, OVERRIDE, TASKS, ASSIGN, AUDIT, CASE_DISPATCH, CASE_LEAD,
                 DEPARTMENTS},
    TECHNICIAN: {READ, FLEET},
    VIEWER: {READ},
    ADMIN: {READ, USERS, AUDIT, DEPARTMENTS},
    DISPATCHER: {READ, CASE_DISPATCH},
    DEPARTMENT: {READ, CASE_HANDLE},
}
PERMISSIONS = frozenset().union(*GRANTS.values())


def parse_roles(text_or_list):
    """A tuple of known roles from ``"acceptor,shift_lead"`` or a list; Chinese labels
    (受理员 …) are accepted too.  Raises ValueError naming an unknown one."""
    items = text_or_list.split(",") if isinstance(text_or_list, str) else list(text_or_list)
    by_label = {label: role for role, label in LABELS.items()}
    out = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        role = item if item in LABELS else by_label.get(item)
        if role is None:
            raise ValueError(f"unknown role {item!r}: one of {', '.join(ROLES)} "
                             f"({', '.join(LABELS.values())})")
        if role not in out:
            out.append(role)
    if not out:
        raise ValueError(f"at least one role: {', '.join(ROLES)}")
    return tuple(out)


def allows(roles, permission):
    """True when any of ``roles`` holds ``permission``."""
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")
    return any(permission in GRANTS.get(r, ()) for r in roles)
