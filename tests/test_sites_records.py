"""Each site keeps its own record: an outage of the test site during a simulacro is in its uptime
and its incidents, never in the official site's; visits are counted per site."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import free_port, make_site

from difusor import config as config_mod
from difusor.ledger import Ledger
from difusor.paths import StateLayout

START = datetime(2024, 12, 1, 15, 0, tzinfo=UTC)  # 09:00 in Mexico City: the simulacro
STEP = 30
PROBES = 240  # two hours


def sites_toml(port: int) -> str:
    return (f'\n[sites.prueba]\nrole = "prueba"\nurl = "http://prueba.localhost:{port}"\n'
            f'\n[sites.oficial]\nrole = "oficial"\nurl = "http://prep.localhost:{port}"\n')


@pytest.fixture
def two(tmp_path: Path) -> Path:
    port = free_port()
    site = make_site(tmp_path / "difusor", sites_toml(port), port=port)
    site.ledger.close()
    cfg = config_mod.load(site.config_path)
    for name in ("prueba", "oficial"):
        view = cfg.for_site(name)
        StateLayout(view.state_dir).create()
        with Ledger(StateLayout(view.state_dir).ledger) as ledger:
            for k in range(PROBES):
                down = name == "prueba" and 100 <= k < 120  # ten minutes down, prueba only
                ledger.probe_recorded(
                    target="origen", vantage="local", ok=not down, interval_s=STEP,
                    failure="outage" if down else None,
                    at=(START + timedelta(seconds=STEP * k)).isoformat())
            if name == "prueba":
                ledger.incident_opened(
                    kind="outage", severity="critical", target="origen",
                    started_at=(START + timedelta(seconds=STEP * 100)).isoformat(),
                    cause_suggested="el servidor de prueba no respondió")
    return site.config_path


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "difusor", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "DIFUSOR_NOW": "2024-12-01T11:00:00-06:00"})


@pytest.mark.slow
def test_uptime_and_incidents_are_per_site(two: Path) -> None:
    span = ("--from", "01/12/2024 09:00", "--to", "01/12/2024 11:00", "--json")
    shown = {name: json.loads(cli(two, "uptime", "--site", name, *span).stdout)["sitio_publico"]
             for name in ("prueba", "oficial")}
    assert shown["prueba"]["caido_s"] == 20 * STEP
    assert shown["oficial"]["caido_s"] == 0 and shown["oficial"]["disponibilidad_pct"] == 100
    default = json.loads(cli(two, "uptime", *span).stdout)["sitio_publico"]
    assert default == shown["oficial"]  # without --site: the official site

    test_incidents = json.loads(cli(two, "incidents", "--site", "prueba", "--json").stdout)
    assert [i["causa"] for i in test_incidents["incidentes"]] == [
        "el servidor de prueba no respondió"]
    assert json.loads(cli(two, "incidents", "--site", "oficial", "--json").stdout)[
        "incidentes"] == []
    unknown = cli(two, "uptime", "--site", "otro")
    assert unknown.returncode != 0 and "otro" in unknown.stderr and "Traceback" not in unknown.stderr


def _visits(path: Path, people: int) -> Path:
    lines = [f'200.23.8.{n} - - [01/Dec/2024:10:{n:02d}:00 -0600] "GET /json/main.json HTTP/1.1" '
             f'200 512 "-" "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"\n'
             for n in range(1, people + 1)]
    path.write_text("".join(lines))
    return path


@pytest.mark.slow
def test_analytics_counts_each_sites_visitors_apart(two: Path, tmp_path: Path) -> None:
    for name, people in (("prueba", 3), ("oficial", 5)):
        done = cli(two, "analytics", "ingest", "--site", name,
                   str(_visits(tmp_path / f"{name}.log", people)))
        assert done.returncode == 0, done.stderr
    counted = {name: json.loads(cli(two, "analytics", "summary", "--site", name, "--json").stdout)
               for name in ("prueba", "oficial")}
    assert counted["prueba"]["unique_visitors"] == 3
    assert counted["oficial"]["unique_visitors"] == 5
