"""The retention rule (convocatoria I.2) that guards the final take-down.

The site must stay online ``[operation] keep_hours`` (24 by default) after ``[operation] end``.
``check_takedown`` refuses, in Spanish, any final take-down before that moment, and also when
``end`` is not configured (then nobody can tell that the period was kept). The take-down itself
is publication's (``difusor.publish.takedown``): monitoring only says whether it may happen.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from difusor.config import Config
from difusor.errors import DifusorError
from difusor.moments import duration


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


def _local(when: datetime, zone: ZoneInfo) -> str:
    return when.astimezone(zone).strftime("%d/%m/%Y %H:%M %Z")


def _remaining(delta: timedelta) -> str:
    minutes = max(1, int(-(-delta.total_seconds() // 60)))  # rounded up: never "0 min"
    return duration(minutes * 60)
