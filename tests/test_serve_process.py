"""``difusor serve`` as a real process: workers report the corte they serve, variants follow,
it stops cleanly."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import ServerProcess, Site, alive, descendants

from difusor.demo.packages import write_package


@pytest.mark.slow
def test_every_worker_reports_each_activation_to_the_ledger(site: Site, server: ServerProcess,
                                                            cortes: list) -> None:
    for n, corte in enumerate(cortes[:4]):
        site.publisher.publish(write_package(corte, site.root / "pk",
                                             kind="full" if n == 0 else "incremental"))
        served = [e for e in site.ledger.events("served") if e["release_id"] == corte.stamp]
        assert len(served) == 1, f"{corte.stamp}: {site.ledger.events('served_late')}"
        assert served[0]["detail"]["workers"] == 2  # [web] workers = 2 by default
        assert served[0]["detail"]["ms"] < 1000
        r = httpx.get(server.url + "/json/main.json")
        assert r.content == corte.files["json/main.json"]


@pytest.mark.slow
def test_compressed_variants_are_served_once_made(site: Site, server: ServerProcess,
                                                  cortes: list) -> None:
    site.publisher.publish(write_package(cortes[0], site.root / "pk"))
    deadline = time.monotonic() + 5
    while True:
        r = httpx.get(server.url + "/json/main.json", headers={"Accept-Encoding": "br"})
        if r.headers.get("content-encoding") == "br":
            break
        assert time.monotonic() < deadline, "the br variant never came"
        time.sleep(0.05)
    assert r.content == cortes[0].files["json/main.json"]  # httpx decodes it


@pytest.mark.slow
def test_stop_is_clean_and_quick(site: Site, server: ServerProcess, cortes: list) -> None:
    site.publisher.publish(write_package(cortes[0], site.root / "pk"))
    assert len(list(site.store.served.iterdir())) == 2
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 10
    assert server.proc is not None and server.proc.returncode is not None
    assert list(site.store.served.iterdir()) == []  # workers took their reports with them


@pytest.mark.slow
def test_a_port_served_by_anyone_else_is_refused(site: Site, tmp_path: Path) -> None:
    from conftest import make_site

    from difusor import config as config_mod

    _host, port = config_mod.parse_address(site.cfg.web.listen)
    first = ServerProcess(site.config_path, port).start()
    try:
        other = make_site(tmp_path / "otro", port=port)  # another state folder, the same port
        other.ledger.close()
        second = subprocess.run([sys.executable, "-m", "difusor", "serve", "--config",
                                 str(other.config_path)],
                                capture_output=True, text=True, timeout=30)
        assert second.returncode == 3, second.stderr
        assert f"el puerto 127.0.0.1:{port} ya está en uso" in second.stderr
        assert "Traceback" not in second.stderr
        assert httpx.get(first.url + "/_difusor/health").status_code == 503  # still the first, alone
    finally:
        first.stop()
    # A listener that is not a difusor at all (reusing the port as granian does) is refused too.
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        third = subprocess.run([sys.executable, "-m", "difusor", "serve", "--config", str(site.config_path)],
                               capture_output=True, text=True, timeout=30)
    assert third.returncode == 3 and str(port) in third.stderr, third.stderr


@pytest.mark.slow
def test_workers_end_when_their_server_process_is_killed(site: Site, server: ServerProcess) -> None:
    assert server.proc is not None
    deadline = time.monotonic() + 10
    while len(workers := descendants(server.proc.pid)) < 2:  # [web] workers = 2
        assert time.monotonic() < deadline, "los procesos del servidor no aparecieron"
        time.sleep(0.05)
    started = time.monotonic()
    server.proc.kill()  # the server process alone: its workers are orphaned
    while any(alive(pid) for pid in workers):
        assert time.monotonic() - started < 5, "un proceso del servidor quedó huérfano"
        time.sleep(0.05)
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/_difusor/health", timeout=1)


@pytest.mark.slow
def test_the_state_folder_deleted_under_a_running_server(site: Site, server: ServerProcess,
                                                         cortes: list) -> None:
    site.publisher.publish(write_package(cortes[0], site.root / "pk"))
    main = cortes[0].files["json/main.json"]
    assert httpx.get(server.url + "/json/main.json").content == main
    shutil.rmtree(site.cfg.state_dir)
    deadline = time.monotonic() + 10
    while httpx.get(server.url + "/_difusor/health").status_code == 200:  # the next check (1 s)
        assert time.monotonic() < deadline, "el servidor no reportó el problema"
        time.sleep(0.1)
    health = httpx.get(server.url + "/_difusor/health")
    assert health.status_code == 503 and health.text.startswith(f"degradado {cortes[0].stamp}")
    for _ in range(20):  # ...while every visitor still gets the corte it had
        r = httpx.get(server.url + "/json/main.json", headers={"Accept-Encoding": "identity"})
        assert r.status_code == 200 and r.content == main
    assert server.proc is not None and server.proc.poll() is None
