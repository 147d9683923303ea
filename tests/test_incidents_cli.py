"""``difusor incidents`` and ``difusor incident N``: every field the memoria técnica asks (start,
end, duration, kind, severity, cause, impact, measures, state), in Spanish, and the operator's
edits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import Site

from difusor.errors import DifusorError, NotFound
from difusor.moments import duration
from difusor.monitor.incident_sheet import edit_incident, incident_doc, state_code

NOW = "2024-12-08T21:00:00-06:00"


def run(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "difusor", *args, "--config", str(site.config_path)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "DIFUSOR_NOW": NOW})


def utc(local_iso: str) -> str:
    return datetime.fromisoformat(local_iso).astimezone(UTC).isoformat(timespec="microseconds")


@pytest.fixture
def seeded(site: Site) -> Site:
    ledger = site.ledger
    outage = ledger.incident_opened(
        kind="outage", severity="critical", target="cdn", started_at=utc("2024-12-08T20:31:00-06:00"),
        cause_suggested="el servidor no respondió (conexión rechazada)")
    ledger.incident_update(
        outage, state="resolved", ended_at=utc("2024-12-08T20:45:30-06:00"),
        impact=json.dumps({"peticiones": 1200, "visitantes": 340}),
        measures=[{"at": utc("2024-12-08T20:32:00-06:00"), "by": "monitor",
                   "text": "origen sacado de rotación"}])
    stale = ledger.incident_opened(
        kind="stale", severity="major", target="origen",
        started_at=utc("2024-12-08T20:40:00-06:00"),
        cause_suggested="la activación del corte 20:30 quedó bloqueada")
    assert (outage, stale) == (1, 2)
    return site


@pytest.mark.slow
def test_list_json_has_every_field(seeded: Site) -> None:
    done = run(seeded, "incidents", "--json")
    assert done.returncode == 0, done.stderr
    stale, outage = json.loads(done.stdout)["incidentes"]  # newest first
    assert outage["id"] == 1 and outage["tipo"] == "outage" and outage["tipo_texto"] == "caída"
    assert outage["estado"] == "resolved" and outage["estado_texto"] == "resuelto"
    assert outage["severidad_texto"] == "crítica" and outage["objetivo"] == "cdn"
    assert outage["duracion_s"] == 14 * 60 + 30 and outage["en_curso"] is False
    assert outage["causa"] == "el servidor no respondió (conexión rechazada)"
    assert outage["causa_sugerida"] is True
    assert outage["impacto"] == {"peticiones": 1200, "visitantes": 340}
    assert outage["medidas"] == [{"en": utc("2024-12-08T20:32:00-06:00"), "por": "monitor",
                                  "texto": "origen sacado de rotación"}]
    assert datetime.fromisoformat(outage["inicio"]) == datetime.fromisoformat(
        "2024-12-08T20:31:00-06:00")
    assert stale["estado_texto"] == "investigando" and stale["fin"] is None
    assert stale["en_curso"] is True and stale["duracion_s"] == 20 * 60  # until DIFUSOR_NOW
    only_open = json.loads(run(seeded, "incidents", "--json", "--open").stdout)["incidentes"]
    assert [i["id"] for i in only_open] == [2]


@pytest.mark.slow
def test_list_text_in_spanish(seeded: Site) -> None:
    done = run(seeded, "incidents")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for expected in ("Incidente n.º 1 — caída · severidad crítica · resuelto",
                     "Incidente n.º 2 — corte desactualizado · severidad mayor · investigando",
                     "inicio:    08/12/2024 20:31:00 CST", "fin:       08/12/2024 20:45:30 CST",
                     "duración:  14 min 30 s", "duración:  20 min 00 s (sigue abierto)",
                     "fin:       en curso", "causa sugerida (por confirmar): el servidor no",
                     "impacto:   peticiones: 1200; visitantes: 340",
                     "08/12/2024 20:32:00 CST [monitor] origen sacado de rotación",
                     "medidas:   — (ninguna registrada)"):
        assert expected in text, expected
    assert text.index("n.º 2") < text.index("n.º 1")


@pytest.mark.slow
def test_edit_cause_impact_measures(seeded: Site) -> None:
    done = run(seeded, "incident", "2", "--cause", "disco lleno en el origen",
               "--impact", "340 visitantes vieron el corte 20:20 durante 20 min",
               "--measure", "se liberó espacio", "--measure", "se reactivó el corte 20:30")
    assert done.returncode == 0, done.stderr
    assert "Incidente n.º 2 actualizado." in done.stdout
    assert "identificado" in done.stdout and "causa:     disco lleno en el origen" in done.stdout
    row = seeded.ledger.incident(2)
    assert row is not None
    assert row["cause"] == "disco lleno en el origen" and row["state"] == "identified"
    assert row["impact"].startswith("340 visitantes")
    assert row["measures"] == [
        {"at": utc(NOW), "by": "operador", "text": "se liberó espacio"},
        {"at": utc(NOW), "by": "operador", "text": "se reactivó el corte 20:30"}]
    assert row["cause_suggested"].startswith("la activación")  # kept for the record
    again = run(seeded, "incident", "2", "--measure", "tercera", "--json")
    doc = json.loads(again.stdout)
    assert [m["texto"] for m in doc["medidas"]][-1] == "tercera" and len(doc["medidas"]) == 3
    assert doc["causa_sugerida"] is False


@pytest.mark.slow
def test_cause_on_a_resolved_incident_keeps_it_resolved(seeded: Site) -> None:
    assert run(seeded, "incident", "1", "--cause", "falla del proveedor").returncode == 0
    row = seeded.ledger.incident(1)
    assert row is not None and row["state"] == "resolved" and row["cause"] == "falla del proveedor"
    assert row["ended_at"] == utc("2024-12-08T20:45:30-06:00")


@pytest.mark.slow
def test_states_by_name_resolve_and_reopen(seeded: Site) -> None:
    assert run(seeded, "incident", "2", "--state", "en observación").returncode == 0
    assert seeded.ledger.incident(2)["state"] == "monitoring"  # type: ignore[index]
    done = run(seeded, "incident", "2", "--state", "resuelto")
    assert done.returncode == 0 and "resuelto" in done.stdout
    row = seeded.ledger.incident(2)
    assert row is not None and row["state"] == "resolved" and row["ended_at"] == utc(NOW)
    assert "duración:  20 min 00 s" in done.stdout and "sigue abierto" not in done.stdout
    reopened = run(seeded, "incident", "2", "--state", "investigating")
    assert reopened.returncode == 0
    assert seeded.ledger.incident(2)["ended_at"] is None  # type: ignore[index]


@pytest.mark.slow
def test_unknown_incident_exits_6_and_bad_state_exits_1(seeded: Site) -> None:
    missing = run(seeded, "incident", "99", "--cause", "x")
    assert missing.returncode == 6
    assert missing.stderr.strip() == "difusor: no existe el incidente n.º 99 (ver difusor incidents)"
    bad = run(seeded, "incident", "1", "--state", "cerrado")
    assert bad.returncode == 1 and "estado desconocido «cerrado»" in bad.stderr
    assert seeded.ledger.incident(1)["state"] == "resolved"  # type: ignore[index]


@pytest.mark.slow
def test_show_without_edits_and_empty_list(site: Site) -> None:
    assert run(site, "incidents").stdout.strip() == "No hay incidentes registrados."
    assert json.loads(run(site, "incidents", "--json").stdout) == {"incidentes": []}
    site.ledger.incident_opened(kind="authority_delay", severity="info",
                                started_at=utc("2024-12-08T20:50:00-06:00"))
    shown = run(site, "incident", "1")
    assert shown.returncode == 0 and "actualizado" not in shown.stdout
    assert "retraso de la autoridad" in shown.stdout and "objetivo:  —" in shown.stdout
    assert "causa:     — (sin causa" in shown.stdout
    assert site.ledger.events("incident_updated") == []


def test_library_edits(seeded: Site) -> None:
    when = datetime(2024, 12, 9, 3, 0, tzinfo=UTC)
    row = edit_incident(seeded.ledger, 2, cause="x", state="monitoring", now=when)
    assert row["state"] == "monitoring"  # an explicit state wins over "identified"
    row = edit_incident(seeded.ledger, 2, cause="y", now=when)
    assert row["state"] == "monitoring" and row["cause"] == "y"  # a cause never moves it back
    seeded.ledger.incident_update(2, measures=[{"at": "2024-12-09T02:50:00+00:00", "by": "auto",
                                                "text": "vuelta atrás"}, "nota suelta"])
    doc = incident_doc(seeded.ledger.incident(2), when)  # type: ignore[arg-type]
    assert [m["por"] for m in doc["medidas"]] == ["automática", "automática"]
    with pytest.raises(NotFound):
        edit_incident(seeded.ledger, 7, cause="x")
    with pytest.raises(DifusorError, match="vacío"):
        edit_incident(seeded.ledger, 2, cause="  ")
    assert [state_code(s) for s in ("Resuelto", "IDENTIFICADO", "en-observacion", "investigating")
            ] == ["resolved", "identified", "monitoring", "investigating"]
    assert [duration(s) for s in (5, 870, 7260, 90000)] == [
        "5 s", "14 min 30 s", "2 h 01 min", "1 d 1 h"]


@pytest.mark.slow
def test_incident_commands_take_config(tmp_path: Path) -> None:
    for command in ("incidents", "incident", "uptime", "takedown"):
        done = subprocess.run([sys.executable, "-m", "difusor", command, "--help"],
                              capture_output=True, text=True, timeout=60)
        assert "--config" in done.stdout, command
