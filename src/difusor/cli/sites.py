"""``difusor phase`` and ``difusor simulacro reset``: the operation's calendar by hand."""

from __future__ import annotations

import json
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from difusor import config as config_mod
from difusor.cli.kit import (
    DEFAULT_CONFIG,
    ConfigOpt,
    JsonOpt,
    NowOpt,
    existing_state,
    ledger_for,
    moment_from,
    out,
    site_view,
)
from difusor.errors import DifusorError
from difusor.moments import printed
from difusor.sites import phase as phases

HELP = "Simulacros: vaciar el sitio de prueba cuando terminan (la bitácora conserva todo)."


def phase(
    set_to: Annotated[str | None, typer.Option(
        "--set", metavar="FASE", help="Fijar la fase: simulacro, oficial, cerrado, o auto para "
        "volver al calendario de la operación.")] = None,
    as_json: JsonOpt = False,
    now: NowOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """La fase de la operación (preparación, simulacro, oficial, cerrado), a qué sitio van los
    paquetes y el siguiente plazo del calendario."""
    from difusor.sites.catalog import feeds, route

    cfg = config_mod.load(config)
    zone = ZoneInfo(cfg.site.timezone)
    moment = moment_from(now, zone)
    if set_to is not None and set_to not in phases.SETTABLE:
        raise typer.BadParameter(f"«{set_to}» no es una fase; usa "
                                 + ", ".join(phases.SETTABLE), param_hint="--set")
    existing_state(cfg)
    with ledger_for(cfg) as ledger:
        if set_to is not None:
            phases.set_phase(ledger, set_to, phases.operator())
        current = phases.current(cfg, ledger, moment)
    destinations = {feed or "principal": route(cfg, feed, current.name) for feed in feeds(cfg)}
    if as_json:
        doc = {**current.as_dict(), "destino": {
            feed: {"sitio": site, "motivo": why or None} for feed, (site, why) in
            destinations.items()}}
        out.print_json(json.dumps(doc, ensure_ascii=False))
        return
    out.print(f"Fase: [bold]{phases.LABELS[current.name]}[/] ({_source(current, zone)})")
    if current.simulacro:
        out.print(f"  simulacro en curso: {current.simulacro}", markup=False)
    if cfg.sites:
        for feed, (site, why) in destinations.items():
            where = f"al sitio «{site}»" if site else f"a ninguno: {why}"
            who = "" if len(destinations) == 1 else f" de la autoridad «{feed}»"
            out.print(f"  los paquetes{who} van {where}", markup=False)
    if current.next is not None:
        out.print(f"  siguiente: {current.next.what}, {printed(current.next.at, zone)}",
                  markup=False)


def _source(current: phases.Phase, zone: ZoneInfo) -> str:
    if current.override is None:
        return current.source
    by = (current.override.get("detail") or {}).get("by") or "?"
    return f"fijada por {by} el {printed(current.override['at'], zone)}; «--set auto» la " \
           "devuelve al calendario"


def reset(
    yes: Annotated[bool, typer.Option("--yes", help="Confirmar: vaciar el sitio de prueba.")]
    = False,
    site: Annotated[str | None, typer.Option(
        "--site", help="Sitio de prueba a vaciar; por omisión, todos los de papel prueba.")]
    = None,
    now: NowOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Vacía el sitio de prueba al terminar un simulacro: ya no sirve ningún corte y los mismos
    cortes pueden volver a enviarse. La bitácora conserva cada corte para la memoria técnica.
    Se rechaza durante la fase oficial."""
    from difusor.publish.clear import clear_site
    from difusor.publish.publisher import Publisher

    cfg = config_mod.load(config)
    zone = ZoneInfo(cfg.site.timezone)
    moment = moment_from(now, zone)
    tests = [n for n, e in cfg.sites.items() if e.role == "prueba"]
    if not tests:
        raise DifusorError("no hay sitio de prueba: se define con [sites.NOMBRE] role = "
                           "\"prueba\" (ver docs/sitios.md)")
    if site is not None and site not in tests:
        raise DifusorError(f"«{site}» no es un sitio de prueba; los de prueba son: "
                           + ", ".join(tests))
    existing_state(cfg)
    with ledger_for(cfg) as ledger:
        current = phases.current(cfg, ledger, moment)
    if current.name == "oficial":
        raise DifusorError("estamos en la fase oficial: el sitio de prueba no se vacía durante "
                           "la jornada (si el calendario está mal, «difusor phase --set …»)")
    if not yes:
        raise DifusorError("esto retira el corte en línea del sitio de prueba; confirma con --yes")
    by = phases.operator()
    for name in [site] if site else tests:
        view = site_view(cfg, name)
        with ledger_for(view) as ledger:
            publisher = Publisher(view, ledger)
            try:
                done = clear_site(publisher, by=by)
            finally:
                publisher.close()
        held = f"; estaba en línea {done.live}" if done.live else ""
        out.print(f"Sitio «{name}» vaciado: {len(done.releases)} cortes retirados{held}. "
                  "La bitácora los conserva.", markup=False)
        if done.elsewhere:
            out.print(f"Aviso: siguen con una copia {', '.join(done.elsewhere)}: retíralos con "
                      "su propio procedimiento (docs/disponibilidad.md).", markup=False)


COMMANDS = {"reset": reset}
