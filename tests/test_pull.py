"""HTTPS pull against a real local HTTPS server (trustme CA) whose answers each test controls."""

from __future__ import annotations

import hashlib
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme
from conftest import Site, make_site, wait_until

from difusor.demo.packages import write_package
from difusor.errors import DifusorError
from difusor.publish.activate import live_release
from difusor.receive.inbox import Arrival, arrivals, sidecar_for
from difusor.receive.pull import Puller

PATH = "/paquetes/PREP.zip"
NAME = "20241208_2030_PREP_IRIMBO.zip"


@dataclass
class Resource:
    body: bytes
    etag: str | None = '"v1"'
    last_modified: str | None = None
    disposition: str | None = None
    ranges: bool = True  # honour Range / If-Range
    chunked: bool = False  # Transfer-Encoding: chunked, no Content-Length
    drop_after: int | None = None  # bytes sent before the connection drops (once)
    stall_after: int | None = None  # bytes sent before the server goes silent (once)
    status: int = 200


@dataclass
class Origin:
    """The authority's HTTPS server: 127.0.0.1, a certificate from ``ca``, answers set by tests."""

    ca: trustme.CA
    resources: dict[str, Resource] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str], int]] = field(default_factory=list)
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Origin:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.origin = self  # type: ignore[attr-defined]
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def url(self, path: str = PATH) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}{path}"

    def last(self, path: str = PATH) -> tuple[dict[str, str], int]:
        headers, status = next((h, s) for p, h, s in reversed(self.requests) if p == path)
        return headers, status


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that went away on purpose


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        origin: Origin = self.server.origin  # type: ignore[attr-defined]
        headers = {k.lower(): v for k, v in self.headers.items()}
        res = origin.resources.get(self.path)
        status, meta, body = self._answer(res, headers)
        origin.requests.append((self.path, headers, status))
        self.send_response(status)
        for key, value in meta.items():
            self.send_header(key, value)
        if res is not None and res.chunked and status in (200, 206):
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status not in (200, 206):
            return
        cut, stall = (res.drop_after, res.stall_after) if res else (None, None)
        if res is not None:
            res.drop_after = res.stall_after = None  # once
        sent = body[: cut if cut is not None else stall] if (cut or stall) is not None else body
        for i in range(0, len(sent), 16384):
            self._write(sent[i:i + 16384], res is not None and res.chunked)
        if stall is not None:
            origin.stalled.set()
            origin.release.wait(10)
        if cut is not None or stall is not None:
            self.close_connection = True
            return
        if res is not None and res.chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _write(self, data: bytes, chunked: bool) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)

    @staticmethod
    def _answer(res: Resource | None, h: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if res is None:
            return 404, {}, b""
        if res.status != 200:
            return res.status, {}, b""
        meta = {k: v for k, v in (("ETag", res.etag), ("Last-Modified", res.last_modified),
                                  ("Content-Disposition", res.disposition)) if v}
        if "if-none-match" in h:
            if res.etag and h["if-none-match"] == res.etag:
                return 304, meta, b""
        elif "if-modified-since" in h and res.last_modified and (
                parsedate_to_datetime(h["if-modified-since"])
                >= parsedate_to_datetime(res.last_modified)):
            return 304, meta, b""
        size = len(res.body)
        if "range" in h and res.ranges and h.get("if-range", res.etag) == res.etag:
            start = int(h["range"].removeprefix("bytes=").rstrip("-"))
            if start >= size:
                return 416, {**meta, "Content-Range": f"bytes */{size}"}, b""
            return 206, {**meta, "Content-Range": f"bytes {start}-{size - 1}/{size}"}, res.body[start:]
        return 200, meta, res.body


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def origin(ca: trustme.CA) -> Iterator[Origin]:
    server = Origin(ca).start()
    yield server
    server.stop()


@pytest.fixture
def new_site(tmp_path: Path, origin: Origin, ca: trustme.CA) -> Iterator[Callable[..., Site]]:
    sites: list[Site] = []

    def build(extra: str = "", *, trust: trustme.CA | None = ca, path: str = PATH) -> Site:
        lines = ["", "[pull]", f'url = "{origin.url(path)}"', "interval = 1", extra]
        if trust is not None:
            ca_file = tmp_path / f"ca{len(sites)}.pem"
            trust.cert_pem.write_to_path(str(ca_file))
            lines.append(f'ca_file = "{ca_file}"')
        site = make_site(tmp_path / f"difusor{len(sites)}", extra_toml="\n".join(lines) + "\n")
        sites.append(site)
        return site

    yield build
    for site in sites:
        site.ledger.close()


@pytest.fixture
def site(new_site: Callable[..., Site]) -> Site:
    return new_site()


class Pullers:
    """Pullers over a site, closed after the test; ``logs`` collects what they said."""

    def __init__(self) -> None:
        self.made: list[Puller] = []
        self.logs: list[str] = []
        self.delivered: list[Path] = []

    def __call__(self, site: Site) -> Puller:
        puller = Puller(site.cfg, on_delivered=self.delivered.append, log=self.logs.append)
        self.made.append(puller)
        return puller


@pytest.fixture
def pullers() -> Iterator[Pullers]:
    made = Pullers()
    yield made
    for puller in made.made:
        puller.close()


def payload(size: int, seed: bytes = b"a") -> bytes:
    out = b""
    while len(out) < size:
        out += hashlib.sha256(seed + str(len(out)).encode()).digest()
    return out[:size]


def inbox(site: Site) -> list[Arrival]:
    return arrivals(site.state.inbox)


def leftovers(site: Site) -> list[str]:
    work = site.state.root / "pull"
    return sorted(p.name for p in work.iterdir()) if work.exists() else []


# -- tests ----------------------------------------------------------------------------------------


def test_package_is_delivered_byte_identical_once(origin: Origin, site: Site, pullers: Pullers
                                                  ) -> None:
    body = payload(300_000)
    origin.resources[PATH] = Resource(body, disposition=f'attachment; filename="{NAME}"')
    puller = pullers(site)
    path = puller.poll_once()
    assert path is not None and path.read_bytes() == body
    assert [(a.path, a.name) for a in inbox(site)] == [(path, NAME)]
    assert pullers.delivered == [path]
    assert any("entregado" in line for line in pullers.logs)
    assert leftovers(site) == []

    assert puller.poll_once() is None
    assert origin.last() == ({**origin.last()[0], "if-none-match": '"v1"'}, 304)
    assert len(inbox(site)) == 1


def test_name_falls_back_to_the_url_then_to_paquete_zip(origin: Origin, new_site: Callable[..., Site],
                                                        pullers: Pullers) -> None:
    names = []
    for path in (PATH, "/"):
        origin.resources[path] = Resource(b"zip")
        site = new_site(path=path)
        assert pullers(site).poll_once() is not None
        names += [a.name for a in inbox(site)]
    assert names == ["PREP.zip", "paquete.zip"]


@pytest.mark.parametrize("validator", ["etag", "last_modified"])
def test_unchanged_package_is_not_delivered_again_after_restart(
        origin: Origin, site: Site, pullers: Pullers, validator: str) -> None:
    stamp = "Sun, 08 Dec 2024 20:30:00 GMT"
    origin.resources[PATH] = (Resource(payload(50_000)) if validator == "etag"
                              else Resource(payload(50_000), etag=None, last_modified=stamp))
    first = pullers(site)
    assert first.poll_once() is not None
    first.close()

    assert pullers(site).poll_once() is None  # a new process: state/pull.json remembers
    headers, status = origin.last()
    assert status == 304
    assert headers.get("if-none-match" if validator == "etag" else "if-modified-since") == (
        '"v1"' if validator == "etag" else stamp)
    assert len(inbox(site)) == 1


def test_same_bytes_under_a_new_etag_are_not_delivered_again(origin: Origin, site: Site,
                                                             pullers: Pullers) -> None:
    body = payload(80_000)
    origin.resources[PATH] = Resource(body)
    puller = pullers(site)
    assert puller.poll_once() is not None
    origin.resources[PATH] = Resource(body, etag='"v2"')
    assert puller.poll_once() is None
    assert any("mismo contenido" in line for line in pullers.logs)
    assert pullers(site).poll_once() is None  # the new ETag is remembered too
    assert origin.last() == ({**origin.last()[0], "if-none-match": '"v2"'}, 304)

    origin.resources[PATH] = Resource(payload(80_000, b"b"), etag='"v3"')
    assert puller.poll_once() is not None
    assert len(inbox(site)) == 2
    assert leftovers(site) == []


def test_interrupted_download_resumes_with_range(origin: Origin, site: Site, pullers: Pullers
                                                 ) -> None:
    body = payload(400_000)
    origin.resources[PATH] = Resource(body, disposition=f'attachment; filename="{NAME}"',
                                      drop_after=150_000)
    with pytest.raises(DifusorError, match=r"interrumpida.*se reanudará"):
        pullers(site).poll_once()
    assert inbox(site) == []
    part = site.state.root / "pull" / "descarga.part"
    got = part.stat().st_size
    assert 0 < got < len(body)

    path = pullers(site).poll_once()  # after a restart, too
    headers, status = origin.last()
    assert (headers["range"], headers["if-range"], status) == (f"bytes={got}-", '"v1"', 206)
    assert path is not None and path.read_bytes() == body
    assert [a.name for a in inbox(site)] == [NAME]
    assert leftovers(site) == []


@pytest.mark.parametrize("why", ["server ignores ranges", "package changed meanwhile"])
def test_a_200_in_answer_to_a_range_starts_over(origin: Origin, site: Site, pullers: Pullers,
                                                why: str) -> None:
    origin.resources[PATH] = Resource(payload(200_000), drop_after=70_000,
                                      ranges=why != "server ignores ranges")
    puller = pullers(site)
    with pytest.raises(DifusorError):
        puller.poll_once()
    body = payload(200_000, b"new") if why == "package changed meanwhile" else payload(200_000)
    origin.resources[PATH] = Resource(body, etag='"v2"' if why == "package changed meanwhile"
                                      else '"v1"', ranges=why != "server ignores ranges")
    path = puller.poll_once()
    headers, status = origin.last()
    assert "range" in headers and status == 200
    assert path is not None and path.read_bytes() == body
    assert len(inbox(site)) == 1


@pytest.mark.parametrize("kind", ["weak etag", "no etag", "chunked"])
def test_a_dropped_connection_never_delivers_a_partial_file(origin: Origin, site: Site,
                                                            pullers: Pullers, kind: str) -> None:
    body = payload(300_000)
    origin.resources[PATH] = Resource(
        body, etag={"weak etag": 'W/"v1"', "no etag": None}.get(kind, '"v1"'),
        chunked=kind == "chunked", drop_after=100_000)
    puller = pullers(site)
    with pytest.raises(DifusorError, match="interrumpida"):
        puller.poll_once()
    assert inbox(site) == []
    if kind != "chunked":  # nothing to resume from: nothing kept
        assert leftovers(site) == []
    path = puller.poll_once()
    assert path is not None and path.read_bytes() == body
    assert len(inbox(site)) == 1


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_oversize_download_is_refused(origin: Origin, new_site: Callable[..., Site],
                                         pullers: Pullers, chunked: bool) -> None:
    site = new_site("max_bytes = 100000")
    origin.resources[PATH] = Resource(payload(250_000), chunked=chunked)
    with pytest.raises(DifusorError, match=r"rechazada.*pull\.max_bytes = 100000"):
        pullers(site).poll_once()
    assert inbox(site) == []
    assert leftovers(site) == []


def test_a_certificate_from_an_unknown_ca_is_refused(origin: Origin, new_site: Callable[..., Site],
                                                     pullers: Pullers) -> None:
    origin.resources[PATH] = Resource(b"zip")
    for site in (new_site(trust=None), new_site(trust=trustme.CA())):
        with pytest.raises(DifusorError, match=r"certificado.*no es de confianza.*pull\.ca_file"):
            pullers(site).poll_once()
        assert inbox(site) == []
    assert not any(p == PATH for p, _h, _s in origin.requests)


def test_a_sidecar_is_delivered_with_its_package(origin: Origin, site: Site, pullers: Pullers
                                                 ) -> None:
    body = payload(120_000)
    line = f"{hashlib.sha256(body).hexdigest()}  {NAME}\n".encode()
    origin.resources[PATH] = Resource(body, disposition=f'attachment; filename="{NAME}"')
    origin.resources[PATH + ".sha256"] = Resource(line)
    path = pullers(site).poll_once()
    pending = inbox(site)
    package = next(a for a in pending if a.path == path)
    side = sidecar_for(package, pending)
    assert side is not None and side.name == NAME + ".sha256"
    assert side.path.read_bytes() == line and package.path.read_bytes() == body


def test_a_sidecar_that_disagrees_is_fetched_again_then_left_to_the_publisher(
        origin: Origin, site: Site, pullers: Pullers) -> None:
    body = payload(60_000)
    origin.resources[PATH] = Resource(body)
    origin.resources[PATH + ".sha256"] = Resource(b"0" * 64 + b"  PREP.zip\n")
    puller = pullers(site)
    with pytest.raises(DifusorError, match="se descargará de nuevo"):
        puller.poll_once()
    assert inbox(site) == [] and leftovers(site) == []
    # Twice the same disagreement: the publisher refuses it, with the reason on record.
    assert puller.poll_once() is not None
    assert sorted(a.name for a in inbox(site)) == ["PREP.zip", "PREP.zip.sha256"]


def test_a_complete_download_waits_for_its_sidecar_without_downloading_again(
        origin: Origin, site: Site, pullers: Pullers) -> None:
    body = payload(90_000)
    origin.resources[PATH] = Resource(body)
    origin.resources[PATH + ".sha256"] = Resource(b"", status=503)
    with pytest.raises(DifusorError, match="respondió 503"):
        pullers(site).poll_once()
    assert inbox(site) == []
    origin.resources[PATH + ".sha256"] = Resource(f"{hashlib.sha256(body).hexdigest()}\n".encode())
    path = pullers(site).poll_once()
    assert origin.last() == ({**origin.last()[0], "range": f"bytes={len(body)}-"}, 416)
    assert path is not None and path.read_bytes() == body
    assert len(inbox(site)) == 2


class WatchedStop(threading.Event):
    """A stop event that tells when the puller's loop begins waiting on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waited = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.waited.set()
        return super().wait(timeout)


def test_run_delivers_and_stops_promptly(origin: Origin, site: Site, pullers: Pullers) -> None:
    origin.resources[PATH] = Resource(payload(10_000))
    # A long interval: a prompt stop can only come from the stop event, not from the next poll.
    pull = site.cfg.pull.model_copy(update={"interval": 60.0})
    stop = WatchedStop()
    delivered = threading.Event()

    def on_delivered(_path: Path) -> None:
        stop.waited.clear()  # in the puller's thread: any wait from here on is the idle one
        delivered.set()

    puller = Puller(site.cfg.model_copy(update={"pull": pull}), on_delivered=on_delivered)
    runner = threading.Thread(target=puller.run, args=(stop,))
    runner.start()
    try:
        assert delivered.wait(10)
        assert stop.waited.wait(10)  # idle until the next poll, 60 s away
    finally:
        started = time.monotonic()
        stop.set()
        runner.join(10)
    took = time.monotonic() - started
    assert not runner.is_alive() and took < 5, took
    assert len(inbox(site)) == 1


@pytest.mark.slow
def test_run_stops_promptly_during_a_stalled_download_and_resumes_later(
        origin: Origin, site: Site, pullers: Pullers) -> None:
    body, stall = payload(500_000), 200_000
    origin.resources[PATH] = Resource(body, stall_after=stall)
    stop = threading.Event()
    part = site.state.root / "pull" / "descarga.part"
    runner = threading.Thread(target=pullers(site).run, args=(stop,))
    runner.start()
    try:
        assert origin.stalled.wait(10)
        # The puller has written what came before the silence (all but the last TLS record,
        # which may still sit in its file buffer): it is now waiting for bytes that do not come.
        wait_until(lambda: part.exists() and part.stat().st_size >= stall - 16_384, 10,
                   "the bytes before the stall written to the partial file")
    finally:
        started = time.monotonic()
        stop.set()
        runner.join(15)
    took = time.monotonic() - started
    # Without the stop the read would last until the origin gives up (10 s) or pull.timeout.
    assert not runner.is_alive() and took < 5, took
    assert inbox(site) == []
    origin.release.set()
    path = pullers(site).poll_once()
    assert origin.last()[1] == 206
    assert path is not None and path.read_bytes() == body


@pytest.mark.slow
def test_run_logs_failures_and_recovers(origin: Origin, site: Site, pullers: Pullers) -> None:
    origin.resources[PATH] = Resource(b"", status=503)
    stop = threading.Event()
    puller = pullers(site)
    runner = threading.Thread(target=puller.run, args=(stop,))
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("respondió 503" in m for m in pullers.logs):
            time.sleep(0.02)
        origin.resources[PATH] = Resource(b"zip")
        while not pullers.delivered and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        runner.join(5)
    failed = [line for line in pullers.logs if "respondió 503" in line]
    assert failed and "nuevo intento en 1 s" in failed[0], pullers.logs
    assert len(pullers.delivered) == 1


def test_a_pulled_package_goes_live(origin: Origin, site: Site, pullers: Pullers, cortes: list,
                                    tmp_path: Path) -> None:
    package = write_package(cortes[0], tmp_path / "autoridad", sidecar=True)
    origin.resources[PATH] = Resource(package.read_bytes(),
                                      disposition=f'attachment; filename="{package.name}"')
    origin.resources[PATH + ".sha256"] = Resource(Path(str(package) + ".sha256").read_bytes())
    path = pullers(site).poll_once()
    assert path is not None
    pending = inbox(site)
    arrival = next(a for a in pending if a.path == path)
    side = sidecar_for(arrival, pending)
    assert arrival.name == package.name and side is not None
    outcome = site.publisher.publish(path, name=arrival.name, link=True, sidecar=side.path)
    assert outcome.status == "published"
    assert live_release(site.store) == cortes[0].stamp
    assert os.path.exists(path)  # linked, not moved: the inbox entry stays until it is taken
