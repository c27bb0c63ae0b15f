import contextlib

import pytest
from gridlink.mosquitto import Mosquitto

from tests.support.mpy_wasm import available as micropython_available
from tests.support.pki import make_pki


def pytest_addoption(parser):
    # hil_tests/conftest.py adds it too (for a run of hil_tests alone): the first one wins
    with contextlib.suppress(ValueError):
        parser.addoption("--soak", action="store_true", help="also run the long soak tests")


def pytest_collection_modifyitems(config, items):
    skip_soak = pytest.mark.skip(reason="soak test: run with --soak")
    for item in items:
        if "soak" in item.keywords and not config.getoption("--soak"):
            item.add_marker(skip_soak)
        if "micropython" in item.keywords and not micropython_available():
            item.add_marker(pytest.mark.skip(reason="no MicroPython port: run .ci/setup"))


@pytest.fixture
def broker(tmp_path):
    """A private Mosquitto on a free port, stopped after the test."""
    with Mosquitto(tmp_path / "broker") as b:
        yield b


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """The tests' CA folder (tests/support/pki.py): the broker, the gateway, pv-0001/0002."""
    return make_pki(tmp_path_factory.mktemp("pki"))
