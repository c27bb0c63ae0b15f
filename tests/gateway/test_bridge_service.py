"""``gridlink gateway run`` empties the bridge's outbox: a 派遣 written while the gateway
was down leaves once it runs, and one made through its API leaves for the department's
system and, with ``--city-platform``, for the city platform too (real processes, a real
Mosquitto, real HTTP receivers)."""


import pytest
from gridlink.gateway.api import MIGRATIONS
from gridlink.gateway.cases.book import CaseBook
from gridlink.gateway.cases.outbox import Outbox
from gridlink.gateway.errors import ConfigError
from gridlink.gateway.ports import free_port
from gridlink.gateway.queue import IntakeQueue
from gridlink.gateway.service import WebOptions
from gridlink.gateway.store import open_store

from tests.support.gateway_rig import GatewayProcess, grid_map_file
from tests.support.intake_api import Api, Tokens, add_report
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until


def test_the_gateway_sends_what_was_dispatched_while_it_was_down_and_after(broker, tmp_path):
    db = f"sqlite:///{tmp_path}/intake.sqlite"
    store = open_store(db)
    store.migrate(extra=MIGRATIONS)
    book = CaseBook(store)
    queue = IntakeQueue(store, on_accept=book.register)
    with Receiver() as dept, Receiver() as city:
        book.put_department("sanitation", "环卫处", ["06"], system={
            "adapter": "webhook", "url": dept.url + "/cases", "timeout_s": 2})
        book.outbox = Outbox(store)                     # the gateway is not running yet
        early = queue.accept(add_report(store, 1), "op")["case_no"]
        book.act(early, "dispatch", "lead", department="sanitation")
        port = free_port()
        gw = GatewayProcess(broker.url, db, grid_map_file(tmp_path), tmp_path,
                            "--http", f"127.0.0.1:{port}",
                            "--city-platform", f"open311={city.url}/requests.json")
        gw.start()
        try:
            wait_until(lambda: early in dept.kept, 20, "the early 派遣 to leave")
            api = Api(f"http://127.0.0.1:{port}", Tokens(store))
            later = queue.accept(add_report(store, 2), "op")["case_no"]
            status, _ = api.post(f"/api/cases/{later}/dispatch", {"department": "sanitation"})
            assert status == 200
            wait_until(lambda: later in dept.kept and later in city.kept, 20,
                       "the later 派遣 to leave for both")
            wait_until(lambda: api.get("/api/bridge/outbox?state=pending")[1]["total"] == 0,
                       10, "the outbox to be empty")
        finally:
            assert gw.terminate() == 0
    assert sorted(dept.kept) == sorted([early, later]) and list(city.kept) == [later]
    assert set(dept.hits.values()) == {1} and city.hits == {later: 1}
    assert city.kept[later]["attribute[case_no]"] == later
    store.close()


@pytest.mark.parametrize("value", ["https://c.example", "fax=https://c.example",
                                   "webhook=c.example"])
def test_a_bad_city_platform_is_a_config_error(value):
    with pytest.raises(ConfigError, match="--city-platform"):
        WebOptions(city_platform=value)
