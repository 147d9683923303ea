"""The access log never writes into a descriptor it does not own, pauses and resumes when its
file cannot be written, and keeps what a client controls to a bounded size."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import ServerProcess, Site

from difusor.demo.packages import write_package
from difusor.serve.accesslog import CAPS, AccessLog


def record(log: AccessLog, path: str = "/json/main.json", user_agent: str = "Mozilla/5.0") -> None:
    log.record("127.0.0.9:5000", "GET", path, "", 200, 10, None, user_agent, 0.001, "20241208_2030")


def test_a_failed_reopen_never_writes_into_a_reused_descriptor(tmp_path: Path) -> None:
    log = AccessLog(tmp_path / "logs" / "access.log")
    record(log)
    log.flush()
    shutil.rmtree(tmp_path / "logs")
    (tmp_path / "logs").write_text("")  # a file where the folder was: the reopen must fail
    log.tick()
    # The kernel hands out the lowest free number: a stranger's socket would get the log's old one.
    stranger = tmp_path / "stranger"
    fd = os.open(stranger, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        record(log)
        log.tick()
        log.close()
        assert stranger.read_bytes() == b""
        os.write(fd, b"mine")  # ...and the log did not close it either
    finally:
        os.close(fd)
    assert stranger.read_bytes() == b"mine"
    assert log.lost == 1


def test_logging_resumes_when_the_folder_can_be_made_again(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "access.log"
    log = AccessLog(path)
    record(log, "/antes")
    log.flush()
    shutil.rmtree(tmp_path / "logs")
    record(log, "/durante")
    log.tick()  # flushes into the removed file's descriptor, then opens a new file
    record(log, "/despues")
    log.close()
    assert [json.loads(line)["path"] for line in path.read_text().splitlines()] == ["/despues"]


def test_client_controlled_fields_are_capped_and_escaped(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(path)
    record(log, "/" + "a" * 65_000 + "\x1b[31m", user_agent="\x1b]0;hola\x07" + "b" * 65_000)
    log.close()
    raw = path.read_bytes()
    assert len(raw) < sum(CAPS.values()) + 600
    assert b"\x1b" not in raw and b"\x07" not in raw
    line = json.loads(raw)
    assert line["path"].endswith("…") and len(line["path"]) == CAPS["path"] + 1
    assert line["user_agent"].startswith("\x1b]0;hola\x07")  # escaped in the file, intact once read


@pytest.mark.slow
def test_removing_the_logs_folder_under_load_leaks_nothing_into_responses(
        site: Site, server: ServerProcess, cortes: list) -> None:
    site.publisher.publish(write_package(cortes[0], site.root / "pk"))
    files = {"/json/main.json": cortes[0].files["json/main.json"], "/": cortes[0].files["index.html"]}
    removed, bad, done = threading.Event(), [], []
    lock = threading.Lock()

    def client(n: int) -> None:
        transport = httpx.HTTPTransport(local_address=f"127.0.{n}.{n + 1}")
        with httpx.Client(base_url=server.url, transport=transport, timeout=5,
                          headers={"Accept-Encoding": "identity",
                                   "User-Agent": f"visitante-{n} " + "x" * 300}) as http:
            for i in range(300):
                path = "/json/main.json" if i % 2 else "/"
                r = http.get(path, params={"i": str(i)})
                if r.status_code != 200 or r.content != files[path]:
                    with lock:
                        bad.append((path, r.status_code, r.content[:200]))
                with lock:
                    done.append(1)
                    if len(done) == 600 and not removed.is_set():
                        shutil.rmtree(site.state.logs)
                        removed.set()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert removed.is_set() and len(done) == 2400
    assert bad == []
    # Logging resumed in a folder made anew: the last requests are there.
    deadline = time.monotonic() + 10
    while not (site.state.access_log.exists() and site.state.access_log.stat().st_size > 0):
        assert time.monotonic() < deadline, "el registro de accesos no se reanudó"
        httpx.get(server.url + "/json/main.json")  # the next tick (½ s) flushes it
        time.sleep(0.1)


def test_workers_rotate_the_shared_log_by_size_without_losing_or_overwriting(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "access.log"
    workers = [AccessLog(path, max_bytes=2000) for _ in range(3)]
    for i in range(300):
        log = workers[i % 3]
        record(log, f"/p{i}")
        if i % 5 == 0:
            log.tick()
    for log in workers:
        log.close()
    files = sorted(path.parent.glob("access.log*"))
    assert len(files) >= 5  # rotated several times, each time under a new name
    seen = [json.loads(line)["path"] for f in files for line in f.read_text().splitlines()]
    assert sorted(seen) == sorted(f"/p{i}" for i in range(300))
    assert all(f.stat().st_size < 2000 + 16 * 200 for f in files)  # a rotation is at most a tick late
