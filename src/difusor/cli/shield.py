"""``difusor shield status|block|unblock|allow|attack-mode``: the operator's hand on the shield,
over ``shield.operator`` (the running web workers pick each change up within a second)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape
from rich.table import Table

from difusor import config as config_mod
from difusor.cli.kit import DEFAULT_CONFIG, ConfigOpt, JsonOpt, ledger_for, out
from difusor.errors import DifusorError
from difusor.moments import stored
from difusor.shield import operator
from difusor.shield.operator import Change

HELP = "Escudo contra ataques: estado, bloqueos, lista blanca y modo ataque."

KeyArg = Annotated[str, typer.Argument(help="Dirección IP o red CIDR (p. ej. 203.0.113.0/24).")]


def _said(cfg: config_mod.Config, change: Change) -> None:
    """Recorded in the ledger as the operator's (when something changed), then said."""
    if change.changed:
        with ledger_for(cfg) as ledger:
            operator.record(ledger, change)
    out.print(change.message, markup=False)


def status(as_json: JsonOpt = False, config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Modo ataque, bloqueos y límites vigentes, y las decisiones recientes."""
    cfg = config_mod.load(config)
    with ledger_for(cfg) as ledger:
        doc = operator.status(cfg, ledger)
    if as_json:
        out.print_json(json.dumps(doc, ensure_ascii=False))
        return
    zone = ZoneInfo(cfg.site.timezone)
    attack = doc["attack_mode"]
    if attack["on"]:
        out.print(f"[bold red]MODO ATAQUE activo[/] desde {_at(attack['since'], zone)} "
                  f"({'operador' if attack['by'] == 'operator' else 'automático'})")
    else:
        out.print("Modo ataque: apagado")
    out.print(f"Bloqueos: {doc['counts']['bans']} · límites: {doc['counts']['throttles']} · "
              f"direcciones compartidas (CGNAT): {doc['counts']['shared']}")
    for title, rows in (("bloqueos (403)", doc["bans"]), ("límites (429)", doc["throttles"])):
        if not rows:
            continue
        table = Table("llave", "motivo", "hasta", "por", title=title)
        for row in rows[:50]:
            label = row["key"] + (f" · {row['rate']:g} pet/s" if row.get("rate") else "")
            # Reasons are the operator's words or carry what a client sent: text, not markup.
            table.add_row(escape(label), escape(row["reason"]), _at(row["until"], zone),
                          "operador" if row["by"] == "operator" else "auto")
        out.print(table)
    if doc["allow"]:
        out.print("Lista blanca: " + ", ".join(doc["allow"]), markup=False)
    if doc["recent"]:
        table = Table("hora", "decisión", title="decisiones recientes")
        for row in doc["recent"]:
            table.add_row(_at(row["at"], zone), escape(row["message"]))
        out.print(table)


def block(
    key: KeyArg,
    minutes: Annotated[float, typer.Option("--minutes", help="Duración del bloqueo.")] = 60.0,
    reason: Annotated[str, typer.Option("--reason", help="Motivo (queda en la bitácora).")]
    = "bloqueo manual del operador",
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Bloquea (403) una dirección o red durante --minutes."""
    if minutes <= 0:
        raise DifusorError("--minutes debe ser mayor que 0")
    cfg = config_mod.load(config)
    _said(cfg, operator.block(cfg, key, minutes, reason))


def unblock(key: KeyArg, config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Quita bloqueos y límites de una dirección o red (automáticos o del operador)."""
    cfg = config_mod.load(config)
    _said(cfg, operator.unblock(cfg, key))


def allow(
    network: Annotated[str, typer.Argument(help="Red CIDR o dirección que nunca se limita.")],
    remove: Annotated[bool, typer.Option("--remove", help="Quitarla de la lista blanca.")]
    = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Agrega (o quita, con --remove) una red a la lista blanca del operador."""
    cfg = config_mod.load(config)
    _said(cfg, operator.allow(cfg, network, remove=remove))


def attack_mode(
    state: Annotated[str, typer.Argument(help="on u off.")],
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Activa o desactiva el modo ataque (solo archivos en memoria, límites más estrictos)."""
    if state not in ("on", "off"):
        raise DifusorError(f"usa «on» u «off», no «{state}»")
    cfg = config_mod.load(config)
    _said(cfg, operator.attack_mode(cfg, state == "on"))


def _at(value: float | str | None, zone: ZoneInfo) -> str:
    """A decision's time (epoch seconds, or the ledger's ISO): only the hour when it is today."""
    if value is None:
        return "—"
    when = (datetime.fromtimestamp(value, zone) if isinstance(value, int | float)
            else stored(value).astimezone(zone))
    today = datetime.now(zone).date()
    return when.strftime("%H:%M:%S" if when.date() == today else "%d/%m/%Y %H:%M:%S")


COMMANDS = {"status": status, "block": block, "unblock": unblock, "allow": allow,
            "attack-mode": attack_mode}
