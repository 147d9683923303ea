"""The operator's hand on the shield: what is in force, and blocks, unblocks, the allow list and
attack mode set by hand.

Each change edits ``state/shield/decisions.json`` under its lock (the running web workers pick
it up within a second, with or without ``difusor run``) and returns a ``Change``; ``record``
then writes it to the ledger as the operator's. ``difusor shield …`` is a thin layer over these.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from difusor.config import Config
from difusor.ledger import Ledger
from difusor.serve import decisions as dec


@dataclass(frozen=True)
class Change:
    """What one of the operator's commands did: one Spanish line (said to the operator and
    written to the ledger) and the ledger event's detail; ``detail`` is None when nothing
    changed, so there is nothing to record."""

    message: str
    detail: dict[str, Any] | None = None

    @property
    def changed(self) -> bool:
        return self.detail is not None


def record(ledger: Ledger, change: Change) -> None:
    if change.changed:
        ledger.event("shield", change.message, detail={**change.detail, "by": "operator"})


def status(cfg: Config, ledger: Ledger) -> dict[str, Any]:
    """Attack mode, bans and throttles in force (newest first), the allow list and the recent
    shield events: what ``difusor shield status --json`` prints."""
    now = time.time()
    d = dec.load(dec.decisions_path(cfg.state_dir))
    d.prune(now)

    def rows(table: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(({"key": k, "reason": v.get("reason", ""), "until": v.get("until"),
                        "since": v.get("since"), "by": v.get("by", "auto"),
                        "kind": v.get("kind"), "rate": v.get("rate")}
                       for k, v in table.items()), key=lambda r: -(r["since"] or 0))

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


def block(cfg: Config, key: str, minutes: float, reason: str) -> Change:
    """A ban (403) of an address or network for ``minutes``."""
    entry = dec.block(dec.decisions_path(cfg.state_dir), key, minutes, reason)
    return Change(f"escudo: {entry['key']} bloqueado por el operador durante {minutes:g} min "
                  f"({reason})",
                  {"key": entry["key"], "key_kind": entry["kind"], "action": "ban",
                   "expiry": entry["until"], "reason": reason, "rates": {}, "window": 0})


def unblock(cfg: Config, key: str) -> Change:
    """Lifts every ban and throttle of an address or network, automatic or the operator's."""
    gone = dec.unblock(dec.decisions_path(cfg.state_dir), key)
    target = dec.normalize_key(key)
    if not gone:
        return Change(f"escudo: {target} no tenía bloqueos ni límites")
    return Change(f"escudo: {target} desbloqueado por el operador ({len(gone)} decisión(es))",
                  {"key": target, "key_kind": _kind(target), "action": "unban", "lifted": gone,
                   "reason": "operador", "rates": {}, "window": 0, "expiry": None})


def allow(cfg: Config, network: str, *, remove: bool = False) -> Change:
    """Adds a network to the operator's allow list (or removes it); adding lifts its bans."""
    key, changed, lifted = dec.allow(dec.decisions_path(cfg.state_dir), network, remove=remove)
    if not changed:
        return Change(f"escudo: {key} {'no estaba' if remove else 'ya estaba'} en la lista blanca")
    verb = "quitada de" if remove else "agregada a"
    extra = f"; se levantaron {len(lifted)} bloqueo(s)/límite(s)" if lifted else ""
    return Change(f"escudo: {key} {verb} la lista blanca{extra}",
                  {"key": key, "key_kind": _kind(key),
                   "action": "unallow" if remove else "allow", "lifted": lifted,
                   "reason": "operador", "rates": {}, "window": 0, "expiry": None})


def attack_mode(cfg: Config, on: bool) -> Change:
    """Attack mode on or off (only files held in memory are served, stricter limits)."""
    dec.attack_mode(dec.decisions_path(cfg.state_dir), on)
    return Change(f"escudo: modo ataque {'ACTIVADO' if on else 'desactivado'} por el operador",
                  {"key": "*", "key_kind": "ip",
                   "action": "attack_mode_on" if on else "attack_mode_off",
                   "reason": "operador", "rates": {}, "window": 0, "expiry": None})


def _kind(key: str) -> str:
    return "net" if "/" in key else "ip"
