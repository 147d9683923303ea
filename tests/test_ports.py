"""Ports for the servers tests and benches start: out of the clients' way."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from difusor import ports
from difusor.ports import unused_port


def test_ports_are_free_below_the_ephemeral_range_and_never_handed_twice() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    given = [unused_port() for _ in range(50)]
    assert len(set(given)) == 50 and all(p < low for p in given)
    with socket.socket() as s:  # a server can take the port it was given
        s.bind(("127.0.0.1", given[0]))
        s.listen()


def test_a_port_someone_is_bound_to_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as server:
        server.bind(("0.0.0.0", 0))
        server.listen()
        busy = server.getsockname()[1]
        picks = iter([busy, busy, 23456])

        class Picks:
            def randrange(self, start: int, stop: int) -> int:
                return next(picks)

        monkeypatch.setattr(ports, "_rng", Picks())
        monkeypatch.setattr(ports, "_ephemeral_low", lambda: 65536)
        monkeypatch.setattr(ports, "_handed", set())
        assert unused_port() == 23456
