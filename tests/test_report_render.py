"""The memoria's renderer: HTML + PDF/A-3b with the CSV annexes, from a hand-made document.

The document follows the contract in ``difusor.report`` (every key, plausible values); an
«empty period» variant has no visits and no incidents. The drawings are simple SVG strings, so
the renderer is tested apart from the charts. PDFs are read back with poppler (pdftotext,
pdfinfo, pdfdetach)."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from report_doc import DRAWINGS, TABLES, make_doc

from difusor.report import annexes, operator_text, render, typeset

POPPLER = all(shutil.which(t) for t in ("pdftotext", "pdfinfo", "pdfdetach"))
needs_poppler = pytest.mark.skipif(not POPPLER, reason="falta poppler-utils")

SECTIONS = ["Índice", "1. Resumen ejecutivo", "2. Alcance y periodo",
            "3. Arquitectura del servicio", "4. Cronología", "5. Disponibilidad y desempeño",
            "6. Visitas", "7. Seguridad", "8. Incidentes", "9. Análisis y conclusiones",
            "Anexos"]
INCIDENT_FIELDS = ["Fecha", "Hora", "Duración", "Causa raíz", "Impacto", "Medidas",
                   "Detección", "Línea de tiempo", "Estado"]


def _cfg(root: Path) -> Any:
    return SimpleNamespace(root=root)  # all the renderer reads of the config: its folder


@pytest.fixture
def build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write the memoria of ``doc`` into a folder (drawings replaced by fixed SVG)."""
    monkeypatch.setattr(render, "draw_all", lambda doc, cfg: dict(DRAWINGS))

    def _build(doc: dict[str, Any], name: str = "out") -> Path:
        out = tmp_path / name
        render.write_memoria(copy.deepcopy(doc), TABLES, out, _cfg(tmp_path))
        return out
    return _build


def _text(pdf: Path, page: int | None = None) -> str:
    pages = ["-f", str(page), "-l", str(page)] if page else []
    return subprocess.run(["pdftotext", "-layout", *pages, str(pdf), "-"], check=True,
                          capture_output=True, text=True).stdout


def _pages(pdf: Path) -> int:
    info = subprocess.run(["pdfinfo", str(pdf)], check=True, capture_output=True,
                          text=True).stdout
    return int(next(line.split()[1] for line in info.splitlines() if line.startswith("Pages:")))


# -- formatting ------------------------------------------------------------------------------


def test_numbers_are_written_the_mexican_way() -> None:
    assert render.num(1234567) == "1,234,567"
    assert render.num(1234.5, 2) == "1,234.50"
    assert render.num(None) == "sin datos"
    assert render.pct(99.99969) == "99.999 %"  # truncated: never claims more than measured
    assert render.pct(100) == "100.000 %"
    assert render.figure(4200) == "4,200" and render.figure(2.5) == "2.50"
    assert render.size(9_812_345_678) == "9.1 GB"


# -- annexes and the operator's text -----------------------------------------------------------


def test_annexes_are_utf8_with_bom_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "viejo.csv").write_text("x\n")
    listed = annexes.write_annexes(tmp_path, {"z": (["a"], [(1.5,)]), **TABLES})
    assert [a["archivo"] for a in listed] == ["anexos/cortes.csv", "anexos/estados.csv",
                                             "anexos/z.csv"]
    raw = (tmp_path / "estados.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and "Michoacán,9000\r\n".encode() in raw
    assert listed[1]["filas"] == 2
    import hashlib
    assert listed[1]["sha256"] == hashlib.sha256(raw).hexdigest()
    assert not (tmp_path / "viejo.csv").exists()  # the folder matches the document's list


def test_operator_text_escapes_html_and_fetches_no_image(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    assert operator_text.operator_status(cfg) == {"archivo": str(tmp_path / "memoria.md"),
                                                  "existe": False}
    assert operator_text.operator_html(operator_text.operator_path(cfg)) is None
    (tmp_path / "memoria.md").write_text("# Balance\n\n<script>alert(1)</script>\n\n"
                                         "![logo](https://example.com/x.png) **bien**\n")
    html = operator_text.operator_html(tmp_path / "memoria.md")
    assert html is not None
    assert "<h3>Balance</h3>" in html and "<strong>bien</strong>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html


# -- the PDF ---------------------------------------------------------------------------------


@needs_poppler
@pytest.mark.slow
def test_pdf_has_every_section_and_incident_field(build) -> None:
    out = build(make_doc())
    pdf = out / "memoria-tecnica.pdf"
    text = _text(pdf)
    for title in SECTIONS:
        assert title in text, title
    for label in INCIDENT_FIELDS:
        assert label in text, label
    for expected in ("Resultados Irimbo", "Instituto Electoral de Irimbo", "18,342", "12,045",
                     "99.973 %", "Geolocalización: DB-IP (db-ip.com), CC BY 4.0",
                     "sin registrar", "PREP-03", "Michoacán", "memoria.md",
                     "Revisión contra la convocatoria", "105.3 MB/s",
                     "Cadena pública de cortes", "1,234 verificaciones"):
        assert expected in text, expected
    assert "BORRADOR" not in text
    # The table of contents gives each chapter's page (target-counter): «Anexos .... 14».
    toc = _text(pdf, 2)
    assert any(line.split()[-1].isdigit() for line in toc.splitlines() if "Anexos" in line)


@needs_poppler
@pytest.mark.slow
def test_empty_period_still_renders_every_section(build) -> None:
    text = _text(build(make_doc(empty=True)) / "memoria-tecnica.pdf")
    for title in SECTIONS:
        assert title in text, title
    for said in ("No se registraron incidentes en el periodo.",
                 "No se registraron visitas en el periodo", "No se detectaron ataques"):
        assert said in " ".join(text.split()), said
    assert "DB-IP" not in text  # no geolocated visitor, no attribution


@needs_poppler
@pytest.mark.slow
def test_draft_marks_every_page(build) -> None:
    pdf = build(make_doc(draft=True)) / "memoria-tecnica.pdf"
    pages = _pages(pdf)
    assert pages > 5
    for page in range(1, pages + 1):
        assert "BORRADOR" in _text(pdf, page), f"página {page}"


@needs_poppler
@pytest.mark.slow
def test_pdf_is_pdfa3b_with_the_csvs_attached(build) -> None:
    out = build(make_doc())
    pdf = out / "memoria-tecnica.pdf"
    meta = subprocess.run(["pdfinfo", "-meta", str(pdf)], check=True, capture_output=True,
                          text=True).stdout
    assert 'pdfaid:part="3"' in meta and 'pdfaid:conformance="B"' in meta
    assert "2024-06-04T02:00:00Z" in meta  # the date comes from the data, not the clock
    listing = subprocess.run(["pdfdetach", "-list", str(pdf)], check=True, capture_output=True,
                             text=True).stdout
    assert "cortes.csv" in listing and "estados.csv" in listing
    saved = out / "saved.csv"
    subprocess.run(["pdfdetach", "-save", "1", "-o", str(saved), str(pdf)], check=True)
    assert saved.read_bytes() == (out / "anexos" / "cortes.csv").read_bytes()
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True).stdout
    rows = fonts.splitlines()[2:]
    assert rows and all(" yes " in r for r in rows)  # every font embedded (PDF/A)
    assert all("DejaVu" in r for r in rows)


@pytest.mark.slow  # WeasyPrint lays out ~14 pages: 2-3 s per build
def test_two_builds_give_identical_bytes(build, tmp_path: Path) -> None:
    """The second build runs in another process, with another hash seed and another local
    zone, a little later: nothing of the clock, the process or the machine's zone gets in."""
    first = build(make_doc(draft=True), "uno")
    second = tmp_path / "dos"
    script = ("import sys; from pathlib import Path; from types import SimpleNamespace; "
              "from report_doc import DRAWINGS, TABLES, make_doc; from difusor.report import render; "
              "render.draw_all = lambda doc, cfg: dict(DRAWINGS); "
              "render.write_memoria(make_doc(draft=True), TABLES, Path(sys.argv[1]), "
              "SimpleNamespace(root=Path(sys.argv[2])))")
    env = dict(os.environ, PYTHONHASHSEED="7", TZ="Asia/Tokyo",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parent),
                                           os.environ.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, "-c", script, str(second), str(tmp_path)], check=True,
                   env=env)
    for name in ("memoria-tecnica.pdf", "memoria-tecnica.html", "anexos/cortes.csv"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_html_is_the_same_twice_and_complete_when_empty() -> None:
    doc = make_doc(empty=True)
    html = render.render_html(copy.deepcopy(doc), DRAWINGS)
    assert html == render.render_html(copy.deepcopy(doc), DRAWINGS)
    for title in SECTIONS:
        assert f">{title}</h2>" in html, title
    assert "No se registraron incidentes en el periodo." in html


@pytest.mark.slow  # WeasyPrint lays out ~14 pages: 2-3 s per build
def test_anexos_are_listed_in_the_document(tmp_path: Path, build) -> None:
    doc = make_doc()
    out = tmp_path / "w"
    paths = render.write_memoria(doc, TABLES, out, _cfg(tmp_path))
    assert [p.name for p in paths] == ["memoria-tecnica.html", "memoria-tecnica.pdf",
                                       "cortes.csv", "estados.csv"]
    assert [a["archivo"] for a in doc["anexos"]] == ["anexos/cortes.csv", "anexos/estados.csv"]
    html = (out / "memoria-tecnica.html").read_text()
    assert doc["anexos"][0]["sha256"] in html
    # The file has each drawing inline, where WeasyPrint had an image (report/typeset.py).
    for name in typeset.FIGURES:
        assert f'id="svg-{name}"' in html, name
    assert typeset.SCHEME not in html and "<!--difusor:figura" not in html


@pytest.mark.slow  # WeasyPrint parses the page before it asks for the drawings
def test_a_drawing_that_fails_leaves_no_file(tmp_path: Path) -> None:
    asked: list[int] = []

    def broken() -> dict[str, str]:
        asked.append(1)
        raise ValueError("gráfica imposible")

    with pytest.raises(ValueError, match="gráfica imposible"):
        typeset.typeset(make_doc(), TABLES, tmp_path / "x", broken)
    assert asked == [1] and not (tmp_path / "x").exists()


def test_the_staff_list_is_an_annex_when_configured() -> None:
    doc = make_doc()
    assert "C. Personal" not in render.render_html(copy.deepcopy(doc), DRAWINGS)
    doc["sitio"]["personal"] = [{"nombre": "Ana Pérez", "rol": "responsable técnica",
                                 "contacto": "ana@medio.mx"}]
    annex = render.render_html(doc, DRAWINGS).split("C. Personal", 1)[1]
    assert "Ana Pérez" in annex and "responsable técnica" in annex and "ana@medio.mx" in annex


def test_the_simulacros_are_listed_with_their_evidence() -> None:
    doc = make_doc()
    assert ">Simulacros</h3>" not in render.render_html(copy.deepcopy(doc), DRAWINGS)
    doc["simulacros"] = [{
        "nombre": "Último simulacro", "sitio": "prueba", "url": "https://prueba.example.mx",
        "desde": "2024-06-01T09:00:00-06:00", "hasta": "2024-06-01T14:00:00-06:00",
        "cortes_publicados": 31, "primer_corte": "20240602_2000", "ultimo_corte": "20240603_0300",
        "paquetes_rechazados": 1, "retraso_publicacion_s": {"p50": 0.4, "p95": 1.25, "max": 3.0},
        "disponibilidad_pct": 100.0, "incidentes": 0, "vaciado": "2024-06-01T15:02:00-06:00"}]
    html = render.render_html(doc, DRAWINGS)
    table = html.split(">Simulacros</h3>", 1)[1].split("</table>", 1)[0]
    for shown in ("Último simulacro", "https://prueba.example.mx", ">31<", "100.000 %",
                  "01/06/2024 15:02"):
        assert shown in table, shown


# -- the HTML --------------------------------------------------------------------------------


def test_html_is_self_contained_and_escaped(tmp_path: Path) -> None:
    doc = make_doc()
    doc["sitio"]["nombre"] = "Difusor <b>&</b>"
    logo = tmp_path / "logo.png"
    logo.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    doc["sitio"]["logo"] = str(logo)
    (tmp_path / "memoria.md").write_text("Todo salió **bien**.\n")
    doc["texto_operador"] = {"archivo": str(tmp_path / "memoria.md"), "existe": True}
    svg = dict(DRAWINGS, mapa='<?xml version="1.0"?>\n' + DRAWINGS["mapa"])
    html = render.render_html(doc, svg)
    assert "Difusor &lt;b&gt;&amp;&lt;/b&gt;" in html and "<b>&</b>" not in html
    assert 'src="data:image/png;base64,' in html
    assert "<?xml" not in html and 'id="svg-mapa"' in html
    assert "Todo salió <strong>bien</strong>." in html
    for external in ("http://", "https://"):
        stripped = html.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert all(u.startswith(("https://prep.example.mx", "https://www.prep.example.mx"))
                   for u in _urls(stripped, external)), external
    assert "<script" not in html and "<link" not in html


def _urls(html: str, scheme: str) -> list[str]:
    import re
    return re.findall(re.escape(scheme) + r"[^\s\"'<)]+", html)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)


@pytest.mark.slow
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="falta chromium o chromedriver")
def test_html_in_chromium_has_no_console_error_and_no_request(tmp_path: Path) -> None:
    import json

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    logo = tmp_path / "logo.png"
    logo.write_bytes(_tiny_png())
    doc = make_doc(draft=True)
    doc["sitio"]["logo"] = str(logo)
    page = tmp_path / "memoria.html"
    page.write_text(render.render_html(doc, DRAWINGS), encoding="utf-8")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(page.as_uri())
        assert "Memoria técnica" in driver.title
        assert driver.find_element("id", "s8").is_displayed()
        console = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        requests = []
        for entry in driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                requests.append(message["params"]["request"]["url"])
    finally:
        driver.quit()
    assert console == []
    assert [u for u in requests if u != page.as_uri() and not u.startswith("data:")] == []


def _tiny_png() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    raw = b"\x00\x0d\x3b\x66"  # one dark-blue pixel, RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
