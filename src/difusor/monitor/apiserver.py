"""The probe API's HTTP server: stdlib threads, but a bounded number of them.

A handful of agents report every 30 s, so a few connections at once are plenty. Past
``max_connections`` a new connection is answered ``503`` at once and closed (an agent retries
next round) instead of costing a thread; a connection that sends nothing for ``idle_timeout``
seconds is closed. Unexpected errors in a handler become one log line, never a traceback on
stderr.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any

BUSY_LOG_EVERY = 60.0  # seconds between two "turned away" log lines


def printable(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters with control characters escaped, for a log line."""
    cut = text[:limit] + ("…" if len(text) > limit else "")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in cut)


class BoundedServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 32

    def __init__(self, address: tuple[str, int], handler: Any, *, max_connections: int,
                 idle_timeout: float, log: Callable[[str], None]) -> None:
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.log = log
        self._slots = threading.BoundedSemaphore(max_connections)
        self._busy_count = 0
        self._busy_logged = 0.0
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._turn_away(request, client_address)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _turn_away(self, request: socket.socket, client_address: Any) -> None:
        body = json.dumps({"error": "servidor de sondeos ocupado; reintenta en unos segundos"},
                          ensure_ascii=False).encode()
        head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; "
                f"charset=utf-8\r\nContent-Length: {len(body)}\r\nRetry-After: 5\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n\r\n").encode()
        with contextlib.suppress(OSError):  # best effort: the connection is closed either way
            request.settimeout(0.5)  # a client that does not read must not stall accepting
            request.sendall(head + body)
        self.shutdown_request(request)
        self._busy_count += 1
        now = time.monotonic()
        if now - self._busy_logged >= BUSY_LOG_EVERY:
            self.log(f"sondeos remotos: {self._busy_count} conexión(es) rechazada(s) con 503: "
                     f"ya hay {self.max_connections} abiertas (la última de "
                     f"{client_address[0]})")
            self._busy_logged, self._busy_count = now, 0

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        exc = sys.exc_info()[1]
        self.log(f"sondeos remotos: error con {client_address[0]}: {exc!r}")


class BoundedServerV6(BoundedServer):
    address_family = socket.AF_INET6
