"""One probe against real servers: ``difusor serve``, and small local HTTP(S) servers that
misbehave on purpose (wrong header, old corte, altered bytes, 503, slow, short-lived
certificates)."""

from __future__ import annotations

import hashlib
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import ServerProcess, Site, free_port, minimal_site

from difusor.config import MAIN_JSON_CACHE_CONTROL
from difusor.monitor.expected import Expected, expected_state
from difusor.monitor.probe import ProbeResult, probe_target
from difusor.serve.selfsigned import self_signed

NEW = b'{"corte": "20:30"}'
OLD = b'{"corte": "20:15"}'
PAGE = b"<!doctype html><title>PREP</title>"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


EXPECTED = Expected(release_id="r2030", corte_time="2024-12-08T20:30:00-06:00",
                    main_sha256=sha(NEW), files={"index.html": sha(PAGE)},
                    activated_at="2024-12-09T02:30:00+00:00", older_main={sha(OLD): "r2015"})


@dataclass
class Route:
    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {
        "Cache-Control": MAIN_JSON_CACHE_CONTROL})
    delay: float = 0.0


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hung up (timeouts) or refused our certificate: expected here


class FakeSite:
    """A local HTTP(S) server answering from ``routes`` (changeable between probes)."""

    def __init__(self, routes: dict[str, Route], context: ssl.SSLContext | None = None) -> None:
        self.routes = routes
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def do_GET(self) -> None:
                route = site.routes.get(self.path)
                if route is None:
                    route = Route(b"no existe", 404, {})
                time.sleep(route.delay)
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if context is not None:
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        host, port = self.server.server_address[:2]
        self.url = f"{'https' if context else 'http'}://{host}:{port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def healthy() -> dict[str, Route]:
    return {"/json/main.json": Route(NEW), "/index.html": Route(PAGE)}


@pytest.fixture
def fake() -> Iterator[FakeSite]:
    s = FakeSite(healthy())
    yield s
    s.close()


def probe(url: str, expected: Expected = EXPECTED, **kw: object) -> ProbeResult:
    args: dict = {"timeout": 2.0, "degraded_ms": 1000.0, "tls_warn_days": 14, **kw}
    return probe_target("t", url, expected, **args)


# -- against the real server ----------------------------------------------------------------


@pytest.mark.slow
def test_real_server_is_up_with_the_live_corte(site: Site, server: ServerProcess) -> None:
    site.publisher.publish(site.write_package("a.zip", minimal_site(
        extra={f"datos/{i}.json": b'{"i": %d}' % i for i in range(7)})))
    live = site.ledger.last_activation()
    assert live is not None
    seen: set[str] = set()
    for offset in range(0, 8, 3):  # the sample rotates through every file of the manifest
        expected = expected_state(site.cfg, site.ledger, sample=3, offset=offset)
        assert expected.release_id == live.release_id and expected.activated_at == live.at
        assert "json/main.json" not in expected.files and len(expected.files) == 3
        seen |= set(expected.files)
        # Speed is not the point here (test_a_slow_answer_is_degraded_but_up is): a threshold
        # a loaded machine cannot cross, and a latency that must have been measured.
        result = probe("http://" + site.cfg.web.listen, expected, degraded_ms=10_000.0)
        assert result.ok and result.failure is None, result.message
        assert result.status == 200 and result.corte == live.release_id
        assert result.latency_ms is not None and 0 < result.latency_ms < 10_000
        assert result.detail["sample"] == 3
    assert seen == {"index.html", *(f"datos/{i}.json" for i in range(7))}


def test_expected_travels_as_json() -> None:
    again = Expected.from_json(EXPECTED.to_json())
    assert again == EXPECTED
    assert Expected.from_json({"release_id": None, "corte_time": None, "main_sha256": None,
                               "files": {}, "activated_at": None}).main_path == "json/main.json"


@pytest.mark.slow
def test_nothing_published_yet_is_not_a_failure(site: Site, server: ServerProcess) -> None:
    expected = expected_state(site.cfg, site.ledger, sample=5)
    assert expected.release_id is None
    result = probe(server.url, expected)
    assert result.ok, result.message


# -- against servers that misbehave -----------------------------------------------------------


def test_a_healthy_fake_is_up(fake: FakeSite) -> None:
    result = probe(fake.url)
    assert result.ok and result.failure is None and result.corte == "r2030"


def test_wrong_cache_control_on_main_json_is_a_header_failure(fake: FakeSite) -> None:
    fake.routes["/json/main.json"] = Route(NEW, headers={"Cache-Control": "max-age=60"})
    result = probe(fake.url)
    assert not result.ok and result.failure == "header"
    assert "max-age=60" in result.message and MAIN_JSON_CACHE_CONTROL in result.message
    fake.routes["/json/main.json"] = Route(NEW, headers={})
    assert probe(fake.url).failure == "header"


def test_an_older_corte_is_stale_and_other_bytes_are_integrity(fake: FakeSite) -> None:
    fake.routes["/json/main.json"] = Route(OLD)
    stale = probe(fake.url)
    assert not stale.ok and stale.failure == "stale"
    assert stale.corte == "r2015" and "r2015" in stale.message and "r2030" in stale.message

    fake.routes["/json/main.json"] = Route(b'{"corte": "otro"}')
    bad = probe(fake.url)
    assert not bad.ok and bad.failure == "integrity"

    fake.routes.update(healthy())
    fake.routes["/index.html"] = Route(PAGE.replace(b"PREP", b"PREX"))
    sample = probe(fake.url)
    assert sample.failure == "integrity" and sample.detail["mismatched"] == ["index.html"]
    assert "/index.html" in sample.message


def test_refused_connection_and_5xx_are_outages(fake: FakeSite) -> None:
    refused = probe(f"http://127.0.0.1:{free_port()}")
    assert not refused.ok and refused.failure == "outage" and refused.status is None
    assert refused.detail["error"] == "refused" and refused.message == "conexión rechazada"

    fake.routes["/json/main.json"] = Route(b"fallo", 503, {})
    down = probe(fake.url)
    assert not down.ok and down.failure == "outage" and down.status == 503


def test_a_slow_answer_is_degraded_but_up(fake: FakeSite) -> None:
    fake.routes["/json/main.json"] = Route(NEW, delay=0.3)
    slow = probe(fake.url, degraded_ms=100)
    assert slow.ok and slow.failure == "degraded" and slow.latency_ms is not None
    assert slow.latency_ms >= 300 and "lenta" in slow.message


@pytest.mark.slow
def test_no_answer_within_the_timeout_is_an_outage(fake: FakeSite) -> None:
    fake.routes["/json/main.json"] = Route(NEW, delay=1.5)
    result = probe(fake.url, timeout=0.5)
    assert not result.ok and result.failure == "outage" and result.detail["error"] == "timeout"


# -- TLS ------------------------------------------------------------------------------------


def tls_site(tmp_path: Path, days: int) -> tuple[FakeSite, Path]:
    cert, key = self_signed(days=days)
    tmp_path.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert)
    key_path.write_bytes(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return FakeSite(healthy(), context), cert_path


def test_a_certificate_near_expiry_warns_without_counting_as_down(tmp_path: Path) -> None:
    site, ca = tls_site(tmp_path, days=3)
    try:
        result = probe(site.url, ca_file=str(ca), tls_warn_days=14)
        assert result.ok and result.failure == "tls"
        assert result.detail["severity"] == "warning"
        assert 2.9 < result.detail["tls_days_left"] <= 3.0
        assert "vence en 3.0 días" in result.message

        fine = probe(site.url, ca_file=str(ca), tls_warn_days=2)
        assert fine.ok and fine.failure is None and fine.detail["tls_days_left"] > 2.9
    finally:
        site.close()


def test_an_untrusted_or_expired_certificate_is_down(tmp_path: Path) -> None:
    site, ca = tls_site(tmp_path, days=30)
    try:
        untrusted = probe(site.url)  # the system's CAs do not know this one
        assert not untrusted.ok and untrusted.failure == "tls"
        assert untrusted.detail["error"] == "tls"
    finally:
        site.close()
    # Valid until the moment it was made, in whole seconds (rounded down): already past, for
    # OpenSSL counts the last second as expired.
    expired, ca = tls_site(tmp_path / "vencido", days=0)
    try:
        result = probe(expired.url, ca_file=str(ca))
        assert not result.ok and result.failure == "tls"
        assert "vencido" in result.message
    finally:
        expired.close()
