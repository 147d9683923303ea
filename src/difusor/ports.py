"""A port for a server about to start, on a machine where clients come and go.

A port the kernel hands out for ``bind(port 0)`` comes from the ephemeral range, the range every
outgoing connection takes its own local port from: between the pick and the server's bind, a
client (a readiness probe, an HTTP client, a previous test's connection in TIME_WAIT) may hold
it, and the server fails with "Address already in use" (seen: nginx in the conformance tests).
A port below that range is never taken by an outgoing connection, so one that binds now stays
free until a server asks for it (unless another server picks the same one: random, and never
twice from one process).
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_handed: set[int] = set()
_rng = random.SystemRandom()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _binds(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def unused_port(host: str = "127.0.0.1") -> int:
    """A port nothing is bound to on ``host`` nor on the wildcard address, below the ephemeral
    range, not handed out before by this process; the kernel's pick if none is found."""
    low = _ephemeral_low()
    first = 10000 if low > 11000 else 1024
    for _ in range(200):
        port = _rng.randrange(first, low)
        if port not in _handed and _binds("0.0.0.0", port) and _binds(host, port):
            _handed.add(port)
            return port
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
