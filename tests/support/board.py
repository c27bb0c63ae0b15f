"""The intake board as a browser test drives it: an operator signs in on its form."""

PASSWORD = "board test password"


def add_operator(store, name, roles=("acceptor",), display=None):
    from gridlink.gateway.auth.accounts import Accounts

    Accounts(store).add(name, roles, PASSWORD, display=display)


def sign_in(page, user, password=PASSWORD):
    """Fill the board's sign-in form (shown when the board has no session) and wait until
    it is gone."""
    page.wait_for_selector("#signin-pane:not([hidden])")
    page.fill("#si-user", user)
    page.fill("#si-pass", password)
    page.click("#b-signin")
    page.wait_for_selector("#signin-pane", state="hidden")
