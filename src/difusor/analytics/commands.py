"""``difusor analytics ingest|summary``: thin commands over ``ingest`` and ``metrics``."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from difusor import config as config_mod
from difusor.clikit import DEFAULT_CONFIG, ConfigOpt, err, out
from difusor.errors import DifusorError

analytics_app = typer.Typer(help="Analítica de visitas: registros de acceso (origen y borde) en "
                            "DuckDB; visitantes, visitas, páginas, tiempo y geolocalización.",
                            no_args_is_help=True)


@analytics_app.command("ingest")
def ingest_command(
    files: Annotated[list[Path], typer.Argument(help="Registros de acceso (también .gz).")],
    fmt: Annotated[str, typer.Option(
        "--format", help="Formato: " + ", ".join(config_mod.LOG_FORMATS) + ".")] = "auto",
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Ingiere registros de acceso; volver a ingerir un archivo nunca cuenta dos veces."""
    from difusor.analytics.lookups import Lookups

    if fmt not in config_mod.LOG_FORMATS:
        raise DifusorError(f"formato desconocido «{fmt}»; usa uno de: "
                           + ", ".join(config_mod.LOG_FORMATS))
    cfg = config_mod.load(config)
    lookups = Lookups.for_config(cfg)
    try:
        # Before DuckDB is even imported: the helper warms up while this process gets ready.
        lookups.start_for(sum(p.stat().st_size for p in files if p.is_file()))
        from difusor.analytics.ingest import ingest_files

        result = ingest_files(cfg, files, fmt=fmt, progress=True, lookups=lookups)
    finally:
        lookups.close()
    out.print(result.describe(), markup=False)


def _moment(value: str | None, zone: ZoneInfo, flag: str) -> datetime | None:
    """ISO 8601, or the ``dd/mm/aaaa HH:MM`` the summary itself prints."""
    from difusor.moments import parse_moment

    return None if value is None else parse_moment(value, zone, flag)


@analytics_app.command("summary")
def summary_command(
    since: Annotated[str | None, typer.Option(
        "--from", help="Inicio: dd/mm/aaaa HH:MM o ISO 8601 (sin zona: la del sitio).")] = None,
    until: Annotated[str | None, typer.Option(
        "--to", help="Fin, exclusivo: dd/mm/aaaa HH:MM o ISO 8601 (sin zona: la del sitio).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Salida JSON.")] = False,
    include_bots: Annotated[bool, typer.Option(
        "--include-bots", help="Contar también a los robots en las métricas.")] = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Visitantes, visitas, páginas y vistas, tiempo en el sitio, geolocalización y series."""
    from difusor.analytics.metrics import summary
    from difusor.analytics.render import print_summary

    cfg = config_mod.load(config)
    zone = ZoneInfo(cfg.site.timezone)
    start, end = _moment(since, zone, "--from"), _moment(until, zone, "--to")
    if start and end and end <= start:
        raise DifusorError("--to debe ser posterior a --from")
    data = summary(cfg, start, end, include_bots=include_bots)
    if as_json:
        out.print_json(json.dumps(data, ensure_ascii=False))
        return
    print_summary(data, out=out, err=err, zone=zone)
