"""Origins: which corte each origin serves and whether it is in rotation, read from the
origin events the two-phase switch writes (``origin_switched``, ``origin_out``,
``origin_back``)."""

from __future__ import annotations

from typing import Any

from difusor.ledger.db import LedgerDB


class OriginsMixin(LedgerDB):
    def origin_states(self) -> dict[str, dict[str, Any]]:
        """Per origin (by name): ``live`` (the corte it last switched to), ``out`` (whether it
        is out of rotation), ``since`` (when that last changed) and ``switched`` (when it last
        switched corte), from the origin events."""
        rows = self._db.execute(
            """
            SELECT e.kind, e.release_id, e.at, json_extract(e.detail, '$.origin') AS origin
            FROM events e JOIN (
                SELECT MAX(id) AS id FROM events
                WHERE kind IN ('origin_switched', 'origin_out', 'origin_back')
                GROUP BY json_extract(detail, '$.origin'), kind = 'origin_switched'
            ) last ON e.id = last.id
            ORDER BY e.id
            """
        ).fetchall()
        states: dict[str, dict[str, Any]] = {}
        for row in rows:
            if row["origin"] is None:
                continue
            state = states.setdefault(row["origin"], {"live": None, "out": False, "since": None,
                                                      "switched": None})
            if row["kind"] == "origin_switched":
                state["live"], state["switched"] = row["release_id"], row["at"]
            else:
                state["out"] = row["kind"] == "origin_out"
                state["since"] = row["at"]
        return states

    def origins_out(self) -> set[str]:
        """Names of the origins out of rotation now."""
        return {name for name, s in self.origin_states().items() if s["out"]}
