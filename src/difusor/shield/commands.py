"""``difusor shield status|block|unblock|allow|attack-mode``: the operator's hand on the shield.

Each command edits ``state/shield/decisions.json`` under its lock (the running web workers pick
the change up within a second, with or without ``difusor run``) and writes a ledger event.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape
from rich.table import Table

from difusor import config as config_mod
from difusor.clikit import DEFAULT_CONFIG, ConfigOpt, ledger_for, out
from difusor.errors import DifusorError
from difusor.serve import decisions as dec

shield_app = typer.Typer(help="Escudo contra ataques: estado, bloqueos, lista blanca y modo "
                         "ataque.", no_args_is_help=True)

KeyArg = Annotated[str, typer.Argument(help="Dirección IP o red CIDR (p. ej. 203.0.113.0/24).")]


def _event(cfg: config_mod.Config, message: str, detail: dict[str, Any]) -> None:
    with ledger_for(cfg) as ledger:
        ledger.event("shield", message, detail={**detail, "by": "operator"})
    out.print(message, markup=False)


@shield_app.command("status")
def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="Salida JSON.")] = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Modo ataque, bloqueos y límites vigentes, y las decisiones recientes."""
    cfg = config_mod.load(config)
    doc = status(cfg)
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


def status(cfg: config_mod.Config) -> dict[str, Any]:
    now = time.time()
    d = dec.load(dec.decisions_path(cfg.state_dir))
    d.prune(now)

    def rows(table: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(({"key": k, "reason": v.get("reason", ""), "until": v.get("until"),
                        "since": v.get("since"), "by": v.get("by", "auto"),
                        "kind": v.get("kind"), "rate": v.get("rate")}
                       for k, v in table.items()), key=lambda r: -(r["since"] or 0))

    with ledger_for(cfg) as ledger:
        recent = [{"at": e["at"], "message": e["message"], "detail": e["detail"]}
                  for e in ledger.events("shield", limit=20)]
    return {
        "enabled": cfg.shield.enabled,
        "attack_mode": {"on": bool(d.attack.get("on")), "since": d.attack.get("since"),
                        "by": d.attack.get("by")},
        "bans": rows(d.bans), "throttles": rows(d.throttles),
        "allow": [*cfg.shield.allow, *d.allow], "shared": d.shared,
        "counts": {"bans": len(d.bans), "throttles": len(d.throttles), "shared": len(d.shared)},
        "recent": recent, "updated": d.updated,
    }


@shield_app.command("block")
def block_command(
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
    entry = dec.block(dec.decisions_path(cfg.state_dir), key, minutes, reason)
    _event(cfg, f"escudo: {entry['key']} bloqueado por el operador durante {minutes:g} min "
           f"({reason})", {"key": entry["key"], "key_kind": entry["kind"], "action": "ban",
                           "expiry": entry["until"], "reason": reason, "rates": {},
                           "window": 0})


@shield_app.command("unblock")
def unblock_command(key: KeyArg, config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Quita bloqueos y límites de una dirección o red (automáticos o del operador)."""
    cfg = config_mod.load(config)
    gone = dec.unblock(dec.decisions_path(cfg.state_dir), key)
    target = dec.normalize_key(key)
    if not gone:
        out.print(f"escudo: {target} no tenía bloqueos ni límites")
        return
    _event(cfg, f"escudo: {target} desbloqueado por el operador ({len(gone)} decisión(es))",
           {"key": target, "key_kind": "net" if "/" in target else "ip", "action": "unban",
            "lifted": gone, "reason": "operador", "rates": {}, "window": 0, "expiry": None})


@shield_app.command("allow")
def allow_command(
    network: Annotated[str, typer.Argument(help="Red CIDR o dirección que nunca se limita.")],
    remove: Annotated[bool, typer.Option("--remove", help="Quitarla de la lista blanca.")]
    = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Agrega (o quita, con --remove) una red a la lista blanca del operador."""
    cfg = config_mod.load(config)
    key, changed, lifted = dec.allow(dec.decisions_path(cfg.state_dir), network, remove=remove)
    if not changed:
        out.print(f"escudo: {key} {'no estaba' if remove else 'ya estaba'} en la lista blanca")
        return
    verb = "quitada de" if remove else "agregada a"
    extra = f"; se levantaron {len(lifted)} bloqueo(s)/límite(s)" if lifted else ""
    _event(cfg, f"escudo: {key} {verb} la lista blanca{extra}",
           {"key": key, "key_kind": "net" if "/" in key else "ip",
            "action": "unallow" if remove else "allow", "lifted": lifted, "reason": "operador",
            "rates": {}, "window": 0, "expiry": None})


@shield_app.command("attack-mode")
def attack_mode_command(
    state: Annotated[str, typer.Argument(help="on u off.")],
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Activa o desactiva el modo ataque (solo archivos en memoria, límites más estrictos)."""
    if state not in ("on", "off"):
        raise DifusorError(f"usa «on» u «off», no «{state}»")
    cfg = config_mod.load(config)
    on = state == "on"
    dec.attack_mode(dec.decisions_path(cfg.state_dir), on)
    _event(cfg, f"escudo: modo ataque {'ACTIVADO' if on else 'desactivado'} por el operador",
           {"key": "*", "key_kind": "ip", "action": "attack_mode_on" if on else "attack_mode_off",
            "reason": "operador", "rates": {}, "window": 0, "expiry": None})


def _at(value: float | str | None, zone: ZoneInfo) -> str:
    if value is None:
        return "—"
    when = (datetime.fromtimestamp(value, zone) if isinstance(value, int | float)
            else datetime.fromisoformat(value).astimezone(zone))
    today = datetime.now(zone).date()
    return when.strftime("%H:%M:%S" if when.date() == today else "%d/%m/%Y %H:%M:%S")
