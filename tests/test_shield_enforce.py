"""Where blocks are enforced outside the embedded server: a real nginx on loopback, nftables in a
network namespace of its own, and Cloudflare's list API through the real SDK against a double.

``EnforcerContract`` holds what every enforcement point must do (hold exactly the blocks given,
keys normalised and a bad one skipped, nothing changed for the same state twice, a failure as one
Spanish ``ShieldError``); each point's class inherits it: nginx with a harmless reload command,
nftables through a double of the ``nft`` command, Cloudflare against its Lists API double.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import free_port, make_site, minimal_site

from difusor import config as config_mod
from difusor.errors import ConfigError, ShieldError
from difusor.serve.nginxconf import NginxConfig, standalone
from difusor.shield.enforce.base import DRIVERS, EnforcerBase, build_enforcers, configured
from difusor.shield.model import Block

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
needs_nginx = pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx no está instalado")
ROOT = Path(__file__).resolve().parents[1]


def soon(seconds: float = 600) -> float:
    return time.time() + seconds


def get_from(source: str, port: int, path: str = "/json/main.json", timeout: float = 5
             ) -> tuple[int, bytes]:
    """One GET over a connection whose source address is ``source`` (a 127.x address)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                    source_address=(source, 0))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.sock = sock
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def settles(source: str, port: int, status: int, path: str = "/json/main.json") -> int:
    """``nginx -s reload`` only signals the master, and for a moment old and new workers both
    accept: wait (bounded) until eight answers in a row, spread over 0.4 s, agree."""
    deadline = time.monotonic() + 10
    streak = 0
    while streak < 8 and time.monotonic() < deadline:
        found = get_from(source, port, path)[0]
        streak = streak + 1 if found == status else 0
        time.sleep(0.05)
    return found


# -- the table and the shared template --------------------------------------------------------

def cfg_with(tmp_path: Path, toml: str) -> config_mod.Config:
    site = make_site(tmp_path / "d", toml)
    site.ledger.close()
    return site.cfg


def test_nothing_configured_means_no_enforcers(tmp_path: Path) -> None:
    cfg = cfg_with(tmp_path, "")
    assert configured(cfg) == [] and build_enforcers(cfg) == []


def test_each_configured_point_and_only_those_in_cheapest_first_order(tmp_path: Path) -> None:
    cfg = cfg_with(tmp_path, textwrap.dedent("""
        [shield]
        nginx_include = "bloqueos.conf"
        nftables_set = "inet difusor bloqueados"
        [shield.cloudflare]
        account_id = "cuenta"
        list_id = "lista"
        token_env = "CF_LISTAS"
    """))
    found = build_enforcers(cfg, env={"CF_LISTAS": "secreto"})
    assert [e.name for e in found] == ["nftables", "nginx", "cloudflare"]
    for e in found:
        e.close()
    with pytest.raises(ConfigError, match="CF_LISTAS está vacía o no existe"):
        build_enforcers(cfg, env={})


def test_the_cloudflare_sdk_loads_only_when_its_list_is_configured(tmp_path: Path) -> None:
    cfg = cfg_with(tmp_path, '[shield]\nnginx_include = "b.conf"\n')
    code = ("import sys\nfrom difusor import config\n"
            f"from difusor.shield.enforce.base import build_enforcers\n"
            f"cfg = config.load({str(cfg.root / 'difusor.toml')!r})\n"
            "print([e.name for e in build_enforcers(cfg)], 'cloudflare' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "['nginx'] False", done.stderr


def test_unknown_driver_and_bad_settings_are_spanish_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="punto de bloqueo desconocido «iptables»; usa uno de: "
                       "nginx, nftables, cloudflare"):
        DRIVERS.load("iptables")
    # A point turned on but unusable is refused when difusor.toml is loaded, naming the key.
    for n, (toml, message) in enumerate([
            ('[shield]\nnftables_set = "difusor bloqueados"\n',
             "[shield] nftables_set = «difusor bloqueados»: se espera «familia tabla conjunto»"),
            ('[shield.cloudflare]\naccount_id = "a"\n',
             "[shield.cloudflare] necesita account_id y list_id"),
            ('[shield]\nnginx_include = "b.conf"\nnginx_reload = []\n',
             "[shield] nginx_reload está vacío: ¿cómo recargo nginx?")]):
        with pytest.raises(ConfigError) as err:
            cfg_with(tmp_path / str(n), toml)
        assert f"difusor.toml: {message}" in err.value.message
        assert err.value.exit_code == 3


def test_an_nginx_comment_keeps_the_latest_expiry_and_one_line_reasons(tmp_path: Path) -> None:
    cfg = cfg_with(tmp_path, '[shield]\nnginx_include = "b.conf"\nnginx_reload = ["true"]\n')
    [nginx] = build_enforcers(cfg)
    nginx.apply([Block("203.0.113.7/32", soon(), "a"), Block("198.51.100.9/24", soon(), "red\ncon salto"),
                 Block("203.0.113.7", soon(900), "la más larga gana")], attack_mode=False)
    text = (cfg.root / "b.conf").read_text()
    assert re.findall(r"^deny (\S+);", text, re.M) == ["198.51.100.0/24", "203.0.113.7"]
    assert "la más larga gana" in text and "red con salto" in text


# -- what every enforcement point must do ---------------------------------------------------------

ONE, NET = "203.0.113.7", "198.51.100.0/24"


class EnforcerContract:
    failure_hints: tuple[str, ...]  # parts of the Spanish line when the point refuses a change

    def held(self, enforcer: EnforcerBase) -> set[str]:
        """The keys the enforcement point holds now, as the point itself says."""
        raise NotImplementedError

    def break_it(self, enforcer: EnforcerBase) -> None:
        """Make the point refuse the next change."""
        raise NotImplementedError

    def test_it_holds_exactly_the_blocks_it_is_given(self, enforcer) -> None:
        assert self.held(enforcer) == set()
        enforcer.apply([Block(ONE, soon(), "una IP"), Block(NET, soon(), "una red")], False)
        assert self.held(enforcer) == {ONE, NET}
        enforcer.apply([Block(NET, soon(), "una red")], attack_mode=True)
        assert self.held(enforcer) == {NET}
        enforcer.apply([], False)
        assert self.held(enforcer) == set()
        assert enforcer.applied == 3
        assert len(self.lines) == 3 and all(x.startswith(f"escudo/{enforcer.name}: ")
                                            for x in self.lines)

    def test_keys_are_normalised_and_a_bad_one_is_skipped_not_fatal(self, enforcer) -> None:
        enforcer.apply([Block(f"{ONE}/32", soon(), "a"), Block("no-es-ip", soon(), "b"),
                        Block("198.51.100.9/24", soon(), "red\ncon salto"),
                        Block(ONE, soon(900), "la más larga gana")], attack_mode=False)
        assert self.held(enforcer) == {ONE, NET}
        assert any("no-es-ip" in x for x in self.lines)

    def test_the_same_blocks_again_change_nothing(self, enforcer) -> None:
        blocks = [Block(ONE, soon(), "una IP")]
        enforcer.apply(blocks, False)
        enforcer.apply(blocks, False)
        assert enforcer.applied == 1 and self.held(enforcer) == {ONE}

    def test_a_refused_change_is_one_spanish_line(self, enforcer) -> None:
        self.break_it(enforcer)
        with pytest.raises(ShieldError) as err:
            enforcer.apply([Block(ONE, soon(), "una IP")], attack_mode=False)
        assert "\n" not in err.value.message and err.value.exit_code == 8
        for hint in self.failure_hints:
            assert hint in err.value.message, err.value.message


class TestNginxContract(EnforcerContract):
    failure_hints = ("no pude recargar nginx", "no existe la orden «no-existe-esta-orden»")

    @pytest.fixture
    def enforcer(self, tmp_path: Path) -> Iterator[EnforcerBase]:
        cfg = cfg_with(tmp_path, '[shield]\nnginx_include = "b.conf"\nnginx_reload = ["true"]\n')
        self.lines: list[str] = []
        [nginx] = build_enforcers(cfg, log=self.lines.append)
        yield nginx
        nginx.close()

    def held(self, enforcer) -> set[str]:
        path = enforcer.path  # type: ignore[attr-defined]
        return set(re.findall(r"^deny (\S+);", path.read_text(), re.M)) if path.exists() else set()

    def break_it(self, enforcer) -> None:
        enforcer.reload = ["no-existe-esta-orden", "-s", "reload"]  # type: ignore[attr-defined]


# -- nginx --------------------------------------------------------------------------------------

class Nginx:
    """A private nginx over a published site, with the shield's include configured."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.prefix = root / "nginx"
        (self.prefix / "tmp").mkdir(parents=True)
        self.conf = self.prefix / "nginx.conf"
        argv = [NGINX, "-p", str(self.prefix), "-c", str(self.conf), "-e",
                str(self.prefix / "error.log")]
        self.argv = argv
        reload = json.dumps([*argv, "-s", "reload"])
        self.site = make_site(root / "d", f"[nginx]\nlisten = {self.port}\n[shield]\n"
                              f'nginx_include = "bloqueos.conf"\nnginx_reload = {reload}\n')
        big = os.urandom(3 * 1024 * 1024)
        self.big = big
        self.site.publisher.publish(self.site.write_package("p.zip", minimal_site(extra={
            "datos/grande.bin": big, "vacia/nota.txt": b"sin index"})))
        self.site.ledger.close()
        for path in [root, *root.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        self.include = root / "difusor-nginx.conf"
        self._listen(self.port)
        user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
        self.conf.write_text(user + standalone(self.include, self.prefix).replace(
            "worker_processes 1;", "worker_processes 1;\nworker_shutdown_timeout 30s;"))
        self.proc: subprocess.Popen[bytes] | None = None

    def _listen(self, port: int) -> None:
        self.port = port
        cfg = self.site.cfg.model_copy(update={"nginx": self.site.cfg.nginx.model_copy(
            update={"listen": port})})
        self.include.write_text(NginxConfig(cfg).render()
                                + "limit_rate_after 64k;\n")  # a download stays in flight

    def start(self) -> Nginx:
        # A free port can be taken by another socket before nginx binds it: then another one.
        for attempt in range(3):
            check = subprocess.run([*self.argv, "-t"], capture_output=True, text=True,
                                   timeout=30)
            assert check.returncode == 0, check.stderr
            self.proc = subprocess.Popen([*self.argv, "-g", "daemon off;"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True)
            deadline = time.monotonic() + 10
            while self.proc.poll() is None:
                try:
                    get_from("127.0.0.1", self.port, "/", timeout=1)
                    return self
                except OSError:
                    assert time.monotonic() < deadline, "nginx no contesta"
                    time.sleep(0.05)
            log = (self.prefix / "error.log").read_text(errors="replace")
            assert "Address already in use" in log and attempt < 2, log[-2000:]
            self._listen(free_port())
        raise AssertionError("unreachable")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)


@pytest.fixture
def nginx() -> Iterator[Nginx]:
    root = Path(tempfile.mkdtemp(prefix="difusor-escudo-"))  # nginx's workers (nobody) enter it
    root.chmod(0o755)
    server = Nginx(root)
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_without_the_include_setting_the_nginx_config_is_unchanged(tmp_path: Path) -> None:
    text = NginxConfig(cfg_with(tmp_path, "")).render()
    assert not re.search(r"^\s*include ", text, re.M)
    assert "@difusor_403" not in text and "error_page 403 =404 @difusor_404;" in text
    shielded = NginxConfig(cfg_with(tmp_path / "2", '[shield]\nnginx_include = "b.conf"\n'))
    assert shielded.render().count('b.con[f]";') == 1  # one server block without TLS


@needs_nginx
def test_nginx_starts_before_the_shield_ever_wrote_its_include(nginx: Nginx) -> None:
    text = NginxConfig(nginx.site.cfg).render()
    assert 'include "' + str(nginx.site.cfg.path("bloqueos.con")) + '[f]";' in text
    assert not nginx.site.cfg.path("bloqueos.conf").exists()
    nginx.start()
    assert get_from("127.0.0.9", nginx.port)[0] == 200


@needs_nginx
@pytest.mark.slow
def test_a_blocked_source_gets_403_others_200_and_unblock_restores(nginx: Nginx) -> None:
    nginx.start()
    lines: list[str] = []
    [enforcer] = build_enforcers(nginx.site.cfg, log=lines.append)
    until = soon()
    enforcer.apply([Block("127.0.0.9", until, "inundación desde una IP")], attack_mode=False)
    assert settles("127.0.0.9", nginx.port, 403) == 403
    assert "bloqueado" in get_from("127.0.0.9", nginx.port)[1].decode()
    assert get_from("127.0.0.9", nginx.port, "/")[0] == 403
    assert get_from("127.0.0.10", nginx.port)[0] == 200
    # A folder without index.html is still 404, as in the embedded server, not 403.
    assert get_from("127.0.0.10", nginx.port, "/vacia/")[0] == 404
    include = nginx.site.cfg.path("bloqueos.conf")
    text = include.read_text()
    assert text.startswith("# difusor") and "deny 127.0.0.9;" in text
    assert "inundación desde una IP" in text and "hasta 20" in text
    assert lines == ["escudo/nginx: 1 bloqueo aplicado" + lines[0].split("aplicado", 1)[1]]

    # The same state again: no rewrite, no reload.
    mtime = include.stat().st_mtime_ns
    enforcer.apply([Block("127.0.0.9", until, "inundación desde una IP")], attack_mode=False)
    assert include.stat().st_mtime_ns == mtime and len(lines) == 1

    enforcer.apply([Block("127.0.0.0/30", soon(), "red")], attack_mode=False)
    assert settles("127.0.0.2", nginx.port, 403) == 403
    assert get_from("127.0.0.9", nginx.port)[0] == 200
    enforcer.apply([], attack_mode=False)
    assert settles("127.0.0.2", nginx.port, 200) == 200
    assert "deny" not in include.read_text().replace("# difusor", "")


@needs_nginx
@pytest.mark.slow
def test_reload_is_graceful_for_requests_in_flight(nginx: Nginx) -> None:
    nginx.start()
    [enforcer] = build_enforcers(nginx.site.cfg)
    download: dict[str, object] = {}

    def slow_download() -> None:  # ≈ 3 MB at the 64 kB/s of limit_rate_after… throttled below
        try:
            download["result"] = get_from("127.0.0.20", nginx.port, "/datos/grande.bin", 30)
        except OSError as exc:
            download["error"] = exc

    outcomes: list[int | str] = []
    stop = threading.Event()

    def many_short() -> None:  # new connections all along, spread under limit_req's rate
        n = 0
        while not stop.is_set():
            n += 1
            try:
                outcomes.append(get_from(f"127.0.0.{30 + n % 10}", nginx.port, timeout=5)[0])
                time.sleep(0.01)
            except OSError as exc:
                outcomes.append(repr(exc))

    # limit_rate keeps the big download going across every reload below.
    conf = nginx.conf.read_text().replace("http {", "http {\n    limit_rate 1m;", 1)
    nginx.conf.write_text(conf)
    subprocess.run([*nginx.argv, "-s", "reload"], check=True, timeout=30)
    time.sleep(0.5)
    threads = [threading.Thread(target=slow_download), threading.Thread(target=many_short)]
    for t in threads:
        t.start()
    try:
        for i in range(5):
            time.sleep(0.3)
            enforcer.apply([Block(f"127.0.1.{i + 1}", soon(), "prueba")], attack_mode=False)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=40)
    assert "error" not in download, download
    status, body = download["result"]  # type: ignore[misc]
    assert status == 200 and body == nginx.big
    assert len(outcomes) > 20 and set(outcomes) == {200}, [o for o in outcomes if o != 200][:5]
    assert settles("127.0.1.5", nginx.port, 403) == 403


@needs_nginx
@pytest.mark.slow
def test_a_configuration_nginx_refuses_leaves_the_include_as_it_was(nginx: Nginx) -> None:
    nginx.start()
    [enforcer] = build_enforcers(nginx.site.cfg)
    enforcer.apply([Block("127.0.0.9", soon(), "uno")], attack_mode=False)
    assert settles("127.0.0.9", nginx.port, 403) == 403
    before = nginx.site.cfg.path("bloqueos.conf").read_text()
    nginx.conf.write_text(nginx.conf.read_text() + "esto no es nginx;\n")
    with pytest.raises(ShieldError, match="nginx rechaza la configuración") as err:
        enforcer.apply([Block("127.0.0.10", soon(), "dos")], attack_mode=False)
    assert "\n" not in err.value.message
    assert nginx.site.cfg.path("bloqueos.conf").read_text() == before
    assert settles("127.0.0.9", nginx.port, 403) == 403  # the running nginx kept its list


# -- nftables, in a network namespace of its own -------------------------------------------------

def _namespace_problem() -> str | None:
    """Why the nftables test cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "nftables: hace falta root (la prueba crea su propio espacio de red)"
    if not shutil.which("nft") and not os.path.exists("/usr/sbin/nft"):
        return "nftables: falta la orden nft (paquete nftables)"
    if not shutil.which("unshare"):
        return "nftables: falta unshare (util-linux) para aislar la prueba en su espacio de red"
    probe = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up && nft list ruleset"],
                           capture_output=True, text=True, timeout=30,
                           env={**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    if probe.returncode != 0:
        return ("nftables: este contenedor no permite espacios de red propios o nft en ellos "
                f"(unshare -n: {probe.stderr.strip()[:160] or probe.returncode})")
    return None


NETNS_DRILL = r"""
import json, socket, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
sys.path.insert(0, sys.argv[2])
from difusor import config
from difusor.shield.enforce.base import build_enforcers
from difusor.shield.model import Block

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a): pass

server = ThreadingHTTPServer(("127.0.0.1", 0), H)
port = server.server_address[1]
threading.Thread(target=server.serve_forever, daemon=True).start()

def reach(src):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.7, source_address=(src, 0)) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return s.recv(100).split(b" ")[1].decode()
    except OSError as exc:
        return type(exc).__name__

cfg = config.load(sys.argv[1])
[nft] = build_enforcers(cfg)
out = {"before": [reach("127.0.0.9"), reach("127.0.0.10")]}
nft.apply([Block("127.0.0.9", time.time() + 120, "inundación"),
           Block("127.0.2.0/24", time.time() + 2, "red corta")], False)
out["blocked"] = [reach("127.0.0.9"), reach("127.0.0.10"), reach("127.0.2.77")]
nft.apply([Block("127.0.0.9", time.time() + 120, "inundación"),
           Block("127.0.2.0/24", time.time() + 2, "red corta")], False)
out["idempotent_changes"] = nft.applied
time.sleep(3.2)  # the /24's own timeout lapses in the kernel, with no call from us
out["lapsed"] = reach("127.0.2.77")
nft.apply([], False)
out["unblocked"] = reach("127.0.0.9")
print(json.dumps(out))
"""


@pytest.mark.slow
def test_nftables_drops_the_blocked_source_in_the_kernel(tmp_path: Path) -> None:
    problem = _namespace_problem()
    if problem:
        pytest.skip(problem)
    cfg = cfg_with(tmp_path, '[shield]\nnftables_set = "inet difusor bloqueados"\n')
    script = tmp_path / "drill.py"
    script.write_text(NETNS_DRILL)
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', sys.executable,
         str(script), str(cfg.root / "difusor.toml"), str(ROOT / "src")],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["before"] == ["200", "200"]
    assert out["blocked"] == ["TimeoutError", "200", "TimeoutError"]  # dropped, not refused
    assert out["idempotent_changes"] == 1
    assert out["lapsed"] == "200" and out["unblocked"] == "200"


def test_without_nft_the_line_says_which_package(tmp_path: Path) -> None:
    from difusor.shield.enforce.nftables import NftablesEnforcer

    cfg = cfg_with(tmp_path, '[shield]\nnftables_set = "inet difusor bloqueados"\n')
    enforcer = NftablesEnforcer(cfg, nft="no-existe-nft")
    with pytest.raises(ShieldError, match="no encuentro «nft»"):
        enforcer.apply([Block("127.0.0.9", soon(), "x")], attack_mode=False)


# A double of the ``nft`` command: one JSON file holds the sets (element → expiry) and the rules;
# it takes the commands the driver sends and answers ``-j list`` as nft does. "--fail" in the
# state makes it refuse like nft without CAP_NET_ADMIN.
NFT_DOUBLE = r"""
import json, re, sys, time
state_file = sys.argv[0] + ".json"
try:
    state = json.load(open(state_file))
except FileNotFoundError:
    state = {"sets": {}, "rules": [], "fail": False}
if state["fail"]:
    sys.exit("Error: Could not process rule: Operation not permitted")
args = sys.argv[1:]
now = time.time()
if args[:2] == ["-f", "-"]:
    for line in sys.stdin.read().splitlines():
        if m := re.match(r"add set \S+ \S+ (\S+) ", line):
            state["sets"].setdefault(m[1], {})
        elif m := re.match(r"add rule .* @(\S+) drop$", line):
            state["rules"].append(m[1])
        elif m := re.match(r"add element \S+ \S+ (\S+) \{ (\S+) timeout (\d+)s", line):
            state["sets"][m[1]][m[2]] = now + int(m[3])
        elif m := re.match(r"delete element \S+ \S+ (\S+) \{ (\S+) \}", line):
            del state["sets"][m[1]][m[2]]
elif args[:3] == ["-j", "list", "chain"]:
    rules = [{"rule": {"expr": [{"match": {"right": f"@{s}"}}]}} for s in state["rules"]]
    print(json.dumps({"nftables": rules}))
elif args[:3] == ["-j", "list", "set"]:
    elems = []
    for key, until in state["sets"][args[5]].items():
        addr, _, bits = key.partition("/")
        val = {"prefix": {"addr": addr, "len": int(bits)}} if bits else addr
        elems.append({"elem": {"val": val, "expires": round(until - now)}})
    print(json.dumps({"nftables": [{"set": {"name": args[5], "elem": elems}}]}))
json.dump(state, open(state_file, "w"))
"""


class TestNftablesContract(EnforcerContract):
    failure_hints = ("nft rechazó el cambio", "CAP_NET_ADMIN")

    @pytest.fixture
    def enforcer(self, tmp_path: Path) -> EnforcerBase:
        from difusor.shield.enforce.nftables import NftablesEnforcer

        nft = tmp_path / "nft"
        nft.write_text(f"#!{sys.executable}\n{NFT_DOUBLE}")
        nft.chmod(0o755)
        cfg = cfg_with(tmp_path, '[shield]\nnftables_set = "inet difusor bloqueados"\n')
        self.lines: list[str] = []
        return NftablesEnforcer(cfg, log=self.lines.append, nft=str(nft))

    def _state(self, enforcer) -> dict:
        path = Path(enforcer.nft + ".json")
        return json.loads(path.read_text()) if path.exists() else {"sets": {}, "rules": []}

    def held(self, enforcer) -> set[str]:
        state = self._state(enforcer)
        if state["sets"]:  # once made: both families, each with its drop rule
            assert sorted(state["rules"]) == ["bloqueados", "bloqueados6"]
        return {key for elements in state["sets"].values() for key in elements}

    def break_it(self, enforcer) -> None:
        state = {**self._state(enforcer), "fail": True}
        Path(enforcer.nft + ".json").write_text(json.dumps(state))


# -- Cloudflare: the real SDK against a local double of the Lists API ---------------------------

ACCOUNT, LIST = "023e105f4ecef8ad9ca31a8372d0c353", "2c0fc9fa937b11eaa1b71c4d701ab86e"
ITEMS = f"/client/v4/accounts/{ACCOUNT}/rules/lists/{LIST}/items"
OPS = f"/client/v4/accounts/{ACCOUNT}/rules/lists/bulk_operations/"


class CloudflareListsDouble:
    """A stand-in for Cloudflare's Lists API on loopback: a list that really changes, writes that
    are asynchronous (an operation is «pending» on its first status check), cursor pages of
    ``page`` items, scripted failures first; every request recorded."""

    def __init__(self, page: int = 3) -> None:
        self.items: dict[str, dict[str, str]] = {}
        self.ops: dict[str, int] = {}  # operation id → status checks so far
        self.script: list[tuple[int, dict, dict[str, str]]] = []
        self.seen: list[tuple[str, str, dict[str, list[str]], object, dict[str, str]]] = []
        self.page = page
        self.pending_write = False
        lock = threading.Lock()
        double = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                body = json.loads(raw) if raw else None
                with lock:
                    double.seen.append((self.command, parts.path, parse_qs(parts.query), body,
                                        {k.lower(): v for k, v in self.headers.items()}))
                    status, doc, headers = (double.script.pop(0) if double.script
                                            else double.answer(self.command, parts.path,
                                                               parse_qs(parts.query), body))
                payload = json.dumps(doc).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = handle_any

            def log_message(self, *_args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/client/v4"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    @staticmethod
    def ok(result: object, **extra: object) -> tuple[int, dict, dict[str, str]]:
        return 200, {"success": True, "errors": [], "messages": [], "result": result, **extra}, {}

    def answer(self, method: str, path: str, query: dict[str, list[str]], body: object
               ) -> tuple[int, dict, dict[str, str]]:
        if path == ITEMS and method == "GET":
            ordered = sorted(self.items.values(), key=lambda i: i["id"])
            start = int(query.get("cursor", ["0"])[0])
            chunk = ordered[start:start + self.page]
            after = str(start + self.page) if start + self.page < len(ordered) else None
            return self.ok(chunk, result_info={"cursors": {"after": after} if after else {}})
        if path == ITEMS and method in ("POST", "DELETE"):
            if self.pending_write:  # what Cloudflare does while another write is pending
                return 429, {"success": False, "errors": [{"code": 10000, "message":
                             "pending bulk operation"}], "messages": [], "result": None}, {}
            if method == "POST":
                for item in body:  # type: ignore[union-attr]
                    n = f"{len(self.items) + len(self.ops) + 1:032x}"
                    self.items[n] = {"id": n, "ip": item["ip"], "comment": item.get("comment", ""),
                                     "created_on": "2024-12-08T20:00:00Z",
                                     "modified_on": "2024-12-08T20:00:00Z"}
            else:
                for item in body["items"]:  # type: ignore[index]
                    self.items.pop(item["id"], None)
            op = f"op{len(self.ops) + 1}"
            self.ops[op] = 0
            self.pending_write = True
            return self.ok({"operation_id": op})
        if path.startswith(OPS) and method == "GET":
            op = path.rsplit("/", 1)[1]
            self.ops[op] += 1
            if self.ops[op] == 1:
                return self.ok({"id": op, "status": "pending"})
            self.pending_write = False
            return self.ok({"id": op, "status": "completed", "completed": "2024-12-08T20:00:01Z"})
        return 404, {"success": False, "errors": [{"code": 7003, "message": "Could not route"}],
                     "messages": [], "result": None}, {}

    def add_foreign(self, ip: str, comment: str = "oficina del operador") -> None:
        n = f"f{len(self.items):031x}"
        self.items[n] = {"id": n, "ip": ip, "comment": comment, "created_on": "x",
                         "modified_on": "x"}

    def writes(self) -> list[tuple[str, object]]:
        return [(m, b) for m, p, _q, b, _h in self.seen if p == ITEMS and m != "GET"]

    def __enter__(self) -> CloudflareListsDouble:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def lists_api() -> Iterator[CloudflareListsDouble]:
    with CloudflareListsDouble() as double:
        yield double


def cloudflare(tmp_path: Path, api: CloudflareListsDouble, log=None):
    from difusor.shield.enforce.cloudflare import CloudflareEnforcer

    cfg = cfg_with(tmp_path, f'[shield.cloudflare]\naccount_id = "{ACCOUNT}"\nlist_id = "{LIST}"\n'
                   f'token_env = "CF_LISTAS"\napi_url = "{api.url}"\n')
    enforcer = CloudflareEnforcer.from_config(cfg, env={"CF_LISTAS": "cf-secreto"}, log=log)
    enforcer.sleep = lambda _s: None  # the double answers at once; no need to wait for real
    return enforcer


class TestCloudflareContract(EnforcerContract):
    failure_hints = ("Cloudflare rechazó el token (403; 10000: Authentication error)",
                     "Listas de filtros de cuenta")

    @pytest.fixture
    def enforcer(self, tmp_path: Path, lists_api: CloudflareListsDouble) -> Iterator[EnforcerBase]:
        self.api = lists_api
        self.lines: list[str] = []
        enforcer = cloudflare(tmp_path, lists_api, log=self.lines.append)
        yield enforcer
        enforcer.close()

    def held(self, enforcer) -> set[str]:
        return {i["ip"] for i in self.api.items.values() if i["comment"].startswith("difusor")}

    def break_it(self, enforcer) -> None:
        self.api.script.append((403, {"success": False, "errors": [
            {"code": 10000, "message": "Authentication error"}], "messages": [], "result": None}, {}))


@pytest.mark.slow
def test_cloudflare_list_is_synced_with_the_real_sdk_call_shapes(tmp_path: Path, lists_api) -> None:
    lists_api.add_foreign("192.0.2.1")
    cf = cloudflare(tmp_path, lists_api)
    try:
        cf.apply([Block("203.0.113.7", soon(), "inundación desde una IP"),
                  Block("198.51.100.0/24", soon(), "red /24"),
                  Block("192.0.2.1", soon(), "ya está a mano"),
                  Block("2001:db8::1", soon(), "IPv6")], attack_mode=False)
        method, path, _q, _body, headers = lists_api.seen[0]
        assert (method, path) == ("GET", ITEMS)
        assert headers["authorization"] == "Bearer cf-secreto"
        [(post, added)] = lists_api.writes()
        assert post == "POST" and isinstance(added, list)
        assert [a["ip"] for a in added] == ["198.51.100.0/24", "203.0.113.7", "2001:db8::/64"]
        assert added[1]["comment"].startswith("difusor: inundación desde una IP (hasta 20")
        # The operation is awaited: its status is asked until it is completed.
        ops = [p for m, p, *_ in lists_api.seen if p.startswith(OPS)]
        assert ops == [OPS + "op1", OPS + "op1"]

        lists_api.seen.clear()
        cf.apply([Block("198.51.100.0/24", soon(), "red /24"),
                  Block("2001:db8::1", soon(), "IPv6")], attack_mode=False)
        [(delete, gone)] = lists_api.writes()
        ip_of = {i["id"]: i["ip"] for i in lists_api.items.values()}
        assert delete == "DELETE" and list(gone) == ["items"] and len(gone["items"]) == 1
        assert sorted(ip_of.values()) == ["192.0.2.1", "198.51.100.0/24", "2001:db8::/64"]

        lists_api.seen.clear()  # the same state again: read only, nothing written
        cf.apply([Block("198.51.100.0/24", soon(), "red /24"),
                  Block("2001:db8::1", soon(), "IPv6")], attack_mode=False)
        assert lists_api.writes() == [] and {m for m, *_ in lists_api.seen} == {"GET"}
        cf.apply([], attack_mode=False)  # the operator's own entry stays
        assert [i["ip"] for i in lists_api.items.values()] == ["192.0.2.1"]
    finally:
        cf.close()


def test_cloudflare_reads_every_page_of_the_list(tmp_path: Path, lists_api) -> None:
    cf = cloudflare(tmp_path, lists_api)
    try:
        wanted = [Block(f"203.0.113.{i}", soon(), "x") for i in range(1, 9)]
        cf.apply(wanted, attack_mode=False)
        lists_api.seen.clear()
        cf.apply(wanted, attack_mode=False)
        cursors = [q.get("cursor") for m, p, q, *_ in lists_api.seen if p == ITEMS]
        assert cursors == [None, ["3"], ["6"]] and lists_api.writes() == []
    finally:
        cf.close()


def test_cloudflare_waits_out_a_429_then_writes(tmp_path: Path, lists_api) -> None:
    waits: list[float] = []
    cf = cloudflare(tmp_path, lists_api)
    cf.sleep = waits.append
    lists_api.script += [CloudflareListsDouble.ok([], result_info={"cursors": {}}),
                         (429, {"success": False, "errors": [], "messages": [], "result": None},
                          {"Retry-After": "2"})]
    try:
        cf.apply([Block("203.0.113.7", soon(), "x")], attack_mode=False)
    finally:
        cf.close()
    assert [m for m, *_ in lists_api.seen[:3]] == ["GET", "POST", "POST"]
    assert waits[0] == 2.0 and [i["ip"] for i in lists_api.items.values()] == ["203.0.113.7"]


def test_cloudflare_unknown_list_and_failed_operation(tmp_path: Path, lists_api) -> None:
    cf = cloudflare(tmp_path, lists_api)
    try:
        lists_api.script.append((404, {"success": False, "errors": [
            {"code": 10001, "message": "list not found"}], "messages": [], "result": None}, {}))
        with pytest.raises(ShieldError, match=r"no encuentra la lista .* revisa"):
            cf.apply([Block("203.0.113.7", soon(), "x")], attack_mode=False)
        lists_api.script += [CloudflareListsDouble.ok([], result_info={"cursors": {}}),
                             CloudflareListsDouble.ok({"operation_id": "op9"}),
                             CloudflareListsDouble.ok({"id": "op9", "status": "failed",
                                                       "completed": "x", "error": "ip inválida"})]
        with pytest.raises(ShieldError, match=r"no aplicó el cambio .*: ip inválida"):
            cf.apply([Block("203.0.113.7", soon(), "x")], attack_mode=False)
    finally:
        cf.close()
