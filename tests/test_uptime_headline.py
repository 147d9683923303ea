"""``difusor uptime`` claims no more than was measured, and takes the dates it prints."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import Site, make_site

ZONE = ZoneInfo("America/Mexico_City")
DAY = datetime(2024, 12, 8, tzinfo=ZONE)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "difusor", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def one_hour_watched(tmp_path: Path) -> Site:
    """Of one day, the monitor ran one hour (every probe up) and was off the rest."""
    site = make_site(tmp_path / "d")
    for k in range(120):
        at = (DAY + timedelta(seconds=30 * k)).astimezone(UTC)
        site.ledger.probe_recorded(target="origen", vantage="local", ok=True, interval_s=30,
                                   at=at.isoformat(timespec="microseconds"))
    site.ledger.close()
    return site


@pytest.mark.slow
def test_the_headline_is_the_worst_case_with_the_coverage(one_hour_watched: Site) -> None:
    config = str(one_hour_watched.config_path)
    done = run("uptime", "--from", "2024-12-08T00:00", "--to", "2024-12-09T00:00",
               "--now", "2024-12-10T00:00", "--config", config)
    assert done.returncode == 0, done.stderr
    head = next(line for line in done.stdout.splitlines() if line.startswith("Sitio público"))
    # About one hour of 24 known (the last probe stands a little longer), all up: at least
    # ~4.2 %, not "100.000 %" alone.
    assert head.startswith("Sitio público: al menos 4.2"), head
    assert "(peor caso: lo desconocido cuenta como caído)" in head
    assert "100.000 % del tiempo medido" in head and "cubre el 4.2 %" in head
    doc = json.loads(run("uptime", "--from", "2024-12-08T00:00", "--to", "2024-12-09T00:00",
                         "--now", "2024-12-10T00:00", "--json", "--config", config).stdout)
    site = doc["sitio_publico"]
    assert site["disponibilidad_pct"] == 100.0
    assert site["disponibilidad_peor_caso_pct"] == pytest.approx(100 / 24, abs=0.1)
    assert site["cobertura_pct"] == site["disponibilidad_peor_caso_pct"]  # all known was up


@pytest.mark.slow
def test_dates_as_the_cli_prints_them_are_accepted(one_hour_watched: Site) -> None:
    config = str(one_hour_watched.config_path)
    iso = run("uptime", "--from", "2024-12-08T00:00", "--to", "2024-12-08T01:00", "--json",
              "--config", config)
    printed = run("uptime", "--from", "08/12/2024 00:00", "--to", "08/12/2024 01:00:00 CST",
                  "--json", "--config", config)
    assert iso.returncode == 0 and printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == json.loads(iso.stdout)
    assert json.loads(iso.stdout)["sitio_publico"]["disponible_s"] == 3600
    bad = run("uptime", "--from", "31/02/2024 00:00", "--config", config)
    assert bad.returncode == 1 and "dd/mm/aaaa HH:MM" in bad.stderr
    assert "Traceback" not in bad.stderr
