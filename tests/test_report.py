"""``difusor report`` end to end on a synthetic operation: the memoria técnica has every section
and every incident field the convocatoria (II.4) names, its numbers are the ``--json`` commands'
numbers, two runs give the same bytes, a draft says so on every page, an empty period still gives
a whole document, and a malformed period one Spanish line.

The operation (built once, module-scoped): election night 8 Dec 2024 in Mexico City time. The
demo's authority cuts the cortes (``SyntheticElection`` + ``write_package``: a full package, then
incrementals, every 10 min) and a real publisher puts them live; one truncated package is
refused. Visits are ``tests/visitlog.py``'s night (people with addresses DB-IP places in Mexican
states and abroad, crawlers, a scraper) written as the server's access log and ingested with
``difusor analytics ingest``: the demo's own visitors browse from 127.0.x.x on the wall clock,
which geolocates nowhere and cannot be placed in 2024. The monitor's probes (every 30 s, two
targets) go through the ledger and the incident tracker as ``difusor run`` does, with a 12-minute
outage of the public target and a 20-minute gap of the monitor; a distributed flood goes through
the shield service (attack mode, bans, the attack incident) and into the access log; an ISP cut
the monitor never saw is recorded with ``difusor incident new``.

The ledger stamps rows with the wall clock: while the night is built, the fixture moves that
clock (``NightClock``) so receptions, activations and events fall on the night, not in today.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
import visitlog
from conftest import Site, make_site

from difusor.demo.election import SyntheticElection
from difusor.demo.packages import write_package
from difusor.errors import PackageRefused
from difusor.monitor.incidents.tracker import IncidentTracker
from difusor.monitor.probe import ProbeResult
from difusor.shield.service import Shield

pytestmark = pytest.mark.slow

ZONE = ZoneInfo("America/Mexico_City")
NIGHT = datetime(2024, 12, 8, 19, 30, tzinfo=ZONE)  # visits start (visitlog's night)
FROM = "2024-12-08T19:00:00-06:00"
TO = "2024-12-09T12:00:00-06:00"
QUIET = ("2024-12-07T00:00:00-06:00", "2024-12-07T06:00:00-06:00")  # nothing happened then
CORTES = 8
PROBE_STEP = 30  # seconds between probes, each probe's interval_s
OUTAGE = (datetime(2024, 12, 8, 20, 41, tzinfo=ZONE), datetime(2024, 12, 8, 20, 53, tzinfo=ZONE))
MONITOR_GAP = (datetime(2024, 12, 9, 4, 0, tzinfo=ZONE), datetime(2024, 12, 9, 4, 20, tzinfo=ZONE))
ATTACK = datetime(2024, 12, 8, 21, 30, tzinfo=ZONE)
ISP_CUT = ("2024-12-08T22:05:00-06:00", "2024-12-08T22:20:00-06:00")
SECTIONS = ["Resumen ejecutivo", "Alcance y periodo", "Arquitectura del servicio", "Cronología",
            "Disponibilidad y desempeño", "Visitas", "Seguridad", "Incidentes",
            "Análisis y conclusiones"]
INCIDENT_FIELDS = ["fecha", "hora", "duración", "causa raíz", "impacto", "medidas"]
EXTRA_TOML = """
[shield]
attack_rate = 500
attack_quiet = 5

[[monitor.targets]]
name = "cdn"
url = "https://prep.example.mx"
public = true

[[monitor.targets]]
name = "origen"
url = "http://127.0.0.1:8080"
"""


class NightClock:
    """``utcnow`` for the ledger while the night is built: a set moment plus the real time
    elapsed since (publication lags stay real), only in this process."""

    MODULES = ("difusor.ledger.events", "difusor.ledger.incidents", "difusor.ledger.packages",
               "difusor.ledger.releases", "difusor.ledger.probes", "difusor.publish.publisher",
               "difusor.monitor.incidents.tracker")

    def __init__(self) -> None:
        self.at = NIGHT
        self.started = time.monotonic()

    def set(self, when: datetime) -> None:
        self.at, self.started = when, time.monotonic()

    def __call__(self) -> str:
        now = self.at + timedelta(seconds=time.monotonic() - self.started)
        return now.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass
class Operation:
    site: Site
    out: Path  # where the report runs write

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "difusor", *args, "--config", str(self.site.config_path)],
            capture_output=True, text=True, timeout=300, cwd=self.site.root)
        if check:
            assert done.returncode == 0, f"{args}: {done.stdout[-1500:]}{done.stderr[-1500:]}"
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def report(self, name: str, *args: str) -> Path:
        folder = self.out / name
        self.run("report", "--output", str(folder), *args)
        return folder


# -- building the night ---------------------------------------------------------------------

def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def publish_cortes(site: Site, clock: NightClock) -> None:
    """The demo authority's packages, each received 70 s after its corte time."""
    folder = site.root / "paquetes"
    for corte in SyntheticElection().cortes(CORTES):
        path = write_package(corte, folder, kind="full" if corte.number == 1 else "incremental")
        clock.set(corte.when + timedelta(seconds=70))
        site.publisher.publish(path)
        if corte.number == 4:  # an upload cut short: refused, the next one is whole
            broken = folder / f"{corte.stamp}_PREP_IRIMBO_roto.zip"
            broken.write_bytes(path.read_bytes()[:300])
            clock.set(corte.when + timedelta(seconds=75))
            with pytest.raises(PackageRefused):
                site.publisher.publish(broken)


def probe_night(site: Site, clock: NightClock) -> None:
    """The monitor's rounds as ``difusor run`` records them: the ledger, then the tracker."""
    tracker = IncidentTracker(site.cfg, site.ledger)
    start = datetime.fromisoformat(FROM) + timedelta(seconds=15)
    end = datetime.fromisoformat(TO)
    rng = random.Random(19)
    t = start
    while t < end:
        if not MONITOR_GAP[0] <= t < MONITOR_GAP[1]:
            at = iso(t)
            clock.set(t)
            for target in ("cdn", "origen"):
                down = target == "cdn" and OUTAGE[0] <= t < OUTAGE[1]
                result = ProbeResult(
                    target, not down, "outage" if down else None, None if down else 200,
                    None if down else round(rng.uniform(20, 90), 1), None,
                    "sin respuesta: conexión rechazada" if down else "ok",
                    {"error": "conexión rechazada"} if down else {})
                site.ledger.probe_recorded(**result.ledger_fields(), at=at, vantage="local",
                                           interval_s=PROBE_STEP)
                tracker.observe(result, at, interval_s=PROBE_STEP)
        t += timedelta(seconds=PROBE_STEP)


def flood_lines(start: float) -> list[tuple[float, str, int]]:
    """12 s of 200 addresses at 15 requests/s each: (time, ip, status-to-be-decided)."""
    rng = random.Random(4)
    return [(start + k * 0.2 + rng.random() * 0.2, f"45.{10 + i // 100}.{i % 100}.9", 0)
            for k in range(60) for i in range(200) for _ in range(3)]


def log_line(t: float, ip: str, status: int) -> bytes:
    stamp = datetime.fromtimestamp(t, UTC)
    return orjson.dumps({
        "time": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z",
        "ip": ip, "method": "GET", "path": "/", "query": "", "status": status, "bytes": 0,
        "referer": None, "user_agent": visitlog.BROWSERS[7], "duration_ms": 0.2,
        "corte": "20241208_2120"}) + b"\n"


def attack(site: Site, clock: NightClock) -> bytes:
    """The flood through the shield service as it reads the log 5 times a second; returns the
    lines as the server logged them (403 once banned, 429 while throttled)."""
    shield = Shield(site.cfg, site.ledger)
    shield.enforcers = []  # the embedded server reads the decisions file; nothing else to call
    start = ATTACK.timestamp()
    rows = flood_lines(start)
    logged: list[bytes] = []
    for k in range(60):
        now = start + (k + 1) * 0.2
        clock.set(datetime.fromtimestamp(now, UTC))
        chunk = []
        for t, ip, _ in rows[k * 600:(k + 1) * 600]:
            status = 403 if ip in shield.detector.bans else (
                429 if ip in shield.detector.throttles else 200)
            chunk.append(log_line(t, ip, status))
        logged += chunk
        shield.step(b"".join(chunk), now=now)
    for k in range(100):  # calm: attack mode ends by itself after attack_quiet
        now = start + 12 + k * 0.25
        clock.set(datetime.fromtimestamp(now, UTC))
        shield.step(b"", now=now)
    return b"".join(logged)


def write_access_log(site: Site, traffic: visitlog.Traffic, flood: bytes) -> Path:
    """The night's access log in the server's own format, in time order."""
    path = site.state.access_log
    path.parent.mkdir(parents=True, exist_ok=True)
    traffic.write_difusor_json(path)
    lines = path.read_bytes().splitlines(keepends=True) + flood.splitlines(keepends=True)
    lines.sort(key=lambda line: orjson.loads(line)["time"])
    path.write_bytes(b"".join(lines))
    return path


@pytest.fixture(scope="module")
def operation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operation]:
    root = tmp_path_factory.mktemp("memoria")
    site = make_site(root / "difusor", EXTRA_TOML)
    clock = NightClock()
    with pytest.MonkeyPatch.context() as mp:
        for module in NightClock.MODULES:
            mp.setattr(f"{module}.utcnow", clock)
        publish_cortes(site, clock)
        probe_night(site, clock)
        flood = attack(site, clock)
    site.ledger.close()
    traffic = visitlog.generate(people=240, site_url=site.cfg.site.url, start=NIGHT)
    op = Operation(site, root / "salidas")
    op.run("analytics", "ingest", str(write_access_log(site, traffic, flood)))
    op.run("incident", "new", "--title", "Corte del proveedor de internet",
           "--kind", "connectivity", "--start", ISP_CUT[0], "--end", ISP_CUT[1],
           "--cause", "falla de energía en la central del proveedor de internet",
           "--impact", "el sitio no se pudo consultar desde la red del proveedor durante 15 min",
           "--measure", "se llamó al proveedor y se confirmó la falla",
           "--measure", "se verificó el servicio por la CDN desde otra red")
    yield op
    shutil.rmtree(root, ignore_errors=True)


# -- helpers ------------------------------------------------------------------------------

def pdf_text(pdf: Path) -> str:
    done = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, timeout=120, check=True)
    return done.stdout


def flat(text: str) -> str:
    """One line of single spaces: titles and labels may wrap in the PDF."""
    return re.sub(r"\s+", " ", text)


def has_section(text: str, number: int, title: str) -> bool:
    return re.search(rf"\b{number}\.?\s+{re.escape(title)}", text) is not None


def assert_contains(whole: dict[str, Any], part: dict[str, Any], where: str) -> None:
    """Every figure of ``part`` is in ``whole`` with the same value."""
    differ = [key for key, value in part.items() if whole.get(key) != value]
    assert not differ, f"{where}: {differ}"


# -- the fixture on its own (the commands the report is built from) --------------------------

def test_the_night_is_what_the_fixture_says(operation: Operation) -> None:
    summary = operation.json("analytics", "summary", "--from", FROM, "--to", TO)
    assert summary["unique_visitors"] > 100 and summary["pageviews"] > 0
    uptime = operation.json("uptime", "--from", FROM, "--to", TO)
    assert uptime, uptime
    kinds = sorted(i["tipo"] for i in operation.json("incidents")["incidentes"])
    assert "outage" in kinds and "attack" in kinds and len(kinds) >= 3, kinds


# -- the document ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def memoria(operation: Operation) -> Path:
    return operation.report("memoria", "--from", FROM, "--to", TO)


def test_every_section_and_every_incident_field(memoria: Path) -> None:
    pdf, html = memoria / "memoria-tecnica.pdf", memoria / "memoria-tecnica.html"
    assert pdf.read_bytes().startswith(b"%PDF-") and html.stat().st_size > 0
    assert (memoria / "anexos").is_dir() and any((memoria / "anexos").glob("*.csv"))
    text = flat(pdf_text(pdf))
    missing = [t for n, t in enumerate(SECTIONS, 1) if not has_section(text, n, t)]
    assert not missing, missing
    assert "Anexos" in text
    lower = text.lower()
    assert not [f for f in INCIDENT_FIELDS if f not in lower]
    for said in ("Corte del proveedor de internet",
                 "falla de energía en la central del proveedor de internet",
                 "se llamó al proveedor y se confirmó la falla"):
        assert said in text, said  # the operator's own words, title included


def test_json_numbers_are_the_commands_numbers(operation: Operation) -> None:
    doc = operation.json("report", "--from", FROM, "--to", TO)
    summary = operation.json("analytics", "summary", "--from", FROM, "--to", TO)
    uptime = operation.json("uptime", "--from", FROM, "--to", TO)
    incidents = operation.json("incidents")["incidentes"]
    # The report carries each command's output verbatim (and adds its own series).
    assert_contains(doc["visitas"], summary, "visitas")
    assert_contains(doc["disponibilidad"], uptime, "disponibilidad")
    start, end = datetime.fromisoformat(FROM), datetime.fromisoformat(TO)
    overlapping = [i for i in incidents if datetime.fromisoformat(i["inicio"]) < end
                   and (i["fin"] is None or datetime.fromisoformat(i["fin"]) > start)]
    assert len(overlapping) == 3
    assert sorted(doc["incidentes"], key=lambda i: i["id"]) == sorted(
        overlapping, key=lambda i: i["id"])
    resumen, site = doc["resumen"], uptime["sitio_publico"]
    assert resumen["disponibilidad_pct"] == site["disponibilidad_pct"]
    assert resumen["disponibilidad_peor_caso_pct"] == site["disponibilidad_peor_caso_pct"]
    assert resumen["desconocido_s"] == site["desconocido_s"] > 0  # the monitor's gap
    for mine, theirs in (("visitantes_totales", "total_visitors"),
                         ("visitantes_unicos", "unique_visitors"), ("paginas_vistas", "pageviews"),
                         ("vistas", "views"), ("tiempo_promedio_s", "avg_visit_seconds"),
                         ("tiempo_mediana_s", "median_visit_seconds")):
        assert resumen[mine] == summary[theirs], mine
    assert resumen["cortes_publicados"] == CORTES
    assert resumen["cortes_recibidos"] >= CORTES and resumen["paquetes_rechazados"] == 1
    assert resumen["ataques_contenidos"] >= 1
    severities: dict[str, int] = {}
    for incident in overlapping:
        severities[incident["severidad"]] = severities.get(incident["severidad"], 0) + 1
    assert {k: v for k, v in resumen["incidentes_por_severidad"].items() if v} == severities
    assert len(doc["cronologia"]["cortes"]) == CORTES
    assert len(doc["cronologia"]["rechazados"]) == 1
    assert doc["periodo"]["origen"] == "opciones"
    assert doc["generado"] == doc["periodo"]["hasta"] or doc["generado"].startswith("2024-12-09")


def test_two_runs_give_the_same_bytes(operation: Operation, memoria: Path) -> None:
    again = operation.report("otra-vez", "--from", FROM, "--to", TO)
    for name in ("memoria-tecnica.pdf", "memoria-tecnica.html"):
        assert (memoria / name).read_bytes() == (again / name).read_bytes(), name
    first = sorted(p.relative_to(memoria) for p in (memoria / "anexos").rglob("*"))
    assert first == sorted(p.relative_to(again) for p in (again / "anexos").rglob("*"))
    for rel in first:
        if (memoria / rel).is_file():
            assert (memoria / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_a_draft_says_so_on_every_page(operation: Operation) -> None:
    folder = operation.report("borrador", "--from", FROM, "--to", TO, "--draft")
    pages = [p for p in pdf_text(folder / "memoria-tecnica.pdf").split("\f") if p.strip()]
    assert len(pages) > 3
    assert [n for n, page in enumerate(pages, 1) if "BORRADOR" not in page] == []
    assert "BORRADOR" in (folder / "memoria-tecnica.html").read_text()


def test_a_quiet_period_is_still_a_whole_document(operation: Operation) -> None:
    start, end = QUIET
    folder = operation.report("vacio", "--from", start, "--to", end)
    text = flat(pdf_text(folder / "memoria-tecnica.pdf"))
    missing = [t for n, t in enumerate(SECTIONS, 1) if not has_section(text, n, t)]
    assert not missing, missing
    lower = text.lower()
    assert re.search(r"(no hubo|no se registr\w+|sin|ningun\w*|cero)[^.]{0,40}visit", lower), \
        "the document does not say there were no visits"
    assert re.search(r"(no hubo|no se registr\w+|sin|ningun\w*|cero)[^.]{0,40}incidente", lower), \
        "the document does not say there were no incidents"
    doc = operation.json("report", "--from", start, "--to", end)
    assert doc["incidentes"] == [] and doc["resumen"]["visitantes_unicos"] == 0


@pytest.mark.parametrize("period", [
    ("--from", "ayer por la tarde"),
    ("--from", "2024-13-45T99:00"),
    ("--from", TO, "--to", FROM),  # backwards
])
def test_a_malformed_period_is_one_spanish_line(operation: Operation, period: tuple[str, ...]
                                                ) -> None:
    folder = operation.out / "mal"
    done = operation.run("report", "--output", str(folder), *period, check=False)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert re.search(r"[áéíóúñ¿]|fecha|periodo|inicio|fin", lines[0], re.I), lines[0]
    assert not (folder / "memoria-tecnica.pdf").exists()
