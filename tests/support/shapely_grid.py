"""The grid tests' independent reference: which cell covers a point, by shapely alone."""

import json

import numpy as np
import shapely


def quantise(v):
    return np.floor(np.asarray(v, dtype=float) * 1e7 + 0.5)


def shapely_reference(layer, lon, lat):
    """Per point, the smallest code whose cell covers it (both rounded to 1e-7 degree),
    computed with shapely from the GeoJSON alone, or None; and how many cells cover it."""
    feats = layer["features"]
    geoms = np.empty(len(feats), dtype=object)
    simple = [k for k, f in enumerate(feats) if f["geometry"]["type"] == "Polygon"
              and len(f["geometry"]["coordinates"]) == 1]
    if simple:
        rings = [feats[k]["geometry"]["coordinates"][0] for k in simple]
        coords = quantise([pos for ring in rings for pos in ring])
        which = np.repeat(np.arange(len(rings)), [len(r) for r in rings])
        geoms[simple] = shapely.polygons(shapely.linearrings(coords, indices=which))
    other = sorted(set(range(len(feats))) - set(simple))
    if other:
        geoms[other] = shapely.transform(
            shapely.from_geojson([json.dumps(feats[k]["geometry"]) for k in other]), quantise)
    codes = np.array([f["properties"]["code"] for f in feats])
    points = shapely.points(quantise(lon), quantise(lat))
    p, g = shapely.STRtree(geoms).query(points, predicate="covered_by")
    order = np.argsort(codes)
    rank = np.empty(len(codes), dtype=np.int64)
    rank[order] = np.arange(len(codes))
    best = np.full(len(points), len(codes))
    np.minimum.at(best, p, rank[g])
    sorted_codes = [*codes[order].tolist(), None]
    return [sorted_codes[b] for b in best.tolist()], np.bincount(p, minlength=len(points))
