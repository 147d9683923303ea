"""The memoria's files: ``memoria-tecnica.html`` (inline SVG), a PDF/A-3b with the CSV annexes
attached, and ``anexos/*.csv`` — typeset while the drawings are still being made.

The page is rendered once with a slot where each drawing goes. The HTML file gets the drawings
inline; WeasyPrint gets an ``<img src="figura:NAME">`` in each slot and fetches the drawing
through ``_Drawings`` when it builds the page's boxes, *after* parsing the HTML and computing
its styles: in report/worker.py that parsing overlaps the drawing, done in another process. As
an image the SVG is also parsed by ElementTree rather than as HTML and takes no part in the
page's cascade, and it draws the very same page (checked pixel by pixel).

Nothing is written until the drawings are there: a drawing that fails leaves no folder behind.
Same document, same bytes: every date written into the files is ``doc["generado"]`` (see
``render``); the PDF's ``/ID`` is a hash of its content.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import UTC
from functools import lru_cache
from pathlib import Path
from typing import Any

from markupsafe import Markup
from weasyprint import HTML, Attachment
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import FatalURLFetchingError, URLFetcher, URLFetcherResponse

from difusor.moments import stored
from difusor.report.annexes import Table, make_annexes, store_annexes, write_atomic

HTML_NAME = "memoria-tecnica.html"
PDF_NAME = "memoria-tecnica.pdf"
FIGURES = ("visitas", "por_hora", "linea_de_tiempo", "retraso", "mapa", "diagrama")
SCHEME = "figura:"
OPTIONS: dict[str, Any] = {"pdf_variant": "pdf/a-3b", "pdf_identifier": True,
                           "custom_metadata": False, "optimize_images": False,
                           "uncompressed_pdf": False}


def _slot(name: str) -> str:
    return f"<!--difusor:figura:{name}-->"


class _Missing(FatalURLFetchingError):
    """The drawings never came: stops WeasyPrint, which only warns about other fetch errors."""


class _Drawings(URLFetcher):
    """``figura:NAME`` is the drawing NAME, asked of ``source`` the first time one is needed;
    any other address (the logo's ``data:`` URI) is fetched as WeasyPrint would."""

    def __init__(self, source: Callable[[], dict[str, str]]) -> None:
        super().__init__(allowed_protocols=("data",))  # never the network, nor a file
        self._source = source
        self.svg: dict[str, str] | None = None
        self.failure: BaseException | None = None

    def get(self) -> dict[str, str]:
        if self.svg is None:
            self.svg = self._source()
        return self.svg

    def fetch(self, url: str, headers: Any = None) -> URLFetcherResponse:
        if not url.startswith(SCHEME):
            return super().fetch(url, headers)
        try:
            svg = self.get()[url.removeprefix(SCHEME)]
        except BaseException as exc:
            self.failure = exc
            raise _Missing(url) from exc
        return URLFetcherResponse(url, svg.encode("utf-8"), {"Content-Type": "image/svg+xml"})


def typeset(doc: dict[str, Any], tables: dict[str, Table], outdir: Path,
            drawings: Callable[[], dict[str, str]]) -> list[Path]:
    """``outdir/memoria-tecnica.{html,pdf}`` and ``outdir/anexos/*.csv``; fills
    ``doc["anexos"]``; returns the paths written (HTML, PDF, then the CSVs). ``drawings``
    gives ``render.draw_all(doc, cfg)``, called once, when WeasyPrint first needs one."""
    from difusor.report.render import inline_svg, render_html

    outdir = Path(outdir)
    annexes = make_annexes(tables)
    doc["anexos"] = [a.entry() for a in annexes]
    page = render_html(doc, {name: Markup(_slot(name)) for name in FIGURES})
    figures = _Drawings(drawings)
    for_pdf = page
    for name in FIGURES:
        for_pdf = for_pdf.replace(_slot(name), f'<img class="dibujo" src="{SCHEME}{name}" alt="">')
    with warnings.catch_warnings():
        # WeasyPrint opens its sRGB profile (the PDF/A output intent) and never closes it.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            laid_out = HTML(string=for_pdf, base_url=str(outdir),
                            url_fetcher=figures).render(font_config=fonts(), **OPTIONS)
        except _Missing:  # the drawing's own error
            raise figures.failure or RuntimeError("faltan las gráficas") from None
        svg = figures.get()
        csvs = store_annexes(outdir / "anexos", annexes)
        html = page
        for name in FIGURES:
            html = html.replace(_slot(name), inline_svg(svg[name]))
        html_path, pdf_path = outdir / HTML_NAME, outdir / PDF_NAME
        write_atomic(html_path, html.encode("utf-8"))
        pdf = laid_out.write_pdf(attachments=attachments_for(csvs, doc), **OPTIONS)
    write_atomic(pdf_path, pdf)
    return [html_path, pdf_path, *csvs]


def attachments_for(paths: list[Path], doc: dict[str, Any]) -> list[Attachment]:
    """The CSVs attached as the PDF's source data, dated from the data (not the clock)."""
    when = stored(doc["generado"]).astimezone(UTC).replace(tzinfo=None)  # printed with a «Z»
    return [Attachment(filename=str(p), name=p.name, created=when, modified=when,
                       description=f"Anexo {p.stem} (CSV, UTF-8)", relationship="Data")
            for p in paths]


_WARM_UP = ('<style>@page { @bottom-right { content: counter(page); } }</style>'
            '<h2 style="font-family: DejaVu Sans">á</h2><table><tr><td><b>1</b></td>'
            '<td><code>x</code></td></tr></table><img src="figura:x">')
_WARM_UP_SVG = ('<svg width="20" height="10" xmlns="http://www.w3.org/2000/svg">'
                '<path d="M 0 0 L 5 5 z" fill="#123456"/><text x="1" y="9" '
                'style="font-family: \'DejaVu Sans\'">é</text></svg>')


def preload() -> None:
    """Warm up what ``typeset`` uses (report/worker.py runs it while the figures are
    gathered): WeasyPrint's fonts, its SVG images and the PDF writer's own imports and C types,
    on a small PDF/A with an attachment, thrown away."""
    from difusor.report.render import preload_templates

    preload_templates()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        HTML(string=_WARM_UP, url_fetcher=_Drawings(lambda: {"x": _WARM_UP_SVG})).render(
            font_config=fonts(), **OPTIONS).write_pdf(
                attachments=[Attachment(string="a,b\r\n", name="x.csv", relationship="Data")],
                **OPTIONS)


@lru_cache(maxsize=1)
def fonts() -> FontConfiguration:
    """One font configuration per process: the fonts found and loaded once (``preload``)."""
    return FontConfiguration()
