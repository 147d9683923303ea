"""Traffic now, from the access logs: requests/s by status class, p95 latency, visitors in the
last 5 minutes, top pages and views, and the CDN's share when edge logs are configured.

The console follows the same files the shield does (the embedded server's log and nginx's), from
their end, and keeps one bucket per second for the last hour, stamped with when its lines were
read (the workers flush every half second: a line lands in its second or the next). This is a
window on the night, not the record: the memoria's figures come from the analytics.

Visitors (address + user agent, as the analytics define them) are counted with adaptive
sampling so a flood of one-off addresses costs bounded memory: past ``VISITOR_CAP`` keys only
the hashes divisible by 2, then 4… are kept, and the count is scaled back.
"""

from __future__ import annotations

import re
import time
from bisect import bisect_left
from collections import Counter, deque
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from typing import Any

import orjson

from difusor.analytics.formats import EDGE_FORMATS
from difusor.analytics.views import page_matcher, page_rules, view_matcher, view_rules
from difusor.config import Config
from difusor.logtail import Follower
from difusor.paths import StateLayout

HOUR = 3600
VISITOR_WINDOW = 300.0
VISITOR_CAP = 200_000
PURGE_EVERY = 5.0
STEP_BYTES = 16 << 20
# Latency bins (ms), roughly ×1.25 apart: a p95 read from them is within a bin's width.
BINS = [0.1 * 1.25 ** i for i in range(64)]


@dataclass
class Second:
    at: int
    requests: int = 0
    by_class: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0, 0])  # 0xx…5xx
    edge: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(BINS) + 1))
    pages: Counter[str] = field(default_factory=Counter)
    views: Counter[str] = field(default_factory=Counter)


class Visitors:
    """Distinct (address, agent) seen in the last ``window`` seconds, with bounded memory."""

    def __init__(self, window: float = VISITOR_WINDOW, cap: int = VISITOR_CAP) -> None:
        self.window, self.cap = window, cap
        self.level = 0  # keep hashes divisible by 2**level
        self.seen: dict[int, float] = {}
        self._purged = float("-inf")

    def add(self, key: int, now: float) -> None:
        if key & ((1 << self.level) - 1):
            return
        self.seen[key] = now
        if len(self.seen) > self.cap:
            self.level += 1
            mask = (1 << self.level) - 1
            self.seen = {k: t for k, t in self.seen.items() if not k & mask}

    def count(self, now: float) -> int:
        # Forgetting costs a pass over every key: at most once every PURGE_EVERY seconds
        # (the count may include a visitor gone for up to that long).
        if now - self._purged >= PURGE_EVERY or now < self._purged:
            old = now - self.window
            self.seen = {k: t for k, t in self.seen.items() if t >= old}
            self._purged = now
        return len(self.seen) << self.level


# A line of the access log (serve/accesslog.py; nginx-config writes the same fields in the same
# order): ip, path, status, user agent (b"" for null), duration_ms. Strings without escaped
# quotes only — fast (≈ 0.8 µs a line); a line with one is read by the slow path.
LINE = re.compile(
    rb'"ip":"([^"]*)","method":"[^"]*","path":"([^"]*)","query":"[^"]*","status":(\d+),'
    rb'"bytes":\d+,"referer":(?:null|"[^"]*"),"user_agent":(?:null|"([^"]*)"),"corte":"[^"]*",'
    rb'"duration_ms":(-?[0-9]+(?:\.[0-9])?)[0-9]*\}')


@lru_cache(maxsize=65536)
def _text(raw: bytes) -> str:
    """A JSON string's inside as text (its escapes undone); logs repeat the same few values."""
    return orjson.loads(b'"' + raw + b'"') if b"\\" in raw else raw.decode("utf-8", "replace")


def _parsed(line: bytes) -> tuple[bytes, bytes, bytes, bytes, bytes] | None:
    """The same five fields from any line (slow path: one JSON parse unless it matches)."""
    fast = LINE.search(line)
    if fast:
        return fast.groups()  # type: ignore[return-value]
    try:
        row = orjson.loads(line)
        status = int(row["status"])
        ms = float(row.get("duration_ms") or 0)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    def raw(v: object) -> bytes:
        return orjson.dumps(v if isinstance(v, str) else "")[1:-1]
    return (raw(row.get("ip")), raw(row.get("path")), str(status).encode(),
            raw(row.get("user_agent")), str(ms).encode())


class Traffic:
    def __init__(self, cfg: Config) -> None:
        self.logs = [Follower(p, from_end=True) for p in
                     (StateLayout(cfg.state_dir).access_log, cfg.nginx_access_log)]
        self.edge_logs = [Follower(cfg.path(s.path), from_end=True)
                          for s in cfg.analytics.sources if s.format in EDGE_FORMATS]
        self.own = tuple(cfg.analytics.own_agents)
        self.is_page = page_matcher(page_rules(cfg))
        self.view_of = view_matcher(view_rules(cfg))
        self.seconds: deque[Second] = deque(maxlen=HOUR)
        self.visitors = Visitors()

    def _now(self, now: float) -> Second:
        second = int(now)
        if not self.seconds or self.seconds[-1].at != second:
            self.seconds.append(Second(second))
        return self.seconds[-1]

    def step(self, now: float | None = None, limit: int = STEP_BYTES) -> bool:
        """Count what the logs gained (at most about ``limit`` bytes of each); True when a
        log had more than that (the caller reads again at once)."""
        now = time.time() if now is None else now
        bucket = self._now(now)
        more = False
        for follower in self.logs:
            self._count(follower.read(limit), bucket, now)
            more |= follower.behind
        for follower in self.edge_logs:
            bucket.edge += follower.read(limit).count(b"\n")
            more |= follower.behind
        return more

    def _count(self, chunk: bytes, bucket: Second, now: float) -> None:
        """One regular expression over the whole chunk (the embedded server's and nginx's lines
        have the same fields in the same order), then counts over distinct values: the console
        must cost the server far less than parsing each line would (≈ 3 µs a line)."""
        if not chunk:
            return
        rows = LINE.findall(chunk)
        if len(rows) < chunk.count(b"\n"):  # another shape, or an escaped quote: line by line
            rows = [r for r in map(_parsed, chunk.splitlines()) if r is not None]
        if not rows:
            return
        bucket.requests += len(rows)
        # Counted over distinct values, in C (itemgetter, Counter); Python only per distinct.
        for status, n in Counter(map(itemgetter(2), rows)).items():
            bucket.by_class[min(int(status) // 100, 5)] += n
        latency = bucket.latency
        for ms, n in Counter(map(itemgetter(4), rows)).items():
            latency[bisect_left(BINS, float(ms))] += n
        pairs = set(map(itemgetter(0, 3), rows))
        own = {a for a in {agent for _ip, agent in pairs} if self._own(a)}
        add = self.visitors.add
        for ip, agent in pairs:
            if agent not in own:
                add(hash((ip, agent)), now)
        for (path, status, agent), n in Counter(map(itemgetter(1, 2, 3), rows)).items():
            if agent in own or int(status) >= 400:
                continue
            text = _text(path)
            view = self.view_of(text)
            if view:
                bucket.views[view] += n
            elif self.is_page(text):
                bucket.pages[text] += n

    def _own(self, agent: bytes) -> bool:
        return _text(agent).startswith(self.own)

    def close(self) -> None:
        for follower in (*self.logs, *self.edge_logs):
            follower.close()

    # -- what the page shows ---------------------------------------------------------------

    def summary(self, now: float | None = None, *, series: bool = True) -> dict[str, Any]:
        now = time.time() if now is None else now
        recent = [s for s in self.seconds if s.at >= now - 60]
        five = [s for s in self.seconds if s.at >= now - VISITOR_WINDOW]
        requests = sum(s.requests for s in recent)
        classes = [sum(s.by_class[i] for s in recent) for i in range(6)]
        edge = sum(s.edge for s in recent)
        pages: Counter[str] = Counter()
        views: Counter[str] = Counter()
        for s in five:
            pages.update(s.pages)
            views.update(s.views)
        span = max(1.0, min(60.0, now - self.seconds[0].at)) if self.seconds else 60.0
        return {
            "peticiones_s": round(requests / span, 1),
            "por_clase": {f"{i}xx": classes[i] for i in (2, 3, 4, 5)},
            "p95_ms": _p95([s.latency for s in recent]),
            "visitantes_5min": self.visitors.count(now),
            "paginas": pages.most_common(8),
            "vistas": views.most_common(8),
            "cdn": (None if not self.edge_logs else
                    {"borde_s": round(edge / span, 1),
                     "absorbido": round(1 - requests / edge, 3) if edge else None}),
            "serie": self.series(now) if series else None,
        }

    def series(self, now: float, step: int = 10) -> dict[str, list[float | None]]:
        """The last hour in ``step``-second points: requests/s, 4xx/s, 5xx/s, p95 (ms)."""
        start = int(now) - HOUR - int(now) % step + step
        slots: dict[int, list[Second]] = {}
        for s in self.seconds:
            if s.at >= start:
                slots.setdefault((s.at - start) // step, []).append(s)
        out: dict[str, list[float | None]] = {"t": [], "rps": [], "e4": [], "e5": [], "p95": []}
        for i in range(HOUR // step):
            group = slots.get(i, [])
            out["t"].append(start + i * step)
            out["rps"].append(round(sum(s.requests for s in group) / step, 2))
            out["e4"].append(round(sum(s.by_class[4] for s in group) / step, 2))
            out["e5"].append(round(sum(s.by_class[5] for s in group) / step, 2))
            out["p95"].append(_p95([s.latency for s in group]))
        return out


def _p95(histograms: list[list[int]]) -> float | None:
    if not histograms:
        return None
    total = [sum(col) for col in zip(*histograms, strict=True)]
    n = sum(total)
    if not n:
        return None
    rank, seen = 0.95 * n, 0
    for i, count in enumerate(total):
        seen += count
        if seen >= rank:
            return round(BINS[min(i, len(BINS) - 1)], 2)
    return None
