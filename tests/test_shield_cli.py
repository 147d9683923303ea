"""``difusor shield …`` as an operator runs it, beside a running ``difusor serve`` (no ``run``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest
from conftest import ServerProcess, Site, minimal_site

from difusor import config as config_mod
from difusor.ledger import Ledger


def shield(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "difusor", "shield", *args, "--config",
                           str(site.config_path)], capture_output=True, text=True, timeout=60)


def status(site: Site) -> dict:
    r = shield(site, "status", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def get(url: str, source: str) -> int:
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=5) as c:
        return c.get(url).status_code


def until(check, seconds: float = 1.5) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
def serving(site: Site):
    site.publisher.publish(site.write_package("20241208_2030_PREP.zip", minimal_site()))
    _host, port = config_mod.parse_address(site.cfg.web.listen)
    proc = ServerProcess(site.config_path, port).start()
    yield site, proc.url + "/json/main.json"
    proc.stop()


@pytest.mark.slow
def test_block_and_unblock_reach_the_running_server_and_the_ledger(serving) -> None:
    site, url = serving
    assert get(url, "127.0.0.55") == 200
    r = shield(site, "block", "127.0.0.55", "--minutes", "5", "--reason", "escaneo manual")
    assert r.returncode == 0, r.stderr
    assert "127.0.0.55 bloqueado por el operador durante 5 min" in r.stdout
    assert until(lambda: get(url, "127.0.0.55") == 403) < 1.0
    assert get(url, "127.0.0.56") == 200
    doc = status(site)
    (ban,) = doc["bans"]
    assert (ban["key"], ban["by"], ban["reason"]) == ("127.0.0.55", "operator", "escaneo manual")
    assert 280 < ban["until"] - time.time() <= 300
    assert doc["recent"][0]["detail"]["action"] == "ban"
    r = shield(site, "unblock", "127.0.0.55")
    assert r.returncode == 0 and "127.0.0.55 desbloqueado por el operador" in r.stdout
    until(lambda: get(url, "127.0.0.55") == 200)
    r = shield(site, "unblock", "127.0.0.55")
    assert r.returncode == 0 and "no tenía bloqueos" in r.stdout
    with Ledger(site.state.ledger) as ledger:
        details = [e["detail"] for e in ledger.events("shield")]
    assert [d["action"] for d in details] == ["unban", "ban"]
    assert all(d["by"] == "operator" and d["key"] == "127.0.0.55" for d in details)


@pytest.mark.slow
def test_networks_and_the_allowlist(serving) -> None:
    site, url = serving
    assert shield(site, "block", "127.0.0.0/24").returncode == 0
    until(lambda: get(url, "127.0.0.60") == 403)
    r = shield(site, "allow", "127.0.0.60/32")
    assert r.returncode == 0 and "agregada a la lista blanca" in r.stdout
    until(lambda: get(url, "127.0.0.60") == 200)
    assert get(url, "127.0.0.61") == 403  # the rest of the network stays blocked
    r = shield(site, "block", "127.0.0.60")
    assert r.returncode == 8 and "lista blanca" in r.stderr
    r = shield(site, "allow", "127.0.0.0/24")
    assert r.returncode == 0 and "se levantaron 1 bloqueo" in r.stdout
    until(lambda: get(url, "127.0.0.61") == 200)
    assert status(site)["allow"] == ["127.0.0.60", "127.0.0.0/24"]
    assert shield(site, "allow", "127.0.0.60/32", "--remove").returncode == 0
    assert status(site)["allow"] == ["127.0.0.0/24"]


@pytest.mark.slow
def test_attack_mode_by_hand(serving) -> None:
    site, _url = serving
    r = shield(site, "attack-mode", "on")
    assert r.returncode == 0 and "modo ataque ACTIVADO por el operador" in r.stdout
    doc = status(site)
    assert doc["attack_mode"]["on"] and doc["attack_mode"]["by"] == "operator"
    human = shield(site, "status")
    assert "MODO ATAQUE activo" in human.stdout and "operador" in human.stdout
    assert shield(site, "attack-mode", "off").returncode == 0
    assert not status(site)["attack_mode"]["on"]
    assert "Modo ataque: apagado" in shield(site, "status").stdout


@pytest.mark.slow
def test_bad_input_is_one_spanish_line(site: Site) -> None:
    r = shield(site, "block", "no-es-ip")
    assert r.returncode == 8 and "no es una dirección IP ni una red CIDR" in r.stderr
    assert "Traceback" not in r.stderr
    r = shield(site, "attack-mode", "quizá")
    assert r.returncode == 1 and "usa «on» u «off»" in r.stderr
    r = shield(site, "block", "203.0.113.1", "--minutes", "0")
    assert r.returncode == 1 and "--minutes" in r.stderr


@pytest.mark.slow
def test_a_reason_with_markup_is_printed_as_written(site: Site) -> None:
    """The operator's --reason (and every ledger message) is text: rich markup in it neither
    crashes ``status`` nor styles it."""
    r = shield(site, "block", "203.0.113.9", "--reason", "[/x] [bold]escaneo[/bold]")
    assert r.returncode == 0, r.stderr
    r = shield(site, "status")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("[/x] [bold]escaneo[/bold]") == 2  # the ban, the recent decision
