"""``difusor analytics ingest|summary``: thin commands over ``analytics.ingest`` and
``analytics.metrics``.

Neither imports DuckDB until it runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from difusor import config as config_mod
from difusor.cli.kit import (
    DEFAULT_CONFIG,
    ConfigOpt,
    JsonOpt,
    SiteOpt,
    err,
    optional_moment,
    out,
    progress,
    site_view,
)
from difusor.errors import DifusorError

HELP = ("Analítica de visitas: registros de acceso (origen y borde) en DuckDB; visitantes, "
        "visitas, páginas, tiempo y geolocalización.")


def ingest(
    files: Annotated[list[Path], typer.Argument(help="Registros de acceso (también .gz).")],
    fmt: Annotated[str, typer.Option(
        "--format", help="Formato: " + ", ".join(config_mod.LOG_FORMATS) + ".")] = "auto",
    site: SiteOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Ingiere registros de acceso; volver a ingerir un archivo nunca cuenta dos veces."""
    from difusor.analytics.lookups import Lookups

    if fmt not in config_mod.LOG_FORMATS:
        raise DifusorError(f"formato desconocido «{fmt}»; usa uno de: "
                           + ", ".join(config_mod.LOG_FORMATS))
    cfg = site_view(config_mod.load(config), site)
    lookups = Lookups.for_config(cfg)
    try:
        from difusor.analytics.ingest import ingest_files

        with progress("ingiriendo") as bar:
            result = ingest_files(cfg, files, fmt=fmt, progress=bar, lookups=lookups)
    finally:
        lookups.close()
    out.print(result.describe(), markup=False)


def summary(
    since: Annotated[str | None, typer.Option(
        "--from", help="Inicio: dd/mm/aaaa HH:MM o ISO 8601 (sin zona: la del sitio).")] = None,
    until: Annotated[str | None, typer.Option(
        "--to", help="Fin, exclusivo: dd/mm/aaaa HH:MM o ISO 8601 (sin zona: la del sitio).")
    ] = None,
    as_json: JsonOpt = False,
    include_bots: Annotated[bool, typer.Option(
        "--include-bots", help="Contar también a los robots en las métricas.")] = False,
    site: SiteOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Visitantes, visitas, páginas y vistas, tiempo en el sitio, geolocalización y series."""
    from difusor.analytics.metrics import summary as compute_summary
    from difusor.cli.analytics_tables import print_summary

    cfg = site_view(config_mod.load(config), site)
    zone = ZoneInfo(cfg.site.timezone)
    start, end = optional_moment(since, zone, "--from"), optional_moment(until, zone, "--to")
    if start and end and end <= start:
        raise DifusorError("--to debe ser posterior a --from")
    data = compute_summary(cfg, start, end, include_bots=include_bots)
    if as_json:
        out.print_json(json.dumps(data, ensure_ascii=False))
        return
    print_summary(data, out=out, err=err, zone=zone)


COMMANDS = {"ingest": ingest, "summary": summary}
