"""Users, sign-in with lockout, sessions with idle and absolute timeouts, API tokens."""

import pytest
from gridlink.gateway.auth import accounts as acc
from gridlink.gateway.auth.accounts import Accounts
from gridlink.gateway.auth.errors import AccountError, LockedOut, Unauthenticated
from gridlink.gateway.auth.migrations import MIGRATIONS

PW = "correct horse battery"


class Clock:
    def __init__(self):
        self.t = 1_790_000_000.0

    def __call__(self):
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def accounts(store, clock):
    store.migrate(extra=MIGRATIONS)
    return Accounts(store, clock=clock)


def test_a_user_signs_in_with_the_right_password_only(accounts):
    accounts.add("slw-01", "acceptor", PW, display="受理员一")
    who = accounts.authenticate("slw-01", PW)
    assert (who.name, who.roles, who.via) == ("slw-01", ("acceptor",), "password")
    with pytest.raises(Unauthenticated, match="wrong user name or password"):
        accounts.authenticate("slw-01", PW + "!")
    with pytest.raises(Unauthenticated, match="wrong user name or password"):
        accounts.authenticate("nobody", PW)


def test_the_password_is_stored_as_an_argon2id_hash(accounts, store):
    accounts.add("slw-01", "acceptor", PW)
    stored = store.fetchall("SELECT password_hash FROM users")[0]["password_hash"]
    assert stored.startswith("$argon2id$") and PW not in stored


@pytest.mark.parametrize(("name", "roles", "password", "message"), [
    ("Slw", "acceptor", PW, "user name"),
    ("s", "acceptor", PW, "user name"),
    ("slw-01", "boss", PW, "unknown role"),
    ("slw-01", "", PW, "at least one role"),
    ("slw-01", "acceptor", "short", "at least 10"),
    ("slw-01", "acceptor", "aaaaaaaaaaaa", "too easy"),
    ("slw-01", "acceptor", "slw-01-password", "too easy"),
])
def test_bad_accounts_are_refused_with_the_reason(accounts, name, roles, password, message):
    with pytest.raises(AccountError, match=message):
        accounts.add(name, roles, password)
    assert accounts.list() == []


def test_roles_may_be_given_by_their_chinese_names(accounts):
    assert accounts.add("zbz-01", "值班长,受理员", PW)["roles"] == ["shift_lead", "acceptor"]


def test_a_user_name_is_added_once(accounts):
    accounts.add("slw-01", "acceptor", PW)
    with pytest.raises(AccountError, match="exists"):
        accounts.add("slw-01", "admin", PW)
    assert accounts.get("slw-01")["roles"] == ["acceptor"]


def test_five_failures_lock_the_account_then_it_opens_again(accounts, clock):
    accounts.add("slw-01", "acceptor", PW)
    for _ in range(acc.MAX_FAILED):
        with pytest.raises(Unauthenticated):
            accounts.authenticate("slw-01", "wrong password!")
    with pytest.raises(LockedOut) as locked:
        accounts.authenticate("slw-01", PW)  # even the right one, while locked
    assert 0 < locked.value.retry_after <= acc.LOCKOUT_S
    clock.t += acc.LOCKOUT_S + 1
    assert accounts.authenticate("slw-01", PW).name == "slw-01"


def test_a_success_resets_the_failure_count(accounts):
    accounts.add("slw-01", "acceptor", PW)
    for _ in range(acc.MAX_FAILED - 1):
        with pytest.raises(Unauthenticated):
            accounts.authenticate("slw-01", "wrong password!")
    accounts.authenticate("slw-01", PW)
    for _ in range(acc.MAX_FAILED - 1):
        with pytest.raises(Unauthenticated):
            accounts.authenticate("slw-01", "wrong password!")
    assert accounts.authenticate("slw-01", PW)


def test_a_session_lives_while_used_and_ends_when_idle(accounts, clock):
    accounts.add("slw-01", "acceptor", PW)
    cookie, csrf = accounts.open_session(accounts.authenticate("slw-01", PW), "10.0.0.5")
    for _ in range(3):
        clock.t += acc.IDLE_S - 5
        who = accounts.session(cookie)
        assert (who.name, who.csrf, who.via) == ("slw-01", csrf, "session")
    clock.t += acc.IDLE_S + 1
    with pytest.raises(Unauthenticated, match="idle"):
        accounts.session(cookie)
    with pytest.raises(Unauthenticated):
        accounts.session(cookie)  # ended for good, not revived by the clock


def test_a_session_ends_at_its_absolute_limit_however_busy(accounts, clock):
    accounts.add("slw-01", "acceptor", PW)
    cookie, _ = accounts.open_session(accounts.authenticate("slw-01", PW))
    while clock.t < 1_790_000_000.0 + acc.ABSOLUTE_S - 60:
        clock.t += 600
        accounts.session(cookie)
    clock.t += 120
    with pytest.raises(Unauthenticated, match="older than"):
        accounts.session(cookie)


def test_a_forged_or_altered_cookie_is_refused(accounts):
    accounts.add("slw-01", "acceptor", PW)
    cookie, _ = accounts.open_session(accounts.authenticate("slw-01", PW))
    sid, sig = cookie.rsplit(".", 1)
    for bad in (sid, f"{sid}.{'0' * len(sig)}", f"x{sid}.{sig}", "", "..."):
        with pytest.raises(Unauthenticated):
            accounts.session(bad)
    assert accounts.session(cookie).name == "slw-01"


def test_signing_out_disabling_and_a_new_password_end_sessions(accounts):
    accounts.add("slw-01", "acceptor", PW)
    accounts.add("slw-02", "acceptor", PW)
    one, _ = accounts.open_session(accounts.authenticate("slw-01", PW))
    two, _ = accounts.open_session(accounts.authenticate("slw-01", PW))
    other, _ = accounts.open_session(accounts.authenticate("slw-02", PW))
    accounts.close_session(one)
    with pytest.raises(Unauthenticated):
        accounts.session(one)
    assert accounts.session(two).name == "slw-01"
    accounts.reset_password("slw-01", "another good one")
    with pytest.raises(Unauthenticated):
        accounts.session(two)
    accounts.set_disabled("slw-02")
    with pytest.raises(Unauthenticated):
        accounts.session(other)
    with pytest.raises(Unauthenticated):
        accounts.authenticate("slw-02", PW)


def test_a_token_is_shown_once_kept_hashed_scoped_and_revocable(accounts, store):
    accounts.add("ops", "shift_lead,acceptor", PW)
    secret, record = accounts.issue_token("ops", "city platform", roles="acceptor", days=30)
    assert secret.startswith(acc.TOKEN_PREFIX)
    assert secret not in str(store.fetchall("SELECT * FROM api_tokens"))
    who = accounts.by_token(secret)
    assert (who.name, who.roles, who.via) == ("ops", ("acceptor",), "token")
    assert record["roles"] == ["acceptor"] and record["revoked_at"] is None
    accounts.revoke_token(record["id"])
    with pytest.raises(Unauthenticated, match="revoked"):
        accounts.by_token(secret)


def test_a_tokens_last_use_is_written_once_a_minute_and_a_failed_write_refuses_nothing(
        accounts, store, clock, monkeypatch):
    accounts.add("ops", "viewer", PW)
    secret, record = accounts.issue_token("ops", "prometheus", days=30)

    def last_used():
        return store.fetchall("SELECT last_used FROM api_tokens")[0]["last_used"]

    accounts.by_token(secret)
    first = last_used()
    assert first is not None
    clock.t += acc.LAST_USED_EVERY_S - 1
    accounts.by_token(secret)
    assert last_used() == first                      # not a write per request
    clock.t += 1
    accounts.by_token(secret)
    assert last_used() > first

    real = store.connect

    def no_writes(readonly=False):
        if not readonly:
            raise RuntimeError("the store takes no writes")
        return real(readonly=True)

    monkeypatch.setattr(store, "connect", no_writes)
    clock.t += acc.LAST_USED_EVERY_S
    assert accounts.by_token(secret).name == "ops"   # still signed in: /metrics scrapes
    monkeypatch.undo()
    accounts.revoke_token(record["id"])              # and a revoked one is still refused
    with pytest.raises(Unauthenticated, match="revoked"):
        accounts.by_token(secret)


def test_a_token_expires(accounts, clock):
    accounts.add("ops", "viewer", PW)
    secret, _ = accounts.issue_token("ops", "wall", days=1)
    clock.t += 86400 - 1
    assert accounts.by_token(secret).roles == ("viewer",)
    clock.t += 2
    with pytest.raises(Unauthenticated, match="expired"):
        accounts.by_token(secret)


def test_a_token_never_holds_more_than_its_owner(accounts):
    accounts.add("ops", "acceptor", PW)
    with pytest.raises(AccountError, match="not ops's"):
        accounts.issue_token("ops", "too much", roles="admin")
    accounts.add("lead", "shift_lead,acceptor", PW)
    secret, _ = accounts.issue_token("lead", "script")
    accounts.set_roles("lead", "acceptor")  # demoted: the token shrinks with the owner
    assert accounts.by_token(secret).roles == ("acceptor",)
    accounts.set_disabled("lead")
    with pytest.raises(Unauthenticated):
        accounts.by_token(secret)


@pytest.mark.parametrize("bad", ["", "glt_", "glt_unknown", "Bearer x", None, 42])
def test_unknown_tokens_are_refused(accounts, bad):
    with pytest.raises(Unauthenticated):
        accounts.by_token(bad)
