"""The memoria's drawings: charts, the map of Mexico and the service diagram (report/)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import make_site

from difusor.config import Config
from difusor.report import charts, diagram, mexico_map

ZONE = "America/Mexico_City"
T0 = datetime.fromisoformat("2024-12-08T18:00:00-06:00")
SVG = "{http://www.w3.org/2000/svg}"


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


POINTS = [{"t": at(10 * i), "visitors": (i * 37) % 90, "pageviews": i, "hits": 2 * i}
          for i in range(36)]
HOURS = [{"t": at(60 * i), "visitors": 20 + 7 * i} for i in range(6)]
CORTES = [at(30 * i + 3) for i in range(12)]
SEGMENTS = [{"inicio": at(60 * i), "fin": at(60 * i + 60), "estado": s}
            for i, s in enumerate(["up", "degraded", "up", "down", "unknown", "up"])]
CRONO = [{"corte": f"c{i}", "hora_autoridad": at(30 * i), "recibido": at(30 * i + 1),
          "en_linea": at(30 * i + 1.1), "verificado_borde": at(30 * i + 1.3),
          "retraso_s": 6.0, "retraso_borde_s": 18.0} for i in range(8)]
STATES = [{"state": "Ciudad de México", "visitors": 5200}, {"state": "Jalisco", "visitors": 800},
          {"state": "Estado de México", "visitors": 2100}, {"state": "Yucatán", "visitors": 40},
          {"state": "Puebla", "visitors": 300}, {"state": "Chiapas", "visitors": 12},
          {"state": None, "visitors": 77}]


def drawings() -> dict[str, str]:
    return {"visitas": charts.visits_chart(POINTS, CORTES, ZONE),
            "horas": charts.hourly_chart(HOURS, ZONE),
            "disponibilidad": charts.uptime_timeline(SEGMENTS, ZONE),
            "retraso": charts.lag_chart(CRONO),
            "mapa": mexico_map.mexico_map(STATES)}


@pytest.fixture(scope="module")
def drawn() -> dict[str, str]:
    return drawings()


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def ids(svg: str) -> list[str]:
    return [el.attrib["id"] for el in parse(svg).iter() if "id" in el.attrib]


def test_each_drawing_is_one_inline_svg_element(drawn: dict[str, str]) -> None:
    for name, svg in drawn.items():
        assert svg.startswith("<svg "), name  # no XML prolog, no DOCTYPE: fit for HTML
        assert "<!DOCTYPE" not in svg and "<?xml" not in svg
        root = parse(svg)
        assert root.find(f"{SVG}title") is not None, name
        assert root.attrib["role"] == "img"
        # Nothing outside the document: every reference is a fragment of the drawing itself.
        assert 'href="http' not in svg and "url(http" not in svg, name


def test_same_input_same_bytes(drawn: dict[str, str]) -> None:
    assert drawings() == drawn


def test_same_bytes_in_another_process(drawn: dict[str, str]) -> None:
    """Nothing depends on the process: hash seed, uuid, clock (each chart's salt is fixed)."""
    code = ("import hashlib, json, sys; sys.path.insert(0, 'tests'); "
            "from test_report_visuals import drawings; "
            "print(json.dumps({k: hashlib.sha256(v.encode()).hexdigest() "
            "for k, v in drawings().items()}))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=Path(__file__).parents[1], check=True, timeout=120)
    here = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in drawn.items()}
    assert json.loads(done.stdout) == here


def test_ids_are_unique_within_and_across_drawings(drawn: dict[str, str], tmp_path: Path
                                                   ) -> None:
    site = make_site(tmp_path / "d")
    try:
        every = [*drawn.values(), diagram.service_diagram(site.cfg)]
    finally:
        site.ledger.close()
    seen: list[str] = [i for svg in every for i in ids(svg)]
    assert len(seen) == len(set(seen))
    # Matplotlib's own names (figure_1, glyphs) are prefixed with the chart's.
    assert all(i.startswith("grafica-visitas") for i in ids(drawn["visitas"]))
    assert "#grafica-visitas *{" in drawn["visitas"]  # the backend's style stays in its chart


def test_empty_inputs_say_no_data() -> None:
    for svg in (charts.visits_chart([], CORTES, ZONE), charts.hourly_chart([], ZONE),
                charts.uptime_timeline([], ZONE), charts.lag_chart([]),
                charts.lag_chart([{"corte": "c1", "recibido": at(0)}]),  # never live
                mexico_map.mexico_map([]), mexico_map.mexico_map([{"state": None,
                                                                   "visitors": 3}])):
        parse(svg)
        assert charts.NO_DATA in svg
        assert len(svg) < 1000


def test_visits_chart_marks_the_cortes_in_range() -> None:
    with_cortes = charts.visits_chart(POINTS, CORTES, ZONE)
    assert "corte publicado" in with_cortes  # the legend's text (as a comment beside glyphs)
    assert "visitantes por 10 min" in with_cortes
    outside = charts.visits_chart(POINTS, [at(-600)], ZONE)
    assert "corte publicado" not in outside
    assert "08/12 18:00" in with_cortes  # dates in the site's zone, dd/mm HH:MM


def test_timeline_shows_the_four_states() -> None:
    svg = charts.uptime_timeline(SEGMENTS, ZONE)
    for colour, label in charts.STATES.values():
        assert f"fill: {colour}" in svg
        assert label in svg
    assert "disponible (3 h 00 min)" in svg  # time spent in each state, in the legend
    per_target = charts.uptime_timeline(
        [{**s, "objetivo": name} for s in SEGMENTS[:2] for name in ("publico", "origen")], ZONE)
    assert "publico" in per_target and "origen" in per_target


def test_lag_chart_from_times_or_from_the_lags() -> None:
    from_times = charts.lag_chart(CRONO)
    assert "recibido → en línea" in from_times and "en línea → verificado en el borde" in from_times
    assert charts._lags(CRONO[0]) == pytest.approx((6.0, 12.0))
    only_lags = {"corte": "c9", "retraso_s": 4.0, "retraso_borde_s": 10.0}
    assert charts._lags(only_lags) == (4.0, 6.0)
    assert charts.lag_chart([only_lags]).startswith("<svg")


def _nodes(svg: str) -> int:
    return sum(1 for _ in parse(svg).iter())


def _vertices(svg: str) -> int:
    return max(len(p.attrib["d"].split()) // 3 for p in parse(svg).iter(f"{SVG}path"))


MONTH = [{"t": at(10 * i), "visitors": (i * 37) % 90 + (400 if 1300 < i < 1360 else 0),
          "pageviews": i, "hits": i} for i in range(30 * 144)]


def test_a_series_is_one_path_however_long() -> None:
    """WeasyPrint parses and paints every node in Python: bars, cortes and steps are one path
    each, and a month of 10-minute buckets is drawn per half point of width."""
    hours = [{"t": at(60 * i), "visitors": i % 50} for i in range(30 * 24)]
    assert _nodes(charts.hourly_chart(hours, ZONE)) < 80  # not one node per bar (720)
    assert _nodes(charts.lag_chart(CRONO * 9)) < 200
    month = charts.visits_chart(MONTH, CORTES, ZONE)
    assert _nodes(month) < 90
    assert _vertices(month) < 6 * charts.COLUMNS_PER_PT * charts._axes_width_pt()
    assert _vertices(charts.visits_chart(POINTS, CORTES, ZONE)) >= 2 * len(POINTS)  # every step


def test_columns_keep_each_columns_lowest_and_highest_value() -> None:
    xs = [*[i / 10 for i in range(1000) for _ in (0, 1)][1:], 100.0]  # steps of 0.1
    ys = [float((i * 7919) % 101) for i in range(1000) for _ in (0, 1)]
    out_x, out_y = charts._columns(xs, ys, 0.0, 100.0, 50)
    assert len(out_x) <= 5 * 50 < len(xs)
    assert out_x == sorted(out_x) and out_x[0] == xs[0] and out_x[-1] == xs[-1]
    for column in range(50):
        inside = [y for x, y in zip(xs, ys, strict=True) if 2 * column <= x < 2 * column + 2]
        kept = [y for x, y in zip(out_x, out_y, strict=True) if 2 * column <= x < 2 * column + 2]
        assert min(kept) == min(inside) and max(kept) == max(inside), column
    assert charts._columns(xs[:40], ys[:40], 0.0, 100.0, 50) == (xs[:40], ys[:40])


def test_tidy_drops_only_the_wrappers_nothing_needs() -> None:
    from difusor.report.svgtidy import tidy

    svg = ('<svg xmlns="http://www.w3.org/2000/svg">\n <g id="a">\n  <g id="b" '
           'clip-path="url(#c)">\n   <path d="M 0 0 \nL 1 1 \nz\n"/>\n  </g>\n </g>\n'
           ' <g id="kept"><rect/></g><use href="#kept"/>\n <g><text> dos  espacios </text></g>'
           '</svg>')
    assert tidy(svg) == ('<svg xmlns="http://www.w3.org/2000/svg"><g id="b" clip-path="url(#c)">'
                         '<path d="M 0 0 L 1 1 z"/></g><g id="kept"><rect/></g>'
                         '<use href="#kept"/><text> dos  espacios </text></svg>')


def test_map_colours_states_with_visitors_and_greys_the_others() -> None:
    root = parse(mexico_map.mexico_map(STATES))
    paths = {p.attrib["id"].rsplit("-", 1)[1]: p for p in root.iter(f"{SVG}path")}
    assert len(paths) == 32
    coloured = {"cmx", "jal", "mex", "yuc", "pue", "chp"}
    for code, path in paths.items():
        if code in coloured:
            assert path.attrib["fill"] in mexico_map.PALETTE, code
        else:
            assert path.attrib["fill"] == mexico_map.NONE_FILL, code
    assert paths["cmx"].attrib["fill"] == mexico_map.PALETTE[-1]  # the most: the darkest
    assert paths["chp"].attrib["fill"] == mexico_map.PALETTE[0]
    titles = {code: p.find(f"{SVG}title").text for code, p in paths.items()}
    assert titles["cmx"] == "Ciudad de México: 5,200 visitantes"
    assert titles["son"] == "Sonora: 0 visitantes"
    text = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert mexico_map.ATTRIBUTION in text
    assert "Sin estado identificado: 77 visitantes" in text
    assert "sin visitantes" in text and "2,101 – 5,200" in text


def test_map_names_states_through_the_geo_module() -> None:
    assert mexico_map.state_code("Ciudad de México") == "CMX"
    assert mexico_map.state_code("Mexico City") == "CMX"  # DB-IP's English name
    assert mexico_map.state_code("Michoacán de Ocampo") == "MIC"
    assert mexico_map.state_code("Atlantis") is None
    ids_ = {loc["id"].upper() for loc in mexico_map.outlines()["locations"]}
    from difusor.analytics.geo import STATES as GEO_STATES
    assert ids_ == set(GEO_STATES)  # every outline has a state and every state an outline


def test_map_classes_are_quantiles_of_the_states_with_visitors() -> None:
    assert mexico_map.classes([0, 0]) == []
    assert mexico_map.classes([5, 5, 5]) == [(5, 5)]
    assert mexico_map.classes(list(range(1, 11))) == [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10)]
    assert mexico_map.classes([1, 100]) == [(1, 1), (2, 100)]


EXTRA = """
[pull]
url = "https://autoridad.example.mx/paquete.zip"

[dropfolder]
dirs = ["/srv/buzon"]

[[origins]]
name = "respaldo"
kind = "ssh"
host = "10.0.0.5"
user = "prep"
root = "/var/www/prep"

[[origins]]
name = "espejo"
kind = "nginx"
root = "/srv/espejo"

[[cdn]]
name = "borde"
kind = "cloudflare"
zone_id = "z1"
edge_url = "https://prep.example.mx"

[monitor]
listen = "0.0.0.0:9100"

[[monitor.targets]]
name = "publico"
url = "https://prep.example.mx"
public = true
"""


@pytest.fixture
def cfg(tmp_path: Path) -> Iterator[Config]:
    site = make_site(tmp_path / "d", EXTRA)
    yield site.cfg
    site.ledger.close()


def test_diagram_names_what_is_configured(cfg: Config) -> None:
    svg = diagram.service_diagram(cfg)
    root = parse(svg)
    text = "\n".join(t.text or "" for t in root.iter(f"{SVG}text"))
    for expected in ("SFTP embebido", "Carpeta vigilada", "Descarga HTTPS", "Origen «local»",
                     "Origen «respaldo»", "Origen «espejo»", "CDN «borde»", "Público",
                     "https://prep.example.mx", "Monitor local", "Sondas remotas",
                     "Objetivo «publico»", "reportan a 0.0.0.0:9100", cfg.web.listen,
                     cfg.site.url):
        assert expected in text, expected
    assert diagram.service_diagram(cfg) == svg


def test_diagram_without_cdn_goes_from_origins_to_the_public(tmp_path: Path) -> None:
    site = make_site(tmp_path / "d")
    try:
        root = parse(diagram.service_diagram(site.cfg))
    finally:
        site.ledger.close()
    headers = [t.text for t in root.iter(f"{SVG}text") if t.attrib.get("y") == "20"]
    assert headers == ["Recepción", "Publicación", "Orígenes", "Público"]


def test_components_with_injected_versions(cfg: Config) -> None:
    versions = {"difusor": "9.9", "python": "3.11.0", "granian": "2.0", "duckdb": "1.1",
                "nginx": "1.22.1", "asyncssh": "2.1"}
    rows = diagram.components(cfg, versions)
    assert rows == diagram.components(cfg, versions)
    by_name = {r["nombre"]: r for r in rows}
    assert all(set(r) == {"nombre", "tipo", "detalle", "version"} for r in rows)
    assert by_name["difusor"]["version"] == "9.9"
    assert by_name["origen «local»"]["version"] == "2.0"
    assert by_name["nginx"]["version"] == "1.22.1"  # an nginx origin is configured
    assert by_name["origen «respaldo»"]["detalle"].startswith("ssh prep@10.0.0.5:22")
    assert by_name["CDN «borde»"]["detalle"] == "https://prep.example.mx"
    assert by_name["API de sondas remotas"]["detalle"] == "0.0.0.0:9100"
    found = diagram.installed_versions()  # this machine: at least Python and difusor
    assert found["python"] and found["difusor"]
