"""The annexes: every table of the memoria as a CSV file beside it (and attached to the PDF).

UTF-8 *with* a byte-order mark: Excel on Windows in Spanish reads a CSV without one in the
ANSI code page (Windows-1252) and turns «Michoacán» into «MichoacÃ¡n»; with the BOM it reads
UTF-8, and LibreOffice, pandas (``utf-8-sig``) and Python's ``csv`` read it as well. Comma as
the separator (Mexico's list separator, since its decimal mark is the point), CRLF line ends
(RFC 4180), numbers in machine form (``1234.5``, no thousands mark) so they stay numbers.

Same tables, same bytes: files are written in name order, rows in the order given (the data
side already orders them, usually by time), and nothing depends on the clock.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

Table = tuple[list[str], Sequence[Sequence[Any]]]
ENCODING = "utf-8-sig"


def cell(value: Any) -> str:
    """One value as CSV text: empty for None, ISO 8601 for moments, ``true``/``false``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    if isinstance(value, list | tuple):
        return "; ".join(cell(v) for v in value)
    return str(value)


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> tuple[bytes, int]:
    """The file's bytes and how many data rows it holds."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    count = 0
    for row in rows:
        writer.writerow([cell(v) for v in row])
        count += 1
    return buf.getvalue().encode(ENCODING), count


@dataclass(frozen=True)
class Annex:
    """One CSV file, made in memory: the document lists it before it is written."""
    name: str
    data: bytes
    rows: int

    def entry(self) -> dict[str, Any]:
        """``{archivo, filas, sha256}``, as the document lists it."""
        return {"archivo": f"anexos/{self.name}", "filas": self.rows,
                "sha256": hashlib.sha256(self.data).hexdigest()}


def make_annexes(tables: dict[str, Table]) -> list[Annex]:
    """Each table's CSV file, in name order."""
    out = []
    for stem in sorted(tables):
        header, rows = tables[stem]
        data, count = csv_bytes(header, rows)
        out.append(Annex(f"{stem}.csv", data, count))
    return out


def store_annexes(folder: Path, annexes: list[Annex]) -> list[Path]:
    """Write ``folder/<name>`` for each annex; CSV files left there by an earlier run that this
    one does not write are removed, so the folder always matches the list in the document."""
    folder.mkdir(parents=True, exist_ok=True)
    for annex in annexes:
        write_atomic(folder / annex.name, annex.data)
    names = {a.name for a in annexes}
    for old in folder.glob("*.csv"):
        if old.name not in names:
            old.unlink()
    return [folder / a.name for a in annexes]


def write_annexes(folder: Path, tables: dict[str, Table]) -> list[dict[str, Any]]:
    """Write ``folder/<stem>.csv`` for each table; returns ``[{archivo, filas, sha256}]`` in
    name order (``make_annexes`` then ``store_annexes``)."""
    annexes = make_annexes(tables)
    store_annexes(folder, annexes)
    return [a.entry() for a in annexes]


def write_atomic(path: Path, data: bytes) -> None:
    # A reader (or the PDF step) never sees half a file.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
