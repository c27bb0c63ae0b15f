"""The intake board as a browser test drives it: a gateway's app served over a store of
its own, and an operator who signs in on its form."""

from contextlib import contextmanager
from functools import cache

PASSWORD = "board test password"


@contextmanager
def served_board(tmp_path, **app_options):
    """``create_app(store, **app_options)`` over a new SQLite store in ``tmp_path``,
    served on a free port: (server, store, app); the store is closed on exit."""
    from gridlink.gateway.api import create_app
    from gridlink.gateway.httpserver import BackgroundServer
    from gridlink.gateway.store import open_store

    store = open_store(f"sqlite:///{tmp_path}/intake.sqlite")
    try:
        app = create_app(store, **app_options)
        with BackgroundServer(app) as server:
            yield server, store, app
    finally:
        store.close()


def add_operator(store, name, roles=("acceptor",), display=None):
    """A user who signs in with PASSWORD.  Its argon2id hash (a second or more on a busy
    machine) is made once a run and given to every operator: any user's hash of a
    password verifies it."""
    from gridlink.gateway.auth.accounts import Accounts

    Accounts(store).add(name, roles, None, display=display)
    with store.connect() as conn:
        conn.execute(store.sql("UPDATE users SET password_hash = ? WHERE name = ?"),
                     (password_hash(), name))


@cache
def password_hash():
    from gridlink.gateway.auth.passwords import hash_password

    return hash_password(PASSWORD)


def sign_in(page, user, password=PASSWORD):
    """Fill the board's sign-in form (shown when the board has no session) and wait until
    it is gone."""
    page.wait_for_selector("#signin-pane:not([hidden])")
    page.fill("#si-user", user)
    page.fill("#si-pass", password)
    page.click("#b-signin")
    page.wait_for_selector("#signin-pane", state="hidden")
