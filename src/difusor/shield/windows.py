"""Sliding-window counters with per-second buckets, cheap enough for the live access stream.

A ``Window`` keeps a running total per key and one small dict per second; when a second falls
out of the window its counts are subtracted, so asking a key's total is one dict read and the
cost of expiry is proportional to the keys actually seen in that second, never to all keys.
``DistinctWindow`` counts distinct items per key (query strings per address, 404 paths per
address) the same way: an item counts once while any of its sightings is inside the window.
"""

from __future__ import annotations

import ipaddress
from collections import deque


class Window:
    def __init__(self, seconds: int) -> None:
        self.seconds = max(1, int(seconds))
        self.totals: dict[str, int] = {}
        self._buckets: deque[tuple[int, dict[str, int]]] = deque()
        self._now = -1
        self._current: dict[str, int] = {}

    def advance(self, second: int) -> list[str]:
        """Move the window's end to ``second``; returns the keys whose total fell to zero."""
        if second <= self._now:
            return []
        if self._current:
            self._buckets.append((self._now, self._current))
        self._now, self._current = second, {}
        gone: list[str] = []
        horizon = second - self.seconds
        totals = self.totals
        buckets = self._buckets
        while buckets and buckets[0][0] <= horizon:
            for key, n in buckets.popleft()[1].items():
                left = totals[key] - n
                if left:
                    totals[key] = left
                else:
                    del totals[key]
                    gone.append(key)
        return gone

    def add(self, key: str, n: int = 1) -> int:
        """Count ``n`` for ``key`` in the current second; returns the key's window total."""
        cur = self._current
        cur[key] = cur.get(key, 0) + n
        total = self.totals.get(key, 0) + n
        self.totals[key] = total
        return total

    def get(self, key: str) -> int:
        return self.totals.get(key, 0)

    def rate(self, key: str) -> float:
        return self.totals.get(key, 0) / self.seconds

    def recent(self, key: str, seconds: int) -> int:
        """The key's count over the last ``seconds`` seconds (the current one included)."""
        n = self._current.get(key, 0)
        horizon = self._now - seconds
        for sec, bucket in reversed(self._buckets):
            if sec <= horizon:
                break
            n += bucket.get(key, 0)
        return n

    def forget(self, key: str) -> None:
        """Drop a key's history (an operator pardoned it)."""
        self.totals.pop(key, None)
        self._current.pop(key, None)
        for _sec, bucket in self._buckets:
            bucket.pop(key, None)

    def top(self, n: int) -> list[tuple[str, int]]:
        return sorted(self.totals.items(), key=lambda kv: kv[1], reverse=True)[:n]

    def __len__(self) -> int:
        return len(self.totals)


class DistinctWindow:
    """How many distinct items each key showed inside the window."""

    def __init__(self, seconds: int) -> None:
        self._pairs = Window(seconds)
        self.counts: dict[str, int] = {}

    def advance(self, second: int) -> None:
        counts = self.counts
        for pair in self._pairs.advance(second):
            key = pair[:pair.index("\x00")]
            left = counts[key] - 1
            if left:
                counts[key] = left
            else:
                del counts[key]

    def add(self, key: str, item: str) -> int:
        """Record ``item`` for ``key``; returns the key's distinct count."""
        if self._pairs.add(key + "\x00" + item) == 1:
            n = self.counts.get(key, 0) + 1
            self.counts[key] = n
            return n
        return self.counts.get(key, 0)

    def get(self, key: str) -> int:
        return self.counts.get(key, 0)


def network_of(ip: str) -> str:
    """The /24 of an IPv4 address, the /64 of an IPv6 one (what one customer or site holds)."""
    if ":" not in ip:
        cut = ip.rfind(".")
        return ip[:cut] + ".0/24"
    try:
        return str(ipaddress.IPv6Network(ip + "/64", strict=False))
    except ValueError:
        return ip


RECENT = 16  # seconds of an agent's recent past its pace is judged on


class AgentWindow:
    """Browser user agents seen per address over the last one to two minutes, with their pace.

    Two generations swapped every ``seconds``: cheap to feed (a few integer operations per
    request) and long enough to see the variety of a carrier-grade NAT address, where people
    come and go. Per (address, agent) it keeps [requests, recent active seconds as a bitmask
    (bit 0 = its last second), first second, last second]: people (even a few sharing one agent
    string) leave silent seconds; a bot dealing its requests over many agents keeps every one
    of them busy second after second.
    """

    def __init__(self, seconds: int = 60) -> None:
        self.seconds = seconds
        self._current: dict[str, dict[str, list[int]]] = {}
        self._previous: dict[str, dict[str, list[int]]] = {}
        self._since = -1

    def advance(self, second: int) -> None:
        if self._since < 0:
            self._since = second
        elif second - self._since >= self.seconds:
            self._previous, self._current = self._current, {}
            self._since = second

    def add(self, ip: str, tag: str, second: int) -> None:
        seen = self._current.get(ip)
        if seen is None:
            seen = self._current[ip] = {}
        pace = seen.get(tag)
        if pace is None:
            old = self._previous.get(ip, {}).get(tag)
            # The recent seconds carry over the swap; requests are counted per generation.
            pace = seen[tag] = [0, old[1], old[2], old[3]] if old else [0, 0, second, second]
        pace[0] += 1
        if pace[3] != second or not pace[1]:
            pace[1] = ((pace[1] << max(0, second - pace[3])) | 1) & _RECENT_MASK
            pace[3] = second

    def of(self, ip: str) -> dict[str, tuple[int, int, int, int]]:
        """Agent tag → (requests, recent-seconds mask, first second, last second) for ``ip``,
        over both generations."""
        merged = {tag: (p[0], p[1], p[2], p[3]) for tag, p in self._previous.get(ip, {}).items()}
        for tag, p in self._current.get(ip, {}).items():
            old = merged.get(tag)
            merged[tag] = (p[0] + (old[0] if old else 0), p[1], p[2], p[3])
        return merged


_RECENT_MASK = (1 << RECENT) - 1


def machine_paced(pace: tuple[int, int, int, int], min_active: int, share: float) -> bool:
    """An agent busy in nearly every one of its recent seconds, ``min_active`` or more."""
    _requests, mask, first, last = pace
    span = min(RECENT, last - first + 1)
    active = (mask & ((1 << span) - 1)).bit_count()
    return active >= min_active and active >= share * span
