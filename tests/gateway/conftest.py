"""The ``store_url`` / ``store`` fixtures (every store test runs on SQLite and PostgreSQL),
and ``listener``, a client reading every device's acks and tasks."""

import pytest
from gridlink.gateway.store import open_store

from tests.support.gateway_rig import drop_store, pg_available, pg_url

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
