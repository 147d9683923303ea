"""``difusor publish``, ``status``, ``rollback``, ``gc``, ``purge``: the live corte by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from difusor import config as config_mod
from difusor.cli.kit import (
    DEFAULT_CONFIG,
    ConfigOpt,
    JsonOpt,
    NowOpt,
    SiteOpt,
    existing_state,
    ledger_for,
    out,
    progress,
    site_view,
)
from difusor.errors import DifusorError, PackageRefused, PurgeError
from difusor.paths import StateLayout


def publish(
    package: Annotated[Path, typer.Argument(help="Paquete .zip, .tar, .tar.gz o .tgz.")],
    force: Annotated[
        bool, typer.Option(help="Publicar aunque sea un corte anterior o ya publicado con otro "
                           "contenido.")
    ] = False,
    site: SiteOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Recibe, verifica y publica un paquete. Sale con 0 si quedó en línea, 2 si se rechazó.
    Con [sites] y sin --site va al sitio que indica la fase (el de prueba en un simulacro)."""
    from difusor.publish.publisher import Publisher

    root = config_mod.load(config)
    existing_state(root)
    cfg = site_view(root, site or _routed(root))
    with ledger_for(cfg) as ledger, progress("verificando") as bar:
        publisher = Publisher(cfg, ledger, progress=bar)
        publisher.log = lambda line: out.print(line, markup=False)
        try:
            publisher.publish(package, force=force, on_live=lambda o: out.print(o.message))
        except PackageRefused as refusal:
            raise PackageRefused(
                refusal.code,
                f"paquete rechazado: {refusal.message} (original en "
                f"{StateLayout(cfg.state_dir).quarantine})",
            ) from None


def _routed(root: config_mod.Config) -> str | None:
    """The site the phase sends the main authority's packages to (None: no [sites])."""
    from datetime import UTC, datetime

    from difusor.sites import phase as phases
    from difusor.sites.catalog import route

    if not root.sites:
        return None
    existing_state(root)
    with ledger_for(root) as ledger:
        current = phases.current(root, ledger, datetime.now(UTC))
    site, why = route(root, "", current.name)
    if site is None:
        raise PackageRefused("no_site", f"paquete rechazado: {why}")
    return site


def status(as_json: JsonOpt = False, site: SiteOpt = None, now: NowOpt = None,
           config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """El corte en línea y el historial reciente; con [sites], también la fase y el corte de
    cada sitio."""
    from difusor.cli.kit import moment_from
    from difusor.moments import printed
    from difusor.publish.status import status as build_status
    from difusor.sites import phase as phases
    from difusor.sites.catalog import default_site
    from difusor.store.layout import StoreLayout

    root = config_mod.load(config)
    existing_state(root)
    cfg = site_view(root, site)
    zone = ZoneInfo(cfg.site.timezone)
    with ledger_for(cfg) as ledger:
        doc = build_status(ledger, StoreLayout(StateLayout(cfg.state_dir).store), zone)
    extra: dict[str, object] = {}
    if root.sites:
        with ledger_for(root) as ledger:
            current = phases.current(root, ledger, moment_from(now, zone))
        extra = {"sitio": site or default_site(root), "fase": current.as_dict(),
                 "sitios": {name: _live(root.for_site(name)) for name in root.sites}}
    warnings = _warnings(root)
    if as_json:
        out.print_json(json.dumps({**doc, **extra, "avisos": warnings}, ensure_ascii=False))
        return
    for line in warnings:
        out.print(f"Aviso: {line}", markup=False)
    if root.sites:
        nxt = (f"; siguiente: {current.next.what}, {printed(current.next.at, zone)}"
               if current.next else "")
        out.print(f"Fase: {phases.LABELS[current.name]} ({current.source}){nxt}", markup=False)
        for name, live in extra["sitios"].items():  # type: ignore[attr-defined]
            out.print(f"  sitio «{name}» ({root.sites[name].url}): "
                      f"{live or 'sin corte en línea'}", markup=False)
        out.print(f"Sitio «{extra['sitio']}»:", markup=False)
    corte = doc["corte"]
    if corte is None:
        out.print("Todavía no hay un corte publicado.")
    else:
        out.print(f"Corte en línea: [bold]{corte['id']}[/] — {printed(corte['fecha_hora'], zone)}")
        out.print(f"  publicado {printed(corte['publicado'], zone)}; "
                  f"paquete sha256 {corte['paquete_sha256'][:16]}…")
    if doc["historial"]:
        table = Table("corte", "fecha y hora del corte", "activado", "causa")
        for row in doc["historial"]:
            table.add_row(row["id"], printed(row["fecha_hora"], zone),
                          printed(row["activado"], zone), row["causa"])
        out.print(table)


def _live(cfg: config_mod.Config) -> str | None:
    from difusor.publish.activate import live_release
    from difusor.store.layout import StoreLayout

    return live_release(StoreLayout(StateLayout(cfg.state_dir).store))


def _warnings(cfg: config_mod.Config) -> list[str]:
    """Safety settings left open, said every time the operator looks."""
    found = []
    if not cfg.sftp.allow_from:
        found.append("[sftp] allow_from está vacío: cualquier IP puede intentar entrar al SFTP; "
                     "pon ahí las redes de la autoridad")
    return found


def rollback(
    corte_id: Annotated[str | None, typer.Argument(help="Corte a poner en línea.")] = None,
    site: SiteOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Vuelve a poner en línea un corte anterior (por omisión, el previo)."""
    from difusor.publish.publisher import Publisher
    from difusor.publish.rollback import rollback

    cfg = site_view(config_mod.load(config), site)
    existing_state(cfg)
    with ledger_for(cfg) as ledger:
        publisher = Publisher(cfg, ledger)
        publisher.log = lambda line: out.print(line, markup=False)
        target = rollback(publisher, corte_id)
    out.print(f"Corte {target} en línea de nuevo.")


def _at_least_one(value: int) -> int:
    if value < 1:
        raise typer.BadParameter(f"debe ser al menos 1 (vale {value}); el corte en línea se "
                                 "conserva siempre")
    return value


def gc(
    keep: Annotated[int, typer.Option(
        callback=_at_least_one, help="Cortes más recientes que se conservan, al menos 1 (el que "
        "está en línea se conserva siempre).")] = 20,
    site: SiteOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Depura cortes viejos y los objetos que ya nadie usa."""
    from difusor.publish.collect import collect_cortes
    from difusor.publish.publisher import Publisher

    cfg = site_view(config_mod.load(config), site)
    existing_state(cfg)
    with ledger_for(cfg) as ledger, progress("depurando") as bar:
        result = collect_cortes(Publisher(cfg, ledger), keep, progress=bar)
    out.print(f"Depurados {len(result.releases)} cortes y {result.objects} objetos "
              f"({result.freed / 1e6:.1f} MB liberados).")


def purge(
    paths: Annotated[list[str] | None, typer.Argument(
        metavar="PATH", help="Rutas del sitio (json/main.json) o URL completas; sin rutas: lo "
        "que cambió en el corte en línea, y main.json.")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Purgar todo el sitio en cada CDN.")]
    = False,
    site: SiteOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Purga las CDN configuradas y comprueba en el borde que ya sirven los bytes nuevos."""
    from difusor.publish.cdn import manual_purge

    cfg = site_view(config_mod.load(config), site)
    if not cfg.cdn:
        raise DifusorError(f"{config} no tiene ninguna sección [[cdn]] (ver docs/cdn.md)")
    if everything and paths:
        raise DifusorError("usa rutas o --all, no ambas")
    with ledger_for(cfg) as ledger:
        report = manual_purge(cfg, ledger, paths or [], everything=everything)
    for line in report.lines():
        out.print(line, markup=False)
    if not report.ok:
        failed = [c.cdn for c in report.cdns if not c.ok]
        raise PurgeError(f"la purga no quedó comprobada en: {', '.join(failed)} (detalle arriba "
                         "y en la bitácora)")
