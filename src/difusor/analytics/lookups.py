"""What an ingest looks up per distinct value: places of addresses, kinds of agents.

Places are answered in DuckDB, all of a chunk's addresses in one join (``addresses.py``) against
the geolocation ranges (``georanges.py``), which are built once per mmdb and kept in the
analytics database (``geocache.py``): ``geo_key`` names them, ``ranges`` gives them. Agents are
classified here, in Python (ua-parser), once per distinct agent: a night repeats a few thousand
agents millions of times. ua-parser builds its matcher on first use (≈ 0.2 s holding the
interpreter lock), so ``warm_for`` warms it up in a thread while DuckDB — which releases the
lock — reads the first chunk.

``Lookups`` lasts as long as its caller wants (``difusor run``'s live ingest keeps one for all
its rounds); ``close`` waits for the warm-up.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from difusor.analytics import agents
from difusor.analytics.geo import db_path

if TYPE_CHECKING:
    from difusor.config import Config

Asked = list[tuple[str, int]]

# From this many new bytes on, warming ua-parser up ahead is worth a thread.
WARM_BYTES = 1 << 20


class Lookups:
    def __init__(self, db: Path) -> None:
        self.db = db  # the mmdb
        self._warm: threading.Thread | None = None

    @classmethod
    def for_config(cls, cfg: Config) -> Lookups:
        return cls(db_path(cfg))

    def start(self) -> None:
        """Warms the agent classifier up in a thread (once): call it as DuckDB starts a long
        statement (which releases the interpreter lock)."""
        if self._warm is None:
            self._warm = threading.Thread(target=agents.classify, args=("Mozilla/5.0",),
                                          name="difusor-agentes", daemon=True)
            self._warm.start()

    def warm_for(self, new_bytes: int) -> None:
        """``start`` if reading ``new_bytes`` will meet agents enough to be worth it."""
        if new_bytes >= WARM_BYTES:
            self.start()

    def geo_key(self) -> str:
        """The name of the mmdb's ranges (its path, size and mtime): what the database has."""
        from difusor.analytics.geocache import cache_name

        return cache_name(self.db)

    def ranges(self, scratch: Path) -> AbstractContextManager[Path]:
        """The geolocation ranges' Parquet file (built now if the mmdb is new: seconds)."""
        from difusor.analytics.geocache import ranges_file

        return ranges_file(self.db, scratch)

    def ask(self, uas: Asked) -> str:
        """TSV rows (hash, browser, os, device, bot) of the agents ``uas`` (value, DuckDB's hash
        of it): keyed by the hash, so the strings never round-trip and no escaping can make a
        row miss its join."""
        return "".join("\t".join(_tsv(v) for v in (h, *agents.classify(ua))) + "\n"
                       for ua, h in uas)

    def close(self) -> None:
        if self._warm is not None:
            self._warm.join()


def _tsv(value: object) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).replace("\t", " ").replace("\n", " ").replace("\r", " ")
