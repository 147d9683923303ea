"""``difusor serve`` as a real process: workers report the corte they serve, variants follow,
it stops cleanly."""

from __future__ import annotations

import time

import httpx
from conftest import ServerProcess, Site

from difusor.demo.packages import write_package


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


def test_stop_is_clean_and_quick(site: Site, server: ServerProcess, cortes: list) -> None:
    site.publisher.publish(write_package(cortes[0], site.root / "pk"))
    assert len(list(site.store.served.iterdir())) == 2
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 10
    assert server.proc is not None and server.proc.returncode is not None
    assert list(site.store.served.iterdir()) == []  # workers took their reports with them
