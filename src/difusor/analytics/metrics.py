"""The summary: visitors, visits, page views, time on site, geolocation, series (docs/analitica.md).

Every number is computed here from the ``hits`` table, over the temp table ``sessions.prepare``
builds (which hits count, their visits, which are page views). Definitions, as computed:

- hits / bytes: counted hits of the range (see sessions: edge rows only when there are any);
  bot_hits: hits of bots, always apart.
- unique_visitors: distinct (local day, visitor) pairs — a range of several days counts
  visitor-days, never claiming a person is the same across days; ``days`` lists each day.
- visits, avg/median_visit_seconds: per visit, last hit − first hit (polling is a heartbeat).
- total_visitors: every arrival of a visitor, i.e. the visits (one who comes back after
  ``session_minutes`` of silence arrives again): the convocatoria's "total de visitantes",
  beside the unique ones (visitor-days). Its own key so the memoria states which it is.
- pageviews: HTML pages plus the app's inferred views (sessions.py).
- geo, browsers, devices: by visitors; referrers: by visits (first external referrer).
- series: at a step fit to the range's length (GRANULARITY); series_10min and series_hour: the
  same points at 10 minutes and at one hour whatever the range (the memoria's charts).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

from difusor.analytics import sessions
from difusor.config import Config
from difusor.paths import StateLayout

TOP = 20
# How many rows each ranked list keeps (all of them with ``full``): (path in the summary, n).
LIMITS = ((("top_pages",), TOP), (("top_views",), TOP), (("geo", "country"), 60),
          (("geo", "state"), 40), (("browsers",), TOP), (("devices",), TOP),
          (("referrers",), TOP))
MAX_SERIES_POINTS = 20_000
GRANULARITY = (  # (longest range, name, bucket) — the finest that keeps charts readable
    (timedelta(hours=6), "minuto", timedelta(minutes=1)),
    (timedelta(days=3), "10 minutos", timedelta(minutes=10)),
    (timedelta.max, "hora", timedelta(hours=1)),
)


def database_path(cfg: Config) -> Any:
    return StateLayout(cfg.state_dir).analytics / "visitas.duckdb"


def summary(cfg: Config, start: datetime | None, end: datetime | None, *,
            include_bots: bool = False, full: bool = False) -> dict[str, Any]:
    """The whole summary of ``[start, end)`` (open ends: all the data) as a JSON-ready dict;
    ``full``: every row of the ranked lists (the memoria's annexes), not only the top ones."""
    if not database_path(cfg).exists():
        return empty(start, end, include_bots)
    from difusor.analytics.db import connect  # the ingest's: waits a bounded time for the lock

    con = connect(cfg, read_only=True)
    try:
        return compute(con, ZoneInfo(cfg.site.timezone), start, end,
                       session_minutes=cfg.analytics.session_minutes, include_bots=include_bots,
                       full=full)
    finally:
        con.close()


def span(cfg: Config) -> tuple[datetime | None, datetime | None]:
    """The first and last request times recorded (None, None without any)."""
    if not database_path(cfg).exists():
        return None, None
    from difusor.analytics.db import connect

    con = connect(cfg, read_only=True)
    try:
        first, last = con.execute("SELECT min(ts), max(ts) FROM hits").fetchone()
    finally:
        con.close()
    return first, last


def answered_during(cfg: Config, windows: list[tuple[datetime, datetime]]) -> dict[str, int]:
    """Requests answered (status < 400) and refused (403, 429) within ``windows``: what the
    site kept serving while an attack was being contained. Bots included (they are not the
    attack); beacon reports left out, as everywhere."""
    if not windows or not database_path(cfg).exists():
        return {"served": 0, "refused": 0}
    from difusor.analytics.db import connect

    where = " OR ".join("(ts >= ? AND ts < ?)" for _ in windows)
    con = connect(cfg, read_only=True)
    try:
        served, refused = con.execute(
            f"SELECT count(*) FILTER (status < 400), count(*) FILTER (status IN (403, 429)) "
            f"FROM hits WHERE method <> '{sessions.BEACON}' AND ({where})",
            [x for w in windows for x in w]).fetchone()
    finally:
        con.close()
    return {"served": served, "refused": refused}


def empty(start: datetime | None, end: datetime | None, include_bots: bool) -> dict[str, Any]:
    return {
        "from": start.isoformat() if start else None, "to": end.isoformat() if end else None,
        "include_bots": include_bots, "basis": "origen",
        "hits": 0, "bot_hits": 0, "bytes": 0, "visits": 0, "unique_visitors": 0, "pageviews": 0,
        "views": 0, "avg_visit_seconds": 0.0, "median_visit_seconds": 0.0, "days": [],
        "top_pages": [], "top_views": [],
        "geo": {"visitors": 0, "country": [], "state": []},
        "browsers": [], "devices": [], "referrers": [],
        "series": {"granularity": GRANULARITY[0][1], "points": []},
        "series_10min": [], "series_hour": [], "total_visitors": 0,
        "beacon": {"views": 0, "reports": 0, "avg_visible_seconds": 0.0, "pages": []}, "sources": [],
    }


def compute(con: duckdb.DuckDBPyConnection, zone: ZoneInfo, start: datetime | None,
            end: datetime | None, *, session_minutes: float = 30.0,
            include_bots: bool = False, full: bool = False) -> dict[str, Any]:
    """The summary on an open connection (tests hand it their own rows)."""
    limits = dict(LIMITS)

    def top(*path: str) -> str:  # each list is ordered totally (count, then key): LIMIT = a cut
        return "" if full else f"LIMIT {limits[path]}"

    con.execute(f"SET TimeZone = '{zone.key}'")
    scope = sessions.prepare(con, start, end, session_minutes=session_minutes,
                             include_bots=include_bots)
    data = empty(start, end, include_bots)
    data["basis"] = "borde" if scope.edge_only else "origen"
    one = con.execute("""
        SELECT count(*) FILTER (counted), count(*) FILTER (is_bot),
               coalesce(sum(bytes) FILTER (counted), 0), count(*) FILTER (counted AND is_pv),
               count(*) FILTER (counted AND is_pv AND view IS NOT NULL AND NOT page),
               min(ts), max(ts)
        FROM r""").fetchone()
    data.update(hits=one[0], bot_hits=one[1], bytes=int(one[2]), pageviews=one[3], views=one[4])
    data["from"] = (start or one[5] or end or datetime.now(UTC)).astimezone(zone).isoformat()
    data["to"] = (end or one[6] or start or datetime.now(UTC)).astimezone(zone).isoformat()
    # Visitor-day attributes straight from hits (they did not need to go through the sorts).
    where, params = sessions.range_sql(start, end)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE vd AS
        SELECT day, visitor, any_value(country) AS country, any_value(state) AS state,
               any_value(browser) AS browser, any_value(device) AS device
        FROM hits WHERE {where} AND method <> '{sessions.BEACON}' AND ({not scope.edge_only} OR edge)
          {"" if include_bots else "AND (day, visitor) NOT IN (SELECT (day, visitor) FROM bots)"}
        GROUP BY day, visitor""", params)
    # A visit's duration pairs its first hit with its last (the next boundary row); its
    # referrer is the first external one among its hits (matched to the visit by ASOF).
    con.execute("""CREATE OR REPLACE TEMP TABLE vs AS
        WITH se AS (
            SELECT day, visitor, ts, is_start, is_end,
                   lead(ts) OVER (PARTITION BY day, visitor ORDER BY ts, rid) AS next_ts
            FROM r WHERE counted AND (is_start OR is_end)
        ), ref AS (
            SELECT h.day, h.visitor, s.ts AS start, first(h.referer_host ORDER BY h.ts, h.rid) AS ref
            FROM (SELECT * FROM r WHERE counted AND referer_host IS NOT NULL) h
            ASOF JOIN starts s ON h.day = s.day AND h.visitor = s.visitor AND h.ts >= s.ts
            GROUP BY h.day, h.visitor, s.ts
        )
        SELECT se.day, se.visitor, se.ts AS start,
               CASE WHEN is_end THEN 0 ELSE (epoch_ms(next_ts) - epoch_ms(se.ts)) / 1000.0
               END AS seconds, ref.ref
        FROM se LEFT JOIN ref ON se.day = ref.day AND se.visitor = ref.visitor
                               AND se.ts = ref.start
        WHERE is_start""")
    visits = con.execute("SELECT count(*), coalesce(avg(seconds), 0), coalesce(median(seconds), 0) "
                         "FROM vs").fetchone()
    data.update(visits=visits[0], total_visitors=visits[0], avg_visit_seconds=round(visits[1], 3),
                median_visit_seconds=round(visits[2], 3))
    data["unique_visitors"] = con.execute("SELECT count(*) FROM vd").fetchone()[0]
    data["days"] = _days(con)
    data["top_pages"] = _rows(con, "path", "pageviews", f"""
        SELECT page_path, count(*) AS n, count(DISTINCT (day, visitor)) FROM r
        WHERE counted AND page GROUP BY page_path ORDER BY n DESC, page_path {top("top_pages")}""",
                              "visitors")
    data["top_views"] = _rows(con, "view", "views", f"""
        SELECT view, count(*) AS n, count(DISTINCT (day, visitor)) FROM r
        WHERE counted AND is_pv AND view IS NOT NULL AND NOT page
        GROUP BY view ORDER BY n DESC, view {top("top_views")}""", "visitors")
    data["geo"] = {
        "visitors": data["unique_visitors"],
        "country": _rows(con, "country", "visitors",
                         _by("country", "vd", "TRUE", top("geo", "country"))),
        "state": _rows(con, "state", "visitors",
                       _by("state", "vd", "country = 'MX'", top("geo", "state"))),
    }
    data["browsers"] = _rows(con, "browser", "visitors",
                             _by("browser", "vd", "TRUE", top("browsers")))
    data["devices"] = _rows(con, "device", "visitors", _by("device", "vd", "TRUE", top("devices")))
    data["referrers"] = _rows(con, "host", "visits",
                              _by("ref", "vs", "ref IS NOT NULL", top("referrers")))
    data["series"] = _series(con, zone, start, end, one[5], one[6])
    for key, step in (("series_10min", timedelta(minutes=10)), ("series_hour", timedelta(hours=1))):
        data[key] = _series(con, zone, start, end, one[5], one[6], step)["points"]
    data["beacon"] = _beacon(con, scope)
    data["sources"] = _sources(con, scope)
    return data


def top_only(full: dict[str, Any]) -> dict[str, Any]:
    """The summary as it is without ``full`` (what ``analytics summary --json`` prints), cut
    from a ``full=True`` one: the memoria needs both and computes the summary once."""
    data = {**full, "geo": dict(full["geo"])}
    for path, n in LIMITS:
        holder = data
        for key in path[:-1]:
            holder = holder[key]
        holder[path[-1]] = holder[path[-1]][:n]
    return data


def _by(column: str, table: str, where: str, limit: str) -> str:
    return (f"SELECT {column} AS k, count(*) AS n FROM {table} WHERE {where} "
            f"GROUP BY k ORDER BY n DESC, k NULLS LAST {limit}")


def _rows(con: duckdb.DuckDBPyConnection, key: str, count: str, sql: str,
          extra: str | None = None) -> list[dict[str, Any]]:
    names = [key, count] + ([extra] if extra else [])
    return [dict(zip(names, row, strict=True)) for row in con.execute(sql).fetchall()]


def _days(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    rows = con.execute("""
        SELECT d.day, d.visitors, v.visits, h.hits, h.pageviews FROM
          (SELECT day, count(*) AS visitors FROM vd GROUP BY day) d
          JOIN (SELECT day, count(*) AS visits FROM vs GROUP BY day) v USING (day)
          JOIN (SELECT day, count(*) AS hits, count(*) FILTER (is_pv) AS pageviews
                FROM r WHERE counted GROUP BY day) h USING (day)
        ORDER BY d.day""").fetchall()
    return [{"day": day.isoformat(), "visitors": vis, "visits": n, "hits": hits, "pageviews": pv}
            for day, vis, n, hits, pv in rows]


def granularity(span: timedelta) -> tuple[str, timedelta]:
    for longest, name, step in GRANULARITY:
        if span <= longest:
            return name, step
    raise AssertionError("unreachable")


def _series(con: duckdb.DuckDBPyConnection, zone: ZoneInfo, start: datetime | None,
            end: datetime | None, first: datetime | None, last: datetime | None,
            fixed: timedelta | None = None) -> dict[str, Any]:
    lo, hi = start or first, end or last
    if lo is None or hi is None:
        return {"granularity": GRANULARITY[0][1], "points": []}
    name, step = granularity(hi - lo)
    if fixed is not None:
        name, step = f"{int(fixed.total_seconds())} s", fixed
    width = f"INTERVAL '{int(step.total_seconds())} seconds'"
    bucket = f"time_bucket({width}, ts, '{zone.key}')"
    # A bucket never spans local midnight (buckets are aligned in local time), so its visitors
    # are distinct visitor keys of one day.
    rows = con.execute(f"""
        SELECT {bucket} AS t, count(*), count(DISTINCT visitor), count(*) FILTER (is_pv)
        FROM r WHERE counted GROUP BY t ORDER BY t""").fetchall()
    got = {t.astimezone(UTC): (hits, vis, pv) for t, hits, vis, pv in rows}
    # Empty buckets are points too (a chart must show the gap); bounded for absurd ranges.
    bounds = con.execute(f"SELECT time_bucket({width}, ?::TIMESTAMPTZ, '{zone.key}'), "
                         f"time_bucket({width}, ?::TIMESTAMPTZ - INTERVAL '1 millisecond', "
                         f"'{zone.key}')", [lo, hi]).fetchone()
    t, stop = bounds[0].astimezone(UTC), bounds[1].astimezone(UTC)
    keys = sorted(got)
    if (stop - t) / step < MAX_SERIES_POINTS:
        keys = sorted(set(keys) | {t + step * i for i in range(int((stop - t) / step) + 1)})
    points = []
    for key in keys:
        hits, vis, pv = got.get(key, (0, 0, 0))
        points.append({"t": key.astimezone(zone).isoformat(), "hits": hits, "visitors": vis,
                       "pageviews": pv})
    return {"granularity": name, "seconds": int(step.total_seconds()), "points": points}


def _beacon(con: duckdb.DuckDBPyConnection, scope: sessions.Scope) -> dict[str, Any]:
    """The portal page's beacon. The script reports each time the page is hidden, so one view
    may send several reports; without cookies they can only be joined by visitor-day: a view
    is a (day, visitor, page) and its visible time the sum of its reports (at most a day).

    Reports are held to the requests' rules: answered < 400 (not refused by the rate limit or
    the shield), from the same logs as the rest (edge only when there are edge rows), no robot
    (by agent or behaviour), a time within (0, MAX_VISIBLE_MS], and from a visitor who fetched
    something else that day (at least the script itself): a POST with a made-up user agent is
    a new visitor key with nothing else, not a view."""
    where, params = sessions.range_sql(scope.start, scope.end)
    bots = "" if scope.include_bots else """AND NOT coalesce(bot, FALSE)
        AND (day, visitor) NOT IN (SELECT (day, visitor) FROM bots)"""
    rows = con.execute(f"""
        WITH b AS (
            SELECT path, day, visitor, visible_ms FROM hits
            WHERE {where} AND method = '{sessions.BEACON}' AND status < 400
              AND visible_ms BETWEEN 1 AND {sessions.MAX_VISIBLE_MS}
              AND ({not scope.edge_only} OR edge) {bots}
        ), seen AS (
            SELECT DISTINCT day, visitor FROM hits
            WHERE method <> '{sessions.BEACON}' AND day IN (SELECT DISTINCT day FROM b)
        )
        SELECT path, count(*) AS views, sum(reports), coalesce(avg(ms), 0) / 1000.0 FROM (
            SELECT path, day, visitor, count(*) AS reports,
                   least(sum(visible_ms), 86400000) AS ms
            FROM b SEMI JOIN seen USING (day, visitor)
            GROUP BY path, day, visitor)
        GROUP BY path ORDER BY views DESC, path""", params).fetchall()
    views = sum(n for _p, n, _r, _s in rows)
    seconds = sum(n * s for _p, n, _r, s in rows) / views if views else 0.0
    return {"views": views, "reports": sum(int(r) for _p, _n, r, _s in rows),
            "avg_visible_seconds": round(seconds, 3),
            "pages": [{"page": p, "views": n, "avg_visible_seconds": round(s, 3)}
                      for p, n, _r, s in rows[:TOP]]}


def _sources(con: duckdb.DuckDBPyConnection, scope: sessions.Scope) -> list[dict[str, Any]]:
    where, params = sessions.range_sql(scope.start, scope.end)
    rows = con.execute(f"""
        SELECT source, coalesce(bool_or(edge), FALSE), count(*), coalesce(sum(bytes), 0)
        FROM hits WHERE {where} AND method <> '{sessions.BEACON}'
        GROUP BY source ORDER BY source""", params).fetchall()
    return [{"source": s, "edge": e, "hits": n, "bytes": int(b),
             "used": bool(e) or not scope.edge_only} for s, e, n, b in rows]
