"""The banner's one word: publicando, degradado, desfasado, caído (or sin corte), and why.

Judged from what the snapshot already holds: the monitor's last probes, the open incidents and
the live corte's age against the authority's cadence (``[monitor] cadence`` + ``grace``). The
worst finding wins; each says its reason in Spanish.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from difusor.config import Config

ORDER = ("publicando", "degradado", "desfasado", "caído")
PUBLISHING_PHASES = ("simulacro", "oficial")


def overall(cfg: Config, doc: dict[str, Any], now: datetime) -> dict[str, Any]:
    corte = doc.get("corte")
    if not corte:
        return {"estado": "sin corte", "por_que": ["todavía no hay un corte en línea"]}
    found: list[tuple[str, str]] = []
    probes = doc.get("monitor") or []
    failing = [p for p in probes if not p["ok"]]
    if probes and len(failing) == len(probes):
        found.append(("caído", "todos los sondeos fallan: " + "; ".join(
            f"{p['objetivo']} ({p['punto']}): {p['falla'] or p['mensaje']}" for p in failing[:3])))
    elif failing:
        found.append(("degradado", "; ".join(
            f"sondeo {p['objetivo']} ({p['punto']}) falla: {p['falla'] or p['mensaje']}"
            for p in failing[:3])))
    for inc in doc.get("incidentes") or []:
        if inc["en_curso"]:
            worst = "caído" if inc["tipo"] == "outage" else "degradado"
            found.append((worst, f"incidente n.º {inc['id']} abierto: {inc['titulo'] or inc['tipo_texto']}"))
    age = (now - datetime.fromisoformat(corte["hora_autoridad"])).total_seconds()
    late = cfg.monitor.cadence + cfg.monitor.grace
    if age > late and (doc.get("fase") or {}).get("fase") in PUBLISHING_PHASES:
        found.append(("desfasado", f"el corte en línea es de hace {_ago(age)}; se espera "
                                   f"uno cada {cfg.monitor.cadence / 60:g} min (+{cfg.monitor.grace / 60:g} "
                                   "de tolerancia)"))
    if not found:
        return {"estado": "publicando", "por_que": ["corte al día, sondeos correctos"]}
    worst = max(found, key=lambda f: ORDER.index(f[0]))[0]
    return {"estado": worst, "por_que": [why for _, why in found]}


def _ago(seconds: float) -> str:
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} días"
