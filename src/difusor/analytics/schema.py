"""The analytics database (DuckDB): one row per request, already anonymised and classified.

Stored normalised (``STORE_DDL``): a narrow ``requests`` table holds only what varies per
request; what is a function of the visitor-day (place, agent, address) lives once in
``visitors`` and what is a function of the path (page, view) once in ``paths``. Writing ~12
columns instead of 21 per row is most of what makes the ingest fast. ``hits`` is a VIEW joining
them back with exactly the columns below, which is what metrics.py and sessions.py read.

Written only by ``ingest``; read by ``metrics``. One process writes at a time (DuckDB's file
lock): ``difusor run`` opens the file for each ingest round and closes it, so a ``summary`` from
another process waits at most a round.

hits — one request from any source (origin or edge):
    ts            TIMESTAMPTZ  when it was answered (UTC)
    day           DATE         local date in [site] timezone: visitors and visits are per day
    visitor       UBIGINT      keyed hash of (that day's salt, IP, user agent)
    ip            VARCHAR      only when [analytics] keep_ip_days > 0, else NULL
    country       VARCHAR      ISO 3166-1 alpha-2, NULL when unknown
    state         VARCHAR      Mexican state (canonical Spanish name), NULL outside Mexico
    method, path, query  VARCHAR   query without the leading "?" ('' when none)
    status        USMALLINT
    bytes         UBIGINT      body bytes sent
    referer_host  VARCHAR      host of an external referrer, NULL for none or the site itself
    browser, os   VARCHAR      ua-parser families
    device        VARCHAR      'móvil' | 'escritorio' | 'tableta' | 'bot' | 'otro'
    bot           BOOLEAN      by user-agent rules or behaviour
    page          BOOLEAN      an HTML page ([analytics] pages patterns)
    view          VARCHAR      the single-page app's view this JSON belongs to, else NULL
    visible_ms    UINTEGER     beacon (POST /_difusor/b): visible time reported, else NULL
    source        VARCHAR      the log's name
    edge          BOOLEAN      the source is a CDN/edge log (varnishncsa, CloudFront, …)
    seq           UBIGINT      the request's place in the logs as ingested (increasing; gaps
                               where lines were not stored): sessions.py orders ties by it

requests — hits' per-request columns (ts, day, visitor, method, path, query, status, bytes,
    referer_host, visible_ms, source, edge, seq).
visitors — per (day, visitor): ip, last_ts (the visitor-day's latest request, for keep_ip_days),
    country, state, browser, os, device, bot. One row per (day, visitor), kept so by the ingest
    (it inserts only visitor-days not yet stored); not a declared key: its index cost more than
    the rest of a visitor's row, and a million new visitors per million lines is a real night.
paths — per path: page, view (rows of method 'BEACON' are never pages nor views).

files — how far each log has been read (idempotent re-ingest, rotation):
    fingerprint   VARCHAR      sha256 of the file's first line(s): the file's identity
    source, path  VARCHAR      where it was last seen
    offset        UBIGINT      bytes consumed (only whole lines)
    lines         UBIGINT      lines read (empty lines are not counted)
    updated_at    TIMESTAMPTZ

salts — the daily key; a day's row is deleted salt_grace_hours after its midnight.

geo_source, geo_places, geo_v4, geo_v6, geo_buckets — the geolocation mmdb as ranges, kept by
addresses.py (which alone reads them) and replaced when the mmdb changes.
"""

from __future__ import annotations

_BOOK = """
CREATE TABLE IF NOT EXISTS files (
    fingerprint VARCHAR PRIMARY KEY,
    source VARCHAR,
    path VARCHAR,
    "offset" UBIGINT NOT NULL,
    lines UBIGINT NOT NULL,
    updated_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS salts (
    day DATE PRIMARY KEY,
    salt BLOB NOT NULL
);
"""

STORE_DDL = _BOOK + """
CREATE TABLE IF NOT EXISTS requests (
    ts TIMESTAMPTZ NOT NULL,
    day DATE NOT NULL,
    visitor UBIGINT NOT NULL,
    method VARCHAR,
    path VARCHAR,
    query VARCHAR,
    status USMALLINT,
    bytes UBIGINT,
    referer_host VARCHAR,
    visible_ms UINTEGER,
    source VARCHAR,
    edge BOOLEAN,
    seq UBIGINT
);
CREATE TABLE IF NOT EXISTS visitors (
    day DATE NOT NULL,
    visitor UBIGINT NOT NULL,
    ip VARCHAR,
    last_ts TIMESTAMPTZ,
    country VARCHAR,
    state VARCHAR,
    browser VARCHAR,
    os VARCHAR,
    device VARCHAR,
    bot BOOLEAN
);
CREATE TABLE IF NOT EXISTS paths (
    path VARCHAR PRIMARY KEY,
    page BOOLEAN,
    view VARCHAR
);
"""

HITS_VIEW = """
CREATE OR REPLACE VIEW hits AS
SELECT r.ts, r.day, r.visitor, v.ip, v.country, v.state, r.method, r.path, r.query, r.status,
       r.bytes, r.referer_host, v.browser, v.os, v.device, v.bot,
       CASE WHEN r.method = 'BEACON' THEN FALSE ELSE coalesce(p.page, FALSE) END AS page,
       CASE WHEN r.method = 'BEACON' THEN NULL ELSE p.view END AS view,
       r.visible_ms, r.source, r.edge, r.seq
FROM requests AS r
LEFT JOIN visitors AS v ON v.day = r.day AND v.visitor = r.visitor
LEFT JOIN paths AS p ON p.path = r.path
"""

# A database made when (day, visitor) was a declared key: its rows into a table without one.
VISITORS_UNKEYED = STORE_DDL[STORE_DDL.index("CREATE TABLE IF NOT EXISTS visitors"):
                             STORE_DDL.index("CREATE TABLE IF NOT EXISTS paths")].replace(
    "IF NOT EXISTS visitors", "visitors_unkeyed") + """
INSERT INTO visitors_unkeyed SELECT * FROM visitors;
DROP TABLE visitors;
ALTER TABLE visitors_unkeyed RENAME TO visitors;
"""
