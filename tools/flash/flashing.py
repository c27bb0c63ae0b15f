"""Copy a built image onto a board: mpremote for a real (or socket-served) board, a plain
copy for a directory that mirrors a board's flash (the simulated board, an SD card)."""

from pathlib import Path

from . import targets
from .build import verify
from .provision import IMAGE_MANIFEST

MODULE_DIRS = ("lib/gridcore", "lib/gridnode")


def flash_image(image, target):
    """Write every file of a verified image to ``target``; returns the file count.

    ``main.py`` goes last, so a board that resets mid-flash boots the old program (or
    none), never a new main.py importing modules not yet copied.
    """
    manifest = verify(image)
    image = Path(image)
    files = {f["path"]: (image / f["path"]).read_bytes() for f in manifest["files"]}
    files[IMAGE_MANIFEST] = (image / "manifest.json").read_bytes()
    # a stale .py would shadow a new .mpy (MicroPython tries .py first): prune them
    targets.open_target(target).write(files, "main.py", prune=MODULE_DIRS)
    return len(files)
