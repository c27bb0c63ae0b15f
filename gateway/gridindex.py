"""A raster over a grid map that answers most look-ups without a point-in-polygon test.

The gateway locates every report on the authoritative map.  The core's ``GridMap`` is
made for a microcontroller's memory: a coarse bucket index, then a crossing test on a
polygon read from the compiled map (about 8 µs a point in CPython).  ``RasterLocator``
spends a few megabytes on a fine raster over the map's extent instead.  A raster cell
that no ring edge of any grid cell touches (closed rectangle, exact integer arithmetic)
lies wholly inside the same grid cells, or outside them all — and so does a connected
patch of such raster cells: the patches are found row by row (runs joined to the runs
they touch in the row below), and each is located once, by the ``GridMap``, at start.
Every other point — near an edge or a vertex, or outside the raster — is located by the
``GridMap`` itself.  So ``locate`` returns exactly what ``GridMap.locate`` returns, for
every point; a property test holds it to that.
"""

import math
from array import array

# table entries besides a cell number (≥ 0); _UNKNOWN only while the table is built
_OUTSIDE, _UNKNOWN, _EDGE = -1, -2, -3


class RasterLocator:
    """``locate(lon, lat)`` of a core ``GridMap``, the same answers, mostly from a raster.

    ``per_cell``: raster cells along a typical grid cell's side (16: about 2/3 of the
    points land on a raster cell clear of every edge); ``max_entries`` caps the table
    (4 bytes each).
    """

    def __init__(self, grid_map, per_cell=16, max_entries=4_000_000):
        self.grid_map = grid_map
        n = grid_map.n_cells
        rings = [ring for cell in range(n) for ring in grid_map.rings(cell)]
        self._codes = [grid_map.code(cell) for cell in range(n)]
        xs = [x for ring in rings for x, _ in ring]
        ys = [y for ring in rings for _, y in ring]
        if not xs:
            self._nx = self._ny = 0
            return
        self._x0, self._y0 = min(xs), min(ys)
        w, h = max(xs) - self._x0, max(ys) - self._y0
        side = max(1, math.isqrt(n) * per_cell)
        while side * side > max_entries:
            side //= 2
        self._sx = max(1, -(-w // side))
        self._sy = max(1, -(-h // side))
        self._nx = w // self._sx + 1
        self._ny = h // self._sy + 1
        self._table = array("i", [_UNKNOWN]) * (self._nx * self._ny)
        for ring in rings:
            for k in range(len(ring)):
                self._mark(ring[k - 1], ring[k])
        self._label()

    def _mark(self, a, b):
        """Mark every raster cell whose closed rectangle the segment a–b touches."""
        (ax, ay), (bx, by) = a, b
        x0, y0, sx, sy, nx, ny = self._x0, self._y0, self._sx, self._sy, self._nx, self._ny
        lo_x, hi_x = min(ax, bx), max(ax, bx)
        table = self._table
        # columns whose closed strip [x0 + i·sx, x0 + (i+1)·sx] meets [lo_x, hi_x]
        for i in range(max(0, -((x0 - lo_x) // sx) - 1), min(nx - 1, (hi_x - x0) // sx) + 1):
            xa = max(lo_x, x0 + i * sx)
            xb = min(hi_x, x0 + (i + 1) * sx)
            if xa > xb:
                continue
            if ax == bx:
                lo_y, hi_y = min(ay, by), max(ay, by)
            else:  # the segment's y over [xa, xb], widened to whole units
                d = bx - ax
                na, nb = (by - ay) * (xa - ax), (by - ay) * (xb - ax)
                lo_y = ay + min(na // d, nb // d)
                hi_y = ay + max(-(-na // d), -(-nb // d))
            j_lo = max(0, -((y0 - lo_y) // sy) - 1)
            j_hi = min(ny - 1, (hi_y - y0) // sy)
            for j in range(j_lo, j_hi + 1):
                table[j * nx + i] = _EDGE

    def _label(self):
        """Give every clear raster cell its answer: one look-up per connected patch."""
        nx, table = self._nx, self._table
        runs = []  # (row, first column, end column) of clear cells
        parent = []

        def root(r):
            while parent[r] != r:
                parent[r] = r = parent[parent[r]]
            return r

        above = []  # the previous row's runs: (first, end, run number)
        for j in range(self._ny):
            row = table[j * nx:(j + 1) * nx]
            here = []
            i = 0
            while i < nx:
                if row[i] != _UNKNOWN:
                    i += 1
                    continue
                a = i
                while i < nx and row[i] == _UNKNOWN:
                    i += 1
                r = len(runs)
                runs.append((j, a, i))
                parent.append(r)
                here.append((a, i, r))
            k = 0
            for a, b, r in here:  # join the runs of the row below that share a column
                while k < len(above) and above[k][1] <= a:
                    k += 1
                m = k
                while m < len(above) and above[m][0] < b:
                    ra, rb = root(above[m][2]), root(r)
                    if ra != rb:
                        parent[max(ra, rb)] = min(ra, rb)
                    m += 1
            above = here
        answers = {}
        for r, (j, a, b) in enumerate(runs):
            top = root(r)
            cell = answers.get(top)
            if cell is None:  # the patch's first run: ask the map at its first corner
                cell = self.grid_map.cell_at(self._x0 + a * self._sx, self._y0 + j * self._sy)
                cell = answers[top] = cell if cell >= 0 else _OUTSIDE
            table[j * nx + a:j * nx + b] = array("i", [cell]) * (b - a)

    def locate(self, lon, lat):
        """The grid code covering (lon, lat) in degrees, or None: ``GridMap.locate``'s."""
        if self._nx and -180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0:
            x = math.floor(lon * 10000000.0 + 0.5)
            y = math.floor(lat * 10000000.0 + 0.5)
            qx, qy = x - self._x0, y - self._y0
            if qx >= 0 and qy >= 0:
                i, j = qx // self._sx, qy // self._sy
                if i < self._nx and j < self._ny:
                    k = j * self._nx + i
                    cell = self._table[k]
                    if cell >= 0:
                        return self._codes[cell]
                    if cell == _OUTSIDE:
                        return None
        return self.grid_map.locate(lon, lat)
