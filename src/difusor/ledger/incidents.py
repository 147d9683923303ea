"""Incidents: what the memoria técnica reports, opened and updated by the monitor and the
shield, edited by the operator. ``measures`` (a list) and ``detail`` (a dict) are JSON."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from difusor.ledger.db import LedgerDB, utcnow

_FIELDS = frozenset({"severity", "state", "ended_at", "cause", "cause_suggested", "impact",
                     "measures", "detail"})


def _incident(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    out["measures"] = json.loads(out["measures"] or "[]")
    out["detail"] = json.loads(out["detail"] or "{}")
    return out


class IncidentsMixin(LedgerDB):
    def incident_opened(self, *, kind: str, severity: str, started_at: str,
                        target: str | None = None, cause_suggested: str = "",
                        detail: dict[str, Any] | None = None) -> int:
        now = utcnow()
        with self._write() as db:
            cur = db.execute(
                "INSERT INTO incidents(kind, severity, target, state, started_at, cause_suggested,"
                " measures, detail, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (kind, severity, target, "investigating", started_at, cause_suggested, "[]",
                 json.dumps(detail or {}, ensure_ascii=False), now),
            )
            return int(cur.lastrowid or 0)

    def incident_update(self, incident_id: int, **fields: Any) -> None:
        """Change fields of an incident; ``measures`` (a list) and ``detail`` (a dict) are
        stored as JSON."""
        unknown = set(fields) - _FIELDS
        if unknown:
            raise ValueError(f"unknown incident fields {sorted(unknown)}")
        for key in ("measures", "detail"):
            if key in fields and not isinstance(fields[key], str):
                fields[key] = json.dumps(fields[key], ensure_ascii=False)
        fields["updated_at"] = utcnow()
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._write() as db:
            db.execute(f"UPDATE incidents SET {sets} WHERE id = ?", (*fields.values(), incident_id))

    def incident(self, incident_id: int) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        return _incident(row) if row else None

    def incidents(self, *, open_only: bool = False, since: str | None = None,
                  until: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Newest first. ``since``/``until`` select incidents that overlap the range."""
        sql, args = "SELECT * FROM incidents WHERE 1=1", []
        if open_only:
            sql += " AND state != 'resolved'"
        if since is not None:
            sql += " AND (ended_at IS NULL OR ended_at >= ?)"
            args.append(since)
        if until is not None:
            sql += " AND started_at < ?"
            args.append(until)
        rows = self._db.execute(sql + " ORDER BY started_at DESC, id DESC LIMIT ?",
                                (*args, limit)).fetchall()
        return [_incident(r) for r in rows]

    def open_incident(self, kind: str, target: str | None) -> dict[str, Any] | None:
        """The newest unresolved incident of ``kind`` on ``target`` (None matches None)."""
        row = self._db.execute(
            "SELECT * FROM incidents WHERE state != 'resolved' AND kind = ? AND target IS ?"
            " ORDER BY id DESC LIMIT 1", (kind, target)).fetchone()
        return _incident(row) if row else None
