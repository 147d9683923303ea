"""The inbox: where every receiver hands over a *complete* upload, in arrival order.

A receiver (embedded SFTP, drop-folder watcher, HTTPS pull) calls :func:`deliver` only once it
knows the file is whole. Delivery is one atomic link or rename into ``inbox/`` under a name that
sorts by arrival (``<ns>-<rand>_<authority's name>``), so the publisher takes packages one at a
time in the order they arrived, and a package that arrived while nothing was publishing is still
there on the next start. Sidecars (``NAME.sha256``) are delivered the same way and paired with
their package by the authority's name.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from difusor.receive.intake import SIDECAR_SUFFIX, original_name, safe_name

_clock_lock = threading.Lock()
_last_ns = 0


def _arrival_ns() -> int:
    """A strictly increasing wall-clock stamp, so two deliveries never share an order."""
    global _last_ns
    with _clock_lock:
        _last_ns = max(time.time_ns(), _last_ns + 1)
        return _last_ns


def deliver(source: Path, inbox: Path, name: str | None = None, *, link: bool = False) -> Path:
    """Hand ``source`` (a complete file) to the publisher: rename it (or hard-link it, leaving
    ``source`` in place) into ``inbox`` atomically. ``name`` is the authority's file name
    (default: ``source``'s). Both must be on the same filesystem."""
    inbox.mkdir(parents=True, exist_ok=True)
    target = inbox / f"{_arrival_ns():020d}-{uuid.uuid4().hex[:4]}_{safe_name(name or source.name)}"
    if link:
        os.link(source, target)
    else:
        os.rename(source, target)
    return target


@dataclass(frozen=True)
class Arrival:
    path: Path
    name: str  # the authority's name
    ns: int  # when it was delivered

    @property
    def is_sidecar(self) -> bool:
        return self.name.endswith(SIDECAR_SUFFIX)

    @property
    def age(self) -> float:
        return (time.time_ns() - self.ns) / 1e9


def arrivals(inbox: Path) -> list[Arrival]:
    """Everything delivered and not yet taken, oldest first."""
    found = []
    try:
        entries = list(os.scandir(inbox))
    except FileNotFoundError:
        return []
    for entry in entries:
        stamp, sep, _ = entry.name.partition("-")
        if not sep or not stamp.isdigit() or not entry.is_file(follow_symlinks=False):
            continue
        found.append(Arrival(Path(entry.path), original_name(entry.name), int(stamp)))
    found.sort(key=lambda a: a.path.name)
    return found


def sidecar_for(package: Arrival, pending: list[Arrival]) -> Arrival | None:
    """The newest delivered ``NAME.sha256`` for ``package``."""
    wanted = package.name + SIDECAR_SUFFIX
    matches = [a for a in pending if a.is_sidecar and a.name == wanted]
    return matches[-1] if matches else None
