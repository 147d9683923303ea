"""Two sites in one difusor: a simulacro feeds «prueba», the night feeds «oficial», the same corte
ids in both, each host serving only its own; the phase from the calendar or the operator."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from conftest import free_port, make_site
from test_run import Running

from difusor import config as config_mod
from difusor.demo.election import SyntheticElection
from difusor.demo.packages import write_package
from difusor.errors import ConfigError
from difusor.ledger import Ledger
from difusor.sites import phase as phases
from difusor.sites.catalog import default_site, resolve, route

NOW = datetime(2024, 12, 1, 10, 0, tzinfo=UTC)
CALENDAR = """
[operation]
start = "2024-12-08T18:00:00-06:00"
end = "2024-12-09T20:00:00-06:00"
keep_hours = 24
[[operation.simulacros]]
name = "Tercer simulacro"
start = "2024-12-01T09:00:00-06:00"
end = "2024-12-01T14:00:00-06:00"
"""


def two_sites(port: int) -> str:
    return (f'\n[sites.prueba]\nrole = "prueba"\nurl = "http://prueba.localhost:{port}"\n'
            f'\n[sites.oficial]\nrole = "oficial"\nurl = "http://prep.localhost:{port}"\n'
            'hosts = ["prep.localhost", "www.prep.localhost"]\n')


# -- the calendar and the routing (no process) ----------------------------------------------


def test_the_calendar_names_the_phase_and_where_packages_go(tmp_path: Path) -> None:
    site = make_site(tmp_path, extra_toml=CALENDAR + two_sites(8080))
    cfg = site.cfg
    cst = timedelta(hours=-6)
    cases = [
        (datetime(2024, 11, 20, 12, tzinfo=UTC), "preparacion", "prueba"),
        (datetime(2024, 12, 1, 9, 30) - cst, "simulacro", "prueba"),
        (datetime(2024, 12, 1, 15, 0) - cst, "preparacion", "prueba"),
        (datetime(2024, 12, 8, 18, 0) - cst, "oficial", "oficial"),
        (datetime(2024, 12, 9, 20, 0) - cst, "cerrado", None),
    ]
    for when, expected, target in cases:
        got = phases.current(cfg, site.ledger, when.replace(tzinfo=UTC))
        assert got.name == expected, (when, got)
        assert route(cfg, "", got.name)[0] == target
    inside = phases.current(cfg, site.ledger, datetime(2024, 12, 1, 16, tzinfo=UTC))
    assert inside.simulacro == "Tercer simulacro"
    assert inside.next is not None and inside.next.what.startswith("fin del simulacro")
    assert "cerrada" in route(cfg, "", "cerrado")[1]


def test_without_sites_or_calendar_everything_is_as_before(site) -> None:
    assert phases.current(site.cfg, site.ledger, NOW).name == "oficial"
    assert route(site.cfg, "", "cerrado") == ("", "")
    assert resolve(site.cfg, None) is site.cfg
    with pytest.raises(ConfigError, match="no hay sitios con nombre"):
        resolve(site.cfg, "oficial")


def test_each_site_has_its_own_state_and_the_override_wins(tmp_path: Path) -> None:
    site = make_site(tmp_path, extra_toml=CALENDAR + two_sites(8080))
    cfg = site.cfg
    assert default_site(cfg) == "oficial"
    test, real = cfg.for_site("prueba"), cfg.for_site("oficial")
    assert test.state_dir != real.state_dir != cfg.state_dir
    assert real.site.hosts == ["prep.localhost", "www.prep.localhost"]
    assert test.site.hosts == ["prueba.localhost"]
    simulacro = datetime(2024, 12, 1, 16, tzinfo=UTC)
    phases.set_phase(site.ledger, "oficial", "ana")
    now = phases.current(cfg, site.ledger, simulacro)
    assert (now.name, now.source) == ("oficial", "operador")
    phases.set_phase(site.ledger, "auto", "ana")
    assert phases.current(cfg, site.ledger, simulacro).name == "simulacro"
    assert [e["detail"]["by"] for e in site.ledger.events("phase_set")] == ["ana", "ana"]



def test_each_sites_shield_writes_its_own_nginx_include_and_only_the_official_the_firewall(
        tmp_path: Path) -> None:
    shield = ('\n[shield]\nnginx_include = "escudo/deny.conf"\n'
              'nftables_set = "inet difusor bloqueados"\n')
    cfg = make_site(tmp_path, extra_toml=shield + two_sites(8080)).cfg
    test, real = cfg.for_site("prueba").shield, cfg.for_site("oficial").shield
    assert (test.nginx_include, real.nginx_include) == (
        "escudo/deny-prueba.conf", "escudo/deny-oficial.conf")
    # One machine-wide set: two shields sharing it would lift each other's blocks.
    assert (test.nftables_set, real.nftables_set) == ("", "inet difusor bloqueados")
    from difusor.serve.nginxconf import NginxConfig

    text = NginxConfig.from_config(cfg).render()
    assert text.count("deny-prueba.con[f]") == 1 and text.count("deny-oficial.con[f]") == 1


@pytest.mark.parametrize(("extra", "says"), [
    ('[sites.a]\nrole = "prueba"\nurl = "http://a.mx"\n[sites.b]\nrole = "prueba"\n'
     'url = "http://b.mx"\n', "2 sitios prueba"),
    ('[sites.a]\nrole = "prueba"\nurl = "http://a.mx"\n[sites.b]\nrole = "oficial"\n'
     'url = "http://b.mx"\nhosts = ["a.mx"]\n', "«a.mx» está en sites.a y en sites.b"),
    ('[sites.a]\nrole = "oficial"\nurl = "http://a.mx"\nfeed = "iem"\n', "no está en \\[feeds\\]"),
    ('[sites.Oficial]\nrole = "oficial"\nurl = "http://a.mx"\n', "no sirve como nombre"),
])
def test_sites_that_cannot_work_are_refused_in_spanish(tmp_path: Path, extra: str,
                                                        says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        make_site(tmp_path, extra_toml=extra)


# -- the real thing: difusor run, SFTP, two hosts --------------------------------------------


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "difusor", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=60)


def corte(running: Running, host: str) -> tuple[str | None, bytes]:
    """(the corte a host serves, its main.json bytes)."""
    try:
        status = httpx.get(running.url + "_difusor/status.json", headers={"Host": host}, timeout=2)
        main = httpx.get(running.url + "json/main.json", headers={"Host": host}, timeout=2)
    except httpx.TransportError:
        return None, b""
    live = json.loads(status.content)["corte"]
    return (live["id"] if live else None), (main.content if main.status_code == 200 else b"")


@pytest.mark.slow
def test_a_simulacro_then_the_night_with_the_same_ids(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    running = Running(tmp_path / "difusor")
    monkeypatch.setenv("DIFUSOR_PROBE_TOKEN", "secreto-de-prueba")
    api = free_port()
    now = datetime.now(UTC)
    window = (f'\n[operation]\n[[operation.simulacros]]\nname = "Último simulacro"\n'
              f'start = "{(now - timedelta(hours=1)).isoformat()}"\n'
              f'end = "{(now + timedelta(hours=1)).isoformat()}"\n')
    port = running.web
    with running.config.open("a") as f:
        f.write(two_sites(port) + window + f'\n[monitor]\nlisten = "127.0.0.1:{api}"\n')
    drill = list(SyntheticElection(seed=1).cortes(2))
    night = list(SyntheticElection(seed=2).cortes(2))
    assert [c.when for c in drill] == [c.when for c in night]  # the same corte ids
    try:
        running.start()
        running.upload(write_package(drill[0], tmp_path / "simulacro"))
        running.upload(write_package(drill[1], tmp_path / "simulacro", kind="incremental"))
        last = drill[1].files["json/main.json"]
        running.wait(lambda: corte(running, "prueba.localhost")[1] == last, 20, "simulacro en prueba")
        assert corte(running, "prep.localhost") == (None, b"")  # nothing leaks to the official

        refused = cli(running.config, "simulacro", "reset")
        assert refused.returncode != 0 and "--yes" in refused.stderr
        switched = cli(running.config, "phase", "--set", "oficial")
        assert switched.returncode == 0 and "oficial" in switched.stdout, switched.stderr
        running.upload(write_package(night[0], tmp_path / "noche"))
        running.upload(write_package(night[1], tmp_path / "noche", kind="incremental"))
        live = night[1].files["json/main.json"]
        running.wait(lambda: corte(running, "prep.localhost")[1] == live, 20, "noche en oficial")
        assert corte(running, "www.prep.localhost")[1] == live
        assert corte(running, "otro.example")[1] == live  # unknown hosts: the default site
        assert corte(running, "prueba.localhost")[1] == last  # each host serves only its own
        assert corte(running, "prueba.localhost")[0] == corte(running, "prep.localhost")[0]

        # A remote probe agent measures the public site: its report is the official's record.
        sent = httpx.post(f"http://127.0.0.1:{api}/report", json={
            "vantage": "cdmx", "interval_s": 30, "results": [{"target": "cdn", "ok": True}]},
            headers={"Authorization": "Bearer secreto-de-prueba"}, timeout=5)
        assert sent.status_code == 200, sent.text

        during = cli(running.config, "simulacro", "reset", "--yes")
        assert during.returncode != 0 and "fase oficial" in during.stderr, during.stderr
        assert corte(running, "prueba.localhost")[1] == last

        assert cli(running.config, "phase", "--set", "auto").returncode == 0
        done = cli(running.config, "simulacro", "reset", "--yes")
        assert done.returncode == 0 and "2 cortes retirados" in done.stdout, done.stderr
        running.wait(lambda: corte(running, "prueba.localhost") == (None, b""), 10,
                     "prueba vacío")
        assert corte(running, "prep.localhost")[1] == live
        shown = json.loads(cli(running.config, "status", "--json").stdout)
        assert shown["fase"]["fase"] == "simulacro" and shown["fase"]["simulacro"] == "Último simulacro"
        assert shown["sitios"] == {"prueba": None, "oficial": shown["corte"]["id"]}
    finally:
        _, out = running.stop() if running.proc else (0.0, "")
    assert "Traceback" not in out, out

    state = running.root / "state"
    with Ledger(state / "ledger.sqlite") as ledger:
        assert [e["detail"]["phase"] for e in ledger.events("phase_set")] == ["auto", "oficial"]
    with Ledger(state / "sites" / "oficial" / "ledger.sqlite") as ledger:
        assert [p["vantage"] for p in ledger.probes(target="cdn")] == ["cdmx"]
    with Ledger(state / "sites" / "prueba" / "ledger.sqlite") as ledger:
        assert len(ledger.activations(10)) == 2  # the drill's evidence stays for the memoria
        assert ledger.events("simulacro_reset")[0]["detail"]["live"] is not None
    logs = {name: (state / "sites" / name / "logs" / "access.log").read_text()
            for name in ("prueba", "oficial")}
    assert all("main.json" in text for text in logs.values()), "each site logs its own visits"
    cfg = config_mod.load(running.config)
    assert cfg.for_site("prueba").state_dir == state / "sites" / "prueba"
    # The memoria of the official site says which simulacros the difusor took part in.
    doc = json.loads(cli(running.config, "report", "--json").stdout)
    [drill] = doc["simulacros"]
    assert (drill["nombre"], drill["sitio"], drill["cortes_publicados"]) == (
        "Último simulacro", "prueba", 2)
    assert drill["vaciado"] is not None and drill["ultimo_corte"] == "20241208_2010"
    assert any(h["clave"] == "simulacros" and "participó en el simulacro" in h["texto"]
               for h in doc["hallazgos"])


def test_the_router_picks_the_site_by_host_port_case_and_wildcard() -> None:
    from difusor.serve.hosts import HostRouter, host_name

    apps = {"prueba": object(), "oficial": object()}
    router = HostRouter(apps, {"prueba.mx": "prueba", "*.prueba.mx": "prueba",  # type: ignore[arg-type]
                               "prep.mx": "oficial"}, "oficial")
    assert host_name("PREP.mx:8443") == "prep.mx" and host_name("[::1]:80") == "[::1]"
    assert router.app_for(host_name("Prueba.MX:80")) is apps["prueba"]
    assert router.app_for("www.prueba.mx") is apps["prueba"]
    assert router.app_for("prep.mx") is apps["oficial"]
    assert router.app_for("xprueba.mx") is apps["oficial"]  # not a label of prueba.mx
    assert router.app_for("") is apps["oficial"]


def test_a_package_after_the_close_is_kept_in_quarantine_with_the_reason(tmp_path: Path) -> None:
    from difusor.receive.inbox import deliver
    from difusor.run.consumer import InboxConsumer

    site = make_site(tmp_path, extra_toml=CALENDAR + two_sites(8080))  # its end is long past
    corte = next(iter(SyntheticElection().cortes(1)))
    deliver(write_package(corte, tmp_path / "pk"), site.state.inbox, "corte.zip")
    assert InboxConsumer(site.cfg, site.ledger).drain() == 1
    reasons = list(site.state.quarantine.glob("*.motivo.txt"))
    assert len(reasons) == 1, list(site.state.quarantine.iterdir())
    text = reasons[0].read_text()
    assert "Código: no_site" in text and "cerrada" in text and "corte.zip" in text
    assert site.ledger.events("refused")[0]["detail"]["code"] == "no_site"
    assert not list(site.state.inbox.iterdir())


@pytest.mark.slow
def test_init_writes_both_sites_and_the_calendar_with_comments(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    done = subprocess.run(
        [sys.executable, "-m", "difusor", "init", str(folder),
         "--test-url", "https://prueba.prep.medio.mx", "--official-url", "https://prep.medio.mx",
         "--operation-start", "08/12/2024 18:00", "--operation-end", "09/12/2024 20:00",
         "--simulacro", "01/12/2024 09:00,01/12/2024 14:00"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "sitio prueba (prueba): https://prueba.prep.medio.mx" in done.stdout
    text = (folder / "difusor.toml").read_text()
    assert "# Un simulacro (convocatoria I.11)" in text and "# Sitio de prueba y sitio" in text
    cfg = config_mod.load(folder / "difusor.toml")
    assert {n: e.role for n, e in cfg.sites.items()} == {"prueba": "prueba", "oficial": "oficial"}
    assert cfg.operation.start == "2024-12-08T18:00:00-06:00"
    assert [(w.start, w.end) for w in cfg.operation.simulacros] == [
        ("2024-12-01T09:00:00-06:00", "2024-12-01T14:00:00-06:00")]
    phase = cli(folder / "difusor.toml", "phase", "--json", "--now", "01/12/2024 10:00")
    assert json.loads(phase.stdout)["destino"]["principal"]["sitio"] == "prueba"
    alone = subprocess.run(
        [sys.executable, "-m", "difusor", "init", str(tmp_path / "e"), "--test-url",
         "https://prueba.prep.medio.mx"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert alone.returncode == 64 and "--official-url" in alone.stderr
    assert not (tmp_path / "e" / "difusor.toml").exists()
