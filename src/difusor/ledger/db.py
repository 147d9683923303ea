"""The ledger's file: the SQLite connection (WAL), its mode, the schema and its migrations.

Only the ledger package speaks SQL. Times are ISO-8601 in UTC with microseconds.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from difusor.paths import private_file

# One script per version; ``PRAGMA user_version`` says how many a file has had.
SCHEMA = [
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
    # version 3: the public chain of cortes (integrity/), append-only
    """
    CREATE TABLE chain (
        seq INTEGER PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        entry TEXT NOT NULL
    );
    """,
]


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def dumps(detail: dict[str, Any] | None) -> str | None:
    """A detail column: JSON, or NULL when there is nothing to say."""
    return json.dumps(detail, ensure_ascii=False) if detail else None


def decoded(row: sqlite3.Row) -> dict[str, Any]:
    """A row as a dict, its ``detail`` column parsed."""
    out = dict(row)
    if out.get("detail"):
        out["detail"] = json.loads(out["detail"])
    return out


class LedgerDB:
    """The connection every per-stage part of the ledger shares; safe between threads of one
    process: writes go one at a time through ``_write``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # It holds IPs (shield, probes): 0640; SQLite gives its -wal and -shm the same mode.
        private_file(path)
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        # WAL: readers (status, monitor, report) never block the publish path's writes.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._migrate()

    def close(self) -> None:
        self._db.close()

    def data_version(self) -> int:
        """Changes whenever another connection (another process) commits: a reader that shows
        the ledger live (the console) recomputes only then."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        # Statement by statement inside one transaction (executescript would commit early), so
        # two processes opening a new ledger at once cannot both create it.
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for i, script in enumerate(SCHEMA[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={i}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``BEGIN IMMEDIATE`` takes the file's write lock up front so
        a transaction never fails half-way on another process's lock."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
