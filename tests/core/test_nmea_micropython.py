"""The same decoder under real MicroPython: identical fixes and counters to CPython's."""

import json

import pytest
from gridlink.firmware.core.nmea import NmeaDecoder, sentence

from tests.support.mpy_wasm import run_micropython
from tests.support.shared import NMEA, nmea_logs, require

# Hand-made vectors for the rules the real logs do not exercise: (options, bytes).
VECTORS = [
    ({}, sentence("GPRMC,235959,A,4807.038,N,01131.000,E,1.0,90.0,311226,,,A")
     + sentence("GPGGA,000000.5,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")),
    ({}, sentence("GPRMC,000231.42,A,4829.0005,N,00022.0016,E,0.16,212.28,220899,,,A")),
    ({"allow_no_checksum": True},
     b"$GPGGA,030131.00,2638.1728,N,08011.3893,W,1,06,1.5,16,M,,M,,\r\n"
     b"$GPGGA,030132.00,2638.1728,N,08011.3893,W,1,06\r\n"),
    ({}, b"$$GNGGA,030131.00,2638.1728,N,08011.3893,W,1,06,1.5,00016,M,-0028,M,,*48\r\n"
     b"\x00\xff junk\r\n$GPGGA,030130$GPGLL,2638.1728,N,08011.3893,W,030131.000,A,A*41\n"),
    ({}, b"$GPTXT," + b"x" * 600 + b"*00\r\n" + sentence("GPZDA,000427.00,22,08,2026,,")),
]

SCRIPT = """
import json
from gridcore.nmea import NmeaDecoder
jobs = json.loads(open("/data/jobs.json").read())
for path, options, chunk in jobs:
    data = open(path, "rb").read()
    dec = NmeaDecoder(**options)
    fixes = []
    for i in range(0, len(data), chunk):
        fixes.extend(dec.feed(data[i:i + chunk]))
    fixes.extend(dec.flush())
    rows = []
    for f in fixes:
        d = f.to_dict()
        d["tod"] = f.tod
        rows.append(d)
    print(json.dumps({"path": path, "fixes": rows, "stats": dec.stats()}))
"""


def decode_cpython(data, options):
    dec = NmeaDecoder(**options)
    fixes = dec.feed(data) + dec.flush()
    rows = []
    for f in fixes:
        d = f.to_dict()
        d["tod"] = f.tod
        rows.append(d)
    return {"fixes": rows, "stats": dec.stats()}


@pytest.mark.micropython
def test_micropython_decodes_real_logs_and_vectors_exactly_like_cpython():
    files, jobs, expected = {}, [], {}
    require(NMEA)
    logs = nmea_logs()
    for i, log in enumerate(logs):
        path = f"/data/log{i}.nmea"
        files[path] = log.read_bytes()
        jobs.append([path, {"min_year": 1980}, 97 + i * 13])  # serial-sized chunks
        expected[path] = decode_cpython(files[path], {"min_year": 1980})
    for i, (options, data) in enumerate(VECTORS):
        path = f"/data/vector{i}.nmea"
        files[path] = data
        jobs.append([path, options, 7])
        expected[path] = decode_cpython(data, options)
    files["/data/jobs.json"] = json.dumps(jobs)
    out = run_micropython(SCRIPT, files=files)
    results = [json.loads(line) for line in out.splitlines()]
    assert [r["path"] for r in results] == [job[0] for job in jobs]
    n_fixes = 0
    for result in results:
        want = expected[result["path"]]
        assert result["stats"] == want["stats"], result["path"]
        assert result["fixes"] == want["fixes"], result["path"]
        n_fixes += sum(1 for f in result["fixes"] if f["lat"] is not None)
    assert n_fixes >= 250
