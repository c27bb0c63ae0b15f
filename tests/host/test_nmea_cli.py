"""``gridlink nmea decode``: JSON lines on stdout, a summary on stderr, exit 2 on bad files."""

import io
import json
import sys

from gridlink.cli import main
from gridlink.firmware.core.nmea import sentence

CAPTURE = (b"# Name: hand-made\n"
           + sentence("GPRMC,030129.0,A,2638.1726,N,08011.3892,W,0.00,219.6,010426,,")
           + sentence("GPGGA,030129.00,2638.1726,N,08011.3892,W,1,06,1.5,16,M,-28,M,,")
           + b"$GPGGA,030130$GPGLL,2638.1728,N,08011.3893,W,030131.000,A,A*41\r\n"
           + sentence("PGRME,15.0,M,22.5,M,27.0,M")
           + sentence("GPRMC,030131.0,A,2638.1728,N,08011.3893,W,0.00,219.6,010426,,"))


def test_decode_prints_one_json_object_per_epoch_and_a_summary(tmp_path, capsys):
    path = tmp_path / "capture.nmea"
    path.write_bytes(CAPTURE)
    assert main(["nmea", "decode", str(path)]) == 0
    out, err = capsys.readouterr()
    fixes = [json.loads(line) for line in out.splitlines()]
    assert [f["time"] for f in fixes] == ["2026-04-01T03:01:29.000Z", "2026-04-01T03:01:31.000Z"]
    assert fixes[0]["alt"] == 16.0 and fixes[0]["mode"] == 3 and fixes[0]["sats"] == 6
    assert set(fixes[0]) >= {"time", "lat", "lon", "alt", "speed", "track", "mode", "status",
                             "sats", "hdop"}
    assert f"{path}: 5 lines, 6 sentences, 4 accepted, 2 rejected" in err
    assert "truncated 1" in err and "proprietary 1" in err and "1 comment lines" in err


def test_stdin_and_min_year(monkeypatch, capsys):
    old = sentence("GPRMC,000231.42,A,4829.0005,N,00022.0016,E,0.16,212.28,220899,,,A")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(old)))
    assert main(["nmea", "decode", "-"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["time"] is None and json.loads(out)["lat"] is not None
    assert "<stdin>" in err and "1 bad dates" in err and "--min-year" in err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(old)))
    assert main(["nmea", "decode", "--min-year", "1980", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["time"] == "1999-08-22T00:02:31.420Z"


def test_unreadable_file_is_one_clear_line_exit_2_and_good_files_still_decode(tmp_path, capsys):
    good = tmp_path / "good.nmea"
    good.write_bytes(CAPTURE)
    missing = tmp_path / "missing.nmea"
    assert main(["nmea", "decode", str(missing), str(tmp_path), str(good)]) == 2
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 2
    lines = err.splitlines()
    assert f"gridlink nmea: error: cannot read {missing}: No such file or directory" in lines
    assert f"gridlink nmea: error: cannot read {tmp_path}: Is a directory" in lines
    assert "Traceback" not in err
