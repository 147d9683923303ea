"""Whether a verified package's corte may go live: against the machine's clock, the live corte and
the cortes already published. Plain decisions over plain facts; the pipeline gathers the facts
(the live corte, the releases of the same corte) and acts on the verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from difusor.errors import PackageRefused


def check_clock(when: datetime, now: datetime, max_ahead_minutes: int, corte_id: str) -> None:
    """A corte far ahead of the clock would stay "newest" and block every real corte after it."""
    ahead = when - now
    if ahead > timedelta(minutes=max_ahead_minutes):
        raise PackageRefused(
            "future_corte",
            f"el corte del paquete ({corte_id}) va {_span(ahead)} adelante del reloj de este "
            f"equipo; se aceptan hasta {max_ahead_minutes} min (corte.max_ahead_minutes). "
            "Revisa la fecha del paquete y el reloj",
        )


def repeats(kind: str, package: Mapping[str, str], release: Mapping[str, str]) -> bool:
    """Whether a package (path → sha256) carries exactly what a published corte has: all of it
    for a full (or database) package; for an incremental one, each of its files as that corte
    has it (the rest of the site came from the corte below it, whatever is live now)."""
    if kind != "incremental":
        return dict(package) == dict(release)
    return all(release.get(path) == sha for path, sha in package.items())


def resent_message(release_id: str, live_id: str | None) -> str:
    if release_id == live_id:
        return f"ya recibido: el corte {release_id} ya está en línea con estos mismos archivos; " \
               "sin cambios"
    return (f"ya recibido: el corte {release_id} ya se había publicado con estos mismos "
            f"archivos; sigue en línea el corte {live_id}, sin cambios (para volver a aquel usa "
            f"difusor rollback {release_id})")


def _span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 2 * 24 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} días"
