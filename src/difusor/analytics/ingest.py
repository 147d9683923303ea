"""Access logs into the analytics database: fast, in bounded memory, never counting a line twice.

A log is read in chunks of whole lines (≤ ``logfile.CHUNK`` bytes, see logfile.py for a file's
identity, offsets and rotation). Each chunk is spooled (by a thread, while DuckDB parses the one
before) to a private temporary file — a small log read from its start is one chunk, parsed
where it lies — that DuckDB's CSV reader parses with the format's SQL (formats.py) into a temp
table, grouped once per address/agent, referrer and path, then written straight into
``requests`` with the per-distinct results joined back; only per-DISTINCT work happens in Python
— geolocation per address, user-agent classification per agent — in a helper process
(lookups.py) that answers while DuckDB parses the next chunk, and comes back to DuckDB as a
small table. The chunk's rows and the file's new offset are committed together, so an
interrupted ingest resumes where it was.

Privacy: the visitor is a keyed hash of (that day's salt, IP, user agent); the raw IP goes to
``visitors.ip`` only when ``[analytics] keep_ip_days`` > 0, and each ingest clears it on visitor-days
whose latest request is older.
A day's salt is deleted ``salt_grace_hours`` after the local midnight that ends the day, at the
end of an ingest that succeeded. Ingesting an old log therefore creates its day's salt and
discards it when that ingest ends: unique visitors of the same old day ingested in two separate
runs are not merged (the live path, which sees each day while it lasts, does not have this
problem); an ingest that failed keeps the salt for the one that resumes it. Temporary files
(they hold raw addresses) live in a private folder deleted when the ingest ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import duckdb

from difusor.analytics import formats
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
    stamp,
)
from difusor.analytics.lookups import Lookups
from difusor.analytics.views import page_rules, view_rules
from difusor.config import Config
from difusor.errors import LogFormatError

BEACON_PATH = "/_difusor/b"
COMBINED_SHAPED = frozenset({"combined", "varnishncsa"})
_BEACON = f"(method = 'POST' AND path = '{BEACON_PATH}')"
# A chunk's groups (see Ingestor._group): GROUPING(ip, ua, quarter, referer, path) of each set.
_PEOPLE, _REFERERS, _PATHS = 0b00011, 0b11101, 0b11110
_TABLES = {
    "_geo": "{'h': 'UBIGINT', 'country': 'VARCHAR', 'state': 'VARCHAR'}",
    "_agent": "{'h': 'UBIGINT', 'browser': 'VARCHAR', 'os': 'VARCHAR', 'device': 'VARCHAR', "
              "'bot': 'BOOLEAN'}",
}


@dataclass
class IngestResult:
    files: int = 0
    lines: int = 0
    rows: int = 0
    bad: int = 0
    own: int = 0
    already: int = 0
    bytes: int = 0
    seconds: float = 0.0
    formats: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def add(self, other: IngestResult) -> None:
        for name in ("files", "lines", "rows", "bad", "own", "already", "bytes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.formats.update(other.formats)
        self.warnings += other.warnings

    def describe(self) -> str:
        """One Spanish line: files, lines, rows stored, lines not understood, files already in."""
        text = (f"{_n(self.files, 'archivo', 'archivos')}: {_n(self.lines, 'línea', 'líneas')}, "
                f"{_n(self.rows, 'fila guardada', 'filas guardadas')}, "
                f"{_n(self.bad, 'línea no entendida', 'líneas no entendidas')}")
        if self.own:
            text += f", {_n(self.own, 'petición propia', 'peticiones propias')} (monitor) sin contar"
        if self.already:
            text += (f"; {_n(self.already, 'archivo ya ingerido', 'archivos ya ingeridos')} "
                     "sin líneas nuevas")
        if self.seconds > 0.05 and self.lines:
            text += f"; {self.seconds:.1f} s ({self.lines / self.seconds:,.0f} líneas/s)"
        if self.warnings:
            text += f"; aviso: {self.warnings[0]}"
        return text


def _n(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"


@dataclass
class _FileState:
    fp: str
    path: Path
    source: str
    edge: bool
    lines: int              # lines committed


@dataclass
class _Reading:
    """One file being read: what ``ingest_file`` found out before its first chunk."""
    state: _FileState
    spec: formats.Format
    fields: list[str] | None   # CloudFront's field names
    zone: str | None           # the usual zone offset of combined-shaped lines
    offset: int
    final: bool


class _NotInPlace(Exception):
    """A log read in place was not clean, or was written to while DuckDB read it."""


@dataclass
class _Parsed:
    slot: str         # its temp tables: the rows <slot>, their groups _g<slot>
    end: int          # the file's offset after this chunk
    dropped: int      # lines too long to read, before it
    size: int
    lines: int        # non-empty lines read
    bad: int          # of them, not understood
    own: int          # of them, our own agents
    lookups: Future[tuple[str, str]] | None = None  # TSV rows for _geo and _agent
    asked: tuple[list[str], list[str]] = ([], [])    # the addresses and agents looked up
    span: tuple[datetime | None, datetime | None] = (None, None)  # first, last kept instant

    @property
    def expected(self) -> int:
        """Rows to store: understood, not our own agents."""
        return self.lines - self.bad - self.own


class Ingestor:
    """One open database connection ingesting any number of files; ``close`` tidies up."""

    def __init__(self, cfg: Config, *, con: duckdb.DuckDBPyConnection | None = None,
                 wait: float | None = None, lookups: Lookups | None = None) -> None:
        self.cfg = cfg
        a = cfg.analytics
        self.zone = ZoneInfo(cfg.site.timezone)
        self._own_lookups = lookups is None
        self.lookups = lookups or Lookups.for_config(cfg)
        # Waits for the lookups' answers (one chunk at a time) while DuckDB works.
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
        self._known_ips: set[str] = set()
        self._known_uas: set[str] = set()
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
        self.con.execute("""
            CREATE OR REPLACE TEMP TABLE _geo (h UBIGINT, country VARCHAR, state VARCHAR);
            CREATE OR REPLACE TEMP TABLE _agent (h UBIGINT, browser VARCHAR, os VARCHAR,
                                                 device VARCHAR, bot BOOLEAN);""")
        self._own = " OR ".join(f"starts_with(ua, {_lit(p)})" for p in a.own_agents if p) or "FALSE"
        self._insert = self._insert_sql(page_rules(cfg), view_rules(cfg))

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
        self.lookups.start_for(bytes_after(path, offset))
        state = _FileState(fp, path, source or source_name(path), spec.edge, done_lines)
        reading = _Reading(state, spec, fields, zone, offset, final)
        try:
            self._read(reading, result, on_bytes, should_stop)
        except _NotInPlace:  # read again, from a copy (which mends, or notices what changed)
            self._read(reading, result, on_bytes, should_stop, in_place=False)
        if not result.bytes:
            result.already = 1
        return result

    def _read(self, r: _Reading, result: IngestResult, on_bytes: Callable[[int], None] | None,
              should_stop: Callable[[], bool] | None, in_place: bool = True) -> None:
        """The file's chunks into the database. While DuckDB parses chunk n, chunk n+1 is
        copied (``ahead``) and chunk n-1's new addresses and agents are looked up (asked as
        each chunk is parsed); then chunk n-1 is stored."""
        pending: _Parsed | None = None
        parsed: _Parsed | None = None
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
            for left in (pending, parsed):  # not stored: asked lookups belong in _geo / _agent
                if left is not None:
                    self._discard(left)

    def _save_offset(self, fp: str, source: str, path: Path, offset: int, lines: int) -> None:
        self.con.execute("""
            INSERT INTO files VALUES (?, ?, ?, ?, ?, now())
            ON CONFLICT (fingerprint) DO UPDATE SET source = excluded.source,
                path = excluded.path, "offset" = excluded."offset", lines = excluded.lines,
                updated_at = excluded.updated_at""", [fp, source, str(path), offset, lines])

    # -- one chunk --------------------------------------------------------------------

    def _parse(self, chunk: Chunk, r: _Reading, slot: str) -> _Parsed:
        """A chunk (in its spool file) → a temp table of its rows (``<slot>``) and their
        per-distinct groups (``_g<slot>``); the new addresses and agents are handed to the
        worker to look up (per distinct value: the only per-value work done in Python).
        Combined lines are read by DuckDB's CSV reader as typed columns
        (``formats.csv_sql``), the lines it refuses the general way, appended after the
        others; with an escaped quote about (Apache) the whole chunk goes the general way.
        A chunk read in place (the log itself) raises ``_NotInPlace`` if its scan found it not
        clean, or if the log was written to meanwhile (DuckDB may have read more than the
        chunk)."""
        spec, spool = r.spec, chunk.spool
        if not chunk.utf8:  # DuckDB drops lines that are not UTF-8: mend them instead
            spool.write_bytes(spool.read_bytes().decode("utf-8", "replace").encode("utf-8"))
        con = self.con
        try:
            if spec.name in COMBINED_SHAPED and not chunk.escaped_quote:
                rejects = f"_rechazo{slot}"
                try:
                    con.execute(f"CREATE OR REPLACE TEMP TABLE {slot} AS " + self._flagged(
                        formats.csv_sql(str(spool), rejects, r.zone)))
                    if self._refused(rejects):
                        con.execute(f"INSERT INTO {slot} "
                                    + self._flagged(formats.rejected_sql(rejects)))
                finally:
                    con.execute(f"DROP TABLE IF EXISTS {rejects}; "
                                f"DROP TABLE IF EXISTS {rejects}_scan")
            else:
                con.execute(f"CREATE OR REPLACE TEMP TABLE {slot} AS " + self._flagged(
                    formats.source_sql(spec, str(spool), r.fields)))
            if chunk.in_place and not (_clean(chunk) and stamp(spool) == chunk.stamp):
                raise _NotInPlace
            self._group(slot)
        except BaseException:
            self._drop(slot)
            raise
        finally:
            if not chunk.in_place:
                spool.unlink(missing_ok=True)
        lines, good, own, first, last = con.execute(
            f"SELECT count(*), count(*) FILTER (ok), count(*) FILTER (own), "
            f"min(ts) FILTER (ok AND NOT own), max(ts) FILTER (ok AND NOT own) FROM {slot}"
        ).fetchone()  # type: ignore[misc]
        parsed = _Parsed(slot, chunk.end, chunk.dropped, chunk.size, lines, lines - good, own)
        if parsed.expected:
            parsed.span = (first, last)
            ips, uas = (con.execute(
                f"SELECT DISTINCT {v}, hash({v}) FROM _g{slot} WHERE gid = {_PEOPLE}"
                ).fetchall() for v in ("ip", "ua"))
            self._ask(parsed, ips, uas)
        return parsed

    def _ask(self, parsed: _Parsed, ips: list[tuple[str, int]], uas: list[tuple[str, int]]
             ) -> None:
        """Hands the chunk's new addresses and agents, (value, DuckDB's hash), to the worker."""
        ips = [(ip, h) for ip, h in ips if ip not in self._known_ips]
        uas = [(ua, h) for ua, h in uas if ua not in self._known_uas]
        self._known_ips.update(ip for ip, _ in ips)
        self._known_uas.update(ua for ua, _ in uas)
        parsed.asked = ([ip for ip, _ in ips], [ua for ua, _ in uas])
        parsed.lookups = self._worker.submit(self.lookups.ask, ips, uas)

    def _flagged(self, source: str) -> str:
        """``source``'s rows with ``ok`` (understood) and ``own`` (our monitor's agents)."""
        return f"""
            SELECT *, ok AND ({self._own}) AS own
            FROM (SELECT *, (ts IS NOT NULL AND status IS NOT NULL AND ip <> ''
                             AND method IS NOT NULL) AS ok
                  FROM ({source}))"""

    def _group(self, slot: str) -> None:
        """One pass over the rows kept (understood, not our own), grouped several ways at once
        (``gid`` says which): per address, agent and quarter hour (a local day never changes
        inside one: zone offsets are whole quarter hours), per referrer, per path, and all."""
        self.con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _g{slot} AS
            SELECT GROUPING(ip, ua, quarter, referer, path) AS gid, ip, ua, referer, path,
                   max(ts) AS last
            FROM (SELECT ts, ip, ua, referer,
                         -- epoch_us: integer arithmetic (epoch() is a DOUBLE, 3× the cost)
                         epoch_us(ts) // 900000000 AS quarter,
                         CASE WHEN NOT {_BEACON} THEN path END AS path
                  FROM {slot} WHERE ok AND NOT own)
            GROUP BY GROUPING SETS ((ip, ua, quarter), (referer), (path))""")

    def _refused(self, rejects: str) -> bool:
        try:
            (n,) = self.con.execute(f"SELECT count(*) FROM {rejects}").fetchone()  # type: ignore[misc]
        except duckdb.CatalogException:  # nothing refused: no table
            return False
        return bool(n)

    def _drop(self, slot: str) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {slot}; DROP TABLE IF EXISTS _g{slot}")

    def _take_lookups(self, parsed: _Parsed) -> None:
        if parsed.lookups is not None:
            geo, ag = parsed.lookups.result()
            parsed.lookups = None
            self._load("_geo", geo)
            self._load("_agent", ag)

    def _discard(self, parsed: _Parsed) -> None:
        """A parsed chunk that will not be stored (stopped, or an error): its values are in
        the known sets once asked, so their lookups must still land in _geo / _agent."""
        try:
            self._take_lookups(parsed)
        finally:
            self._drop(parsed.slot)

    def _forget(self, parsed: _Parsed) -> None:
        """A chunk rolled back: its lookups went with it (or are dropped, if not yet taken),
        so they are asked again later."""
        ips, uas = parsed.asked
        self._known_ips.difference_update(ips)
        self._known_uas.difference_update(uas)
        parsed.lookups = None

    def _store(self, parsed: _Parsed, state: _FileState, result: IngestResult,
               on_bytes: Callable[[int], None] | None) -> None:
        """The chunk's rows, anonymised and classified, and the file's offset after them, in
        one transaction. Requests go straight from the parsed chunk into ``requests`` (each
        chunk is at least a few row groups, written compressed once); the lookups are only
        needed for the visitors, after that write, so the worker has had it to finish them."""
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
            self._drop(parsed.slot)
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

    def _write(self, parsed: _Parsed, state: _FileState) -> int:
        con = self.con
        g = f"_g{parsed.slot}"
        day = local_day_sql(self.zone, *parsed.span)  # of a row's ts; a group's day, of its last
        people = f"SELECT {local_day_sql(self.zone, *parsed.span, column='last')} AS day, " \
                 f"ip, ua, last FROM {g} " \
                 f"WHERE gid = {_PEOPLE}"
        self._ensure_salts([d for (d,) in con.execute(
            f"SELECT DISTINCT day FROM ({people})").fetchall()])
        # The visitor key: a keyed hash (the day's secret salt) per distinct (day, address);
        # rows mix it with their agent, and stay as unguessable as the key.
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _ipday AS
            SELECT d.day, d.ip, md5_number_lower(hex(s.salt) || d.ip) AS key
            FROM (SELECT DISTINCT day, ip FROM ({people})) AS d JOIN salts AS s USING (day)""")
        requests, visitors = (sql.replace("__C__", parsed.slot).replace("__G__", g)
                              .replace("__DAY__", day).replace("__PEOPLE__", people)
                              for sql in self._insert)
        (stored,) = con.execute(requests, [state.source, state.edge, self._seq]
                                ).fetchone()  # type: ignore[misc]
        self._take_lookups(parsed)
        ip = "coalesce(excluded.ip, visitors.ip)" if self.keep_ip else "NULL"
        con.execute(visitors.replace("__IP__", ip))
        return int(stored)

    def _load(self, table: str, text: str) -> None:
        """Append TSV rows to a temp table (far faster than executemany)."""
        if not text:
            return
        tsv = self.tmp / f"{table}.tsv"
        tsv.write_text(text, encoding="utf-8")
        try:
            self.con.execute(f"""INSERT INTO {table} SELECT * FROM read_csv('{tsv}', delim='\\t',
                quote='', escape='', header=false, auto_detect=false, columns={_TABLES[table]},
                nullstr='\\N', strict_mode=false)""")
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

    def _insert_sql(self, pages: list[str], views: list[tuple[str, str]]) -> tuple[str, str]:
        """(the INSERT of a chunk's requests, the upserts of its visitors and paths).
        ``_ipday`` holds per (day, address) the keyed hash, so the per-row work is one cheap
        hash and two joins; agent, place and page/view are stored per distinct visitor-day and
        path (schema.py), from the chunk's groups, never per row."""
        lit = _lit
        page = " OR ".join(f"lp GLOB {lit(g.lower())}" for g in pages) or "FALSE"
        view = ("CASE " + " ".join(f"WHEN lp GLOB {lit(g.lower())} THEN {lit(v)}"
                                   for g, v in views) + " END") if views else "NULL"
        # scheme://[user@]host[:port]/… → host, without a regex; per distinct referrer (a
        # handful), joined back: string functions on every row cost a second per million.
        # Joined on the string's hash first: half the cost of joining on the string alone.
        ref = ("CASE WHEN contains(referer, '://') THEN lower(split_part(split_part(split_part("
               "referer, '/', 3), '@', -1), ':', 1)) ELSE '' END")
        site = lit(self.site_host)
        requests = f"""
            INSERT INTO requests
            SELECT c.ts, c.day, hash(k.key, c.ua),
                   CASE WHEN b THEN 'BEACON' ELSE c.method END,
                   CASE WHEN b THEN coalesce(try(url_decode(
                       regexp_extract(c.query, '(?:^|&)p=([^&]*)', 1))), '') ELSE c.path END,
                   c.query, c.status, c.bytes,
                   CASE WHEN r.rh <> '' AND r.rh <> {site} THEN r.rh END,
                   CASE WHEN b THEN try_cast(regexp_extract(c.query, '(?:^|&)v=([0-9]+)', 1)
                                             AS UINTEGER) END,
                   $1, $2, $3 + c.seq
            FROM (SELECT c.rowid AS seq, c.*, __DAY__ AS day, {_BEACON} AS b
                  FROM __C__ AS c WHERE ok AND NOT own) AS c
            JOIN _ipday AS k USING (day, ip)
            JOIN (SELECT referer, hash(referer) AS rk, {ref} AS rh
                  FROM __G__ WHERE gid = {_REFERERS}) AS r
                ON r.rk = hash(c.referer) AND r.referer = c.referer"""
        visitors = f"""
            INSERT INTO visitors
            SELECT d.day, hash(k.key, d.ua), {"d.ip" if self.keep_ip else "NULL"}, d.last,
                   g.country, g.state, a.browser, a.os, a.device, a.bot
            FROM (SELECT day, ip, ua, max(last) AS last FROM (__PEOPLE__) GROUP BY ALL) AS d
            JOIN _ipday AS k USING (day, ip)
            JOIN _geo AS g ON g.h = hash(d.ip)
            JOIN _agent AS a ON a.h = hash(d.ua)
            ON CONFLICT (day, visitor) DO UPDATE SET ip = __IP__,
                last_ts = greatest(visitors.last_ts, excluded.last_ts);
            INSERT INTO paths
            SELECT path, {page}, {view}
            FROM (SELECT path, lower(path) AS lp FROM __G__
                  WHERE gid = {_PATHS} AND path IS NOT NULL)
            ON CONFLICT (path) DO NOTHING"""
        return requests, visitors

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


def _clean(chunk: Chunk) -> bool:
    assert chunk.clean is not None
    try:
        return chunk.clean.result()
    except OSError:
        return False


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def ingest_files(cfg: Config, files: list[Path], fmt: str = "auto", progress: bool = False,
                 lookups: Lookups | None = None) -> IngestResult:
    """Ingest logs given by the operator (``difusor analytics ingest``)."""
    from difusor.clikit import progress as progress_bar

    started = time.monotonic()
    total = IngestResult()
    sizes = {p: (p.stat().st_size if p.is_file() else 0) for p in files}
    missing = [p for p in files if not p.is_file()]
    if missing:
        raise LogFormatError(f"no existe el registro {missing[0]}")
    ingestor = Ingestor(cfg, lookups=lookups)
    done_ok = False
    try:
        with progress_bar("ingiriendo") if progress else _no_bar() as bar:
            done = 0

            def advance(n: int) -> None:
                nonlocal done
                done += n
                if bar:
                    bar(done, sum(sizes.values()))

            for path in files:
                total.add(ingestor.ingest_file(path, fmt, on_bytes=advance))
        done_ok = True
    finally:
        ingestor.close(tidy=done_ok)
    total.seconds = time.monotonic() - started
    return total


class _no_bar:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
