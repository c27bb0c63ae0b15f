"""Grid maps shipped with gridlink and the one CPython loader of map files.

``open_map`` makes a core ``GridMap`` of a map file or its bytes; ``default_map`` finds a
district's shipped map (``*.glgm`` here).  ``synthetic`` makes test layers; the sample map
is made by ``gridlink.host.make_shangjie``.  A MicroPython node opens its map file itself
and passes the file object to ``GridMap``.
"""

from pathlib import Path

from gridlink.firmware.core.gridmap import GridMap, GridMapError

HERE = Path(__file__).resolve().parent


def open_map(source, verify=True, mapped=False):
    """A core ``GridMap`` of ``source``: a map file's path, or its bytes.

    A path is read into memory, or with ``mapped`` memory-mapped (the OS pages in only
    what lookups touch; the map is read-only and lookups may run in parallel either way).
    ``verify`` checks the file's checksum.  A file that cannot be read or is not a valid
    map raises GridMapError: ``grid map PATH: why``.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return GridMap(source, verify=verify)
    try:
        if mapped:
            import mmap

            with open(source, "rb") as f:
                if f.seek(0, 2) == 0:
                    raise GridMapError(f"grid map {source}: empty file, not a grid map")
                data = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
        else:
            data = Path(source).read_bytes()
    except OSError as exc:
        raise GridMapError(f"grid map {source}: {exc.strerror or exc}") from None
    try:
        return GridMap(data, verify=verify)
    except GridMapError as exc:
        raise GridMapError(f"grid map {source}: {exc}") from None


def default_map(district):
    """The shipped grid map of ``district`` (a path, firmware/maps/*.glgm), or None."""
    maps = sorted(HERE.glob("*.glgm"))
    for path in maps:
        if district in path.name:
            return path
    if len(maps) == 1:
        try:
            if open_map(maps[0], verify=False, mapped=True).code(0).startswith(district):
                return maps[0]
        except GridMapError:
            return None
    return None
