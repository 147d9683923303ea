"""Packages: each file the authority delivered, from its arrival to its verdict."""

from __future__ import annotations

from typing import Any

from difusor.ledger.db import utcnow
from difusor.ledger.events import EventKind, EventsMixin, insert_event

_FIELDS = frozenset({"kept_at", "state", "reason_code", "reason", "corte_time", "kind",
                     "release_id"})


class PackagesMixin(EventsMixin):
    def package_received(
        self, name: str, sha256: str, size: int, copy_name: str, at: str | None = None
    ) -> int:
        at = at or utcnow()
        with self._write() as db:
            cur = db.execute(
                "INSERT INTO packages(name, sha256, size, received_at, copy_name, state)"
                " VALUES (?,?,?,?,?,?)",
                (name, sha256, size, at, copy_name, "received"),
            )
            pid = int(cur.lastrowid or 0)
            # Spanish, for the record's reader; kept here until the caller passes its own text.
            insert_event(db, EventKind.RECEIVED, f"paquete recibido: {name}", at=at,
                         package_id=pid, detail={"sha256": sha256, "size": size})
        return pid

    def package_update(self, package_id: int, **fields: Any) -> None:
        bad = set(fields) - _FIELDS
        if bad:
            raise ValueError(f"unknown package fields {bad}")
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._write() as db:
            db.execute(f"UPDATE packages SET {cols} WHERE id = ?", (*fields.values(), package_id))

    def package(self, package_id: int) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM packages WHERE id = ?", (package_id,)).fetchone()
        return dict(row) if row else None

    def package_by_copy(self, copy_name: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT * FROM packages WHERE copy_name = ? ORDER BY id DESC LIMIT 1", (copy_name,)
        ).fetchone()
        return dict(row) if row else None

    def packages(self, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first."""
        rows = self._db.execute("SELECT * FROM packages ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(r) for r in rows.fetchall()]

    def packages_since(self, received_since: str, *, limit: int = 10_000) -> list[dict[str, Any]]:
        """Packages received at or after ``received_since``, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM packages WHERE received_at >= ? ORDER BY id LIMIT ?",
            (received_since, limit)).fetchall()
        return [dict(r) for r in rows]
