"""``gridlink grid``: compile grid maps from GIS layers and locate points on them.

    gridlink grid compile grid.geojson -o grid.glgm [--crs EPSG:4547] [--code-property DYWGBSM]
    gridlink grid locate grid.glgm 113.29141 34.80631      # prints the grid code; 3 if outside
    gridlink grid locate grid.glgm --points fixes.jsonl     # {"lon","lat"} lines → + "grid"
    gridlink grid info grid.glgm                            # header, counts, checksum
    gridlink grid cut grid.glgm -o node.glgm --around 113.2965 34.8095 --radius 300
"""

import contextlib
import json
import math
import sys

EXIT_OUTSIDE = 3
EXIT_BAD_INPUT = 2


def register(parser):
    sub = parser.add_subparsers(dest="grid_command", metavar="ACTION", required=True)

    c = sub.add_parser("compile", help="compile a GeoJSON grid layer into a map file",
                       description="Compile a GeoJSON FeatureCollection of Polygon/"
                       "MultiPolygon grid cells into a compact map file for devices.")
    c.add_argument("src", help="GeoJSON grid layer")
    c.add_argument("-o", "--output", required=True, help="map file to write")
    c.add_argument("--crs", help="CRS of the layer when it has no \"crs\" member "
                   "(default: RFC 7946 lon/lat), e.g. EPSG:4547")
    c.add_argument("--code-property", default="code",
                   help="feature property holding the 14/15-digit grid code (default: code)")
    c.add_argument("--divisions", action="store_true",
                   help="also check streets and communities against the shipped GB/T 2260 "
                   "division table (firmware/codebooks/divisions.json)")
    c.add_argument("--bucket-scale", type=float, default=1.0,
                   help="index bucket side as a multiple of the median cell size (default 1)")
    c.set_defaults(func=cmd_compile)

    loc = sub.add_parser("locate", help="print the grid code of a point, or of many",
                         description="Print the grid code covering LON LAT (exit 3 when "
                         "outside every cell), or with --points read JSON lines "
                         "{\"lon\": …, \"lat\": …} and write them back with \"grid\" added "
                         "(null outside).  Bad lines are reported on stderr with their line "
                         "number and skipped; the exit status is then 2.")
    loc.add_argument("map", help="compiled map file")
    loc.add_argument("lon", nargs="?", type=float, help="longitude in degrees (CGCS2000/WGS 84)")
    loc.add_argument("lat", nargs="?", type=float, help="latitude in degrees")
    loc.add_argument("--points", metavar="FILE", help="JSON lines of points ('-' for stdin)")
    loc.add_argument("-o", "--output", help="where to write --points results (default stdout)")
    loc.set_defaults(func=cmd_locate)

    info = sub.add_parser("info", help="show a map file's header and check its checksum")
    info.add_argument("map", help="compiled map file")
    info.set_defaults(func=cmd_info)

    cut = sub.add_parser("cut", help="cut a map to the cells of one area (a sensor node's)",
                         description="Write a map of the cells of MAP whose bounding box "
                         "meets the area: a circle's box about a point (--around, --radius) "
                         "or a box (--bbox).  Cells are kept whole: inside the area the cut "
                         "map answers as the whole map does (docs/gridmap.md).")
    cut.add_argument("map", help="compiled map file")
    cut.add_argument("-o", "--output", required=True, help="map file to write")
    where = cut.add_mutually_exclusive_group(required=True)
    where.add_argument("--around", nargs=2, type=float, metavar=("LON", "LAT"),
                       help="the node's position")
    where.add_argument("--bbox", nargs=4, type=float, metavar=("W", "S", "E", "N"),
                       help="a box in degrees")
    cut.add_argument("--radius", type=float, default=300.0,
                     help="metres about --around (default 300)")
    cut.set_defaults(func=cmd_cut)


def cmd_compile(args):
    from gridlink.host import gridcompile

    codes = None
    if args.divisions:
        from gridlink.firmware.codebooks import load_divisions
        from gridlink.firmware.core.codes import Codes

        codes = Codes(divisions=load_divisions())
    stats = gridcompile.compile_file(args.src, args.output, code_property=args.code_property,
                                     crs=args.crs, codes=codes, bucket_scale=args.bucket_scale)
    w, s, e, n = stats["bbox"]
    print(f"{args.output}: {stats['cells']} cells, {stats['rings']} rings, "
          f"{stats['vertices']} vertices, {stats['code_width']}-digit codes, "
          f"{stats['bytes']} bytes; lon {w:.7f}–{e:.7f}, lat {s:.7f}–{n:.7f}; "
          f"{stats['buckets'][0]}x{stats['buckets'][1]} buckets")
    return 0


def cmd_info(args):
    from gridlink.firmware.maps import open_map

    m = open_map(args.map, mapped=True)
    w, s, e, n = m.bbox
    print(json.dumps({"map": args.map, "bytes": m.size, "checksum": "ok", "cells": m.n_cells,
                      "rings": m.n_rings, "vertices": m.n_vertices,
                      "code_width": m.code_width, "crs": f"EPSG:{m.epsg}",
                      "bbox": [w, s, e, n], "buckets": list(m.buckets),
                      "first_code": m.code(0), "last_code": m.code(m.n_cells - 1)},
                     ensure_ascii=False))
    return 0


def cmd_cut(args):
    from pathlib import Path

    from gridlink.host import gridcompile, gridcut

    box = gridcut.around(*args.around, args.radius) if args.around else tuple(args.bbox)
    data, stats = gridcut.cut_map(Path(args.map).read_bytes(), box)
    gridcompile.write_map(args.output, data)
    print(f"{args.output}: {stats['cells']} of {stats['of_cells']} cells, {stats['bytes']} of "
          f"{stats['of_bytes']} bytes")
    return 0


def cmd_locate(args):
    from gridlink.firmware.maps import open_map

    single = args.lon is not None or args.lat is not None
    if single == bool(args.points) or (single and args.lat is None):
        print("gridlink grid locate: give either LON LAT or --points FILE", file=sys.stderr)
        return EXIT_BAD_INPUT
    m = open_map(args.map, mapped=True)
    if args.points:
        return _locate_points(m, args.points, args.output)
    code = m.locate(args.lon, args.lat)
    if code is None:
        print(f"lon {args.lon}, lat {args.lat} is outside the map {args.map} (no grid cell "
              f"covers it)", file=sys.stderr)
        return EXIT_OUTSIDE
    print(code)
    return 0


def _point_of(raw):
    """(obj, lon, lat) of one JSON line (bytes), or ValueError saying what is wrong."""
    try:
        obj = json.loads(raw.decode("utf-8").strip())
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 (byte {exc.start + 1})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected an object with \"lon\" and \"lat\", got "
                         f"{type(obj).__name__}")
    coords = []
    for key, limit in (("lon", 180.0), ("lat", 90.0)):
        v = obj.get(key)
        if v is None:
            raise ValueError(f"no \"{key}\"")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"\"{key}\" {json.dumps(v)} is not a number")
        if abs(v) > limit:
            raise ValueError(f"\"{key}\" {v} is outside ±{limit:g} degrees")
        coords.append(float(v))
    return obj, coords[0], coords[1]


def _locate_points(m, src, dest):
    from gridlink.firmware.core.gridmap import GridMapError

    name = "<stdin>" if src == "-" else src
    try:
        with contextlib.ExitStack() as stack:
            fin = sys.stdin.buffer if src == "-" else stack.enter_context(open(src, "rb"))
            fout = sys.stdout if dest in (None, "-") else \
                stack.enter_context(open(dest, "w", encoding="utf-8"))
            done, bad = _copy_points(m, fin, fout, name)
            fout.flush()
    except OSError as exc:
        raise GridMapError(f"cannot read or write points: {exc.filename}: "
                           f"{exc.strerror}") from None
    if bad:
        print(f"{name}: {done} points located, {bad} bad lines skipped", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def _copy_points(m, fin, fout, name):
    bad = done = 0
    for number, line in enumerate(fin, 1):
        if not line.strip():
            continue
        try:
            obj, lon, lat = _point_of(line)
        except ValueError as exc:
            bad += 1
            print(f"{name} line {number}: {exc}; skipped", file=sys.stderr)
            continue
        obj["grid"] = m.locate(lon, lat)
        fout.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
        done += 1
    return done, bad
