"""The hits a summary counts, each with its visit and whether it is a page view (a temp table).

``prepare`` writes ``r`` on the connection (read-only databases accept temp tables): one row per
hit of the range, beacon rows apart, with

    counted   whether the metrics count it (not a bot, unless bots are included)
    is_bot    by the ingest's user-agent rules or by behaviour (below), per visitor-day
    is_start  the first hit of a visit: none before it that day, or a gap longer than
              [analytics] session_minutes (the visitor key is per day, so visits also end at
              local midnight); is_end, the last
    (table ``starts``: day, visitor, ts of every visit's first hit)
    is_pv     a page view: an HTML page answered < 400, or the first hit of a new view (the
              visit's first hit with a view, or one whose view differs from the visit's previous
              viewed hit; re-fetching the same view's JSON is polling, not a new view)

Behind a CDN the origin only sees misses: when the range holds edge rows, only edge rows are used.

Behaviour that makes a visitor-day a bot whatever its user agent says: it asked for
``/robots.txt``, or in BOT_MINUTES different minutes it requested more than
BOT_PATHS_PER_MINUTE distinct paths (repeats of a path in the same minute are polling and do
not count; a person loading a page fetches a few dozen files once, not minute after minute).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

BOT_PATHS_PER_MINUTE = 40
BOT_MINUTES = 3
BEACON = "BEACON"
# The most visible time one beacon report may claim (a screen left on all night); the server
# refuses more (serve/app.py BEACON_MAX_MS), and a report over it is never counted.
MAX_VISIBLE_MS = 12 * 3600 * 1000


@dataclass(frozen=True)
class Scope:
    start: datetime | None
    end: datetime | None
    edge_only: bool
    include_bots: bool


def range_sql(start: datetime | None, end: datetime | None, column: str = "ts"
              ) -> tuple[str, list[object]]:
    """``[start, end)`` on ``column`` as a SQL condition and its parameters."""
    conds, params = ["TRUE"], []
    if start is not None:
        conds.append(f"{column} >= ?")
        params.append(start)
    if end is not None:
        conds.append(f"{column} < ?")
        params.append(end)
    return " AND ".join(conds), params


def prepare(con: duckdb.DuckDBPyConnection, start: datetime | None, end: datetime | None, *,
            session_minutes: float, include_bots: bool) -> Scope:
    where, params = range_sql(start, end)
    hwhere, _ = range_sql(start, end, "h.ts")
    edge_only = bool(con.execute(
        f"SELECT coalesce(bool_or(edge), FALSE) FROM hits WHERE {where} AND method <> '{BEACON}'",
        params).fetchone()[0])
    # Who is a bot is judged per visitor-day on the whole local day (every source), so slicing
    # the range does not change it. Only visitor-days with enough hits can be busy: the
    # per-minute count runs on those alone (most visitors poll a few dozen times).
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE bots AS
        WITH d AS (SELECT day, visitor, path, ts, bot FROM hits
                   WHERE day IN (SELECT DISTINCT day FROM hits WHERE {where})
                     AND method <> '{BEACON}'),
             agents AS (SELECT DISTINCT day, visitor FROM d WHERE bot),
             robots AS (SELECT DISTINCT day, visitor FROM d WHERE lower(path) = '/robots.txt'),
             many AS (SELECT day, visitor FROM d GROUP BY day, visitor
                      HAVING count(*) > {BOT_PATHS_PER_MINUTE * BOT_MINUTES}),
             busy AS (SELECT day, visitor FROM (
                        SELECT day, visitor, date_trunc('minute', ts) AS m
                        FROM d SEMI JOIN many USING (day, visitor)
                        GROUP BY day, visitor, m
                        HAVING count(DISTINCT path) > {BOT_PATHS_PER_MINUTE})
                      GROUP BY day, visitor HAVING count(*) >= {BOT_MINUTES})
        SELECT * FROM agents UNION SELECT * FROM robots UNION SELECT * FROM busy
    """, params)
    session_ms = round(session_minutes * 60_000)
    # One sort (visitor-day, time order) gives each hit its neighbours: a gap before it longer
    # than the session starts a visit, one after it ends one; and the previous shown view and
    # its time. Only narrow columns go through the sort; the rest is read from hits later.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE r AS
        WITH b AS (
            SELECT h.seq AS rid, h.ts, h.day, h.visitor, h.bytes, h.referer_host,
                   CASE WHEN h.status < 400 THEN h.view END AS shown,
                   coalesce(h.page, FALSE) AND h.status < 400 AS page_ok,
                   CASE WHEN coalesce(h.page, FALSE) AND h.status < 400 THEN h.path END AS page_path,
                   k.visitor IS NOT NULL AS is_bot
            FROM hits h LEFT JOIN bots k ON h.day = k.day AND h.visitor = k.visitor
            WHERE {hwhere} AND h.method <> '{BEACON}' AND ({not edge_only} OR h.edge)
        ), g AS (
            SELECT *, lag(ts) OVER w AS prev_ts, lead(ts) OVER w AS next_ts,
                   lag(shown IGNORE NULLS) OVER w AS prev_shown,
                   lag(CASE WHEN shown IS NOT NULL THEN ts END IGNORE NULLS) OVER w AS prev_shown_ts
            FROM b WINDOW w AS (PARTITION BY day, visitor ORDER BY ts, rid)
        ), c AS (
            SELECT *, prev_ts IS NULL OR epoch_ms(ts) - epoch_ms(prev_ts) > {session_ms} AS is_start,
                   next_ts IS NULL OR epoch_ms(next_ts) - epoch_ms(ts) > {session_ms} AS is_end
            FROM g
        )
        SELECT rid, ts, day, visitor, bytes, referer_host, shown AS view, page_ok AS page,
               page_path, is_bot, ({include_bots} OR NOT is_bot) AS counted, is_start, is_end,
               prev_shown_ts,
               CASE WHEN page_ok THEN TRUE
                    WHEN shown IS NULL THEN FALSE
                    WHEN prev_shown IS NULL OR prev_shown <> shown OR is_start THEN TRUE
                    -- the previous hit is the previous viewed one: same visit, same view
                    WHEN prev_ts = prev_shown_ts THEN FALSE
               END AS is_pv
        FROM c
    """, params)
    con.execute("CREATE OR REPLACE TEMP TABLE starts AS SELECT day, visitor, ts FROM r WHERE is_start")
    # Left undecided: the same view again with other hits in between (a page, an asset, a
    # failed request). It is a new view when a visit started in between.
    con.execute("""
        UPDATE r SET is_pv = EXISTS (
            SELECT 1 FROM starts s WHERE s.day = r.day AND s.visitor = r.visitor
              AND s.ts > r.prev_shown_ts AND s.ts <= r.ts)
        WHERE is_pv IS NULL""")
    return Scope(start, end, edge_only, include_bots)
