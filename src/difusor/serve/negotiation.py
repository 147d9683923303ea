"""Conditional and negotiated requests: Accept-Encoding, If-None-Match, Range (RFC 9110)."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=512)
def accepted_encodings(header: str) -> tuple[str, ...]:
    """Encodings we have (``br``, ``gz``) that the client accepts, best first.

    A q-value of 0 refuses; ``*`` stands for anything not named; ties keep our order (br first).
    """
    qs: dict[str, float] = {}
    for part in header.lower().split(","):
        token, _, params = part.strip().partition(";")
        token = token.strip()
        if not token:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        qs[token] = q
    star = qs.get("*")
    ranked = []
    for ours, names in (("br", ("br",)), ("gz", ("gzip", "x-gzip"))):
        q = next((qs[n] for n in names if n in qs), star)
        if q is not None and q > 0:
            ranked.append((-q, len(ranked), ours))
    return tuple(ours for _, _, ours in sorted(ranked))


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison: ``W/"x"`` matches ``"x"``."""
    if header.strip() == "*":
        return True
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False


def byte_range(header: str, size: int) -> tuple[int, int] | bool | None:
    """One ``bytes=`` range → (first, last) inclusive; None when the header should be ignored
    (multiple ranges, other units, malformed); False when it cannot be satisfied (416)."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_s, dash, last_s = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first_s == "":
            n = int(last_s)
            if n <= 0:
                return False
            return (max(size - n, 0), size - 1) if size else False
        first = int(first_s)
        last = int(last_s) if last_s else size - 1
    except ValueError:
        return None
    if first >= size:
        return False
    if first < 0 or last < first:
        return None
    return first, min(last, size - 1)
