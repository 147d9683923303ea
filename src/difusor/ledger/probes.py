"""Probes: the monitor's (and remote agents') checks of each target, the base of uptime."""

from __future__ import annotations

from typing import Any

from difusor.ledger.db import LedgerDB, decoded, dumps, utcnow


class ProbesMixin(LedgerDB):
    def probe_recorded(
        self, *, target: str, vantage: str, ok: bool, interval_s: float, at: str | None = None,
        failure: str | None = None, status: int | None = None, latency_ms: float | None = None,
        corte: str | None = None, message: str = "", detail: dict[str, Any] | None = None,
    ) -> int:
        """One probe's result. ``failure`` names what failed (outage, degraded, stale,
        integrity, header, tls, authority_delay); ``interval_s`` is how long the result stands for
        (uptime counts time, not checks: a gap longer than that is *unknown*)."""
        with self._write() as db:
            cur = db.execute(
                "INSERT INTO probes(at, target, vantage, ok, failure, status, latency_ms, corte,"
                " interval_s, message, detail) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (at or utcnow(), target, vantage, int(ok), failure, status, latency_ms, corte,
                 interval_s, message, dumps(detail)),
            )
            return int(cur.lastrowid or 0)

    def probes(self, target: str | None = None, since: str | None = None,
               until: str | None = None, vantage: str | None = None) -> list[dict[str, Any]]:
        """Probe rows in time order (ISO-8601 UTC bounds, ``until`` exclusive)."""
        sql, args = self._probe_where("SELECT * FROM probes WHERE 1=1", target, since, until,
                                      vantage)
        rows = self._db.execute(sql + " ORDER BY at, id", args).fetchall()
        return [decoded(r) for r in rows]

    def probe_states(self, target: str | None = None, since: str | None = None,
                     until: str | None = None, vantage: str | None = None) -> list[Any]:
        """What availability reads of each probe, in time order, as rows (``row["ok"]``…) with
        nothing decoded: at, target, vantage, ok, failure, interval_s. A month of probes is half
        a million rows; decoding their details would cost seconds nobody uses."""
        sql, args = self._probe_where(
            "SELECT at, target, vantage, ok, failure, interval_s FROM probes WHERE 1=1",
            target, since, until, vantage)
        return self._db.execute(sql + " ORDER BY at, id", args).fetchall()

    def probes_per_hour(self, since: str, until: str) -> list[tuple[Any, ...]]:
        """Per UTC hour (``YYYY-MM-DDTHH``), target and vantage: probes, correct ones, mean and
        max latency (ms), and the failures as ``kind: n; …``; in that order."""
        where = "at >= ? AND at < ?"
        fails: dict[tuple[str, str, str], list[str]] = {}
        for hour, target, vantage, failure, n in self._db.execute(f"""
                SELECT substr(at, 1, 13) AS h, target, vantage, failure, count(*) FROM probes
                WHERE {where} AND coalesce(failure, '') <> ''
                GROUP BY h, target, vantage, failure ORDER BY h, target, vantage, failure""",
                (since, until)):
            fails.setdefault((hour, target, vantage), []).append(f"{failure}: {n}")
        return [(h, t, v, n, ok, avg, top, "; ".join(fails.get((h, t, v), [])))
                for h, t, v, n, ok, avg, top in self._db.execute(f"""
                SELECT substr(at, 1, 13) AS h, target, vantage, count(*), sum(ok),
                       avg(latency_ms), max(latency_ms) FROM probes WHERE {where}
                GROUP BY h, target, vantage ORDER BY h, target, vantage""", (since, until))]

    def probe_latencies(self, since: str, until: str) -> dict[str, list[float]]:
        """The response times (ms) of the successful probes, by target."""
        out: dict[str, list[float]] = {}
        for target, ms in self._db.execute(
                "SELECT target, latency_ms FROM probes WHERE at >= ? AND at < ? AND ok "
                "AND latency_ms IS NOT NULL", (since, until)):
            out.setdefault(target, []).append(float(ms))
        return out

    @staticmethod
    def _probe_where(sql: str, target: str | None, since: str | None, until: str | None,
                     vantage: str | None) -> tuple[str, list[Any]]:
        args: list[Any] = []
        for column, op, value in (("target", "=", target), ("at", ">=", since),
                                  ("at", "<", until), ("vantage", "=", vantage)):
            if value is not None:
                sql += f" AND {column} {op} ?"
                args.append(value)
        return sql, args

    def probes_span(self) -> tuple[str | None, str | None]:
        """The first and last probe times (ISO-8601 UTC), or (None, None) without probes."""
        row = self._db.execute("SELECT min(at), max(at) FROM probes").fetchone()
        return (row[0], row[1]) if row else (None, None)

    def chain_verifications(self, since: str, until: str) -> dict[str, Any]:
        """The public chain's checks made by probes in ``[since, until)``: how many, how many
        failed, from how many vantage points (monitor/chaincheck.py puts them in ``detail``)."""
        row = self._db.execute(
            "SELECT count(*) AS made, "
            "coalesce(sum(json_extract(detail, '$.chain.ok') = 0), 0) AS failed, "
            "count(DISTINCT vantage) AS vantages FROM probes "
            "WHERE at >= ? AND at < ? AND json_extract(detail, '$.chain.ok') IS NOT NULL",
            (since, until)).fetchone()
        return {"hechas": row["made"], "fallidas": row["failed"], "puntos": row["vantages"]}
