"""Who may do what at the supervision centre: operators, roles, sessions, API tokens and
the tamper-evident audit trail of every decision.

- ``roles``: the centre's roles (受理员, 值班长, 技术员, 只读/大屏, 管理员) and what each may do;
- ``passwords``: argon2id hashing through argon2-cffi;
- ``accounts``: users, API tokens and board sessions kept in the intake store;
- ``audit``: an append-only, hash-chained record of who changed what, from where.
"""
