"""``gridlink gateway``: clear one-line errors for bad options, migrate, run as a command."""

import pytest
from gridlink.cli import main
from gridlink.gateway.store import open_store

from tests.support.gateway_rig import (
    GatewayProcess,
    Publisher,
    count,
    encode,
    grid_map_file,
    report,
)
from tests.support.gateway_rig import topic as topic_of
from tests.support.s3_server import CREDENTIALS
from tests.support.waiting import wait_until


@pytest.mark.parametrize("args, words", [
    (["--db", "mysql://x"], "unknown store URL"),
    (["--db", "sqlite:///{tmp}/i.sqlite", "--grid", "{tmp}/none.glgm"], "grid map"),
    (["--db", "sqlite:///{tmp}/i.sqlite", "--http", "nonsense"], "HOST:PORT"),
    (["--db", "sqlite:///{tmp}/i.sqlite", "--workers", "0"], "--workers"),
    (["--db", "sqlite:///{tmp}/i.sqlite", "--ack-ids-max", "17"], "--ack-ids-max"),
    (["--db", "sqlite:///{tmp}/i.sqlite", "--ack-ids-max", "0"], "between 1 and 16"),
    (["--db", "sqlite:///{tmp}/i.sqlite", "--tls-cert", "a.crt"], "--tls-key"),
    (["--db", "sqlite:///{tmp}/i.sqlite", "--http-cert", "a.crt"], "--http-key"),
    (["--db", "sqlite:///{tmp}/i.sqlite", "--http-cert", "{tmp}/a.crt", "--http-key",
      "{tmp}/a.key"], "no file"),
    (["--db", "sqlite:///{tmp}/i.sqlite", "--trusted-proxy", "proxy.example"],
     "--trusted-proxy"),
    (["--db", "sqlite:///{tmp}/i.sqlite", "--media-store", "ftp://bucket"], "s3://bucket"),
    (["--db", "sqlite:///{tmp}/i.sqlite", "--media-store", "s3://b?endpoint=http://127.0.0.1:1"],
     "S3 media bucket 'b'"),
])
def test_bad_options_are_one_clear_line(tmp_path, capsys, monkeypatch, args, words):
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    argv = ["gateway", "run", "--broker", "mqtt://127.0.0.1:1",
            *(a.format(tmp=tmp_path) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gridlink gateway: error:") and words in err[0]


def test_bad_broker_url(tmp_path, capsys):
    assert main(["gateway", "run", "--broker", "http://x",
                 "--db", f"sqlite:///{tmp_path}/i.sqlite"]) == 2
    assert "mqtt://host[:port]" in capsys.readouterr().err


def test_migrate(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/i.sqlite"
    assert main(["gateway", "migrate", "--db", url]) == 0
    assert "0001_gateway_tables" in capsys.readouterr().out
    assert main(["gateway", "migrate", "--db", url]) == 0
    assert "up to date" in capsys.readouterr().out
    # applied in one millisecond, two names sort by name: compare the sets
    assert sorted(open_store(url).applied_migrations()) == sorted([
        "0001_gateway_tables", "0002_dead_letter_digest", "0003_report_digest",
        "0004_capture_time_flag", "0005_photo_parts", "0006_report_seq_bigint",
        "urgent_001_report_urgent", "0007_month_partitions", "media_001_media"])


def test_run_with_two_workers_as_one_command(broker, tmp_path):
    url = f"sqlite:///{tmp_path}/i.sqlite"
    gw = GatewayProcess(broker.url, url, grid_map_file(tmp_path), tmp_path, "--workers", "2")
    gw.start()
    try:
        wait_until(lambda: gw.subscribed() >= 2, 30, "both workers subscribed")
        pub = Publisher(broker.port)
        for seq in range(1, 301):
            pub.publish(topic_of("pv-0001", "report"), encode(report(seq=seq)))
        pub.wait_acked(300)
        store = open_store(url)
        wait_until(lambda: count(store, "reports") == 300, 30, "300 reports")
        pub.close()
        assert gw.terminate() == 0
        logs = gw.log.read_text()
        assert '"worker": 0' in logs and '"worker": 1' in logs
    finally:
        gw.kill()


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--duplicate-radius", "0", "duplicate radius: 0 to 10000 metres, not 0.0"),
    ("--duplicate-hours", "1000", "duplicate window: 0 to 720 hours, not 1000.0"),
])
def test_a_bad_duplicate_rule_is_refused_by_name(tmp_path, capsys, option, value, message):
    assert main(["gateway", "run", "--broker", "mqtt://127.0.0.1:1",
                 "--db", f"sqlite:///{tmp_path}/i.sqlite", option, value]) == 2
    assert message in capsys.readouterr().err
