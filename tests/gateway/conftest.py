"""The ``store_url`` / ``store`` fixtures (every store test runs on SQLite and PostgreSQL),
``listener``, a client reading every device's acks and tasks, and the board's browser:
``browser`` (one chromium a module), ``page`` (a context of its own a test) and
``page_options`` (``open_page``'s, which a module overrides)."""

import pytest
from gridlink.gateway.store import open_store

from tests.support.gateway_rig import drop_store, pg_available, pg_url
from tests.support.pages import chromium, open_page

_PG = pg_available()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request, tmp_path):
    """A fresh, empty store URL: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/intake.sqlite"
        return
    if not _PG:
        pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432")
    url = pg_url(request.node.name[:20].lower().replace("[", "_").replace("]", "")
                 .replace("-", "_"))
    yield url
    s = open_store(url)
    drop_store(s)


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def listener(broker):
    """A client reading every device's acks and tasks (the broker here has no ACL)."""
    from tests.support.gateway_rig import Publisher

    pub = Publisher(broker.port)
    pub.subscribe("gridlink/v1/+/+/ack")
    pub.subscribe("gridlink/v1/+/+/task")
    yield pub
    pub.close()


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, one for the module's browser tests (each has a context of its
    own): starting it is a second or two a test otherwise."""
    with chromium() as b:
        yield b


@pytest.fixture
def page_options():
    """``tests.support.pages.open_page``'s options for ``page``: a module overrides this
    fixture for another viewport, zone or locale."""
    return {}


@pytest.fixture
def page(browser, page_options):
    """A page of the module's chromium, whose script errors fail the test."""
    with open_page(browser, **page_options) as pg:
        yield pg
