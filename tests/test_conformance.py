"""One conformance suite, two servers: ``difusor serve`` and a real nginx with the generated config.

Both serve the same published state folder (nginx its ``site`` tree, the embedded server its
manifests), over plain HTTP and over TLS with a self-signed certificate the clients verify. Every
test runs against each of the four; where nginx legitimately differs (ETag format, ``Server``,
its 400 for a URI that climbs above the root) the assertion is the contract, not the bytes.
"""

from __future__ import annotations

import grp
import gzip
import http.client
import json
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import Site, free_port, stop_group

from difusor import config as config_mod
from difusor.demo.packages import archive_bytes
from difusor.headers import HeaderPolicy
from difusor.ledger import Ledger
from difusor.paths import StateLayout
from difusor.publish.publisher import Publisher
from difusor.serve.app import _NOT_FOUND as NOT_FOUND_PAGE
from difusor.serve.nginxconf import LOG_FIELDS, NginxConfig, standalone
from difusor.serve.selfsigned import write_self_signed
from difusor.store.mediatypes import media_type

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MAIN = "json/main.json"
EXACT = config_mod.MAIN_JSON_CACHE_CONTROL
FOREIGN = b"FUERA-DEL-SITIO: nunca debe servirse"

pytestmark = pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx no está instalado")


def main_json(hora: str) -> bytes:
    rows = [{"casilla": f"{n:04d}", "votos": {"A": n * 7 % 113, "B": n * 11 % 97}}
            for n in range(40)]
    return json.dumps({"ultimoCorte": {"fecha": "08/12/2024", "hora": hora}, "casillas": rows},
                      indent=1).encode()


PAGE = (b"<!doctype html><html lang=es><meta charset=utf-8><title>PREP Irimbo</title>"
        + b"<p>Resultados preliminares de la eleccion extraordinaria.</p>\n" * 40)
SITE_FILES: dict[str, bytes] = {
    "index.html": PAGE,
    MAIN: main_json("20:30"),
    "js/app.js": b"const intervalo = 60000; function actualizar() { return fetch('json/main.json'); }\n"
    * 30,
    "css/estilo.css": b"body { font-family: sans-serif; margin: 0 auto; max-width: 60em; }\n" * 30,
    "img/logo.png": bytes(range(256)) * 12,
    "datos/resultados.csv": b"casilla,votos_a,votos_b\n" + b"0001,10,20\n" * 100,
    "sub/index.html": b"<!doctype html><title>Subsitio</title>" + b"<p>sub</p>" * 40,
    "chico.txt": b"pocos bytes\n",
    ".well-known/security.txt": b"Contact: mailto:seguridad@example.mx\n",
    ".env": FOREIGN + b" (.env)",
    "sub/.oculto/nota.txt": FOREIGN + b" (.oculto)",
}
HIDDEN = (".env", "sub/.oculto/nota.txt")
SERVED = {p: b for p, b in SITE_FILES.items() if p not in HIDDEN}
# Compressible and big enough for the store to make a .gz variant.
VARIANTS = ("index.html", MAIN, "js/app.js", "css/estilo.css", "datos/resultados.csv")


# -- the two servers ----------------------------------------------------------------------------

class Process:
    """A server we started (own process group), ready once ``probe`` answers."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True)

    def wait(self, probe: Callable[[], bool], timeout: float = 30.0) -> Process:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} terminó:\n{self.log.read_text()[-2000:]}")
            if probe():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} no respondió:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        stop_group(self.proc)


@dataclass
class Stack:
    """One published state folder served by both servers, over HTTP or over TLS."""

    tls: bool
    root: Path
    site: Site
    web_port: int
    nginx_port: int  # HTTPS when tls, else HTTP
    nginx_http_port: int
    ca: Path | None
    files: dict[str, bytes] = field(default_factory=lambda: dict(SERVED))
    live: str = ""
    hora: int = 30
    processes: list[Process] = field(default_factory=list)

    @property
    def policy(self) -> HeaderPolicy:
        return HeaderPolicy.from_config(self.site.cfg)

    def publish(self, files: dict[str, bytes], name: str) -> str:
        path = self.root / "paquetes" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(archive_bytes(files, "zip"))
        outcome = self.site.publisher.publish(path)
        self.live = outcome.release_id
        return self.live


def _open_for_nginx(root: Path) -> None:
    """nginx's workers run as nobody when we are root: let them reach the tree."""
    if os.geteuid() == 0:
        root.chmod(0o755)


def _probe(port: int, ctx: ssl.SSLContext | None) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            conn = _connection(port, ctx, timeout=1)
            conn.request("GET", "/_difusor/health")
            conn.getresponse().read()
            conn.close()
            return True
        except (OSError, http.client.HTTPException):
            return False
    return probe


def _connection(port: int, ctx: ssl.SSLContext | None, timeout: float = 10
                ) -> http.client.HTTPConnection:
    if ctx is not None:
        return http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=timeout)
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


def _client_context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def build_stack(tls: bool) -> Stack:
    root = Path(tempfile.mkdtemp(prefix=f"difusor-conformance-{'tls' if tls else 'http'}-"))
    _open_for_nginx(root)
    (root / "keys").mkdir()
    (root / "keys" / "authorized_keys").write_text("")
    web_port, nginx_port, nginx_http_port = free_port(), free_port(), free_port()
    ca = None
    if tls:
        write_self_signed(root / "keys" / "tls.crt", root / "keys" / "tls.key", ["127.0.0.1"])
        ca = root / "keys" / "tls.crt"
    text = config_mod.render_default(
        web_listen=f"127.0.0.1:{web_port}",
        tls_cert="keys/tls.crt" if tls else "", tls_key="keys/tls.key" if tls else "")
    text += "\n[nginx]\n"
    if tls:
        text += (f'listen = {nginx_http_port}\nlisten_tls = {nginx_port}\n'
                 'tls_cert = "keys/tls.crt"\ntls_key = "keys/tls.key"\n')
    else:
        text += f"listen = {nginx_port}\n"
    (root / "difusor.toml").write_text(text)
    cfg = config_mod.load(root / "difusor.toml")
    StateLayout(cfg.state_dir).create()
    ledger = Ledger(StateLayout(cfg.state_dir).ledger)
    site = Site(root, root / "difusor.toml", cfg, ledger, Publisher(cfg, ledger))
    stack = Stack(tls, root, site, web_port, nginx_port, nginx_http_port, ca)
    stack.publish(SITE_FILES, "20241208_2030_PREP.zip")
    (root / "secreto.txt").write_bytes(FOREIGN)  # beside the state: must never be reachable
    (StateLayout(cfg.state_dir).store / "secreto.txt").write_bytes(FOREIGN)
    return stack


def start_servers(stack: Stack) -> None:
    ctx = _client_context(stack.ca) if stack.ca else None
    serve = Process("difusor serve", [sys.executable, "-m", "difusor", "serve", "--config",
                                      str(stack.site.config_path)], stack.root / "serve.out")
    stack.processes.append(serve)
    serve.wait(_probe(stack.web_port, ctx))

    prefix = stack.root / "nginx"
    (prefix / "tmp").mkdir(parents=True)
    include = prefix / "difusor.conf"
    include.write_text(NginxConfig.from_config(stack.site.cfg).render())
    user = None
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        user = f"nobody {grp.getgrgid(nobody.pw_gid).gr_name}"
    conf = prefix / "nginx.conf"
    conf.write_text(standalone(include, prefix, user=user))
    argv = [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    check = subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=20)
    assert check.returncode == 0, check.stderr
    nginx = Process("nginx", [*argv, "-g", "daemon off;"], prefix / "nginx.out")
    stack.processes.append(nginx)
    nginx.wait(_probe(stack.nginx_port, ctx))


@pytest.fixture(scope="module", params=["http", "tls"])
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    s = build_stack(request.param == "tls")
    try:
        start_servers(s)
        yield s
    finally:
        for proc in reversed(s.processes):
            proc.stop()
        s.site.ledger.close()
        shutil.rmtree(s.root, ignore_errors=True)


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def one(self, name: str) -> str | None:
        values = self.headers.get_all(name) or []
        assert len(values) <= 1, f"{name} repetido: {values}"
        return values[0] if values else None


@dataclass
class Target:
    kind: str  # "embedded" or "nginx"
    stack: Stack

    @property
    def port(self) -> int:
        return self.stack.web_port if self.kind == "embedded" else self.stack.nginx_port

    def get(self, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> Reply:
        ctx = _client_context(self.stack.ca) if self.stack.ca else None
        conn = _connection(self.port, ctx)
        try:
            # http.client sends the path exactly as given: no normalisation of .. or %2e.
            conn.request(method, path, headers={"Accept-Encoding": "identity", **(headers or {})})
            resp = conn.getresponse()
            return Reply(resp.status, resp.headers, resp.read())
        finally:
            conn.close()


@pytest.fixture(scope="module", params=["embedded", "nginx"])
def target(request: pytest.FixtureRequest, stack: Stack) -> Target:
    return Target(request.param, stack)


def url_of(path: str) -> str:
    if path == "index.html":
        return "/"
    if path.endswith("/index.html"):
        return "/" + path[: -len("index.html")]
    return "/" + path


# -- headers per path -------------------------------------------------------------------------

@pytest.mark.slow
def test_every_file_is_byte_identical_with_the_policys_headers(target: Target) -> None:
    policy = target.stack.policy
    for path, body in target.stack.files.items():
        for url in {"/" + path, url_of(path)}:
            r = target.get(url)
            assert r.status == 200, (url, r.status)
            assert r.body == body, url
            assert r.one("Content-Type") == media_type(path), url
            assert r.one("Content-Length") == str(len(body))
            assert r.one("Content-Encoding") is None
            for name, value in policy.headers_for(path):
                assert r.one(name) == value, (url, name)
            etag = r.one("ETag")
            assert etag and etag.startswith('"') and etag.endswith('"'), etag  # strong


def test_main_json_carries_exactly_the_convocatorias_header(target: Target) -> None:
    for url in ("/json/main.json", "/json/main.json?t=1733711400"):  # (// is redirected: below)
        for encoding in ("identity", "gzip"):
            r = target.get(url, {"Accept-Encoding": encoding})
            assert r.status == 200
            assert r.headers.get_all("Cache-Control") == [EXACT], url
            assert r.one("Expires") is None
            assert r.one("X-Content-Type-Options") == "nosniff"
            assert r.one("Content-Type") == "application/json"
    etag = target.get("/json/main.json").one("ETag")
    r = target.get("/json/main.json", {"If-None-Match": etag})
    assert r.status == 304 and r.headers.get_all("Cache-Control") == [EXACT]


def test_assets_html_and_everything_else(target: Target) -> None:
    assert target.get("/js/app.js").one("Cache-Control") == "public, max-age=300"
    assert target.get("/css/estilo.css").one("Cache-Control") == "public, max-age=300"
    assert target.get("/img/logo.png").one("Content-Type") == "image/png"
    for url in ("/", "/index.html", "/sub/", "/datos/resultados.csv", "/chico.txt"):
        r = target.get(url)
        assert r.one("Cache-Control") == "no-cache", url
        assert r.one("X-Content-Type-Options") == "nosniff", url


def test_a_folder_without_its_slash_is_redirected(target: Target) -> None:
    r = target.get("/sub")
    assert r.status == 301 and r.one("Location") in ("/sub/", f"{_origin(target)}/sub/")


def test_double_slashes_lead_to_the_one_canonical_path(target: Target) -> None:
    """``//json///main.json`` must never be a 200 of its own: a CDN would cache it apart."""
    for raw, canonical in (("//json///main.json", "/json/main.json"), ("/js//app.js?v=2", "/js/app.js?v=2"),
                           ("//sub//", "/sub/")):
        url, hops = raw, 0
        while True:
            r = target.get(url)
            if r.status != 301:
                break
            hops += 1
            assert hops <= 3, raw
            url = r.one("Location").removeprefix(_origin(target))
        assert hops >= 1 and url == canonical and r.status == 200, (raw, url, r.status)


def _origin(target: Target) -> str:
    return f"{'https' if target.stack.tls else 'http'}://127.0.0.1:{target.port}"


# -- status codes -------------------------------------------------------------------------------

def test_not_modified_only_for_the_current_etag(target: Target) -> None:
    for path in ("index.html", "js/app.js", "img/logo.png"):
        first = target.get("/" + path)
        etag = first.one("ETag")
        again = target.get("/" + path, {"If-None-Match": etag})
        assert again.status == 304 and again.body == b"", path
        assert again.one("ETag") == etag
        assert again.one("Cache-Control") == first.one("Cache-Control")
        assert target.get("/" + path, {"If-None-Match": f"W/{etag}"}).status == 304
        assert target.get("/" + path, {"If-None-Match": '"otra-cosa"'}).status == 200


def test_ranges(target: Target) -> None:
    body = target.stack.files["img/logo.png"]
    r = target.get("/img/logo.png", {"Range": "bytes=0-99"})
    assert r.status == 206 and r.body == body[:100]
    assert r.one("Content-Range") == f"bytes 0-99/{len(body)}"
    r = target.get("/index.html", {"Range": "bytes=-10"})
    assert r.status == 206 and r.body == PAGE[-10:]
    r = target.get("/index.html", {"Range": "bytes=100-"})
    assert r.status == 206 and r.body == PAGE[100:]
    assert target.get("/index.html", {"Range": f"bytes={len(PAGE) + 10}-"}).status == 416


def test_missing_paths_are_404_and_not_cached(target: Target) -> None:
    for url in ("/no-existe.html", "/no/existe.js", "/json/otro.json", "/img/", "/index.html/"):
        r = target.get(url)
        assert r.status == 404, url
        assert r.one("Cache-Control") == "no-cache", url
        assert r.one("X-Content-Type-Options") == "nosniff"
        assert (r.one("Content-Type") or "").startswith("text/html"), url
        assert r.body == NOT_FOUND_PAGE, url


def test_head_is_get_without_the_body(target: Target) -> None:
    for url in ("/", "/json/main.json", "/js/app.js", "/img/logo.png", "/no-existe"):
        get, head = target.get(url), target.get(url, method="HEAD")
        assert head.status == get.status and head.body == b"", url
        for name in ("Content-Type", "Content-Length", "ETag", "Cache-Control",
                     "X-Content-Type-Options", "Last-Modified"):
            if name == "Last-Modified" and target.kind == "embedded":
                continue
            assert head.one(name) == get.one(name), (url, name)


def test_other_methods_are_refused(target: Target) -> None:
    for method in ("POST", "PUT", "DELETE"):
        r = target.get("/index.html", method=method)
        assert r.status == 405, method
    assert target.get("/index.html").body == PAGE


# -- encodings ----------------------------------------------------------------------------------

def test_gzip_when_asked_identity_otherwise(target: Target) -> None:
    for path in VARIANTS:
        original = target.stack.files[path]
        zipped = target.get("/" + path, {"Accept-Encoding": "gzip"})
        assert zipped.status == 200
        assert zipped.one("Content-Encoding") == "gzip", path
        assert "accept-encoding" in (zipped.one("Vary") or "").lower()
        assert len(zipped.body) < len(original)
        assert gzip.decompress(zipped.body) == original, path
        for accept in ("identity", "gzip;q=0", "deflate", "compress"):
            plain = target.get("/" + path, {"Accept-Encoding": accept})
            assert plain.one("Content-Encoding") is None, (path, accept)
            assert plain.body == original
            assert "accept-encoding" in (plain.one("Vary") or "").lower(), (path, accept)
        assert zipped.one("ETag") != plain.one("ETag")  # two representations, two tags
        r = target.get("/" + path, {"Accept-Encoding": "gzip",
                                    "If-None-Match": zipped.one("ETag")})
        assert r.status == 304


def test_files_without_a_variant_are_sent_as_they_are(target: Target) -> None:
    for path in ("chico.txt", "img/logo.png"):
        r = target.get("/" + path, {"Accept-Encoding": "gzip, br"})
        assert r.one("Content-Encoding") is None and r.body == target.stack.files[path]


# -- what must never be served ------------------------------------------------------------------

TRAVERSALS = [
    "/../secreto.txt", "/../../secreto.txt", "/../../../secreto.txt", "/../../../../etc/passwd",
    "/%2e%2e/%2e%2e/secreto.txt", "/%2E%2E/%2E%2E/%2E%2E/etc/passwd", "/..%2f..%2fsecreto.txt",
    "/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/json/..%2f..%2f..%2fsecreto.txt",
    "//etc/passwd", "///etc/passwd", "/./../secreto.txt", "/json/../../secreto.txt",
    "/..\\..\\secreto.txt", "/%5c..%5c..%5csecreto.txt", "/json%2fmain.json",
    "/json/..%2fmain.json", "/index.html%00.js", "/%00", "/../manifests/",
    "/../../store/secreto.txt", "/.%2e/.%2e/secreto.txt",
]


@pytest.mark.parametrize("raw", TRAVERSALS)
def test_traversal_never_leaves_the_site(target: Target, raw: str) -> None:
    r = target.get(raw)
    assert FOREIGN not in r.body and b"root:" not in r.body, raw
    if r.status == 200:  # a path that normalises into the site may be served: a site file
        assert r.body in target.stack.files.values(), raw
    else:
        assert r.status in (301, 400, 404), (raw, r.status)


def test_dotfiles_are_not_served(target: Target) -> None:
    for url in ("/.env", "/sub/.oculto/nota.txt", "/.env?x=1", "/%2eenv", "/sub/%2Eoculto/nota.txt",
                "/.oculto/", "/.git/config"):
        r = target.get(url, {"Accept-Encoding": "gzip"})
        assert r.status == 404, url
        assert FOREIGN not in r.body
    assert target.get("/.well-known/security.txt").body == SITE_FILES[".well-known/security.txt"]


def test_the_reserved_prefix(target: Target) -> None:
    r = target.get("/_difusor/status.json")
    assert r.status == 200 and r.headers.get_all("Cache-Control") == [EXACT]
    assert json.loads(r.body)["corte"]["id"] == target.stack.live
    assert target.get("/_difusor/health").status == 200
    for url in ("/_difusor/other", "/_difusor/", "/_difusor", "/_difusor/status.json/x",
                "/_difusor/../_difusor/otro"):
        assert target.get(url).status == 404, url


def test_query_strings_do_not_change_the_file(target: Target) -> None:
    for url, path in (("/json/main.json", MAIN), ("/", "index.html"), ("/js/app.js", "js/app.js")):
        plain = target.get(url)
        for query in ("?v=2", "?_=1733711400123", "?x=../../secreto.txt", "?a=1&b=%2e%2e",
                      "?" + "z" * 2000):
            r = target.get(url + query)
            assert r.status == 200 and r.body == target.stack.files[path], url + query[:20]
            assert r.one("ETag") == plain.one("ETag")
            assert r.one("Cache-Control") == plain.one("Cache-Control")
    assert target.get("/no-existe.js?v=1").status == 404
    assert target.get("/.env?.js").status == 404


# -- TLS ----------------------------------------------------------------------------------------

def test_tls_1_2_and_1_3_with_a_verified_certificate(target: Target) -> None:
    if not target.stack.tls:
        pytest.skip("solo con TLS")
    assert target.stack.ca is not None
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = _client_context(target.stack.ca)
        ctx.minimum_version = ctx.maximum_version = version
        with socket.create_connection(("127.0.0.1", target.port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]
    strict = ssl.create_default_context()  # the system's CAs do not know our certificate
    with pytest.raises(ssl.SSLCertVerificationError), \
            socket.create_connection(("127.0.0.1", target.port), timeout=5) as raw:
        strict.wrap_socket(raw, server_hostname="127.0.0.1")


def test_nginx_redirects_http_to_https_and_sends_hsts(target: Target) -> None:
    if not (target.stack.tls and target.kind == "nginx"):
        pytest.skip("solo nginx con TLS")
    conn = http.client.HTTPConnection("127.0.0.1", target.stack.nginx_http_port, timeout=5)
    conn.request("GET", "/json/main.json?v=1")
    r = conn.getresponse()
    r.read()
    conn.close()
    assert r.status == 301
    assert r.getheader("Location") == f"https://127.0.0.1:{target.port}/json/main.json?v=1"
    hsts = f"max-age={target.stack.site.cfg.nginx.hsts_seconds}"
    for url in ("/", "/json/main.json", "/js/app.js", "/no-existe", "/_difusor/status.json"):
        assert target.get(url).one("Strict-Transport-Security") == hsts, url


# -- the record and the next corte --------------------------------------------------------------

@pytest.mark.slow
def test_access_log_lines_have_the_same_fields(target: Target) -> None:
    target.get("/json/main.json?desde=prueba", {"User-Agent": 'prueba "rara"\\x'})
    state = StateLayout(target.stack.site.cfg.state_dir)
    log = state.access_log if target.kind == "embedded" else state.logs / "nginx-access.log"
    deadline = time.monotonic() + 5
    while True:  # both write in batches (embedded: every 0.5 s; nginx: flush=1s)
        lines = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
        mine = [x for x in lines if x["query"] == "desde=prueba"]
        if mine:
            break
        assert time.monotonic() < deadline, f"{log} no registró la petición"
        time.sleep(0.1)
    row = mine[-1]
    assert list(row) == list(LOG_FIELDS)
    assert (row["method"], row["path"], row["status"]) == ("GET", "/json/main.json", 200)
    assert row["user_agent"] == 'prueba "rara"\\x' and row["ip"] == "127.0.0.1"
    assert row["bytes"] == len(target.stack.files[MAIN]) and row["corte"] == target.stack.live
    assert isinstance(row["duration_ms"], int | float) and row["time"][:2] == "20"


def test_a_new_corte_is_served_without_reload(target: Target) -> None:
    stack = target.stack
    stack.hora += 10
    new = main_json(f"20:{stack.hora}")
    corte = stack.publish({MAIN: new}, f"20241208_20{stack.hora}_PREP.zip")
    stack.files[MAIN] = new
    for server in (Target("embedded", stack), Target("nginx", stack)):
        deadline = time.monotonic() + 2
        while (r := server.get("/json/main.json")).body != new:
            assert time.monotonic() < deadline, f"{server.kind} sigue con el corte anterior"
            time.sleep(0.02)
        assert r.one("X-Difusor-Corte") == corte
        # The embedded server takes up the new variants a moment later (nginx: already there).
        while (z := server.get("/json/main.json", {"Accept-Encoding": "gzip"})).one(
                "Content-Encoding") != "gzip":
            assert time.monotonic() < deadline + 3, f"{server.kind}: sin variante gzip"
            time.sleep(0.02)
        assert gzip.decompress(z.body) == new
        assert server.get("/index.html").body == PAGE  # the rest of the site carried over


def _refused_by_nginx(stack: Stack, source: str, count: int) -> None:
    """Requests nginx turns away before any location: a header over its buffers, a garbage line."""
    ctx = _client_context(stack.ca) if stack.ca else None
    huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Relleno: " + b"a" * 40_000 + b"\r\n\r\n"
    for i in range(count):
        raw = socket.create_connection(("127.0.0.1", stack.nginx_port), timeout=10,
                                       source_address=(source, 0))
        sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1") if ctx else raw
        with sock:
            sock.sendall(huge if i % 2 else b"BASURA\r\n\r\n")
            reply = sock.recv(64)
            assert reply.startswith(b"HTTP/1.1 400"), reply


def test_requests_nginx_refuses_reach_the_shield(stack: Stack) -> None:
    """A flood of malformed requests never reaches a handler; nginx logs them, the shield reads
    nginx's log too (with its zone offset) and limits the source."""
    from difusor.shield.service import Shield

    source = "127.0.0.93"
    _refused_by_nginx(stack, source, 300)  # 300 in ~1 s: over 20/s sustained for 10 s
    log = stack.site.cfg.nginx_access_log
    deadline = time.monotonic() + 5
    while True:  # nginx flushes its log every second
        rows = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
        mine = [x for x in rows if x["ip"] == source]
        if len(mine) == 300:
            break
        assert time.monotonic() < deadline, f"nginx registró {len(mine)} de 300"
        time.sleep(0.1)
    assert {x["status"] for x in mine} == {400}
    shield = Shield(stack.site.cfg, stack.site.ledger)
    assert shield.logs[1] == log
    shield.feed(log.read_bytes())
    actions = shield.detector.evaluate(time.time())
    assert any(a.key == source for a in actions), actions
