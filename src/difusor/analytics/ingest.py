"""Access logs into the analytics database: fast, in bounded memory, never counting a line twice.

A log is read in chunks of whole lines (≤ ``CHUNK`` bytes). Each chunk is spooled to a private
temporary file that DuckDB reads as one VARCHAR column and parses with the format's SQL
(formats.py); only per-DISTINCT work happens in Python — geolocation per address, user-agent
classification per agent — and comes back to DuckDB as a small table. The chunk's rows and
the file's new offset are committed together, so an interrupted ingest resumes where it was.

A file's identity is the fingerprint of its first line(s), not its name: re-ingesting a file
adds nothing, an appended file adds only its new whole lines (a partial last line waits), and a
rotated file (``access.log`` → ``access.log.1`` → ``access.log.1.gz``) is recognised by content.

Privacy: the visitor is a keyed hash of (that day's salt, IP, user agent); the raw IP goes to
``hits.ip`` only when ``[analytics] keep_ip_days`` > 0, and each ingest clears it on older rows.
A day's salt is deleted ``salt_grace_hours`` after the local midnight that ends the day, at the
end of an ingest. Ingesting an old log therefore creates its day's salt and discards it when that
ingest ends: unique visitors of the same old day ingested in two separate runs are not merged
(the live path, which sees each day while it lasts, does not have this problem). Temporary files
(they hold raw addresses) live in a private folder deleted when the ingest ends.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import duckdb

from difusor.analytics import agents, formats
from difusor.analytics.db import connect, database_path
from difusor.analytics.geo import Geo
from difusor.analytics.views import page_rules, view_rules
from difusor.config import Config
from difusor.errors import LogFormatError

CHUNK = 64 << 20
HEAD = 4096
BEACON_PATH = "/_difusor/b"
_TABLES = {
    "_geo": "{'h': 'UBIGINT', 'country': 'VARCHAR', 'state': 'VARCHAR'}",
    "_agent": "{'h': 'UBIGINT', 'browser': 'VARCHAR', 'os': 'VARCHAR', 'device': 'VARCHAR', "
              "'bot': 'BOOLEAN'}",
}
_CSV = ("columns={'line': 'VARCHAR'}, delim='\\x01', quote='', escape='', header=false, "
        "auto_detect=false, strict_mode=false, ignore_errors=true")


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
    lines: int


@dataclass
class _Parsed:
    table: str
    end: int          # the file's offset after this chunk
    newlines: int
    size: int
    expected: int     # rows to store (understood, not our own agents)
    lookups: tuple[str, str] | None = None  # TSV rows for _geo and _agent


def fingerprint(head: bytes) -> str | None:
    """Identity of a log: sha256 of its first line (with any "#" header lines before it)."""
    end = 0
    while True:
        cut = head.find(b"\n", end)
        if cut < 0:
            # A first line longer than HEAD identifies the file by its first HEAD bytes.
            return hashlib.sha256(head).hexdigest() if len(head) >= HEAD and end == 0 else None
        line, end = head[end:cut], cut + 1
        if not line.startswith(b"#") or end >= len(head):
            if line.startswith(b"#"):
                return None  # only headers so far: wait for the first request
            return hashlib.sha256(head[:end]).hexdigest()


def source_name(path: Path) -> str:
    """``access.log.1.gz`` → ``access.log``: rotations keep their log's name."""
    return re.sub(r"(\.\d+)?(\.gz)?$|-\d{8}(\.gz)?$", "", path.name) or path.name


def _open(path: Path) -> BinaryIO:
    """The file's bytes, decompressed when it is gzip (by content, whatever its name)."""
    f = open(path, "rb")  # noqa: SIM115 — returned to the caller, who closes it
    try:
        gz = f.read(2) == b"\x1f\x8b"
    except BaseException:
        f.close()
        raise
    if not gz:
        f.seek(0)
        return f
    f.close()
    return gzip.open(path, "rb")  # type: ignore[return-value]


def _nothing_new(path: Path, offset: int) -> bool:
    """Whether ``offset`` (uncompressed bytes) is already the file's end, without reading it:
    the size for a plain file, gzip's trailer (size mod 2³²) for a compressed one."""
    with open(path, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            return os.fstat(f.fileno()).st_size <= offset
        if offset >= 1 << 32:
            return False
        f.seek(-4, os.SEEK_END)
        return int.from_bytes(f.read(4), "little") == offset


def read_head(path: Path, size: int = HEAD) -> bytes:
    with _open(path) as f:
        try:
            return f.read(size)
        except (OSError, EOFError, zlib.error):
            return b""


class Ingestor:
    """One open database connection ingesting any number of files; ``close`` tidies up."""

    def __init__(self, cfg: Config, *, con: duckdb.DuckDBPyConnection | None = None,
                 wait: float | None = None, geo: Geo | None = None) -> None:
        self.cfg = cfg
        a = cfg.analytics
        self.zone = ZoneInfo(cfg.site.timezone)
        self._own_geo = geo is None
        self.geo = geo or Geo.for_config(cfg)
        try:
            self.con = con or (connect(cfg) if wait is None else connect(cfg, wait=wait))
        except BaseException:
            if self._own_geo:
                self.geo.close()
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
        # Row order in hits means nothing; not keeping it lets DuckDB write in parallel.
        self.con.execute("SET preserve_insertion_order = false")
        # Checkpoint once when the ingest closes, not after every chunk's commit (the WAL
        # keeps each commit durable meanwhile).
        self.con.execute("SET checkpoint_threshold = '1GB'")
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
        select = formats.select_sql(spec, "_lines", fields)
        row = self.con.execute('SELECT "offset", lines FROM files WHERE fingerprint = ?',
                               [fp]).fetchone()
        offset, done_lines = (int(row[0]), int(row[1])) if row else (0, 0)
        if offset and _nothing_new(path, offset):
            result.already = 1
            return result
        source = source or source_name(path)
        new = False
        state = _FileState(fp, path, source, spec.edge, done_lines)
        for chunk, end in self._chunks(path, offset, final, result):
            new = True
            self._store(self._parse(chunk, end, select, result), state, result, on_bytes)
            if should_stop and should_stop():
                break
        if not new:
            result.already = 1
        return result

    def _chunks(self, path: Path, offset: int, final: bool, result: IngestResult
                ) -> Iterator[tuple[bytes, int]]:
        """(whole lines, offset after them) from ``offset`` on, at most CHUNK bytes each."""
        with _open(path) as f:
            if isinstance(f, gzip.GzipFile):
                skip = offset
                while skip:  # offsets count uncompressed bytes: skip by decompressing
                    step = f.read(min(skip, CHUNK))
                    if not step:
                        return
                    skip -= len(step)
            else:
                f.seek(offset)
            carry = b""
            while True:
                try:
                    data = f.read(CHUNK - len(carry))
                except (OSError, EOFError, zlib.error) as exc:
                    result.warnings.append(f"{path}: compresión dañada ({exc}); leído hasta ahí")
                    data, final = b"", False
                block = carry + data
                if not data:
                    if final and block:
                        offset += len(block)
                        yield block + b"\n", offset
                    return
                cut = block.rfind(b"\n") + 1
                if cut == 0 and len(block) >= CHUNK:  # a "line" longer than a chunk: drop it
                    offset += len(block)
                    result.bad += 1
                    carry = b""
                    continue
                carry = block[cut:]
                if cut:
                    offset += cut
                    yield block[:cut], offset

    def _save_offset(self, fp: str, source: str, path: Path, offset: int, lines: int) -> None:
        self.con.execute("""
            INSERT INTO files VALUES (?, ?, ?, ?, ?, now())
            ON CONFLICT (fingerprint) DO UPDATE SET source = excluded.source,
                path = excluded.path, "offset" = excluded."offset", lines = excluded.lines,
                updated_at = excluded.updated_at""", [fp, source, str(path), offset, lines])

    # -- one chunk --------------------------------------------------------------------

    def _parse(self, chunk: bytes, end: int, select: str, result: IngestResult) -> _Parsed:
        """Chunk → a temp table of request fields, and its new addresses and agents looked up
        (per distinct value: the only per-value work done in Python)."""
        if not chunk.isascii():  # DuckDB drops lines that are not UTF-8: mend them instead
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError:
                chunk = chunk.decode("utf-8", "replace").encode("utf-8")
        table = "_c"
        spool = self.tmp / "trozo.log"
        spool.write_bytes(chunk)
        con = self.con
        try:
            con.execute(f"""
                CREATE OR REPLACE TEMP TABLE {table} AS
                WITH _lines AS (SELECT line FROM read_csv('{spool}', {_CSV})
                                WHERE line IS NOT NULL)
                SELECT *, CASE WHEN ok THEN (ts AT TIME ZONE '{self.zone.key}')::DATE END AS day,
                       ok AND ({self._own}) AS own
                FROM (SELECT *, (ts IS NOT NULL AND status IS NOT NULL AND ip <> ''
                                 AND method IS NOT NULL) AS ok
                      FROM ({select}))""")
        finally:
            spool.unlink(missing_ok=True)
        lines, good, own = con.execute(
            f"SELECT count(*), count(*) FILTER (ok), count(*) FILTER (own) FROM {table}"
        ).fetchone()  # type: ignore[misc]
        result.lines += lines
        result.bad += lines - good
        result.own += own
        parsed = _Parsed(table, end, chunk.count(b"\n"), len(chunk), good - own)
        if parsed.expected:
            ips = [(ip, h) for ip, h in con.execute(
                f"SELECT DISTINCT ip, hash(ip) FROM {table} WHERE ok AND NOT own").fetchall()
                if ip not in self._known_ips]
            uas = [(ua, h) for ua, h in con.execute(
                f"SELECT DISTINCT ua, hash(ua) FROM {table} WHERE ok AND NOT own").fetchall()
                if ua not in self._known_uas]
            self._known_ips.update(ip for ip, _ in ips)
            self._known_uas.update(ua for ua, _ in uas)
            parsed.lookups = self._lookups(ips, uas)
        return parsed

    def _lookups(self, ips: list[tuple[str, int]], uas: list[tuple[str, int]]) -> tuple[str, str]:
        """(geo TSV, agents TSV) keyed by DuckDB's hash of the string: the strings themselves
        never round-trip, so no escaping can make a row miss its join."""
        lookup = self.geo.lookup
        geo = "".join(f"{h}\t{_tsv(c)}\t{_tsv(s)}\n" for ip, h in ips for c, s in (lookup(ip),))
        ag = "".join("\t".join(_tsv(v) for v in (h, *agents.classify(ua))) + "\n"
                     for ua, h in uas)
        return geo, ag

    def _store(self, parsed: _Parsed, state: _FileState, result: IngestResult,
               on_bytes: Callable[[int], None] | None) -> None:
        """The chunk's rows and the file's new offset, in one transaction."""
        con = self.con
        table = parsed.table
        if parsed.lookups is not None:
            geo, ag = parsed.lookups
            self._load("_geo", geo)
            self._load("_agent", ag)
        con.execute("BEGIN")
        try:
            if parsed.expected:
                self._ensure_salts([d for (d,) in con.execute(
                    f"SELECT DISTINCT day FROM {table} WHERE ok AND NOT own").fetchall()])
                # The visitor key: a keyed hash (the day's secret salt) per distinct (day,
                # address); rows mix it with their agent, and stay as unguessable as the key.
                con.execute(f"""
                    CREATE OR REPLACE TEMP TABLE _ipday AS
                    SELECT d.day, d.ip, md5_number_lower(hex(s.salt) || d.ip) AS key,
                           g.country, g.state
                    FROM (SELECT DISTINCT day, ip FROM {table} WHERE ok AND NOT own) AS d
                    JOIN salts AS s USING (day) JOIN _geo AS g ON g.h = hash(d.ip)""")
                (stored,) = con.execute(self._insert.replace("__C__", table),
                                        [state.source, state.edge]).fetchone()  # type: ignore[misc]
                result.rows += stored
                result.bad += parsed.expected - stored  # none expected; never silently lost
            state.lines += parsed.newlines
            self._save_offset(state.fp, state.source, state.path, parsed.end, state.lines)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.execute(f"DROP TABLE IF EXISTS {table}")
        result.bytes += parsed.size
        if on_bytes:
            on_bytes(parsed.size)

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

    def _insert_sql(self, pages: list[str], views: list[tuple[str, str]]) -> str:
        """The INSERT of a chunk's rows; ``_ipday`` holds per (day, address) the keyed hash
        and the place, so the per-row work is one cheap hash and a few joins."""
        lit = _lit
        page = " OR ".join(f"c.lp GLOB {lit(g.lower())}" for g in pages) or "FALSE"
        view = ("CASE " + " ".join(f"WHEN c.lp GLOB {lit(g.lower())} THEN {lit(v)}"
                                   for g, v in views) + " END") if views else "NULL"
        beacon = f"(c.method = 'POST' AND c.path = {lit(BEACON_PATH)})"
        # scheme://[user@]host[:port]/… → host, without a regex per row.
        ref = ("CASE WHEN contains(c.referer, '://') THEN lower(split_part(split_part(split_part("
               "c.referer, '/', 3), '@', -1), ':', 1)) ELSE '' END")
        site = lit(self.site_host)
        return f"""
            INSERT INTO hits
            SELECT c.ts, c.day, hash(k.key, c.ua),
                   {"c.ip" if self.keep_ip else "NULL"}, k.country, k.state,
                   CASE WHEN b THEN 'BEACON' ELSE c.method END,
                   CASE WHEN b THEN coalesce(try(url_decode(
                       regexp_extract(c.query, '(?:^|&)p=([^&]*)', 1))), '') ELSE c.path END,
                   c.query, c.status, c.bytes,
                   CASE WHEN rh <> '' AND rh <> {site} THEN rh END,
                   a.browser, a.os, a.device, a.bot,
                   CASE WHEN b THEN FALSE ELSE p.page END,
                   CASE WHEN b THEN NULL ELSE p.view END,
                   CASE WHEN b THEN try_cast(regexp_extract(c.query, '(?:^|&)v=([0-9]+)', 1)
                                             AS UINTEGER) END,
                   $1, $2
            FROM (SELECT c.*, {beacon} AS b, {ref} AS rh FROM __C__ AS c WHERE ok AND NOT own) AS c
            JOIN _ipday AS k USING (day, ip)
            JOIN _agent AS a ON a.h = hash(c.ua)
            JOIN (SELECT path, {page} AS page, {view} AS view
                  FROM (SELECT path, lower(path) AS lp
                        FROM (SELECT DISTINCT path FROM __C__ WHERE ok AND NOT own)) AS c) AS p
                USING (path)"""

    # -- housekeeping -----------------------------------------------------------------

    def tidy(self, now: datetime | None = None) -> None:
        """Forget raw IPs past keep_ip_days and salts past their grace (end of every ingest)."""
        a = self.cfg.analytics
        now = now or datetime.now(UTC)
        cutoff = now - timedelta(days=a.keep_ip_days)
        self.con.execute("UPDATE hits SET ip = NULL WHERE ip IS NOT NULL AND ts < ?", [cutoff])
        grace = timedelta(hours=a.salt_grace_hours)
        for (day,) in self.con.execute("SELECT day FROM salts").fetchall():
            ends = datetime.combine(day + timedelta(days=1), datetime.min.time(), self.zone)
            if ends + grace <= now:
                self.con.execute("DELETE FROM salts WHERE day = ?", [day])
                self._salted.discard(day)

    def close(self) -> None:
        try:
            self.tidy()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if self._own_geo:
                self.geo.close()
            self.con.close()


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _tsv(value: object) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).replace("\t", " ").replace("\n", " ").replace("\r", " ")


def ingest_files(cfg: Config, files: list[Path], fmt: str = "auto", progress: bool = False
                 ) -> IngestResult:
    """Ingest logs given by the operator (``difusor analytics ingest``)."""
    from difusor.clikit import progress as progress_bar

    started = time.monotonic()
    total = IngestResult()
    sizes = {p: (p.stat().st_size if p.is_file() else 0) for p in files}
    missing = [p for p in files if not p.is_file()]
    if missing:
        raise LogFormatError(f"no existe el registro {missing[0]}")
    ingestor = Ingestor(cfg)
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
    finally:
        ingestor.close()
    total.seconds = time.monotonic() - started
    return total


class _no_bar:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
