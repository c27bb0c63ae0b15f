"""The grid map's cells as GeoJSON, for the intake board's map.

A core ``GridMap`` stores each cell as rings of 1e-7 degree points without saying which
are holes; these functions sort them into Polygons and MultiPolygons.
"""


def grid_geojson(grid_map):
    """The map's cells as a GeoJSON FeatureCollection (no features without a map)."""
    features = []
    if grid_map is not None:
        for cell in range(grid_map.n_cells):
            code = grid_map.code(cell)
            features.append({
                "type": "Feature", "id": code,
                "properties": {"code": code, "street": code[:9], "community": code[:12]},
                "geometry": cell_geometry(grid_map.rings(cell)),
            })
    return {"type": "FeatureCollection", "features": features}


def cell_geometry(rings):
    """Polygon or MultiPolygon from a cell's rings (1e-7 degree): holes sit in an outer ring.

    A ring inside an odd number of the cell's other rings is a hole of the innermost
    outer ring containing it.
    """
    depth = [sum(_inside(r[0], o) for j, o in enumerate(rings) if j != i)
             for i, r in enumerate(rings)]
    outers = [i for i, d in enumerate(depth) if d % 2 == 0]
    polygons = {i: [rings[i]] for i in outers}
    for i, d in enumerate(depth):
        if d % 2:
            hosts = [o for o in outers if depth[o] == d - 1 and _inside(rings[i][0], rings[o])]
            if hosts:
                polygons[hosts[0]].append(rings[i])
    coords = [[[[round(x / 1e7, 7), round(y / 1e7, 7)] for x, y in (*ring, ring[0])]
               for ring in poly]
              for poly in polygons.values()]
    if len(coords) == 1:
        return {"type": "Polygon", "coordinates": coords[0]}
    return {"type": "MultiPolygon", "coordinates": coords}


def _inside(point, ring):
    """Whether ``point`` lies inside ``ring`` (even-odd rule)."""
    x, y = point
    odd = False
    for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            odd = not odd
    return odd
