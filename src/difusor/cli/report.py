"""``difusor report``: the memoria técnica (convocatoria II.4) — a thin command over
``report.period``, ``report.document``, ``report.tables`` and ``report.render``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer

from difusor import config as config_mod
from difusor.cli.kit import (
    DEFAULT_CONFIG,
    ConfigOpt,
    NowOpt,
    SiteOpt,
    err,
    ledger_for,
    moment_from,
    out,
    site_view,
)
from difusor.errors import StoreError
from difusor.moments import printed

if TYPE_CHECKING:
    from difusor.report.worker import RenderWorker

DEFAULT_OUTPUT = Path("memoria")


def report(
    since: Annotated[str | None, typer.Option(
        "--from", help="Inicio del periodo: dd/mm/aaaa HH:MM o ISO 8601 (sin zona: la del "
        "sitio). Por omisión, el inicio de la operación o del primer dato.")] = None,
    until: Annotated[str | None, typer.Option(
        "--to", help="Fin del periodo, exclusivo. Por omisión, [operation] end más keep_hours, "
        "o el último dato.")] = None,
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Carpeta donde se escriben el PDF, el HTML y anexos/.")]
    = DEFAULT_OUTPUT,
    draft: Annotated[bool, typer.Option(
        "--draft", help="Marcar cada página como BORRADOR (p. ej. durante la noche).")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Imprimir todas las cifras del documento en JSON, sin escribir archivos.")]
    = False,
    now: NowOpt = None,
    site: SiteOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Memoria técnica: PDF y HTML en español con incidentes, disponibilidad, visitas y
    conclusiones, y los datos completos en CSV (convocatoria II.4)."""
    from difusor.report.worker import RenderWorker

    # Before DuckDB or any thread: the child gets the renderer ready on the other core.
    with RenderWorker.start() if not as_json else RenderWorker() as worker:
        _report(since, until, output, draft, as_json, now, site, config, worker)


def _report(since: str | None, until: str | None, output: Path, draft: bool, as_json: bool,
            now: str | None, site: str | None, config: Path, worker: RenderWorker) -> None:
    from difusor.report.background import in_child
    from difusor.report.document import build, read_ledger
    from difusor.report.period import resolve
    from difusor.report.tables import full_summary

    root = config_mod.load(config)
    cfg = site_view(root, site)
    zone = ZoneInfo(cfg.site.timezone)
    moment = moment_from(now, zone)
    say = _progress(not as_json)
    with ledger_for(cfg) as ledger:
        period = resolve(cfg, ledger, since, until)
        say(f"periodo: {printed(period.start, zone)} → {printed(period.end, zone)} "
            f"({_ORIGINS[period.origin]})")
        say("reuniendo cifras (visitas, disponibilidad, incidentes, cortes)…")
        # The ledger is read in a child process while DuckDB summarises the visits here
        # (report/background.py). Files need the full ranked lists too: one summary with every
        # row serves both.
        from_ledger = in_child(read_ledger, cfg, period.start, period.end, moment, root,
                               not as_json)
        full = None if as_json else full_summary(cfg, period.start, period.end)
        doc = build(cfg, ledger, period.start, period.end, draft=draft, now=moment,
                    origin=period.origin, full_visits=full, root=root, from_ledger=from_ledger)
        if as_json:
            out.print_json(json.dumps(doc, ensure_ascii=False))
            return
        from difusor.report.tables import annex_tables

        say("preparando los anexos…")
        tables = annex_tables(cfg, ledger, period.start, period.end, doc, full,
                              from_ledger.result()["tablas"])
    say(f"escribiendo la memoria en {output}/ …")
    try:
        written = worker.write(doc, tables, output, cfg)
    except OSError as exc:
        raise StoreError(f"no puedo escribir en {output}: {exc.strerror or exc}") from None
    out.print(f"Memoria técnica escrita en {output}/ ({len(written)} archivos):", markup=False)
    for path in written:
        out.print(f"  {path}", markup=False)
    if not doc["texto_operador"]["existe"]:
        out.print(f"Aviso: falta el texto del operador ({doc['texto_operador']['archivo']}); "
                  "la sección 9 lo incluirá cuando exista.", markup=False)


_ORIGINS = {"operacion": "la operación configurada", "opciones": "--from/--to",
            "datos": "todos los datos registrados"}


def _progress(enabled: bool):  # type: ignore[no-untyped-def]
    """One line per step on stderr, so ``--json`` output and pipes stay clean."""
    def say(text: str) -> None:
        if enabled:
            err.print(text, markup=False)
    return say


__all__ = ["report"]
