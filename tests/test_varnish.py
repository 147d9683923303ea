"""A real Varnish with the shipped VCL in front of a real ``difusor serve``, on loopback.

Proves what docs/cdn.md promises: with targeted caching the edge holds main.json (30 s here) while
browsers get exactly the convocatoria's Cache-Control; after a publication, ``after_publish``'s
purge makes the edge serve the new main.json within 1 s (measured); without it the edge keeps the
old bytes well past 1 s; query strings and cookies do not get past the cache; PURGE and BAN only
from the ACL.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import ServerProcess, Site, free_port, make_site, minimal_site, stop_group

from difusor import config as config_mod
from difusor.publish.activate import live_release
from difusor.publish.cdn import after_activation, after_publish, manual_purge
from difusor.publish.rollback import rollback
from difusor.store.manifest import Manifest

ROOT = Path(__file__).resolve().parents[1]
VCL = ROOT / "deploy" / "varnish" / "difusor.vcl"
VARNISHD = shutil.which("varnishd") or "/usr/sbin/varnishd"
MAIN_CC = config_mod.MAIN_JSON_CACHE_CONTROL
TARGETED = 30

pytestmark = pytest.mark.skipif(not os.access(VARNISHD, os.X_OK),
                                reason="varnishd no está instalado (make deps instala «varnish»)")


class Varnish:
    """``varnishd -F`` with the shipped VCL, its backend pointed at ``origin_port``."""

    def __init__(self, origin_port: int, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        # Under /tmp itself, readable: varnishd reads the VCL and compiles it as its own
        # unprivileged users when started as root.
        self.workdir = Path(tempfile.mkdtemp(prefix="difusor-varnish-", dir="/tmp"))
        self.workdir.chmod(0o755)
        text = VCL.read_text()
        assert text.count('.port = "8080";') == 1
        self.vcl = self.workdir / "difusor.vcl"
        self.vcl.write_text(text.replace('.port = "8080";', f'.port = "{origin_port}";'))
        self.log = self.workdir / "varnishd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Varnish:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [VARNISHD, "-F", "-a", f"127.0.0.1:{self.port}", "-f", str(self.vcl),
                 "-n", str(self.workdir / "n"), "-s", "malloc,64m", "-T", "none"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"varnishd terminó:\n{self.log.read_text(errors='replace')}")
            try:
                httpx.get(self.url + "/_difusor/health", timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"varnishd no respondió:\n{self.log.read_text(errors='replace')}")

    def stop(self) -> None:
        stop_group(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class Stack:
    site: Site
    server: ServerProcess
    edge: Varnish
    http: httpx.Client
    hours: Iterator[int]

    def publish_next(self) -> tuple[Manifest | None, Manifest]:
        """Publish a new corte (new main.json and app.js); returns (previous, current)."""
        previous = self.manifest()
        n = next(self.hours)
        files = minimal_site(hora=f"21:{n:02d}", extra={
            "app.js": f"console.log({n});".encode() * 40, "css/sitio.css": b"body{margin:0}"})
        self.site.publisher.publish(self.site.write_package(f"corte-{n}.zip", files))
        current = self.manifest()
        assert current is not None
        return previous, current

    def manifest(self) -> Manifest | None:
        live = live_release(self.site.store)
        return self.site.publisher.manifests.load(live) if live else None

    def get(self, path: str, **kw: object) -> httpx.Response:
        return self.http.get(self.edge.url + path, **kw)

    def sha(self, path: str) -> str:
        return hashlib.sha256(self.get(path).content).hexdigest()

    def warm(self, path: str) -> None:
        self.get(path)
        assert self.get(path).headers["X-Cache"] == "HIT", path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    web, edge_port = free_port(), free_port()
    extra = f"""
[[cdn]]
kind = "varnish"
name = "varnish-local"
edge_url = "http://127.0.0.1:{edge_port}"
targeted_seconds = {TARGETED}
verify_timeout = 5
"""
    site = make_site(tmp_path_factory.mktemp("varnish") / "difusor", extra, port=web)
    server = ServerProcess(site.config_path, web).start()
    varnish = Varnish(web, edge_port)
    http = httpx.Client(timeout=5)
    try:
        varnish.start()
        s = Stack(site, server, varnish, http, itertools.count(0))
        site.publisher.purge_cdn = False  # these tests purge by hand, to prove both ways
        s.publish_next()
        yield s
    finally:
        http.close()
        varnish.stop()
        server.stop()
        site.ledger.close()


@pytest.fixture
def edge(stack: Stack) -> Stack:
    """The stack with the edge emptied (BAN everything) before each test."""
    report = manual_purge(stack.site.cfg, stack.site.ledger, everything=True)
    assert report.ok, report.lines()
    return stack


@pytest.mark.slow
def test_edge_holds_main_json_while_browsers_get_the_required_header(edge: Stack) -> None:
    # The fixture's proof at the edge fetched main.json already: purge it for a clean start.
    assert edge.http.request("PURGE", edge.edge.url + "/json/main.json").status_code == 200
    first = edge.get("/json/main.json")
    second = edge.get("/json/main.json")
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    for r in (first, second):
        assert r.headers["Cache-Control"] == MAIN_CC
        assert r.headers["CDN-Cache-Control"] == f"max-age={TARGETED}"
        assert "Surrogate-Control" not in r.headers  # consumed by this edge
        assert "X-Difusor-Url" not in r.headers


def test_after_publish_purge_makes_the_edge_serve_the_new_main_json_within_1s(
        edge: Stack) -> None:
    edge.warm("/json/main.json")
    edge.warm("/app.js")
    previous, current = edge.publish_next()
    published = time.monotonic()
    report = after_publish(edge.site.cfg, edge.site.ledger, previous, current)
    done = time.monotonic() - published
    new = current.files["json/main.json"].sha256
    while edge.sha("/json/main.json") != new:
        assert time.monotonic() - published < 1.0, "el borde no sirvió el main.json nuevo en 1 s"
        time.sleep(0.01)
    visible = time.monotonic() - published
    assert visible < 1.0, f"{visible:.3f} s"
    assert report.ok, report.lines()
    assert edge.sha("/app.js") == current.files["app.js"].sha256
    assert edge.get("/css/sitio.css").status_code == 200  # unchanged: not purged
    [cdn] = report.cdns
    assert cdn.purge.urls == 2 and cdn.edge.ok and cdn.edge.checked == 2
    verified = edge.site.ledger.events("edge_verified", limit=1)[0]
    assert verified["release_id"] == current.release_id
    assert verified["detail"]["ms"] < 1000 and verified["detail"]["stale"] == []
    purge = edge.site.ledger.events("purge", limit=1)[0]
    assert purge["detail"]["provider"] == "varnish" and purge["detail"]["urls"] == 2
    print(f"\npublicación → main.json nuevo en el borde: {visible * 1000:.0f} ms "
          f"(after_publish {done * 1000:.0f} ms: purga {cdn.purge.ms:.0f} ms, comprobación "
          f"{cdn.edge.ms:.0f} ms)")


@pytest.mark.slow
def test_without_the_purge_the_edge_keeps_the_old_main_json(edge: Stack) -> None:
    edge.warm("/json/main.json")
    old = edge.sha("/json/main.json")
    _previous, current = edge.publish_next()
    published = time.monotonic()
    new = current.files["json/main.json"].sha256
    direct = httpx.get(edge.server.url + "/json/main.json", timeout=5)
    assert hashlib.sha256(direct.content).hexdigest() == new  # the origin already has it
    seen = []
    while time.monotonic() - published < 1.2:
        r = edge.get("/json/main.json")
        seen.append((hashlib.sha256(r.content).hexdigest(), r.headers["X-Cache"]))
        time.sleep(0.05)
    assert len(seen) > 10
    assert set(seen) == {(old, "HIT")}, "sin purga, el borde debía seguir con el corte anterior"
    # The operator's fix: «difusor purge» repeats the live corte's purge and checks the edge.
    r = subprocess.run([sys.executable, "-m", "difusor", "purge", "--config",
                        str(edge.site.config_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "2 URL purgadas" in r.stdout and "ya sirve los bytes nuevos" in r.stdout
    assert edge.sha("/json/main.json") == new


def test_query_strings_and_cookies_do_not_get_past_the_cache(edge: Stack) -> None:
    edge.warm("/app.js")
    for busted in ("/app.js?v=123", "/app.js?_=1733712000000&x=1", "/app.js?"):
        r = edge.get(busted)
        assert r.headers["X-Cache"] == "HIT", busted
        assert r.content == edge.get("/app.js").content
    assert edge.get("/app.js", headers={"Cookie": "sesion=abc"}).headers["X-Cache"] == "HIT"
    assert edge.get("/app.js", headers={"Host": "otro.example"}).headers["X-Cache"] == "HIT"
    edge.warm("/json/main.json")
    assert edge.get("/json/main.json?t=1733712000").headers["X-Cache"] == "HIT"


def test_no_store_and_no_cache_answers_pass_to_the_origin(edge: Stack) -> None:
    for path in ("/_difusor/status.json", "/index.html", "/"):
        assert [edge.get(path).headers["X-Cache"] for _ in range(3)] == ["MISS"] * 3, path
    assert edge.get("/_difusor/status.json").headers["Cache-Control"] == MAIN_CC


def test_purge_and_ban_only_from_the_acl(edge: Stack) -> None:
    edge.warm("/app.js")
    outsider = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3"), timeout=5)
    with outsider:
        assert outsider.request("PURGE", edge.edge.url + "/app.js").status_code == 403
        ban = outsider.request("BAN", edge.edge.url + "/", headers={"X-Ban-Url": "."})
        assert ban.status_code == 403
        assert outsider.get(edge.edge.url + "/app.js").headers["X-Cache"] == "HIT"
    assert edge.http.request("PURGE", edge.edge.url + "/app.js").status_code == 200
    assert edge.get("/app.js").headers["X-Cache"] == "MISS"


def test_a_rollback_is_purged_too(edge: Stack) -> None:
    _previous, current = edge.publish_next()
    edge.warm("/json/main.json")
    target = rollback(edge.site.publisher)
    report = after_activation(edge.site.cfg, edge.site.ledger, target)
    assert report.ok, report.lines()
    back = edge.site.publisher.manifests.load(target)
    assert edge.sha("/json/main.json") == back.files["json/main.json"].sha256
    assert edge.sha("/json/main.json") != current.files["json/main.json"].sha256


def test_publishing_purges_the_edge_by_itself(edge: Stack) -> None:
    """What operators get: `difusor publish` / `difusor run` purge and verify after activation."""
    edge.warm("/json/main.json")
    edge.site.publisher.purge_cdn = True
    try:
        published = time.monotonic()
        _previous, current = edge.publish_next()
    finally:
        edge.site.publisher.purge_cdn = False
    assert edge.sha("/json/main.json") == current.files["json/main.json"].sha256
    assert time.monotonic() - published < 5.0
    verified = edge.site.ledger.events("edge_verified", limit=1)[0]
    assert verified["release_id"] == current.release_id
