"""The public chain of cortes, as the ledger keeps it: one row per entry, appended, never
changed. What an entry holds and how it is hashed and signed is ``integrity/chain``'s: here it
is an opaque JSON text with its sequence number and hash."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from difusor.ledger.db import LedgerDB

# (previous entry's hash or None, next sequence number) → (its hash, the entry as JSON text)
Build = Callable[[str | None, int], tuple[str, str]]


class ChainMixin(LedgerDB):
    def chain_append(self, build: Build) -> dict[str, Any]:
        """Append the entry ``build`` makes, inside the write transaction: two appenders can
        never both link to the same previous entry."""
        with self._write() as db:
            row = db.execute("SELECT seq, hash FROM chain ORDER BY seq DESC LIMIT 1").fetchone()
            seq = (row["seq"] if row else 0) + 1
            digest, text = build(row["hash"] if row else None, seq)
            db.execute("INSERT INTO chain(seq, hash, entry) VALUES (?,?,?)", (seq, digest, text))
        return dict(json.loads(text))

    def chain(self, after: int = 0) -> list[dict[str, Any]]:
        """Entries in order (those after sequence number ``after``)."""
        rows = self._db.execute("SELECT entry FROM chain WHERE seq > ? ORDER BY seq",
                                (after,)).fetchall()
        return [json.loads(r["entry"]) for r in rows]

    def chain_head(self) -> dict[str, Any] | None:
        row = self._db.execute("SELECT entry FROM chain ORDER BY seq DESC LIMIT 1").fetchone()
        return json.loads(row["entry"]) if row else None
