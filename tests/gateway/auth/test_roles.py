"""The role table: who may do what."""

import pytest
from gridlink.gateway.auth import roles as r


def test_each_post_holds_what_the_centre_gives_it():
    assert r.allows(["acceptor"], r.DECIDE) and not r.allows(["acceptor"], r.OVERRIDE)
    assert r.allows(["shift_lead"], r.OVERRIDE) and r.allows(["shift_lead"], r.TASKS)
    assert r.allows(["technician"], r.FLEET) and not r.allows(["technician"], r.DECIDE)
    assert r.allows(["viewer"], r.READ) and not any(
        r.allows(["viewer"], p) for p in r.PERMISSIONS - {r.READ})
    assert r.allows(["admin"], r.USERS) and not r.allows(["admin"], r.DECIDE)
    assert all(r.allows([role], r.READ) for role in r.ROLES)


def test_an_unknown_permission_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown permission"):
        r.allows(["admin"], "everything")


@pytest.mark.parametrize(("text", "want"), [
    ("acceptor", ("acceptor",)), ("受理员, 值班长", ("acceptor", "shift_lead")),
    (["admin", "admin"], ("admin",)), ("只读/大屏", ("viewer",))])
def test_roles_parse_from_names_and_labels(text, want):
    assert r.parse_roles(text) == want


@pytest.mark.parametrize("text", ["", ",", "root", "acceptor,root"])
def test_bad_roles_are_named(text):
    with pytest.raises(ValueError, match="role"):
        r.parse_roles(text)
