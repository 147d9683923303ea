"""Which network operator (autonomous system) an address belongs to, offline.

geoip2fast ships an ASN database inside its wheel; loading it takes ~0.2 s and a lookup a few
microseconds, so it is loaded once, on first use, and answers are cached per /24 (an ASN never
splits a /24 in practice). Private and loopback addresses have no ASN: ``None``.
"""

from __future__ import annotations

import logging
from typing import Any

from difusor.shield.windows import network_of

log = logging.getLogger("difusor")
_CACHE_MAX = 200_000


class AsnLookup:
    def __init__(self) -> None:
        self._db: Any = None
        self._failed = False
        self._cache: dict[str, str | None] = {}

    def _load(self) -> Any:
        if self._db is None and not self._failed:
            try:
                from geoip2fast import GeoIP2Fast

                self._db = GeoIP2Fast(geoip2fast_data_file="geoip2fast-asn.dat.gz")
            except Exception as exc:  # the shield works without ASN keys
                log.warning(f"escudo: sin base de ASN ({exc}); se omiten las llaves por ASN")
                self._failed = True
        return self._db

    def of(self, ip: str, net: str | None = None) -> str | None:
        net = net or network_of(ip)
        cache = self._cache
        if net in cache:
            return cache[net]
        db = self._load()
        name: str | None = None
        if db is not None:
            try:
                found = db.lookup(ip)
                if not getattr(found, "is_private", False):
                    name = getattr(found, "asn_name", "") or None
            except Exception:
                name = None
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[net] = name
        return name
