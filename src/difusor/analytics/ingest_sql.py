"""The SQL of an ingest: a chunk's rows flagged (understood? our own monitor?), grouped once per
distinct address/agent, referrer and path, and written into ``requests``, ``visitors`` and
``paths`` (schema.py) with the per-distinct results joined back.

Values from the config reach the SQL only as quoted literals (``lit``); a chunk's temp tables
are named by the ingest itself (``_c0``/``_c1`` and their groups ``_g_c0``/``_g_c1``).
"""

from __future__ import annotations

from collections.abc import Iterable

BEACON_PATH = "/_difusor/b"
BEACON = f"(method = 'POST' AND path = '{BEACON_PATH}')"
# A chunk's groups (see ``grouped``): GROUPING(ip, ua, quarter, referer, path) of each set.
PEOPLE, REFERERS, PATHS = 0b00011, 0b11101, 0b11110
# The lookups' answers, per DuckDB hash of the address / agent, loaded from TSV (``load_tsv``).
LOOKUP_COLUMNS = {
    "_geo": "{'h': 'UBIGINT', 'country': 'VARCHAR', 'state': 'VARCHAR'}",
    "_agent": "{'h': 'UBIGINT', 'browser': 'VARCHAR', 'os': 'VARCHAR', 'device': 'VARCHAR', "
              "'bot': 'BOOLEAN'}",
}
LOOKUP_TABLES = """
    CREATE OR REPLACE TEMP TABLE _geo (h UBIGINT, country VARCHAR, state VARCHAR);
    CREATE OR REPLACE TEMP TABLE _agent (h UBIGINT, browser VARCHAR, os VARCHAR,
                                         device VARCHAR, bot BOOLEAN);"""


def lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def own_agents(prefixes: Iterable[str]) -> str:
    """True for a row whose agent starts with one of ``prefixes`` (our own monitor's)."""
    return " OR ".join(f"starts_with(ua, {lit(p)})" for p in prefixes if p) or "FALSE"


def flagged(source: str, own: str) -> str:
    """``source``'s rows with ``ok`` (understood) and ``own`` (our monitor's agents)."""
    return f"""
        SELECT *, ok AND ({own}) AS own
        FROM (SELECT *, (ts IS NOT NULL AND status IS NOT NULL AND ip <> ''
                         AND method IS NOT NULL) AS ok
              FROM ({source}))"""


def grouped(slot: str) -> str:
    """One pass over the rows kept (understood, not our own), grouped several ways at once
    (``gid`` says which): per address, agent and quarter hour (a local day never changes
    inside one: zone offsets are whole quarter hours), per referrer, per path, and all."""
    return f"""
        CREATE OR REPLACE TEMP TABLE _g{slot} AS
        SELECT GROUPING(ip, ua, quarter, referer, path) AS gid, ip, ua, referer, path,
               max(ts) AS last
        FROM (SELECT ts, ip, ua, referer,
                     -- epoch_us: integer arithmetic (epoch() is a DOUBLE, 3× the cost)
                     epoch_us(ts) // 900000000 AS quarter,
                     CASE WHEN NOT {BEACON} THEN path END AS path
              FROM {slot} WHERE ok AND NOT own)
        GROUP BY GROUPING SETS ((ip, ua, quarter), (referer), (path))"""


def load_tsv(table: str, tsv: str) -> str:
    """Appends a lookups' TSV file to its temp table (far faster than executemany)."""
    return f"""INSERT INTO {table} SELECT * FROM read_csv('{tsv}', delim='\\t',
        quote='', escape='', header=false, auto_detect=false, columns={LOOKUP_COLUMNS[table]},
        nullstr='\\N', strict_mode=false)"""


def inserts(pages: list[str], views: list[tuple[str, str]], site_host: str, keep_ip: bool
            ) -> tuple[str, str]:
    """(the INSERT of a chunk's requests, the upserts of its visitors and paths), with the
    placeholders ``__C__`` (the chunk's rows), ``__G__`` (its groups), ``__DAY__`` (a row's
    local day), ``__PEOPLE__`` (its visitor-days) and ``__IP__`` (what a visitor keeps of its
    address). ``_ipday`` holds per (day, address) the keyed hash, so the per-row work is one
    cheap hash and two joins; agent, place and page/view are stored per distinct visitor-day
    and path (schema.py), from the chunk's groups, never per row."""
    page = " OR ".join(f"lp GLOB {lit(g.lower())}" for g in pages) or "FALSE"
    view = ("CASE " + " ".join(f"WHEN lp GLOB {lit(g.lower())} THEN {lit(v)}"
                               for g, v in views) + " END") if views else "NULL"
    # scheme://[user@]host[:port]/… → host, without a regex; per distinct referrer (a
    # handful), joined back: string functions on every row cost a second per million.
    # Joined on the string's hash first: half the cost of joining on the string alone.
    ref = ("CASE WHEN contains(referer, '://') THEN lower(split_part(split_part(split_part("
           "referer, '/', 3), '@', -1), ':', 1)) ELSE '' END")
    site = lit(site_host)
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
        FROM (SELECT c.rowid AS seq, c.*, __DAY__ AS day, {BEACON} AS b
              FROM __C__ AS c WHERE ok AND NOT own) AS c
        JOIN _ipday AS k USING (day, ip)
        JOIN (SELECT referer, hash(referer) AS rk, {ref} AS rh
              FROM __G__ WHERE gid = {REFERERS}) AS r
            ON r.rk = hash(c.referer) AND r.referer = c.referer"""
    visitors = f"""
        INSERT INTO visitors
        SELECT d.day, hash(k.key, d.ua), {"d.ip" if keep_ip else "NULL"}, d.last,
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
              WHERE gid = {PATHS} AND path IS NOT NULL)
        ON CONFLICT (path) DO NOTHING"""
    return requests, visitors
