"""The link shaper imposes what its profile says: measured through it on real sockets."""

import socket
import statistics
import threading
import time

import pytest

from hil_tests.shaper import MSS, PROFILES, Shaper, ShaperError, with_profile


@pytest.fixture
def echo_port():
    """A TCP echo server (the far end of the shaped link)."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve(c):
        with c:
            while data := c.recv(65536):
                c.sendall(data)

    def accept():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(2)
    srv.close()


def connect(sh):
    s = socket.create_connection(("127.0.0.1", sh.port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def round_trip(s, data=b"x"):
    t = time.monotonic()
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = s.recv(65536)
        assert chunk, "connection closed"
        got += chunk
    return time.monotonic() - t


def test_delay_and_jitter_are_what_the_profile_says(echo_port):
    with Shaper(echo_port, with_profile("lan", delay_ms=80, jitter_ms=20), seed=1) as sh:
        s = connect(sh)
        rtts = [round_trip(s) for _ in range(12)]
        s.close()
    # two one-way delays of 80 ± 20 ms: never less; more only by the machine's own
    # scheduling (a busy 2-core machine running tests in parallel delays one now and then)
    assert min(rtts) >= 0.120, rtts
    assert sum(r <= 0.260 for r in rtts) >= 10, rtts
    assert statistics.median(rtts) == pytest.approx(0.160, abs=0.04)


def test_bandwidth_cap_paces_a_bulk_transfer(echo_port):
    with Shaper(echo_port, with_profile("lan", rate_kbps=1000)) as sh:
        s = connect(sh)
        took = round_trip(s, b"y" * 100_000)
        s.close()
        counted = sh.counters
    # 800 kbit each way at 1 Mbit/s; the two directions overlap, so about 0.8 s
    assert 0.75 <= took <= 1.6, took
    assert counted["bytes_up"] == counted["bytes_down"] == 100_000
    assert counted["segments"] >= 2 * (100_000 // MSS)


def test_loss_costs_a_retransmission_timeout_and_keeps_every_byte_in_order(echo_port):
    lossy = with_profile("lan", loss=0.5)
    with Shaper(echo_port, lossy, seed=7) as sh:
        s = connect(sh)
        data = bytes(range(256)) * 40
        took = [round_trip(s, data[i:i + 512]) for i in range(0, len(data), 512)]
        retransmits = sh.counters["retransmits"]
        s.close()
    assert retransmits > 5
    assert max(took) >= lossy.rto_s()          # a lost segment waited for its RTO
    assert min(took) < 0.05                     # and a lucky one did not


def test_reset_cut_drops_connections_and_closes_new_ones_until_restored(echo_port):
    with Shaper(echo_port) as sh:
        s = connect(sh)
        assert round_trip(s) < 0.1
        sh.cut(mode="reset")
        assert s.recv(10) == b""                 # dropped
        s2 = connect(sh)
        assert s2.recv(10) == b""                # closed at once
        assert not sh.is_up()
        sh.restore()
        s3 = connect(sh)
        assert round_trip(s3) < 0.1
        for x in (s, s2, s3):
            x.close()
        assert sh.counters["dropped"] == 1 and sh.counters["refused"] == 1


def test_stall_cut_holds_bytes_and_delivers_them_on_return(echo_port):
    with Shaper(echo_port) as sh:
        s = connect(sh)
        sh.cut(seconds=0.6, mode="stall")
        took = round_trip(s, b"held")            # sent into the dark, arrives after
        s.close()
    assert 0.5 <= took <= 1.5, took


def test_timed_reset_cut_comes_back_by_itself(echo_port):
    with Shaper(echo_port) as sh:
        sh.cut(seconds=0.3)
        assert not sh.is_up()
        time.sleep(0.5)
        assert sh.is_up()
        s = connect(sh)
        assert round_trip(s) < 0.1
        s.close()


def test_profiles_of_the_issue_and_bad_names():
    assert (PROFILES["weak"].delay_ms, PROFILES["weak"].loss) == (300, 0.02)
    assert PROFILES["tunnel"].cut_s == 30
    assert {"4G", "3G", "weak", "tunnel"} <= set(PROFILES)
    with pytest.raises(ShaperError, match="no link profile '5G'"):
        Shaper(1, "5G")
    with Shaper(1) as sh, pytest.raises(ShaperError, match="cut mode"):
        sh.cut(mode="sideways")


def test_a_target_that_is_down_closes_the_client(echo_port):
    dead = socket.create_server(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    with Shaper(port) as sh:
        s = connect(sh)
        assert s.recv(10) == b""
        s.close()
        assert sh.counters["refused"] == 1
