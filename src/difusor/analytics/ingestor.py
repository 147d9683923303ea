"""``Ingestor``: one open analytics database ingesting access logs chunk by chunk (see
``ingest.py`` for the whole design, privacy included).

For each file: its identity and committed offset (``files``), its format, then its chunks in a
pipeline — while DuckDB parses chunk n into temp tables (``chunkparse.py``), chunk n+1 is
spooled and chunk n's new agents are classified by a worker thread (``lookups.py``); then chunk
n-1's rows, anonymised, placed (one join against the geolocation ranges, ``addresses.py``) and
classified (``ingest_sql.py``), and the file's new offset are committed together.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import duckdb

from difusor.analytics import addresses, formats
from difusor.analytics import ingest_sql as sql
from difusor.analytics.chunkparse import (
    COMBINED_SHAPED,
    FileState,
    NotInPlace,
    Parsed,
    Reading,
    distinct_agents,
    drop,
    parse,
)
from difusor.analytics.db import connect, database_path
from difusor.analytics.localday import local_day_sql
from difusor.analytics.logfile import (
    HEAD,
    Chunk,
    ahead,
    bytes_after,
    chunks,
    fingerprint,
    nothing_new,
    read_head,
    source_name,
)
from difusor.analytics.lookups import Lookups
from difusor.analytics.tally import IngestResult
from difusor.analytics.views import page_rules, view_rules
from difusor.config import Config
from difusor.errors import LogFormatError


class Ingestor:
    """One open database connection ingesting any number of files; ``close`` tidies up."""

    def __init__(self, cfg: Config, *, con: duckdb.DuckDBPyConnection | None = None,
                 wait: float | None = None, lookups: Lookups | None = None) -> None:
        self.cfg = cfg
        a = cfg.analytics
        self.zone = ZoneInfo(cfg.site.timezone)
        self._own_lookups = lookups is None
        self.lookups = lookups or Lookups.for_config(cfg)
        # Classifies agents (one chunk at a time) while DuckDB works.
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="difusor-ingesta")
        try:
            self.con = con or (connect(cfg) if wait is None else connect(cfg, wait=wait))
        except BaseException:
            self._close_worker()
            raise
        folder = database_path(cfg).parent
        # We hold the database's write lock: any other spool folder is a killed ingest's
        # leftover, and it holds raw addresses.
        for stale in folder.glob("ingesta-*"):
            shutil.rmtree(stale, ignore_errors=True)
        self.tmp = Path(tempfile.mkdtemp(prefix="ingesta-", dir=folder))
        self._known_uas: set[str] = set()
        self._placing = False  # the geolocation ranges are loaded (``_prepare_places``)
        self.site_host = (urlsplit(cfg.site.url).hostname or "").lower()
        self.keep_ip = a.keep_ip_days > 0
        self._salted: set[date] = set()
        # Each request carries its place in the logs (``seq``): sessions break ties within one
        # second by it (which view came first), and the same log must always give the same
        # numbers. A chunk's table keeps the file's order (its rowid), and ``seq`` is that
        # plus the rows before the chunk, so the order the joins emit rows in does not matter.
        self.con.execute("SET preserve_insertion_order = true")
        (self._seq,) = self.con.execute(
            "SELECT coalesce(max(seq) + 1, 0) FROM requests").fetchone()  # type: ignore[misc]
        # Checkpoint once when the ingest closes, not after every chunk's commit (the WAL
        # keeps each commit durable meanwhile).
        self.con.execute("SET checkpoint_threshold = '1GB'")
        # A chunk's requests are written compressed as they are inserted; the checkpoint's
        # vacuum would rewrite those row groups again to merge the last partial one of each
        # chunk (measured: a third more CPU per ingest, and a larger file). Nothing here
        # deletes requests, so there is nothing else for it to reclaim.
        self.con.execute("SET max_vacuum_tasks = 0")
        _cap_memory(self.con)
        self.con.execute(sql.LOOKUP_TABLES)
        self._own = sql.own_agents(a.own_agents)
        self._visitor_days = sql.visitor_days(self.keep_ip)
        self._insert = sql.inserts(page_rules(cfg), view_rules(cfg), self.site_host, self.keep_ip)

    # -- files ------------------------------------------------------------------------

    def ingest_file(self, path: Path, fmt: str = "auto", source: str | None = None, *,
                    final: bool = False, on_bytes: Callable[[int], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> IngestResult:
        """New whole lines of one file; ``final`` also takes a last line without newline.
        ``should_stop`` is asked between chunks (each chunk is committed with its offset)."""
        result = IngestResult(files=1)
        try:
            head = read_head(path, 1 << 16)
        except FileNotFoundError:
            raise LogFormatError(f"no existe {path}") from None
        except OSError as exc:
            raise LogFormatError(f"no puedo leer {path}: {exc.strerror}") from None
        fp = fingerprint(head[:HEAD])
        if fp is None:
            if head.strip():
                result.warnings.append(f"{path}: aún sin una línea completa; se leerá después")
            else:
                result.already = 1
            return result
        name = formats.detect(head[:head.rfind(b"\n") + 1] or head, str(path)) \
            if fmt == "auto" else fmt
        result.formats[str(path)] = name
        spec = formats.get(name)
        fields = formats.cloudfront_fields(head) if name == "cloudfront" else None
        zone = formats.zone_of(head) if name in COMBINED_SHAPED else None
        row = self.con.execute('SELECT "offset", lines FROM files WHERE fingerprint = ?',
                               [fp]).fetchone()
        offset, done_lines = (int(row[0]), int(row[1])) if row else (0, 0)
        if offset and nothing_new(path, offset):
            result.already = 1
            return result
        self.lookups.warm_for(bytes_after(path, offset))
        self._prepare_places()
        state = FileState(fp, path, source or source_name(path), spec.edge, done_lines)
        reading = Reading(state, spec, fields, zone, offset, final)
        try:
            self._read(reading, result, on_bytes, should_stop)
        except NotInPlace:  # read again, from a copy (which mends, or notices what changed)
            self._read(reading, result, on_bytes, should_stop, in_place=False)
        if not result.bytes:
            result.already = 1
        return result

    def _read(self, r: Reading, result: IngestResult, on_bytes: Callable[[int], None] | None,
              should_stop: Callable[[], bool] | None, in_place: bool = True) -> None:
        """The file's chunks into the database. While DuckDB parses chunk n, chunk n+1 is
        copied (``ahead``) and chunk n-1's new addresses and agents are looked up (asked as
        each chunk is parsed); then chunk n-1 is stored."""
        pending: Parsed | None = None
        parsed: Parsed | None = None
        spools = (self.tmp / "trozo0.log", self.tmp / "trozo1.log")
        try:
            for n, chunk in enumerate(ahead(chunks(r.state.path, r.offset, r.final,
                                                   result.warnings, spools,
                                                   in_place=in_place))):
                parsed = self._parse(chunk, r, f"_c{n % 2}")
                if pending is not None:
                    self._store(pending, r.state, result, on_bytes)
                pending, parsed = parsed, None
                if should_stop and should_stop():
                    break
            else:
                if pending is not None:
                    self._store(pending, r.state, result, on_bytes)
                    pending = None
        finally:
            for left in (pending, parsed):  # not stored: asked agents belong in _agent
                if left is not None:
                    self._discard(left)

    def _save_offset(self, fp: str, source: str, path: Path, offset: int, lines: int) -> None:
        self.con.execute("""
            INSERT INTO files VALUES (?, ?, ?, ?, ?, now())
            ON CONFLICT (fingerprint) DO UPDATE SET source = excluded.source,
                path = excluded.path, "offset" = excluded."offset", lines = excluded.lines,
                updated_at = excluded.updated_at""", [fp, source, str(path), offset, lines])

    # -- one chunk --------------------------------------------------------------------

    def _prepare_places(self) -> None:
        """The geolocation ranges in the database (once per mmdb; built first, seconds, if no
        database of this user has them yet)."""
        if not self._placing:
            addresses.prepare(self.con, self.lookups.geo_key(),
                              lambda: self.lookups.ranges(self.tmp))
            self._placing = True

    def _parse(self, chunk: Chunk, r: Reading, slot: str) -> Parsed:
        """A chunk into its temp tables (``chunkparse.parse``); its new agents are handed to
        the worker to classify (per distinct agent: the only per-value work done in Python)."""
        parsed = parse(self.con, chunk, r, slot, self._own, self.zone)
        if parsed.expected:
            self._ask(parsed, distinct_agents(self.con, slot))
        return parsed

    def _ask(self, parsed: Parsed, uas: list[tuple[str, int]]) -> None:
        """Hands the chunk's new agents, (value, DuckDB's hash), to the worker."""
        uas = [(ua, h) for ua, h in uas if ua not in self._known_uas]
        self._known_uas.update(ua for ua, _ in uas)
        parsed.asked = [ua for ua, _ in uas]
        parsed.lookups = self._worker.submit(self.lookups.ask, uas)

    def _take_lookups(self, parsed: Parsed) -> None:
        if parsed.lookups is not None:
            kinds = parsed.lookups.result()
            parsed.lookups = None
            self._load("_agent", kinds)

    def _discard(self, parsed: Parsed) -> None:
        """A parsed chunk that will not be stored (stopped, or an error): its agents are in
        the known set once asked, so their answers must still land in _agent."""
        try:
            self._take_lookups(parsed)
        finally:
            drop(self.con, parsed.slot)

    def _forget(self, parsed: Parsed) -> None:
        """A chunk rolled back: its agents' answers went with it (or are dropped, if not yet
        taken), so they are asked again later."""
        self._known_uas.difference_update(parsed.asked)
        parsed.lookups = None

    def _store(self, parsed: Parsed, state: FileState, result: IngestResult,
               on_bytes: Callable[[int], None] | None) -> None:
        """The chunk's rows, anonymised and classified, and the file's offset after them, in
        one transaction. Requests go straight from the parsed chunk into ``requests`` (each
        chunk is at least a few row groups, written compressed once); the agents' kinds are
        only needed for the visitors, after that write, so the worker has had it to finish."""
        con = self.con
        stored = 0
        lines = state.lines + parsed.dropped + parsed.lines
        try:
            con.execute("BEGIN")
            try:
                if parsed.expected:
                    stored = self._write(parsed, state)
                else:
                    self._take_lookups(parsed)
                self._save_offset(state.fp, state.source, state.path, parsed.end, lines)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                self._forget(parsed)
                raise
        finally:
            drop(self.con, parsed.slot)
        state.lines = lines
        self._seq += parsed.lines  # the chunk table's rowids, used or not
        result.lines += parsed.lines
        result.own += parsed.own
        result.rows += stored
        # (expected - stored: none expected; a row is never lost silently)
        result.bad += parsed.dropped + parsed.bad + parsed.expected - stored
        result.bytes += parsed.size
        if on_bytes:
            on_bytes(parsed.size)

    def _write(self, parsed: Parsed, state: FileState) -> int:
        con = self.con
        g = f"_g{parsed.slot}"
        days = [d for (d,) in con.execute(
            f"SELECT DISTINCT day FROM {g} WHERE gid = {sql.PEOPLE}").fetchall()]
        self._ensure_salts(days)
        con.execute(self._visitor_days.replace("__G__", g))
        day = local_day_sql(self.zone, *parsed.span)  # of a row's ts
        requests, merge, fresh = (text.replace("__C__", parsed.slot).replace("__G__", g)
                                  .replace("__DAY__", day) for text in self._insert)
        stored_days = days and con.execute(
            "SELECT 1 FROM visitors WHERE day IN (SELECT unnest($1::DATE[])) LIMIT 1",
            [days]).fetchone()
        visitors = merge if stored_days else fresh
        (stored,) = con.execute(requests, [state.source, state.edge, self._seq]
                                ).fetchone()  # type: ignore[misc]
        self._take_lookups(parsed)  # (the agents: only now, the worker has had the time)
        con.execute(visitors)
        con.execute("DROP TABLE _vis")
        return int(stored)

    def _load(self, table: str, text: str) -> None:
        """Append TSV rows to a temp table (far faster than executemany)."""
        if not text:
            return
        tsv = self.tmp / f"{table}.tsv"
        tsv.write_text(text, encoding="utf-8")
        try:
            self.con.execute(sql.load_tsv(table, str(tsv)))
        finally:
            tsv.unlink(missing_ok=True)

    def _ensure_salts(self, days: list[date]) -> None:
        missing = [d for d in days if d not in self._salted]
        if not missing:
            return
        have = {d for (d,) in self.con.execute("SELECT day FROM salts").fetchall()}
        for d in missing:
            if d not in have:
                self.con.execute("INSERT INTO salts VALUES (?, ?)", [d, os.urandom(32)])
            self._salted.add(d)

    # -- housekeeping -----------------------------------------------------------------

    def tidy(self, now: datetime | None = None) -> None:
        """Forget raw IPs past keep_ip_days and salts past their grace (end of every ingest)."""
        a = self.cfg.analytics
        now = now or datetime.now(UTC)
        cutoff = now - timedelta(days=a.keep_ip_days)
        self.con.execute("UPDATE visitors SET ip = NULL WHERE ip IS NOT NULL AND last_ts < ?",
                         [cutoff])
        grace = timedelta(hours=a.salt_grace_hours)
        for (day,) in self.con.execute("SELECT day FROM salts").fetchall():
            ends = datetime.combine(day + timedelta(days=1), datetime.min.time(), self.zone)
            if ends + grace <= now:
                self.con.execute("DELETE FROM salts WHERE day = ?", [day])
                self._salted.discard(day)

    def _close_worker(self) -> None:
        self._worker.shutdown(wait=True)
        if self._own_lookups:
            self.lookups.close()

    def close(self, tidy: bool = True) -> None:
        """``tidy=False`` after a failed ingest: an old day's salt must survive until the
        ingest that resumes it has run, or its visitors would be counted twice."""
        try:
            if tidy:
                self.tidy()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self._close_worker()
            self.con.close()


# DuckDB keeps what a chunk's statements once needed (a night of a new address per line: a
# process of ≈ 900 MB at the configured 1 GB). An ingest caps it lower (a chunk's tables fit;
# joins and sorts spill the rest, at no cost measured on a million lines of either shape);
# ``summary`` keeps the configured limit.
INGEST_MEMORY = 400 << 20
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _cap_memory(con: duckdb.DuckDBPyConnection) -> None:
    (limit,) = con.execute("SELECT current_setting('memory_limit')").fetchone()  # type: ignore[misc]
    found = re.fullmatch(r"([\d.]+) ?([KMGT]?)i?B", str(limit).strip())
    if found is None or float(found[1]) * _UNITS[found[2]] > INGEST_MEMORY:
        con.execute(f"SET memory_limit = '{INGEST_MEMORY >> 20}MiB'")
