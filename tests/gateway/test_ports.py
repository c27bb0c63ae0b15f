"""Free ports for the services the project starts: below the kernel's ephemeral range,
where no outgoing connection can take one between the probe and the service's bind."""

import socket

from gridlink.gateway import ports


def test_a_port_is_below_the_ephemeral_range_and_nothing_listens_there():
    low, high = ports.ephemeral_range()
    assert 0 < low <= high < 65536
    picked = {ports.free_port() for _ in range(50)}
    assert all(ports.BELOW <= p < low for p in picked) and len(picked) > 40
    port = picked.pop()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))        # free: the service can take it


def test_a_port_taken_now_is_not_handed_out(monkeypatch):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        held.listen()
        picks = iter([taken, taken, taken + 1 if taken < 65535 else taken - 1])
        monkeypatch.setattr(ports, "ephemeral_range", lambda: (65536, 65536))
        monkeypatch.setattr(ports._pick, "randint", lambda a, b: next(picks))
        assert ports.free_port() not in (taken,)


def test_without_room_below_the_range_the_kernel_picks(tmp_path, monkeypatch):
    (tmp_path / "range").write_text("1024\t65000\n")
    assert ports.ephemeral_range(tmp_path / "range") == (1024, 65000)
    assert ports.ephemeral_range(tmp_path / "missing") == (32768, 60999)
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (1024, 65000))
    port = ports.free_port()
    assert 1024 <= port <= 65535
