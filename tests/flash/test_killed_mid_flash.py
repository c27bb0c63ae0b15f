"""Issue 19: a board killed mid-flash left a raw error and a staging folder.  The error
now says the write stopped part-way and that running the same command again finishes it,
and the re-run does: it clears the stale staging folder and completes.  The board is the
simulated one (MicroPython WebAssembly port) behind mpremote; "killed" is its console
process ending while mpremote writes, as a board that resets or is unplugged."""

import threading
import time

import pytest
from gridlink.flash import simboard
from gridlink.flash.build import build
from gridlink.flash.errors import FlashError
from gridlink.flash.flashing import flash_image
from gridlink.flash.selftest import _firmware_check
from gridlink.flash.targets import DirTarget, open_target

pytestmark = pytest.mark.skipif(not simboard.available(),
                                reason="MicroPython WebAssembly port not installed")


def kill_when_staging(board, stop):
    """Stop the board's console (power off) once the staging folder holds a file."""
    stage = board.flash / ".gridlink-new"
    while not stop.is_set():
        if stage.is_dir() and any(stage.iterdir()):
            board.stop_console()
            return
        time.sleep(0.002)


def test_a_board_killed_mid_flash_is_recovered_by_running_again(tmp_path):
    image = tmp_path / "image"
    m = build(image, compile=False)
    with simboard.SimBoard(tmp_path / "board") as board:
        url = board.serve_console()
        stop = threading.Event()
        killer = threading.Thread(target=kill_when_staging, args=(board, stop))
        killer.start()
        try:
            with pytest.raises(FlashError) as err:
                flash_image(image, url)
        finally:
            stop.set()
            killer.join()
        msg = str(err.value)
        assert "the write stopped part-way" in msg
        assert "Run the same command again to finish: it clears the staging folder " \
               "/.gridlink-new first." in msg
        assert "Traceback" not in msg and "SerialException" not in msg
        assert "the connection to the board was lost" in msg
        assert not (board.flash / "main.py").exists()  # main.py goes last: not half a program
        stale = sorted(p.name for p in (board.flash / ".gridlink-new").iterdir())
        assert stale, "the kill came after the write: nothing to recover"
        url = board.serve_console()  # powered on again
        assert flash_image(image, url) == len(m["files"]) + 1
        assert not (board.flash / ".gridlink-new").exists()
        check = _firmware_check(open_target(url))
        board.stop_console()
        assert check.ok, check.detail


def test_a_provisioning_killed_while_staging_on_a_folder_is_cleaned_by_the_next_run(tmp_path):
    root = tmp_path / "pi"
    stale = root / ".gridlink-provision.abc123"
    (stale / "etc/gridlink").mkdir(parents=True)
    (stale / "etc/gridlink/device.key").write_bytes(b"half a key")
    DirTarget(root).write({"etc/gridlink/x.json": b"{}"}, "etc/gridlink/x.json")
    assert sorted(p.name for p in root.iterdir()) == ["etc"]
