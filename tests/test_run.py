"""``difusor run``: SFTP in, published, served; parts restarted; a clean stop; nothing lost."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import paramiko
import pytest
from conftest import alive, answers, descendants, free_port, listens, make_site

from difusor.demo.authority import make_key
from difusor.demo.election import SyntheticElection
from difusor.demo.packages import write_package
from difusor.receive.inbox import deliver


class Running:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.web, self.sftp = free_port(), free_port()
        self.key = root / "autoridad" / "id_ed25519"
        public = make_key(self.key)
        site = make_site(root, port=self.web)
        site.ledger.close()
        (root / "keys" / "authorized_keys").write_text(public.read_text())
        text = site.config_path.read_text()
        site.config_path.write_text(text.replace('listen = "127.0.0.1:2222"',
                                                 f'listen = "127.0.0.1:{self.sftp}"'))
        self.config = site.config_path
        self.url = f"http://127.0.0.1:{self.web}/"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Running:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "difusor", "run", "--config", str(self.config)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.wait(lambda: self._answers(), 30, "el servidor web responde")
        self.wait(lambda: self._sftp_listens(), 30, "el SFTP escucha")
        return self

    def _sftp_listens(self) -> bool:
        return listens(self.sftp)

    def _answers(self) -> bool:
        return answers(self.url)

    def stop(self) -> tuple[float, str]:
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        return time.monotonic() - started, out

    def upload(self, package: Path) -> None:
        transport = paramiko.Transport(("127.0.0.1", self.sftp))
        transport.connect(username="iem", pkey=paramiko.Ed25519Key.from_private_key_file(str(self.key)))
        try:
            sftp = paramiko.SFTPClient.from_transport(transport)
            assert sftp is not None
            sftp.put(str(package), package.name)
        finally:
            transport.close()

    def corte(self) -> str | None:
        try:
            r = httpx.get(self.url + "_difusor/status.json", timeout=2)
        except httpx.TransportError:
            return None
        corte = json.loads(r.content)["corte"]
        return corte["fecha_hora"] if corte else None

    @staticmethod
    def wait(predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := predicate():
                return value
            time.sleep(0.05)
        raise AssertionError(f"no ocurrió a tiempo: {what}")


@pytest.fixture
def running(tmp_path: Path):
    r = Running(tmp_path / "difusor")
    yield r
    if r.proc and r.proc.poll() is None:
        os.killpg(r.proc.pid, signal.SIGKILL)
        r.proc.wait()
    if r.proc and r.proc.stdout:
        r.proc.stdout.close()


@pytest.mark.slow
def test_sftp_upload_goes_live_byte_identical_and_run_stops_cleanly(running: Running,
                                                                      tmp_path: Path) -> None:
    running.start()
    cortes = list(SyntheticElection().cortes(2))
    full = write_package(cortes[0], tmp_path / "pk")
    running.upload(full)
    running.wait(lambda: running.corte() == cortes[0].when.isoformat(), 20, "primer corte")
    for path, data in cortes[0].files.items():
        r = httpx.get(running.url + path, headers={"Accept-Encoding": "identity"})
        assert r.status_code == 200 and hashlib.sha256(r.content).digest() == \
            hashlib.sha256(data).digest(), path
    inc = write_package(cortes[1], tmp_path / "pk", kind="incremental")
    running.upload(inc)
    running.wait(lambda: running.corte() == cortes[1].when.isoformat(), 20, "segundo corte")
    seconds, out = running.stop()
    assert seconds < 10, out
    assert running.proc is not None and running.proc.returncode == 0, out
    assert "difusor detenido" in out
    assert "Warning" not in out, out  # no third-party library noise on the operator's terminal
    with pytest.raises(httpx.TransportError):
        httpx.get(running.url, timeout=1)


@pytest.mark.slow
def test_a_crashed_web_server_is_restarted_and_logged(running: Running, tmp_path: Path) -> None:
    running.start()
    corte = next(iter(SyntheticElection().cortes(1)))
    running.upload(write_package(corte, tmp_path / "pk"))
    running.wait(lambda: running.corte() is not None, 20, "corte en línea")
    serve = subprocess.run(["pgrep", "-f", f"difusor serve --config {running.config}"],
                           capture_output=True, text=True).stdout.split()
    assert serve, "no encontré el proceso del servidor web"
    os.killpg(int(serve[0]), signal.SIGKILL)  # the server and its workers, as a crash would
    running.wait(lambda: not running._answers(), 5, "el servidor cae")
    running.wait(lambda: running.corte() is not None, 30, "el servidor vuelve")
    _, out = running.stop()
    assert "servidor web" in out and "se reinicia" in out, out
    from difusor.ledger import Ledger

    with Ledger(running.root / "state" / "ledger.sqlite") as ledger:
        assert ledger.events("service_restarted")


@pytest.mark.slow
def test_a_package_that_arrived_while_stopped_is_published_on_start(running: Running,
                                                                     tmp_path: Path) -> None:
    corte = next(iter(SyntheticElection().cortes(1)))
    package = write_package(corte, tmp_path / "pk")
    deliver(package, running.root / "state" / "inbox")  # as a receiver left it before a stop
    running.start()
    running.wait(lambda: running.corte() == corte.when.isoformat(), 20, "publicado al arrancar")
    running.stop()


@pytest.mark.slow
def test_sigkill_of_run_leaves_no_web_server_behind(running: Running) -> None:
    running.start()
    assert running.proc is not None
    below = running.wait(lambda: len(descendants(running.proc.pid)) >= 3 and descendants(running.proc.pid),
                         20, "el servidor web y sus procesos")
    started = time.monotonic()
    running.proc.kill()  # SIGKILL to `difusor run` alone, as the OOM killer would
    running.wait(lambda: not any(alive(pid) for pid in below), 10, "los procesos del servidor terminan")
    gone_after = time.monotonic() - started
    running.proc.communicate()
    # Measured: 50-160 ms (PDEATHSIG); at worst the watch (½ s) + lifeline.STOP_GRACE, then SIGKILL.
    assert gone_after < 5, gone_after
    with pytest.raises(httpx.TransportError):
        httpx.get(running.url + "_difusor/health", timeout=1)
    running.start()  # a new run binds the port it left and answers alone
    _, out = running.stop()
    assert running.proc.returncode == 0, out


@pytest.mark.slow
def test_a_second_run_on_the_same_state_is_refused(running: Running) -> None:
    running.start()
    second = subprocess.run([sys.executable, "-m", "difusor", "run", "--config", str(running.config)],
                            capture_output=True, text=True, timeout=30)
    assert second.returncode == 5, second.stderr
    assert "ya hay un «difusor run» en marcha" in second.stderr and str(running.proc.pid) in second.stderr
    assert "Traceback" not in second.stderr
    assert running._answers()  # the first one is untouched
