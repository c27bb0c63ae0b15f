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


@pytest.fixture
def node(tmp_path, image, broker):
    board = simboard.SimBoard(tmp_path / "board")
    flash_image(image, board.flash)
    provision(Spec("sn-0007", "410106", "sensor-node", str(board.flash), broker.url,
                   object_id=OBJECT))
    cfg_path = board.flash / "gridlink" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["ack_wait_s"] = 2  # how long a wake waits for acks (10 s by default)
    cfg["console_window_s"] = 0  # no technician here (3 s after a power-on by default)
    cfg_path.write_text(json.dumps(cfg))
    yield board
    board.close()
