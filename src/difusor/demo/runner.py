"""``difusor demo``: a synthetic authority publishing Irimbo's cortes to a served difusor.

Everything runs on loopback in a fresh ``demo-state/`` folder: the embedded server in its own
process, and this process acting as the authority, cutting a full package and then incremental
ones on the corte cadence (10 minutes; ``--fast``: a few seconds) and publishing each one.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from difusor import config as config_mod
from difusor.demo.election import LABEL, SyntheticElection
from difusor.demo.packages import write_package
from difusor.errors import DifusorError
from difusor.ledger import Ledger
from difusor.paths import StateLayout
from difusor.pipeline import Publisher

CORTES = 18  # three hours of election night


def free_port(preferred: int, host: str = "127.0.0.1") -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise DifusorError("no hay puertos libres en 127.0.0.1")


def prepare(folder: Path, port: int) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "keys").mkdir()
    (folder / "keys" / "authorized_keys").write_text("")
    path = folder / config_mod.DEFAULT_CONFIG
    path.write_text(config_mod.render_default(
        web_listen=f"127.0.0.1:{port}", sftp_listen=f"127.0.0.1:{free_port(2222)}",
        name="PREP Irimbo 2024 (demostración, datos sintéticos)",
    ))
    return path


def wait_http(url: str, timeout: float = 20.0) -> None:
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


def run_demo(folder: Path, *, fast: bool, say: Callable[[str], None]) -> None:
    port = free_port(8080)
    cfg_path = prepare(folder, port)
    cfg = config_mod.load(cfg_path)
    cadence = timedelta(seconds=5) if fast else timedelta(minutes=10)
    election = SyntheticElection(cadence=timedelta(minutes=10))
    server = subprocess.Popen(
        [sys.executable, "-m", "difusor", "serve", "--config", str(cfg_path)],
        start_new_session=True,
    )
    stop = {"now": False}

    def _stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_http(url + "_difusor/health")
        say(f"[bold]{LABEL}[/]")
        say(f"Sitio del difusor: [link={url}]{url}[/link]  (Ctrl-C para terminar)")
        with Ledger(StateLayout(cfg.state_dir).ledger) as ledger:
            publisher = Publisher(cfg, ledger)
            packages = folder / "paquetes"
            for n, corte in enumerate(election.cortes(CORTES)):
                if n and _sleep(cadence.total_seconds(), stop):
                    break
                kind = "full" if n == 0 else "incremental"
                pkg = write_package(corte, packages, kind=kind, sidecar=True)
                outcome = publisher.publish(pkg)
                label = "completo" if n == 0 else "incremental"
                say(f"{time.strftime('%H:%M:%S')}  paquete {pkg.name} ({label}): {outcome.message}")
            else:
                say("La autoridad terminó de enviar cortes; el sitio sigue en línea (Ctrl-C).")
                while not stop["now"]:
                    time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        say("Demostración terminada.")


def _sleep(seconds: float, stop: dict[str, bool]) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if stop["now"]:
            return True
        time.sleep(0.2)
    return stop["now"]
