# Boot entry of the gridlink sensor node: the A/B boot selector, then the node's program.
# gridcore.abboot (from the image flashed over USB, in /lib) chooses the image directory
# — a new image runs on trial, its boot counter on flash, and the previous image comes
# back when its boots run out — and the program (gridnode.app) is imported from it.  An
# image that cannot even be imported sleeps: its boots run out and the old one returns.
# This file is the one part an update never replaces (reflash over USB to change it).
import os
import sys

OTA = "/gridlink/ota"
BROKEN_SLEEP_MS = 60000


def select():
    slot = "a"
    try:
        from gridcore import abboot

        slot = abboot.choose(OTA)
    except Exception as e:  # a damaged state file must not stop the node: run the first
        sys.print_exception(e)
    lib = OTA + "/" + slot + "/lib"
    try:
        os.stat(lib + "/gridnode")
    except OSError:
        return slot  # no update installed there yet: the image flashed over USB (/lib)
    for name in list(sys.modules):
        if name.startswith("gridcore") or name.startswith("gridnode"):
            del sys.modules[name]
    sys.path.insert(0, lib)
    return slot


def boot():
    slot = select()
    try:
        from gridnode import app
    except Exception as e:
        sys.print_exception(e)
        import machine

        machine.deepsleep(BROKEN_SLEEP_MS)
        return
    app.main(slot)


if __name__ == "__main__":
    boot()
