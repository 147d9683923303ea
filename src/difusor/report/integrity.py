"""What the memoria states about the public chain of cortes (integrity/): its head at the end of
the period, its entries, the key's fingerprint, and the verifications the monitor's vantage
points made with ``difusor verify``'s own check, with their result."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from difusor.config import Config
from difusor.integrity.published import CHAIN_PATH
from difusor.ledger import Ledger
from difusor.moments import storable
from difusor.paths import StateLayout


def integrity_doc(cfg: Config, ledger: Ledger, start: datetime, end: datetime) -> dict[str, Any]:
    since, until = storable(start), storable(end)
    entries = [e for e in ledger.chain() if e["live_at"] < until]
    head = entries[-1] if entries else None
    try:
        published = json.loads((StateLayout(cfg.state_dir).integrity / "cortes.json")
                               .read_bytes())
    except (OSError, ValueError):
        published = {}
    return {
        "url": str(cfg.site.url).rstrip("/") + CHAIN_PATH,
        "huella": published.get("huella"),
        "entradas": len(entries),
        "en_periodo": sum(1 for e in entries if e["live_at"] >= since),
        "cabeza": {"seq": head["seq"], "hash": head["hash"], "tipo": head["kind"],
                   "corte": head["corte"], "momento": head["live_at"]} if head else None,
        "verificaciones": ledger.chain_verifications(since, until),
    }
