"""The sensor node on the simulated board: its firmware image, built once, and a board
flashed with it and provisioned as sn-0007 for the test's broker."""

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
