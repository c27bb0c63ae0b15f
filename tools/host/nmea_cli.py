"""``gridlink nmea decode FILE…``: a technician's look at what a receiver sends.

Prints one JSON object per fix epoch on stdout (gpsd TPV names: time, lat, lon, alt,
speed, track, mode, status, plus epoch, sats, hdop, visible) and a summary per file
on stderr: lines read, sentences accepted, rejected by reason.  ``-`` reads stdin.
gpsfake comment lines (starting with ``#``) are skipped and counted.
"""

import json
import sys

EXIT_UNREADABLE = 2


def register(parser):
    sub = parser.add_subparsers(dest="nmea_command", metavar="ACTION", required=True)
    p = sub.add_parser("decode", help="decode NMEA 0183 captures into fix epochs (JSON lines)",
                       description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", metavar="FILE", help="capture file, or - for stdin")
    p.add_argument("--min-year", type=int, default=None, metavar="YEAR",
                   help="earliest plausible date year; earlier dates (GPS week rollover) "
                        "are rejected (default: 2020; use 1980 for old captures)")
    p.add_argument("--allow-no-checksum", action="store_true",
                   help="accept sentences without *hh if their field count is complete")
    p.set_defaults(func=decode_command)


def _summary(name, stats, comments):
    rejected = stats["rejected"]
    reasons = ", ".join(f"{reason} {n}" for reason, n in rejected.items())
    n_rejected = sum(rejected.values())
    text = (f"{name}: {stats['lines']} lines, {stats['sentences']} sentences, "
            f"{stats['accepted']} accepted, {n_rejected} rejected")
    if reasons:
        text += f" ({reasons})"
    text += f", {stats['bad_dates']} bad dates, {stats['fixes']} fixes"
    if comments:
        text += f", {comments} comment lines skipped"
    return text


def decode_stream(stream, out, **options):
    """Decode a binary stream, writing fixes as JSON lines to ``out``; return the stats."""
    from gridlink.firmware.core.nmea import NmeaDecoder

    dec = NmeaDecoder(**options)
    comments = 0

    def emit(fixes):
        for fix in fixes:
            out.write(json.dumps(fix.to_dict(), separators=(",", ":")) + "\n")

    for line in stream:
        if line.startswith(b"#"):
            comments += 1
            continue
        emit(dec.feed(line))
    emit(dec.flush())
    return dec.stats(), comments


def decode_command(args):
    options = {"allow_no_checksum": args.allow_no_checksum}
    if args.min_year is not None:
        options["min_year"] = args.min_year
    status = 0
    for name in args.files:
        try:
            if name == "-":
                stats, comments = decode_stream(sys.stdin.buffer, sys.stdout, **options)
                name = "<stdin>"
            else:
                with open(name, "rb") as fh:
                    stats, comments = decode_stream(fh, sys.stdout, **options)
        except BrokenPipeError:
            raise  # stdout closed (| head): not a read error
        except OSError as exc:
            reason = exc.strerror or str(exc)
            print(f"gridlink nmea: error: cannot read {name}: {reason}", file=sys.stderr)
            status = EXIT_UNREADABLE
            continue
        sys.stdout.flush()
        print(_summary(name, stats, comments), file=sys.stderr)
        if stats["bad_dates"]:
            print(f"{name}: dates were rejected as malformed or before {args.min_year or 2020} "
                  "(GPS week rollover?); their fixes have time null; decode old captures "
                  "with --min-year 1980", file=sys.stderr)
    return status
