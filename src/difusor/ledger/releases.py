"""Releases (cortes materialised in the store) and their activations (which one is live)."""

from __future__ import annotations

from dataclasses import dataclass

from difusor.ledger.db import utcnow
from difusor.ledger.events import EventKind, EventsMixin, insert_event


@dataclass(frozen=True)
class ReleaseRow:
    id: str
    corte_time: str
    corte_source: str
    package_id: int | None
    package_sha256: str
    kind: str
    base_id: str | None
    files: int
    bytes: int
    created_at: str
    collected_at: str | None


@dataclass(frozen=True)
class ActivationRow:
    id: int
    release_id: str
    previous_id: str | None
    cause: str
    at: str


class ReleasesMixin(EventsMixin):
    # -- releases ---------------------------------------------------------------------------

    def release_stored(self, row: ReleaseRow) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO releases VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (row.id, row.corte_time, row.corte_source, row.package_id, row.package_sha256,
                 row.kind, row.base_id, row.files, row.bytes, row.created_at, row.collected_at),
            )
            # Spanish, for the record's reader; kept here until the caller passes its own text.
            insert_event(db, EventKind.STORED, f"corte {row.id} almacenado ({row.files} archivos)",
                         at=utcnow(), package_id=row.package_id, release_id=row.id,
                         detail={"files": row.files, "bytes": row.bytes, "kind": row.kind,
                                 "base": row.base_id})

    def release(self, release_id: str) -> ReleaseRow | None:
        row = self._db.execute("SELECT * FROM releases WHERE id = ?", (release_id,)).fetchone()
        return ReleaseRow(**dict(row)) if row else None

    def releases(self) -> list[ReleaseRow]:
        """Oldest first."""
        rows = self._db.execute("SELECT * FROM releases ORDER BY created_at").fetchall()
        return [ReleaseRow(**dict(r)) for r in rows]

    def releases_for_corte(self, corte_time: str) -> list[ReleaseRow]:
        rows = self._db.execute(
            "SELECT * FROM releases WHERE corte_time = ? ORDER BY created_at", (corte_time,)
        ).fetchall()
        return [ReleaseRow(**dict(r)) for r in rows]

    def release_collected(self, release_id: str) -> None:
        with self._write() as db:
            db.execute("UPDATE releases SET collected_at = ? WHERE id = ?", (utcnow(), release_id))

    # -- activations ------------------------------------------------------------------------

    def activated(
        self, release_id: str, previous_id: str | None, cause: str, package_id: int | None = None,
        message: str | None = None,
    ) -> ActivationRow:
        """Record that ``release_id`` went live. ``message`` is the operator-facing line the
        incident measures quote; the caller words it (None stores none)."""
        at = utcnow()
        with self._write() as db:
            cur = db.execute(
                "INSERT INTO activations(release_id, previous_id, cause, at) VALUES (?,?,?,?)",
                (release_id, previous_id, cause, at),
            )
            insert_event(db, EventKind.ACTIVATED, message, at=at, package_id=package_id,
                         release_id=release_id, detail={"cause": cause, "previous": previous_id})
            if package_id is not None:
                db.execute(
                    "UPDATE packages SET state = 'activated', release_id = ? WHERE id = ?",
                    (release_id, package_id),
                )
        return ActivationRow(int(cur.lastrowid or 0), release_id, previous_id, cause, at)

    def ever_activated(self, release_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM activations WHERE release_id = ? LIMIT 1", (release_id,)
        ).fetchone()
        return row is not None

    def last_activation(self) -> ActivationRow | None:
        row = self._db.execute("SELECT * FROM activations ORDER BY id DESC LIMIT 1").fetchone()
        return ActivationRow(**dict(row)) if row else None

    def activations(self, limit: int = 20) -> list[ActivationRow]:
        """Newest first."""
        rows = self._db.execute(
            "SELECT * FROM activations ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [ActivationRow(**dict(r)) for r in rows]
