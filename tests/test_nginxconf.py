"""The nginx configuration as rendered: the policy's headers per path, TLS, limits, real IP, the log;
``difusor nginx-config`` passes ``nginx -t``; the development certificate and ``init
--self-signed-tls``."""

from __future__ import annotations

import datetime as dt
import grp
import http.client
import ipaddress
import json
import os
import pwd
import random
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from conftest import free_port

from difusor import config as config_mod
from difusor.errors import ConfigError
from difusor.headers import HeaderPolicy
from difusor.paths import StateLayout
from difusor.serve.accesslog import AccessLog
from difusor.serve.nginxconf import (
    LOG_FIELDS,
    REAL_IP_HEADERS,
    TLS_CIPHERS,
    Location,
    NginxConfig,
    glob_regex,
    header_locations,
    may_overlap,
    standalone,
)
from difusor.serve.selfsigned import self_signed, write_self_signed
from difusor.serve.server import tls_files

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
needs_nginx = pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx no está instalado")
EXACT = config_mod.MAIN_JSON_CACHE_CONTROL
MAIN = config_mod.MAIN_JSON

RULES = """
[[headers]]
match = "datos/*"
set = { "Cache-Control" = "public, max-age=60", "X-Datos" = "1" }
[[headers]]
match = "*.csv"
set = { "X-Tipo" = "csv" }
[[headers]]
match = "datos/especial.csv"
set = { "X-Especial" = "si", "X-Tipo" = "especial" }
[[headers]]
match = "json/*"
set = { "X-Json" = "1" }
[[headers]]
match = "*/logo.[ps][nv]g"
set = { "X-Logo" = "1" }
[[headers]]
match = "img/?.gif"
set = { "X-Letra" = "1" }
"""


def make_cfg(root: Path, toml: str = "") -> config_mod.Config:
    (root / "keys").mkdir(parents=True, exist_ok=True)
    (root / "keys" / "authorized_keys").write_text("")
    path = root / "difusor.toml"
    path.write_text(config_mod.render_default(web_listen=f"127.0.0.1:{free_port()}") + toml)
    cfg = config_mod.load(path)
    StateLayout(cfg.state_dir).create()
    return cfg


def _unquote(text: str) -> str:
    if not text.startswith('"'):
        return text
    out, i = [], 1
    while i < len(text) - 1:
        if text[i] == "\\" and text[i + 1] in '"\\':
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out)


def choose(locations: list[Location], uri: str) -> Location:
    """nginx's choice among our locations: exact, then regexes in order, then the prefix."""
    for loc in locations:
        if loc.match == f"= {uri}":
            return loc
    for loc in locations:
        if loc.match.startswith("~ ") and re.search(_unquote(loc.match[2:]), uri):
            return loc
    return next(loc for loc in locations if loc.match == "/")


def blocks(text: str, head: str) -> list[list[str]]:
    """The lines of every ``head ... {`` block (blocks nest at most one-line ``types { }``)."""
    found, current = [], None
    for line in text.splitlines():
        s = line.strip()
        if current is None:
            if s.startswith(head) and s.endswith("{"):
                current = [s]
        elif s == "}":
            found.append(current)
            current = None
        else:
            current.append(s)
    return found


# -- the header policy as locations -------------------------------------------------------------

SAMPLES = ["index.html", "json/main.json", "json/otro.json", "json/a/b.csv", "datos/a.csv",
           "datos/b.js", "datos/x/y.png", "datos/especial.csv", "otros/a.csv", "app.js",
           "img/logo.png", "img/logo.svg", "a/logo.jpg", "logo.png", "img/a.gif", "img/ab.gif",
           "css/estilo.css", "datos/logo.svg", "sub/index.html", "x.woff2", "datos/"]


@pytest.mark.parametrize("extra", ["", RULES], ids=["predeterminadas", "con-reglas"])
def test_every_path_gets_exactly_the_policys_headers(tmp_path: Path, extra: str) -> None:
    cfg = make_cfg(tmp_path, extra)
    policy = HeaderPolicy.from_config(cfg)
    locations = header_locations(policy)
    rnd = random.Random(4)
    parts = ["datos", "json", "img", "css", "a", "logo.png", "main.json", "x.csv", "especial.csv",
             "b.js", "logo.svg", "index.html", "q.gif", "y.txt", "z.woff2"]
    fuzz = ["/".join(rnd.choice(parts) for _ in range(rnd.randint(1, 3))) for _ in range(400)]
    for path in SAMPLES + fuzz:
        got = dict((k.lower(), (k, v)) for k, v in choose(locations, "/" + path).headers)
        want = {k.lower(): (k, v) for k, v in policy.headers_for(path)}
        assert got == want, path


def test_main_json_has_an_exact_location_with_the_exact_header(tmp_path: Path) -> None:
    text = NginxConfig(make_cfg(tmp_path, RULES)).render()
    [main] = blocks(text, "location = /json/main.json")
    assert [x for x in main if "Cache-Control" in x] == [f'add_header Cache-Control "{EXACT}" always;']
    assert "expires" not in text and "Expires" not in text
    for must in ("server_tokens off;", "etag on;", "index index.html;", "gzip_static on;",
                 "gzip_vary on;", "disable_symlinks off;", "open_file_cache off;",
                 "$realpath_root", "try_files $uri $uri/ =404;", "limit_req_status 429;"):
        assert must in text, must


def test_main_json_block_follows_the_policy_with_a_cdn(tmp_path: Path) -> None:
    """Whatever the policy adds for main.json (e.g. RFC 9213 targeted caching for a CDN) is in
    its exact block, and the browser's Cache-Control stays the convocatoria's."""
    cfg = make_cfg(tmp_path, '[[cdn]]\nkind = "varnish"\ntargeted_seconds = 5\n')
    text = NginxConfig(cfg).render()
    [main] = blocks(text, "location = /json/main.json")
    headers = [x for x in main if x.startswith("add_header") and "X-Difusor-Corte" not in x]
    policy = HeaderPolicy.from_config(cfg)
    assert headers == [f'add_header {k} "{v}" always;' for k, v in policy.headers_for(MAIN)]
    assert f'add_header Cache-Control "{EXACT}" always;' in headers


@pytest.mark.parametrize("tls", [False, True])
def test_no_block_loses_the_server_wide_headers(tmp_path: Path, tls: bool) -> None:
    toml = RULES
    if tls:
        write_self_signed(tmp_path / "keys" / "n.crt", tmp_path / "keys" / "n.key")
        toml += '[nginx]\ntls_cert = "keys/n.crt"\ntls_key = "keys/n.key"\n'
    text = NginxConfig(make_cfg(tmp_path, toml)).render()
    server_wide = ['add_header X-Difusor-Corte "$difusor_corte" always;']
    if tls:
        server_wide.append('add_header Strict-Transport-Security "max-age=31536000" always;')
    site = text.split("server {")[-1]
    # No add_header at server level (nothing to inherit), and every block repeats them.
    assert not [x for x in site.split("location")[0].splitlines() if "add_header" in x]
    with_headers = [b for b in blocks(site, "location") if any("add_header" in x for x in b)]
    assert len(with_headers) >= 20
    for block in with_headers:
        for line in server_wide:
            assert line in block, block[0]
        assert all(x.endswith(" always;") for x in block if x.startswith("add_header"))
    proxied = [b for b in blocks(site, "location = /_difusor/") if any("proxy_pass" in x for x in b)]
    assert len(proxied) == 3 and all(set(server_wide) <= set(b) for b in proxied)


def test_glob_regex_agrees_with_fnmatch() -> None:
    globs = ["*", "*.js", "json/*", "json/main.json", "img/?.gif", "*/logo.[ps][nv]g", "a[!b]c",
             "d[]]e", "x[", "with space/*.txt", "plus+(1)/{a}.txt", "*.json", "[!.]*"]
    names = ["a.js", "json/main.json", "json/x/y", "img/a.gif", "img/ab.gif", "x/logo.png",
             "x/logo.svg", "x/logo.sng", "acc", "abc", "d]e", "x[", "with space/a.txt",
             "plus+(1)/{a}.txt", "plusplus(1)/a.txt", ".hidden", "b.json", "json/main.jsonx"]
    for glob in globs:
        for name in names:
            assert bool(re.search(f"^/{glob_regex(glob)}$", "/" + name)) == \
                fnmatchcase(name, glob), (glob, name)


def test_overlap_is_only_ruled_out_when_impossible() -> None:
    assert not may_overlap("*.js", "*.css")
    assert not may_overlap("json/*", "img/*")
    assert not may_overlap("json/main.json", "*.js")
    assert may_overlap("json/*", "*.json") and may_overlap("*.min.js", "*.js")
    assert may_overlap("json/main.json", "json/*")
    rnd = random.Random(7)
    globs = ["*.js", "*.css", "json/*", "*.json", "img/*", "*/logo.*", "?.txt", "*a*", "a/*.js"]
    names = ["".join(rnd.choice("aj/.sonctximg") for _ in range(rnd.randint(1, 9)))
             for _ in range(3000)]
    for a in globs:
        for b in globs:
            if any(fnmatchcase(n, a) and fnmatchcase(n, b) for n in names):
                assert may_overlap(a, b), (a, b)


def test_too_many_crossing_rules_are_refused(tmp_path: Path) -> None:
    rules = "".join(f'[[headers]]\nmatch = "*{n}*"\nset = {{ "X-R{n}" = "1" }}\n'
                    for n in range(10))
    with pytest.raises(ConfigError, match="demasiadas"):
        NginxConfig(make_cfg(tmp_path, rules)).render()


# -- real IP, TLS, limits, the log ---------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(REAL_IP_HEADERS))
def test_real_ip_follows_the_first_cdn(tmp_path: Path, kind: str) -> None:
    cfg = make_cfg(tmp_path, f'[nginx]\nreal_ip_from = ["173.245.48.0/20", "2400:cb00::/32"]\n'
                             f'[[cdn]]\nkind = "{kind}"\n[[cdn]]\nkind = "cloudflare"\n')
    text = NginxConfig(cfg).render()
    header = REAL_IP_HEADERS[kind]
    assert f"real_ip_header {header};" in text
    assert "set_real_ip_from 173.245.48.0/20;" in text and "set_real_ip_from 2400:cb00::/32;" in text
    assert ("real_ip_recursive on;" in text) == (header == "X-Forwarded-For")


def test_real_ip_header_setting_wins_and_nothing_is_trusted_by_default(tmp_path: Path) -> None:
    conf = NginxConfig(make_cfg(tmp_path, '[[cdn]]\nkind = "fastly"\n'))
    text = conf.render()
    assert "real_ip_from está vacío" in conf.instructions()
    assert not re.search(r"^\s*(set_real_ip_from|real_ip_header) ", text, flags=re.M)
    cfg = make_cfg(tmp_path, '[nginx]\nreal_ip_from = ["10.0.0.0/8"]\nreal_ip_header = "X-Real-IP"'
                             '\n[[cdn]]\nkind = "fastly"\n')
    assert "real_ip_header X-Real-IP;" in NginxConfig(cfg).render()
    plain = NginxConfig(make_cfg(tmp_path, '[nginx]\nreal_ip_from = ["10.0.0.0/8"]\n')).render()
    assert "real_ip_header X-Forwarded-For;" in plain and "real_ip_recursive on;" in plain


def test_tls_mozilla_intermediate_redirect_and_hsts(tmp_path: Path) -> None:
    write_self_signed(tmp_path / "keys" / "n.crt", tmp_path / "keys" / "n.key")
    tls = '[nginx]\ntls_cert = "keys/n.crt"\ntls_key = "keys/n.key"\n'
    text = NginxConfig(make_cfg(tmp_path, tls)).render()
    for must in ("listen 443 ssl http2;", "ssl_protocols TLSv1.2 TLSv1.3;",
                 f"ssl_ciphers {TLS_CIPHERS};", "ssl_prefer_server_ciphers off;",
                 "ssl_session_cache shared:difusor_tls:10m;", "listen 80;",
                 "return 301 https://$host$request_uri;",
                 'add_header Strict-Transport-Security "max-age=31536000" always;',
                 f'ssl_certificate "{tmp_path / "keys" / "n.crt"}";'):
        assert must in text, must
    assert text.count("server {") == 2
    other = NginxConfig(make_cfg(tmp_path, tls + "listen_tls = 8443\nhsts_seconds = 0\n")).render()
    assert "return 301 https://$host:8443$request_uri;" in other
    assert "Strict-Transport-Security" not in other
    plain = NginxConfig(make_cfg(tmp_path)).render()
    assert not re.search(r"^\s*ssl_", plain, flags=re.M) and plain.count("server {") == 1
    assert "return 301" not in plain and "proxy_ssl_verify" not in plain
    assert "proxy_pass http://127.0.0.1:" in plain
    assert "Strict-Transport-Security" not in plain and "listen 80;" in plain
    assert "acme-challenge" in plain and "acme-challenge" in text  # certbot --webroot works
    with pytest.raises(ConfigError, match="van juntos"):
        NginxConfig(make_cfg(tmp_path, '[nginx]\ntls_cert = "keys/n.crt"\n'))


def test_limit_req_from_the_settings(tmp_path: Path) -> None:
    text = NginxConfig(make_cfg(tmp_path, "[nginx]\nlimit_req_rate = 7\nlimit_req_burst = 9\n")
                       ).render()
    assert "limit_req_zone $binary_remote_addr zone=difusor:10m rate=7r/s;" in text
    assert "limit_req zone=difusor burst=9 nodelay;" in text and "limit_req_status 429;" in text


def test_the_json_log_has_the_embedded_logs_fields(tmp_path: Path) -> None:
    log = AccessLog(tmp_path / "a.log")
    line = log.format([(time.time(), "127.0.0.1:5555", 0.001, "GET", "/", "", 200, 10, None,
                        "ua", "20241208_2030")])
    log.close()
    embedded = list(json.loads(line))
    assert embedded == list(LOG_FIELDS)
    text = NginxConfig(make_cfg(tmp_path)).render()
    [fmt] = re.findall(r"log_format difusor escape=json '(.*)';", text)
    sample = json.loads(re.sub(r"\$[a-z_0-9]+", "0", fmt))
    assert list(sample) == embedded
    assert re.search(r"access_log \"[^\"]+nginx-access.log\" difusor buffer=64k flush=1s;", text)


def test_header_values_are_quoted_for_nginx(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, '[[headers]]\nmatch = "*.txt"\nset = { "X-Nota" = "cuesta $5 '
                             '\\"ya\\"; {x}" }\n')
    text = NginxConfig(cfg).render()
    assert 'add_header X-Nota "cuesta ${difusor_dollar}5 \\"ya\\"; {x}" always;' in text
    assert 'geo $difusor_dollar { default "$"; }' in text
    with pytest.raises(ConfigError, match="nombre de encabezado"):  # refused when read
        make_cfg(tmp_path, '[[headers]]\nmatch = "*.txt"\nset = { "X Nota" = "1" }\n')


# -- nginx -t on what the command writes -----------------------------------------------------------

def _user() -> str | None:
    if os.geteuid() != 0:
        return None
    nobody = pwd.getpwnam("nobody")
    return f"nobody {grp.getgrgid(nobody.pw_gid).gr_name}"


def nginx_t(include: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(standalone(include, prefix, user=_user()))
    return subprocess.run([NGINX, "-t", "-p", str(prefix), "-c", str(conf), "-e",
                           str(prefix / "error.log")], capture_output=True, text=True, timeout=30)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "difusor", *args], capture_output=True, text=True,
                          timeout=60)


@needs_nginx
@pytest.mark.parametrize("variant", ["http", "tls", "cdn-and-rules"])
@pytest.mark.slow
def test_nginx_config_command_output_passes_nginx_t(tmp_path: Path, variant: str) -> None:
    toml = ""
    if variant != "http":
        write_self_signed(tmp_path / "keys" / "n.crt", tmp_path / "keys" / "n.key")
        toml = '[nginx]\ntls_cert = "keys/n.crt"\ntls_key = "keys/n.key"\nlisten_tls = 8443\n'
    if variant == "cdn-and-rules":
        toml += ('real_ip_from = ["103.21.244.0/22", "2400:cb00::/32"]\n[[cdn]]\n'
                 'kind = "cloudflare"\n' + RULES
                 + '[[headers]]\nmatch = "*.txt"\nset = { "X-Nota" = "cuesta $5" }\n')
    cfg = make_cfg(tmp_path, toml)
    config = str(cfg.root / "difusor.toml")
    shown = run_cli("nginx-config", "--config", config)
    assert shown.returncode == 0, shown.stderr
    assert "nginx -s reload" in shown.stderr and "server {" not in shown.stderr
    written = tmp_path / "difusor-nginx.conf"
    done = run_cli("nginx-config", "--output", str(written), "--config", config)
    assert done.returncode == 0 and done.stdout == ""
    assert written.read_text() == shown.stdout == NginxConfig(cfg).render()
    check = nginx_t(written, tmp_path / "nginx")
    assert check.returncode == 0, check.stderr
    # (nginx ≥ 1.25.1 would warn that «listen … http2» is deprecated: harmless, tolerated.)
    warnings = [x for x in check.stderr.splitlines() if "[warn]" in x and "http2" not in x]
    assert not warnings, check.stderr


@pytest.mark.slow
def test_nginx_config_command_errors_are_one_spanish_line(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, '[nginx]\ntls_cert = "keys/n.crt"\n')
    r = run_cli("nginx-config", "--config", str(cfg.root / "difusor.toml"))
    assert r.returncode == 3 and r.stderr.count("\n") == 1 and "tls_key" in r.stderr
    r = run_cli("nginx-config", "--config", str(tmp_path / "no-existe.toml"))
    assert r.returncode == 3 and "no encuentro" in r.stderr


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary folder nginx's workers (nobody, when we are root) can enter."""
    path = Path(tempfile.mkdtemp(prefix="difusor-nginxconf-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@needs_nginx
def test_before_the_first_corte_nginx_answers_404_not_500(open_tmp: Path) -> None:
    """The live tree appears with the first publication; until then nothing breaks."""
    tmp_path = open_tmp
    port = free_port()
    cfg = make_cfg(tmp_path, f"[nginx]\nlisten = {port}\n")
    include = tmp_path / "difusor-nginx.conf"
    include.write_text(NginxConfig(cfg).render())
    prefix = tmp_path / "nginx"
    assert nginx_t(include, prefix).returncode == 0
    proc = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e",
                             str(prefix / "error.log"), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/")
                r = conn.getresponse()
                r.read()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
        assert r.status == 404 and r.getheader("X-Difusor-Corte") == "-"
        conn.request("GET", "/json/main.json")
        assert conn.getresponse().status == 404
        conn.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    errors = (prefix / "error.log").read_text()
    assert "[crit]" not in errors and "[emerg]" not in errors and "[alert]" not in errors, errors


# -- the embedded server's TLS ----------------------------------------------------------------------

def test_self_signed_certificate(tmp_path: Path) -> None:
    from cryptography import x509

    write_self_signed(tmp_path / "c.pem", tmp_path / "k.pem", ["prep.example.mx", "0.0.0.0",
                                                               "10.1.2.3"])
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    cert = x509.load_pem_x509_certificate((tmp_path / "c.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "prep.example.mx"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address(a) for a in ("127.0.0.1", "::1", "10.1.2.3")}
    days = (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).days
    assert 89 <= days <= 90
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
        tmp_path / "c.pem", tmp_path / "k.pem")
    assert self_signed()[0] != self_signed()[0]  # a fresh key each time


def test_tls_settings_are_checked(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    assert tls_files(cfg) is None
    one = cfg.model_copy(update={"web": cfg.web.model_copy(update={"tls_cert": "keys/x.crt"})})
    with pytest.raises(ConfigError, match="van juntos"):
        tls_files(one)
    both = cfg.model_copy(update={"web": cfg.web.model_copy(
        update={"tls_cert": "keys/x.crt", "tls_key": "keys/x.key"})})
    with pytest.raises(ConfigError, match="no existe"):
        tls_files(both)
    write_self_signed(tmp_path / "keys" / "x.crt", tmp_path / "keys" / "x.key")
    write_self_signed(tmp_path / "keys" / "y.crt", tmp_path / "keys" / "x2.key")
    assert tls_files(both) == (tmp_path / "keys" / "x.crt", tmp_path / "keys" / "x.key")
    mixed = cfg.model_copy(update={"web": cfg.web.model_copy(
        update={"tls_cert": "keys/y.crt", "tls_key": "keys/x.key"})})
    with pytest.raises(ConfigError, match="no puedo usar"):
        tls_files(mixed)


@pytest.mark.slow
def test_init_self_signed_tls_serves_https(tmp_path: Path) -> None:
    port = free_port()
    folder = tmp_path / "d"
    r = run_cli("init", str(folder), "--self-signed-tls", "--web-listen", f"127.0.0.1:{port}")
    assert r.returncode == 0, r.stderr
    text = (folder / "difusor.toml").read_text()
    assert 'tls_cert = "keys/tls.crt"' in text and 'tls_key = "keys/tls.key"' in text
    assert f'url = "https://127.0.0.1:{port}"' in text
    assert (folder / "keys" / "tls.key").stat().st_mode & 0o777 == 0o600
    cfg = config_mod.load(folder / "difusor.toml")
    assert cfg.web.tls_cert == "keys/tls.crt" and cfg.site.url.startswith("https://")
    proc = subprocess.Popen([sys.executable, "-m", "difusor", "serve", "--config",
                             str(folder / "difusor.toml")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    ctx = ssl.create_default_context(cafile=str(folder / "keys" / "tls.crt"))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=2)
                try:
                    conn.request("GET", "/_difusor/health")
                    status = conn.getresponse().status
                finally:
                    conn.close()
                break
            except (OSError, http.client.HTTPException):
                assert time.monotonic() < deadline and proc.poll() is None, \
                    proc.stderr.read().decode() if proc.poll() is not None else "sin respuesta"
                time.sleep(0.1)
        assert status == 503  # HTTPS, verified; no corte yet
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()
