"""The corte's date and time, read from what the authority wrote.

Sources, strongest first (ARCHITECTURE.md): configured JSON pointers; INE 2018 ``fechaCorte`` +
``horaCorte`` ("01 de julio de 2018", "21:04"); INE 2024 ``ultimoCorte.{fecha,hora}``;
``archivoCorte`` or the package name ``YYYYMMDD_HHMM_…``; the database CSV line
``3/6/2019 09:15 (UTC-5)``. A time with no zone of its own is in the site's zone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

MONTHS = {
    "enero": 1, "febrero": 2, "marzo": 3, "abril": 4, "mayo": 5, "junio": 6, "julio": 7,
    "agosto": 8, "septiembre": 9, "setiembre": 9, "octubre": 10, "noviembre": 11, "diciembre": 12,
    "ene": 1, "feb": 2, "mar": 3, "abr": 4, "may": 5, "jun": 6, "jul": 7, "ago": 8, "sep": 9,
    "sept": 9, "oct": 10, "nov": 11, "dic": 12,
}

_SPANISH_DATE = re.compile(
    r"(\d{1,2})\s*(?:de\s+)?([A-Za-záéíóúÁÉÍÓÚ]+)\.?\s*(?:de\s+|del\s+)?(\d{4})", re.IGNORECASE
)
_NUMERIC_DMY = re.compile(r"(\d{1,2})[/-](\d{1,2})[/-](\d{4})")
_NUMERIC_YMD = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s*([ap])\.?\s*m\b\.?)?", re.IGNORECASE)
_ZONE = re.compile(r"(?:UTC|GMT)\s*([+-−])\s*(\d{1,2})(?::?(\d{2}))?", re.IGNORECASE)
_STAMP = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})_(\d{2})(\d{2})(?!\d)")
_CSV_LINE = re.compile(
    rb"(\d{1,2})/(\d{1,2})/(\d{4})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*\((?:UTC|GMT)\s*([+-])(\d{1,2})(?::?(\d{2}))?\)"
)


@dataclass(frozen=True)
class CorteTime:
    when: datetime  # always timezone-aware
    source: str  # where it was read, in Spanish, for the ledger and the operator


def parse_date_time(date_text: str, time_text: str | None, zone: tzinfo) -> datetime | None:
    """A date and a time written the ways PREP data writes them; None when it cannot be read."""
    text = date_text if time_text is None else f"{date_text} {time_text}"
    iso = _iso(text)
    if iso is not None:
        return iso if iso.tzinfo else iso.replace(tzinfo=zone)
    ymd = _date(text)
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
        return None


def _date(text: str) -> tuple[int, int, int] | None:
    m = _NUMERIC_YMD.search(text)
    if m:
        return int(m.group(1)), int(m.group(2)), int(m.group(3))
    m = _NUMERIC_DMY.search(text)
    if m:  # Mexican order: day/month/year
        return int(m.group(3)), int(m.group(2)), int(m.group(1))
    m = _SPANISH_DATE.search(text)
    if m:
        month = MONTHS.get(m.group(2).lower().strip("."))
        if month:
            return int(m.group(3)), month, int(m.group(1))
    return None


def _offset(sign: str, hours: str, minutes: str | None) -> timezone:
    delta = timedelta(hours=int(hours), minutes=int(minutes or 0))
    return timezone(-delta if sign in "-−" else delta)


def from_stamp(text: str, zone: tzinfo) -> datetime | None:
    """``YYYYMMDD_HHMM`` anywhere in a name such as ``20241208_2030_PREP.zip``."""
    m = _STAMP.search(text)
    if not m:
        return None
    try:
        return datetime(*(int(g) for g in m.groups())).replace(tzinfo=zone)  # type: ignore[misc]
    except ValueError:
        return None


def from_csv_head(head: bytes) -> datetime | None:
    """The INE database CSV's line ``3/6/2019 09:15 (UTC-5)`` among its first lines."""
    for line in head.splitlines()[:12]:
        m = _CSV_LINE.search(line)
        if m:
            d, mo, y, h, mi, s, sign, oh, om = m.groups()
            try:
                local = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0))
            except ValueError:
                return None
            return local.replace(
                tzinfo=_offset(sign.decode(), oh.decode(), om.decode() if om else None)
            )
    return None


def resolve_pointer(doc: Any, pointer: str) -> Any:
    """RFC 6901 JSON pointer; KeyError/IndexError when absent."""
    if pointer in ("", "/"):
        return doc
    for token in pointer.lstrip("/").split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        doc = doc[int(token)] if isinstance(doc, list) else doc[token]
    return doc


def from_value(value: Any, zone: tzinfo) -> datetime | None:
    """A pointer's target: a date-time string, or an object with ``fecha`` and ``hora``."""
    if isinstance(value, str):
        return parse_date_time(value, None, zone)
    if isinstance(value, dict):
        fecha = value.get("fecha") or value.get("fechaCorte")
        hora = value.get("hora") or value.get("horaCorte")
        if isinstance(fecha, str):
            return parse_date_time(fecha, hora if isinstance(hora, str) else None, zone)
    return None


# Conventions, in the order ARCHITECTURE.md gives them.
_MARKERS = (b'"fechaCorte"', b'"ultimoCorte"', b'"archivoCorte"')


def from_json_conventions(data: bytes, zone: tzinfo) -> list[tuple[int, datetime, str]]:
    """Every known convention found in one JSON document, as (rank, time, which) triples.

    Cheap when the document carries none of the keys: the bytes are scanned before parsing.
    Only the top level and the first level of nesting are looked at, where PREP files put them.
    """
    if not any(marker in data for marker in _MARKERS):
        return []
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError):
        return []
    found: list[tuple[int, datetime, str]] = []
    for obj in _shallow_objects(doc):
        fecha, hora = obj.get("fechaCorte"), obj.get("horaCorte")
        if isinstance(fecha, str) and isinstance(hora, str):
            t = parse_date_time(fecha, hora, zone)
            if t:
                found.append((0, t, "fechaCorte/horaCorte"))
        ultimo = obj.get("ultimoCorte")
        if ultimo is not None:
            t = from_value(ultimo, zone)
            if t:
                found.append((1, t, "ultimoCorte"))
        archivo = obj.get("archivoCorte")
        if isinstance(archivo, str):
            t = from_stamp(archivo, zone)
            if t:
                found.append((2, t, "archivoCorte"))
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
