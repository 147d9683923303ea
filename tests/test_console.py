"""The operator's console over HTTP (Starlette's test client on the real app, real ledger and
store): login, rate limit, CSRF, the security headers, escaping, and each action landing where
the matching command finds it. The browser-level tests are in test_console_browser.py."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Site, make_site, minimal_site
from starlette.exceptions import StarletteDeprecationWarning

from difusor.console.server import build
from difusor.console.users import UserStore
from difusor.paths import StateLayout
from difusor.shield import operator

with warnings.catch_warnings():  # it prefers httpx2; the httpx we lock works the same here
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

PASSWORD = "una contraseña de prueba larga"


@pytest.fixture
def console(tmp_path) -> Iterator[tuple[Site, TestClient]]:
    site = make_site(tmp_path / "difusor")
    site.publisher.publish(site.write_package("a.zip", minimal_site(hora="20:30")))
    site.publisher.publish(site.write_package("b.zip", minimal_site(
        hora="20:40", extra={"json/otro.json": b"{}"})))
    UserStore(StateLayout(site.cfg.state_dir).console_users).add("ana", PASSWORD)
    with TestClient(build(site.cfg, site.config_path), base_url="http://127.0.0.1:8081") as client:
        yield site, client
    site.ledger.close()


def login(client: TestClient, user: str = "ana", password: str = PASSWORD):
    page = client.get("/acceso")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)[1]  # type: ignore[index]
    return client.post("/acceso", data={"usuario": user, "contrasena": password, "csrf": token},
                       follow_redirects=False)


def csrf_of(client: TestClient) -> str:
    page = client.get("/")
    return re.search(r'name="csrf-token" content="([^"]+)"', page.text)[1]  # type: ignore[index]


def test_accounts_are_argon2id_in_a_private_file(tmp_path) -> None:
    store = UserStore(tmp_path / "console" / "users.json")
    store.add("ana", PASSWORD)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert json.loads(store.path.read_text())["users"]["ana"]["hash"].startswith("$argon2id$")
    assert PASSWORD not in store.path.read_text()
    assert store.verify("ana", PASSWORD) and not store.verify("ana", PASSWORD + "x")
    assert not store.verify("nadie", PASSWORD)
    with pytest.raises(Exception, match="al menos 12"):
        store.add("beto", "corta")


def test_user_add_from_the_command_line(site: Site) -> None:
    done = subprocess.run([sys.executable, "-m", "difusor", "console", "user", "add", "ana",
                           "--password-stdin", "--config", str(site.config_path)],
                          input=PASSWORD + "\n", capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "creado" in done.stdout
    again = subprocess.run([sys.executable, "-m", "difusor", "console", "user", "add", "ana",
                            "--password-stdin", "--config", str(site.config_path)],
                           input=PASSWORD + "\n", capture_output=True, text=True)
    assert again.returncode != 0 and "ya existe" in again.stderr
    assert "Traceback" not in again.stderr


def test_nothing_without_a_session(console) -> None:
    _site, client = console
    assert client.get("/", follow_redirects=False).headers["location"] == "/acceso"
    assert client.get("/estado.json").status_code == 401
    assert client.get("/eventos").status_code == 401
    assert client.post("/api/purga", headers={"x-csrf-token": "x"}).status_code == 401


def test_login_sets_a_strict_httponly_cookie_and_every_answer_is_locked_down(console) -> None:
    _site, client = console
    done = login(client)
    assert done.status_code == 303 and done.headers["location"] == "/"
    cookie = done.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text and " on" not in re.sub(r"\s+", " ", page.text).replace(
        " one", "")  # no inline script, no inline handlers
    assert "<script src=" in page.text


def test_wrong_password_is_refused_then_rate_limited_even_with_the_right_one(console) -> None:
    site, client = console
    for _ in range(5):
        assert login(client, password="no es esta").status_code == 401
    blocked = login(client)  # the right password, too late
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    assert "demasiados intentos" in blocked.text
    assert client.get("/estado.json").status_code == 401
    refused = site.ledger.events("console_login_failed", limit=10)
    assert len(refused) == 5 and refused[0]["detail"]["user"] == "ana"


def test_an_action_without_the_csrf_token_is_403_and_changes_nothing(console) -> None:
    site, client = console
    login(client)
    body = {"accion": "block", "llave": "203.0.113.7"}
    assert client.post("/api/escudo", json=body).status_code == 403
    assert client.post("/api/escudo", json=body, headers={"x-csrf-token": "otra"}).status_code == 403
    assert client.get("/api/escudo").status_code == 405  # never an action by GET
    assert not operator.status(site.cfg, site.ledger)["bans"]
    cross = client.post("/api/escudo", json=body, headers={
        "x-csrf-token": csrf_of(client), "origin": "https://malicioso.example"})
    assert cross.status_code == 403
    assert not operator.status(site.cfg, site.ledger)["bans"]


def test_block_and_unblock_are_the_shields_and_recorded_with_the_user(console) -> None:
    site, client = console
    login(client)
    token = {"x-csrf-token": csrf_of(client)}
    done = client.post("/api/escudo", json={"accion": "block", "llave": "203.0.113.7",
                                            "minutos": 5}, headers=token)
    assert done.status_code == 200, done.text
    bans = operator.status(site.cfg, site.ledger)["bans"]
    assert [b["key"] for b in bans] == ["203.0.113.7/32"] or [b["key"] for b in bans] == ["203.0.113.7"]
    state = client.get("/estado.json").json()
    assert state["escudo"]["bans"][0]["key"] == bans[0]["key"]
    client.post("/api/escudo", json={"accion": "unblock", "llave": "203.0.113.7"}, headers=token)
    assert not operator.status(site.cfg, site.ledger)["bans"]
    actions = site.ledger.events("console_action", limit=5)
    assert [a["detail"]["action"] for a in actions] == ["shield-unblock", "shield-block"]
    assert all(a["detail"]["user"] == "ana" for a in actions)


def test_a_declared_incident_is_what_incidents_json_prints(console) -> None:
    site, client = console
    login(client)
    form = {"title": "<script>alert(1)</script> sin internet", "start": "08/12/2024 20:00",
            "end": "08/12/2024 20:12", "kind": "connectivity",
            "cause": "corte del proveedor", "impact": "12 min sin servicio",
            "measure": "cambio al enlace de respaldo"}
    done = client.post("/api/incidentes", json=form, headers={"x-csrf-token": csrf_of(client)})
    assert done.status_code == 200, done.text
    number = done.json()["numero"]
    listed = subprocess.run([sys.executable, "-m", "difusor", "incidents", "--json", "--config",
                             str(site.config_path)], capture_output=True, text=True, check=True)
    doc = next(i for i in json.loads(listed.stdout)["incidentes"] if i["id"] == number)
    assert doc["titulo"] == form["title"]
    assert doc["causa"] == "corte del proveedor" and doc["impacto"] == "12 min sin servicio"
    assert doc["tipo"] == "connectivity" and doc["estado"] == "resolved"
    assert doc["medidas"][0]["texto"].startswith("cambio al enlace de respaldo")
    assert doc["duracion_s"] == 720
    # The title reaches the page only as JSON data, set with textContent by the script.
    assert "<script>alert" not in client.get("/").text
    assert client.get("/estado.json").json()["incidentes"][0]["titulo"] == form["title"]


def test_rollback_previews_what_changes_then_makes_the_chosen_corte_live(console) -> None:
    site, client = console
    login(client)
    token = {"x-csrf-token": csrf_of(client)}
    state = client.get("/estado.json").json()
    live, older = state["corte"]["corte"], state["cortes"][1]["corte"]
    preview = client.post("/api/vuelta-atras/vista-previa", json={"corte": older}, headers=token)
    assert preview.status_code == 200, preview.text
    p = preview.json()
    assert p["en_linea"] == live and p["corte"] == older
    assert p["cambian"] == 1 and p["se_quitan"] == 1  # main.json changes, otro.json goes
    done = client.post("/api/vuelta-atras", json={"corte": older}, headers=token)
    assert done.status_code == 200, done.text
    status = subprocess.run([sys.executable, "-m", "difusor", "status", "--json", "--config",
                             str(site.config_path)], capture_output=True, text=True, check=True)
    assert json.loads(status.stdout)["corte"]["id"] == older
    after = client.get("/estado.json").json()
    assert after["corte"]["corte"] == older
    assert after["origenes"][0]["nombre"] == "local" and after["origenes"][0]["corte"] == older
    assert "volvió al corte" in after["acciones"][0]["mensaje"]
    # The memoria's chronology lists it, with the user.
    from datetime import UTC, datetime, timedelta

    from difusor.report.chronology import chronology
    now = datetime.now(UTC)
    milestones = chronology(site.cfg, site.ledger, now - timedelta(hours=1), now)["hitos"]
    assert any(m["texto"] == f"consola, ana: volvió al corte {older} (antes {live})"
               for m in milestones)
    bad = client.post("/api/vuelta-atras", json={"corte": "no-existe"}, headers=token)
    assert bad.status_code == 400 and "no existe" in bad.json()["error"]


def test_with_sites_each_site_has_its_own_page_state_and_actions(tmp_path) -> None:
    """The default (official) site at /, the test site at /sitios/prueba/: each shows its own
    corte, and an action taken on a site's page lands in that site's ledger only."""
    from test_sites import two_sites

    from difusor.ledger import Ledger
    from difusor.publish.publisher import Publisher

    root = make_site(tmp_path / "difusor", extra_toml=two_sites(8080))
    test = root.cfg.for_site("prueba")
    with Ledger(StateLayout(test.state_dir).create().ledger) as ledger:
        publisher = Publisher(test, ledger)
        publisher.prepare()
        publisher.publish(root.write_package("simulacro.zip", minimal_site(hora="11:10")))
    UserStore(StateLayout(root.cfg.state_dir).console_users).add("ana", PASSWORD)
    with TestClient(build(root.cfg, root.config_path),
                    base_url="http://127.0.0.1:8081") as client:
        login(client)
        page = client.get("/")
        assert 'href="/sitios/prueba/"' in page.text and 'aria-current="page">oficial' in page.text
        assert client.get("/sitios/prueba").url.path == "/sitios/prueba/"  # redirected
        test_page = client.get("/sitios/prueba/")
        assert 'aria-current="page">prueba</a>' in test_page.text
        assert "<title>Consola · " in test_page.text and " · prueba</title>" in test_page.text
        official = client.get("/estado.json").json()
        simulacro = client.get("/sitios/prueba/estado.json").json()
        assert official["corte"] is None
        assert simulacro["corte"]["hora_autoridad"].startswith("2024-12-08T11:10")
        assert client.get("/sitios/nadie/estado.json").status_code == 404

        token = {"x-csrf-token": csrf_of(client)}
        done = client.post("/sitios/prueba/api/escudo", headers=token,
                           json={"accion": "block", "llave": "198.51.100.9", "minutos": 5})
        assert done.status_code == 200, done.text
        assert client.get("/sitios/prueba/estado.json").json()["escudo"]["bans"]
        assert not client.get("/estado.json").json()["escudo"]["bans"]
    with Ledger(StateLayout(test.state_dir).ledger) as ledger:
        assert [e["detail"]["action"] for e in ledger.events("console_action")] == [
            "shield-block"]
        assert operator.status(test, ledger)["bans"]
    real = root.cfg.for_site("oficial")
    with Ledger(StateLayout(real.state_dir).ledger) as ledger:
        assert ledger.events("console_login")  # who came in is the default site's record
        assert ledger.events("console_action") == []
        assert not operator.status(real, ledger)["bans"]
    root.ledger.close()


def test_a_removed_user_is_out_at_once(console) -> None:
    site, client = console
    login(client)
    assert client.get("/estado.json").status_code == 200
    UserStore(StateLayout(site.cfg.state_dir).console_users).remove("ana")
    assert client.get("/estado.json").status_code == 401


def test_logout_ends_the_session(console) -> None:
    _site, client = console
    login(client)
    token = csrf_of(client)
    assert client.post("/salir", data={"csrf": "otra"}).status_code == 403
    assert client.post("/salir", data={"csrf": token}, follow_redirects=False).status_code == 303
    assert client.get("/estado.json").status_code == 401


def test_traffic_counts_what_the_logs_say(site: Site) -> None:
    from difusor.console.traffic import Traffic

    log = StateLayout(site.cfg.state_dir).access_log
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    traffic = Traffic(site.cfg)
    traffic.step(now=1000.0)  # from the end: what was there before is not "now"

    def line(ip: str, path: str, status: int, ms: float, agent: str = "Mozilla/5.0") -> bytes:
        return json.dumps({"time": "2024-12-09T02:30:00.000Z", "ip": ip, "method": "GET",
                           "path": path, "query": "", "status": status, "bytes": 10,
                           "referer": None, "user_agent": agent, "corte": "c",
                           "duration_ms": ms}).encode() + b"\n"

    rows = [line(f"10.0.0.{i % 50}", "/json/main.json", 200, 1.0) for i in range(500)]
    rows += [line("10.0.1.1", "/", 200, 2.0), line("10.0.1.2", "/nada", 404, 50.0),
             line("10.0.1.3", "/json/main.json", 503, 900.0),
             line("10.0.1.4", "/json/main.json", 200, 1.0, agent="difusor-monitor/1"),
             b"no es json\n"]
    with log.open("ab") as f:
        f.write(b"".join(rows))
    traffic.step(now=1001.0)
    got = traffic.summary(now=1001.5)
    assert got["por_clase"] == {"2xx": 502, "3xx": 0, "4xx": 1, "5xx": 1}
    assert got["visitantes_5min"] == 53  # 50 + 3; the difusor's own monitor is not a visitor
    assert got["vistas"][0] == ("Resumen", 500)
    assert got["paginas"] == [("/", 1)]
    assert 0.9 <= got["p95_ms"] <= 1.3
    assert got["serie"]["rps"][-1] > 0


def test_the_log_reader_yields_to_serving_and_catches_up_in_bounded_steps(site: Site) -> None:
    """The reader thread runs under SCHED_IDLE (any other thread takes the core from it at
    once); a backlog is read a bounded step at a time, each summary saying when it was made."""
    import os
    import threading

    from conftest import wait_until

    from difusor.console.reader import TrafficReader
    from difusor.console.traffic import Traffic
    from difusor.logtail import CHUNK

    log = StateLayout(site.cfg.state_dir).access_log
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    line = json.dumps({"time": "2024-12-09T02:30:00.000Z", "ip": "10.0.0.1", "method": "GET",
                       "path": "/json/main.json", "query": "", "status": 200, "bytes": 10,
                       "referer": None, "user_agent": "Mozilla/5.0", "corte": "c",
                       "duration_ms": 1.0}).encode() + b"\n"
    lines = 3 * CHUNK // len(line)  # three steps' worth, read a CHUNK a step
    reader = TrafficReader(Traffic(site.cfg), step_bytes=CHUNK)
    reader.start()
    try:
        thread = next(t for t in threading.enumerate() if t.name == "difusor-consola-trafico")
        wait_until(lambda: os.sched_getscheduler(thread.native_id) == os.SCHED_IDLE, 5,
                   "the reader at SCHED_IDLE")
        first, series = reader.latest()
        assert series is not None and reader.latest()[1] is None  # a series is handed out once
        with log.open("ab") as f:
            f.write(line * lines)
        wait_until(lambda: reader.latest()[0]["por_clase"]["2xx"] == lines, 15,
                   "the backlog read, a step at a time")
        assert reader.latest()[0]["al"] > first["al"]
    finally:
        reader.stop()
    alone = Traffic(site.cfg)
    with log.open("ab") as f:
        f.write(line * lines)
    assert [alone.step(limit=CHUNK) for _ in range(3)] == [True, True, False]  # 1 + 1 + < 1 MB


def test_visitors_stay_bounded_under_a_flood_of_addresses() -> None:
    from difusor.console.traffic import Visitors

    v = Visitors(cap=1000)
    for i in range(100_000):
        v.add(hash(("addr", i)), now=10.0)
    assert len(v.seen) <= 1000
    assert 80_000 <= v.count(now=11.0) <= 120_000  # sampled, then scaled back
    assert v.count(now=400.0) == 0  # five minutes later nobody is "now"


@pytest.mark.slow
def test_run_opens_the_console_once_a_user_exists_and_restarts_it_if_it_dies(tmp_path) -> None:
    import os
    import signal

    from conftest import descendants, free_port, listens, stop_group, wait_until

    port = free_port()
    site = make_site(tmp_path / "difusor", extra_toml=f'\n[console]\nlisten = "127.0.0.1:{port}"\n')
    site.ledger.close()
    log = tmp_path / "run.log"
    with log.open("w") as out:
        run = subprocess.Popen([sys.executable, "-m", "difusor", "run", "--config",
                                str(site.config_path)], stdout=out, stderr=out,
                               start_new_session=True)
    try:
        wait_until(lambda: "sin usuarios" in log.read_text(), 30, "el aviso de consola sin usuarios")
        assert not listens(port)
        UserStore(StateLayout(site.cfg.state_dir).console_users).add("ana", PASSWORD)
        wait_until(lambda: listens(port), 30, "la consola escucha")

        def console_pid() -> int | None:
            for pid in descendants(run.pid):
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if b"console" in cmd and b"serve" in cmd:
                    return pid
            return None
        first = console_pid()
        assert first is not None
        os.killpg(os.getpgid(first), signal.SIGKILL)  # the console's own group: run and the web server stay
        wait_until(lambda: "la consola terminó" in log.read_text(), 30, "el reinicio anunciado")
        wait_until(lambda: listens(port) and console_pid() not in (None, first), 60,
                   "la consola de nuevo")
    finally:
        stop_group(run)
