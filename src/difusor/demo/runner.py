"""``difusor demo``: the whole difusor on loopback, fed by a synthetic authority over SFTP.

A fresh ``demo-state/`` folder gets a config and an authority key; ``difusor run`` starts in its
own process (SFTP receiver, publisher, web server); this process plays the authority — a full
package, then incremental ones on the corte cadence (10 minutes; ``--fast``: a few seconds),
each uploaded by SFTP — and a few simulated visitors browse the site.
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
from datetime import datetime, timedelta
from pathlib import Path

from difusor import config as config_mod
from difusor.demo.authority import make_key, upload
from difusor.demo.election import LABEL, SyntheticElection
from difusor.demo.packages import write_package
from difusor.demo.visitors import visitors
from difusor.errors import DifusorError

CORTES = 18  # three hours of election night
VISITORS = 12


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
    path.write_text(config_mod.render_default(
        web_listen=f"127.0.0.1:{web_port}", sftp_listen=f"127.0.0.1:{sftp_port}",
        name="PREP Irimbo 2024 (demostración, datos sintéticos)",
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


def live_corte(base_url: str) -> str | None:
    try:
        with urllib.request.urlopen(base_url + "_difusor/status.json", timeout=2) as r:
            corte = json.load(r)["corte"]
    except (OSError, ValueError, KeyError):
        return None
    return corte["fecha_hora"] if corte else None


def run_demo(folder: Path, *, fast: bool, say: Callable[[str], None], cortes: int = CORTES) -> None:
    web_port, sftp_port = free_port(8080), free_port(2222)
    cfg_path = prepare(folder, web_port, sftp_port)
    cfg = config_mod.load(cfg_path)
    cadence = timedelta(seconds=5) if fast else timedelta(minutes=10)
    election = SyntheticElection(cadence=timedelta(minutes=10))
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
    key = folder / "autoridad" / "id_ed25519"
    try:
        wait_http(url + "_difusor/health")
        wait_port("127.0.0.1", sftp_port)
        say(f"[bold]{LABEL}[/]")
        say(f"Sitio del difusor: [link={url}]{url}[/link]  (Ctrl-C para terminar)")
        say(f"La autoridad sintética sube por SFTP a {cfg.sftp.user}@127.0.0.1:{sftp_port}")
        visitors(url, VISITORS, 5.0 if fast else 60.0, stop)
        packages = folder / "paquetes"
        for n, corte in enumerate(election.cortes(cortes)):
            if n and stop.wait(cadence.total_seconds()):
                break
            kind = "full" if n == 0 else "incremental"
            pkg = write_package(corte, packages, kind=kind, sidecar=True)
            started = time.monotonic()
            upload(pkg, host="127.0.0.1", port=sftp_port, user=cfg.sftp.user, key=key,
                   sidecar=pkg.with_name(pkg.name + ".sha256"))
            uploaded = time.monotonic()
            label = "completo" if n == 0 else "incremental"
            if _await_corte(url, corte.when, stop):
                say(f"{time.strftime('%H:%M:%S')}  corte {corte.when:%H:%M} ({label}, "
                    f"{pkg.stat().st_size / 1024:.0f} KB) subido en {uploaded - started:.2f} s, "
                    f"en línea {(time.monotonic() - uploaded) * 1000:.0f} ms después")
            elif not stop.is_set():
                say(f"{time.strftime('%H:%M:%S')}  el corte {corte.when:%H:%M} no quedó en línea; "
                    f"revisa {folder / 'state' / 'logs' / 'difusor.log'}")
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


def _await_corte(url: str, when: datetime, stop: threading.Event, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        live = live_corte(url)
        if live and datetime.fromisoformat(live) == when:
            return True
        time.sleep(0.02)
    return False
