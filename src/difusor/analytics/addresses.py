"""Addresses in SQL: their text as a number, and their place by an ASOF join on the ranges.

The text is read as glibc's ``inet_pton`` reads it (what Python's ``socket.inet_pton`` calls):
IPv4 as exactly four decimal octets without leading zeros; IPv6 as eight groups of 1–4 hex
digits, one ``::`` standing for at least one group of zeros, the last two groups optionally
written as an IPv4 address; no zone (``%eth0``), no brackets, no spaces. Anything else is no
address: no place. An IPv4-mapped address (``::ffff:189.130.0.1``) is its IPv4 address, as on
``georanges.py``'s number line.

``prepare`` puts the ranges in the database, once per mmdb: IPv4 (32-bit starts) apart from
IPv6 (128-bit, UHUGEINT), each range's answer a place id. ``places_sql`` gives the place of
each of a set of addresses: one ASOF join per family, each starting range the greatest at or
below the address.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import duckdb

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
V4 = rf"{_OCTET}(\.{_OCTET}){{3}}"
_GROUP = "[0-9A-Fa-f]{1,4}"
V6 = rf"{_GROUP}(:{_GROUP}){{7}}|({_GROUP}(:{_GROUP})*)?::({_GROUP}(:{_GROUP})*)?"

# Step by step, each step a column of the one before (an expression used twice would be
# computed twice): the IPv4 tail of an IPv6 text written as its two hex groups…
_HEX = rf"""CASE
    WHEN NOT contains(ip, '.') THEN ip
    WHEN regexp_full_match(split_part(ip, ':', -1), '{V4}') THEN
        ip[:length(ip) - length(split_part(ip, ':', -1))] || printf('%x:%x',
            (string_split(split_part(ip, ':', -1), '.')::UBIGINT[])[1] * 256
            + (string_split(split_part(ip, ':', -1), '.')::UBIGINT[])[2],
            (string_split(split_part(ip, ':', -1), '.')::UBIGINT[])[3] * 256
            + (string_split(split_part(ip, ':', -1), '.')::UBIGINT[])[4])
    END"""
# …the groups written (with one "::" the colons, less one for each end it touches)…
_GROUPS = ("length(_h) - length(replace(_h, ':', '')) - starts_with(_h, '::')::INT "
           "- ends_with(_h, '::')::INT")
# …the eight groups as numbers ("::" expanded to the zero groups it stands for)…
_GROUPS8 = """list_transform(
    string_split(CASE WHEN contains(_h, '::')
                      THEN trim(replace(_h, '::', ':' || repeat('0:', 8 - _g)), ':') ELSE _h END,
                 ':'), lambda x: ('0x' || x)::UBIGINT)"""
# …and the 128-bit number.
_N = """(((_l[1] << 48) | (_l[2] << 32) | (_l[3] << 16) | _l[4])::UHUGEINT << 64)
        | ((_l[5] << 48) | (_l[6] << 32) | (_l[7] << 16) | _l[8])"""


def _numbers(ips: str, key: str) -> str:
    """The CTEs ``v4`` (k, n: UINTEGER) and ``v6`` (k, n: UHUGEINT, IPv4-mapped ones too) of
    the addresses ``ips`` (a relation of one column ``ip``), each known by ``k``, the SQL
    ``key`` of its ``ip``. Each family is tested in a filter of its own (a filter tests its
    second condition only on the rows that pass the first; a projection computes everything
    for every row, and a CASE choosing per row between list-valued branches cost four times
    more)."""
    return f"""
    WITH ips AS MATERIALIZED ({ips}),
    v4 AS (
        SELECT k, ((_l[1] << 24) | (_l[2] << 16) | (_l[3] << 8) | _l[4])::UINTEGER AS n
        FROM (SELECT {key} AS k, string_split(ip, '.')::UBIGINT[] AS _l FROM ips
              WHERE NOT contains(ip, ':') AND regexp_full_match(ip, '{V4}'))),
    v6 AS MATERIALIZED (
        SELECT k, {_N} AS n
        FROM (SELECT {key} AS k, {_GROUPS8} AS _l
              FROM (SELECT ip, _h, {_GROUPS} AS _g
                    FROM (SELECT ip, {_HEX} AS _h FROM ips WHERE contains(ip, ':'))
                    WHERE regexp_full_match(_h, '{V6}'))
              WHERE NOT contains(_h, '::') OR _g <= 7))"""


def numbers_sql(ips: str) -> str:
    """(ip, ``v``: 4 or 6, ``n``: UHUGEINT) of each address of ``ips`` (a relation of one
    column ``ip``) that is an address: an IPv4-mapped one read as the IPv4 one."""
    return f"""{_numbers(ips, "ip")}
    SELECT k AS ip, 4 AS v, n::UHUGEINT AS n FROM v4
    UNION ALL SELECT k, 4, n & 4294967295 FROM v6 WHERE n >> 32 = 65535
    UNION ALL SELECT k, 6, n FROM v6 WHERE n >> 32 <> 65535"""


def places_sql(ips: str) -> str:
    """(``k``: hash(ip), ``place``: an id in ``geo_places``, country and state) of each
    address of ``ips`` (a relation of one column ``ip``, each once) that is an address; join
    it to the rows that need it by ``hash(ip) = k`` (a 64-bit hash: that two of a million
    addresses collide has a chance of 3 in 100 million)."""
    # An ASOF join sorts all it joins, so each sees only (hash, number); and however few its
    # addresses, all its ranges: they are first narrowed to the buckets (``prepare``) of the
    # addresses at hand (a live round's few hundred addresses: a few hundred ranges).
    return f"""{_numbers(ips, "hash(ip)")},
    c AS MATERIALIZED (
        SELECT x.k, x.n, b.bucket
        FROM (SELECT k, n, (n >> 96)::UINTEGER AS top FROM v6 WHERE n >> 32 <> 65535) AS x
        ASOF JOIN geo_buckets AS b ON x.top >= b.bucket),
    d AS MATERIALIZED (
        SELECT k, n FROM v4
        UNION ALL SELECT k, (n & 4294967295)::UINTEGER FROM v6 WHERE n >> 32 = 65535)
    SELECT d.k, r.place
    FROM d ASOF JOIN (SELECT start, place FROM geo_v4
                      WHERE bucket IN (SELECT DISTINCT (n >> 16)::USMALLINT FROM d)) AS r
        ON d.n >= r.start
    UNION ALL
    SELECT c.k, r.place
    FROM c ASOF JOIN (SELECT start, place FROM geo_v6
                      WHERE bucket IN (SELECT DISTINCT bucket FROM c)) AS r ON c.n >= r.start"""


LAYOUT = 2  # of the tables below: another one replaces them
TABLES = """
CREATE TABLE geo_places (place USMALLINT PRIMARY KEY, country VARCHAR, state VARCHAR);
-- bucket: the top 16 bits of start (IPv4), 32 (IPv6); a bucket starts with a row of its own
-- (the range in force there), so an address finds its range among its bucket's rows: every
-- IPv4 bucket has rows; an IPv6 address looks in the last bucket with rows (geo_buckets)
-- at or before its own
CREATE TABLE geo_v4 (start UINTEGER, place USMALLINT, bucket USMALLINT);
CREATE TABLE geo_v6 (start UHUGEINT, place USMALLINT, bucket UINTEGER);
CREATE TABLE geo_buckets (bucket UINTEGER);
"""


def prepare(con: duckdb.DuckDBPyConnection, key: str,
            ranges: Callable[[], AbstractContextManager[Path]]) -> None:
    """The ranges named ``key`` in the database, unless they are there already (``ranges``
    gives georanges.py's Parquet): ``geo_v4`` (the IPv4 numbers) and ``geo_v6`` (the rest
    of the 128-bit line), each range's place an id in ``geo_places``. Kept in the database
    (a few MB) so that an ingest — the live one's every few seconds — loads nothing."""
    # The planner guesses a chunk's addresses from its statistics, which can say "a row" (a
    # join with the day's salt), and below 64 rows it turns an ASOF join into a nested loop
    # over the ranges: a million addresses times a million ranges.
    con.execute("SET asof_loop_join_threshold = 0")
    name = f"{LAYOUT}:{key}"
    con.execute("CREATE TABLE IF NOT EXISTS geo_source (ranges VARCHAR)")
    if con.execute("SELECT 1 FROM geo_source WHERE ranges = ?", [name]).fetchone():
        return
    with ranges() as path:
        source = f"read_parquet('{str(path).replace(chr(39), chr(39) * 2)}')"
        con.execute("BEGIN")
        try:
            con.execute(f"""
                DROP TABLE IF EXISTS geo_places; DROP TABLE IF EXISTS geo_v4;
                DROP TABLE IF EXISTS geo_v6; DROP TABLE IF EXISTS geo_buckets;
                DELETE FROM geo_source;
                {TABLES}
                INSERT INTO geo_places SELECT DISTINCT place, country, state FROM {source};
                CREATE TEMP TABLE _v4 AS
                SELECT lo::UINTEGER AS start, place FROM {source} WHERE v = 4;
                INSERT INTO geo_v4
                SELECT start, place, (start >> 16)::USMALLINT FROM _v4
                UNION ALL
                SELECT k.start, r.place, k.bucket
                FROM (SELECT range::USMALLINT AS bucket, (range << 16)::UINTEGER AS start
                      FROM range(65536) WHERE start NOT IN (SELECT start FROM _v4)) AS k
                ASOF JOIN _v4 AS r ON k.start >= r.start
                ORDER BY start;
                DROP TABLE _v4;
                CREATE TEMP TABLE _v6 AS
                SELECT (hi::UHUGEINT << 64) | lo AS start, place FROM {source} WHERE v = 6;
                INSERT INTO geo_buckets SELECT DISTINCT (start >> 96)::UINTEGER FROM _v6;
                INSERT INTO geo_v6
                SELECT start, place, (start >> 96)::UINTEGER FROM _v6
                UNION ALL  -- (where a bucket has none: the range in force at its start)
                SELECT k.start, r.place, k.bucket
                FROM (SELECT bucket, bucket::UHUGEINT << 96 AS start FROM geo_buckets
                      WHERE start NOT IN (SELECT start FROM _v6)) AS k
                ASOF JOIN _v6 AS r ON k.start >= r.start
                ORDER BY start;
                DROP TABLE _v6""")
            con.execute("INSERT INTO geo_source VALUES (?)", [name])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def places(con: duckdb.DuckDBPyConnection, ips: list[str]) -> list[tuple[str | None, str | None]]:
    """The (country, state) of each address (``prepare`` first): for tests and checks."""
    con.execute("CREATE OR REPLACE TEMP TABLE _asked AS SELECT unnest($1::VARCHAR[]) AS ip",
                [ips])
    found = {ip: (c, s) for ip, c, s in con.execute(f"""
        SELECT a.ip, g.country, g.state
        FROM (SELECT DISTINCT ip FROM _asked) AS a
        LEFT JOIN ({places_sql("SELECT DISTINCT ip FROM _asked")}) AS p ON p.k = hash(a.ip)
        LEFT JOIN geo_places AS g USING (place)""").fetchall()}
    con.execute("DROP TABLE _asked")
    return [found[ip] for ip in ips]
