"""Read a compiled unit-grid map (万米单元网格) and find the grid code of a point.

    m = GridMap(open("shangjie.glgm", "rb"))      # or GridMap(bytes / memoryview(mmap))
    m.locate(113.29141, 34.80631)                 # → "410106002005017", or None outside

The file (docs/gridmap.md) holds a spatial bucket index, fixed-point coordinates in
units of 1e-7 degree (CGCS2000 lon/lat) and each grid code once.  Given a file object,
the reader keeps only the 80-byte header in memory and reads the few bytes each lookup
needs with seek/read, so a microcontroller can use a map far larger than its heap.  Given
a buffer (bytes, bytearray, memoryview, e.g. of an mmap), it reads the buffer in place.
Over a file object a lookup seeks and reads, so share it between threads only under a
lock; over a buffer lookups are independent and may run in parallel.

Boundary rule ("covers", smallest code wins): a point is first rounded to the 1e-7 degree
grid (``quantise``); it belongs to every cell whose closed polygon (interior, edges,
vertices and hole edges) contains it, and ``locate`` returns the smallest of their codes.
Cells never overlap (the compiler rejects that), so only points on shared edges and
vertices have more than one candidate.  All geometry is exact integer arithmetic.
"""

import binascii
import math
import struct

from .errors import CoreError

MAGIC = b"GLGM"
VERSION = 1
HEADER_SIZE = 80
# magic, version, header size, crc32 of bytes [12:], origin x/y, width/height,
# cells, rings, vertices, code width, buckets x/y, EPSG code of the coordinates,
# bucket width/height, entries, offsets of codes/directory/entries/cell table, file size.
HEADER_FORMAT = "<4sHHIiiIIIIIHHHHIIIIIIII"
SCALE = 10000000  # fixed-point units per degree
ENTRY_SIZE = 8  # u32 cell (bit 31: the bucket lies wholly inside it), u8 x 4 clipped bbox
# The clipped bbox of an entry is in 1/256 bucket steps: u -> (u << 8) // bucket side.
WHOLE = 0x80000000
CELL_MASK = 0x7FFFFFFF
RECORD_HEAD = "<HBBII"  # rings, coordinate bytes (2 or 4), reserved, cell origin x/y
RECORD_HEAD_SIZE = 12
CRC_CHUNK = 2048  # bytes read at a time to check a map file's checksum

_ENTRY_FORMATS = ["<" + "IBBBB" * n for n in range(9)]


def _coords(nv, width):
    """struct format of ``nv`` x, y pairs of ``width`` bytes each."""
    kind = "H" if width == 2 else "I"
    return f"<{2 * nv}{kind}"


_COORDS_16 = [_coords(n, 2) for n in range(9)]
_COORDS_32 = [_coords(n, 4) for n in range(9)]


class GridMapError(CoreError):
    """The map file is not a valid grid map, or a coordinate is not usable."""


def quantise(degrees):
    """Degrees → integer 1e-7 degree units, rounding half up (the same on every port)."""
    return math.floor(degrees * 10000000.0 + 0.5)


def _unpack_header(data):
    if len(data) < HEADER_SIZE:
        raise GridMapError(f"not a grid map: {len(data)} bytes, shorter than the header")
    fields = struct.unpack_from(HEADER_FORMAT, data, 0)
    if fields[0] != MAGIC:
        raise GridMapError(f"not a grid map: magic {bytes(fields[0])!r}, expected {MAGIC!r}")
    if fields[1] != VERSION:
        raise GridMapError(f"grid map version {fields[1]} is not supported (this reader "
                           f"reads version {VERSION}); recompile the map")
    if fields[2] != HEADER_SIZE:
        raise GridMapError(f"grid map header is {fields[2]} bytes, expected {HEADER_SIZE}")
    return fields


def ring_covers(c, start, end, px, py):
    """Crossing parity of one ring (flat x, y tuple slice) for a point, or None on its edge.

    Returns None when (px, py) lies on an edge or vertex, else True when a ray towards +x
    crosses the ring an odd number of times.  Exact on integers.
    """
    odd = False
    ax = c[end - 2] - px
    ay = c[end - 1] - py
    i = start
    while i < end:
        bx = c[i] - px
        by = c[i + 1] - py
        if (ay > 0) != (by > 0):
            cr = ax * by - bx * ay
            if cr == 0:
                return None
            if (cr > 0) == (by > 0):
                odd = not odd
        elif ay == 0 and (ax == 0 or (by == 0 and (ax <= 0 <= bx or bx <= 0 <= ax))):
            return None
        ax = bx
        ay = by
        i += 2
    return odd


class GridMap:
    """A compiled grid map read on demand from a file object or a buffer."""

    __slots__ = ("_bh", "_buf", "_bw", "_f", "_h", "_nx", "_ny", "_off_cells", "_off_codes",
                 "_off_dir", "_off_entries", "_w", "_x0", "_y0", "code_width", "epsg",
                 "n_cells", "n_entries", "n_rings", "n_vertices", "size")

    def __init__(self, source, verify=True):
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._f = None
            self._buf = source
            head = source[:HEADER_SIZE]
            size = len(source)
        else:
            self._f = source
            self._buf = None
            source.seek(0)
            head = source.read(HEADER_SIZE)
            source.seek(0, 2)
            size = source.tell()
        (_, _, _, crc, self._x0, self._y0, self._w, self._h, self.n_cells, self.n_rings,
         self.n_vertices, self.code_width, self._nx, self._ny, self.epsg, self._bw, self._bh,
         self.n_entries, self._off_codes, self._off_dir, self._off_entries, self._off_cells,
         self.size) = _unpack_header(head)
        self._check_layout(size)
        if verify:
            got = self._crc()
            if got != crc:
                raise GridMapError(f"grid map checksum mismatch (file {crc:08x}, contents "
                                   f"{got:08x}): the file is damaged")

    def _check_layout(self, size):
        if size != self.size:
            raise GridMapError(f"grid map is {size} bytes but its header says {self.size}: "
                               f"truncated or padded")
        if self._bw == 0 or self._bh == 0 or self._bw > 65535 or self._bh > 65535:
            raise GridMapError("grid map bucket size is out of range")
        if self.code_width not in (14, 15):
            raise GridMapError(f"grid map code width {self.code_width} is not 14 or 15")
        parts = (
            (HEADER_SIZE, self._off_codes),
            (self._off_codes + self.code_width * self.n_cells, self._off_dir),
            (self._off_dir + 4 * (self._nx * self._ny + 1), self._off_entries),
            (self._off_entries + ENTRY_SIZE * self.n_entries, self._off_cells),
        )
        for want, got in parts:
            if want != got:
                raise GridMapError(f"grid map layout is inconsistent (section at {got}, "
                                   f"expected {want})")
        if self._off_cells + 4 * (self.n_cells + 1) > size:
            raise GridMapError("grid map cell table runs past the end of the file")

    def _crc(self):
        crc = 0
        pos = 12
        if self._buf is not None:
            mv = memoryview(self._buf)
            while pos < self.size:
                crc = binascii.crc32(mv[pos:pos + 65536], crc)
                pos += 65536
            return crc & 0xFFFFFFFF
        f = self._f
        f.seek(pos)
        chunk = bytearray(CRC_CHUNK)
        while True:
            n = f.readinto(chunk)
            if not n:
                break
            crc = binascii.crc32(chunk if n == CRC_CHUNK else memoryview(chunk)[:n], crc)
        return crc & 0xFFFFFFFF

    def _read(self, off, n):
        """``n`` bytes at ``off`` of the file (file mode only)."""
        f = self._f
        f.seek(off)
        data = f.read(n)
        if len(data) != n:
            raise GridMapError(f"grid map read of {n} bytes at {off} came up short")
        return data

    @property
    def bbox(self):
        """(west, south, east, north) in degrees."""
        s = SCALE
        return (self._x0 / s, self._y0 / s, (self._x0 + self._w) / s, (self._y0 + self._h) / s)

    @property
    def buckets(self):
        return self._nx, self._ny

    def code(self, cell):
        """The grid code of cell number ``cell`` (cells are numbered in code order)."""
        if cell < 0 or cell >= self.n_cells:
            raise GridMapError(f"cell {cell} is not in this map (it has {self.n_cells})")
        w = self.code_width
        off = self._off_codes + w * cell
        if self._buf is None:
            return self._read(off, w).decode()
        return bytes(self._buf[off:off + w]).decode()

    def locate(self, lon, lat):
        """The grid code covering (lon, lat) in degrees, or None outside every cell."""
        if not -180.0 <= lon <= 180.0 or not -90.0 <= lat <= 90.0:
            raise GridMapError(f"coordinates lon {lon}, lat {lat} are not a valid lon/lat")
        cell = self.cell_at(math.floor(lon * 10000000.0 + 0.5),
                            math.floor(lat * 10000000.0 + 0.5))
        return None if cell < 0 else self.code(cell)

    def locate_e7(self, x, y):
        """``locate`` for integer coordinates in 1e-7 degree units."""
        cell = self.cell_at(x, y)
        return None if cell < 0 else self.code(cell)

    def cell_at(self, x, y):
        """Number of the covering cell with the smallest code, or -1 outside the map."""
        qx = x - self._x0
        qy = y - self._y0
        if qx < 0 or qy < 0 or qx > self._w or qy > self._h:
            return -1
        bw = self._bw
        bh = self._bh
        bx = qx // bw
        by = qy // bh
        buf = self._buf
        off = self._off_dir + 4 * (by * self._nx + bx)
        if buf is None:
            s, e = struct.unpack("<II", self._read(off, 8))
        else:
            s, e = struct.unpack_from("<II", buf, off)
        n = e - s
        if n == 0:
            return -1
        form = _ENTRY_FORMATS[n] if n < 9 else "<" + "IBBBB" * n
        off = self._off_entries + ENTRY_SIZE * s
        if buf is None:
            ent = struct.unpack(form, self._read(off, ENTRY_SIZE * n))
        else:
            ent = struct.unpack_from(form, buf, off)
        ux = ((qx - bx * bw) << 8) // bw
        uy = ((qy - by * bh) << 8) // bh
        for k in range(0, 5 * n, 5):
            if ent[k + 1] <= ux <= ent[k + 3] and ent[k + 2] <= uy <= ent[k + 4]:
                cell = ent[k]
                if cell & WHOLE:
                    return cell & CELL_MASK
                if self._covers(cell, qx, qy):
                    return cell
        return -1

    def _record(self, cell):
        """(data, position) of the record of ``cell``."""
        off = self._off_cells + 4 * cell
        buf = self._buf
        if buf is None:
            start, end = struct.unpack("<II", self._read(off, 8))
            return self._read(start, end - start), 0
        return buf, struct.unpack_from("<I", buf, off)[0]

    def _covers(self, cell, qx, qy):
        """Whether the closed polygon of ``cell`` covers map-relative point (qx, qy)."""
        data, p = self._record(cell)
        nr, width, _, rx, ry = struct.unpack_from(RECORD_HEAD, data, p)
        p += RECORD_HEAD_SIZE
        px = qx - rx
        py = qy - ry
        forms = _COORDS_16 if width == 2 else _COORDS_32
        if nr == 1:
            nv = struct.unpack_from("<H", data, p)[0]
            form = forms[nv] if nv < 9 else _coords(nv, width)
            c = struct.unpack_from(form, data, p + 2)
            return ring_covers(c, 0, 2 * nv, px, py) is not False
        counts = struct.unpack_from(f"<{nr}H", data, p)
        total = 0
        for nv in counts:
            total += nv
        c = struct.unpack_from(_coords(total, width), data, p + 2 * nr)
        odd = False
        start = 0
        for nv in counts:
            end = start + 2 * nv
            r = ring_covers(c, start, end, px, py)
            if r is None:
                return True
            if r:
                odd = not odd
            start = end
        return odd

    def rings(self, cell):
        """The rings of ``cell`` as lists of (x, y) in 1e-7 degree units (no closing point)."""
        if cell < 0 or cell >= self.n_cells:
            raise GridMapError(f"cell {cell} is not in this map (it has {self.n_cells})")
        data, p = self._record(cell)
        nr, width, _, rx, ry = struct.unpack_from(RECORD_HEAD, data, p)
        p += RECORD_HEAD_SIZE
        counts = struct.unpack_from(f"<{nr}H", data, p)
        p += 2 * nr
        out = []
        for nv in counts:
            c = struct.unpack_from(_coords(nv, width), data, p)
            p += 2 * nv * width
            out.append([(self._x0 + rx + c[i], self._y0 + ry + c[i + 1])
                        for i in range(0, 2 * nv, 2)])
        return out
