"""The few file-system operations the core's durable files need, on CPython and MicroPython.

``durable(f)`` pushes a written file to the medium: ``os.fsync`` on CPython; on
MicroPython ``f.flush()`` and ``os.sync()`` where the port has it (its VFS writes through
on ``flush``).  ``sync_dir`` makes a rename durable where the OS allows it.
"""

import binascii
import hashlib
import os


def join(dir_path, name):
    return dir_path.rstrip("/") + "/" + name if dir_path else name


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


def makedirs(path):
    """Create path and its missing parents (MicroPython has no os.makedirs)."""
    if not path or exists(path):
        return
    parent = path.rstrip("/").rpartition("/")[0]
    if parent:
        makedirs(parent)
    try:
        os.mkdir(path)
    except OSError:
        if not exists(path):
            raise


def durable(f):
    f.flush()
    if hasattr(os, "fsync"):
        os.fsync(f.fileno())
    elif hasattr(os, "sync"):
        os.sync()


def sync_dir(dir_path):
    """fsync the directory so a rename or create survives power loss (POSIX only)."""
    if hasattr(os, "O_RDONLY") and hasattr(os, "fsync"):
        try:
            fd = os.open(dir_path or ".", os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)
    elif hasattr(os, "sync"):
        os.sync()


def remove(path):
    try:  # noqa: SIM105 (no contextlib on MicroPython)
        os.remove(path)
    except OSError:
        pass


def replace(tmp, path, dir_path):
    """Rename tmp over path (atomic on POSIX and LittleFS; FAT removes path first), then
    make the rename durable unless dir_path is None."""
    try:
        os.rename(tmp, path)
    except OSError:
        remove(path)
        os.rename(tmp, path)
    if dir_path is not None:
        sync_dir(dir_path)


def write_file(path, data, dir_path):
    """Write-new-then-rename: path holds either its old or its new content after a crash.
    A write that fails (a full disk) leaves no half-written ``.new`` behind."""
    tmp = path + ".new"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            durable(f)
    except OSError:
        remove(tmp)
        raise
    replace(tmp, path, dir_path)


def read_file(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def file_sha256(path):
    """The sha256 of a file's bytes, as 64 lowercase hex digits (read in small blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(4096)
            if not block:
                break
            h.update(block)
    return binascii.hexlify(h.digest()).decode()
