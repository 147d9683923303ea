"""``difusor demo``: the whole difusor on loopback, fed by a synthetic authority over SFTP.

A fresh ``demo-state/`` folder gets a config (a test site and an official site, and a calendar
whose simulacro is on now) and an authority key; ``difusor run`` starts in its own process (SFTP
receiver, publisher, web server). This process plays the authority and the operator: a short
simulacro goes to the test site, the operator sets the official phase, then the night — a full
package, then incremental ones on the corte cadence (10 minutes; ``--fast``: a few seconds), the
same corte ids as the simulacro's — while a few simulated visitors browse the official site.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncssh

from difusor import config as config_mod
from difusor.demo.authority import make_key, upload
from difusor.demo.election import LABEL, Corte, SyntheticElection
from difusor.demo.packages import write_package
from difusor.demo.visitors import visitors
from difusor.errors import DifusorError

CORTES = 18  # three hours of election night
SIMULACRO_CORTES = 2  # the drill before the night, always quick
VISITORS = 12
TEST_HOST = "prueba.localhost"  # browsers send *.localhost to loopback by themselves


def free_port(preferred: int, host: str = "127.0.0.1") -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise DifusorError("no hay puertos libres en 127.0.0.1")


def prepare(folder: Path, web_port: int, sftp_port: int) -> Path:
    """A fresh demo folder: config, the authority's key authorised, state folders."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    public = make_key(folder / "autoridad" / "id_ed25519")
    (folder / "keys").mkdir()
    shutil.copyfile(public, folder / "keys" / "authorized_keys")
    path = folder / config_mod.DEFAULT_CONFIG
    now = datetime.now(UTC).replace(microsecond=0)
    start = now + timedelta(hours=1)  # the operator brings it forward after the drill
    path.write_text(config_mod.render_default(
        web_listen=f"127.0.0.1:{web_port}", sftp_listen=f"127.0.0.1:{sftp_port}",
        name="PREP Irimbo 2024 (demostración, datos sintéticos)",
        operation_start=start.isoformat(), operation_end=(start + timedelta(hours=6)).isoformat(),
        simulacros=[config_mod.SimulacroWindow(
            name="Simulacro de la demostración", start=(now - timedelta(minutes=1)).isoformat(),
            end=start.isoformat())],
        sites={"prueba": config_mod.SiteEntry(role="prueba",
                                              url=f"http://{TEST_HOST}:{web_port}"),
               "oficial": config_mod.SiteEntry(role="oficial", url=f"http://127.0.0.1:{web_port}",
                                               hosts=["127.0.0.1", "localhost"])},
    ))
    return path


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answers (503 before the first corte)
        except OSError:
            time.sleep(0.1)
    raise DifusorError(f"el servidor no respondió en {url}")


def wait_port(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise DifusorError(f"el SFTP no respondió en {host}:{port}")


def live_corte(base_url: str, host: str | None = None) -> str | None:
    request = urllib.request.Request(base_url + "_difusor/status.json",
                                     headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=2) as r:
            corte = json.load(r)["corte"]
    except (OSError, ValueError, KeyError):
        return None
    return corte["fecha_hora"] if corte else None


class _Authority:
    """Uploads a corte by SFTP and says when the site shows it."""

    def __init__(self, folder: Path, cfg: config_mod.Config, sftp_port: int, url: str,
                 say: Callable[[str], None], stop: threading.Event) -> None:
        self.folder, self.cfg, self.port, self.url = folder, cfg, sftp_port, url
        self.say, self.stop = say, stop

    def send(self, corte: Corte, *, full: bool, host: str | None, site: str) -> None:
        pkg = write_package(corte, self.folder / "paquetes" / site,
                            kind="full" if full else "incremental", sidecar=True)
        started = time.monotonic()
        try:
            upload(pkg, host="127.0.0.1", port=self.port, user=self.cfg.sftp.user,
                   key=self.folder / "autoridad" / "id_ed25519",
                   sidecar=pkg.with_name(pkg.name + ".sha256"))
        except (OSError, asyncssh.Error) as exc:  # the demo goes on, as the authority would
            self.say(f"{time.strftime('%H:%M:%S')}  la subida de {pkg.name} falló: {exc}")
            return
        uploaded = time.monotonic()
        label = "completo" if full else "incremental"
        if _await_corte(self.url, corte.when, self.stop, host):
            self.say(f"{time.strftime('%H:%M:%S')}  ({site}) corte {corte.when:%H:%M} ({label}, "
                     f"{pkg.stat().st_size / 1024:.0f} KB) subido en {uploaded - started:.2f} s, "
                     f"en línea {(time.monotonic() - uploaded) * 1000:.0f} ms después")
        elif not self.stop.is_set():
            self.say(f"{time.strftime('%H:%M:%S')}  el corte {corte.when:%H:%M} no quedó en línea "
                     f"en {site}; revisa {self.folder / 'state' / 'logs' / 'difusor.log'}")


def run_demo(folder: Path, *, fast: bool, say: Callable[[str], None], cortes: int = CORTES) -> None:
    web_port, sftp_port = free_port(8080), free_port(2222)
    cfg_path = prepare(folder, web_port, sftp_port)
    cfg = config_mod.load(cfg_path)
    cadence = timedelta(seconds=5) if fast else timedelta(minutes=10)
    election = SyntheticElection(cadence=timedelta(minutes=10))
    drill = SyntheticElection(cadence=timedelta(minutes=10), seed=1111)  # other numbers
    system = subprocess.Popen(
        [sys.executable, "-m", "difusor", "run", "--config", str(cfg_path)],
        start_new_session=True,
    )
    stop = threading.Event()
    # Ctrl-C and SIGTERM both end the demo through `stop`, explicitly: a SIGINT ignored by whoever
    # started us (a background job of a script) would otherwise never raise KeyboardInterrupt.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    url = f"http://127.0.0.1:{web_port}/"
    authority = _Authority(folder, cfg, sftp_port, url, say, stop)
    try:
        wait_http(url + "_difusor/health")
        wait_port("127.0.0.1", sftp_port)
        say(f"[bold]{LABEL}[/]")
        say(f"Sitio oficial: [link={url}]{url}[/link]  (Ctrl-C para terminar)")
        test_url = f"http://{TEST_HOST}:{web_port}/"
        say(f"Sitio de prueba: [link={test_url}]{test_url}[/link]")
        say(f"La autoridad sintética sube por SFTP a {cfg.sftp.user}@127.0.0.1:{sftp_port}")
        say("Simulacro (fase del calendario): sus cortes van al sitio de prueba")
        for n, corte in enumerate(drill.cortes(SIMULACRO_CORTES)):
            if stop.is_set():
                break
            authority.send(corte, full=n == 0, host=TEST_HOST, site="prueba")
        if not stop.is_set():
            _official_phase(cfg)
            say(f"El operador fija la fase oficial: difusor phase --set oficial --config {cfg_path}")
            say("Jornada: los mismos identificadores de corte van al sitio oficial, sin --force "
                "(difusor simulacro reset --yes vaciaría el de prueba)")
        visitors(url, VISITORS, 5.0 if fast else 60.0, stop)
        for n, corte in enumerate(election.cortes(cortes)):
            if stop.is_set() or (n and stop.wait(cadence.total_seconds())):
                break
            authority.send(corte, full=n == 0, host=None, site="oficial")
        else:
            say("La autoridad terminó de enviar cortes; el sitio sigue en línea (Ctrl-C).")
            while not stop.wait(0.5):
                pass
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        if system.poll() is None:
            system.send_signal(signal.SIGTERM)
            try:
                system.wait(timeout=15)
            except subprocess.TimeoutExpired:
                system.kill()
        say("Demostración terminada.")


def _official_phase(cfg: config_mod.Config) -> None:
    from difusor.ledger import Ledger
    from difusor.paths import StateLayout
    from difusor.sites.phase import set_phase

    with Ledger(StateLayout(cfg.state_dir).ledger) as ledger:
        set_phase(ledger, "oficial", "demostración")


def _await_corte(url: str, when: datetime, stop: threading.Event, host: str | None,
                 timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        live = live_corte(url, host)
        if live and datetime.fromisoformat(live) == when:
            return True
        time.sleep(0.02)
    return False
