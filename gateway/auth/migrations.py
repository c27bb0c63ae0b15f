"""The tables of people, tokens, sessions and the audit trail (store migrations)."""

_ACCOUNTS = """
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    display TEXT,
    roles TEXT NOT NULL,
    password_hash TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    locked_until TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    owner TEXT NOT NULL,
    roles TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT,
    last_used TEXT
);
CREATE TABLE sessions (
    digest TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    csrf TEXT NOT NULL,
    address TEXT,
    created_at TEXT NOT NULL,
    seen_at TEXT NOT NULL,
    ended_at TEXT
);
CREATE INDEX sessions_user ON sessions (user_name);
CREATE TABLE audit (
    n BIGINT PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    address TEXT,
    action TEXT NOT NULL,
    target TEXT,
    before_state TEXT,
    after_state TEXT,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_target ON audit (target, n);
CREATE INDEX audit_at ON audit (at);
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY,
    n BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, n, hash) VALUES (1, 0, '{genesis}');
""".format(genesis="0" * 64)

MIGRATIONS = (("auth_001_accounts_and_audit", _ACCOUNTS, _ACCOUNTS),)
