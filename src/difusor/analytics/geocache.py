"""Where the geolocation ranges (``georanges.py``) are kept, so they are built once per mmdb.

``addresses.prepare`` keeps them in the analytics database (with the name of the mmdb's
ranges: a new mmdb replaces them). Building takes seconds, so they are also kept per user as a
Parquet file named by the mmdb's path, size and mtime (and ``VERSION``) in the system's
temporary folder (``difusor-<uid>``, private to the user): a new database — another site's,
a test's — starts from it. The file holds no visitor data, only what the mmdb says, one row
per range: the family (4: the IPv4 numbers, 6: the rest of the 128-bit line), the start as
two UBIGINTs (Parquet has no 128-bit integer), and the place (an id, its country and Mexican
state).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from bisect import bisect_right
from collections.abc import Iterator
from pathlib import Path

import duckdb

from difusor.analytics.georanges import MAPPED, Answer, build
from difusor.errors import LogFormatError
from difusor.paths import user_temp_folder

VERSION = 3  # of what the file holds and how it is computed: a new one makes every cache stale


def cache_name(db: Path) -> str:
    try:
        st = db.stat()
        where = db.resolve()
    except OSError as exc:
        raise LogFormatError(f"no puedo abrir la base de geolocalización {db}: "
                             f"{exc.strerror}") from None
    key = f"{VERSION}|{where}|{st.st_size}|{st.st_mtime_ns}"
    return f"geo-{hashlib.sha256(key.encode()).hexdigest()[:16]}.parquet"


@contextlib.contextmanager
def ranges_file(db: Path, scratch: Path) -> Iterator[Path]:
    """The ranges of the mmdb ``db``: the user's cached copy, or built now (a few seconds)
    and cached; built into ``scratch`` (and gone after) when there is no private cache."""
    name = cache_name(db)
    shared = user_temp_folder("difusor")
    if shared is not None and (shared / name).exists():
        yield shared / name
        return
    tmp = scratch / f".{name}.{os.getpid()}.tmp"
    try:
        write(build(db), tmp)
        if shared is not None:
            _share(tmp, shared / name)
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def write(line: tuple[list[int], list[Answer]], out: Path) -> None:
    """The number line (starts, answers) as Parquet: the IPv4-mapped stretch as IPv4 numbers
    (family 4), the rest of the line (family 6), each starting where its stretch starts (the
    answer in effect there); each distinct answer a place id."""
    import numpy as np

    starts, answers = line
    end = MAPPED + (1 << 32)

    def at(x: int) -> Answer:
        return answers[bisect_right(starts, x) - 1]

    rows = [(4, 0, at(MAPPED))] + [(4, s - MAPPED, a) for s, a in zip(starts, answers,
                                                                       strict=True)
                                   if MAPPED < s < end]
    rows += [(6, s, a) for s, a in zip(starts, answers, strict=True) if s < MAPPED]
    rows += [(6, end, at(end))] + [(6, s, a) for s, a in zip(starts, answers, strict=True)
                                   if s > end]
    places = {a: i for i, a in enumerate(sorted(set(answers), key=lambda a: (a[0] or "",
                                                                               a[1] or "")))}
    table = {  # (a dict of numpy arrays: DuckDB scans it as a table)
        "v": np.array([v for v, _, _ in rows], dtype=np.uint8),
        "hi": np.array([s >> 64 for _, s, _ in rows], dtype=np.uint64),
        "lo": np.array([s & (1 << 64) - 1 for _, s, _ in rows], dtype=np.uint64),
        "place": np.array([places[a] for _, _, a in rows], dtype=np.uint16),
        "country": np.array([a[0] or "" for _, _, a in rows], dtype=object),
        "state": np.array([a[1] or "" for _, _, a in rows], dtype=object),
    }
    con = duckdb.connect()
    try:
        con.register("ranges", table)
        con.execute(f"""COPY (SELECT v, hi, lo, place, nullif(country, '') AS country,
                                     nullif(state, '') AS state FROM ranges)
                        TO '{str(out).replace("'", "''")}' (FORMAT parquet)""")
    finally:
        con.close()


def _share(built: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):  # only a cache
        shutil.copyfile(built, tmp)
        os.replace(tmp, target)
    tmp.unlink(missing_ok=True)
