"""The remote probe agent: ``difusor probe`` against a real ``difusor serve``, reporting through
the token-protected probe API into the ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ServerProcess, Site, free_port, minimal_site

from difusor.monitor.api import MAX_BODY, ProbeAPI
from difusor.run.supervisor import Supervisor

TOKEN = "token-de-prueba-0123456789"


@pytest.fixture
def api(site: Site) -> Iterator[ProbeAPI]:
    with ProbeAPI(site.cfg, site.ledger, token=TOKEN, listen=f"127.0.0.1:{free_port()}") as a:
        yield a


@pytest.fixture
def published(site: Site) -> str:
    site.publisher.publish(site.write_package("corte.zip", minimal_site()))
    last = site.ledger.last_activation()
    assert last is not None
    return last.release_id


def probe_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    # From a folder without difusor.toml, as on the agent's own machine.
    work = tmp_path / "agente"
    work.mkdir(exist_ok=True)
    environ = {k: v for k, v in os.environ.items() if k != "DIFUSOR_PROBE_TOKEN"}
    return subprocess.run([sys.executable, "-m", "difusor", "probe", "--once", *args],
                          cwd=work, capture_output=True, text=True, timeout=60,
                          env={**environ, **(env or {})})


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.slow
def test_agent_reports_probes_with_its_vantage(tmp_path: Path, site: Site, server: ServerProcess,
                                               published: str, api: ProbeAPI) -> None:
    # Targets from the server (the site URL: the embedded server here); token from the env.
    done = probe_cli(tmp_path, "--report-to", api.url, "--name", "remoto-qro",
                     env={"DIFUSOR_PROBE_TOKEN": TOKEN})
    assert done.returncode == 0, done.stderr
    assert "✓ origen: en línea" in done.stdout
    assert f"Reportados 1 resultados a {api.url} como «remoto-qro»." in done.stdout
    (row,) = site.ledger.probes(vantage="remoto-qro")
    assert row["target"] == "origen"  # as the local monitor names the embedded server
    assert row["ok"] == 1 and row["failure"] is None
    assert row["status"] == 200
    assert row["corte"] == published
    assert row["interval_s"] == 30.0
    assert row["detail"]["expected_release"] == published

    # Targets given on the command line, token as an option, the API's /report URL accepted.
    done = probe_cli(tmp_path, "--report-to", api.url + "/report", "--token", TOKEN,
                     "--name", "remoto-gdl", "--target", f"borde={server.url}",
                     "--target", f"origen={server.url}/", "--interval", "60")
    assert done.returncode == 0, done.stderr
    rows = site.ledger.probes(vantage="remoto-gdl")
    assert sorted(r["target"] for r in rows) == ["borde", "origen"]
    assert all(r["ok"] == 1 and r["interval_s"] == 60.0 for r in rows)


@pytest.mark.slow
def test_agent_reports_a_down_target_as_such(tmp_path: Path, site: Site, published: str,
                                             api: ProbeAPI) -> None:
    done = probe_cli(tmp_path, "--report-to", api.url, "--token", TOKEN, "--name", "remoto",
                     "--target", f"caido=http://127.0.0.1:{free_port()}")
    assert done.returncode == 0, done.stderr
    assert "✗ caido: conexión rechazada" in done.stdout
    (row,) = site.ledger.probes(vantage="remoto")
    assert row["ok"] == 0 and row["failure"] == "outage"


@pytest.mark.slow
def test_wrong_or_missing_token_is_401(tmp_path: Path, site: Site, published: str,
                                       api: ProbeAPI) -> None:
    for headers in ({}, auth("otro-token"), {"Authorization": TOKEN},
                    {"Authorization": "Basic " + TOKEN}, auth(TOKEN + "x")):
        r = httpx.get(api.url + "/expected", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json() == {"error": "token ausente o incorrecto"}
        r = httpx.post(api.url + "/report", headers=headers, json={})
        assert r.status_code == 401
    assert httpx.get(api.url + "/expected", headers=auth()).status_code == 200

    done = probe_cli(tmp_path, "--report-to", api.url, "--token", "otro-token", "--name", "x")
    assert done.returncode != 0
    assert "rechazó el token (401)" in done.stderr
    assert "Traceback" not in done.stderr
    assert site.ledger.probes() == []


@pytest.mark.slow
def test_agent_without_server_fails_with_a_spanish_line(tmp_path: Path) -> None:
    done = probe_cli(tmp_path, "--report-to", f"http://127.0.0.1:{free_port()}", "--token", "t")
    assert done.returncode == 1
    assert done.stderr.startswith("difusor: no puedo hablar con http://127.0.0.1:")
    done = probe_cli(tmp_path, "--report-to", "http://127.0.0.1:9", "--token", "t",
                     "--target", "sin-url")
    assert done.returncode == 1
    assert "objetivo «sin-url» inválido: usa NOMBRE=URL" in done.stderr


def test_expected_tells_the_live_corte_and_the_targets(site: Site, published: str,
                                                       api: ProbeAPI) -> None:
    r = httpx.get(api.url + "/expected", headers=auth())
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    doc = r.json()
    assert doc["release_id"] == published
    assert doc["main_path"] == "json/main.json"
    assert len(doc["main_sha256"]) == 64
    assert doc["targets"] == [{"name": "origen", "url": site.cfg.site.url, "public": True}]
    assert httpx.get(api.url + "/nada", headers=auth()).status_code == 404
    assert httpx.post(api.url + "/expected", headers=auth()).status_code == 405


GOOD = {"vantage": "remoto", "interval_s": 30,
        "results": [{"target": "sitio", "ok": True, "failure": None, "status": 200,
                     "latency_ms": 12.5, "corte": "c1", "message": "en línea", "detail": {}}]}


@pytest.mark.parametrize(("body", "reason"), [
    (b"{no es json", "no es JSON válido"),
    (b"\xff\xfe", "no es JSON válido"),
    (b"[1, 2]", "debe ser un objeto JSON"),
    (json.dumps({**GOOD, "results": []}).encode(), "«results»"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "results"}).encode(), "«results»"),
    (json.dumps({**GOOD, "vantage": "con espacios"}).encode(), "«vantage»"),
    (json.dumps({**GOOD, "vantage": "local"}).encode(), "reservado"),
    (json.dumps({**GOOD, "interval_s": 0}).encode(), "«interval_s»"),
    (json.dumps({**GOOD, "results": [{**GOOD["results"][0], "ok": "sí"}]}).encode(),
     "«results.0.ok»"),
    (json.dumps({**GOOD, "results": [{**GOOD["results"][0], "failure": "inventada"}]}).encode(),
     "falla desconocida «inventada»"),
    (json.dumps({**GOOD, "results": [{"ok": True}]}).encode(), "«results.0.target»"),
])
def test_malformed_report_is_400(site: Site, api: ProbeAPI, body: bytes, reason: str) -> None:
    r = httpx.post(api.url + "/report", headers={**auth(), "Content-Type": "application/json"},
                   content=body)
    assert r.status_code == 400, r.text
    assert reason in r.json()["error"]
    assert site.ledger.probes() == []


def test_report_limits_and_a_good_report(site: Site, api: ProbeAPI) -> None:
    big = {**GOOD, "results": [{**GOOD["results"][0], "detail": {"x": "a" * MAX_BODY}}]}
    r = httpx.post(api.url + "/report", headers=auth(), json=big)
    assert r.status_code == 413
    r = httpx.post(api.url + "/report", headers=auth(), json=GOOD)
    assert r.status_code == 200
    assert r.json() == {"registrados": 1, "vantage": "remoto"}
    (row,) = site.ledger.probes()
    assert (row["vantage"], row["target"], row["ok"], row["latency_ms"]) == \
        ("remoto", "sitio", 1, 12.5)


def test_supervisor_runs_the_probe_api_when_listen_is_set(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import make_site

    port = free_port()
    site = make_site(tmp_path / "d", extra_toml=f'\n[monitor]\nlisten = "127.0.0.1:{port}"\n'
                     'token_env = "PRUEBA_TOKEN_SONDEOS"\n')
    site.ledger.close()
    monkeypatch.setenv("PRUEBA_TOKEN_SONDEOS", TOKEN)
    supervisor = Supervisor(site.cfg, site.config_path)
    try:
        (part,) = [p for p in supervisor.parts if p.name == "API de sondeos"]
        stop = threading.Event()
        thread = threading.Thread(target=part.target, args=(stop,), daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}/expected"
        for _ in range(100):
            try:
                r = httpx.get(url, headers=auth())
                break
            except httpx.ConnectError:
                stop.wait(0.05)
        assert r.status_code == 200
        assert r.json()["release_id"] is None  # nothing published yet
        stop.set()
        thread.join(5)
        assert not thread.is_alive()
    finally:
        supervisor.ledger.close()


def test_probe_api_refuses_to_start_without_a_token(site: Site) -> None:
    from difusor.errors import ConfigError

    with pytest.raises(ConfigError, match="DIFUSOR_PROBE_TOKEN"):
        ProbeAPI.from_config(site.cfg, site.ledger, env={})
