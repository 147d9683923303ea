"""The memoria's data (``difusor report --json``) on a synthetic operation: every figure equals
what ``analytics summary --json``, ``uptime --json`` and ``incidents --json`` print; an empty
period still gives a complete document that says so; bad periods are one Spanish line; and
``incident new`` records an incident with every field the convocatoria names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import visitlog
from conftest import Site, make_site

from difusor.analytics.ingest import ingest_files
from difusor.demo.packages import write_package

ZONE = ZoneInfo("America/Mexico_City")
TARGETS = """
[[personal]]
name = "Ana Pérez"
role = "responsable técnica"
phone = "+52 443 123 4567 ext. 12"
email = "ana@medio.mx"

[[monitor.targets]]
name = "cdn"
url = "https://prep.example.mx"
public = true
"""
CONTRACT = {"version", "generado", "borrador", "periodo", "sitio", "resumen", "arquitectura",
            "cronologia", "disponibilidad", "visitas", "seguridad", "incidentes", "hallazgos",
            "recomendaciones", "texto_operador", "anexos", "metodologia", "simulacros", "revision",
            "integridad"}
# The published cortes are stamped by the wall clock: the operation is "the last two hours".
T0 = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
T1 = T0 + timedelta(hours=3)


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def run(site: Site, *args: str, now: datetime = T1) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "difusor", *args, "--config", str(site.config_path)],
        capture_output=True, text=True, timeout=180,
        env={**os.environ, "DIFUSOR_NOW": now.isoformat()})


def as_json(site: Site, *args: str) -> dict:
    done = run(site, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def write_log(path: Path) -> Path:
    """Six people (Michoacán, Jalisco, the US) who open the page and poll main.json."""
    people = [(visitlog.NETWORKS[place][0].split("/")[0].rsplit(".", 1)[0] + f".{10 + n}", ua)
              for n, (place, ua) in enumerate(zip(
                  ["Michoacán", "Michoacán", "Jalisco", "Mexico City", "US", "Michoacán"],
                  visitlog.BROWSERS, strict=False))]
    lines = []
    for n, (ip, ua) in enumerate(people):
        first = T0 + timedelta(minutes=20 + 7 * n)
        for k in range(8):
            when = (first + timedelta(minutes=k)).astimezone(ZONE)
            stamp = when.strftime("%d/%b/%Y:%H:%M:%S %z")
            url = "/" if k == 0 else "/json/main.json"
            lines.append((when, f'{ip} - - [{stamp}] "GET {url} HTTP/1.1" 200 512 '
                                f'"https://www.google.com/" "{ua}"\n'))
    path.write_text("".join(line for _when, line in sorted(lines)))
    return path


@pytest.fixture(scope="module")
def operation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("memoria")
    site = make_site(root / "difusor", TARGETS)
    for n, corte in enumerate(visitlog_cortes()):
        done = site.publisher.publish(write_package(corte, root / "pk",
                                                    kind="full" if n == 0 else "incremental"))
        assert done.status == "published"
    ledger = site.ledger
    # A probe every 30 s: a 5-minute outage, a monitor stopped for half an hour, a slow spell.
    for k in range(int((T1 - T0).total_seconds() // 30)):
        if 200 <= k < 260:
            continue
        ok = not 100 <= k < 110
        failure = None if ok else "outage"
        if 300 <= k < 306:
            failure = "degraded"
        ledger.probe_recorded(target="cdn", vantage="local", ok=ok, interval_s=30,
                              at=iso(T0 + timedelta(seconds=30 * k)), failure=failure,
                              latency_ms=40.0)
    attack = ledger.incident_opened(kind="attack", severity="major", started_at=iso(
        T0 + timedelta(minutes=70)), target=site.cfg.site.url,
        detail={"peak_rps": 900, "sources": [{"key": "203.0.113.0/24", "requests": 5400}],
                "requests_refused": 5100})
    ledger.incident_update(attack, state="resolved", ended_at=iso(T0 + timedelta(minutes=75)))
    ingest_files(site.cfg, [write_log(root / "access.log")])
    yield site
    ledger.close()


def visitlog_cortes() -> list:
    from difusor.demo.election import SyntheticElection

    return list(SyntheticElection().cortes(3))


@pytest.fixture(scope="module")
def recorded(operation: Site) -> dict:
    """The manual incident (an ISP cut), recorded once through the command."""
    done = run(operation, "incident", "new", "--title", "corte del proveedor de internet",
               "--start", (T0 + timedelta(minutes=30)).isoformat(),
               "--end", (T0 + timedelta(minutes=42)).isoformat(),
               "--cause", "falla de fibra del proveedor", "--impact", "sin acceso 12 min",
               "--measure", "se cambió al enlace de respaldo", "--measure", "aviso al IEM",
               "--kind", "connectivity")
    assert done.returncode == 0, done.stderr
    assert "Incidente n.º 2 registrado." in done.stdout
    return {"id": 2}


@pytest.mark.slow
def test_every_figure_equals_the_commands_that_print_it(operation: Site, recorded: dict) -> None:
    period = ("--from", T0.isoformat(), "--to", T1.isoformat())
    doc = as_json(operation, "report", *period)
    assert set(doc) == CONTRACT
    assert doc["sitio"]["personal"] == [{"nombre": "Ana Pérez", "rol": "responsable técnica",
                                         "contacto": "+52 443 123 4567 ext. 12 · ana@medio.mx"}]
    visits = as_json(operation, "analytics", "summary", *period)
    assert {k: v for k, v in doc["visitas"].items() if k != "series_hora"} == visits
    assert doc["visitas"]["series_hora"] == visits["series_hour"]
    assert as_json(operation, "uptime", *period) == doc["disponibilidad"]
    listed = as_json(operation, "incidents")["incidentes"]
    assert sorted(listed, key=lambda i: (i["inicio"], i["id"])) == doc["incidentes"]
    r, site = doc["resumen"], doc["disponibilidad"]["sitio_publico"]
    assert visits["hits"] > 0 and r["visitantes_unicos"] == visits["unique_visitors"] == 6
    assert r["visitantes_totales"] == visits["total_visitors"] == visits["visits"]
    assert (r["paginas_vistas"], r["vistas"]) == (visits["pageviews"], visits["views"])
    assert r["tiempo_promedio_s"] == visits["avg_visit_seconds"] == 7 * 60
    assert r["disponibilidad_pct"] == site["disponibilidad_pct"] < 100
    assert r["desconocido_s"] == site["desconocido_s"]
    assert site["caido_s"] == 300 and r["incidentes_por_severidad"] == {"major": 2}
    assert (r["cortes_recibidos"], r["cortes_publicados"], r["paquetes_rechazados"]) == (3, 3, 0)
    assert r["ataques_contenidos"] == 1 and doc["seguridad"]["ataques"][0]["pico_rps"] == 900
    cortes = doc["cronologia"]["cortes"]
    assert all(c["retraso_s"] >= 0 and len(c["sha256"]) == 64 for c in cortes)
    assert r["retraso_publicacion_s"]["max"] == max(c["retraso_s"] for c in cortes)
    states = {s["estado"] for s in doc["disponibilidad"]["linea_de_tiempo"]}
    assert states == {"up", "down", "unknown", "degraded"}
    assert site["desconocido_s"] == 59 * 30  # the last result before the gap stood 30 s
    assert sum(p["visitors"] for p in visits["series_10min"]) >= 6
    found = {h["clave"]: h for h in doc["hallazgos"]}
    assert found["pico_10min"]["cifra"] == max(p["visitors"] for p in visits["series_10min"])
    assert found["incidentes"]["cifra"] == 2 and found["ataques"]["cifra"] == 1
    assert "conectividad" in found["incidentes"]["texto"]
    assert found["cdn"]["cifra"] is None  # no edge logs: said so, and recommended
    assert "registros_cdn" in {r["clave"] for r in doc["recomendaciones"]}
    assert doc["periodo"]["origen"] == "opciones" and doc["borrador"] is False


@pytest.mark.slow
def test_a_period_without_visits_or_incidents_says_so(operation: Site) -> None:
    later = (T1 + timedelta(days=2)).isoformat(), (T1 + timedelta(days=3)).isoformat()
    doc = as_json(operation, "report", "--from", later[0], "--to", later[1], "--draft")
    assert set(doc) == CONTRACT and doc["borrador"] is True
    assert doc["incidentes"] == [] and doc["resumen"]["visitantes_unicos"] == 0
    texts = {h["clave"]: h["texto"] for h in doc["hallazgos"]}
    assert texts["visitas"].startswith("No se registraron visitas")
    assert texts["incidentes"] == "No se registraron incidentes en el periodo."
    assert texts["ataques"] == "No se detectaron ataques en el periodo."
    assert doc["cronologia"]["cortes"] == [] and doc["recomendaciones"]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "says"), [
    (("--from", "mañana"), "--from: «mañana» no es una fecha"),
    (("--from", T1.isoformat(), "--to", T0.isoformat()), "el periodo está vacío o invertido"),
])
def test_a_bad_period_is_one_spanish_line(operation: Site, args: tuple, says: str) -> None:
    done = run(operation, "report", *args, "--json")
    assert done.returncode == 1 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and says in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_incident_new_shows_every_field(operation: Site, recorded: dict) -> None:
    doc = next(i for i in as_json(operation, "incidents")["incidentes"]
               if i["id"] == recorded["id"])
    assert doc["titulo"] == "corte del proveedor de internet" and doc["deteccion"] == "operador"
    assert (doc["tipo"], doc["categoria"], doc["severidad"]) == (
        "connectivity", "problema de conectividad", "major")
    assert doc["estado"] == "resolved" and doc["duracion_s"] == 12 * 60
    assert datetime.fromisoformat(doc["inicio"]) == T0 + timedelta(minutes=30)
    assert doc["causa"] == "falla de fibra del proveedor" and doc["causa_sugerida"] is False
    assert doc["impacto"] == "sin acceso 12 min"
    assert [(m["por"], m["texto"]) for m in doc["medidas"]] == [
        ("operador", "se cambió al enlace de respaldo"), ("operador", "aviso al IEM")]
    missing = run(operation, "incident", "new", "--title", "x", "--start", T0.isoformat())
    assert missing.returncode == 1 and "faltan: --cause, --impact" in missing.stderr
    assert run(operation, "incident", "tres").returncode == 64  # neither a number nor «new»
    assert "solo van con" in run(operation, "incident", "1", "--title", "x").stderr


def test_the_files_path_hands_document_and_full_tables_to_the_renderer(
        operation: Site, recorded: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In process, the renderer replaced by a recorder: what ``report --output`` passes on."""
    from typer.testing import CliRunner

    from difusor.cli.app import app
    from difusor.report import render
    from difusor.report.worker import RenderWorker

    got: dict = {}

    def record(doc: dict, tables: dict, outdir: Path, cfg: object) -> list[Path]:
        got.update(doc=doc, tables=tables, outdir=Path(outdir))
        return [Path(outdir) / "memoria-tecnica.pdf"]

    monkeypatch.setattr(render, "write_memoria", record)
    # In this process: the recorder must see the hand-over (a forked worker would get it).
    monkeypatch.setattr(RenderWorker, "start", classmethod(lambda cls: cls()))
    out = tmp_path / "salida"
    done = CliRunner().invoke(app, ["report", "--from", T0.isoformat(), "--to", T1.isoformat(),
                                    "--output", str(out), "--config", str(operation.config_path),
                                    "--now", T1.isoformat()])
    assert done.exit_code == 0, done.output
    assert "Memoria técnica escrita en" in done.output and got["outdir"] == out
    tables = got["tables"]
    assert set(tables) == {"cortes", "incidentes", "sondeos_por_hora", "visitas_10min",
                           "paginas", "vistas", "estados", "paises", "dispositivos",
                           "referentes", "decisiones_escudo"}
    for stem, (header, rows) in tables.items():
        assert all(len(row) == len(header) for row in rows), stem
    assert len(tables["cortes"][1]) == 3 and len(tables["incidentes"][1]) == 2
    assert sum(r[3] for r in tables["sondeos_por_hora"][1]) == 360 - 60  # every probe, by hour
    assert [r[0] for r in tables["estados"][1]] and tables["referentes"][1][0][0] == "www.google.com"
    assert sum(r[1] for r in tables["visitas_10min"][1]) >= 6


def test_a_child_hands_back_its_result_or_its_error() -> None:
    """The ledger is read in a forked child while the visits are summarised here
    (report/background.py)."""
    import os

    from difusor.report.background import in_child

    here = os.getpid()
    assert in_child(lambda a, b: (a, b, os.getpid() != here), 1, 2).result() == (1, 2, True)

    def fails() -> None:
        raise ValueError("sin bitácora")

    with pytest.raises(ValueError, match="sin bitácora"):
        in_child(fails).result()
