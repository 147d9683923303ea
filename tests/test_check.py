"""``difusor check`` against a real local installation: ``difusor run`` (embedded server, embedded
SFTP, monitor, shield), nginx with TLS in front as the public URL, Varnish with the shipped VCL as
the CDN, and a remote probe reporting. Every item ✔; then each broken on purpose — a hand-edited
header in nginx, an expired certificate, a full tmpfs, the shield off, the monitor stopped, a CDN
whose purge API answers but does not purge — gives that item ✘ with the evidence."""

from __future__ import annotations

import datetime as dt
import grp
import http.server
import ipaddress
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import answers, free_port, minimal_site, stop_group, wait_until
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_varnish import VARNISHD, Varnish

from difusor import config as config_mod
from difusor.compliance import edge, records, transfer, web
from difusor.compliance.outcome import Outcome
from difusor.demo.packages import archive_bytes
from difusor.ledger import Ledger
from difusor.paths import StateLayout
from difusor.publish.publisher import Publisher
from difusor.report.document import compliance_check
from difusor.serve.nginxconf import NginxConfig
from difusor.serve.nginxconf.standalone import standalone
from difusor.serve.selfsigned import write_self_signed

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TOKEN = "token-de-prueba-del-check"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.access(VARNISHD, os.X_OK) or not os.access(NGINX, os.X_OK),
                       reason="faltan varnishd o nginx (make deps los instala)"),
]


@dataclass
class Install:
    root: Path
    config: Path
    nginx_argv: list[str]
    procs: list[subprocess.Popen[bytes]]
    edge: Varnish
    ports: dict[str, int]

    def cfg(self, extra: str = "") -> config_mod.Config:
        """The installation's config, with ``extra`` TOML appended (a broken variant)."""
        if not extra:
            return config_mod.load(self.config)
        variant = self.root / "variante.toml"
        variant.write_text(self.config.read_text() + extra)
        return config_mod.load(variant)

    def reload_nginx(self) -> None:
        subprocess.run([*self.nginx_argv, "-s", "reload"], check=True, timeout=20)


def _check_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "difusor", "check", "--config", str(config),
                           *args], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "DIFUSOR_PROBE_TOKEN": TOKEN})


@pytest.fixture(scope="module")
def install() -> Iterator[Install]:
    # Under /srv-like root-owned /tmp folder nginx's workers (nobody) can read.
    root = Path(tempfile.mkdtemp(prefix="difusor-check-"))
    root.chmod(0o755)
    ports = {k: free_port() for k in ("web", "nginx", "nginx_http", "edge", "sftp", "monitor")}
    (root / "keys").mkdir()
    (root / "keys" / "authorized_keys").write_text("")
    write_self_signed(root / "keys" / "tls.crt", root / "keys" / "tls.key", ["127.0.0.1"])
    public = f"https://127.0.0.1:{ports['nginx']}"
    text = config_mod.render_default(web_listen=f"127.0.0.1:{ports['web']}",
                                     sftp_listen=f"127.0.0.1:{ports['sftp']}")
    web_url = "http://127.0.0.1:{}".format(ports["web"])
    text = text.replace(f'url = "{web_url}"', f'url = "{public}"', 1)
    text += f"""
[nginx]
listen = {ports['nginx_http']}
listen_tls = {ports['nginx']}
tls_cert = "keys/tls.crt"
tls_key = "keys/tls.key"

[[cdn]]
kind = "varnish"
name = "varnish-local"
edge_url = "http://127.0.0.1:{ports['edge']}"
verify_timeout = 3

[monitor]
interval = 1
listen = "127.0.0.1:{ports['monitor']}"
disk_critical_gb = 1
disk_warn_gb = 1

[[monitor.targets]]
name = "publico"
url = "{public}"
public = true
ca_file = "keys/tls.crt"
"""
    config = root / "difusor.toml"
    config.write_text(text)
    cfg = config_mod.load(config)
    assert str(cfg.site.url).startswith("https://"), "the public URL must be nginx's"
    StateLayout(cfg.state_dir).create()
    with Ledger(StateLayout(cfg.state_dir).ledger) as ledger:
        package = root / "20241208_2030_PREP.zip"
        package.write_bytes(archive_bytes(minimal_site(), "zip"))
        publisher = Publisher(cfg, ledger)
        publisher.purge_cdn = False  # the edge is not up yet: nothing of it to purge
        publisher.publish(package)

    procs: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "DIFUSOR_PROBE_TOKEN": TOKEN}
    prefix = root / "nginx"
    (prefix / "tmp").mkdir(parents=True)
    (prefix / "difusor.conf").write_text(NginxConfig.from_config(cfg).render())
    user = None
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        user = f"nobody {grp.getgrgid(nobody.pw_gid).gr_name}"
    (prefix / "nginx.conf").write_text(standalone(prefix / "difusor.conf", prefix, user=user))
    argv = [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
            "-e", str(prefix / "error.log")]
    varnish = Varnish(ports["web"], ports["edge"])
    inst = Install(root, config, argv, procs, varnish, ports)
    try:
        # nginx first: the monitor's first round must find the public URL up.
        procs.append(subprocess.Popen([*argv, "-g", "daemon off;"], start_new_session=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_until(lambda: answers(public, verify=False), 30, "nginx")
        with (root / "run.out").open("wb") as out:
            procs.insert(0, subprocess.Popen(
                [sys.executable, "-m", "difusor", "run", "--config", str(config)], stdout=out,
                stderr=out, env=env, start_new_session=True))
        wait_until(lambda: answers(f"http://127.0.0.1:{ports['web']}"), 30,
                   "difusor run sirviendo")
        varnish.start()
        probe = subprocess.run(
            [sys.executable, "-m", "difusor", "probe", "--report-to",
             f"http://127.0.0.1:{ports['monitor']}", "--once", "--name", "sonda-remota",
             "--target", f"publico={public}", "--ca-file", str(root / "keys" / "tls.crt")],
            capture_output=True, text=True, timeout=60, env=env)
        assert probe.returncode == 0, probe.stdout + probe.stderr
        yield inst
    finally:
        varnish.stop()
        for p in reversed(procs):
            stop_group(p)
        shutil.rmtree(root, ignore_errors=True)


def settled(measure: Callable[[], Outcome], done: Callable[[Outcome], bool], what: str
            ) -> Outcome:
    """The first measurement for which ``done`` holds (within 10 s)."""
    seen: list[Outcome] = []
    wait_until(lambda: done(seen.append(measure()) or seen[-1]), 10, what)
    return seen[-1]


def by_key(items: list[dict]) -> dict[str, dict]:
    return {i["key"]: i for i in items}


def test_every_item_holds_on_a_complete_installation(install: Install) -> None:
    done = _check_cli(install.config, "--json", "--sftp-size", "60",
                      "--html", str(install.root / "check.html"))
    result = json.loads(done.stdout)
    items = by_key(result["puntos"])
    failed = {k: v["evidence"] for k, v in items.items() if v["status"] != "ok"}
    assert not failed, failed
    assert done.returncode == 0, done.stderr
    assert set(items) >= {"disk", "sftp_auth", "sftp_speed", "webserver", "header", "https",
                          "cdn_purge", "visits", "shield", "monitor", "availability"}
    print(items["sftp_speed"]["evidence"])
    assert items["sftp_speed"]["data"]["mb_per_s"] >= 40
    assert "MB/s" in items["sftp_speed"]["evidence"]
    assert "TLSv1.3" in items["https"]["evidence"] or "TLSv1.2" in items["https"]["evidence"]
    assert "sonda-remota" in items["monitor"]["evidence"]
    assert "II.1.e" in (install.root / "check.html").read_text()
    # The result is in the ledger for the memoria; the test file left nothing behind.
    cfg = install.cfg()
    with Ledger(StateLayout(cfg.state_dir).ledger) as ledger:
        assert ledger.events("check", 1)[0]["detail"]["passed"] is True
        cited = compliance_check(ledger, dt.datetime.now(dt.UTC))
    assert cited is not None and cited["cumple"] is True
    assert {p["inciso"] for p in cited["puntos"]} >= {"II.1.c", "II.1.d", "II.1.e", "II.2.b"}
    state = StateLayout(cfg.state_dir)
    assert not list(state.inbox.iterdir()) and not list(state.quarantine.iterdir())
    assert not list(state.cdn_probes.glob("*.txt"))


def test_a_hand_edited_header_in_nginx_fails_the_header_item(install: Install) -> None:
    conf = install.root / "nginx" / "difusor.conf"
    original = conf.read_text()
    assert original.count('"no-cache, no-store, must-revalidate"') >= 1
    conf.write_text(original.replace('"no-cache, no-store, must-revalidate"',
                                     '"public, max-age=60"'))
    try:
        install.reload_nginx()
        cfg = install.cfg()
        with Ledger(StateLayout(cfg.state_dir).ledger) as ledger:
            # During a reload old workers still answer some connections: keep the very
            # result that showed the new configuration.
            item = settled(lambda: web.header_and_web(cfg, ledger)[1],
                           lambda i: i.status == "fail", "nginx con el encabezado equivocado")
        assert "public, max-age=60" in item.evidence and "sitio público" in item.evidence
        assert item.data["failed"] == ["sitio público"]  # the CDN path (embedded) still holds
    finally:
        conf.write_text(original)
        install.reload_nginx()


def _expired_certificate(cert: Path, key: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    built = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
             .public_key(private.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(days=30))
             .not_valid_after(now - dt.timedelta(days=1))
             .add_extension(x509.SubjectAlternativeName(
                 [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                 critical=False)
             .sign(private, hashes.SHA256()))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    cert.write_bytes(built.public_bytes(serialization.Encoding.PEM))


def test_an_expired_certificate_fails_https(install: Install) -> None:
    cert, key = install.root / "keys" / "tls.crt", install.root / "keys" / "tls.key"
    saved = cert.read_bytes(), key.read_bytes()
    _expired_certificate(cert, key)
    try:
        install.reload_nginx()
        cfg = install.cfg()
        # Until nginx's reload is done it still shows the old certificate (which the new CA
        # file no longer vouches for): wait for the expired one itself.
        item = settled(lambda: web.https(cfg), lambda i: i.data.get("verify_code") == 10,
                       "nginx con el certificado vencido")
        assert item.status == "fail" and item.data["verify_code"] == 10, item.evidence
    finally:
        cert.write_bytes(saved[0])
        key.write_bytes(saved[1])
        install.reload_nginx()
    wait_until(lambda: web.https(install.cfg()).status == "ok", 10, "certificado restituido")


def test_a_full_tmpfs_volume_fails_the_disk_item(install: Install) -> None:
    volume = install.root / "volumen"
    volume.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(volume)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"no puedo montar un tmpfs: {mounted.stderr.strip()}")
    try:
        (volume / "relleno").write_bytes(b"\0" * (3 * 2**20))
        # The logs' volume is the tmpfs: the nginx log path points there (nginx itself is
        # untouched; the check reads where the config says the difusor writes).
        text = install.config.read_text().replace(
            "[nginx]\n", f'[nginx]\naccess_log = "{volume}/nginx-access.log"\n', 1)
        variant = install.root / "variante-disco.toml"
        variant.write_text(text)
        cfg = config_mod.load(variant)
        item = transfer.disk(cfg)
        assert item.status == "fail"
        assert str(volume) in item.evidence and "GB libres" in item.evidence
        assert any(str(volume) in v["folders"][0] for v in item.data["volumes"])
    finally:
        subprocess.run(["umount", str(volume)], check=False)


def test_the_shield_off_fails_the_shield_item(install: Install) -> None:
    assert records.shield(install.cfg()).status == "ok"
    item = records.shield(install.cfg("\n[shield]\nenabled = false\n"))
    assert item.status == "fail" and "apagado" in item.evidence


class _LyingPurgeApi(http.server.BaseHTTPRequestHandler):
    """A CDN API that answers 200 to every purge and purges nothing."""

    def do_PURGE(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_cdn_that_does_not_purge_fails_the_cdn_item(install: Install) -> None:
    api = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _LyingPurgeApi)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    try:
        text = install.config.read_text().replace(
            'name = "varnish-local"\n',
            f'name = "varnish-local"\npurge_url = "http://127.0.0.1:{api.server_port}"\n', 1)
        variant = install.root / "variante-cdn.toml"
        variant.write_text(text)
        started = time.monotonic()
        [item] = edge.cdn_purge(config_mod.load(variant))
    finally:
        api.shutdown()
        api.server_close()
    assert item.status == "fail", item.evidence
    assert "versión vieja" in item.evidence and "purga aceptada" in item.evidence
    assert time.monotonic() - started < 15


def test_the_monitor_stopped_fails_the_monitor_item(install: Install) -> None:
    """Last: it stops ``difusor run``."""
    cfg = install.cfg()
    with Ledger(StateLayout(cfg.state_dir).ledger) as ledger:
        assert records.monitor(cfg, ledger).status == "ok"
        stop_group(install.procs[0])
        wait_until(lambda: records.monitor(cfg, ledger).status == "fail", 15,
                   "el monitor deja de sondear")
        item = records.monitor(cfg, ledger)
    assert "ningún sondeo local" in item.evidence
