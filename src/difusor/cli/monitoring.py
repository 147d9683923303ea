"""``difusor uptime``, ``incidents``, ``incident`` (and ``incident new``), ``takedown``:
availability against 99.9 %, the incidents the memoria técnica reports, and the site's final
takedown.

``--now`` (or ``DIFUSOR_NOW``) fixes the clock, for drills and tests."""

from __future__ import annotations

import json
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console

from difusor import config as config_mod
from difusor.cli.kit import (
    DEFAULT_CONFIG,
    ConfigOpt,
    JsonOpt,
    NowOpt,
    SiteOpt,
    ledger_for,
    moment_from,
    out,
    site_view,
)
from difusor.cli.monitor_views import incident_lines, uptime_table
from difusor.errors import DifusorError


def uptime(
    month: Annotated[str | None, typer.Option(
        help="Mes AAAA-MM; por omisión, el mes en curso en la zona horaria del sitio.")] = None,
    since: Annotated[str | None, typer.Option(
        "--from", help="Inicio de otro periodo (en vez de --month): dd/mm/aaaa HH:MM o ISO "
        "8601.")] = None,
    until: Annotated[str | None, typer.Option(
        "--to", help="Fin de ese periodo, dd/mm/aaaa HH:MM o ISO 8601 (por omisión, ahora).")]
    = None,
    vantage: Annotated[str | None, typer.Option(
        help="Solo los sondeos de este punto (local o el nombre de un agente remoto).")] = None,
    as_json: JsonOpt = False,
    now: NowOpt = None,
    site: SiteOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Disponibilidad medida en tiempo, por objetivo y del sitio público, contra 99.9 %."""
    from difusor.monitor.uptime import month_range, report

    cfg = site_view(config_mod.load(config), site)
    zone = ZoneInfo(cfg.site.timezone)
    moment = moment_from(now, zone)
    if since is not None or until is not None:
        if month is not None or since is None:
            raise DifusorError("usa --month, o --from (con --to opcional), no ambos")
        start = moment_from(since, zone, "--from")
        end = moment_from(until, zone, "--to") if until else moment
    else:
        start, end = month_range(month, zone, moment)
    with ledger_for(cfg) as ledger:
        rep = report(cfg, ledger, start=start, end=end, vantage=vantage, now=moment)
    if as_json:
        out.print_json(json.dumps(rep.to_dict(), ensure_ascii=False))
        return
    title, table, outages = uptime_table(rep, zone)
    out.print(title, markup=False)
    # Redirected to a file or a pipe: as wide as it needs (no cells wrapped at 80 columns).
    (out if out.is_terminal else Console(highlight=False, width=200)).print(table)
    if outages:
        out.print("Caídas del sitio público:", markup=False)
        for line in outages:
            out.print(line, markup=False)


def incidents(
    open_only: Annotated[bool, typer.Option("--open", help="Solo los que no están resueltos.")]
    = False,
    as_json: JsonOpt = False,
    now: NowOpt = None,
    site: SiteOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Los incidentes con todo lo que pide la memoria técnica (II.4.a), del más reciente."""
    from difusor.monitor.incident_sheet import incident_doc

    cfg = site_view(config_mod.load(config), site)
    zone = ZoneInfo(cfg.site.timezone)
    moment = moment_from(now, zone)
    with ledger_for(cfg) as ledger:
        docs = [incident_doc(row, moment) for row in ledger.incidents(open_only=open_only)]
    if as_json:
        out.print_json(json.dumps({"incidentes": docs}, ensure_ascii=False))
        return
    if not docs:
        out.print("No hay incidentes registrados." if not open_only else "No hay incidentes "
                  "abiertos.")
        return
    for n, doc in enumerate(docs):
        if n:
            out.print()
        for line in incident_lines(doc, zone):
            out.print(line, markup=False)


NEW = ("new", "nuevo")  # ``difusor incident new``: one the monitor never saw


def incident(
    number: Annotated[str, typer.Argument(
        metavar="N|new", help="Número del incidente, o «new» para registrar uno que el monitor "
        "no vio (un corte del proveedor de internet, una llamada de la autoridad).")],
    title: Annotated[str | None, typer.Option(help="new: título breve del incidente.")] = None,
    start: Annotated[str | None, typer.Option(
        help="new: inicio, dd/mm/aaaa HH:MM o ISO 8601 (sin zona: la del sitio).")] = None,
    end: Annotated[str | None, typer.Option(
        help="new: fin (sin él queda abierto, «identificado»).")] = None,
    kind: Annotated[str | None, typer.Option(
        help="new: tipo (connectivity, web, outage, attack, other…; por omisión other).")]
    = None,
    severity: Annotated[str | None, typer.Option(
        help="new: critical|major|minor|warning|info (por omisión, la del tipo).")] = None,
    cause: Annotated[str | None, typer.Option(
        help="Causa raíz (lo pasa a «identificado» si no está resuelto).")] = None,
    impact: Annotated[str | None, typer.Option(
        help="Impacto: peticiones y visitantes afectados, errores servidos.")] = None,
    measure: Annotated[list[str] | None, typer.Option(
        help="Medida tomada (repetible); se agrega con la hora y «operador».")] = None,
    state: Annotated[str | None, typer.Option(
        help="investigating|identified|monitoring|resolved (o investigando, identificado, "
        "en-observacion, resuelto).")] = None,
    as_json: JsonOpt = False,
    now: NowOpt = None,
    site: SiteOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Muestra un incidente y registra su causa, impacto, medidas o estado; «new» registra uno
    nuevo."""
    from difusor.monitor.incident_sheet import edit_incident, incident_doc, new_incident

    creating = number.strip().lower() in NEW
    if not creating:
        if not number.strip().isdigit():
            raise typer.BadParameter(f"«{number}» no es un número de incidente ni «new»",
                                     param_hint="N")
        given = [f"--{n}" for n, v in (("title", title), ("start", start), ("end", end),
                                        ("kind", kind), ("severity", severity)) if v is not None]
        if given:
            raise DifusorError(f"{', '.join(given)} solo van con «difusor incident new»")
    cfg = site_view(config_mod.load(config), site)
    zone = ZoneInfo(cfg.site.timezone)
    moment = moment_from(now, zone)
    if creating:
        missing = [f"--{n}" for n, v in (("title", title), ("start", start), ("cause", cause),
                                          ("impact", impact)) if v is None]
        if missing or not measure or state is not None:
            raise DifusorError("«difusor incident new» pide --title, --start, --cause, --impact "
                               "y al menos una --measure (--end, --kind y --severity son "
                               "opcionales; --state no va)"
                               + (f"; faltan: {', '.join(missing)}" if missing else ""))
        assert title is not None and start is not None and cause is not None
        assert impact is not None
        began = moment_from(start, zone, "--start")
        ended = moment_from(end, zone, "--end") if end is not None else None
        with ledger_for(cfg) as ledger:
            made = new_incident(ledger, title=title, start=began, end=ended, cause=cause,
                                impact=impact, measures=measure, kind=kind, severity=severity,
                                now=moment)
            row = ledger.incident(made)
        assert row is not None
        doc = incident_doc(row, moment)
        if as_json:
            out.print_json(json.dumps(doc, ensure_ascii=False))
            return
        out.print(f"Incidente n.º {made} registrado.", markup=False)
        for line in incident_lines(doc, zone):
            out.print(line, markup=False)
        return
    ident = int(number)
    with ledger_for(cfg) as ledger:
        row = edit_incident(ledger, ident, cause=cause, impact=impact, measures=measure or [],
                            state=state, now=moment)
    doc = incident_doc(row, moment)
    if as_json:
        out.print_json(json.dumps(doc, ensure_ascii=False))
        return
    if any(v is not None for v in (cause, impact, state)) or measure:
        out.print(f"Incidente n.º {ident} actualizado.")
    for line in incident_lines(doc, zone):
        out.print(line, markup=False)


def takedown(
    yes: Annotated[bool, typer.Option("--yes", help="Confirmar el retiro definitivo.")] = False,
    now: NowOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Retiro final del sitio; rechazado antes del fin de la operación más su conservación (I.2)."""
    from difusor.monitor.retention import allowed_from, check_takedown
    from difusor.publish.takedown import takedown as take_down

    cfg = config_mod.load(config)
    moment = moment_from(now, ZoneInfo(cfg.site.timezone))
    check_takedown(cfg, moment)
    allowed = allowed_from(cfg)
    assert allowed is not None  # check_takedown refuses a config without [operation] end
    if not yes:
        raise DifusorError("el retiro deja de publicar el sitio (los servidores responden 503); "
                           "confírmalo con --yes")
    with ledger_for(cfg) as ledger:
        done = take_down(cfg, ledger, now=moment, allowed_from=allowed)
    what = f"el corte {done.release_id} ya no se sirve" if done.release_id else "no había corte"
    out.print(f"Sitio retirado: {what}; /_difusor/health responde 503.", markup=False)
    if done.workers is None:
        out.print("Aviso: algún proceso del servidor no confirmó el cambio en 2 s.", markup=False)
    if done.elsewhere:
        out.print(f"Aviso: siguen con una copia {', '.join(done.elsewhere)}: retíralos con su "
                  "propio procedimiento (docs/disponibilidad.md).", markup=False)
    out.print("Detén «difusor run» si sigue en marcha: un paquete nuevo volvería a publicarse.",
              markup=False)
