"""``difusor nginx-config`` with named sites (``[sites.NAME]``): one ``server`` block per site.

The rendered file declares the ``http``-level pieces once and passes a real ``nginx -t``; a real
nginx started with it (beside ``difusor serve``, which proxies ``/_difusor/``) serves each site's
own published corte by Host name, over HTTP and over TLS with one certificate for every name (the
clients send the name as SNI and Host, as a browser does), sends a name no site claims to the
default site, keeps each site's access log apart, and answers the key conformance questions
(main.json's exact Cache-Control, ETag/304, 404 outside the corte, the reserved ``/_difusor/``)
on every host.
"""

from __future__ import annotations

import grp
import http.client
import json
import os
import pwd
import re
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
from conftest import free_port, minimal_site, stop_group

from difusor import config as config_mod
from difusor.demo.packages import archive_bytes
from difusor.errors import ConfigError
from difusor.ledger import Ledger
from difusor.paths import StateLayout
from difusor.publish.publisher import Publisher
from difusor.serve.nginxconf import NginxConfig, standalone
from difusor.serve.nginxconf.syntax import quote
from difusor.serve.selfsigned import write_self_signed
from difusor.sites.catalog import default_site

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
needs_nginx = pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx no está instalado")
MAIN = "json/main.json"
EXACT = config_mod.MAIN_JSON_CACHE_CONTROL
FOREIGN = b"FUERA-DEL-SITIO: nunca debe servirse"

#: Host names per site; ``oficial`` is the default one (the main authority's official site).
HOSTS = {
    "prueba": ["prueba.prep.test", "simulacro.prep.test", "*.prueba.prep.test"],
    "oficial": ["prep.test", "www.prep.test"],
}
UNKNOWN = "desconocido.example"


def sites_toml(scheme: str = "http") -> str:
    out = ""
    for name, hosts in HOSTS.items():
        out += (f'\n[sites.{name}]\nrole = "{name}"\nurl = "{scheme}://{hosts[0]}"\n'
                f"hosts = {json.dumps(hosts)}\n")
    return out


def make_cfg(root: Path, toml: str) -> config_mod.Config:
    (root / "keys").mkdir(parents=True, exist_ok=True)
    (root / "keys" / "authorized_keys").write_text("")
    (root / "difusor.toml").write_text(
        config_mod.render_default(web_listen=f"127.0.0.1:{free_port()}") + toml)
    return config_mod.load(root / "difusor.toml")


def server_blocks(text: str) -> list[str]:
    """The text of every top-level ``server { … }`` block."""
    return re.findall(r"^server \{\n.*?^\}\n", text, flags=re.M | re.S)


def directive(block: str, name: str) -> list[str]:
    return re.findall(rf"^    {name} (.*);$", block, flags=re.M)


def nginx_user() -> str | None:
    """nginx's workers run as nobody when we are root (CI)."""
    if os.geteuid() != 0:
        return None
    nobody = pwd.getpwnam("nobody")
    return f"nobody {grp.getgrgid(nobody.pw_gid).gr_name}"


def nginx_argv(include: Path, prefix: Path) -> list[str]:
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(standalone(include, prefix, user=nginx_user()))
    return [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]


# -- the rendered file ------------------------------------------------------------------------

@pytest.mark.parametrize("tls", [False, True], ids=["http", "tls"])
def test_one_server_block_per_site_and_the_http_level_once(tmp_path: Path, tls: bool) -> None:
    toml = '[[headers]]\nmatch = "*.txt"\nset = { "X-Nota" = "cuesta $5" }\n'
    if tls:
        write_self_signed(tmp_path / "keys" / "n.crt", tmp_path / "keys" / "n.key")
        toml += '[nginx]\ntls_cert = "keys/n.crt"\ntls_key = "keys/n.key"\n'
    cfg = make_cfg(tmp_path, toml + sites_toml())
    conf = NginxConfig(cfg)
    text = conf.render()
    http_level = text.split("\nserver {")[0]
    for once in ("limit_req_zone ", "log_format difusor ", "map $msec ", "map $time_iso8601 ",
                 "map $request_time ", "map $request_uri ", "map $difusor_root ",
                 "geo $difusor_dollar "):
        assert text.count(once) == 1 and once in http_level, once
    blocks = server_blocks(text)
    assert len(blocks) == (4 if tls else 2)
    assert default_site(cfg) == "oficial"
    for name, hosts in HOSTS.items():
        view = cfg.for_site(name)
        mine = [b for b in blocks if directive(b, "server_name") == [" ".join(hosts)]]
        assert len(mine) == (2 if tls else 1), name
        site = mine[-1]
        tree = StateLayout(view.state_dir).store / "site"
        assert tree == tmp_path / "state" / "sites" / name / "store" / "site"
        assert directive(site, "root") == [f'"{tree}"']
        assert f'{quote("~^" + re.escape(str(tree)) + "$")} "-";' in http_level  # no corte yet
        log = tmp_path / "state" / "sites" / name / "logs" / "nginx-access.log"
        assert view.nginx_access_log == log  # the file this site's shield and analytics read
        for block in mine:
            assert directive(block, "access_log") == [f'"{log}" difusor buffer=64k flush=1s']
            assert directive(block, "limit_req") == ["zone=difusor burst=200 nodelay"]
            listen = directive(block, "listen")
            assert len(listen) == 1
            assert listen[0].endswith(" default_server") == (name == "oficial"), listen
        # The embedded server is told which site, by a name of its own (not the wildcard).
        # status.json, health, corte.js and the CDN probe of `difusor check`
        assert directive(site, "    proxy_set_header Host") == [hosts[0]] * 4
        assert re.search(r'location = /json/main\.json \{[^}]*Cache-Control "' + re.escape(EXACT),
                         site)
    assert text.count(" default_server;") == (2 if tls else 1)
    if tls:
        assert text.count(f'ssl_certificate "{tmp_path / "keys" / "n.crt"}";') == 2
    info = conf.instructions()
    assert "oficial (prep.test www.prep.test, predeterminado)" in info
    assert ("debe cubrir todos esos nombres" in info) == tls


def test_without_sites_nothing_changes(tmp_path: Path) -> None:
    """The guard of the one-site file is test_nginxconf.py (byte for byte through nginx -t and
    the conformance suite); here, only that nothing of the sites leaks into it."""
    text = NginxConfig(make_cfg(tmp_path, "")).render()
    assert "default_server" not in text and "proxy_set_header" not in text
    assert len(server_blocks(text)) == 1 and "server_name _;" in text


@pytest.mark.parametrize(("extra", "message"), [
    ('[nginx]\nroot = "/srv/otro"\n', "root no va con \\[sites\\]"),
    ('[nginx]\naccess_log = "/var/log/a.log"\n', "access_log no va con \\[sites\\]"),
])
def test_settings_one_site_only_are_refused_with_sites(tmp_path: Path, extra: str,
                                                       message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NginxConfig(make_cfg(tmp_path, extra + sites_toml()))


def test_a_wildcard_nginx_would_refuse(tmp_path: Path) -> None:
    toml = '\n[sites.prueba]\nrole = "prueba"\nurl = "http://p.test"\nhosts = ["*p.test"]\n'
    with pytest.raises(ConfigError, match="comodín"):
        NginxConfig(make_cfg(tmp_path, toml))


@needs_nginx
@pytest.mark.slow
@pytest.mark.parametrize("tls", [False, True], ids=["http", "tls"])
def test_two_sites_pass_nginx_t(tmp_path: Path, tls: bool) -> None:
    toml = ""
    if tls:
        write_self_signed(tmp_path / "keys" / "n.crt", tmp_path / "keys" / "n.key")
        toml = '[nginx]\ntls_cert = "keys/n.crt"\ntls_key = "keys/n.key"\n'
    toml += '[shield]\nnginx_include = "state/bloqueos.conf"\nnginx_reload = ["true"]\n'
    cfg = make_cfg(tmp_path, toml + sites_toml())
    for name in HOSTS:  # (as `difusor serve` or the first publication leaves them)
        StateLayout(cfg.for_site(name).state_dir).create()
    include = tmp_path / "difusor-nginx.conf"
    include.write_text(NginxConfig(cfg).render())
    check = subprocess.run([*nginx_argv(include, tmp_path / "nginx"), "-t"],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    warnings = [x for x in check.stderr.splitlines() if "[warn]" in x and "http2" not in x]
    assert not warnings, check.stderr


# -- a real nginx in front of two published sites ---------------------------------------------

@dataclass
class SiteState:
    name: str
    cfg: config_mod.Config
    ledger: Ledger
    publisher: Publisher
    files: dict[str, bytes] = field(default_factory=dict)
    live: str = ""

    def publish(self, files: dict[str, bytes], package: str) -> str:
        path = self.cfg.root / "paquetes" / package
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(archive_bytes(files, "zip"))
        self.live = self.publisher.publish(path).release_id
        self.files = {**self.files, **files}
        return self.live


@dataclass
class Stack:
    tls: bool
    root: Path
    cfg: config_mod.Config
    sites: dict[str, SiteState]
    web_port: int
    port: int  # nginx: HTTPS with tls, else HTTP
    http_port: int
    ca: Path | None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def get(self, host: str, path: str, headers: dict[str, str] | None = None,
            port: int | None = None, tls: bool | None = None) -> Reply:
        """A request as a browser for ``host`` sends it (SNI and Host), to 127.0.0.1."""
        tls = self.tls if tls is None else tls
        port = port or self.port
        conn: http.client.HTTPConnection
        if tls:
            ctx = ssl.create_default_context(cafile=str(self.ca))
            ctx.check_hostname = host != UNKNOWN  # the one name the certificate lacks
            conn = _PinnedHTTPS(host, port, timeout=10, context=ctx)
        else:
            conn = _PinnedHTTP(host, port, timeout=10)
        try:
            conn.request("GET", path, headers={"Accept-Encoding": "identity", **(headers or {})})
            resp = conn.getresponse()
            return Reply(resp.status, resp.headers, resp.read())
        finally:
            conn.close()


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to 127.0.0.1 whatever the host name (there is no DNS for *.prep.test); the
    request still says ``Host: name:port``."""

    def connect(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """The same over TLS, with the name as SNI and verified against the certificate."""

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def one(self, name: str) -> str | None:
        values = self.headers.get_all(name) or []
        assert len(values) <= 1, f"{name} repetido: {values}"
        return values[0] if values else None


def package(name: str, hora: str) -> dict[str, bytes]:
    return minimal_site(hora=hora, extra={
        "index.html": f"<!doctype html><title>PREP {name}</title>".encode() * 20,
        f"solo-{name}.txt": f"solo en el sitio {name}\n".encode(),
        "js/app.js": f"const sitio = '{name}';\n".encode() * 30,
    })


def _wait(proc: subprocess.Popen[bytes], ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, f"{what} terminó"
        try:
            if ready():
                return
        except (OSError, http.client.HTTPException):
            pass
        assert time.monotonic() < deadline, f"{what} no respondió"
        time.sleep(0.05)


def build_stack(tls: bool) -> Stack:
    root = Path(tempfile.mkdtemp(prefix=f"difusor-sites-{'tls' if tls else 'http'}-"))
    if os.geteuid() == 0:
        root.chmod(0o755)  # nginx's workers (nobody) must reach the trees
    (root / "keys").mkdir()
    (root / "keys" / "authorized_keys").write_text("")
    web_port, port, http_port = free_port(), free_port(), free_port()
    ca = None
    text = config_mod.render_default(web_listen=f"127.0.0.1:{web_port}") + "\n[nginx]\n"
    if tls:
        ca = root / "keys" / "tls.crt"
        names = [h for hosts in HOSTS.values() for h in hosts]
        write_self_signed(ca, root / "keys" / "tls.key", names)  # one certificate, every name
        text += (f'listen = {http_port}\nlisten_tls = {port}\n'
                 'tls_cert = "keys/tls.crt"\ntls_key = "keys/tls.key"\n')
    else:
        text += f"listen = {port}\n"
    (root / "difusor.toml").write_text(text + sites_toml("https" if tls else "http"))
    cfg = config_mod.load(root / "difusor.toml")
    sites = {}
    for n, (name, hora) in enumerate((("prueba", "20:30"), ("oficial", "21:00"))):
        view = cfg.for_site(name)
        ledger = Ledger(StateLayout(view.state_dir).ledger)
        publisher = Publisher(view, ledger)
        publisher.prepare()
        site = SiteState(name, view, ledger, publisher)
        site.publish(package(name, hora), f"20241208_{2030 + n * 70}_{name}.zip")
        (StateLayout(view.state_dir).store / "secreto.txt").write_bytes(FOREIGN)
        sites[name] = site
    (root / "secreto.txt").write_bytes(FOREIGN)
    return Stack(tls, root, cfg, sites, web_port, port, http_port, ca)


def start(stack: Stack) -> None:
    with (stack.root / "serve.out").open("ab") as out:
        serve = subprocess.Popen([sys.executable, "-m", "difusor", "serve", "--config",
                                  str(stack.root / "difusor.toml")], stdout=out, stderr=out,
                                 start_new_session=True)
    stack.processes.append(serve)
    web = "https" if stack.cfg.web.tls_cert else "http"
    assert web == "http"

    def embedded_ready() -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", stack.web_port, timeout=1)
        try:
            conn.request("GET", "/_difusor/health")
            return conn.getresponse().status == 200
        finally:
            conn.close()

    _wait(serve, embedded_ready, "difusor serve")
    include = stack.root / "nginx" / "difusor.conf"
    include.parent.mkdir()
    include.write_text(NginxConfig.from_config(stack.cfg).render())
    argv = nginx_argv(include, stack.root / "nginx")
    check = subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=20)
    assert check.returncode == 0, check.stderr
    nginx = subprocess.Popen([*argv, "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    stack.processes.append(nginx)
    _wait(nginx, lambda: stack.get("prep.test", "/_difusor/health").status == 200, "nginx")


@pytest.fixture(scope="module", params=["http", "tls"])
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    if not os.path.exists(NGINX):
        pytest.skip("nginx no está instalado")
    s = build_stack(request.param == "tls")
    try:
        start(s)
        yield s
    finally:
        for proc in reversed(s.processes):
            stop_group(proc)
        for site in s.sites.values():
            site.ledger.close()
        errors = (s.root / "nginx" / "error.log")
        text = errors.read_text() if errors.exists() else ""
        shutil.rmtree(s.root, ignore_errors=True)
        assert "[emerg]" not in text and "[crit]" not in text and "[alert]" not in text, text


def site_hosts(name: str) -> list[str]:
    return [h.replace("*", "x") for h in HOSTS[name]]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(HOSTS))
def test_each_host_serves_its_own_sites_corte(stack: Stack, name: str) -> None:
    site = stack.sites[name]
    other = next(s for s in stack.sites.values() if s is not site)
    assert site.live != other.live
    for host in site_hosts(name):
        for path, body in site.files.items():
            r = stack.get(host, "/" + path)
            assert (r.status, r.body) == (200, body), (host, path)
            assert r.one("X-Difusor-Corte") == site.live, (host, path)
        assert stack.get(host, "/").body == site.files["index.html"]
        missing = stack.get(host, f"/solo-{other.name}.txt")  # the other site's: not here
        assert missing.status == 404 and missing.one("Cache-Control") == "no-cache"


@pytest.mark.slow
def test_an_unknown_host_goes_to_the_default_site_as_in_the_embedded_server(stack: Stack) -> None:
    oficial = stack.sites[default_site(stack.cfg)]
    for host in (UNKNOWN, "127.0.0.1"):
        r = stack.get(host, "/" + MAIN)
        assert r.status == 200 and r.body == oficial.files[MAIN], host
        assert r.one("X-Difusor-Corte") == oficial.live
        status = json.loads(stack.get(host, "/_difusor/status.json").body)
        assert status["corte"]["id"] == oficial.live
        embedded = http.client.HTTPConnection("127.0.0.1", stack.web_port, timeout=10)
        embedded.request("GET", "/" + MAIN, headers={"Host": host})
        assert embedded.getresponse().read() == r.body
        embedded.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(HOSTS))
def test_key_conformance_questions_on_every_host(stack: Stack, name: str) -> None:
    site = stack.sites[name]
    for host in site_hosts(name):
        for url in ("/" + MAIN, f"/{MAIN}?t=1733711400"):
            r = stack.get(host, url)
            assert r.status == 200 and r.headers.get_all("Cache-Control") == [EXACT], (host, url)
            assert r.one("Expires") is None and r.one("X-Content-Type-Options") == "nosniff"
        etag = stack.get(host, "/" + MAIN).one("ETag")
        again = stack.get(host, "/" + MAIN, {"If-None-Match": etag})
        assert again.status == 304 and again.headers.get_all("Cache-Control") == [EXACT]
        assert stack.get(host, "/js/app.js").one("Cache-Control") == "public, max-age=300"
        for url in ("/no-existe.html", "/json/otro.json", "/../secreto.txt", "/%2e%2e/secreto.txt",
                    "/../../store/secreto.txt", "/.%2e/.%2e/secreto.txt"):
            r = stack.get(host, url)
            assert r.status in (400, 404) and FOREIGN not in r.body, (host, url, r.status)
        status = stack.get(host, "/_difusor/status.json")  # proxied to the embedded server
        assert status.status == 200 and status.headers.get_all("Cache-Control") == [EXACT]
        assert json.loads(status.body)["corte"]["id"] == site.live, host
        assert stack.get(host, "/_difusor/health").status == 200
        for url in ("/_difusor/other", "/_difusor/", "/_difusor", "/_difusor/status.json/x"):
            assert stack.get(host, url).status == 404, (host, url)
        if stack.tls:
            hsts = f"max-age={stack.cfg.nginx.hsts_seconds}"
            assert stack.get(host, "/").one("Strict-Transport-Security") == hsts
            r = stack.get(host, "/json/main.json?v=1", port=stack.http_port, tls=False)
            assert r.status == 301, host
            assert r.one("Location") == f"https://{host}:{stack.port}/json/main.json?v=1"


@pytest.mark.slow
def test_each_site_has_its_own_access_log(stack: Stack) -> None:
    for name in HOSTS:
        stack.get(site_hosts(name)[0], f"/{MAIN}?registro={name}")
    logs = {name: site.cfg.nginx_access_log for name, site in stack.sites.items()}
    deadline = time.monotonic() + 5
    while True:  # nginx flushes every second
        rows = {name: [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
                for name, log in logs.items()}
        mine = {name: [r for r in rows[name] if r["query"].startswith("registro=")]
                for name in HOSTS}
        if all(mine.values()):
            break
        assert time.monotonic() < deadline, f"sin registro: {mine}"
        time.sleep(0.1)
    for name, site in stack.sites.items():
        assert [r["query"] for r in mine[name]] == [f"registro={name}"]
        assert mine[name][0]["corte"] == site.live and mine[name][0]["status"] == 200


@pytest.mark.slow
def test_a_new_corte_on_one_site_leaves_the_other_alone(stack: Stack) -> None:
    prueba, oficial = stack.sites["prueba"], stack.sites["oficial"]
    before = oficial.live
    new = package("prueba", "20:45")
    corte = prueba.publish(new, "20241208_2045_prueba.zip")
    deadline = time.monotonic() + 3
    while (r := stack.get("prueba.prep.test", "/" + MAIN)).one("X-Difusor-Corte") != corte:
        assert time.monotonic() < deadline, "nginx sigue con el corte anterior"
        time.sleep(0.02)
    assert r.body == new[MAIN]
    r = stack.get("prep.test", "/" + MAIN)
    assert r.one("X-Difusor-Corte") == before == oficial.live and r.body == oficial.files[MAIN]
