"""Events: every stage's record of what it did, with its time, in one table.

``EventKind`` names every kind the code writes. It is a ``StrEnum``, so callers that pass the
plain string keep working, and a kind it does not list is refused: a misspelt kind would
otherwise be written and then never found by the readers that filter on it.
"""

from __future__ import annotations

import sqlite3
from enum import StrEnum
from typing import Any

from difusor.ledger.db import LedgerDB, decoded, dumps, utcnow


class EventKind(StrEnum):
    # receive/ and package/: a package arrives and is judged
    RECEIVED = "received"
    INTERRUPTED = "interrupted"
    VERIFIED = "verified"
    DUPLICATE = "duplicate"
    REFUSED = "refused"
    FAILED = "failed"
    # store/ and publish/: the corte is stored, goes live, reaches the servers
    STORED = "stored"
    MATERIALIZED = "materialized"
    ACTIVATED = "activated"
    SERVED = "served"
    SERVED_LATE = "served_late"
    TIMINGS = "timings"
    GC = "gc"
    TAKEDOWN = "takedown"
    PUBLISH_ERROR = "publish_error"
    # publish/origins: the two-phase switch over every origin
    ORIGIN_STAGED = "origin_staged"
    ORIGIN_VARIANTS = "origin_variants"
    ORIGIN_SWITCHED = "origin_switched"
    SWITCH_WINDOW = "switch_window"
    ORIGIN_OUT = "origin_out"
    ORIGIN_BACK = "origin_back"
    ORIGIN_RESTORED = "origin_restored"
    # publish/cdn: purges and the check through the edge
    PURGE = "purge"
    PURGE_FAILED = "purge_failed"
    EDGE_VERIFIED = "edge_verified"
    EDGE_STALE = "edge_stale"
    # shield/
    SHIELD = "shield"
    SHIELD_ENFORCER_FAILED = "shield_enforcer_failed"
    ATTACK = "attack"
    ATTACK_OVER = "attack_over"
    # monitor/
    INCIDENT_UPDATED = "incident_updated"
    ALERT_SENT = "alert_sent"
    ALERT_FAILED = "alert_failed"
    # sites/: the operation's phase and the test site
    PHASE_SET = "phase_set"
    SIMULACRO_RESET = "simulacro_reset"
    # integrity/: the public chain could not be written (the corte is live all the same)
    INTEGRITY_FAILED = "integrity_failed"
    # compliance/: «difusor check», item by item (the memoria cites it)
    CHECK = "check"
    # console/: who logged in, who was refused, and every action taken from the page
    CONSOLE_LOGIN = "console_login"
    CONSOLE_LOGIN_FAILED = "console_login_failed"
    CONSOLE_ACTION = "console_action"
    # run/: the supervisor
    RUN_STARTED = "run_started"
    RUN_STOPPED = "run_stopped"
    SERVICE_RESTARTED = "service_restarted"


def event_kind(kind: str) -> EventKind:
    """``kind`` as an ``EventKind``; ValueError names it when it is not one."""
    try:
        return EventKind(kind)
    except ValueError:
        raise ValueError(f"unknown ledger event kind {kind!r}: add it to EventKind") from None


def insert_event(db: sqlite3.Connection, kind: str, message: str | None, *, at: str,
                 package_id: int | None = None, release_id: str | None = None,
                 detail: dict[str, Any] | None = None) -> int:
    """One events row, inside the caller's write transaction (the stage's own row and its
    event commit together)."""
    cur = db.execute(
        "INSERT INTO events(at, kind, package_id, release_id, message, detail)"
        " VALUES (?,?,?,?,?,?)",
        (at, event_kind(kind).value, package_id, release_id, message, dumps(detail)),
    )
    return int(cur.lastrowid or 0)


class EventsMixin(LedgerDB):
    def event(
        self,
        kind: EventKind | str,
        message: str = "",
        *,
        package_id: int | None = None,
        release_id: str | None = None,
        detail: dict[str, Any] | None = None,
        at: str | None = None,
    ) -> int:
        event_kind(kind)  # refused before taking the write lock
        with self._write() as db:
            return insert_event(db, kind, message, at=at or utcnow(), package_id=package_id,
                                release_id=release_id, detail=detail)

    def events(self, kind: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first, of ``kind`` (all when None)."""
        sql = "SELECT * FROM events"
        args: tuple[Any, ...] = ()
        if kind:
            sql += " WHERE kind = ?"
            args = (kind,)
        rows = [decoded(r) for r in
                self._db.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()]
        for row in rows:
            row["detail"] = row["detail"] or None
        return rows

    def events_since(self, *, after_id: int = 0, kinds: tuple[str, ...] = (),
                     since: str | None = None, until: str | None = None,
                     limit: int = 10_000) -> list[dict[str, Any]]:
        """Events in id order: newer than ``after_id``, of ``kinds`` (all when empty), with
        ``since <= at < until``."""
        sql, args = "SELECT * FROM events WHERE id > ?", [after_id]
        if kinds:
            sql += f" AND kind IN ({','.join('?' * len(kinds))})"
            args += list(kinds)
        if since is not None:
            sql += " AND at >= ?"
            args.append(since)
        if until is not None:
            sql += " AND at < ?"
            args.append(until)
        rows = self._db.execute(sql + " ORDER BY id LIMIT ?", (*args, limit)).fetchall()
        return [decoded(r) for r in rows]

    def events_span(self) -> tuple[str | None, str | None]:
        """The first and last event times (ISO-8601 UTC), or (None, None) without events."""
        row = self._db.execute("SELECT min(at), max(at) FROM events").fetchone()
        return (row[0], row[1]) if row else (None, None)
