"""An incident's impact, from the embedded server's access log (and its rotated ``.1``).

Requests, distinct IPs and errors ≥ 500 in the window; the monitor's own requests and
``/_difusor/`` health checks left out. The log is read from a binary-searched offset, not whole.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from difusor.moments import storable, stored
from difusor.monitor.incidents.clock import seconds

MONITOR_AGENTS = (b"difusor-",)  # user agents of our own probes, not visitors
_SLACK = timedelta(seconds=10)  # lines are written in batches: a little out of order


def impact(path: Path, start: str, end: str, *, estimate: bool = False
           ) -> dict[str, Any] | None:
    """Requests, distinct IPs and errors ≥ 500 between ``start`` and ``end`` (ISO UTC) in the
    embedded server's access log (and its rotated ``.1``); None when there is no log.
    ``estimate``: also the requests expected in the window at the pace of the same length before
    it (a stopped server logs nothing: the visitors it turned away are estimated, not counted)."""
    files = [p for p in (path.with_name(path.name + ".1"), path) if p.exists()]
    if not files:
        return None
    lo, hi = _log_stamp(start), _log_stamp(end)
    requests, errors, ips = _count(files, lo, hi)
    out: dict[str, Any] = {"requests": requests, "visitors": len(ips), "errors": errors,
                           "source": str(path)}
    if estimate:
        window = max(seconds(start, end), 1.0)
        length = min(max(window, 300.0), 3600.0)
        before = storable(stored(start) - timedelta(seconds=length))
        earlier, _e, seen = _count(files, _log_stamp(before), lo)
        out["baseline_requests_per_min"] = round(earlier / length * 60, 2)
        out["estimated_requests"] = round(earlier / length * window)
        out["baseline_visitors"] = len(seen)
    return out


def impact_text(found: dict[str, Any], kind: str) -> str:
    text = (f"{found['requests']} peticiones de {found['visitors']} visitantes (IP distintas) "
            f"en la ventana; {found['errors']} respuestas con error ≥ 500")
    if kind == "outage" and "estimated_requests" in found:
        text += (f"; con el servidor sin responder las visitas no llegan al registro: al ritmo "
                 f"previo ({found['baseline_requests_per_min']}/min) se estiman "
                 f"~{found['estimated_requests']} peticiones no atendidas")
    return text


def _count(files: list[Path], lo: bytes, hi: bytes) -> tuple[int, int, set[bytes]]:
    requests = errors = 0
    ips: set[bytes] = set()
    past = _log_stamp(storable(_parse_log(hi) + _SLACK))
    for path in files:
        with path.open("rb") as f:
            f.seek(_first_offset(f, lo))
            for line in f:
                stamp = line[9:33]
                if stamp >= past:
                    break  # well past the window (batches interleave only a little)
                if not lo <= stamp < hi:
                    continue
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                agent = (row.get("user_agent") or "").encode()
                if agent.startswith(MONITOR_AGENTS) or str(row.get("path")).startswith(
                        "/_difusor/"):
                    continue  # our probes, balancers' health checks: not visitors
                requests += 1
                ips.add(str(row.get("ip")).encode())
                if int(row.get("status") or 0) >= 500:
                    errors += 1
    return requests, errors, ips


def _first_offset(f: BinaryIO, lo: bytes) -> int:
    """Offset of a line start at or before the first line stamped ≥ ``lo`` minus slack."""
    target = _log_stamp(storable(_parse_log(lo) - _SLACK))
    size = os.fstat(f.fileno()).st_size
    left, right = 0, size
    while right - left > 4096:
        mid = (left + right) // 2
        f.seek(mid)
        f.readline()
        line = f.readline()
        if not line or line[9:33] >= target:
            right = mid
        else:
            left = mid
    f.seek(left)
    if left:
        f.readline()
    return f.tell()


def _log_stamp(stamp: str) -> bytes:
    """The access log's own form: ``2024-06-02T20:00:00.000Z``."""
    when = stored(stamp).astimezone(UTC)
    return (when.strftime("%Y-%m-%dT%H:%M:%S") + f".{when.microsecond // 1000:03d}Z").encode()


def _parse_log(stamp: bytes) -> datetime:
    return datetime.strptime(stamp.decode()[:23], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
