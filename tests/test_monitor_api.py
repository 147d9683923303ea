"""The probe API (``[monitor] listen``) under hostile clients: a bounded number of connection
threads, idle sockets closed, strict request parsing and a 400 (never a dropped connection) for
every malformed body."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
from conftest import Site, free_port

from difusor.monitor.api import ProbeAPI

TOKEN = "token-de-prueba-0123456789"


@pytest.fixture
def api(site: Site) -> Iterator[ProbeAPI]:
    with ProbeAPI(site.cfg, site.ledger, token=TOKEN, listen=f"127.0.0.1:{free_port()}",
                  max_connections=8, idle_timeout=1.0) as a:
        yield a


def exchange(api: ProbeAPI, raw: bytes, timeout: float = 10.0) -> bytes:
    """Send ``raw`` and read until the server closes or a whole response has arrived."""
    with socket.create_connection(api.address, timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = [line for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if length and len(body) >= int(length[0].split(b":")[1]):
                    break
        return data


def post(body: bytes, *, length: str | None = None, extra: str = "") -> bytes:
    size = str(len(body)) if length is None else length
    return (f"POST /report HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {size}\r\n{extra}\r\n"
            ).encode() + body


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response.split(b" ", 2)[1])


def spanish_error(response: bytes) -> str:
    doc = json.loads(response.partition(b"\r\n\r\n")[2])
    return str(doc["error"])


GOOD = {"vantage": "remoto", "interval_s": 30,
        "results": [{"target": "origen", "ok": True, "status": 200, "latency_ms": 12.5}]}


def nested(depth: int) -> bytes:
    detail = "[" * depth + "]" * depth
    return (b'{"vantage": "remoto", "interval_s": 30, "results": [{"target": "origen", '
            b'"ok": true, "detail": {"x": ' + detail.encode() + b"}}]}")


@pytest.mark.parametrize(("raw", "why"), [
    (post(json.dumps(GOOD).encode(), length="²"), "Content-Length"),
    (post(json.dumps(GOOD).encode(), length="+12"), "Content-Length"),
    (post(json.dumps(GOOD).encode(), length=" 1_0"), "Content-Length"),
    (post(json.dumps(GOOD).encode(), extra="Content-Length: 3\r\n"), "Content-Length"),
    (post(json.dumps(GOOD).encode(), extra="Transfer-Encoding: chunked\r\n"), "Transfer-Encoding"),
    (post(nested(100_000)), "anidado"),
    (post(nested(50)), "anidado"),
    (post(b'{"vantage": "remoto", "interval_s": 1' + b"0" * 5000 + b', "results": []}'), "JSON"),
    (post(b'{"vantage": "remoto", "interval_s": NaN, "results": []}'), "JSON"),
    (post(b"\xff\xfe{}"), "JSON"),
    (post(b"[]"), "objeto"),
])
def test_every_malformed_request_gets_a_400_in_spanish(api: ProbeAPI, raw: bytes,
                                                        why: str) -> None:
    response = exchange(api, raw)
    assert status_of(response) == 400, response[:300]
    assert why in spanish_error(response)
    # The server is still there for the next agent.
    good = exchange(api, post(json.dumps(GOOD).encode()))
    assert status_of(good) == 200, good[:300]


def test_a_valid_report_is_still_recorded(api: ProbeAPI, site: Site) -> None:
    response = exchange(api, post(json.dumps(GOOD).encode()))
    assert status_of(response) == 200
    rows = [r for r in site.ledger.probes() if r["vantage"] == "remoto"]
    assert len(rows) == 1 and rows[0]["latency_ms"] == 12.5


class ThreadPeak:
    """The most threads this process had while watched (the API runs in-process)."""

    def __init__(self) -> None:
        self.peak = threading.active_count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, threading.active_count())

    def __enter__(self) -> ThreadPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.slow
def test_idle_sockets_cannot_pile_up_threads(api: ProbeAPI) -> None:
    before = threading.active_count()
    with ThreadPeak() as threads:
        idle = [socket.create_connection(api.address, timeout=10) for _ in range(120)]
        try:
            answers = []
            for s in idle:  # each is turned away (503) or, holding a thread, closed when idle
                answers.append(s.recv(4096))
        finally:
            for s in idle:
                s.close()
    # The sampler is one thread; a finished handler frees its slot a moment before its thread
    # is gone (+2). Unbounded, it was one thread per socket: 120.
    assert threads.peak <= before + 1 + 8 + 2, threads.peak
    refused = [a for a in answers if a]
    assert refused and all(status_of(a) == 503 for a in refused)
    assert "ocupado" in spanish_error(refused[0])
    # (the others held one of the 8 threads until idle for 1 s: closed, b"")
    good = exchange(api, post(json.dumps(GOOD).encode()))
    assert status_of(good) == 200
