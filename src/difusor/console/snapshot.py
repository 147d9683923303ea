"""What the console shows, as one JSON document rebuilt from the ledger and the live counters.

The ledger parts (corte, timeline, origins, incidents, availability) are rebuilt only when the
ledger changed (SQLite's ``data_version``) or every ``SLOW_SECONDS`` (the ages and countdowns
move with the clock); traffic and the shield every tick. Every figure comes from the function the
matching command prints: ``status``, ``incidents --json``, ``uptime --json``, ``shield status``
and the memoria's chronology.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from difusor.config import Config
from difusor.console.state import overall
from difusor.ledger import Ledger
from difusor.moments import in_zone, storable
from difusor.monitor.incident_sheet import incident_doc
from difusor.monitor.uptime import report as uptime_report
from difusor.paths import StateLayout
from difusor.publish.activate import live_release
from difusor.publish.origins import origin_settings
from difusor.report.chronology import chronology
from difusor.shield import operator
from difusor.sites import phase as phases
from difusor.store.layout import StoreLayout

SLOW_SECONDS = 10.0
UPTIME_SECONDS = 60.0  # a month of probes takes seconds to weigh: once a minute is plenty
TIMELINE = 48  # cortes shown (8 hours at the usual cadence)
PURGE_EVENTS = ("purge", "purge_failed", "edge_verified", "edge_stale")


class Snapshot:
    def __init__(self, root: Config, cfg: Config, root_ledger: Ledger, ledger: Ledger) -> None:
        self.root, self.cfg = root, cfg
        self.root_ledger, self.ledger = root_ledger, ledger
        self.zone = ZoneInfo(cfg.site.timezone)
        self.store = StoreLayout(StateLayout(cfg.state_dir).store)
        self._version: tuple[int, int] | None = None
        self._slow: dict[str, Any] = {}
        self._slow_at = 0.0
        self._uptime_cache: tuple[float, dict[str, Any] | None] = (float("-inf"), None)

    def invalidate(self) -> None:
        self._version = None

    def build(self, traffic: dict[str, Any]) -> dict[str, Any]:
        now = datetime.now(UTC).replace(microsecond=0)  # the document changes once a second
        version = (self.ledger.data_version(), self.root_ledger.data_version())
        if version != self._version or time.monotonic() - self._slow_at > SLOW_SECONDS:
            self._slow = self._ledger_parts(now)
            self._version, self._slow_at = version, time.monotonic()
        shield = operator.status(self.cfg, self.ledger)
        doc = {**self._slow, "trafico": traffic, "escudo": shield,
               "ahora": in_zone(now, self.zone)}
        doc["estado"] = overall(self.cfg, doc, now)
        return doc

    # -- the ledger's parts ----------------------------------------------------------------

    def _ledger_parts(self, now: datetime) -> dict[str, Any]:
        cfg = self.cfg
        phase = phases.current(self.root, self.root_ledger, now)
        since = now - timedelta(days=2)
        night = chronology(cfg, self.ledger, since, now + timedelta(seconds=1))
        live = live_release(self.store)
        rows = night["cortes"]
        corte = next((c for c in reversed(rows) if c["corte"] == live), None)
        if corte is None and live:
            rel = self.ledger.release(live)
            corte = rel and {"corte": rel.id, "hora_autoridad": in_zone(rel.corte_time, self.zone),
                             "recibido": None, "en_linea": None, "verificado_borde": None,
                             "retraso_s": None, "retraso_borde_s": None, "archivos": rel.files,
                             "cambiados": None, "verificaciones": None, "sha256": rel.package_sha256}
        incidents = [incident_doc(r, now) for r in self.ledger.incidents()[:30]]
        return {
            "sitio": {"nombre": cfg.site.name, "url": cfg.site.url, "sitio": cfg.site_name,
                      "zona": str(self.zone)},
            "fase": phase.as_dict(),
            "corte": corte,
            "cadencia_s": cfg.monitor.cadence, "tolerancia_s": cfg.monitor.grace,
            "cortes": rows[-TIMELINE:][::-1],
            "rechazados": night["rechazados"][-20:][::-1],
            "origenes": self._origins(),
            "cdn": self._purges(),
            "incidentes": incidents,
            "disponibilidad": self._uptime(now),
            "monitor": self._probes(now),
            "cuentas": self._countdowns(),
            "revision": self._last_check(),
            "acciones": [{"at": in_zone(e["at"], self.zone), "mensaje": e["message"],
                          "usuario": (e["detail"] or {}).get("user")}
                         for e in self.ledger.events("console_action", limit=15)],
            "versiones": [{"corte": a.release_id, "activado": in_zone(a.at, self.zone)}
                          for a in self.ledger.activations(TIMELINE)],
        }

    def _origins(self) -> list[dict[str, Any]]:
        """Each origin publishing goes through (the local store first, as the switch orders
        them), with the corte it serves and when it last switched or left rotation."""
        states = self.ledger.origin_states()
        live = live_release(self.store)
        out = []
        for name in dict.fromkeys([*(o.name for o in origin_settings(self.cfg)), *states]):
            s = states.get(name, {})
            last, switched = s.get("since"), s.get("switched")
            out.append({"nombre": name, "corte": s.get("live") or (live if not states else None),
                        "fuera": bool(s.get("out")),
                        "desde": in_zone(last, self.zone) if last else None,
                        "cambio": in_zone(switched, self.zone) if switched else None})
        return out

    def _last_check(self) -> dict[str, Any] | None:
        last = self.ledger.events("check", limit=1)
        return {"at": in_zone(last[0]["at"], self.zone), "mensaje": last[0]["message"]} if last else None

    def _purges(self) -> list[dict[str, Any]]:
        rows = [e for kind in PURGE_EVENTS for e in self.ledger.events(kind, limit=4)]
        rows.sort(key=lambda e: e["id"], reverse=True)
        return [{"at": in_zone(e["at"], self.zone), "tipo": e["kind"], "mensaje": e["message"]}
                for e in rows[:8]]

    def _uptime(self, now: datetime) -> dict[str, Any] | None:
        at, cached = self._uptime_cache
        if time.monotonic() - at < UPTIME_SECONDS:
            return cached
        fresh = self._weigh_uptime(now)
        self._uptime_cache = (time.monotonic(), fresh)
        return fresh

    def _weigh_uptime(self, now: datetime) -> dict[str, Any] | None:
        start = self.cfg.operation.start
        began = datetime.fromisoformat(start) if start else now.replace(
            day=1, hour=0, minute=0, second=0, microsecond=0)
        if began >= now:
            return None
        doc = uptime_report(self.cfg, self.ledger, start=began, end=now, now=now).site.to_dict()
        return {k: doc[k] for k in ("desde", "disponibilidad_pct", "disponibilidad_peor_caso_pct",
                                    "cobertura_pct", "meta_pct", "presupuesto_restante_s",
                                    "caido_s", "desconocido_s")}

    def _probes(self, now: datetime) -> list[dict[str, Any]]:
        window = storable(now - timedelta(seconds=3 * self.cfg.monitor.interval + 5))
        last: dict[str, dict[str, Any]] = {}
        for p in self.ledger.probes(since=window):
            last[f"{p['target']}@{p['vantage']}"] = p
        return [{"objetivo": p["target"], "punto": p["vantage"], "ok": bool(p["ok"]),
                 "falla": p["failure"], "at": in_zone(p["at"], self.zone),
                 "latencia_ms": p["latency_ms"], "mensaje": p["message"]}
                for p in last.values()]

    def _countdowns(self) -> list[dict[str, Any]]:
        op = self.cfg.operation
        out = []
        if op.start:
            out.append({"que": "inicio de la publicación", "at": op.start})
        if op.end:
            end = datetime.fromisoformat(op.end)
            out.append({"que": "fin de la publicación", "at": op.end})
            out.append({"que": "fin de la permanencia", "at":
                        (end + timedelta(hours=op.keep_hours)).isoformat()})
        return out
