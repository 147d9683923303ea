"""Incidents the ledger's own events open and close.

A refused package is opened and resolved at once; ``origin_out`` lasts until ``origin_back``,
``purge_failed``/``edge_stale`` until the next good purge or edge check, ``attack`` until
``attack_over`` (written by whatever detects one).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from difusor.moments import storable

if TYPE_CHECKING:  # the tracker owns us and opens and resolves what we find
    from difusor.monitor.incidents.tracker import IncidentTracker

LEDGER_LOOKBACK = timedelta(days=1)  # events a (re)started monitor still turns into incidents
_LEDGER_EVENTS = ("refused", "origin_out", "origin_back", "purge_failed", "edge_stale", "purge",
                  "edge_verified", "attack", "attack_over")
# event kind → (incident kind, the detail key naming its target)
_OPENING = {"origin_out": ("origin_out", "origin"), "purge_failed": ("purge", "cdn"),
            "edge_stale": ("purge", "cdn"), "attack": ("attack", "target")}
_CLOSING = {"origin_back": ("origin_out", "origin"), "purge": ("purge", "cdn"),
            "edge_verified": ("purge", "cdn"), "attack_over": ("attack", "target")}


class LedgerEvents:
    """Reads the ledger's events after the last one seen; one per tracker."""

    def __init__(self, tracker: IncidentTracker) -> None:
        self.tracker = tracker
        self._cursor: int | None = None  # the last ledger event seen
        self._seen: set[str] = set()
        self._spans: list[tuple[str, str | None, str, str | None]] = []

    def scan(self) -> None:
        """Open and resolve incidents for events written since the last scan (on the first
        scan: the last ``LEDGER_LOOKBACK``, skipping events that already have their incident)."""
        ledger = self.tracker.ledger
        if self._cursor is None:
            since = storable(datetime.now(UTC) - LEDGER_LOOKBACK)
            known = ledger.incidents(since=since)
            self._seen = {str(i["detail"].get("source")) for i in known}
            self._spans = [(i["kind"], i["target"], i["started_at"], i["ended_at"])
                           for i in known]
            newest = ledger.events(limit=1)
            self._cursor = int(newest[0]["id"]) if newest else 0
            events = ledger.events_since(kinds=_LEDGER_EVENTS, since=since)
        else:
            events = ledger.events_since(after_id=self._cursor, kinds=_LEDGER_EVENTS)
        for event in events:
            self._cursor = max(self._cursor, int(event["id"]))
            if f"event:{event['id']}" not in self._seen:
                self._event(event)

    def _event(self, event: dict[str, Any]) -> None:
        ledger = self.tracker.ledger
        kind, detail = event["kind"], event["detail"] or {}
        source = {"source": f"event:{event['id']}", "event": event["message"]}
        if kind == "refused":
            package = ledger.package(event["package_id"]) if event["package_id"] else None
            name = package["name"] if package else "?"
            reason = (package or {}).get("reason") or event["message"]
            self.tracker.open(
                "refused", target=name, started_at=(package or event).get(
                    "received_at") or event["at"], ended_at=event["at"], cause=reason,
                confirmed_cause=True, detail={**source, "package_id": event["package_id"],
                                              "reason_code": (package or {}).get("reason_code")})
            return
        if kind in _OPENING:
            incident_kind, key = _OPENING[kind]
            target = detail.get(key)
            covered = any(k == incident_kind and t == target and start <= event["at"] and
                          (end is None or event["at"] <= end)
                          for k, t, start, end in self._spans)  # replayed after a restart
            if not covered and ledger.open_incident(incident_kind, target) is None:
                cause = event["message"] or ""
                if incident_kind == "origin_out" and detail.get("error"):
                    cause = f"el origen no aceptó el corte: {detail['error']}"
                self.tracker.open(incident_kind, target=target, started_at=event["at"],
                                  cause=cause, detail=source)
        elif kind in _CLOSING:
            incident_kind, key = _CLOSING[kind]
            incident = ledger.open_incident(incident_kind, detail.get(key))
            if incident is not None:
                self.tracker.resolve(incident, ended_at=event["at"])
