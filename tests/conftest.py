"""Shared fixtures: a fresh difusor folder, a publisher, packages, a real server process."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from difusor import config as config_mod
from difusor.demo.election import SyntheticElection
from difusor.demo.packages import archive_bytes
from difusor.ledger import Ledger
from difusor.paths import StateLayout
from difusor.ports import unused_port as free_port  # (below the clients' port range)
from difusor.publish.publisher import Publisher
from difusor.store.layout import StoreLayout

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


def realdata(name: str) -> Path:
    """A folder of ../shared/realdata, or skip the test cleanly when it is absent."""
    path = Path(os.environ.get("DIFUSOR_REALDATA", REALDATA)) / name
    if not path.exists():
        pytest.skip(f"datos reales ausentes: {path}")
    return path


@dataclass
class Site:
    """A difusor folder made by ``difusor init``-equivalent code, ready to publish into."""

    root: Path
    config_path: Path
    cfg: config_mod.Config
    ledger: Ledger
    publisher: Publisher

    @property
    def state(self) -> StateLayout:
        return StateLayout(self.cfg.state_dir)

    @property
    def store(self) -> StoreLayout:
        return StoreLayout(self.state.store)

    def write_package(self, name: str, files: dict[str, bytes], fmt: str = "zip") -> Path:
        path = self.root / "incoming-packages" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(archive_bytes(files, fmt))
        return path


def make_site(root: Path, extra_toml: str = "", port: int | None = None) -> Site:
    root.mkdir(parents=True, exist_ok=True)
    (root / "keys").mkdir(exist_ok=True)
    (root / "keys" / "authorized_keys").write_text("")
    text = config_mod.render_default(web_listen=f"127.0.0.1:{port or free_port()}")
    cfg_path = root / "difusor.toml"
    cfg_path.write_text(text + extra_toml)
    cfg = config_mod.load(cfg_path)
    ledger = Ledger(StateLayout(cfg.state_dir).ledger)
    publisher = Publisher(cfg, ledger)
    publisher.prepare()  # the folders `difusor init` and the first publication make
    return Site(root, cfg_path, cfg, ledger, publisher)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = make_site(tmp_path / "difusor")
    yield s
    s.ledger.close()


@pytest.fixture(scope="session")
def cortes() -> list:
    """Six synthetic Irimbo cortes (deterministic)."""
    return list(SyntheticElection().cortes(6))


def minimal_site(corte: str = "08/12/2024", hora: str = "20:30", extra: dict | None = None
                 ) -> dict[str, bytes]:
    """The smallest full package: index.html + json/main.json carrying an INE 2024 corte."""
    main = (f'{{"ultimoCorte": {{"fecha": "{corte}", "hora": "{hora}"}}, "total": 1}}').encode()
    files = {"index.html": b"<!doctype html><title>PREP</title>", "json/main.json": main}
    files.update(extra or {})
    return files


def zip_with(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def stop_group(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """Stop a child started with ``start_new_session`` and everything it spawned."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (read from /proc: parents are field 4 of stat)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"



class ServerProcess:
    """``difusor serve`` as operators run it, on a free loopback port."""

    def __init__(self, config_path: Path, port: int) -> None:
        self.config_path = config_path
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "difusor", "serve", "--config", str(self.config_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"difusor serve terminó: {self.proc.stderr.read().decode()}")
            try:
                httpx.get(self.url + "/_difusor/health", timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("difusor serve no respondió")

    def stop(self) -> None:
        stop_group(self.proc)
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()


@pytest.fixture
def server(site: Site) -> Iterator[ServerProcess]:
    """A real ``difusor serve`` (granian, 2 workers) over ``site``; stopped afterwards."""
    _host, port = config_mod.parse_address(site.cfg.web.listen)
    proc = ServerProcess(site.config_path, port).start()
    yield proc
    proc.stop()


def answers(url: str, *, verify: bool = True) -> bool:
    """Anything answers HTTP at ``url`` + ``/_difusor/health`` (a server that is up)."""
    try:
        httpx.get(url.rstrip("/") + "/_difusor/health", timeout=1, verify=verify)
        return True
    except httpx.HTTPError:
        return False


def listens(port: int) -> bool:
    """Something accepts TCP connections on 127.0.0.1:``port`` (an SFTP server that is up)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], object], timeout: float, what: str,
               step: float = 0.02) -> None:
    """Poll ``predicate`` until it is true; fail naming ``what`` after ``timeout`` seconds.
    Tests wait for the event itself: a fixed pause is too short on a loaded machine and too
    long everywhere else."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            pytest.fail(f"no llegó a tiempo ({timeout:g} s): {what}")
        time.sleep(step)
