"""Access logs into the analytics database: fast, in bounded memory, never counting a line twice.

A log is read in chunks of whole lines (≤ ``logfile.CHUNK`` bytes, see logfile.py for a file's
identity, offsets and rotation). Each chunk is spooled (by a thread, while DuckDB parses the one
before) to a private temporary file — a small log read from its start is one chunk, parsed
where it lies — that DuckDB's CSV reader parses with the format's SQL (formats.py) into a temp
table, grouped once per visitor-day (address, agent, day), referrer and path, then written
straight into ``requests`` with the per-distinct results joined back. Addresses are placed in
DuckDB too, all of a chunk's in one join against the geolocation ranges (addresses.py; the
ranges come from the mmdb once, georanges.py). The only per-value work in Python is classifying
each new user agent (lookups.py), in a thread while DuckDB parses. The chunk's rows and the
file's new offset are committed together, so an interrupted ingest resumes where it was.

Privacy: the visitor is a keyed hash of (that day's salt, IP, user agent); the raw IP goes to
``visitors.ip`` only when ``[analytics] keep_ip_days`` > 0, and each ingest clears it on visitor-days
whose latest request is older.
A day's salt is deleted ``salt_grace_hours`` after the local midnight that ends the day, at the
end of an ingest that succeeded. Ingesting an old log therefore creates its day's salt and
discards it when that ingest ends: unique visitors of the same old day ingested in two separate
runs are not merged (the live path, which sees each day while it lasts, does not have this
problem); an ingest that failed keeps the salt for the one that resumes it. Temporary files
(they hold raw addresses) live in a private folder deleted when the ingest ends.

Here: ``ingest_files``, the operator's batch (``difusor analytics ingest``). ``ingestor.py``
reads files chunk by chunk, ``chunkparse.py`` turns a chunk into temp tables, ``ingest_sql.py``
holds the SQL that stores them, ``addresses.py`` the SQL that places addresses, ``tally.py``
what was counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from difusor.analytics.ingestor import Ingestor
from difusor.analytics.lookups import Lookups
from difusor.analytics.tally import IngestResult
from difusor.config import Config
from difusor.errors import LogFormatError

# Told ``(bytes done, bytes in all the files)`` after each chunk: the CLI's progress bar.
Progress = Callable[[int, int | None], None]


def ingest_files(cfg: Config, files: list[Path], fmt: str = "auto",
                 progress: Progress | None = None, lookups: Lookups | None = None
                 ) -> IngestResult:
    """Ingest logs given by the operator (``difusor analytics ingest``)."""
    started = time.monotonic()
    total = IngestResult()
    sizes = {p: (p.stat().st_size if p.is_file() else 0) for p in files}
    missing = [p for p in files if not p.is_file()]
    if missing:
        raise LogFormatError(f"no existe el registro {missing[0]}")
    everything = sum(sizes.values())
    ingestor = Ingestor(cfg, lookups=lookups)
    done_ok = False
    try:
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress(done, everything)

        for path in files:
            total.add(ingestor.ingest_file(path, fmt, on_bytes=advance))
        done_ok = True
    finally:
        ingestor.close(tidy=done_ok)
    total.seconds = time.monotonic() - started
    return total
