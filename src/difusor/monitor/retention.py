"""The retention guard (convocatoria I.2) and the final take-down it protects.

The site must stay online ``[operation] keep_hours`` (24 by default) after ``[operation] end``.
``check_takedown`` refuses, in Spanish, any final take-down before that moment, and also when
``end`` is not configured (then nobody can tell that the period was kept). ``takedown`` is the
take-down itself: under the publication lock it removes ``current`` (and ``site``, nginx's tree),
bumps the generation so every server worker notices, and records a ``takedown`` event. A server
without ``current`` serves no corte: every path is 404 and ``/_difusor/health`` answers 503. The
stored releases, packages and ledger stay, for the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from difusor.config import Config
from difusor.errors import DifusorError
from difusor.ledger import Ledger
from difusor.paths import fsync_dir
from difusor.publish.activate import bump_generation, live_release, wait_served


@dataclass(frozen=True)
class TakedownOutcome:
    release_id: str | None  # the corte that was live (None: nothing was)
    allowed_from: datetime
    at: datetime
    workers: int | None  # server workers that confirmed the switch (None: not within 2 s)
    elsewhere: list[str]  # remote origins and CDNs that still hold a copy


def allowed_from(cfg: Config) -> datetime | None:
    """The first moment a final take-down is allowed: end + keep_hours (None without end)."""
    if not cfg.operation.end:
        return None
    return datetime.fromisoformat(cfg.operation.end) + timedelta(hours=cfg.operation.keep_hours)


def check_takedown(cfg: Config, now: datetime) -> None:
    """Raise a Spanish DifusorError when the convocatoria still requires the site online."""
    if now.tzinfo is None:
        raise ValueError("now debe llevar zona horaria")
    allowed = allowed_from(cfg)
    if allowed is None:
        raise DifusorError(
            "no hay [operation] end en la configuración: sin la fecha de fin de la operación no "
            "se puede comprobar que el sitio se mantuvo en línea el periodo que la convocatoria "
            "(I.2) exige; configúrala antes de retirar el sitio"
        )
    if now < allowed:
        zone = ZoneInfo(cfg.site.timezone)
        hours = f"{cfg.operation.keep_hours:g}"
        raise DifusorError(
            f"la convocatoria (I.2) exige mantener el sitio en línea {hours} h después del fin "
            f"de la operación ({_local(datetime.fromisoformat(cfg.operation.end), zone)}), hasta "
            f"{_local(allowed, zone)}; faltan {_remaining(allowed - now)}: no se retira"
        )


def takedown(cfg: Config, ledger: Ledger, now: datetime) -> TakedownOutcome:
    """The final take-down, once the guard allows it."""
    from difusor.pipeline import Publisher

    check_takedown(cfg, now)
    allowed = allowed_from(cfg)
    assert allowed is not None
    publisher = Publisher(cfg, ledger)
    try:
        with publisher.lock():
            layout = publisher.layout
            live = live_release(layout)
            layout.current.unlink(missing_ok=True)
            layout.site.unlink(missing_ok=True)
            if cfg.store.fsync:
                fsync_dir(layout.root)
            served = wait_served(layout, bump_generation(layout), timeout=2.0)
            elsewhere = [o.name for o in cfg.origins if o.kind != "local"]
            elsewhere += [c.name or c.kind for c in cfg.cdn]
            ledger.event(
                "takedown",
                f"sitio retirado (fin de la operación más {cfg.operation.keep_hours:g} h)"
                + (f"; estaba en línea el corte {live}" if live else ""),
                release_id=live,
                detail={"allowed_from": allowed.isoformat(), "now": now.isoformat(),
                        "elsewhere": elsewhere},
            )
    finally:
        publisher.close()
    return TakedownOutcome(live, allowed, now, served[0] if served else None, elsewhere)


def _local(when: datetime, zone: ZoneInfo) -> str:
    return when.astimezone(zone).strftime("%d/%m/%Y %H:%M %Z")


def _remaining(delta: timedelta) -> str:
    minutes = max(1, int(-(-delta.total_seconds() // 60)))  # rounded up: never "0 min"
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} d"] if days else []
    if hours or days:
        parts.append(f"{hours} h")
    parts.append(f"{mins} min")
    return " ".join(parts)
