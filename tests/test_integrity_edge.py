"""``difusor verify`` through real servers: the chain's endpoints are the same bytes, with the
no-cache rule, on the embedded server and on nginx; one byte flipped in an nginx origin's tree,
or in Varnish's cached copy (filled from a crafted backend), is caught and named."""

from __future__ import annotations

import grp
import hashlib
import http.server
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import ServerProcess, Site, answers, free_port, make_site, stop_group, wait_until
from test_integrity import night
from test_varnish import VARNISHD, Varnish

from difusor.integrity.verify import verify_site
from difusor.serve.nginxconf import NginxConfig
from difusor.serve.nginxconf.standalone import standalone

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
EXACT = "no-cache, no-store, must-revalidate"
TAMPERED = "index.html"  # in nginx's tree
CACHED = "app.js"  # what the edge keeps (index.html is revalidated: never held)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.access(VARNISHD, os.X_OK) or not os.access(NGINX, os.X_OK),
                       reason="faltan varnishd o nginx (make deps los instala)"),
]


class Crafted(http.server.ThreadingHTTPServer):
    """A backend in front of the embedded server that, while ``flip`` is set, changes one byte
    of app.js and keeps every header (the corte's among them)."""

    flip = False
    origin = ""


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Crafted

    def do_GET(self) -> None:
        r = httpx.get(self.server.origin + self.path, headers={"Accept-Encoding": "identity"})
        body = r.content
        if self.server.flip and self.path == f"/{CACHED}":
            body = bytes([body[0] ^ 1]) + body[1:]
        self.send_response(r.status_code)
        for name in ("content-type", "cache-control", "x-difusor-corte", "etag"):
            if name in r.headers:
                self.send_header(name, r.headers[name])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Stack:
    site: Site
    embedded: str
    nginx: str
    edge: str
    crafted: Crafted


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="difusor-integridad-"))
    root.chmod(0o755)  # nginx's workers (nobody) read the tree
    web, nginx_port, edge_port = free_port(), free_port(), free_port()
    site = make_site(root / "difusor", f"\n[nginx]\nlisten = {nginx_port}\n", port=web)
    night(site)
    server = ServerProcess(site.config_path, web).start()
    prefix = root / "nginx"
    (prefix / "tmp").mkdir(parents=True)
    (prefix / "difusor.conf").write_text(NginxConfig.from_config(site.cfg).render())
    user = None
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        user = f"nobody {grp.getgrgid(nobody.pw_gid).gr_name}"
    (prefix / "nginx.conf").write_text(standalone(prefix / "difusor.conf", prefix, user=user))
    nginx = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                              "-e", str(prefix / "error.log"), "-g", "daemon off;"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    crafted = Crafted(("127.0.0.1", 0), _Handler)
    crafted.origin = server.url
    threading.Thread(target=crafted.serve_forever, daemon=True).start()
    varnish = Varnish(crafted.server_port, edge_port)
    try:
        nginx_url = f"http://127.0.0.1:{nginx_port}"
        wait_until(lambda: answers(nginx_url), 20, "nginx")
        varnish.start()
        yield Stack(site, server.url, nginx_url, varnish.url, crafted)
    finally:
        varnish.stop()
        crafted.shutdown()
        crafted.server_close()
        stop_group(nginx)
        server.stop()
        site.ledger.close()
        shutil.rmtree(root, ignore_errors=True)


def test_the_chain_endpoints_are_the_same_on_embedded_and_nginx(stack: Stack) -> None:
    live = verify_site(stack.embedded, sample=1).corte
    for path in ("/_difusor/cortes.json", f"/_difusor/manifest/{live}.json"):
        a, b = httpx.get(stack.embedded + path), httpx.get(stack.nginx + path)
        assert a.status_code == b.status_code == 200, path
        assert a.content == b.content, path
        for r in (a, b):
            assert r.headers["cache-control"] == EXACT
            assert r.headers["content-type"].startswith("application/json")
    assert httpx.get(stack.nginx + "/_difusor/manifest/no-existe.json").status_code == 404


def test_every_way_in_holds_before_anything_is_touched(stack: Stack) -> None:
    for url in (stack.embedded, stack.nginx, stack.edge):
        report = verify_site(url, sample=None)
        assert report.ok, (url, report.problems, report.mismatches)


def test_a_byte_flipped_in_the_nginx_tree_is_caught_and_named(stack: Stack) -> None:
    tree = stack.site.store.site / TAMPERED
    original = tree.read_bytes()
    tree.chmod(0o644)
    tree.write_bytes(bytes([original[0] ^ 1]) + original[1:])
    try:
        report = verify_site(stack.nginx, sample=None)
    finally:
        tree.write_bytes(original)
        tree.chmod(0o444)
    assert not report.ok and [m.path for m in report.mismatches] == [TAMPERED]
    m = report.mismatches[0]
    manifest = stack.site.publisher.manifests.load(str(report.corte))
    assert m.expected == manifest.files[TAMPERED].sha256
    assert m.served == hashlib.sha256(bytes([original[0] ^ 1]) + original[1:]).hexdigest()
    assert verify_site(stack.nginx, sample=None).ok  # restored


def test_a_byte_flipped_in_varnishs_cached_copy_is_caught_and_named(stack: Stack) -> None:
    purge = httpx.request("PURGE", f"{stack.edge}/{CACHED}")
    assert purge.status_code == 200
    stack.crafted.flip = True
    try:
        assert httpx.get(f"{stack.edge}/{CACHED}").status_code == 200  # cached, flipped
    finally:
        stack.crafted.flip = False  # the backend is honest again; the edge's copy is not
    report = verify_site(stack.edge, sample=None)
    assert not report.ok and [m.path for m in report.mismatches] == [CACHED]
    assert verify_site(stack.embedded, sample=None).ok  # the origin was never wrong
    httpx.request("PURGE", f"{stack.edge}/{CACHED}")
    assert verify_site(stack.edge, sample=None).ok
