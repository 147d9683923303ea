"""One chunk of a log into DuckDB temp tables: its rows (``<slot>``), each flagged ``ok``
(understood) and ``own`` (our monitor's agents), and their per-distinct groups (``_g<slot>``),
from which the ingest looks up and stores (``ingestor.py``)."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb

from difusor.analytics import formats
from difusor.analytics import ingest_sql as sql
from difusor.analytics.localday import local_day_sql
from difusor.analytics.logfile import Chunk, stamp

COMBINED_SHAPED = frozenset({"combined", "varnishncsa"})


@dataclass
class FileState:
    fp: str
    path: Path
    source: str
    edge: bool
    lines: int              # lines committed


@dataclass
class Reading:
    """One file being read: what ``ingest_file`` found out before its first chunk."""
    state: FileState
    spec: formats.Format
    fields: list[str] | None   # CloudFront's field names
    zone: str | None           # the usual zone offset of combined-shaped lines
    offset: int
    final: bool


class NotInPlace(Exception):
    """A log read in place was not clean, or was written to while DuckDB read it."""


@dataclass
class Parsed:
    slot: str         # its temp tables: the rows <slot>, their groups _g<slot>
    end: int          # the file's offset after this chunk
    dropped: int      # lines too long to read, before it
    size: int
    lines: int        # non-empty lines read
    bad: int          # of them, not understood
    own: int          # of them, our own agents
    lookups: Future[str] | None = None  # TSV rows for _agent
    asked: list[str] = field(default_factory=list)  # the agents asked
    span: tuple[datetime | None, datetime | None] = (None, None)  # first, last kept instant

    @property
    def expected(self) -> int:
        """Rows to store: understood, not our own agents."""
        return self.lines - self.bad - self.own


def parse(con: duckdb.DuckDBPyConnection, chunk: Chunk, r: Reading, slot: str,
          own_sql: str, zone: ZoneInfo) -> Parsed:
    """A chunk (in its spool file) → a temp table of its rows (``<slot>``) and their
    per-distinct groups (``_g<slot>``, visitor-days in the site's ``zone``); ``own_sql`` is
    true for our monitor's agents.
    Combined lines are read by DuckDB's CSV reader as typed columns
    (``formats.csv_sql``), the lines it refuses the general way, appended after the
    others; with an escaped quote about (Apache) the whole chunk goes the general way.
    A chunk read in place (the log itself) raises ``NotInPlace`` if its scan found it not
    clean, or if the log was written to meanwhile (DuckDB may have read more than the
    chunk)."""
    spec, spool = r.spec, chunk.spool
    if not chunk.utf8:  # DuckDB drops lines that are not UTF-8: mend them instead
        spool.write_bytes(spool.read_bytes().decode("utf-8", "replace").encode("utf-8"))
    try:
        if spec.name in COMBINED_SHAPED and not chunk.escaped_quote:
            rejects = f"_rechazo{slot}"
            try:
                con.execute(f"CREATE OR REPLACE TEMP TABLE {slot} AS " + sql.flagged(
                    formats.csv_sql(str(spool), rejects, r.zone), own_sql))
                if _refused(con, rejects):
                    con.execute(f"INSERT INTO {slot} "
                                + sql.flagged(formats.rejected_sql(rejects), own_sql))
            finally:
                con.execute(f"DROP TABLE IF EXISTS {rejects}; "
                            f"DROP TABLE IF EXISTS {rejects}_scan")
        else:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {slot} AS " + sql.flagged(
                formats.source_sql(spec, str(spool), r.fields), own_sql))
        if chunk.in_place and not (_clean(chunk) and stamp(spool) == chunk.stamp):
            raise NotInPlace
        lines, good, own, first, last = con.execute(
            f"SELECT count(*), count(*) FILTER (ok), count(*) FILTER (own), "
            f"min(ts) FILTER (ok AND NOT own), max(ts) FILTER (ok AND NOT own) FROM {slot}"
        ).fetchone()  # type: ignore[misc]
        parsed = Parsed(slot, chunk.end, chunk.dropped, chunk.size, lines, lines - good, own)
        if parsed.expected:
            parsed.span = (first, last)
        con.execute(sql.grouped(slot, local_day_sql(zone, *parsed.span)))
    except BaseException:
        drop(con, slot)
        raise
    finally:
        if not chunk.in_place:
            spool.unlink(missing_ok=True)
    return parsed


def distinct_agents(con: duckdb.DuckDBPyConnection, slot: str) -> list[tuple[str, int]]:
    """The chunk's distinct agents, each with DuckDB's hash of it."""
    return con.execute(f"SELECT ua, hash(ua) FROM _g{slot} WHERE gid = {sql.AGENTS}").fetchall()


def _refused(con: duckdb.DuckDBPyConnection, rejects: str) -> bool:
    try:
        (n,) = con.execute(f"SELECT count(*) FROM {rejects}").fetchone()  # type: ignore[misc]
    except duckdb.CatalogException:  # nothing refused: no table
        return False
    return bool(n)


def drop(con: duckdb.DuckDBPyConnection, slot: str) -> None:
    con.execute(f"DROP TABLE IF EXISTS {slot}; DROP TABLE IF EXISTS _g{slot}")


def _clean(chunk: Chunk) -> bool:
    assert chunk.clean is not None
    try:
        return chunk.clean.result()
    except OSError:
        return False
