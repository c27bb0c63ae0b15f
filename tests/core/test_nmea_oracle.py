"""The decoder against gpsd's own output for the same real receiver logs.

For every log in the shared data's nmea/ folder (tests/support/shared.py) the ``.chk``
beside it holds what gpsd printed:
each TPV with time, lat and lon (the last one per time) is an epoch gpsd reported
(the data README's rule).  Our fix for that UTC time must match it: lat/lon within
1e-7°, speed within 0.01 m/s, track within 0.01°, altitude within 0.01 m, equal mode
and status (gpsd omits status 1, and 0 without a fix).  Values gpsd computes itself
are not the receiver's (README rule 3): a speed or track gpsd derived from successive
positions, because none of the sentences gpsd accepted for that epoch carried one,
is a difference of kind "gpsd_computed", which does not count against agreement.
Timed fixes with a position that gpsd never reported are differences of kind
"gpsd_unreported".  Every difference must be listed, with its reason, in
tests/core/data/oracle_differences.json, and every listed one must still occur.

The logs are old captures (2005–2020), so they are decoded with min_year=1980 as
gpsd does (it takes the century from its clock); the rollover rule with the default
min_year is tested in test_nmea_decoder.py.
"""

import json
from pathlib import Path

import pytest
from gridlink.firmware.core.nmea import NmeaDecoder

from tests.support.shared import NMEA, nmea_logs, require

SHARED = NMEA
DIFFERENCES = Path(__file__).with_name("data") / "oracle_differences.json"
# with the folder missing, one placeholder test fails naming it (never a silent skip)
LOGS = [p.name for p in nmea_logs()] or ["(no shared logs)"]
AGREEMENT = 0.995


def receiver_lines(path):
    """The log's bytes without gpsfake's '#' header lines."""
    lines = path.read_bytes().splitlines(keepends=True)
    return b"".join(line for line in lines if not line.startswith(b"#"))


def gpsd_epochs(chk):
    """time → (last TPV for that time, sentences gpsd accepted for that epoch)."""
    tpvs, sentences, pending = {}, {}, []
    for line in chk.read_bytes().splitlines():
        if line.startswith(b"$") or line.startswith(b"!"):
            pending.append(line)
        elif line.startswith(b"{"):
            report = json.loads(line)
            if report.get("class") != "TPV" or "time" not in report:
                continue
            sentences.setdefault(report["time"], []).extend(pending)
            pending = []
            if "lat" in report and "lon" in report:
                tpvs[report["time"]] = report
    return {t: (tpv, sentences.get(t, [])) for t, tpv in tpvs.items()}


def _field(sentence, index):
    body = sentence.split(b"*")[0].split(b",")
    return body[index] if index < len(body) else b""


def receiver_gave(sentences, what):
    """Whether a sentence gpsd accepted for the epoch carried speed or track."""
    rmc_index, vtg_index = (7, 5) if what == "speed" else (8, 1)
    for s in sentences:
        kind = s[3:6]
        if kind == b"RMC" and _field(s, 2) in (b"A", b"D") and _field(s, rmc_index):
            return True
        if kind == b"VTG" and _field(s, vtg_index):
            return True
    return False


def compare(name):
    """Our fixes against gpsd's epochs: (epochs compared, list of differences)."""
    dec = NmeaDecoder(min_year=1980)
    fixes = dec.feed(receiver_lines(SHARED / name))
    fixes.extend(dec.flush())
    ours = {f.time: f for f in fixes if f.time is not None}
    epochs = gpsd_epochs(SHARED / (name + ".chk"))
    diffs = []

    def diff(time, field, mine, theirs, kind="decoder"):
        diffs.append({"log": name, "time": time, "field": field, "kind": kind,
                      "ours": mine, "gpsd": theirs})

    for time, (tpv, sentences) in sorted(epochs.items()):
        fix = ours.get(time)
        if fix is None:
            diff(time, "epoch", None, "reported")
            continue
        if fix.lat is None or abs(fix.lat - tpv["lat"]) > 1e-7 or abs(fix.lon - tpv["lon"]) > 1e-7:
            diff(time, "position", [fix.lat, fix.lon], [tpv["lat"], tpv["lon"]])
        for field, tolerance in (("speed", 0.01), ("track", 0.01)):
            if field not in tpv:
                continue
            mine = getattr(fix, field)
            if mine is not None and abs(mine - tpv[field]) <= tolerance:
                continue
            computed = mine is None and not receiver_gave(sentences, field)
            diff(time, field, mine, tpv[field], "gpsd_computed" if computed else "decoder")
        if "altMSL" in tpv and (fix.alt is None or abs(fix.alt - tpv["altMSL"]) > 0.01):
            diff(time, "alt", fix.alt, tpv["altMSL"])
        if fix.mode != tpv["mode"]:
            diff(time, "mode", fix.mode, tpv["mode"])
        status = tpv.get("status", 1 if tpv["mode"] >= 2 else 0)
        if fix.status != status:
            diff(time, "status", fix.status, status)
    for time, fix in sorted(ours.items()):
        if fix.lat is not None and time not in epochs:
            diff(time, "epoch", "reported", None, "gpsd_unreported")
    return len(epochs), diffs


def listed():
    return json.loads(DIFFERENCES.read_text(encoding="utf-8"))["differences"]


def key(d):
    return (d["log"], d["time"], d["field"], d["kind"])


@pytest.fixture(autouse=True, scope="module")
def shared_logs():
    require(SHARED)


@pytest.mark.parametrize("name", LOGS)
def test_fixes_agree_with_gpsd(name):
    n_epochs, diffs = compare(name)
    counted = {d["time"] for d in diffs if d["kind"] == "decoder"}
    if n_epochs:
        agreement = (n_epochs - len(counted)) / n_epochs
        assert agreement >= AGREEMENT, (name, agreement, diffs)
    expected = sorted(key(d) for d in listed() if d["log"] == name)
    unlisted = [d for d in diffs if key(d) not in set(expected)]
    assert not unlisted, f"differences not in {DIFFERENCES.name}: {unlisted}"
    gone = sorted(set(expected) - {key(d) for d in diffs})
    assert not gone, f"listed differences that no longer occur: {gone}"


def test_every_listed_difference_has_a_reason_and_a_log():
    for d in listed():
        assert d["log"] in LOGS, d
        assert len(d.get("reason", "")) > 20, d


def test_the_oracle_covers_real_fixes():
    """The comparison is not vacuous: hundreds of epochs, RTK and DGPS among them."""
    total = 0
    statuses = set()
    for name in LOGS:
        for tpv, _ in gpsd_epochs(SHARED / (name + ".chk")).values():
            total += 1
            statuses.add(tpv.get("status", 1))
    assert total >= 250
    assert {1, 2, 3} <= statuses
