"""Opening the analytics database: one writer at a time, everyone else waits a bounded time.

DuckDB lets a single process hold a database file open for writing (and, while it does, no
other process may open it at all). ``difusor run`` therefore opens the file for one ingest
round and closes it; ``difusor analytics ingest`` / ``summary`` from another process retry on
the lock for a bounded time and then stop with one Spanish line.
"""

from __future__ import annotations

import time
from pathlib import Path

import duckdb

from difusor.analytics.schema import HITS_VIEW, STORE_DDL, VISITORS_UNKEYED
from difusor.config import Config
from difusor.errors import BusyError
from difusor.paths import StateLayout, private_file

WAIT_SECONDS = 30.0


def database_path(cfg: Config) -> Path:
    return StateLayout(cfg.state_dir).analytics / "visitas.duckdb"


def _locked(exc: Exception) -> bool:
    text = str(exc).lower()
    # "different configuration": this process already has it open the other way (the live
    # part writing while a reader asks); it is closed again within a round.
    return ("lock" in text or "conflicting" in text or "already open" in text
            or "different configuration" in text)


def connect(cfg: Config, read_only: bool = False, *, wait: float = WAIT_SECONDS
            ) -> duckdb.DuckDBPyConnection:
    """The database, created with its tables when writable; waits up to ``wait`` s for the lock."""
    path = database_path(cfg)
    if not read_only:
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)  # hides DuckDB's 0644 WAL
    deadline = time.monotonic() + wait
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only,
                                 config={"memory_limit": cfg.analytics.memory_limit})
            break
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            if not _locked(exc) or time.monotonic() >= deadline:
                if _locked(exc):
                    raise BusyError(
                        f"la base de analítica {path} está ocupada por otro proceso desde hace "
                        f"{wait:.0f} s (¿una ingesta larga?); inténtalo de nuevo en un momento"
                    ) from None
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    if not read_only:
        private_file(path)  # visitors' data: 0640 (DuckDB creates it 0644 or, umask 000, 0666)
    # Absolute instants throughout; local days are computed explicitly with the site's zone.
    con.execute("SET TimeZone = 'UTC'")
    if read_only:
        if _has_table(con, "requests") and not _has_seq(con):
            # Stored before ``seq`` (in the logs' order, by rowid) and not opened by a writer
            # since: read through a view of this connection's own.
            con.execute(HITS_VIEW.replace("VIEW hits", "TEMP VIEW hits")
                        .replace("r.seq", "r.rowid AS seq"))
    else:
        # A flat ``hits`` table (the layout before requests/visitors/paths) would stand in
        # the view's way: there is no deployed data in it to keep.
        kind = con.execute("SELECT table_type FROM information_schema.tables WHERE "
                           "table_schema = 'main' AND table_name = 'hits'").fetchone()
        if kind and kind[0] != "VIEW":
            con.execute("DROP TABLE hits")
        con.execute(STORE_DDL)
        if con.execute("SELECT 1 FROM duckdb_constraints() WHERE table_name = 'visitors' AND "
                       "constraint_type = 'PRIMARY KEY'").fetchone():
            con.execute("BEGIN; " + VISITORS_UNKEYED + " COMMIT")
        fresh_view = not kind or kind[0] != "VIEW"
        if not _has_seq(con):
            # Requests stored before ``seq`` were stored in the logs' order (by rowid).
            con.execute("ALTER TABLE requests ADD COLUMN seq UBIGINT; "
                        "UPDATE requests SET seq = rowid")
            fresh_view = True
        if fresh_view:
            con.execute(HITS_VIEW)
    return con


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return con.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = 'main' "
                       "AND table_name = ?", [name]).fetchone() is not None


def _has_seq(con: duckdb.DuckDBPyConnection) -> bool:
    return con.execute("SELECT 1 FROM information_schema.columns WHERE table_schema = 'main' "
                       "AND table_name = 'requests' AND column_name = 'seq'").fetchone() is not None
