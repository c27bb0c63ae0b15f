"""The sensor node on the simulated board: its firmware image, built once, and a board
flashed with it and provisioned as sn-0007 for the test's broker; for desired state, the
node holding the centre's key (``keyed``) and the real gateway serving code books and
maps over the piece path (``served``, from the folders ``books`` and ``maps``)."""

import json

import pytest
from gridlink.flash import simboard
from gridlink.flash.build import build
from gridlink.flash.flashing import flash_image
from gridlink.flash.provision import Spec, provision

OBJECT = "41010601002000123"


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    out = tmp_path_factory.mktemp("image") / "img"
    build(out)
    return out


def flashed_node(folder, image, broker_url, device="sn-0007", **spec):
    """A simulated board flashed with ``image`` and provisioned as ``device`` for the
    broker at ``broker_url`` (``spec``: more of provisioning's Spec, e.g. certificates)."""
    board = simboard.SimBoard(folder)
    flash_image(image, board.flash)
    provision(Spec(device, "410106", "sensor-node", str(board.flash), broker_url,
                   object_id=OBJECT, **spec))
    cfg_path = board.flash / "gridlink" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["ack_wait_s"] = 2  # how long a wake waits for acks (10 s by default)
    cfg["console_window_s"] = 0  # no technician here (3 s after a power-on by default)
    cfg_path.write_text(json.dumps(cfg))
    return board


@pytest.fixture
def node(tmp_path, image, broker):
    board = flashed_node(tmp_path / "board", image, broker.url)
    yield board
    board.close()


@pytest.fixture
def keyed(node):
    """The node holding the centre's configuration key, upright (status-only wakes)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from tests.mcu.test_node import PIN
    from tests.mcu.test_node_desired import KEY

    public = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    (node.flash / "gridlink" / "config-keys").write_text(public.hex() + "\n")
    node.set_pin(PIN, 1)
    return node


@pytest.fixture
def books(tmp_path):
    """The gateway's own code book files (--codebook-files)."""
    folder = tmp_path / "books"
    folder.mkdir()
    return folder


@pytest.fixture
def maps(tmp_path):
    """The gateway's own grid maps (--map-files)."""
    folder = tmp_path / "maps"
    folder.mkdir()
    return folder


@pytest.fixture
def served(broker, tmp_path, books, maps):
    """The real gateway serving ``books`` and ``maps`` beside the shipped ones; yields a
    listener of the node's status and reports."""
    from gridlink.gateway.service import Gateway

    from tests.support.report_listener import ReportListener

    gw = Gateway(broker=broker.url, db=f"sqlite:///{tmp_path}/intake.sqlite",
                 photos=tmp_path / "photos", codebook_files=books, map_files=maps).start()
    assert gw.runtime.wait_ready(10)
    listener = ReportListener("127.0.0.1", broker.port, client_id="status-listener")
    try:
        yield listener
    finally:
        listener.close()
        gw.stop()
