"""The corte's date and time, read from what the authority wrote.

Sources, strongest first (ARCHITECTURE.md): configured JSON pointers; INE 2018 ``fechaCorte`` +
``horaCorte`` ("01 de julio de 2018", "21:04"); INE 2024 ``ultimoCorte.{fecha,hora}``;
``archivoCorte`` or the package name ``YYYYMMDD_HHMM_…``; the database CSV line
``3/6/2019 09:15 (UTC-5)``. A time with no zone of its own is in the site's zone.

Numeric dates with the year last are day/month/year unless ``corte.date_order`` says otherwise;
with the year first they are year/month/day. A date the data states but that cannot be used (an
impossible offset, a month over twelve, a day/month order that would have to be guessed) raises
``PackageRefused``; the reader keeps it and refuses the package only if that source decides.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from difusor.errors import PackageRefused

MONTHS = {
    "enero": 1, "febrero": 2, "marzo": 3, "abril": 4, "mayo": 5, "junio": 6, "julio": 7,
    "agosto": 8, "septiembre": 9, "setiembre": 9, "octubre": 10, "noviembre": 11, "diciembre": 12,
    "ene": 1, "feb": 2, "mar": 3, "abr": 4, "may": 5, "jun": 6, "jul": 7, "ago": 8, "sep": 9,
    "sept": 9, "oct": 10, "nov": 11, "dic": 12,
}

_SPANISH_DATE = re.compile(
    r"(\d{1,2})\s*(?:de\s+)?([A-Za-záéíóúÁÉÍÓÚ]+)\.?\s*(?:de\s+|del\s+)?(\d{4})", re.IGNORECASE
)
_NUMERIC = re.compile(r"(?<!\d)(\d{4}|\d{1,2})([/-])(\d{1,2})\2(\d{4}|\d{1,2})(?!\d)")
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s*([ap])\.?\s*m\b\.?)?", re.IGNORECASE)
_ZONE = re.compile(r"(?:UTC|GMT)\s*([+-−])\s*(\d{1,2})(?::?(\d{2}))?", re.IGNORECASE)
_STAMP = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})_(\d{2})(\d{2})(?!\d)")
_STRICT_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})$")
# The database CSV's line: D/M/Y or Y/M/D, "-" or "/", zone "(UTC-5)", "(UTC -5)", "(GMT-05:00)".
_CSV_LINE = re.compile(
    rb"(?<!\d)(\d{4}|\d{1,2})([/-])(\d{1,2})\2(\d{4}|\d{1,2})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?"
    rb"\s*\(\s*(?:UTC|GMT)\s*([+-])\s*(\d{1,2})(?::?(\d{2}))?\s*\)"
)
MAX_OFFSET = timedelta(hours=14)  # the widest offset in use (Kiribati); Mexico is -5 to -8
ORDERS = {"dmy": "día/mes/año", "mdy": "mes/día/año"}


@dataclass(frozen=True)
class CorteTime:
    when: datetime  # always timezone-aware
    source: str  # where it was read, in Spanish, for the ledger and the operator


def parse_date_time(date_text: str, time_text: str | None, zone: tzinfo, order: str = "dmy"
                    ) -> datetime | None:
    """A date and a time written the ways PREP data writes them; None when it cannot be read,
    PackageRefused when it can be read but not used."""
    text = date_text if time_text is None else f"{date_text} {time_text}"
    iso = _iso(text)
    if iso is not None:
        if iso.tzinfo:
            _check_offset(iso.utcoffset(), text)
            return iso
        return iso.replace(tzinfo=zone)
    ymd = _date(text, order)
    hm = _TIME.search(text if time_text is None else time_text)
    if ymd is None or hm is None:
        return None
    h, m, s = int(hm.group(1)), int(hm.group(2)), int(hm.group(3) or 0)
    meridiem = (hm.group(4) or "").lower()
    if meridiem and not 1 <= h <= 12:
        return None
    if meridiem == "p" and h < 12:
        h += 12
    elif meridiem == "a" and h == 12:
        h = 0
    try:
        local = datetime(*ymd, h, m, s)
    except ValueError:
        return None
    z = _ZONE.search(text)
    if z:
        return local.replace(tzinfo=_offset(z.group(1), z.group(2), z.group(3)))
    return local.replace(tzinfo=zone)


def _iso(text: str) -> datetime | None:
    t = text.strip()
    if not re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", t):
        return None
    try:
        return datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        if _STRICT_ISO.match(t):  # ISO through and through: read further, its offset would be lost
            raise PackageRefused("corte_invalid", f"«{t}» no es una fecha y hora válida") from None
        return None


def _date(text: str, order: str = "dmy") -> tuple[int, int, int] | None:
    m = _NUMERIC.search(text)
    if m:
        return numeric_date(m.group(1), m.group(3), m.group(4), order, m.group(0))
    m = _SPANISH_DATE.search(text)
    if m:
        month = MONTHS.get(m.group(2).lower().strip("."))
        if month:
            return int(m.group(3)), month, int(m.group(1))
    return None


def numeric_date(first: str, second: str, third: str, order: str, text: str
                 ) -> tuple[int, int, int] | None:
    """(year, month, day) of a numeric date; the year is whichever end has four digits."""
    if len(first) == 4:
        return int(first), int(second), int(third)
    if len(third) != 4:
        return None
    a, b, year = int(first), int(second), int(third)
    if order == "auto":
        if a <= 12 and b <= 12 and a != b:
            raise PackageRefused(
                "ambiguous_date",
                f"en «{text}» no se sabe si va primero el día o el mes; fija el orden con "
                "corte.date_order («dmy» o «mdy»)",
            )
        order = "mdy" if b > 12 else "dmy"
    day, month = (a, b) if order == "dmy" else (b, a)
    if month > 12:
        raise PackageRefused(
            "corte_invalid",
            f"«{text}» no es una fecha {ORDERS[order]} (corte.date_order = «{order}»)",
        )
    return year, month, day


def _offset(sign: str, hours: str, minutes: str | None) -> timezone:
    delta = timedelta(hours=int(hours), minutes=int(minutes or 0))
    _check_offset(delta, f"UTC{sign}{hours}" + (f":{minutes}" if minutes else ""))
    return timezone(-delta if sign in "-−" else delta)


def _check_offset(delta: timedelta | None, text: str) -> None:
    if delta is not None and (abs(delta) > MAX_OFFSET or delta.seconds % 60):
        raise PackageRefused(
            "corte_invalid", f"desfase horario imposible en «{text}» (va de UTC-12 a UTC+14)"
        )


def check_calendar(when: datetime, zone: tzinfo, source: str) -> None:
    """The corte must exist in the site's zone (its id and every date shown are written there)."""
    try:
        when.astimezone(zone)
    except (OverflowError, ValueError):
        raise PackageRefused(
            "corte_invalid", f"{source}: la fecha {when.isoformat()} queda fuera del calendario"
        ) from None


def from_stamp(text: str, zone: tzinfo) -> datetime | None:
    """``YYYYMMDD_HHMM`` anywhere in a name such as ``20241208_2030_PREP.zip``."""
    m = _STAMP.search(text)
    if not m:
        return None
    try:
        return datetime(*(int(g) for g in m.groups())).replace(tzinfo=zone)  # type: ignore[misc]
    except ValueError:
        return None


def from_csv_head(head: bytes, order: str = "dmy") -> datetime | None:
    """The database CSV's corte line among its first lines: ``3/6/2019 09:15 (UTC-5)`` (INE
    LEEME), ``2019/06/03 05:47 (UTC -5)`` and the other orders authorities write."""
    for line in head.splitlines()[:12]:
        m = _CSV_LINE.search(line)
        if m:
            a, _sep, b, c, h, mi, s, sign, oh, om = (g.decode() if g else None for g in m.groups())
            text = m.group(0).decode()
            ymd = numeric_date(a, b, c, order, text.split()[0])  # type: ignore[arg-type]
            if ymd is None:
                return None
            try:
                local = datetime(*ymd, int(h), int(mi), int(s or 0))  # type: ignore[arg-type]
            except ValueError:
                return None
            return local.replace(tzinfo=_offset(sign, oh, om))  # type: ignore[arg-type]
    return None


def resolve_pointer(doc: Any, pointer: str) -> Any:
    """RFC 6901 JSON pointer; KeyError/IndexError when absent."""
    if pointer in ("", "/"):
        return doc
    for token in pointer.lstrip("/").split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        doc = doc[int(token)] if isinstance(doc, list) else doc[token]
    return doc


def from_value(value: Any, zone: tzinfo, order: str = "dmy") -> datetime | None:
    """A pointer's target: a date-time string, or an object with ``fecha`` and ``hora``."""
    if isinstance(value, str):
        return parse_date_time(value, None, zone, order)
    if isinstance(value, dict):
        fecha = value.get("fecha") or value.get("fechaCorte")
        hora = value.get("hora") or value.get("horaCorte")
        if isinstance(fecha, str):
            return parse_date_time(fecha, hora if isinstance(hora, str) else None, zone, order)
    return None


# Conventions, in the order ARCHITECTURE.md gives them.
_MARKERS = (b'"fechaCorte"', b'"ultimoCorte"', b'"archivoCorte"')


def from_json_conventions(data: bytes, zone: tzinfo, order: str = "dmy"
                          ) -> list[tuple[int, datetime | PackageRefused, str]]:
    """Every known convention found in one JSON document, as (rank, time, which) triples; the
    time is a PackageRefused when the document states one that cannot be used.

    Cheap when the document carries none of the keys: the bytes are scanned before parsing.
    Only the top level and the first level of nesting are looked at, where PREP files put them.
    A document that cannot be parsed states nothing (whether it must be valid is decided
    elsewhere).
    """
    if not any(marker in data for marker in _MARKERS):
        return []
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return []
    found: list[tuple[int, datetime | PackageRefused, str]] = []

    def add(rank: int, which: str, read: Callable[[], datetime | None]) -> None:
        try:
            t = read()
        except PackageRefused as exc:
            found.append((rank, exc, which))
            return
        if t:
            found.append((rank, t, which))

    for obj in _shallow_objects(doc):
        fecha, hora = obj.get("fechaCorte"), obj.get("horaCorte")
        if isinstance(fecha, str) and isinstance(hora, str):
            add(0, "fechaCorte/horaCorte", lambda f=fecha, h=hora: parse_date_time(f, h, zone, order))
        ultimo = obj.get("ultimoCorte")
        if ultimo is not None:
            add(1, "ultimoCorte", lambda u=ultimo: from_value(u, zone, order))
        archivo = obj.get("archivoCorte")
        if isinstance(archivo, str):
            add(2, "archivoCorte", lambda a=archivo: from_stamp(a, zone))
    return found


def _shallow_objects(doc: Any) -> list[dict[str, Any]]:
    if not isinstance(doc, dict):
        return []
    out = [doc]
    out.extend(v for v in doc.values() if isinstance(v, dict))
    return out


def corte_id(when: datetime, zone: tzinfo) -> str:
    """``YYYYMMDD_HHMM`` in the site's zone (seconds appended only when the corte has them)."""
    local = when.astimezone(zone)
    base = local.strftime("%Y%m%d_%H%M")
    return base + (f"{local.second:02d}" if local.second else "")
