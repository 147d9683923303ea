"""The ledger: the one shared record of what happened and when (SQLite, WAL).

Only this module speaks SQL. Every stage writes its events here; the status command, the report
and the monitor read from here. Times are ISO-8601 in UTC with microseconds.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from difusor.paths import private_file

_SCHEMA = [
    # version 1
    """
    CREATE TABLE packages (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        received_at TEXT NOT NULL,
        copy_name TEXT,
        kept_at TEXT,
        state TEXT NOT NULL,
        reason_code TEXT,
        reason TEXT,
        corte_time TEXT,
        kind TEXT,
        release_id TEXT
    );
    CREATE INDEX packages_corte ON packages(corte_time);
    CREATE INDEX packages_copy ON packages(copy_name);
    CREATE TABLE releases (
        id TEXT PRIMARY KEY,
        corte_time TEXT NOT NULL,
        corte_source TEXT NOT NULL,
        package_id INTEGER,
        package_sha256 TEXT NOT NULL,
        kind TEXT NOT NULL,
        base_id TEXT,
        files INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        collected_at TEXT
    );
    CREATE TABLE activations (
        id INTEGER PRIMARY KEY,
        release_id TEXT NOT NULL,
        previous_id TEXT,
        cause TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        package_id INTEGER,
        release_id TEXT,
        message TEXT,
        detail TEXT
    );
    CREATE INDEX events_kind ON events(kind, at);
    """,
    # version 2: availability
    """
    CREATE TABLE probes (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        target TEXT NOT NULL,
        vantage TEXT NOT NULL,
        ok INTEGER NOT NULL,
        failure TEXT,
        status INTEGER,
        latency_ms REAL,
        corte TEXT,
        interval_s REAL NOT NULL,
        message TEXT,
        detail TEXT
    );
    CREATE INDEX probes_target_at ON probes(target, at);
    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        severity TEXT NOT NULL,
        target TEXT,
        state TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        cause TEXT,
        cause_suggested TEXT,
        impact TEXT,
        measures TEXT,
        detail TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX incidents_open ON incidents(state, kind, target);
    """,
]


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


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


class Ledger:
    """A connection to the ledger; safe to share between threads of one process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # It holds IPs (shield, probes): 0640; SQLite gives its -wal and -shm the same mode.
        private_file(path)
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._migrate()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        # Statement by statement inside one transaction (executescript would commit early), so
        # two processes opening a new ledger at once cannot both create it.
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for i, script in enumerate(_SCHEMA[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={i}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- events ---------------------------------------------------------------------------

    def event(
        self,
        kind: str,
        message: str = "",
        *,
        package_id: int | None = None,
        release_id: str | None = None,
        detail: dict[str, Any] | None = None,
        at: str | None = None,
    ) -> int:
        with self._write() as db:
            cur = db.execute(
                "INSERT INTO events(at, kind, package_id, release_id, message, detail)"
                " VALUES (?,?,?,?,?,?)",
                (at or utcnow(), kind, package_id, release_id, message,
                 json.dumps(detail, ensure_ascii=False) if detail else None),
            )
            return int(cur.lastrowid or 0)

    def events(self, kind: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        sql = "SELECT * FROM events"
        args: tuple[Any, ...] = ()
        if kind:
            sql += " WHERE kind = ?"
            args = (kind,)
        rows = self._db.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [
            {**dict(r), "detail": json.loads(r["detail"]) if r["detail"] else None} for r in rows
        ]

    # -- packages -------------------------------------------------------------------------

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
            db.execute(
                "INSERT INTO events(at, kind, package_id, message, detail) VALUES (?,?,?,?,?)",
                (at, "received", pid, f"paquete recibido: {name}",
                 json.dumps({"sha256": sha256, "size": size})),
            )
        return pid

    def package_update(self, package_id: int, **fields: Any) -> None:
        allowed = {"kept_at", "state", "reason_code", "reason", "corte_time", "kind", "release_id"}
        bad = set(fields) - allowed
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
        rows = self._db.execute("SELECT * FROM packages ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(r) for r in rows.fetchall()]

    # -- releases and activations ---------------------------------------------------------

    def release_stored(self, row: ReleaseRow) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO releases VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (row.id, row.corte_time, row.corte_source, row.package_id, row.package_sha256,
                 row.kind, row.base_id, row.files, row.bytes, row.created_at, row.collected_at),
            )
            db.execute(
                "INSERT INTO events(at, kind, package_id, release_id, message, detail)"
                " VALUES (?,?,?,?,?,?)",
                (utcnow(), "stored", row.package_id, row.id,
                 f"corte {row.id} almacenado ({row.files} archivos)",
                 json.dumps({"files": row.files, "bytes": row.bytes, "kind": row.kind,
                             "base": row.base_id})),
            )

    def release(self, release_id: str) -> ReleaseRow | None:
        row = self._db.execute("SELECT * FROM releases WHERE id = ?", (release_id,)).fetchone()
        return ReleaseRow(**dict(row)) if row else None

    def releases(self) -> list[ReleaseRow]:
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

    def activated(
        self, release_id: str, previous_id: str | None, cause: str, package_id: int | None = None,
        message: str = "",
    ) -> ActivationRow:
        at = utcnow()
        with self._write() as db:
            cur = db.execute(
                "INSERT INTO activations(release_id, previous_id, cause, at) VALUES (?,?,?,?)",
                (release_id, previous_id, cause, at),
            )
            db.execute(
                "INSERT INTO events(at, kind, package_id, release_id, message, detail)"
                " VALUES (?,?,?,?,?,?)",
                (at, "activated", package_id, release_id,
                 message or f"corte {release_id} en línea",
                 json.dumps({"cause": cause, "previous": previous_id})),
            )
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
        rows = self._db.execute(
            "SELECT * FROM activations ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [ActivationRow(**dict(r)) for r in rows]

    # -- origins --------------------------------------------------------------------------

    def origin_states(self) -> dict[str, dict[str, Any]]:
        """Per origin (by name): ``live`` (the corte it last switched to), ``out`` (whether it
        is out of rotation) and ``since`` (when that last changed), from the origin events."""
        rows = self._db.execute(
            """
            SELECT e.kind, e.release_id, e.at, json_extract(e.detail, '$.origin') AS origin
            FROM events e JOIN (
                SELECT MAX(id) AS id FROM events
                WHERE kind IN ('origin_switched', 'origin_out', 'origin_back')
                GROUP BY json_extract(detail, '$.origin'), kind = 'origin_switched'
            ) last ON e.id = last.id
            ORDER BY e.id
            """
        ).fetchall()
        states: dict[str, dict[str, Any]] = {}
        for row in rows:
            if row["origin"] is None:
                continue
            state = states.setdefault(row["origin"], {"live": None, "out": False, "since": None})
            if row["kind"] == "origin_switched":
                state["live"] = row["release_id"]
            else:
                state["out"] = row["kind"] == "origin_out"
                state["since"] = row["at"]
        return states

    def origins_out(self) -> set[str]:
        """Names of the origins out of rotation now."""
        return {name for name, s in self.origin_states().items() if s["out"]}

    # -- availability: probes and incidents -------------------------------------------------

    def probe_recorded(
        self, *, target: str, vantage: str, ok: bool, interval_s: float, at: str | None = None,
        failure: str | None = None, status: int | None = None, latency_ms: float | None = None,
        corte: str | None = None, message: str = "", detail: dict[str, Any] | None = None,
    ) -> int:
        """One probe's result. ``failure`` names what failed (outage, degraded, stale,
        integrity, header, tls, authority_delay); ``interval_s`` is how long the result stands for
        (uptime counts time, not checks: a gap longer than that is *unknown*)."""
        with self._write() as db:
            cur = db.execute(
                "INSERT INTO probes(at, target, vantage, ok, failure, status, latency_ms, corte,"
                " interval_s, message, detail) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (at or utcnow(), target, vantage, int(ok), failure, status, latency_ms, corte,
                 interval_s, message, json.dumps(detail, ensure_ascii=False) if detail else None),
            )
            return int(cur.lastrowid or 0)

    def probes(self, target: str | None = None, since: str | None = None,
               until: str | None = None, vantage: str | None = None) -> list[dict[str, Any]]:
        """Probe rows in time order (ISO-8601 UTC bounds, ``until`` exclusive)."""
        sql, args = "SELECT * FROM probes WHERE 1=1", []
        for column, op, value in (("target", "=", target), ("at", ">=", since),
                                  ("at", "<", until), ("vantage", "=", vantage)):
            if value is not None:
                sql += f" AND {column} {op} ?"
                args.append(value)
        rows = self._db.execute(sql + " ORDER BY at, id", args).fetchall()
        return [self._decoded(r) for r in rows]

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

    _INCIDENT_FIELDS = frozenset({"severity", "state", "ended_at", "cause", "cause_suggested",
                                  "impact", "measures", "detail"})

    def incident_update(self, incident_id: int, **fields: Any) -> None:
        """Change fields of an incident; ``measures`` (a list) and ``detail`` (a dict) are
        stored as JSON."""
        unknown = set(fields) - self._INCIDENT_FIELDS
        if unknown:
            raise ValueError(f"campos de incidente desconocidos: {sorted(unknown)}")
        for key in ("measures", "detail"):
            if key in fields and not isinstance(fields[key], str):
                fields[key] = json.dumps(fields[key], ensure_ascii=False)
        fields["updated_at"] = utcnow()
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._write() as db:
            db.execute(f"UPDATE incidents SET {sets} WHERE id = ?", (*fields.values(), incident_id))

    def incident(self, incident_id: int) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        return self._incident(row) if row else None

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
        return [self._incident(r) for r in rows]

    def open_incident(self, kind: str, target: str | None) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT * FROM incidents WHERE state != 'resolved' AND kind = ? AND target IS ?"
            " ORDER BY id DESC LIMIT 1", (kind, target)).fetchone()
        return self._incident(row) if row else None

    @staticmethod
    def _decoded(row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        if out.get("detail"):
            out["detail"] = json.loads(out["detail"])
        return out

    @staticmethod
    def _incident(row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        out["measures"] = json.loads(out["measures"] or "[]")
        out["detail"] = json.loads(out["detail"] or "{}")
        return out


    # -- monitor: reading events and packages by time or id ---------------------------------

    def events_since(self, *, after_id: int = 0, kinds: tuple[str, ...] = (),
                     since: str | None = None, until: str | None = None,
                     limit: int = 10_000) -> list[dict[str, Any]]:
        """Events in id order: newer than ``after_id``, of ``kinds`` (all when empty), with
        ``since <= at < until``."""
        sql, args = "SELECT * FROM events WHERE id > ?", [after_id]
        if kinds:
            sql += f" AND kind IN ({','.join('?' * len(kinds))})"
            args += list(kinds)
        if since is not None:
            sql += " AND at >= ?"
            args.append(since)
        if until is not None:
            sql += " AND at < ?"
            args.append(until)
        rows = self._db.execute(sql + " ORDER BY id LIMIT ?", (*args, limit)).fetchall()
        return [self._decoded(r) for r in rows]

    def packages_since(self, received_since: str, *, limit: int = 10_000) -> list[dict[str, Any]]:
        """Packages received at or after ``received_since``, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM packages WHERE received_at >= ? ORDER BY id LIMIT ?",
            (received_since, limit)).fetchall()
        return [dict(r) for r in rows]
