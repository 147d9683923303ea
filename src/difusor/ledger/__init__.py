"""The ledger: the one shared record of what happened and when (SQLite, WAL).

Only this package speaks SQL. Every stage writes its events here; the status command, the
report and the monitor read from here. Times are ISO-8601 in UTC with microseconds.

``db`` holds the connection, the schema and the write transaction; each other module is one
stage's records, a mixin over that connection; ``Ledger`` puts them together.
"""

from __future__ import annotations

from difusor.ledger.chain import ChainMixin
from difusor.ledger.db import utcnow
from difusor.ledger.events import EventKind, EventsMixin
from difusor.ledger.incidents import IncidentsMixin
from difusor.ledger.origins import OriginsMixin
from difusor.ledger.packages import PackagesMixin
from difusor.ledger.probes import ProbesMixin
from difusor.ledger.releases import ActivationRow, ReleaseRow, ReleasesMixin

__all__ = ["ActivationRow", "EventKind", "Ledger", "ReleaseRow", "utcnow"]


class Ledger(PackagesMixin, ReleasesMixin, OriginsMixin, ProbesMixin, IncidentsMixin,
             EventsMixin, ChainMixin):
    """A connection to the ledger; safe to share between threads of one process."""
